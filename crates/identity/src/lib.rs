//! The identity service: accounts, sign-in, sessions with rotating refresh
//! tokens, and the keys that sign every access token in the shop.

pub mod accounts;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod migrations;
pub mod openapi;
pub mod store;
pub mod throttle;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use emporium_platform::auth::{Issuer, Verifier};
use emporium_platform::config::{
    Plain, Production, Secret, Section, SectionDef, Settings, loopback,
};
use emporium_platform::files::write_private;
use emporium_platform::service::{Definition, Faces, Seeded};
use emporium_platform::telemetry::{Kind, Metric};
use emporium_platform::{Runtime, Started, bus, db};
use serde::{Deserialize, Serialize};

pub use accounts::Identity;

use crate::accounts::Policy;
use crate::keys::{KeyRing, Sealer};

pub const NAME: &str = "identity";

/// The `[identity]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `sqlite://…`, `postgres://…` or `mysql://…`; embedded SQLite when unset.
    pub database_url: Option<Secret>,
    /// Lifetime of an access token: also how long a token outlives a
    /// logout, a demotion or a disabled account, since services verify
    /// tokens without asking identity (decision 0016).
    pub access_ttl_secs: u64,
    /// Lifetime of a refresh token (each refresh makes a new one).
    pub refresh_ttl_secs: u64,
    /// A new signing key is made when the newest is this old.
    pub key_rotation_secs: u64,
    /// Failed sign-ins of one account from one client address that cost
    /// nothing; each further one waits `login_first_delay_ms`, doubled with
    /// every failure, at most `login_max_delay_secs`. The same account from
    /// another address is not held back.
    pub login_failures_per_account: u32,
    pub login_first_delay_ms: u64,
    pub login_max_delay_secs: u64,
    /// Failed sign-ins from one client address (an IPv6 /64), whatever the
    /// accounts, within `login_window_secs`, after which that address
    /// waits for the window to end. Failures are forgotten after the
    /// window too.
    pub login_failures_per_address: u32,
    pub login_window_secs: u64,
    /// Keys that seal the signing keys at rest (AES-256-GCM, each base64
    /// of 32 random bytes): the first seals, every one opens, so a key is
    /// rolled by putting a new one first. Required on PostgreSQL or
    /// MariaDB; on SQLite without one, a key is made and kept in the data
    /// dir, readable by its owner only.
    pub key_encryption_keys: Vec<Secret>,
    /// A file holding such keys, one a line, read after
    /// `key_encryption_keys`.
    pub key_encryption_key_file: Option<PathBuf>,
    /// The first admin, made at start when there is no admin
    /// (`EMPORIUM_ADMIN_EMAIL`, `EMPORIUM_ADMIN_PASSWORD`).
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret>,
    /// How often keys are reloaded (and rotated when due), expired refresh
    /// tokens pruned and the session gauge updated.
    pub upkeep_secs: u64,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            http_addr: loopback(8004),
            grpc_addr: loopback(50055),
            database_url: None,
            access_ttl_secs: 300,
            refresh_ttl_secs: 30 * 24 * 3600,
            key_rotation_secs: 30 * 24 * 3600,
            login_failures_per_account: 5,
            login_first_delay_ms: 1000,
            login_max_delay_secs: 900,
            login_failures_per_address: 50,
            login_window_secs: 900,
            admin_email: None,
            admin_password: None,
            key_encryption_keys: vec![],
            key_encryption_key_file: None,
            upkeep_secs: 30,
        }
    }
}

impl Section for IdentitySettings {
    const NAME: &'static str = NAME;
    const LIST_KEYS: &'static [&'static str] = &["key_encryption_keys"];
    const PLAIN: Plain = Plain {
        http_port: true,
        grpc_port: true,
        database: Some(Production::Postgres),
        redis: None,
        aliases: &[
            ("EMPORIUM_ADMIN_EMAIL", "admin_email"),
            ("EMPORIUM_ADMIN_PASSWORD", "admin_password"),
        ],
    };
    fn on_free_ports(self) -> Self {
        Self {
            http_addr: loopback(0),
            grpc_addr: loopback(0),
            ..self
        }
    }
}

impl IdentitySettings {
    fn policy(&self) -> Policy {
        Policy {
            access_ttl: Duration::from_secs(self.access_ttl_secs),
            refresh_ttl: Duration::from_secs(self.refresh_ttl_secs),
            sign_in: throttle::Limits {
                free_failures: self.login_failures_per_account,
                first_delay: Duration::from_millis(self.login_first_delay_ms),
                max_delay: Duration::from_secs(self.login_max_delay_secs),
                failures_per_address: self.login_failures_per_address,
                window: Duration::from_secs(self.login_window_secs),
            },
        }
    }
}

