//! The payment service: payments taken, processed, cancelled and refunded
//! through a card processor behind a trait (a mock that behaves like one is
//! built in), with `Idempotency-Key` on every POST and a state machine that
//! refuses every step it does not draw.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod migrations;
pub mod openapi;
pub mod payments;
pub mod provider;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use emporium_platform::config::{
    Plain, Production, Secret, Section, SectionDef, Settings, loopback,
};
use emporium_platform::service::{Definition, Faces};
use emporium_platform::telemetry::{Kind, Metric};
use emporium_platform::{Runtime, Started, bus, db, idempotency};
use serde::{Deserialize, Serialize};

pub use payments::Payments;

use crate::payments::Policy;
use crate::provider::{MockBehaviour, MockProvider};

pub const NAME: &str = "payment";

/// The `[payment]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `mysql://…` (seed 002), `postgres://…` or `sqlite://…`; embedded
    /// SQLite when unset.
    pub database_url: Option<Secret>,
    /// Where idempotency keys live in production (`redis://…`); in the
    /// database otherwise.
    pub redis_url: Option<Secret>,
    pub redis_prefix: String,
    /// The key of the HMAC kept for each request's fingerprint (a body
    /// holds a card number); made under the data dir when unset. Replicas
    /// that share `redis_url` need the same one.
    pub fingerprint_key: Option<Secret>,
    /// How long a key's first answer is kept.
    pub idempotency_ttl_secs: u64,
    /// The longest one call to the processor may take.
    pub provider_timeout_ms: u64,
    /// How long a pending payment may wait to be processed.
    pub payment_ttl_secs: u64,
    /// The mock processor's behaviour at start (an admin changes it at
    /// `PUT /api/v1/payments/provider`).
    pub mock: MockBehaviour,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            http_addr: loopback(8003),
            grpc_addr: loopback(50052),
            database_url: None,
            redis_url: None,
            redis_prefix: "payment".into(),
            fingerprint_key: None,
            idempotency_ttl_secs: 24 * 3600,
            provider_timeout_ms: 2000,
            payment_ttl_secs: 1800,
            mock: MockBehaviour::default(),
        }
    }
}

impl Section for PaymentSettings {
    const NAME: &'static str = NAME;
    const PLAIN: Plain = Plain {
        http_port: true,
        grpc_port: true,
        database: Some(Production::MySql),
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

impl PaymentSettings {
    fn policy(&self) -> Policy {
        Policy {
            provider_timeout: Duration::from_millis(self.provider_timeout_ms.max(1)),
            payment_ttl: Duration::from_secs(self.payment_ttl_secs.max(1)),
        }
    }
}

/// How the binary knows payment.
pub fn definition() -> Definition {
    Definition {
        metrics: METRICS,
        consumes: None,
        name: NAME,
        section: SectionDef::of::<PaymentSettings>(),
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
        seed: None,
    }
}

pub async fn migrated(settings: &Settings) -> anyhow::Result<db::Db> {
    let own = settings.section::<PaymentSettings>();
    let db = db::connect(&settings.database_url(NAME, own.database_url.as_ref())).await?;
    db::migrate::<migrations::Migrator>(&db).await?;
    Ok(db)
}

/// Opens the stores, binds both ports and serves.
pub async fn start(runtime: &Runtime) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<PaymentSettings>();
    let db = migrated(settings).await?;
    let keys = idempotency::keyed(
        idempotency::from_settings(own.redis_url.as_ref(), &own.redis_prefix, &db).await?,
        &idempotency::fingerprint_key(own.fingerprint_key.as_ref(), &settings.data_dir, NAME)?,
    );
    let mock = MockProvider::new(own.mock, db.clone());
    let outbox = bus::Outbox::new();
    let payments = Payments::new(
        db.clone(),
        outbox.clone(),
        Arc::new(mock.clone()),
        own.policy(),
    );
    let key_ttl = Duration::from_secs(own.idempotency_ttl_secs.max(60));
    let checks = vec![
        db::check(db.clone()),
        idempotency::check(keys.clone(), "idempotency store"),
        bus::check(runtime.transport.clone()),
    ];
    let state = http::AppState {
        payments: payments.clone(),
        verifier: runtime.verifier.clone(),
        keys: keys.clone(),
        key_ttl,
        mock: Some(mock),
    };
    let payments_for_refunds = payments.clone();
    let grpc_service =
        emporium_proto::payment::v1::payments_server::PaymentsServer::new(grpc::PaymentGrpc {
            payments,
            keys,
            key_ttl,
        });
    let started = runtime
        .serve_faces(Faces {
            name: NAME,
            http_addr: own.http_addr,
            grpc_addr: own.grpc_addr,
            routes: http::router(state),
            checks,
            grpc: tonic::service::Routes::new(grpc_service),
            grpc_names: &["emporium.payment.v1.Payments"],
            admission: grpc::ADMISSION,
        })
        .await?;
    runtime.relay(NAME, outbox, db);
    runtime.spawn(
        NAME,
        "pending refunds",
        pending_refunds(payments_for_refunds, runtime.shutdown.clone()),
    );
    Ok(started)
}

/// Finishes, every ten seconds, the refunds left pending for thirty (a
/// request cut off and never asked again), until shutdown.
async fn pending_refunds(payments: Payments, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        match payments
            .finish_pending_refunds(Duration::from_secs(30))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(refunds = n, "pending refunds finished"),
            Err(e) => tracing::warn!(error = %e, "pending refunds not read"),
        }
    }
}

