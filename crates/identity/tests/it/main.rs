//! Identity's store contract, run on SQLite always and on PostgreSQL and
//! MariaDB when their URLs are set: accounts, sessions with rotating
//! refresh tokens, throttled sign-in, and signing keys shared by replicas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use emporium_identity::Identity;
use emporium_identity::accounts::{IdentityError, Policy, Session};
use emporium_identity::domain::{ProfileChange, Registration, RegistrationInput, UserId};
use emporium_identity::keys::KeyRing;
use emporium_platform::auth::{Role, Verifier};
use emporium_platform::bus::Outbox;
use emporium_platform::config::AuthSettings;
use emporium_testkit::{Backend, TestDatabase};
use sea_orm::{ConnectionTrait, DatabaseConnection};

struct Fixture {
    identity: Identity,
    verifier: Verifier,
    db: DatabaseConnection,
    _guard: TestDatabase,
}

fn policy() -> Policy {
    Policy {
        access_ttl: Duration::from_secs(900),
        refresh_ttl: Duration::from_secs(3600),
        failures_per_account: 5,
        failures_per_address: 8,
        failure_window: Duration::from_secs(600),
    }
}

async fn ring(db: &DatabaseConnection, verifier: Option<Verifier>) -> KeyRing {
    KeyRing::load(
        db.clone(),
        AuthSettings::default(),
        Duration::from_secs(3600),
        Duration::from_secs(900),
        verifier,
    )
    .await
    .expect("keys load")
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let guard = TestDatabase::fresh(backend).await?;
    let db = emporium_platform::db::connect(&guard.url)
        .await
        .expect("connect");
    emporium_platform::db::migrate::<emporium_identity::migrations::Migrator>(&db)
        .await
        .expect("migrate");
    let verifier = Verifier::from_settings(&AuthSettings::default())
        .await
        .unwrap();
    let keys = ring(&db, Some(verifier.clone())).await;
    let identity = Identity::new(db.clone(), Outbox::new(), keys, verifier.clone(), policy());
    Some(Fixture {
        identity,
        verifier,
        db,
        _guard: guard,
    })
}

impl Fixture {
    async fn register(&self, email: &str) -> emporium_identity::domain::User {
        self.identity.register(&registration(email)).await.unwrap()
    }

    /// Signs in with the password every registration here uses.
    async fn login(&self, email: &str) -> Result<Session, IdentityError> {
        self.identity
            .login(email, "correct horse battery", None)
            .await
    }
}

