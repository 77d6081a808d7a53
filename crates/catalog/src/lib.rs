//! The catalog service: products, categories, full-text search and product
//! images.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod migrations;
pub mod openapi;
pub mod products;
pub mod seed;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use emporium_platform::config::{
    Plain, Production, Secret, Section, SectionDef, Settings, loopback,
};
use emporium_platform::service::{Definition, Faces, Seeded};
use emporium_platform::telemetry::{Kind, Metric};
use emporium_platform::{Runtime, Started, bus, cache, db, objects};
use serde::{Deserialize, Serialize};

pub use products::Catalog;

pub const NAME: &str = "catalog";

/// The `[catalog]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `sqlite://…`, `postgres://…` or `mysql://…`; embedded SQLite when unset.
    pub database_url: Option<Secret>,
    /// `memory://` or `redis://…`.
    pub cache_url: Secret,
    pub cache_ttl_secs: u64,
    /// `file:///dir`, `s3://KEY:SECRET@bucket?endpoint=…` or `memory://`
    /// (see `platform::objects::from_url`); a directory under the data dir
    /// when unset. A secret: its credentials never print.
    pub objects_url: Option<Secret>,
    /// Largest image upload accepted.
    pub image_limit_bytes: usize,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            http_addr: loopback(8006),
            grpc_addr: loopback(50050),
            database_url: None,
            cache_url: Secret::new("memory://"),
            cache_ttl_secs: 300,
            objects_url: None,
            image_limit_bytes: 5 * 1024 * 1024,
        }
    }
}

impl Section for CatalogSettings {
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

/// How the binary knows the catalog.
pub fn definition() -> Definition {
    Definition {
        metrics: METRICS,
        consumes: None,
        name: NAME,
        section: SectionDef::of::<CatalogSettings>(),
        start: |runtime, _local| Box::pin(async move { start(&runtime).await }),
        migrate: |settings| {
            Box::pin(async move {
                let own = settings.section::<CatalogSettings>();
                let db =
                    db::connect(&settings.database_url(NAME, own.database_url.as_ref())).await?;
                db::migrate::<migrations::Migrator>(&db).await?;
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
                let (catalog, ..) = open(&settings).await?;
                Ok(Seeded {
                    records: seed::seed_demo(&catalog).await? as u64,
                    notice: None,
                })
            })
        }),
    }
}

/// The catalog's stores, migrated, and its use cases over them.
async fn open(settings: &Settings) -> anyhow::Result<(Catalog, Stores)> {
    let own = settings.section::<CatalogSettings>();
    let db = db::connect(&settings.database_url(NAME, own.database_url.as_ref())).await?;
    db::migrate::<migrations::Migrator>(&db).await?;
    let cache = cache::from_url(&own.cache_url, NAME).await?;
    let objects = objects::from_url(
        &settings.objects_url(NAME, own.objects_url.as_ref().map(Secret::expose)),
    )?;
    let outbox = bus::Outbox::new();
    let catalog = Catalog::new(
        db.clone(),
        cache.clone(),
        objects.clone(),
        outbox.clone(),
        Duration::from_secs(own.cache_ttl_secs),
        own.image_limit_bytes,
    );
    Ok((
        catalog,
        Stores {
            db,
            cache,
            objects,
            outbox,
        },
    ))
}

/// What the catalog's use cases stand on, for its readiness and relay.
struct Stores {
    db: db::Db,
    cache: cache::SharedCache,
    objects: objects::SharedObjects,
    outbox: bus::Outbox,
}

/// Opens the stores, applies migrations, binds both ports and serves until
/// the runtime shuts down.
pub async fn start(runtime: &Runtime) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<CatalogSettings>();
    let (
        catalog,
        Stores {
            db,
            cache,
            objects,
            outbox,
        },
    ) = open(settings).await?;
    let checks = vec![
        db::check(db.clone()),
        cache::check(cache),
        bus::check(runtime.transport.clone()),
        objects::check(objects),
    ];
    let state = http::AppState {
        catalog: catalog.clone(),
        verifier: runtime.verifier.clone(),
    };
    let grpc_service =
        emporium_proto::catalog::v1::catalog_server::CatalogServer::new(grpc::CatalogGrpc {
            catalog: catalog.clone(),
            verifier: runtime.verifier.clone(),
        });
    let started = runtime
        .serve_faces(Faces {
            name: NAME,
            http_addr: own.http_addr,
            grpc_addr: own.grpc_addr,
            routes: http::router(state, own.image_limit_bytes),
            checks,
            grpc: tonic::service::Routes::new(grpc_service),
            grpc_names: &["emporium.catalog.v1.Catalog"],
            admission: grpc::ADMISSION,
        })
        .await?;
    runtime.relay(NAME, outbox, db);
    Ok(started)
}

/// This service's metrics (SPEC §9), declared when it starts.
pub const METRICS: &[Metric] = &[Metric::new(
    "catalog_cache_requests_total",
    Kind::Counter,
    "Product reads answered from the cache (hit) or the store (miss), by result.",
)
.zeros(&[&[("result", "hit")], &[("result", "miss")]])];
