//! Use cases: registering, signing in and out, refreshing sessions, reading
//! and changing users. Every change that others hear of is written with its
//! event in one transaction.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use emporium_platform::auth::{Claims, Role, Verifier};
use emporium_platform::bus::Outbox;
use emporium_platform::http::Page;
use emporium_platform::{ErrorCode, FieldError, Problem};
use sea_orm::{DatabaseConnection, DbErr, SqlErr};
use tokio::sync::Semaphore;

use crate::domain::{
    Email, ProfileChange, REDACTED, Registration, User, UserId, check_password, parse_role,
    role_name,
};
use crate::events;
use crate::keys::KeyRing;
use crate::store::{self, RefreshRow, UserRow};
use crate::throttle::{self, Throttle};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("an account with this email exists already")]
    DuplicateEmail,
    #[error("the email or password is wrong")]
    BadCredentials,
    #[error("too many failed sign-ins; try again in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("no user has this id")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Rule(&'static str),
    #[error(
        "this is the last active admin: the shop would have nobody to manage it; make another admin first"
    )]
    LastAdmin,
    #[error(transparent)]
    Token(Problem),
    #[error(transparent)]
    Store(#[from] DbErr),
    #[error("stored user {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot sign a token: {0}")]
    Signing(String),
}

impl From<IdentityError> for Problem {
    fn from(err: IdentityError) -> Self {
        match err {
            IdentityError::Invalid(errors) => Problem::invalid(errors),
            e @ (IdentityError::DuplicateEmail | IdentityError::LastAdmin) => {
                Problem::conflict(e.to_string())
            }
            e @ (IdentityError::BadCredentials | IdentityError::Unauthenticated(_)) => {
                Problem::new(ErrorCode::Unauthenticated, e.to_string())
            }
            e @ IdentityError::Throttled(wait) => {
                let mut problem = Problem::new(ErrorCode::TooManyRequests, e.to_string());
                problem.retry_after_secs = Some(wait.as_secs().max(1));
                problem
            }
            e @ IdentityError::NotFound => Problem::not_found(e.to_string()),
            e @ IdentityError::Forbidden(_) => Problem::new(ErrorCode::Forbidden, e.to_string()),
            e @ IdentityError::Rule(_) => Problem::new(ErrorCode::Unprocessable, e.to_string()),
            IdentityError::Token(problem) => problem,
            IdentityError::Store(e) => Problem::from(e),
            e @ (IdentityError::Corrupt { .. }
            | IdentityError::Hashing(_)
            | IdentityError::Encode { .. }
            | IdentityError::Signing(_)) => Problem::internal(e),
        }
    }
}

impl emporium_platform::db::Conflict for IdentityError {
    fn is_conflict(&self) -> bool {
        matches!(self, IdentityError::Store(e) if e.is_conflict())
    }
}

type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// What a sign-in or a refresh hands back.
#[derive(Clone)]
pub struct Session {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub user: User,
}

// The tokens are bearer credentials: they never reach a log.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access_token", &REDACTED)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &REDACTED)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("user", &self.user)
            .finish()
    }
}

/// How long tokens live and how hard sign-in is throttled.
#[derive(Clone, Debug)]
pub struct Policy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub sign_in: throttle::Limits,
}

/// Argon2id with the OWASP parameters (19 MiB, 2 passes), off the async
/// threads, at most one hash per core at a time.
#[derive(Clone)]
struct Passwords {
    permits: Arc<Semaphore>,
}

/// Verified against when the email is unknown, so that the answer takes as
/// long as for a wrong password: a hash of a random password nobody knows,
/// with the parameters of `Argon2::default()` (a test holds them equal).
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$6gtm7bfo9vFCGePPhqDzCg$ANLqNAg7C5tsA38Xxydux0ujqZrZVDO0PdCzzEmZ0b0";

