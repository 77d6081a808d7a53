//! The inventory service: stock per SKU and warehouse, a ledger of every
//! change, and reservations that hold stock for orders until they are
//! committed, released or expire. Never oversells.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod migrations;
pub mod openapi;
pub mod seed;
pub mod stock;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use emporium_platform::config::{
    Plain, Production, Secret, Section, SectionDef, Settings, loopback,
};
use emporium_platform::service::{Definition, Faces, Seeded};
use emporium_platform::telemetry::{Kind, Metric};
use emporium_platform::{Runtime, Started, bus, cache, db};
use serde::{Deserialize, Serialize};

pub use stock::Inventory;

use crate::domain::Warehouse;
use crate::stock::Policy;

pub const NAME: &str = "inventory";

/// The `[inventory]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `sqlite://…`, `postgres://…` or `mysql://…`; embedded SQLite when unset.
    pub database_url: Option<Secret>,
    /// `memory://` or `redis://…`: where `GET /inventory/{sku}` answers
    /// are cached. Reservations never read it.
    pub cache_url: Secret,
    pub cache_ttl_secs: u64,
    /// How long a reservation is held when the caller does not say.
    pub reservation_ttl_secs: u64,
    /// Warehouses a new product gets (zeroed) stock rows in.
    pub warehouses: Vec<String>,
    /// The low-stock threshold of a new row.
    pub low_stock_threshold: i64,
    /// How often expired reservations are released.
    pub sweep_interval_ms: u64,
}

impl Default for InventorySettings {
    fn default() -> Self {
        Self {
            http_addr: loopback(8002),
            grpc_addr: loopback(50054),
            database_url: None,
            cache_url: Secret::new("memory://"),
            cache_ttl_secs: 30,
            reservation_ttl_secs: 900,
            warehouses: vec!["east".into(), "west".into()],
            low_stock_threshold: 5,
            sweep_interval_ms: 1000,
        }
    }
}

impl Section for InventorySettings {
    const NAME: &'static str = NAME;
    const PLAIN: Plain = Plain {
        http_port: true,
        grpc_port: true,
        database: Some(Production::Postgres),
        redis: Some("cache_url"),
        aliases: &[],
    };
    fn on_free_ports(self) -> Self {
        Self {
            http_addr: loopback(0),
            grpc_addr: loopback(0),
            ..self
        }
    }
}

impl InventorySettings {
    fn policy(&self) -> anyhow::Result<Policy> {
        let warehouses = self
            .warehouses
            .iter()
            .map(|w| {
                Warehouse::parse(w)
                    .map_err(|e| anyhow::anyhow!("configuration: inventory.warehouses `{w}` {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if warehouses.is_empty() {
            anyhow::bail!("configuration: inventory.warehouses must name at least one warehouse");
        }
        if !(1..=domain::MAX_TTL_SECS as u64).contains(&self.reservation_ttl_secs) {
            anyhow::bail!(
                "configuration: inventory.reservation_ttl_secs must be from 1 to {}",
                domain::MAX_TTL_SECS
            );
        }
        Ok(Policy {
            reservation_ttl: Duration::from_secs(self.reservation_ttl_secs),
            warehouses,
            threshold: self.low_stock_threshold.max(0),
            cache_ttl: Duration::from_secs(self.cache_ttl_secs),
        })
    }
}

/// How the binary knows inventory.
pub fn definition() -> Definition {
    Definition {
        metrics: METRICS,
        consumes: Some(emporium_platform::bus::Queue {
            name: events::QUEUE,
            interests: events::CONSUMES,
        }),
        name: NAME,
        section: SectionDef::of::<InventorySettings>(),
        start: |runtime, _local| Box::pin(async move { start(&runtime).await }),
        migrate: |settings| {
            Box::pin(async move {
                let db = migrated(&settings).await?;
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
                let (inventory, ..) = open(&settings).await?;
                Ok(Seeded {
                    records: seed::seed_demo(&inventory).await? as u64,
                    notice: None,
                })
            })
        }),
    }
}

async fn migrated(settings: &Settings) -> anyhow::Result<db::Db> {
    let own = settings.section::<InventorySettings>();
    let db = db::connect(&settings.database_url(NAME, own.database_url.as_ref())).await?;
    db::migrate::<migrations::Migrator>(&db).await?;
    Ok(db)
}

async fn open(
    settings: &Settings,
) -> anyhow::Result<(Inventory, db::Db, cache::SharedCache, bus::Outbox)> {
    let own = settings.section::<InventorySettings>();
    let policy = own.policy()?;
    let db = migrated(settings).await?;
    let cache = cache::from_url(&own.cache_url, NAME).await?;
    let outbox = bus::Outbox::new();
    let inventory = Inventory::new(db.clone(), outbox.clone(), cache.clone(), policy);
    Ok((inventory, db, cache, outbox))
}

/// Opens the store, consumes its events, sweeps expired reservations,
/// binds both ports and serves.
pub async fn start(runtime: &Runtime) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<InventorySettings>();
    let (inventory, db, cache, outbox) = open(settings).await?;
    let checks = vec![
        db::check(db.clone()),
        cache::check(cache),
        bus::check(runtime.transport.clone()),
    ];
    let state = http::AppState {
        inventory: inventory.clone(),
        verifier: runtime.verifier.clone(),
    };
    let grpc_service = emporium_proto::inventory::v1::inventory_server::InventoryServer::new(
        grpc::InventoryGrpc {
            inventory: inventory.clone(),
        },
    );
    runtime
        .consume(
            NAME,
            events::QUEUE,
            events::CONSUMES,
            events::Consumer::shared(inventory.clone()),
        )
        .await?;
    let started = runtime
        .serve_faces(Faces {
            name: NAME,
            http_addr: own.http_addr,
            grpc_addr: own.grpc_addr,
            routes: http::router(state),
            checks,
            grpc: tonic::service::Routes::new(grpc_service),
            grpc_names: &["emporium.inventory.v1.Inventory"],
            admission: grpc::ADMISSION,
        })
        .await?;
    runtime.relay(NAME, outbox, db);
    if let Err(e) = inventory.refresh_gauges().await {
        tracing::warn!(error = %e, "stock gauges not set");
    }
    runtime.spawn(
        NAME,
        "sweeper",
        sweeper(
            inventory,
            Duration::from_millis(own.sweep_interval_ms.max(10)),
            runtime.shutdown.clone(),
        ),
    );
    Ok(started)
}

/// Releases expired reservations and counts low-stock rows until shutdown.
async fn sweeper(
    inventory: Inventory,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        loop {
            match inventory.sweep(100).await {
                Ok(100) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "expired reservations not swept");
                    break;
                }
            }
        }
        if let Err(e) = inventory.count_low().await {
            tracing::warn!(error = %e, "low stock not counted");
        }
    }
}

