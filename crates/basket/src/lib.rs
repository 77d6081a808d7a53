//! The basket service: one basket per user, its lines priced from the
//! catalog and checked against it on every read, kept in Redis (or SQL in
//! `emporium up`) without losing a concurrent change.

pub mod baskets;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod migrations;
pub mod openapi;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use emporium_platform::config::{
    Plain, Production, Secret, Section, SectionDef, Settings, loopback,
};
use emporium_platform::grpc::{Peer, PeerPolicy, ServiceCredentials};
use emporium_platform::http::Check;
use emporium_platform::service::{Definition, Faces};
use emporium_platform::telemetry::{Kind, Metric};
use emporium_platform::{Runtime, Started, bus, db};
use serde::{Deserialize, Serialize};

pub use baskets::Baskets;

use crate::store::{BasketStore, RedisStore, SqlStore};

pub const NAME: &str = "basket";

/// The `[basket]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasketSettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// The outbox and inbox (and the baskets, without `redis_url`):
    /// `sqlite://…`, `postgres://…` or `mysql://…`; embedded SQLite when unset.
    pub database_url: Option<Secret>,
    /// Where baskets are kept in production (`redis://…`).
    pub redis_url: Option<Secret>,
    /// Prefix of the basket keys in Redis.
    pub redis_prefix: String,
    /// A basket left alone this long is forgotten.
    pub basket_ttl_secs: u64,
    /// Deadline of each call to the catalog.
    pub catalog_deadline_ms: u64,
}

impl Default for BasketSettings {
    fn default() -> Self {
        Self {
            http_addr: loopback(8007),
            grpc_addr: loopback(50051),
            database_url: None,
            redis_url: None,
            redis_prefix: "basket".into(),
            basket_ttl_secs: 30 * 24 * 3600,
            catalog_deadline_ms: 1500,
        }
    }
}

impl Section for BasketSettings {
    const NAME: &'static str = NAME;
    const PLAIN: Plain = Plain {
        http_port: true,
        grpc_port: true,
        database: Some(Production::Postgres),
        redis: Some("redis_url"),
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

/// How the binary knows the basket.
pub fn definition() -> Definition {
    Definition {
        metrics: METRICS,
        consumes: Some(emporium_platform::bus::Queue {
            name: events::QUEUE,
            interests: events::CONSUMES,
        }),
        name: NAME,
        section: SectionDef::of::<BasketSettings>(),
        start: |runtime, local| Box::pin(async move { start(&runtime, &local).await }),
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
        seed: None,
    }
}

async fn migrated(settings: &Settings) -> anyhow::Result<db::Db> {
    let own = settings.section::<BasketSettings>();
    let db = db::connect(&settings.database_url(NAME, own.database_url.as_ref())).await?;
    db::migrate::<migrations::Migrator>(&db).await?;
    Ok(db)
}

/// The store the settings name, and its readiness check (required: it is
/// where baskets live).
pub async fn open_store(
    own: &BasketSettings,
    db: &db::Db,
) -> anyhow::Result<(Arc<dyn BasketStore>, &'static str)> {
    let ttl = Duration::from_secs(own.basket_ttl_secs.max(60));
    Ok(match &own.redis_url {
        Some(url) if !url.expose().is_empty() => (
            Arc::new(RedisStore::connect(url, &own.redis_prefix, ttl).await?),
            "redis",
        ),
        _ => (Arc::new(SqlStore::new(db.clone(), ttl)), "basket store"),
    })
}

/// Opens the stores, reaches the catalog, consumes `order.confirmed`, binds
/// both ports and serves.
pub async fn start(runtime: &Runtime, local: &[Started]) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<BasketSettings>();
    let db = migrated(settings).await?;
    let (store, store_name) = open_store(&own, &db).await?;
    let catalog = Peer::of(
        "catalog",
        settings,
        local,
        PeerPolicy {
            deadline: Duration::from_millis(own.catalog_deadline_ms.max(1)),
            ..PeerPolicy::default()
        },
        &ServiceCredentials::for_service(settings, local, NAME)?,
    )?;
    let outbox = bus::Outbox::new();
    let baskets = Baskets::new(store.clone(), db.clone(), outbox.clone(), catalog);
    let store_check = Check::new(store_name, move || {
        let store = store.clone();
        async move { store.check().await }
    });
    let checks = vec![
        db::check(db.clone()),
        store_check,
        bus::check(runtime.transport.clone()),
    ];
    runtime
        .consume(
            NAME,
            events::QUEUE,
            events::CONSUMES,
            events::Consumer::shared(baskets.clone()),
        )
        .await?;
    let state = http::AppState {
        baskets: baskets.clone(),
        verifier: runtime.verifier.clone(),
    };
    let grpc_service =
        emporium_proto::basket::v1::baskets_server::BasketsServer::new(grpc::BasketGrpc {
            baskets,
        });
    let started = runtime
        .serve_faces(Faces {
            name: NAME,
            http_addr: own.http_addr,
            grpc_addr: own.grpc_addr,
            routes: http::router(state),
            checks,
            grpc: tonic::service::Routes::new(grpc_service),
            grpc_names: &["emporium.basket.v1.Baskets"],
            admission: grpc::ADMISSION,
        })
        .await?;
    runtime.relay(NAME, outbox, db);
    Ok(started)
}

/// This service's metrics (SPEC §9), declared when it starts.
pub const METRICS: &[Metric] = &[
    Metric::new(
        "basket_items_added_total",
        Kind::Counter,
        "Units added to baskets.",
    ),
    Metric::new(
        "basket_write_conflicts_total",
        Kind::Counter,
        "Basket writes retried because another write changed the basket first.",
    ),
    Metric::new(
        "baskets_cleared_total",
        Kind::Counter,
        "Baskets emptied, by reason (cleared by the shopper, order.confirmed).",
    )
    .zeros(&[&[("reason", "cleared")], &[("reason", "order.confirmed")]]),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use emporium_platform::config::{self, Sources};

    use super::*;

    fn load(env: &[(&str, &str)], lone: Option<&'static str>) -> Settings {
        let sources = Sources::from_pairs(env, lone);
        config::load(&sources, &[SectionDef::of::<BasketSettings>()]).unwrap()
    }

    /// Seed 002's basket variables, as a basket container gets them.
    #[test]
    fn the_seeds_variables_configure_the_basket_alone() {
        let env = [
            ("PORT", "8081"),
            ("GRPC_PORT", "50061"),
            ("REDIS_HOST", "basket-redis"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", "s3cret"),
            ("REDIS_DB", "2"),
            ("PRODUCT_SERVICE_URL", "localhost:50050"),
            ("DB_HOST", "basket-db"),
        ];
        let alone = load(&env, Some(NAME));
        let own = alone.section::<BasketSettings>();
        assert_eq!((own.http_addr.port(), own.grpc_addr.port()), (8081, 50061));
        assert_eq!(
            own.redis_url.as_ref().map(Secret::expose),
            Some("redis://:s3cret@basket-redis:6380/2")
        );
        assert_eq!(
            own.database_url.as_ref().map(Secret::expose),
            Some("postgres://postgres@basket-db:5432/basket")
        );
        assert_eq!(
            emporium_platform::service::peer_url(&alone, &[], "catalog").unwrap(),
            "http://localhost:50050"
        );
        let printed = alone.to_masked_toml();
        assert!(!printed.contains("s3cret"), "{printed}");
        // In the whole shop, none of them apply.
        let shop = load(&env, None);
        let own = shop.section::<BasketSettings>();
        assert_eq!(own.http_addr.port(), 8007);
        assert!(own.redis_url.is_none());
    }
}
