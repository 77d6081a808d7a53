//! The edge: routes the public API to the services' replicas, passes on
//! request ids and trace context, applies CORS and body limits, and serves
//! the one OpenAPI document of the whole API.

mod openapi;
mod proxy;
pub mod ratelimit;
mod routes;
pub mod upstream;
mod websocket;

pub use openapi::merge_documents;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use axum::routing::{any, get};
use emporium_platform::auth::Verifier;
use emporium_platform::config::{Plain, Secret, Section, SectionDef, loopback};
use emporium_platform::http::{Check, TrustedProxies};
use emporium_platform::service::Definition;
use emporium_platform::telemetry::{Kind, Metric};
use emporium_platform::{Runtime, Started};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::proxy::{Pass, proxy};
use crate::ratelimit::{Limiter, Limits};
use crate::routes::{ROUTES, Route};
use crate::upstream::Pool;

pub const NAME: &str = "gateway";

/// The `[gateway]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    pub http_addr: SocketAddr,
    /// Where `/ready` and `/metrics` are served, apart from the public
    /// port (which keeps `/health` only): an address the orchestrator and
    /// Prometheus reach and the public does not. Unset, they stay on the
    /// public port, as in shops started on free ports for tests.
    pub internal_addr: Option<SocketAddr>,
    /// Each service's replicas as HTTP base URLs, by service name
    /// (`EMPORIUM__GATEWAY__UPSTREAMS__CATALOG=http://a:8006,http://b:8006`).
    /// A base whose host is a name stands for every address the name
    /// resolves to (`http://ordering:8001` behind `docker compose up
    /// --scale ordering=3` is three replicas); an IP literal is one. A
    /// service running in the same process is called in-process and needs
    /// none.
    pub upstreams: BTreeMap<String, Vec<String>>,
    /// How often the upstreams' names are resolved again, in seconds:
    /// replicas that went are dropped, new ones join. 0 resolves them once,
    /// at start.
    pub upstream_resolve_secs: u64,
    /// Largest body of an upload route (product images).
    pub upload_limit_bytes: usize,
    /// Consecutive failures after which a replica is taken out of rotation.
    pub eject_after_failures: u32,
    /// How long an ejected replica stays out.
    pub eject_secs: u64,
    /// Where request counts live: `memory://` (this replica alone) or
    /// `redis://…` (one budget for every replica).
    pub rate_limit_url: Secret,
    /// Prefix of the counters' keys in Redis.
    pub rate_limit_prefix: String,
    pub rate_limit_window_secs: u64,
    /// Requests per window to the sign-in, registration and token routes,
    /// per client address. 0 turns a limit off.
    pub auth_per_address: u32,
    /// Requests per window to every other route, per client address and
    /// per signed-in user.
    pub api_per_address: u32,
    pub api_per_user: u32,
    /// A PEM certificate chain and its private key: with both, the gateway
    /// speaks HTTPS only (HTTP/2 and HTTP/1.1 by ALPN).
    pub tls_cert_file: Option<std::path::PathBuf>,
    pub tls_key_file: Option<std::path::PathBuf>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            http_addr: loopback(8080),
            internal_addr: Some(loopback(9080)),
            upstreams: BTreeMap::new(),
            upstream_resolve_secs: 5,
            upload_limit_bytes: 5 * 1024 * 1024,
            eject_after_failures: 3,
            eject_secs: 10,
            rate_limit_url: Secret::new("memory://"),
            rate_limit_prefix: "emporium:ratelimit".into(),
            rate_limit_window_secs: 60,
            auth_per_address: 30,
            api_per_address: 1200,
            api_per_user: 600,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl Section for GatewaySettings {
    const NAME: &'static str = NAME;
    const LIST_KEYS: &'static [&'static str] = &[
        "upstreams.catalog",
        "upstreams.identity",
        "upstreams.inventory",
        "upstreams.basket",
        "upstreams.payment",
        "upstreams.ordering",
        "upstreams.recommendation",
        "upstreams.notification",
        "upstreams.storefront",
    ];
    const PLAIN: Plain = Plain {
        http_port: true,
        redis: Some("rate_limit_url"),
        ..Plain::NONE
    };
    // A shop on free ports is found by one address per service (tests and
    // benchmarks wait on its `/ready`): its operational routes stay there
    // unless an internal address is set explicitly.
    fn on_free_ports(self) -> Self {
        Self {
            http_addr: loopback(0),
            internal_addr: None,
            ..self
        }
    }
}

/// How the binary knows the gateway.
pub fn definition() -> Definition {
    Definition {
        metrics: METRICS,
        consumes: None,
        name: NAME,
        section: SectionDef::of::<GatewaySettings>(),
        start: |runtime, local| Box::pin(async move { start(&runtime, &local).await }),
        migrate: |_| Box::pin(async { Ok(()) }),
        seed: None,
    }
}

pub(crate) type HttpClient = Client<HttpConnector, Body>;

