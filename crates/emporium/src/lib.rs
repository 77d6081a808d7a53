//! Wires services to their stores and starts them: the whole shop in one
//! process (`up`) or the named services (`serve`), through the same code.

pub mod load;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use emporium_platform::auth::{Issuer, Verifier};
use emporium_platform::config::{Service, Settings};
use emporium_platform::{Runtime, bus};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The services running in this process and where they listen.
pub struct Shop {
    pub runtime: Runtime,
    pub catalog: Option<emporium_catalog::Started>,
    pub gateway: Option<emporium_gateway::Started>,
}

impl Shop {
    pub fn gateway_url(&self) -> Option<String> {
        self.gateway
            .as_ref()
            .map(|g| format!("http://{}", g.http_addr))
    }

    /// Where each service listens, for printing.
    pub fn addresses(&self) -> Vec<(&'static str, &'static str, SocketAddr)> {
        let mut out = vec![];
        if let Some(g) = &self.gateway {
            out.push(("gateway", "http", g.http_addr));
        }
        if let Some(c) = &self.catalog {
            out.push(("catalog", "http", c.http_addr));
            out.push(("catalog", "grpc", c.grpc_addr));
        }
        out
    }

    /// Stops consumers and servers, flushes outbox relays, and waits for
    /// every task (at most `grace`).
    pub async fn stop(self, grace: Duration) {
        self.runtime.shutdown.cancel();
        self.runtime.tasks.close();
        if tokio::time::timeout(grace, self.runtime.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "tasks still running after the grace period"
            );
        }
    }
}

/// Starts `services` (in dependency order) on the stores the settings name.
pub async fn start(
    settings: Settings,
    services: &[Service],
    shutdown: CancellationToken,
) -> anyhow::Result<Shop> {
    emporium_platform::install_crypto();
    emporium_platform::telemetry::metrics_handle();
    let transport = bus::transport_from_settings(&settings.bus)?;
    let verifier = Verifier::from_settings(&settings.auth).await?;
    if settings.auth.jwks_file.is_none() && settings.auth.jwks_url.is_none() {
        tracing::warn!("no auth.jwks_url or auth.jwks_file: every token will be refused");
    }
    let runtime = Runtime {
        settings: Arc::new(settings),
        transport,
        verifier,
        shutdown,
        tasks: TaskTracker::new(),
    };
    let mut shop = Shop {
        runtime: runtime.clone(),
        catalog: None,
        gateway: None,
    };
    for service in Service::ALL.into_iter().filter(|s| services.contains(s)) {
        match service {
            Service::Catalog => shop.catalog = Some(emporium_catalog::start(&runtime).await?),
            Service::Gateway => {
                let local = shop.catalog.as_ref().map(|c| c.http_addr);
                shop.gateway = Some(emporium_gateway::start(&runtime, local).await?);
            }
        }
    }
    Ok(shop)
}

/// The whole shop on embedded stores: a development signing key under the
/// data dir (until identity issues tokens), every service, and the demo
/// catalog on first start.
pub async fn up(
    mut settings: Settings,
    seed: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<(Shop, Issuer)> {
    let (issuer, jwks) =
        Issuer::load_or_create(&settings.auth.issuer, &settings.data_dir.join("keys"))?;
    if settings.auth.jwks_file.is_none() && settings.auth.jwks_url.is_none() {
        settings.auth.jwks_file = Some(jwks);
    }
    let shop = start(settings, &Service::ALL, shutdown).await?;
    if seed && let Some(catalog) = &shop.catalog {
        let added = emporium_catalog::seed::seed_demo(&catalog.catalog).await?;
        if added > 0 {
            tracing::info!(products = added, "demo catalog seeded");
        }
    }
    Ok((shop, issuer))
}

/// Applies the migrations of `services` to their configured stores.
pub async fn migrate(settings: &Settings, services: &[Service]) -> anyhow::Result<()> {
    for service in services {
        match service {
            Service::Catalog => {
                let db = emporium_platform::db::connect(&settings.database_url(Service::Catalog))
                    .await?;
                emporium_platform::db::migrate::<emporium_catalog::migrations::Migrator>(&db)
                    .await?;
                tracing::info!(
                    service = "catalog",
                    backend = emporium_platform::db::backend_name(&db),
                    "migrations applied"
                );
            }
            Service::Gateway => {}
        }
    }
    Ok(())
}
