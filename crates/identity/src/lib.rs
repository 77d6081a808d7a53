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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use emporium_platform::auth::{Issuer, Verifier};
use emporium_platform::config::{
    Plain, Production, Secret, Section, SectionDef, Settings, loopback,
};
use emporium_platform::service::{Definition, Faces, Seeded};
use emporium_platform::{Runtime, Started, bus, db};
use serde::{Deserialize, Serialize};

pub use accounts::Identity;

use crate::accounts::Policy;
use crate::keys::KeyRing;

pub const NAME: &str = "identity";

/// The `[identity]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `sqlite://…`, `postgres://…` or `mysql://…`; embedded SQLite when unset.
    pub database_url: Option<Secret>,
    /// Lifetime of an access token.
    pub access_ttl_secs: u64,
    /// Lifetime of a refresh token (each refresh makes a new one).
    pub refresh_ttl_secs: u64,
    /// A new signing key is made when the newest is this old.
    pub key_rotation_secs: u64,
    /// Failed sign-ins per account, and per client address, within
    /// `login_window_secs` before sign-in is refused for the rest of it.
    pub login_failures_per_account: u32,
    pub login_failures_per_address: u32,
    pub login_window_secs: u64,
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
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            key_rotation_secs: 30 * 24 * 3600,
            login_failures_per_account: 5,
            login_failures_per_address: 50,
            login_window_secs: 900,
            admin_email: None,
            admin_password: None,
            upkeep_secs: 30,
        }
    }
}

impl Section for IdentitySettings {
    const NAME: &'static str = NAME;
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
            failures_per_account: self.login_failures_per_account,
            failures_per_address: self.login_failures_per_address,
            failure_window: Duration::from_secs(self.login_window_secs),
        }
    }
}

/// How the binary knows identity.
pub fn definition() -> Definition {
    Definition {
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
        seed: Some(|settings, _local| {
            Box::pin(async move {
                let db = open(&settings).await?;
                let keys = key_ring(db.clone(), &settings, None).await?;
                let verifier = Verifier::from_jwks(&settings.auth, &keys.jwks())?;
                let own = settings.section::<IdentitySettings>();
                let identity = Identity::new(db, bus::Outbox::new(), keys, verifier, own.policy());
                seed_admin(&identity).await
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

async fn key_ring(
    db: db::Db,
    settings: &Settings,
    verifier: Option<Verifier>,
) -> anyhow::Result<KeyRing> {
    let own = settings.section::<IdentitySettings>();
    KeyRing::load(
        db,
        settings.auth.clone(),
        Duration::from_secs(own.key_rotation_secs),
        Duration::from_secs(own.access_ttl_secs),
        verifier,
    )
    .await
}

/// The key identity signs with now, read from its store: for development
/// tokens (`emporium token`) and tests.
pub async fn signing_issuer(settings: &Settings) -> anyhow::Result<Arc<Issuer>> {
    let db = open(settings).await?;
    Ok(key_ring(db, settings, None).await?.signing())
}

/// Opens the store, loads the keys (handing them to the verifier every
/// service of this process shares), binds both ports and serves.
pub async fn start(runtime: &Runtime) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<IdentitySettings>();
    let db = open(settings).await?;
    let keys = key_ring(db.clone(), settings, Some(runtime.verifier.clone())).await?;
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

/// Demo data: an admin with a generated password, shown once, when the
/// shop has none.
async fn seed_admin(identity: &Identity) -> anyhow::Result<Seeded> {
    const EMAIL: &str = "admin@emporium.local";
    let mut bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let password = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
    match identity.ensure_admin(EMAIL, &password).await {
        Ok(Some(_)) => Ok(Seeded {
            records: 1,
            notice: Some(format!(
                "admin sign-in  {EMAIL} / {password}  (shown once: keep it)"
            )),
        }),
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