/// How the binary knows identity.
pub fn definition() -> Definition {
    Definition {
        metrics: METRICS,
        consumes: None,
        name: NAME,
        section: SectionDef::of::<IdentitySettings>(),
        start: |runtime, _local| Box::pin(async move { start(&runtime).await }),
        migrate: |settings| {
            Box::pin(async move {
                let db = open(&settings).await?;
                tracing::info!(
                    service = NAME,
                    backend = db::backend_name(&db),
                    "migrations applied"
                );
                Ok(())
            })
        },
        seed: Some(|settings, local| {
            Box::pin(async move {
                let sealer = sealer(&settings)?;
                let db = open(&settings).await?;
                let keys = key_ring(sealer, db.clone(), &settings, None).await?;
                let verifier = Verifier::from_jwks(&settings.auth, &keys.jwks())?;
                let own = settings.section::<IdentitySettings>();
                let identity = Identity::new(db, bus::Outbox::new(), keys, verifier, own.policy());
                // Identity running in this process is `emporium up`, whose
                // person at the terminal may read the password; elsewhere
                // (`emporium seed` in a container) logs are kept, so the
                // password goes to a file only its owner reads.
                let show = if local.iter().any(|s| s.name == NAME) {
                    AdminPassword::Print
                } else {
                    AdminPassword::File(settings.data_dir.join("identity-admin-password"))
                };
                let mut seeded = seed_admin(&identity, show).await?;
                // The demo customer who owns `up`'s past orders.
                if local.iter().any(|s| s.name == NAME) {
                    let customer = seed_demo_customer(&identity).await?;
                    seeded.records += customer.records;
                    if let Some(line) = customer.notice {
                        seeded.notice = Some(match seeded.notice {
                            Some(admin) => format!("{admin}\n  {line}"),
                            None => line,
                        });
                    }
                }
                Ok(seeded)
            })
        }),
    }
}

async fn open(settings: &Settings) -> anyhow::Result<db::Db> {
    let own = settings.section::<IdentitySettings>();
    let db = db::connect(&settings.database_url(NAME, own.database_url.as_ref())).await?;
    db::migrate::<migrations::Migrator>(&db).await?;
    Ok(db)
}

/// The keys of the store. `sealer` is read before the store is opened, so
/// that a missing key-encryption key stops the start before it touches
/// the database.
async fn key_ring(
    sealer: Sealer,
    db: db::Db,
    settings: &Settings,
    verifier: Option<Verifier>,
) -> anyhow::Result<KeyRing> {
    let own = settings.section::<IdentitySettings>();
    KeyRing::load(
        db,
        sealer,
        settings.auth.clone(),
        Duration::from_secs(own.key_rotation_secs),
        Duration::from_secs(own.access_ttl_secs),
        verifier,
    )
    .await
}

/// The key-encryption keys as configured. On SQLite without one, the key
/// kept in the data dir (made on first start); on any other database,
/// none is an error: a production store does not hold signing keys in the
/// clear.
fn sealer(settings: &Settings) -> anyhow::Result<Sealer> {
    let own = settings.section::<IdentitySettings>();
    let mut keys = own.key_encryption_keys.clone();
    if let Some(file) = &own.key_encryption_key_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            anyhow::anyhow!(
                "configuration: identity.key_encryption_key_file {}: {e}",
                file.display()
            )
        })?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(Secret::new),
        );
    }
    if keys.is_empty() {
        let url = settings.database_url(NAME, own.database_url.as_ref());
        if !url.expose().starts_with("sqlite:") {
            anyhow::bail!(
                "configuration: identity.key_encryption_keys (or identity.key_encryption_key_file) is required with the database {}: signing keys are not stored in the clear",
                url.masked()
            );
        }
        let file = settings.data_dir.join("identity-key-encryption.key");
        keys.push(Secret::new(embedded_key(&file)?));
    }
    Sealer::new(&keys)
        .map_err(|e| anyhow::anyhow!("configuration: identity.key_encryption_keys: {e}"))
}

