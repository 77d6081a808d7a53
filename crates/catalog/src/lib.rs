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

use emporium_platform::config::Service;
use emporium_platform::{Runtime, bus, cache, db, objects};

pub use products::Catalog;

/// A running catalog: where it listens, and its use cases for the binary
/// (demo seeding).
pub struct Started {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub catalog: Catalog,
}

/// Opens the stores, applies migrations, binds both ports and serves until
/// the runtime shuts down.
pub async fn start(runtime: &Runtime) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = &settings.catalog;
    let db = db::connect(&settings.database_url(Service::Catalog)).await?;
    db::migrate::<migrations::Migrator>(&db).await?;
    let cache = cache::from_url(&own.cache_url, "catalog").await?;
    let objects = objects::from_url(&settings.objects_url(Service::Catalog))?;
    let outbox = bus::Outbox::new();
    let catalog = Catalog::new(
        db.clone(),
        cache.clone(),
        objects,
        outbox.clone(),
        Duration::from_secs(own.cache_ttl_secs),
        own.image_limit_bytes,
    );

    let http_listener = emporium_platform::http::bind(own.http_addr, "catalog http").await?;
    let grpc_listener = emporium_platform::http::bind(own.grpc_addr, "catalog grpc").await?;
    let http_addr = http_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;

    let checks = vec![
        db::check(db.clone()),
        cache::check(cache),
        bus::check(runtime.transport.clone()),
    ];
    let state = http::AppState {
        catalog: catalog.clone(),
        verifier: runtime.verifier.clone(),
    };
    let router = emporium_platform::http::finish_router(
        "catalog",
        http::router(state, own.image_limit_bytes),
        checks,
        &settings.http,
    );
    let grpc_service =
        emporium_proto::catalog::v1::catalog_server::CatalogServer::new(grpc::CatalogGrpc {
            catalog: catalog.clone(),
            verifier: runtime.verifier.clone(),
        });
    let grpc_router = emporium_platform::grpc::router(
        "catalog",
        tonic::service::Routes::new(grpc_service),
        emporium_proto::DESCRIPTOR_SET,
        &["emporium.catalog.v1.Catalog"],
        &settings.http,
    )
    .await?;

    let shutdown = runtime.shutdown.clone();
    runtime.tasks.spawn(async move {
        if let Err(e) = emporium_platform::http::serve(http_listener, router, shutdown).await {
            tracing::error!(error = %e, "catalog http server stopped");
        }
    });
    let shutdown = runtime.shutdown.clone();
    runtime.tasks.spawn(async move {
        if let Err(e) = emporium_platform::http::serve(grpc_listener, grpc_router, shutdown).await {
            tracing::error!(error = %e, "catalog grpc server stopped");
        }
    });
    runtime.tasks.spawn(outbox.relay(
        db,
        runtime.transport.clone(),
        Duration::from_millis(settings.bus.relay_interval_ms),
        runtime.shutdown.clone(),
    ));
    tracing::info!(service = "catalog", http = %http_addr, grpc = %grpc_addr, "catalog listening");
    Ok(Started {
        http_addr,
        grpc_addr,
        catalog,
    })
}