/// Where a service's requests go: its router in this process, or its
/// replicas over HTTP.
#[derive(Clone)]
pub(crate) enum Upstream {
    /// In this process; empty until the service has started (one that
    /// starts after the gateway: the storefront, which calls it).
    Local(emporium_platform::service::LateRouter),
    Replicas(Arc<Pool>),
}

impl Upstream {
    /// The in-process router, once its service runs.
    pub(crate) fn local(slot: &emporium_platform::service::LateRouter) -> Option<Router> {
        slot.get().cloned()
    }
}

#[derive(Clone)]
pub(crate) struct Gateway {
    /// Where joined sockets run, stopped with the servers.
    pub(crate) runtime: Runtime,
    pub(crate) client: HttpClient,
    pub(crate) upstreams: Arc<HashMap<&'static str, Upstream>>,
    pub(crate) verifier: Verifier,
    pub(crate) limits: Limits,
    /// Whose `X-Forwarded-For` names the client (`http.trusted_proxies`).
    pub(crate) trusted: TrustedProxies,
    pub(crate) timeout: Duration,
    pub(crate) openapi: Arc<tokio::sync::Mutex<Option<(Instant, serde_json::Value)>>>,
}

impl axum::extract::FromRef<Gateway> for Verifier {
    fn from_ref(gateway: &Gateway) -> Self {
        gateway.verifier.clone()
    }
}

/// Serves the gateway in front of the services of `ROUTES`: those in
/// `local` in-process, the others on their configured replicas.
pub async fn start(runtime: &Runtime, local: &[Started]) -> anyhow::Result<Started> {
    start_resolving(runtime, local, upstream::system_resolver()).await
}

/// As [`start`], with the upstreams' names resolved by `resolve` instead
/// of the system's resolver.
pub async fn start_resolving(
    runtime: &Runtime,
    local: &[Started],
    resolve: upstream::Resolve,
) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<GatewaySettings>();
    let mut upstreams = HashMap::new();
    for Route { service, .. } in ROUTES {
        if upstreams.contains_key(service) {
            continue;
        }
        let later = runtime.later.router(service);
        if routes::OPTIONAL.contains(service)
            && !own.upstreams.contains_key(*service)
            && later.is_none()
            && !local.iter().any(|s| s.name == *service)
        {
            tracing::info!(
                service,
                "no {service} configured: its routes are not served"
            );
            continue;
        }
        let configured = own.upstreams.get(*service).filter(|urls| !urls.is_empty());
        let upstream = match (configured, local.iter().find(|s| s.name == *service)) {
            (Some(urls), _) => {
                Upstream::Replicas(Arc::new(replicas(service, urls, &own, resolve.clone())?))
            }
            (None, Some(started)) => {
                Upstream::Local(Arc::new(std::sync::OnceLock::from(started.router.clone())))
            }
            (None, None) if later.is_some() => Upstream::Local(later.unwrap_or_default()),
            (None, None) => anyhow::bail!(
                "configuration: gateway.upstreams.{service} is required when {service} runs elsewhere"
            ),
        };
        upstreams.insert(*service, upstream);
    }
    resolve_upstreams(runtime, &upstreams, &own).await;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let gateway = Gateway {
        runtime: runtime.clone(),
        client,
        upstreams: Arc::new(upstreams),
        verifier: runtime.verifier.clone(),
        limits: Limits {
            limiter: Limiter::from_url(
                &own.rate_limit_url,
                &own.rate_limit_prefix,
                Duration::from_secs(own.rate_limit_window_secs.max(1)),
                "gateway.rate_limit_url",
            )
            .await?,
            auth_per_address: own.auth_per_address,
            api_per_address: own.api_per_address,
            api_per_user: own.api_per_user,
        },
        trusted: TrustedProxies::new(&settings.http.trusted_proxies),
        timeout: Duration::from_millis(settings.http.request_timeout_ms),
        openapi: Arc::default(),
    };
    let body_limit = settings.http.body_limit_bytes;
    let upload_limit = own.upload_limit_bytes.max(body_limit);
    let own_routes = emporium_platform::faults::routes().layer(
        axum::middleware::from_fn_with_state(gateway.clone(), proxy::limited),
    );
    let mut routes = Router::new()
        .route("/api/v1/openapi.json", get(openapi::document))
        .merge(own_routes);
    for route in ROUTES {
        if !gateway.upstreams.contains_key(route.service) {
            continue;
        }
        let pass = Pass {
            service: route.service,
            policy: route.policy,
            group: route.group,
            limit: if route.upload {
                upload_limit
            } else {
                body_limit
            },
            timeout: if route.upload {
                gateway.timeout * 4
            } else {
                gateway.timeout
            },
        };
        routes = routes.route(route.path, any(move |s, c, r| proxy(s, c, r, pass)));
    }
    let routes = routes.with_state(gateway.clone());
    let checks: Vec<Check> = gateway
        .upstreams
        .iter()
        .filter_map(|(service, upstream)| match upstream {
            Upstream::Replicas(pool) => Some(upstream_check(
                gateway.client.clone(),
                service,
                pool.clone(),
            )),
            Upstream::Local(_) => None,
        })
        .collect();
    let mut router = match own.internal_addr {
        Some(addr) => {
            let internal = emporium_platform::http::finish_router(
                NAME,
                Router::new(),
                checks.clone(),
                &settings.http,
            );
            let listener = emporium_platform::http::bind(addr, "gateway internal http").await?;
            tracing::info!(addr = %listener.local_addr()?, "gateway readiness and metrics served apart from the public port");
            runtime.serve(NAME, listener, internal);
            emporium_platform::http::finish_public_router(NAME, routes, &settings.http)
        }
        None => {
            emporium_platform::http::finish_router(NAME, routes, checks.clone(), &settings.http)
        }
    };
    if let Some(cors) = cors(&settings.http.cors_origins)? {
        router = router.layer(cors);
    }
    let listener = emporium_platform::http::bind(own.http_addr, "gateway http").await?;
    let http_addr = listener.local_addr()?;
    match (&own.tls_cert_file, &own.tls_key_file) {
        (Some(cert), Some(key)) => {
            let acceptor = emporium_platform::tls::acceptor(cert, key)?;
            runtime.serve_tls(NAME, listener, acceptor, router.clone())?;
        }
        (None, None) => runtime.serve(NAME, listener, router.clone()),
        _ => anyhow::bail!(
            "configuration: gateway.tls_cert_file and gateway.tls_key_file go together"
        ),
    }
    Ok(Started {
        name: NAME,
        http_addr,
        grpc_addr: None,
        router,
        grpc_router: None,
        checks,
    })
}