impl Passwords {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            permits: Arc::new(Semaphore::new(cores)),
        }
    }

    async fn hash(&self, password: &str) -> Result<String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| IdentityError::Hashing(e.to_string()))?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| IdentityError::Hashing(e.to_string()))
        })
        .await
        .map_err(|e| IdentityError::Hashing(e.to_string()))?
    }

    /// Whether `password` matches `hash`; the decoy when there is none.
    async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| IdentityError::Hashing(e.to_string()))?;
        let known = hash.is_some();
        let hash = hash.unwrap_or(DECOY).to_owned();
        let password = password.to_owned();
        let matched = tokio::task::spawn_blocking(move || {
            let parsed =
                PasswordHash::new(&hash).map_err(|e| IdentityError::Hashing(e.to_string()))?;
            Ok::<_, IdentityError>(
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .map_err(|e| IdentityError::Hashing(e.to_string()))??;
        Ok(known && matched)
    }
}

/// A refresh token: 32 random bytes, base64url; only its SHA-256 is kept.
fn new_refresh_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| IdentityError::Signing("no randomness".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn token_hash(token: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn well_formed_refresh(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads a stored row back; a value that no longer parses is an error.
fn user_from_row(row: UserRow) -> Result<User> {
    let corrupt = |reason: String| IdentityError::Corrupt {
        id: row.id.clone(),
        reason,
    };
    Ok(User {
        id: UserId::parse(&row.id).map_err(|e| corrupt(format!("id: {e}")))?,
        email: Email::parse(&row.email).map_err(|e| corrupt(format!("email {e}")))?,
        role: parse_role(&row.role).map_err(|e| corrupt(format!("role: {e}")))?,
        name: row.name,
        phone: row.phone,
        active: row.active,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn duplicate(err: DbErr) -> IdentityError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => IdentityError::DuplicateEmail,
        _ => IdentityError::Store(err),
    }
}

/// Identity's use cases over its stores.
#[derive(Clone)]
pub struct Identity {
    db: DatabaseConnection,
    outbox: Outbox,
    keys: KeyRing,
    verifier: Verifier,
    passwords: Passwords,
    policy: Policy,
    throttle: Arc<Throttle>,
}

impl Identity {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        keys: KeyRing,
        verifier: Verifier,
        policy: Policy,
    ) -> Self {
        Self {
            db,
            outbox,
            keys,
            verifier,
            passwords: Passwords::new(),
            throttle: Arc::new(Throttle::new(policy.sign_in)),
            policy,
        }
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Makes an account and announces it (`user.registered`).
    pub async fn register(&self, registration: &Registration) -> Result<User> {
        self.create(registration, Role::Customer).await
    }

    /// Registration as the public sees it: a taken email answers like a
    /// new one (the password was hashed either way, so it takes as long),
    /// with an account that is not stored, so that registering cannot tell
    /// a stranger whether someone has an account. The owner learns of the
    /// attempt from a notification, not the stranger from the answer.
    pub async fn register_without_telling(&self, registration: &Registration) -> Result<User> {
        match self.register(registration).await {
            Err(IdentityError::DuplicateEmail) => {
                // Where the owner will be told: publish a
                // `user.registration_attempted` event here once notification
                // consumes one ("someone tried to register with your email").
                metrics::counter!("registrations_of_taken_emails_total").increment(1);
                tracing::info!("registration of a taken email answered as a new one");
                let now = Utc::now();
                Ok(User {
                    id: UserId::new(),
                    email: registration.email.clone(),
                    role: Role::Customer,
                    name: registration.name.clone(),
                    phone: registration.phone.clone(),
                    active: true,
                    created_at: now,
                    updated_at: now,
                })
            }
            other => other,
        }
    }

    async fn create(&self, registration: &Registration, role: Role) -> Result<User> {
        self.create_as(UserId::new(), registration, role).await
    }

    async fn create_as(&self, id: UserId, registration: &Registration, role: Role) -> Result<User> {
        let hash = self.passwords.hash(&registration.password).await?;
        let now = Utc::now();
        let row = UserRow {
            id: id.to_string(),
            email: registration.email.as_str().to_owned(),
            password_hash: hash,
            name: registration.name.clone(),
            phone: registration.phone.clone(),
            role: role_name(role).to_owned(),
            active: true,
            created_at: now,
            updated_at: now,
        };
        let txn = emporium_platform::db::begin_write(&self.db).await?;
        store::insert_user(&txn, row.clone())
            .await
            .map_err(duplicate)?;
        let user = user_from_row(row)?;
        let event = events::registered(&user)?;
        self.outbox.enqueue(&txn, &event).await?;
        txn.commit().await.map_err(duplicate)?;
        self.outbox.wake();
        metrics::counter!("users_registered_total").increment(1);
        tracing::info!(user_id = %user.id, role = role_name(role), "user registered");
        Ok(user)
    }

    /// Makes the first admin from configuration when there is no admin
    /// yet; `None` when one exists.
    pub async fn ensure_admin(&self, email: &str, password: &str) -> Result<Option<User>> {
        if store::any_admin(&self.db).await? {
            return Ok(None);
        }
        let email = Email::parse(email).map_err(|message| {
            IdentityError::Invalid(vec![FieldError {
                field: "admin_email".into(),
                message,
            }])
        })?;
        check_password(password, Some(&email)).map_err(|message| {
            IdentityError::Invalid(vec![FieldError {
                field: "admin_password".into(),
                message,
            }])
        })?;
        let registration = Registration {
            email,
            password: password.to_owned(),
            name: "Administrator".into(),
            phone: None,
        };
        self.create(&registration, Role::Admin).await.map(Some)
    }

    /// Makes the demo customer of `emporium up` (who owns the seeded past
    /// orders) when there is none yet; `None` when they exist.
    pub async fn ensure_demo_customer(&self, password: &str) -> Result<Option<User>> {
        use emporium_platform::demo;
        if store::find_user(&self.db, demo::CUSTOMER_ID)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let corrupt = |reason: String| IdentityError::Corrupt {
            id: demo::CUSTOMER_ID.to_owned(),
            reason,
        };
        let id = UserId::parse(demo::CUSTOMER_ID).map_err(corrupt)?;
        let registration = Registration {
            email: Email::parse(demo::CUSTOMER_EMAIL).map_err(corrupt)?,
            password: password.to_owned(),
            name: demo::CUSTOMER_NAME.into(),
            phone: None,
        };
        self.create_as(id, &registration, Role::Customer)
            .await
            .map(Some)
    }

    /// Checks the password and opens a session. Unknown email, wrong
    /// password and disabled account get the same answer in about the same
    /// time. Failures are throttled by account and address together (a
    /// stranger's guesses do not keep the owner out) and by address alone;
    /// the attempt is counted before the password is checked.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Session> {
        let email = Email::parse(email).ok();
        // An email that does not parse matches no account: such attempts
        // share one key per address rather than one per string sent.
        let account = email.as_ref().map_or("", Email::as_str);
        let attempt = match self.throttle.begin(account, client) {
            Ok(attempt) => attempt,
            Err(wait) => {
                metrics::counter!("login_attempts_total", "status" => "throttled").increment(1);
                return Err(IdentityError::Throttled(wait));
            }
        };
        let row = match &email {
            Some(email) => store::find_user_by_email(&self.db, email.as_str()).await?,
            None => None,
        };
        let matched = self
            .passwords
            .verify(password, row.as_ref().map(|r| r.password_hash.as_str()))
            .await?;
        let row = match row {
            Some(row) if matched && row.active => row,
            _ => {
                self.throttle.failed(attempt);
                metrics::counter!("login_attempts_total", "status" => "failure").increment(1);
                return Err(IdentityError::BadCredentials);
            }
        };
        self.throttle.succeeded(attempt);
        let user = user_from_row(row)?;
        let family = uuid::Uuid::now_v7().to_string();
        let txn = emporium_platform::db::begin_write(&self.db).await?;
        let session = self.open(&txn, user, &family).await?;
        txn.commit().await?;
        metrics::counter!("login_attempts_total", "status" => "success").increment(1);
        Ok(session)
    }

    /// Stores a new refresh token of `family` and signs an access token.
    async fn open<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        user: User,
        family: &str,
    ) -> Result<Session> {
        let refresh = new_refresh_token()?;
        let now = Utc::now();
        let refresh_ttl = chrono::Duration::from_std(self.policy.refresh_ttl)
            .map_err(|e| IdentityError::Signing(e.to_string()))?;
        store::insert_refresh(
            conn,
            RefreshRow {
                id: uuid::Uuid::now_v7().to_string(),
                family_id: family.to_owned(),
                user_id: user.id.to_string(),
                token_hash: token_hash(&refresh),
                created_at: now,
                expires_at: now + refresh_ttl,
                used_at: None,
                revoked_at: None,
            },
        )
        .await?;
        let access_token = self
            .keys
            .signing()
            .mint(&user.id.to_string(), user.role, self.policy.access_ttl)
            .map_err(|e| IdentityError::Signing(e.to_string()))?;
        metrics::counter!("jwt_tokens_issued_total").increment(1);
        Ok(Session {
            access_token,
            expires_in: self.policy.access_ttl.as_secs(),
            refresh_token: refresh,
            refresh_expires_in: self.policy.refresh_ttl.as_secs(),
            user,
        })
    }

    /// Spends a refresh token for a new pair. A token used twice means it
    /// was stolen or replayed: its whole family is revoked.
    pub async fn refresh(&self, token: &str) -> Result<Session> {
        if !well_formed_refresh(token) {
            return Err(IdentityError::Unauthenticated(
                "the refresh token is not valid",
            ));
        }
        emporium_platform::db::retry_conflicts(|| self.refresh_once(token)).await
    }

    async fn refresh_once(&self, token: &str) -> Result<Session> {
        const INVALID: IdentityError =
            IdentityError::Unauthenticated("the refresh token is not valid");
        let now = Utc::now();
        let txn = emporium_platform::db::begin_write(&self.db).await?;
        let Some(row) = store::lock_refresh(&txn, &token_hash(token)).await? else {
            return Err(INVALID);
        };
        if row.revoked_at.is_some() {
            return Err(IdentityError::Unauthenticated("the session has ended"));
        }
        let reused = row.used_at.is_some() || !store::spend_refresh(&txn, &row.id, now).await?;
        if reused {
            let revoked = store::revoke_family(&txn, &row.family_id, now).await?;
            txn.commit().await?;
            tracing::warn!(user_id = %row.user_id, family = %row.family_id, revoked, "refresh token reused; session revoked");
            return Err(IdentityError::Unauthenticated(
                "the refresh token was used already; the session has ended",
            ));
        }
        if row.expires_at <= now {
            return Err(IdentityError::Unauthenticated(
                "the refresh token has expired",
            ));
        }
        let user = match store::find_user(&txn, &row.user_id).await? {
            Some(user) if user.active => user_from_row(user)?,
            _ => {
                store::revoke_family(&txn, &row.family_id, now).await?;
                txn.commit().await?;
                return Err(INVALID);
            }
        };
        let session = self.open(&txn, user, &row.family_id).await?;
        txn.commit().await?;
        Ok(session)
    }

    /// Ends the session the refresh token belongs to. Unknown tokens end
    /// nothing and are not reported: logging out twice is fine.
    pub async fn logout(&self, token: &str) -> Result<()> {
        if !well_formed_refresh(token) {
            return Err(IdentityError::Unauthenticated(
                "the refresh token is not valid",
            ));
        }
        emporium_platform::db::retry_conflicts(|| async {
            let txn = emporium_platform::db::begin_write(&self.db).await?;
            if let Some(row) = store::lock_refresh(&txn, &token_hash(token)).await? {
                store::revoke_family(&txn, &row.family_id, Utc::now()).await?;
            }
            txn.commit().await?;
            Ok(())
        })
        .await
    }

    pub async fn user(&self, caller: &Claims, id: UserId) -> Result<User> {
        if caller.sub != id.to_string() && !caller.is_admin() {
            return Err(IdentityError::Forbidden(
                "a customer sees only their own account",
            ));
        }
        let row = store::find_user(&self.db, &id.to_string())
            .await?
            .ok_or(IdentityError::NotFound)?;
        user_from_row(row)
    }

    /// Any account, for a service the gRPC face admits.
    pub async fn user_for_service(&self, id: UserId) -> Result<User> {
        let row = store::find_user(&self.db, &id.to_string())
            .await?
            .ok_or(IdentityError::NotFound)?;
        user_from_row(row)
    }

    /// The profile for its owner; role and `active` for an admin only. An
    /// admin cannot demote or disable themselves, and nobody can demote or
    /// disable the last active admin (a caller's token may outlive its own
    /// admin rights, so the caller being an admin proves nothing); disabling
    /// an account ends its sessions.
    pub async fn update(
        &self,
        caller: &Claims,
        id: UserId,
        change: &ProfileChange,
    ) -> Result<User> {
        let own = caller.sub == id.to_string();
        if !own && !caller.is_admin() {
            return Err(IdentityError::Forbidden(
                "a customer changes only their own account",
            ));
        }
        let privileged = change.role.is_some() || change.active.is_some();
        if privileged && !caller.is_admin() {
            return Err(IdentityError::Forbidden(
                "only an admin changes role or active",
            ));
        }
        if own && (change.role == Some(Role::Customer) || change.active == Some(false)) {
            return Err(IdentityError::Rule(
                "an admin cannot demote or disable themselves",
            ));
        }
        let key = id.to_string();
        let removes_admin = change.role == Some(Role::Customer) || change.active == Some(false);
        let row = emporium_platform::db::retry_conflicts(|| async {
            let txn = emporium_platform::db::begin_write(&self.db).await?;
            if removes_admin {
                let admins = store::lock_active_admins(&txn).await?;
                if admins == [key.as_str()] {
                    return Err(IdentityError::LastAdmin);
                }
            }
            let row = store::update_user(
                &txn,
                &key,
                &change.name,
                change.phone.as_deref(),
                change.role.map(role_name),
                change.active,
            )
            .await?
            .ok_or(IdentityError::NotFound)?;
            if change.active == Some(false) {
                store::revoke_user(&txn, &key, Utc::now()).await?;
            }
            txn.commit().await?;
            Ok::<_, IdentityError>(row)
        })
        .await?;
        user_from_row(row)
    }

    pub async fn list(&self, email: Option<&str>, page: u64, per_page: u64) -> Result<Page<User>> {
        let fragment = email.map(|e| e.trim().to_lowercase());
        let (rows, total) =
            store::list_users(&self.db, fragment.as_deref(), page, per_page).await?;
        Ok(Page {
            items: rows.into_iter().map(user_from_row).collect::<Result<_>>()?,
            page,
            per_page,
            total,
        })
    }

    /// A token's claims, if it verifies and its user still exists and may
    /// sign in.
    pub async fn validate(&self, token: &str) -> Result<(Claims, User)> {
        let claims = self
            .verifier
            .verify(token)
            .await
            .map_err(IdentityError::Token)?;
        let id = UserId::parse(&claims.sub)
            .map_err(|_| IdentityError::Unauthenticated("the token names no user"))?;
        let row = store::find_user(&self.db, &id.to_string())
            .await?
            .filter(|row| row.active)
            .ok_or(IdentityError::Unauthenticated(
                "the token's user cannot sign in",
            ))?;
        Ok((claims, user_from_row(row)?))
    }

    /// Sessions that can still be refreshed, for `active_sessions_current`.
    pub async fn active_sessions(&self) -> Result<u64> {
        Ok(store::count_sessions(&self.db, Utc::now()).await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sessions_and_stored_secrets_are_redacted_in_debug() {
        let now = Utc::now();
        let session = Session {
            access_token: "eyJ.the-access-token.sig".into(),
            expires_in: 300,
            refresh_token: "the-refresh-token".into(),
            refresh_expires_in: 3600,
            user: User {
                id: UserId::new(),
                email: Email::parse("ada@example.org").unwrap(),
                role: Role::Customer,
                name: "Ada".into(),
                phone: None,
                active: true,
                created_at: now,
                updated_at: now,
            },
        };
        let key = store::KeyRow {
            kid: "kid-1".into(),
            private_key: "the-private-key".into(),
            created_at: now,
        };
        let user = UserRow {
            id: "u".into(),
            email: "ada@example.org".into(),
            password_hash: "$argon2id$the-hash".into(),
            name: "Ada".into(),
            phone: None,
            role: "customer".into(),
            active: true,
            created_at: now,
            updated_at: now,
        };
        let printed = format!("{session:?} {key:?} {user:?}");
        for secret in [
            "the-access-token",
            "the-refresh-token",
            "the-private-key",
            "the-hash",
        ] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("kid-1") && printed.contains("ada@example.org"));
    }

    #[tokio::test]
    async fn the_decoy_costs_what_a_real_hash_costs_and_matches_nothing() {
        let passwords = Passwords::new();
        let real = passwords.hash("a real password").await.unwrap();
        let params = |phc: &str| {
            let hash = PasswordHash::new(phc).unwrap();
            (
                hash.algorithm.to_string(),
                hash.version,
                hash.params.to_string(),
            )
        };
        assert_eq!(params(DECOY), params(&real));
        assert!(!passwords.verify("a real password", None).await.unwrap());
        assert!(
            passwords
                .verify("a real password", Some(&real))
                .await
                .unwrap()
        );
        assert!(!passwords.verify("another", Some(&real)).await.unwrap());
    }
}