/// The key-encryption key of an embedded shop, made on first use.
fn embedded_key(file: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(file) {
        Ok(key) => Ok(key.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Sealer::generate_key()?;
            write_private(file, format!("{key}\n").as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
            tracing::info!(file = %file.display(), "key-encryption key made for the signing keys");
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", file.display())),
    }
}

/// The key identity signs with now, read from its store: for development
/// tokens (`emporium token`) and tests.
pub async fn signing_issuer(settings: &Settings) -> anyhow::Result<Arc<Issuer>> {
    let sealer = sealer(settings)?;
    let db = open(settings).await?;
    Ok(key_ring(sealer, db, settings, None).await?.signing())
}

/// Opens the store, loads the keys (handing them to the verifier every
/// service of this process shares), binds both ports and serves.
pub async fn start(runtime: &Runtime) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<IdentitySettings>();
    let sealer = sealer(settings)?;
    let db = open(settings).await?;
    let keys = key_ring(sealer, db.clone(), settings, Some(runtime.verifier.clone())).await?;
    let outbox = bus::Outbox::new();
    let identity = Identity::new(
        db.clone(),
        outbox.clone(),
        keys.clone(),
        runtime.verifier.clone(),
        own.policy(),
    );
    if let (Some(email), Some(password)) = (&own.admin_email, &own.admin_password)
        && let Some(admin) = identity
            .ensure_admin(email, password.expose())
            .await
            .map_err(|e| {
                anyhow::anyhow!("configuration: identity.admin_email/admin_password: {e:?}")
            })?
    {
        tracing::info!(user_id = %admin.id, "first admin created from configuration");
    }

    let state = http::AppState {
        identity: identity.clone(),
        verifier: runtime.verifier.clone(),
    };
    let grpc_service =
        emporium_proto::identity::v1::identity_server::IdentityServer::new(grpc::IdentityGrpc {
            identity: identity.clone(),
            service_secrets: settings.auth.service_secrets.clone(),
            service_token_ttl: Duration::from_secs(settings.auth.service_token_secs.max(60)),
        });
    let started = runtime
        .serve_faces(Faces {
            name: NAME,
            http_addr: own.http_addr,
            grpc_addr: own.grpc_addr,
            routes: http::router(state),
            checks: vec![db::check(db.clone()), bus::check(runtime.transport.clone())],
            grpc: tonic::service::Routes::new(grpc_service),
            grpc_names: &["emporium.identity.v1.Identity"],
            admission: grpc::ADMISSION,
        })
        .await?;
    runtime.relay(NAME, outbox, db.clone());
    runtime.spawn(
        NAME,
        "upkeep",
        upkeep(
            identity.clone(),
            db,
            Duration::from_secs(own.upkeep_secs.max(1)),
            runtime.shutdown.clone(),
        ),
    );
    Ok(started)
}

/// Where the generated admin password goes.
enum AdminPassword {
    /// Into the notice shown at the terminal.
    Print,
    /// Into this file, readable by its owner only; the notice names it.
    File(PathBuf),
}

/// Demo data: an admin with a generated password, handed over once, when
/// the shop has none.
/// The demo customer of `emporium up`, with a password made and shown once.
async fn seed_demo_customer(identity: &Identity) -> anyhow::Result<Seeded> {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let password = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
    match identity.ensure_demo_customer(&password).await {
        Ok(Some(_)) => Ok(Seeded {
            records: 1,
            notice: Some(format!(
                "shopper        {} / {password}  (owns the demo orders; shown once)",
                emporium_platform::demo::CUSTOMER_EMAIL
            )),
        }),
        Ok(None) => Ok(Seeded::default()),
        Err(e) => Err(anyhow::anyhow!("cannot create the demo customer: {e}")),
    }
}

/// The demo admin's address, when `identity.admin_email` names none.
pub const DEMO_ADMIN_EMAIL: &str = "admin@emporium.local";

async fn seed_admin(identity: &Identity, show: AdminPassword) -> anyhow::Result<Seeded> {
    const EMAIL: &str = DEMO_ADMIN_EMAIL;
    let mut bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let password = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
    // The file is written before the admin is made, so that an admin never
    // exists whose password was lost; it is put in place only if the admin
    // was made, so that a seeding run that makes none keeps the old file.
    let pending = match &show {
        AdminPassword::Print => None,
        AdminPassword::File(file) => {
            let pending = file.with_extension("new");
            write_private(&pending, format!("{password}\n").as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", pending.display()))?;
            Some(pending)
        }
    };
    let made = identity.ensure_admin(EMAIL, &password).await;
    if let (Some(pending), Ok(None) | Err(_)) = (&pending, &made) {
        let _ = std::fs::remove_file(pending);
    }
    match made {
        Ok(Some(_)) => {
            let notice = match (show, pending) {
                (AdminPassword::File(file), Some(pending)) => {
                    std::fs::rename(&pending, &file)?;
                    format!(
                        "admin sign-in  {EMAIL}: password in {} (readable by its owner only: keep it, then delete the file)",
                        std::path::absolute(&file).unwrap_or(file).display()
                    )
                }
                _ => format!("admin sign-in  {EMAIL} / {password}  (shown once: keep it)"),
            };
            Ok(Seeded {
                records: 1,
                notice: Some(notice),
            })
        }
        Ok(None) => Ok(Seeded::default()),
        Err(e) => Err(anyhow::anyhow!("cannot create the demo admin: {e}")),
    }
}

/// Reloads the keys (another replica may have rotated, or rotation is
/// due), prunes dead refresh tokens and sets `active_sessions_current`.
async fn upkeep(
    identity: Identity,
    db: db::Db,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        if let Err(e) = identity.keys().reload().await {
            tracing::warn!(error = %e, "signing keys not reloaded");
        }
        match store::prune_refresh(&db, chrono::Utc::now() - chrono::Duration::days(1)).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "expired refresh tokens pruned"),
            Err(e) => tracing::warn!(error = %e, "refresh tokens not pruned"),
        }
        match identity.active_sessions().await {
            Ok(n) => metrics::gauge!("active_sessions_current").set(n as f64),
            Err(e) => tracing::warn!(error = %e, "sessions not counted"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// This service's metrics (SPEC §9), declared when it starts.
pub const METRICS: &[Metric] = &[
    Metric::new(
        "users_registered_total",
        Kind::Counter,
        "Accounts registered.",
    ),
    Metric::new(
        "registrations_of_taken_emails_total",
        Kind::Counter,
        "Registrations of an email that already has an account, answered as a new one and not made.",
    ),
    Metric::new(
        "login_attempts_total",
        Kind::Counter,
        "Sign-in attempts, by status (success, failure, throttled).",
    )
    .zeros(&[
        &[("status", "success")],
        &[("status", "failure")],
        &[("status", "throttled")],
    ]),
    Metric::new(
        "jwt_tokens_issued_total",
        Kind::Counter,
        "Access tokens issued to users, at sign-in and refresh.",
    ),
    Metric::new(
        "active_sessions_current",
        Kind::Gauge,
        "Refresh sessions neither expired nor ended.",
    ),
    Metric::new(
        "service_tokens_issued_total",
        Kind::Counter,
        "Tokens issued to services for calls between them, by service.",
    )
    .zeros(&[]),
    Metric::new(
        "service_tokens_refused_total",
        Kind::Counter,
        "Service token requests refused: unknown service or wrong secret.",
    ),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use emporium_platform::config::{self, Sources};

    use super::*;

    fn load(env: &[(&str, &str)], lone: Option<&'static str>) -> Settings {
        let sources = Sources::from_pairs(env, lone);
        config::load(&sources, &[SectionDef::of::<IdentitySettings>()]).unwrap()
    }

    #[test]
    fn signing_keys_need_a_key_encryption_key_off_sqlite() {
        let dir = tempfile_dir();
        let data = [("EMPORIUM__DATA_DIR", dir.to_str().unwrap())];
        let production = [
            data[0],
            ("DATABASE_URL", "postgres://postgres@db:5432/identity"),
        ];
        let refused = sealer(&load(&production, Some(NAME))).err().unwrap();
        assert!(
            refused.to_string().contains("key_encryption_keys"),
            "{refused}"
        );
        let keyed = [
            production[0],
            production[1],
            (
                "EMPORIUM__IDENTITY__KEY_ENCRYPTION_KEYS",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
            ),
        ];
        assert!(sealer(&load(&keyed, Some(NAME))).is_ok());
        assert!(!dir.join("identity-key-encryption.key").exists());
        // Embedded: a key is made once, readable by its owner only.
        let embedded = load(&data, None);
        assert!(!sealer(&embedded).unwrap().is_empty());
        let file = dir.join("identity-key-encryption.key");
        let made = std::fs::read_to_string(&file).unwrap();
        sealer(&embedded).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), made, "kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("identity-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_first_admin_and_the_seeds_variables_configure_identity() {
        let env = [
            ("EMPORIUM_ADMIN_EMAIL", "root@example.org"),
            ("EMPORIUM_ADMIN_PASSWORD", "a very long secret"),
            ("PORT", "9004"),
            ("GRPC_PORT", "9055"),
            ("DB_HOST", "users-db"),
            ("DB_PASSWORD", "pw"),
        ];
        // In the whole shop, the admin variables apply; PORT and DB_* do not.
        let shop = load(&env, None);
        let own = shop.section::<IdentitySettings>();
        assert_eq!(own.admin_email.as_deref(), Some("root@example.org"));
        assert_eq!(
            own.admin_password.as_ref().map(Secret::expose),
            Some("a very long secret")
        );
        assert_eq!(own.http_addr.port(), 8004);
        assert!(own.database_url.is_none());
        // Alone, the service takes its port and PostgreSQL from them.
        let alone = load(&env, Some(NAME));
        let own = alone.section::<IdentitySettings>();
        assert_eq!((own.http_addr.port(), own.grpc_addr.port()), (9004, 9055));
        assert_eq!(
            own.database_url.as_ref().map(Secret::expose),
            Some("postgres://postgres:pw@users-db:5432/identity")
        );
        let printed = alone.to_masked_toml();
        assert!(!printed.contains("a very long secret"), "{printed}");
        assert!(!printed.contains(":pw@"), "{printed}");
    }
}