/// This service's metrics (SPEC §9), declared when it starts.
pub const METRICS: &[Metric] = &[
    Metric::new(
        "inventory_reservations_total",
        Kind::Counter,
        "Reservation requests, by outcome (reserved, insufficient, refused).",
    )
    .zeros(&[
        &[("outcome", "reserved")],
        &[("outcome", "insufficient")],
        &[("outcome", "refused")],
    ]),
    Metric::new(
        "inventory_reservations_expired_total",
        Kind::Counter,
        "Reservations released because they outlived their time to live.",
    ),
    Metric::new(
        "inventory_low_stock_items",
        Kind::Gauge,
        "Stock rows (SKU and warehouse) whose available quantity is at or below their threshold.",
    ),
    Metric::new(
        "inventory_stock_level",
        Kind::Gauge,
        "Units available (on hand less reserved), by SKU and warehouse, as last written.",
    )
    .zeros(&[]),
    Metric::new(
        "inventory_operations_duration_seconds",
        Kind::Histogram,
        "Time a stock operation took, in seconds, by operation.",
    )
    .zeros(&[
        &[("operation", "adjust")],
        &[("operation", "reserve")],
        &[("operation", "commit")],
        &[("operation", "release")],
        &[("operation", "cancel")],
        &[("operation", "expire")],
    ]),
    Metric::new(
        "inventory_cache_requests_total",
        Kind::Counter,
        "Stock reads answered from the cache (hit) or the store (miss), by result.",
    )
    .zeros(&[&[("result", "hit")], &[("result", "miss")]]),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use emporium_platform::config::{self, Sources};

    use super::*;

    fn load(env: &[(&str, &str)], lone: Option<&'static str>) -> anyhow::Result<Settings> {
        let sources = Sources::from_pairs(env, lone);
        Ok(config::load(
            &sources,
            &[SectionDef::of::<InventorySettings>()],
        )?)
    }

    #[test]
    fn the_seeds_variables_configure_inventory_alone() {
        let env = [
            ("PORT", "9002"),
            ("GRPC_PORT", "9054"),
            ("DB_HOST", "stock-db"),
            ("REDIS_HOST", "stock-cache"),
        ];
        let alone = load(&env, Some(NAME)).unwrap();
        let own = alone.section::<InventorySettings>();
        assert_eq!((own.http_addr.port(), own.grpc_addr.port()), (9002, 9054));
        assert_eq!(
            own.database_url.as_ref().map(Secret::expose),
            Some("postgres://postgres@stock-db:5432/inventory")
        );
        assert_eq!(own.cache_url.expose(), "redis://stock-cache:6379/0");
        let shop = load(&env, None).unwrap();
        assert_eq!(shop.section::<InventorySettings>().http_addr.port(), 8002);
    }

    #[test]
    fn bad_warehouses_or_ttl_stop_start_up_with_their_name() {
        let mut own = InventorySettings {
            warehouses: vec!["East Coast".into()],
            ..InventorySettings::default()
        };
        let err = own.policy().unwrap_err().to_string();
        assert!(err.contains("inventory.warehouses"), "{err}");
        own.warehouses = vec![];
        assert!(own.policy().is_err());
        own.warehouses = vec!["east".into()];
        own.reservation_ttl_secs = 0;
        let err = own.policy().unwrap_err().to_string();
        assert!(err.contains("reservation_ttl_secs"), "{err}");
    }
}
