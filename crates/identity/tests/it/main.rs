//! Identity's store contract, run on SQLite always and on PostgreSQL and
//! MariaDB when their URLs are set: accounts, sessions with rotating
//! refresh tokens, throttled sign-in, and signing keys shared by replicas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use emporium_identity::Identity;
use emporium_identity::accounts::{IdentityError, Policy, Session};
use emporium_identity::domain::{ProfileChange, Registration, RegistrationInput, UserId};
use emporium_identity::keys::{KeyRing, Sealer};
use emporium_identity::throttle::Limits;
use emporium_platform::auth::{Role, Verifier};
use emporium_platform::bus::Outbox;
use emporium_platform::config::{AuthSettings, Secret};
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
        sign_in: Limits {
            free_failures: 5,
            first_delay: Duration::from_millis(400),
            max_delay: Duration::from_secs(2),
            failures_per_address: 8,
            window: Duration::from_secs(600),
        },
    }
}

/// The key-encryption keys of the tests (base64 of 32 bytes).
const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const NEXT_KEK: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn sealer(keys: &[&str]) -> Sealer {
    let keys: Vec<Secret> = keys.iter().map(|k| Secret::new(*k)).collect();
    Sealer::new(&keys).unwrap()
}

async fn ring(db: &DatabaseConnection, verifier: Option<Verifier>) -> KeyRing {
    sealed_ring(db, sealer(&[KEK]), verifier)
        .await
        .expect("keys load")
}

