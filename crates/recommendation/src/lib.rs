//! The recommendation service: learns co-purchases and product facts from
//! events into its own tables and answers "also bought" and "for you".

pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod migrations;
pub mod openapi;
pub mod recommend;
pub mod store;

use std::net::SocketAddr;

use emporium_platform::config::{
    Plain, Production, Secret, Section, SectionDef, Settings, loopback,
};
use emporium_platform::service::{Definition, Faces};
use emporium_platform::telemetry::{Kind, Metric};
use emporium_platform::{Runtime, Started, bus, db};
use serde::{Deserialize, Serialize};

pub use recommend::Recommender;

pub const NAME: &str = "recommendation";

/// The `[recommendation]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecommendationSettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `sqlite://…`, `postgres://…` or `mysql://…`; embedded SQLite when unset.
    pub database_url: Option<Secret>,
}

impl Default for RecommendationSettings {
    fn default() -> Self {
        Self {
            http_addr: loopback(8008),
            grpc_addr: loopback(50057),
            database_url: None,
        }
    }
}

impl Section for RecommendationSettings {
    const NAME: &'static str = NAME;
    const PLAIN: Plain = Plain {
        http_port: true,
        grpc_port: true,
        database: Some(Production::Postgres),
        redis: None,
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

/// How the binary knows recommendation. It has no demo data of its own:
/// it learns from the events of the catalog, inventory and ordering seeds.
pub fn definition() -> Definition {
    Definition {
        metrics: METRICS,
        consumes: Some(emporium_platform::bus::Queue {
            name: events::QUEUE,
            interests: events::CONSUMES,
        }),
        name: NAME,
        section: SectionDef::of::<RecommendationSettings>(),
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

async fn migrated(settings: &Settings) -> anyhow::Result<db::Db> {
    let own = settings.section::<RecommendationSettings>();
    let db = db::connect(&settings.database_url(NAME, own.database_url.as_ref())).await?;
    db::migrate::<migrations::Migrator>(&db).await?;
    Ok(db)
}

/// Opens the store, consumes its events, binds both ports and serves.
pub async fn start(runtime: &Runtime) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<RecommendationSettings>();
    let db = migrated(settings).await?;
    let recommender = Recommender::new(db.clone());
    let checks = vec![db::check(db), bus::check(runtime.transport.clone())];
    let state = http::AppState {
        recommender: recommender.clone(),
        verifier: runtime.verifier.clone(),
    };
    let grpc_service =
        emporium_proto::recommendation::v1::recommendations_server::RecommendationsServer::new(
            grpc::RecommendationsGrpc {
                recommender: recommender.clone(),
            },
        );
    runtime
        .consume(
            NAME,
            events::QUEUE,
            events::CONSUMES,
            events::Consumer::shared(recommender.clone()),
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
            grpc_names: &["emporium.recommendation.v1.Recommendations"],
            admission: grpc::ADMISSION,
        })
        .await?;
    if let Err(e) = recommender.refresh_gauges().await {
        tracing::warn!(error = %e, "model size gauges not set");
    }
    Ok(started)
}

/// This service's metrics (SPEC §9), declared when it starts.
pub const METRICS: &[Metric] = &[
    Metric::new(
        "recommendation_pairs",
        Kind::Gauge,
        "Pairs of products bought together, as last counted.",
    ),
    Metric::new(
        "recommendation_products",
        Kind::Gauge,
        "Products with at least one recommendation, as last counted.",
    ),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use emporium_platform::config::{self, Sources};

    use super::*;

    #[test]
    fn the_seeds_variables_configure_recommendation_alone() {
        let env = [
            ("PORT", "9008"),
            ("GRPC_PORT", "9057"),
            ("DB_HOST", "reco-db"),
        ];
        let sources = Sources::from_pairs(&env, Some(NAME));
        let alone = config::load(&sources, &[SectionDef::of::<RecommendationSettings>()]).unwrap();
        let own = alone.section::<RecommendationSettings>();
        assert_eq!((own.http_addr.port(), own.grpc_addr.port()), (9008, 9057));
        assert_eq!(
            own.database_url.as_ref().map(Secret::expose),
            Some("postgres://postgres@reco-db:5432/recommendation")
        );
    }
}
