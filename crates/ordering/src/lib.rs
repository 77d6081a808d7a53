//! The ordering service: orders, the checkout saga that makes them, and
//! their way from confirmed to delivered (or cancelled).

pub mod checkout;
pub mod domain;
pub mod events;
pub mod http;
pub mod migrations;
pub mod openapi;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use emporium_platform::config::{
    Plain, Production, Secret, Section, SectionDef, Settings, loopback,
};
use emporium_platform::grpc::{Peer, PeerPolicy, ServiceCredentials};
use emporium_platform::service::{Definition, Faces, Seeded};
use emporium_platform::telemetry::{Kind, Metric};
use emporium_platform::{Runtime, Started, bus, db, idempotency};
use serde::{Deserialize, Serialize};

pub use checkout::Orders;

use crate::checkout::Peers;

pub const NAME: &str = "ordering";

/// The `[ordering]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderingSettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `sqlite://…`, `postgres://…` or `mysql://…`; embedded SQLite when unset.
    pub database_url: Option<Secret>,
    /// Where `Idempotency-Key`s live in production; the database otherwise.
    pub redis_url: Option<Secret>,
    pub redis_prefix: String,
    /// The key of the HMAC kept for each request's fingerprint (a body
    /// holds a card number); made under the data dir when unset. Replicas
    /// that share `redis_url` need the same one.
    pub fingerprint_key: Option<Secret>,
    pub idempotency_ttl_secs: u64,
    /// How long inventory holds a checkout's stock.
    pub reservation_ttl_secs: i64,
    /// Deadline of each call to another service.
    pub peer_deadline_ms: u64,
    /// A checkout left unfinished this long is resumed (or undone).
    pub resume_after_secs: u64,
    /// How often unfinished checkouts are looked for.
    pub resume_every_secs: u64,
}

impl Default for OrderingSettings {
    fn default() -> Self {
        Self {
            http_addr: loopback(8001),
            grpc_addr: loopback(50053),
            database_url: None,
            redis_url: None,
            redis_prefix: "ordering".into(),
            fingerprint_key: None,
            idempotency_ttl_secs: 24 * 3600,
            reservation_ttl_secs: 900,
            peer_deadline_ms: 3000,
            resume_after_secs: 30,
            resume_every_secs: 5,
        }
    }
}

impl Section for OrderingSettings {
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

/// How the binary knows ordering.
pub fn definition() -> Definition {
    Definition {
        metrics: METRICS,
        consumes: None,
        name: NAME,
        section: SectionDef::of::<OrderingSettings>(),
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
        seed: Some(|settings, local| Box::pin(async move { seed(&settings, &local).await })),
    }
}

/// Orders on `db`, reaching the peers the settings name or that run here.
fn orders(
    settings: &Settings,
    local: &[Started],
    db: &db::Db,
    outbox: &bus::Outbox,
) -> anyhow::Result<Orders> {
    let own = settings.section::<OrderingSettings>();
    let policy = PeerPolicy {
        deadline: Duration::from_millis(own.peer_deadline_ms.max(1)),
        ..PeerPolicy::default()
    };
    let credentials = ServiceCredentials::for_service(settings, local, NAME)?;
    let peer = |name: &'static str| Peer::of(name, settings, local, policy, &credentials);
    let peers = Peers {
        catalog: peer("catalog")?,
        inventory: peer("inventory")?,
        payment: peer("payment")?,
        basket: peer("basket")?,
    };
    Ok(Orders::new(
        db.clone(),
        outbox.clone(),
        peers,
        own.reservation_ttl_secs.max(1),
    ))
}

/// A few past orders of a demo customer, made through the real checkout
/// (so payments, stock and events agree), several items each: one
/// delivered, one shipped, one confirmed. Only when the shop has no order yet and the catalog runs in
/// this process (`emporium up`), since the products are listed through it.
async fn seed(settings: &Settings, local: &[Started]) -> anyhow::Result<Seeded> {
    let Some(catalog) = local.iter().find(|s| s.name == "catalog") else {
        tracing::info!("past orders are seeded by `emporium up`, with the shop running");
        return Ok(Seeded::default());
    };
    let db = migrated(settings).await?;
    let outbox = bus::Outbox::new();
    let orders = match orders(settings, local, &db, &outbox) {
        Ok(orders) => orders,
        Err(e) => {
            tracing::info!(error = %e, "past orders not seeded");
            return Ok(Seeded::default());
        }
    };
    if orders.list(None, None, 1, 1).await?.total > 0 {
        return Ok(Seeded::default());
    }
    use tower::ServiceExt;
    let request = axum::http::Request::get("/api/v1/products?per_page=3&sort=price")
        .body(axum::body::Body::empty())?;
    let response = catalog.router.clone().oneshot(request).await?;
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let page: serde_json::Value = serde_json::from_slice(&bytes)?;
    let ids: Vec<uuid::Uuid> = page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|p| {
                    p["id"]
                        .as_str()
                        .and_then(|id| uuid::Uuid::parse_str(id).ok())
                })
                .collect()
        })
        .unwrap_or_default();
    // Three orders that share the second and third products, the second
    // order with the first as well, so that "also bought" has pairs to
    // show for each; the cheapest product (stocked low) is bought once.
    let baskets: Vec<Vec<(uuid::Uuid, i64)>> = match ids.as_slice() {
        [first, second, third] => vec![
            vec![(*second, 1), (*third, 1)],
            vec![(*first, 1), (*second, 1), (*third, 1)],
            vec![(*second, 1), (*third, 1)],
        ],
        _ => ids.iter().map(|id| vec![(*id, 1)]).collect(),
    };
    let mut made = 0;
    for (index, items) in baskets.into_iter().enumerate() {
        let checkout = domain::Checkout {
            items: Some(items),
            card_number: "4242424242424242".into(),
        };
        let order = orders
            .checkout(emporium_platform::demo::CUSTOMER_ID, &checkout)
            .await?;
        let id = uuid::Uuid::parse_str(&order.id)?;
        let steps: &[domain::Status] = match index {
            0 => &[
                domain::Status::Processing,
                domain::Status::Shipped,
                domain::Status::Delivered,
            ],
            1 => &[domain::Status::Processing, domain::Status::Shipped],
            _ => &[],
        };
        for step in steps {
            orders.fulfil(id, *step).await?;
        }
        made += 1;
    }
    Ok(Seeded {
        records: made,
        notice: None,
    })
}

