//! The storefront: the shop's web pages, rendered on the server from what
//! the services answer over their gRPC faces, with the storefront's own
//! service token (decision 0024). Every page works without JavaScript.

pub mod account;
pub mod admin;
pub mod api;
pub mod assets;
pub mod ops;
pub mod pages;
pub mod profile;
pub mod sessions;
pub mod shelves;
pub mod views;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use emporium_platform::config::{Plain, Section, SectionDef, Settings, loopback};
use emporium_platform::grpc::{Peer, PeerPolicy, ServiceCredentials};
use emporium_platform::service::Definition;
use emporium_platform::{Runtime, Started};
use serde::{Deserialize, Serialize};

pub const NAME: &str = "storefront";

/// The `[storefront]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorefrontSettings {
    pub http_addr: SocketAddr,
    /// The longest wait for a service behind a page.
    pub peer_deadline_ms: u64,
    /// The gateway's address for what a signed-in shopper does
    /// (`http://gateway:8080`); the gateway of this process when unset.
    pub api_url: Option<String>,
    /// Services of other processes that the operations page shows, by
    /// name, as each one's HTTP base URL: its `/ready` is asked there, and
    /// its process's `/metrics` where that port serves them
    /// (`EMPORIUM__STOREFRONT__OPS_TARGETS__CATALOG=http://catalog:8080`).
    /// Services of this process are read in it and need none.
    pub ops_targets: BTreeMap<String, String>,
    /// Time between two samples of the operations page's figures.
    pub ops_sample_ms: u64,
    /// How far back the operations page's figures reach.
    pub ops_window_secs: u64,
}

impl Default for StorefrontSettings {
    fn default() -> Self {
        Self {
            http_addr: loopback(3000),
            peer_deadline_ms: 2_000,
            api_url: None,
            ops_targets: BTreeMap::new(),
            ops_sample_ms: 5_000,
            ops_window_secs: 600,
        }
    }
}

impl Section for StorefrontSettings {
    const NAME: &'static str = NAME;
    const PLAIN: Plain = Plain {
        http_port: true,
        ..Plain::NONE
    };
    fn on_free_ports(self) -> Self {
        Self {
            http_addr: loopback(0),
            ..self
        }
    }
}

pub fn definition() -> Definition {
    Definition {
        metrics: METRICS,
        consumes: None,
        name: NAME,
        section: SectionDef::of::<StorefrontSettings>(),
        start: |runtime, local| Box::pin(async move { start(&runtime, &local).await }),
        migrate: |_| Box::pin(async { Ok(()) }),
        seed: None,
    }
}

/// The services the pages read, each with the storefront's token.
fn shelves(settings: &Settings, local: &[Started]) -> anyhow::Result<shelves::Shelves> {
    let own = settings.section::<StorefrontSettings>();
    let policy = PeerPolicy {
        deadline: Duration::from_millis(own.peer_deadline_ms.max(1)),
        ..PeerPolicy::default()
    };
    let credentials = ServiceCredentials::for_service(settings, local, NAME)?;
    let peer = |name: &'static str| Peer::of(name, settings, local, policy, &credentials);
    Ok(shelves::Shelves {
        catalog: peer("catalog")?,
        inventory: peer("inventory")?,
        recommendation: peer("recommendation")?,
        categories: shelves::CategoryCache::default(),
    })
}

/// The services the operations page shows: this process's, read in it,
/// this one among them; then those of `ops_targets`, over HTTP.
fn watched(own: &StorefrontSettings, local: &[Started]) -> anyhow::Result<Vec<ops::Watched>> {
    use emporium_platform::http::operational_routes;
    let mut watched: Vec<ops::Watched> = local
        .iter()
        .map(|s| ops::Watched::Local {
            name: s.name.to_owned(),
            ready: operational_routes(s.name, s.checks.clone()),
        })
        .collect();
    watched.push(ops::Watched::Local {
        name: NAME.to_owned(),
        ready: operational_routes(NAME, Vec::new()),
    });
    for (name, url) in &own.ops_targets {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!(
                "configuration: storefront.ops_targets.{name} `{url}` must be an http:// URL"
            );
        }
        if watched.iter().any(|w| w.name() == name) {
            tracing::warn!(service = %name, "storefront.ops_targets names a service of this process: it is read here");
            continue;
        }
        watched.push(ops::Watched::Remote {
            name: name.clone(),
            base: url.trim_end_matches('/').to_owned(),
        });
    }
    Ok(watched)
}

pub async fn start(runtime: &Runtime, local: &[Started]) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<StorefrontSettings>();
    let api = match (&own.api_url, local.iter().find(|s| s.name == "gateway")) {
        (Some(url), _) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                anyhow::bail!("configuration: storefront.api_url `{url}` must be an http:// URL");
            }
            api::Api::Remote {
                base: url.trim_end_matches('/').to_owned(),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_millis(own.peer_deadline_ms.max(1) * 4))
                    .build()?,
            }
        }
        (None, Some(gateway)) => api::Api::Local(gateway.router.clone()),
        (None, None) => anyhow::bail!(
            "configuration: storefront.api_url is required when the gateway runs elsewhere"
        ),
    };
    let state = pages::AppState {
        shelves: shelves(settings, local)?,
        views: std::sync::Arc::new(views::Views::new()?),
        api,
        sessions: std::sync::Arc::new(sessions::Sessions::default()),
    };
    let ops = std::sync::Arc::new(ops::Ops::new(
        ops::Pace {
            every: Duration::from_millis(own.ops_sample_ms.max(100)),
            window: Duration::from_secs(own.ops_window_secs.max(1)),
        },
        watched(&own, local)?,
    )?);
    let stop = runtime.shutdown.clone().cancelled_owned();
    runtime.spawn(NAME, "operations sampler", ops.clone().run(stop));
    let routes = pages::router(state).layer(axum::Extension(ops));
    let router = emporium_platform::http::finish_router(NAME, routes, Vec::new(), &settings.http);
    let listener = emporium_platform::http::bind(own.http_addr, "storefront http").await?;
    let http_addr = listener.local_addr()?;
    runtime.serve(NAME, listener, router.clone());
    Ok(Started {
        name: NAME,
        http_addr,
        grpc_addr: None,
        router,
        grpc_router: None,
        checks: Vec::new(),
    })
}

/// This service's metrics besides the platform's: none of its own.
pub const METRICS: &[emporium_platform::telemetry::Metric] = &[];