async fn sealed_ring(
    db: &DatabaseConnection,
    sealer: Sealer,
    verifier: Option<Verifier>,
) -> anyhow::Result<KeyRing> {
    KeyRing::load(
        db.clone(),
        sealer,
        AuthSettings::default(),
        Duration::from_secs(3600),
        Duration::from_secs(900),
        verifier,
    )
    .await
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

fn ip(raw: &str) -> Option<std::net::IpAddr> {
    Some(raw.parse().unwrap())
}

async fn wrong_password(
    f: &Fixture,
    email: &str,
    client: Option<std::net::IpAddr>,
) -> IdentityError {
    f.identity
        .login(email, "wrong password!", client)
        .await
        .unwrap_err()
}

async fn contract_a_strangers_failures_do_not_lock_the_owner_out(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.register("ada@example.org").await;
    let stranger = ip("203.0.113.7");
    for _ in 0..5 {
        assert!(matches!(
            wrong_password(&f, "ada@example.org", stranger).await,
            IdentityError::BadCredentials
        ));
    }
    // The stranger waits, the right password or not…
    let IdentityError::Throttled(first) = wrong_password(&f, "ada@example.org", stranger).await
    else {
        panic!("expected a wait");
    };
    assert!(first <= Duration::from_millis(400), "{first:?}");
    // …while the owner, elsewhere, signs in.
    let owner = f
        .identity
        .login(
            "ada@example.org",
            "correct horse battery",
            ip("198.51.100.20"),
        )
        .await;
    assert!(owner.is_ok(), "{:?}", owner.err());
    // The wait grows: after it, one more try, then twice as long.
    tokio::time::sleep(first).await;
    assert!(matches!(
        wrong_password(&f, "ada@example.org", stranger).await,
        IdentityError::BadCredentials
    ));
    let IdentityError::Throttled(second) = wrong_password(&f, "ada@example.org", stranger).await
    else {
        panic!("expected a longer wait");
    };
    assert!(second > Duration::from_millis(600), "doubled: {second:?}");
}

async fn contract_sign_in_counts_before_checking_the_password(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.register("ada@example.org").await;
    let guesses = (0..40).map(|_| {
        let identity = f.identity.clone();
        tokio::spawn(async move {
            identity
                .login("ada@example.org", "wrong password!", ip("203.0.113.7"))
                .await
        })
    });
    let outcomes = futures::future::join_all(guesses).await;
    let (mut checked, mut throttled) = (0, 0);
    for outcome in outcomes {
        match outcome.unwrap() {
            Err(IdentityError::BadCredentials) => checked += 1,
            Err(IdentityError::Throttled(_)) => throttled += 1,
            other => panic!("unexpected {:?}", other.map(|s| s.user.id)),
        }
    }
    assert_eq!(
        (checked, throttled),
        (5, 35),
        "40 guesses at once: the free five are checked"
    );
}

async fn contract_an_address_has_one_budget_and_ipv6_counts_by_64(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.register("bob@example.org").await;
    // Eight failures across accounts from eight addresses of one /64…
    for n in 1..=8 {
        let email = format!("user{n}@example.org");
        let client = ip(&format!("2001:db8:1:2::{n}"));
        assert!(matches!(
            wrong_password(&f, &email, client).await,
            IdentityError::BadCredentials
        ));
    }
    // …spend the budget of the whole /64, for every account…
    assert!(matches!(
        f.identity
            .login(
                "bob@example.org",
                "correct horse battery",
                ip("2001:db8:1:2::99")
            )
            .await,
        Err(IdentityError::Throttled(_))
    ));
    // …and of no other.
    assert!(
        f.identity
            .login(
                "bob@example.org",
                "correct horse battery",
                ip("2001:db8:1:3::1")
            )
            .await
            .is_ok()
    );
}

async fn contract_the_last_admin_cannot_be_demoted_or_disabled(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let admin = f
        .identity
        .ensure_admin("root@example.org", "a very long admin secret")
        .await
        .unwrap()
        .unwrap();
    let bob = f.register("bob@example.org").await;
    // An admin token whose account is gone, or was demoted since: the
    // caller being an admin does not keep one in the shop.
    let ghost = f
        .verifier
        .verify(
            &f.identity
                .keys()
                .signing()
                .mint(
                    &UserId::new().to_string(),
                    Role::Admin,
                    Duration::from_secs(60),
                )
                .unwrap(),
        )
        .await
        .unwrap();
    let change = |role: Option<Role>, active: Option<bool>| ProfileChange {
        name: "Someone".into(),
        phone: None,
        role,
        active,
    };
    for (role, active) in [(Some(Role::Customer), None), (None, Some(false))] {
        assert!(matches!(
            f.identity
                .update(&ghost, admin.id, &change(role, active))
                .await,
            Err(IdentityError::LastAdmin)
        ));
    }
    let still = f.identity.user(&ghost, admin.id).await.unwrap();
    assert!(still.role == Role::Admin && still.active, "nothing changed");
    // With a second admin, the first may go; then the second is the last.
    f.identity
        .update(&ghost, bob.id, &change(Some(Role::Admin), None))
        .await
        .unwrap();
    f.identity
        .update(&ghost, admin.id, &change(Some(Role::Customer), None))
        .await
        .unwrap();
    assert!(matches!(
        f.identity
            .update(&ghost, bob.id, &change(None, Some(false)))
            .await,
        Err(IdentityError::LastAdmin)
    ));
}

async fn contract_registering_a_taken_email_answers_like_a_new_one(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let ada = f.register("ada@example.org").await;
    let mut squatter = registration("ADA@example.org");
    squatter.password = "another long passphrase".into();
    squatter.name = "Not Ada".into();
    let answered = f
        .identity
        .register_without_telling(&squatter)
        .await
        .unwrap();
    assert_ne!(answered.id, ada.id, "the owner's id is not given away");
    assert_eq!(
        (answered.email.as_str(), answered.name.as_str()),
        ("ada@example.org", "Not Ada")
    );
    assert_eq!(count(&f.db, "SELECT COUNT(*) AS n FROM users").await, 1);
    assert_eq!(
        count(
            &f.db,
            "SELECT COUNT(*) AS n FROM outbox WHERE event_type = 'user.registered'"
        )
        .await,
        1
    );
    assert!(
        f.login("ada@example.org").await.is_ok(),
        "the owner's password stays"
    );
    assert!(
        f.identity
            .login("ada@example.org", "another long passphrase", None)
            .await
            .is_err()
    );
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

async fn contract_signing_keys_are_sealed_at_rest_and_rolled(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let stored = || async {
        use emporium_identity::store::signing_key;
        use sea_orm::EntityTrait;
        signing_key::Entity::find()
            .all(&f.db)
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.kid, row.private_key))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let rows = stored().await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows.values().all(|key| key.starts_with("aes256gcm:")),
        "sealed, not PKCS#8"
    );
    // Without the key, or with another one, the keys do not open.
    assert!(sealed_ring(&f.db, Sealer::default(), None).await.is_err());
    assert!(sealed_ring(&f.db, sealer(&[NEXT_KEK]), None).await.is_err());

    // A key stored in the clear before sealing existed is read and sealed.
    let (legacy, pkcs8) =
        emporium_platform::auth::Issuer::generate(&AuthSettings::default()).unwrap();
    let plain = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pkcs8);
    emporium_identity::store::insert_key(
        &f.db,
        emporium_identity::store::KeyRow {
            kid: legacy.kid().to_owned(),
            private_key: plain.clone(),
            created_at: chrono::Utc::now() + chrono::Duration::seconds(5),
        },
    )
    .await
    .unwrap();
    let keys = f.identity.keys().clone();
    keys.reload().await.unwrap();
    assert_eq!(keys.signing().kid(), legacy.kid(), "the legacy key signs");
    let rows = stored().await;
    assert!(
        rows.values()
            .all(|key| key.starts_with("aes256gcm:") && *key != plain)
    );

    // Rolled: the new key first, the old one still opens; every row is
    // sealed anew, after which the old key can go.
    let rolled = sealed_ring(&f.db, sealer(&[NEXT_KEK, KEK]), None)
        .await
        .unwrap();
    assert_eq!(rolled.signing().kid(), legacy.kid());
    assert_ne!(stored().await, rows, "sealed anew");
    let only_new = sealed_ring(&f.db, sealer(&[NEXT_KEK]), None).await.unwrap();
    assert_eq!(only_new.signing().kid(), legacy.kid());
    assert!(sealed_ring(&f.db, sealer(&[KEK]), None).await.is_err());
}

emporium_testkit::on_every_backend!(
    contract_register_and_sign_in,
    contract_refresh_rotates_and_reuse_ends_the_session,
    contract_concurrent_refreshes_spend_a_token_once,
    contract_a_strangers_failures_do_not_lock_the_owner_out,
    contract_sign_in_counts_before_checking_the_password,
    contract_an_address_has_one_budget_and_ipv6_counts_by_64,
    contract_the_last_admin_cannot_be_demoted_or_disabled,
    contract_registering_a_taken_email_answers_like_a_new_one,
    contract_signing_keys_are_sealed_at_rest_and_rolled,
    contract_profiles_roles_and_listing,
    contract_keys_rotate_and_replicas_agree,
);