async fn migrated(settings: &Settings) -> anyhow::Result<db::Db> {
    let own = settings.section::<OrderingSettings>();
    let db = db::connect(&settings.database_url(NAME, own.database_url.as_ref())).await?;
    db::migrate::<migrations::Migrator>(&db).await?;
    Ok(db)
}

/// Opens the store, reaches its peers, binds both ports, resumes what a
/// crash left unfinished, and serves.
pub async fn start(runtime: &Runtime, local: &[Started]) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<OrderingSettings>();
    let db = migrated(settings).await?;
    let keys = idempotency::keyed(
        idempotency::from_settings(own.redis_url.as_ref(), &own.redis_prefix, &db).await?,
        &idempotency::fingerprint_key(own.fingerprint_key.as_ref(), &settings.data_dir, NAME)?,
    );
    let outbox = bus::Outbox::new();
    let orders = orders(settings, local, &db, &outbox)?;
    let checks = vec![
        db::check(db.clone()),
        idempotency::check(keys.clone(), "idempotency store"),
        bus::check(runtime.transport.clone()),
    ];
    let state = http::AppState {
        orders: orders.clone(),
        verifier: runtime.verifier.clone(),
        keys,
        key_ttl: Duration::from_secs(own.idempotency_ttl_secs.max(60)),
    };
    let started = runtime
        .serve_faces(Faces {
            name: NAME,
            http_addr: own.http_addr,
            grpc_addr: own.grpc_addr,
            routes: http::router(state),
            checks,
            grpc: tonic::service::Routes::default(),
            grpc_names: &[],
            admission: &[],
        })
        .await?;
    runtime.relay(NAME, outbox, db);
    runtime.spawn(
        NAME,
        "resumer",
        resumer(
            orders,
            Duration::from_secs(own.resume_after_secs),
            Duration::from_secs(own.resume_every_secs.max(1)),
            runtime.shutdown.clone(),
        ),
    );
    Ok(started)
}

/// Settles checkouts a crash or an absent peer left unfinished, and keeps
/// `orders_by_status` current, until shutdown.
async fn resumer(
    orders: Orders,
    grace: Duration,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        match orders.resume(grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(orders = n, "unfinished checkouts settled"),
            Err(e) => tracing::warn!(error = %e, "unfinished checkouts not read"),
        }
        orders.count_logged().await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// This service's metrics (SPEC §9), declared when it starts.
pub const METRICS: &[Metric] = &[
    Metric::new("orders_created_total", Kind::Counter, "Checkouts that made an order."),
    Metric::new("orders_by_status", Kind::Gauge, "Orders in each status, counted in the store.")
        .zeros(&[&[("status", "pending")], &[("status", "confirmed")], &[("status", "processing")], &[("status", "shipped")], &[("status", "delivered")], &[("status", "cancelled")], &[("status", "failed")]]),
    Metric::new("order_processing_duration_seconds", Kind::Histogram, "Time from a checkout's request to its order's settled status, in seconds, by that status (confirmed, failed).")
        .zeros(&[&[("status", "confirmed")], &[("status", "failed")]]),
];