/// This service's metrics (SPEC §9), declared when it starts.
pub const METRICS: &[Metric] = &[
    Metric::new("payments_processed_total", Kind::Counter, "Payments settled, by status in the events' words (completed, failed, refunded) and method.")
        .zeros(&[&[("status", "completed"), ("method", "card")], &[("status", "failed"), ("method", "card")], &[("status", "refunded"), ("method", "card")]]),
    Metric::new("payment_amount", Kind::Histogram, "Amounts captured, in the currency's units (not cents), by currency: _sum is the revenue, _count the payments.").zeros(&[]),
    Metric::new("refunds_processed_total", Kind::Counter, "Refunds made."),
    Metric::new("payment_gateway_latency_seconds", Kind::Histogram, "Time the card processor took to answer, in seconds, by operation (authorize, capture, void, refund).")
        .zeros(&[&[("operation", "authorize")], &[("operation", "capture")], &[("operation", "void")], &[("operation", "refund")]]),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use emporium_platform::config::{self, Sources};

    use super::*;

    /// Seed 002's payment variables: MariaDB from `DB_*`, Redis from
    /// `REDIS_*`, peers as gRPC addresses.
    #[test]
    fn the_seeds_variables_configure_payment_on_mariadb() {
        let env = [
            ("PORT", "8082"),
            ("GRPC_PORT", "50052"),
            ("DB_HOST", "payments-db"),
            ("DB_PORT", "3306"),
            ("DB_USER", "payment"),
            ("DB_PASSWORD", "s3cret"),
            ("DB_NAME", "payments"),
            ("DB_SSL_MODE", "false"),
            ("REDIS_HOST", "payment-redis"),
            ("BASKET_SERVICE_URL", "localhost:50051"),
            ("PRODUCT_SERVICE_URL", "localhost:50050"),
        ];
        let sources = Sources::from_pairs(&env, Some(NAME));
        let alone = config::load(&sources, &[SectionDef::of::<PaymentSettings>()]).unwrap();
        let own = alone.section::<PaymentSettings>();
        assert_eq!(own.http_addr.port(), 8082);
        let url = own.database_url.as_ref().map(Secret::expose).unwrap();
        assert!(
            url.starts_with("mysql://payment:s3cret@payments-db:3306/payments"),
            "{url}"
        );
        assert!(url.ends_with("?ssl-mode=disabled"), "{url}");
        assert_eq!(
            own.redis_url.as_ref().map(Secret::expose),
            Some("redis://payment-redis:6379/0")
        );
        assert_eq!(
            alone.peer("basket").as_deref(),
            Some("http://localhost:50051")
        );
        assert_eq!(
            alone.peer("catalog").as_deref(),
            Some("http://localhost:50050")
        );
        assert!(!alone.to_masked_toml().contains("s3cret"));
    }

    /// One of the mock's settings given alone keeps the others' defaults.
    #[test]
    fn the_mock_takes_one_setting_alone() {
        let env = [("EMPORIUM__PAYMENT__MOCK__LATENCY_MS", "40")];
        let sources = Sources::from_pairs(&env, Some(NAME));
        let alone = config::load(&sources, &[SectionDef::of::<PaymentSettings>()]).unwrap();
        let mock = alone.section::<PaymentSettings>().mock;
        assert_eq!((mock.latency_ms, mock.failure_rate), (40, 0.0));
    }
}