fn registration(email: &str) -> Registration {
    Registration::parse(&RegistrationInput {
        email: Some(email.into()),
        password: Some("correct horse battery".into()),
        name: Some("Ada Lovelace".into()),
        phone: None,
    })
    .expect("valid registration")
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn contract_register_and_sign_in(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let user = f
        .identity
        .register(&registration("  Ada@Example.org "))
        .await
        .unwrap();
    assert_eq!(user.email.as_str(), "ada@example.org");
    assert_eq!(user.role, Role::Customer);
    assert!(matches!(
        f.identity.register(&registration("ADA@example.ORG")).await,
        Err(IdentityError::DuplicateEmail)
    ));
    assert_eq!(
        count(&f.db, "SELECT COUNT(*) AS n FROM users").await,
        1,
        "the duplicate wrote nothing"
    );
    assert_eq!(
        count(
            &f.db,
            "SELECT COUNT(*) AS n FROM outbox WHERE event_type = 'user.registered'"
        )
        .await,
        1
    );
    let stored: String =
        f.db.query_one_raw(sea_orm::Statement::from_string(
            f.db.get_database_backend(),
            "SELECT password_hash FROM users".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "password_hash")
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");

    // Wrong password and unknown email: one answer.
    for (email, password) in [
        ("ada@example.org", "wrong password!"),
        ("nobody@example.org", "correct horse battery"),
        ("not an email", "correct horse battery"),
    ] {
        let err = f.identity.login(email, password, None).await.unwrap_err();
        assert_eq!(err.to_string(), "the email or password is wrong");
    }
    let session = f.login("ADA@example.org").await.unwrap();
    let claims = f.verifier.verify(&session.access_token).await.unwrap();
    assert_eq!(claims.sub, user.id.to_string());
    assert_eq!(claims.roles, vec![Role::Customer]);
    assert_eq!(claims.aud, "emporium");
    assert!(claims.exp - claims.iat <= 900);
    let (validated, who) = f.identity.validate(&session.access_token).await.unwrap();
    assert_eq!((validated.sub, who.id), (user.id.to_string(), user.id));
    assert_eq!(f.identity.active_sessions().await.unwrap(), 1);
}

async fn contract_refresh_rotates_and_reuse_ends_the_session(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.register("ada@example.org").await;
    let login = || f.login("ada@example.org");
    let first = login().await.unwrap();
    let second = f.identity.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(first.refresh_token, second.refresh_token);
    assert!(f.verifier.verify(&second.access_token).await.is_ok());
    assert_eq!(
        f.identity.active_sessions().await.unwrap(),
        1,
        "one live token"
    );

    // The spent token again: the whole family ends, the new token with it.
    let err = f.identity.refresh(&first.refresh_token).await.unwrap_err();
    assert!(err.to_string().contains("used already"), "{err}");
    let err = f.identity.refresh(&second.refresh_token).await.unwrap_err();
    assert_eq!(err.to_string(), "the session has ended");
    assert_eq!(f.identity.active_sessions().await.unwrap(), 0);

    // Logout ends a session; a second logout is fine; other sessions live.
    let (third, fourth) = (login().await.unwrap(), login().await.unwrap());
    f.identity.logout(&third.refresh_token).await.unwrap();
    f.identity.logout(&third.refresh_token).await.unwrap();
    assert!(f.identity.refresh(&third.refresh_token).await.is_err());
    assert!(f.identity.refresh(&fourth.refresh_token).await.is_ok());

    // Made-up and malformed tokens.
    for token in ["", "short", &"A".repeat(43), &"!".repeat(43)] {
        assert!(matches!(
            f.identity.refresh(token).await,
            Err(IdentityError::Unauthenticated(_))
        ));
    }
}

async fn contract_concurrent_refreshes_spend_a_token_once(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.register("ada@example.org").await;
    let session = f.login("ada@example.org").await.unwrap();
    let attempts = (0..12).map(|_| {
        let identity = f.identity.clone();
        let token = session.refresh_token.clone();
        tokio::spawn(async move { identity.refresh(&token).await })
    });
    let results = futures::future::join_all(attempts).await;
    let (won, lost): (Vec<_>, Vec<_>) = results
        .into_iter()
        .map(|r| r.unwrap())
        .partition(Result::is_ok);
    let won: Vec<_> = won.into_iter().map(Result::unwrap).collect();
    for err in lost.into_iter().map(|r| r.err().unwrap()) {
        assert!(
            matches!(err, IdentityError::Unauthenticated(_)),
            "a loser is told its token was spent, not {err:?}"
        );
    }
    assert_eq!(won.len(), 1, "one refresh spends the token");
    // The others were reuse: the family, with the winner's new token, ended.
    assert!(f.identity.refresh(&won[0].refresh_token).await.is_err());
    assert_eq!(f.identity.active_sessions().await.unwrap(), 0);
}

async fn contract_sign_in_is_throttled(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.register("ada@example.org").await;
    f.register("bob@example.org").await;
    let client = Some("203.0.113.7".parse().unwrap());
    for _ in 0..5 {
        let err = f
            .identity
            .login("ada@example.org", "wrong password!", client)
            .await
            .unwrap_err();
        assert!(matches!(err, IdentityError::BadCredentials));
    }
    // Even the right password waits out the window now.
    let err = f.login("ada@example.org").await.unwrap_err();
    let IdentityError::Throttled(wait) = err else {
        panic!("expected throttling, got {err}");
    };
    assert!(wait > Duration::from_secs(590) && wait <= Duration::from_secs(600));
    // Another account from another address is not held back…
    assert!(f.login("bob@example.org").await.is_ok());
    // …but the address that failed eight times is, for every account.
    for _ in 0..3 {
        let _ = f
            .identity
            .login("bob@example.org", "wrong password!", client)
            .await;
    }
    assert!(matches!(
        f.identity
            .login("bob@example.org", "correct horse battery", client)
            .await,
        Err(IdentityError::Throttled(_))
    ));
}

async fn contract_profiles_roles_and_listing(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let ada = f
        .identity
        .register(&registration("ada@example.org"))
        .await
        .unwrap();
    let bob = f
        .identity
        .register(&registration("bob_1@example.org"))
        .await
        .unwrap();
    f.register("bobx1@example.org").await;
    let admin = f
        .identity
        .ensure_admin("root@example.org", "a very long admin secret")
        .await
        .unwrap()
        .expect("first admin");
    assert_eq!(admin.role, Role::Admin);
    assert!(
        f.identity
            .ensure_admin("other@example.org", "a very long admin secret")
            .await
            .unwrap()
            .is_none(),
        "only when there is no admin"
    );
    let signing = f.identity.keys().signing();
    let mint = |id: UserId, role| {
        signing
            .mint(&id.to_string(), role, Duration::from_secs(60))
            .unwrap()
    };
    let as_ada = f
        .verifier
        .verify(&mint(ada.id, Role::Customer))
        .await
        .unwrap();
    let as_admin = f
        .verifier
        .verify(&mint(admin.id, Role::Admin))
        .await
        .unwrap();
    let change = |role: Option<Role>, active: Option<bool>| ProfileChange {
        name: "Ada King".into(),
        phone: Some("+44 20 7946 0958".into()),
        role,
        active,
    };

    assert_eq!(f.identity.user(&as_ada, ada.id).await.unwrap().id, ada.id);
    assert!(matches!(
        f.identity.user(&as_ada, bob.id).await,
        Err(IdentityError::Forbidden(_))
    ));
    let changed = f
        .identity
        .update(&as_ada, ada.id, &change(None, None))
        .await
        .unwrap();
    assert_eq!(
        (changed.name.as_str(), changed.phone.as_deref()),
        ("Ada King", Some("+44 20 7946 0958"))
    );
    assert!(matches!(
        f.identity
            .update(&as_ada, ada.id, &change(Some(Role::Admin), None))
            .await,
        Err(IdentityError::Forbidden(_))
    ));
    assert!(matches!(
        f.identity
            .update(&as_admin, admin.id, &change(None, Some(false)))
            .await,
        Err(IdentityError::Rule(_))
    ));
    assert!(matches!(
        f.identity
            .update(&as_admin, UserId::new(), &change(None, None))
            .await,
        Err(IdentityError::NotFound)
    ));

    // Disabling ends the sessions and refuses sign-in.
    let session = f.login("bob_1@example.org").await.unwrap();
    f.identity
        .update(&as_admin, bob.id, &change(None, Some(false)))
        .await
        .unwrap();
    assert!(f.identity.refresh(&session.refresh_token).await.is_err());
    assert!(f.identity.validate(&session.access_token).await.is_err());
    assert!(matches!(
        f.login("bob_1@example.org").await,
        Err(IdentityError::BadCredentials)
    ));

    let page = f.identity.list(None, 1, 2).await.unwrap();
    assert_eq!((page.total, page.items.len()), (4, 2));
    assert_eq!(page.items[0].id, admin.id, "newest first");
    // `_` and `%` are letters, not wildcards.
    let page = f.identity.list(Some("BOB_"), 1, 10).await.unwrap();
    assert_eq!(
        page.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        [bob.id]
    );
    assert_eq!(f.identity.list(Some("%"), 1, 10).await.unwrap().total, 0);
}

async fn contract_keys_rotate_and_replicas_agree(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let keys = f.identity.keys().clone();
    let old = keys.signing();
    let old_token = old
        .mint("u", Role::Customer, Duration::from_secs(60))
        .unwrap();
    // A second replica on the same store signs with the same key.
    let replica = ring(&f.db, None).await;
    assert_eq!(replica.signing().kid(), old.kid());

    keys.rotate().await.unwrap();
    let new = keys.signing();
    assert_ne!(new.kid(), old.kid());
    let jwks: serde_json::Value = serde_json::from_str(&keys.jwks()).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        [new.kid(), old.kid()],
        "newest first, old still published"
    );
    assert!(
        f.verifier.verify(&old_token).await.is_ok(),
        "old tokens live on"
    );
    replica.reload().await.unwrap();
    assert_eq!(replica.signing().kid(), new.kid(), "the replica follows");

    // Age both keys: the newest, made "in 2020", is due for rotation, so a
    // third key signs; the 2020 key stays published (its replacement is
    // brand new) while the 2019 one, replaced in 2020, is withdrawn.
    {
        use emporium_identity::store::signing_key;
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        for (kid, when) in [
            (old.kid(), "2019-01-01T00:00:00Z"),
            (new.kid(), "2020-01-01T00:00:00Z"),
        ] {
            let when = chrono::DateTime::parse_from_rfc3339(when).unwrap().to_utc();
            signing_key::Entity::update_many()
                .col_expr(signing_key::Column::CreatedAt, Expr::value(when))
                .filter(signing_key::Column::Kid.eq(kid))
                .exec(&f.db)
                .await
                .unwrap();
        }
    }
    keys.reload().await.unwrap();
    let third = keys.signing();
    assert!(third.kid() != new.kid() && third.kid() != old.kid());
    let jwks: serde_json::Value = serde_json::from_str(&keys.jwks()).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [third.kid(), new.kid()]);
    assert!(f.verifier.verify(&old_token).await.is_err(), "withdrawn");
}

emporium_testkit::on_every_backend!(
    contract_register_and_sign_in,
    contract_refresh_rotates_and_reuse_ends_the_session,
    contract_concurrent_refreshes_spend_a_token_once,
    contract_sign_in_is_throttled,
    contract_profiles_roles_and_listing,
    contract_keys_rotate_and_replicas_agree,
);