fn replicas(
    service: &'static str,
    urls: &[String],
    own: &GatewaySettings,
    resolve: upstream::Resolve,
) -> anyhow::Result<Pool> {
    Pool::new(
        service,
        urls,
        own.eject_after_failures,
        Duration::from_secs(own.eject_secs),
        resolve,
    )
    .map_err(|why| anyhow::anyhow!("configuration: gateway.upstreams.{service} {why}"))
}

/// Resolves the upstreams' names once, every pool at the same time (a
/// name that does not answer costs its timeout once, not once per
/// service), then again every `upstream_resolve_secs` while the gateway
/// runs.
async fn resolve_upstreams(
    runtime: &Runtime,
    upstreams: &HashMap<&'static str, Upstream>,
    own: &GatewaySettings,
) {
    let named: Vec<Arc<Pool>> = upstreams
        .values()
        .filter_map(|u| match u {
            Upstream::Replicas(pool) if pool.has_names() => Some(pool.clone()),
            _ => None,
        })
        .collect();
    if named.is_empty() {
        return;
    }
    let mut first = tokio::task::JoinSet::new();
    for pool in &named {
        let pool = pool.clone();
        first.spawn(async move { pool.refresh().await });
    }
    while first.join_next().await.is_some() {}
    if own.upstream_resolve_secs > 0 {
        runtime.spawn(
            NAME,
            "upstream resolver",
            upstream::keep_resolving(
                named,
                Duration::from_secs(own.upstream_resolve_secs),
                runtime.shutdown.clone(),
            ),
        );
    }
}

fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o).map_err(|_| {
                    anyhow::anyhow!("configuration: http.cors_origins `{o}` is not a valid origin")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::LOCATION])
            .max_age(Duration::from_secs(600)),
    ))
}

fn upstream_check(client: HttpClient, service: &'static str, pool: Arc<Pool>) -> Check {
    Check::new(service, move || {
        let (client, pool) = (client.clone(), pool.clone());
        async move {
            for base in pool.order() {
                let Ok(uri) = format!("{base}/health").parse::<Uri>() else {
                    continue;
                };
                let request = Request::get(uri)
                    .body(Body::empty())
                    .map_err(|e| e.to_string())?;
                if let Ok(Ok(response)) =
                    tokio::time::timeout(Duration::from_secs(1), client.request(request)).await
                    && response.status().is_success()
                {
                    return Ok(());
                }
            }
            Err(format!("no {service} replica answers"))
        }
    })
    // A service without a replica fails its own routes (503 naming it);
    // the gateway still serves every other, so it stays in rotation: an
    // unready gateway would take the whole shop down with one service.
    .degradable()
}

/// This service's metrics (SPEC §9), declared when it starts.
pub const METRICS: &[Metric] = &[
    Metric::new("gateway_rate_limited_total", Kind::Counter, "Requests refused with 429, by rate-limit group (auth, api) and what was counted (address, user).")
        .zeros(&[&[("group", "auth"), ("by", "address")], &[("group", "api"), ("by", "address")], &[("group", "api"), ("by", "user")]]),
];
