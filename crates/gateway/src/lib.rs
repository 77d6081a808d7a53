//! The edge: routes the public API to the services' replicas, passes on
//! request ids and trace context, applies CORS and body limits, and serves
//! the one OpenAPI document of the whole API.

pub mod ratelimit;
pub mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use emporium_platform::auth::Verifier;
use emporium_platform::config::{Plain, Secret, Section, SectionDef, loopback};
use emporium_platform::http::{Check, Json, TrustedProxies};
use emporium_platform::service::Definition;
use emporium_platform::{ErrorCode, Problem, Runtime, Started};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::ratelimit::{Decision, Limiter};
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
    /// A service running in the same process is called in-process and
    /// needs none.
    pub upstreams: BTreeMap<String, Vec<String>>,
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
        name: NAME,
        section: SectionDef::of::<GatewaySettings>(),
        start: |runtime, local| Box::pin(async move { start(&runtime, &local).await }),
        migrate: |_| Box::pin(async { Ok(()) }),
        seed: None,
    }
}

/// Who may pass a route. The gateway turns away callers early; the service
/// checks again (it trusts no header a client could send).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Public,
    /// Any signed-in user.
    Customer,
    Admin,
    /// Reads for everyone, writes for admins.
    ReadPublicWriteAdmin,
}

/// Which rate limits a route counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    /// Sign-in, registration and tokens: few per address, whoever asks.
    Auth,
    Api,
}

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Auth => "auth",
            Group::Api => "api",
        }
    }
}

/// One public route: the service behind it, who may pass, its rate-limit
/// group, and whether it takes uploads (the larger body limit and a longer
/// timeout).
struct Route {
    service: &'static str,
    path: &'static str,
    policy: Policy,
    group: Group,
    upload: bool,
}

const fn route(service: &'static str, path: &'static str, policy: Policy) -> Route {
    Route {
        service,
        path,
        policy,
        group: Group::Api,
        upload: false,
    }
}

const fn auth(path: &'static str) -> Route {
    Route {
        group: Group::Auth,
        ..route("identity", path, Policy::Public)
    }
}

/// Every public route of the shop.
const ROUTES: &[Route] = &[
    auth("/api/v1/users/register"),
    auth("/api/v1/users/login"),
    auth("/api/v1/auth/refresh"),
    auth("/api/v1/auth/logout"),
    route("identity", "/api/v1/users/me", Policy::Customer),
    route("identity", "/api/v1/users/{id}", Policy::Customer),
    route("identity", "/api/v1/users", Policy::Admin),
    route("identity", "/.well-known/jwks.json", Policy::Public),
    route("catalog", "/api/v1/products", Policy::ReadPublicWriteAdmin),
    route(
        "catalog",
        "/api/v1/products/{id}",
        Policy::ReadPublicWriteAdmin,
    ),
    Route {
        upload: true,
        ..route("catalog", "/api/v1/products/{id}/images", Policy::Admin)
    },
    route(
        "catalog",
        "/api/v1/products/{id}/images/{name}",
        Policy::Public,
    ),
    route(
        "catalog",
        "/api/v1/categories",
        Policy::ReadPublicWriteAdmin,
    ),
    route("inventory", "/api/v1/inventory", Policy::Admin),
    route("inventory", "/api/v1/inventory/alerts", Policy::Admin),
    route("inventory", "/api/v1/inventory/adjust", Policy::Admin),
    route("inventory", "/api/v1/inventory/reserve", Policy::Admin),
    route("inventory", "/api/v1/inventory/release", Policy::Admin),
    route("inventory", "/api/v1/inventory/{sku}", Policy::Public),
    route(
        "inventory",
        "/api/v1/inventory/{sku}/movements",
        Policy::Admin,
    ),
    route("basket", "/api/v1/baskets", Policy::Customer),
    route("basket", "/api/v1/baskets/{user_id}", Policy::Customer),
    route(
        "basket",
        "/api/v1/baskets/{user_id}/items",
        Policy::Customer,
    ),
    route(
        "basket",
        "/api/v1/baskets/{user_id}/items/{product_id}",
        Policy::Customer,
    ),
    route("payment", "/api/v1/payments", Policy::Customer),
    route("payment", "/api/v1/payments/provider", Policy::Admin),
    route(
        "payment",
        "/api/v1/payments/order/{order_id}",
        Policy::Customer,
    ),
    route("payment", "/api/v1/payments/{id}", Policy::Customer),
    route("payment", "/api/v1/payments/{id}/process", Policy::Customer),
    route("payment", "/api/v1/payments/{id}/cancel", Policy::Customer),
    route("payment", "/api/v1/payments/{id}/refund", Policy::Admin),
    route("payment", "/api/v1/users/{id}/payments", Policy::Customer),
    route("ordering", "/api/v1/orders", Policy::Customer),
    route("ordering", "/api/v1/orders/{id}", Policy::Customer),
    route("recommendation", "/api/v1/recommendations", Policy::Public),
    route(
        "recommendation",
        "/api/v1/recommendations/me",
        Policy::Customer,
    ),
];

type HttpClient = Client<HttpConnector, Body>;

/// Where a service's requests go: its router in this process, or its
/// replicas over HTTP.
#[derive(Clone)]
enum Upstream {
    Local(Router),
    Replicas(Arc<Pool>),
}

#[derive(Clone)]
struct Gateway {
    client: HttpClient,
    upstreams: Arc<HashMap<&'static str, Upstream>>,
    verifier: Verifier,
    limits: Limits,
    /// Whose `X-Forwarded-For` names the client (`http.trusted_proxies`).
    trusted: TrustedProxies,
    timeout: Duration,
    openapi: Arc<tokio::sync::Mutex<Option<(Instant, serde_json::Value)>>>,
}

/// Serves the gateway in front of the services of `ROUTES`: those in
/// `local` in-process, the others on their configured replicas.
pub async fn start(runtime: &Runtime, local: &[Started]) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<GatewaySettings>();
    let mut upstreams = HashMap::new();
    for Route { service, .. } in ROUTES {
        if upstreams.contains_key(service) {
            continue;
        }
        let configured = own.upstreams.get(*service).filter(|urls| !urls.is_empty());
        let upstream = match (configured, local.iter().find(|s| s.name == *service)) {
            (Some(urls), _) => Upstream::Replicas(Arc::new(replicas(service, urls, &own)?)),
            (None, Some(started)) => Upstream::Local(started.router.clone()),
            (None, None) => anyhow::bail!(
                "configuration: gateway.upstreams.{service} is required when {service} runs elsewhere"
            ),
        };
        upstreams.insert(*service, upstream);
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let gateway = Gateway {
        client,
        upstreams: Arc::new(upstreams),
        verifier: runtime.verifier.clone(),
        limits: Limits {
            limiter: Limiter::from_url(
                &own.rate_limit_url,
                &own.rate_limit_prefix,
                Duration::from_secs(own.rate_limit_window_secs.max(1)),
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
    let mut routes = Router::new().route("/api/v1/openapi.json", get(openapi));
    for route in ROUTES {
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
        checks,
    })
}

fn replicas(service: &'static str, urls: &[String], own: &GatewaySettings) -> anyhow::Result<Pool> {
    for base in urls {
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || base.parse::<Uri>().is_err()
        {
            anyhow::bail!(
                "configuration: gateway.upstreams.{service} `{base}` must be an http:// URL"
            );
        }
    }
    Ok(Pool::new(
        service,
        urls.to_vec(),
        own.eject_after_failures,
        Duration::from_secs(own.eject_secs),
    ))
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
}

/// The whole body when it is at most `limit` bytes. A larger one is read to
/// its end (up to a bound) and dropped, so that the client, still sending,
/// receives the 413 instead of a reset connection.
async fn read_limited(body: Body, limit: usize) -> Option<bytes::Bytes> {
    use http_body_util::BodyExt;
    const DRAIN_AT_MOST: usize = 64 * 1024 * 1024;
    let mut body = body;
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(_))) | Err(_) => return None,
        };
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= limit {
                kept.extend_from_slice(&data);
            } else if seen > DRAIN_AT_MOST {
                return None;
            }
        }
    }
    (seen <= limit).then(|| kept.freeze())
}

/// Headers that belong to one connection and must not be forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// What one route asks of a request on its way through.
#[derive(Clone, Copy)]
struct Pass {
    service: &'static str,
    policy: Policy,
    group: Group,
    limit: usize,
    timeout: Duration,
}

/// The rate limits of every route group, and where they are counted.
#[derive(Clone)]
struct Limits {
    limiter: Limiter,
    auth_per_address: u32,
    api_per_address: u32,
    api_per_user: u32,
}

impl Limits {
    async fn by_address(
        &self,
        group: Group,
        client: Option<std::net::IpAddr>,
    ) -> Result<Option<Decision>, Response> {
        let limit = match group {
            Group::Auth => self.auth_per_address,
            Group::Api => self.api_per_address,
        };
        let Some(client) = client.filter(|_| limit > 0) else {
            return Ok(None);
        };
        self.count(
            group,
            "address",
            &format!(
                "{}:address:{}",
                group.name(),
                emporium_platform::ratelimit::address_key(client)
            ),
            limit,
        )
        .await
    }

    async fn by_user(&self, group: Group, user: &str) -> Result<Option<Decision>, Response> {
        if group != Group::Api || self.api_per_user == 0 {
            return Ok(None);
        }
        self.count(
            group,
            "user",
            &format!("api:user:{user}"),
            self.api_per_user,
        )
        .await
    }

    async fn count(
        &self,
        group: Group,
        by: &'static str,
        key: &str,
        limit: u32,
    ) -> Result<Option<Decision>, Response> {
        let decision = self.limiter.hit(key, limit).await;
        if decision.allowed {
            return Ok(Some(decision));
        }
        metrics::counter!("gateway_rate_limited_total", "group" => group.name(), "by" => by)
            .increment(1);
        let mut problem = Problem::new(
            ErrorCode::TooManyRequests,
            format!("too many requests from this {by}; slow down"),
        );
        problem.retry_after_secs = Some(decision.reset.as_secs_f64().ceil().max(1.0) as u64);
        Err(with_limit_headers(problem.into_response(), Some(decision)))
    }
}

/// The decision with the fewest requests left.
fn tighter(a: Option<Decision>, b: Option<Decision>) -> Option<Decision> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.remaining < a.remaining { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` (seconds), as in the IETF
/// draft on rate-limit headers.
fn with_limit_headers(mut response: Response, decision: Option<Decision>) -> Response {
    if let Some(decision) = decision {
        let headers = response.headers_mut();
        headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
        headers.insert(
            "ratelimit-reset",
            HeaderValue::from(decision.reset.as_secs_f64().ceil() as u64),
        );
    }
    response
}

/// The header that names the verified caller to the service behind; any
/// value a client sent is dropped.
const USER_HEADER: &str = "x-emporium-user";

/// The verified caller's id, or the problem that turns the request away.
async fn admit(
    verifier: &Verifier,
    policy: Policy,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<String>, Problem> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let claims = match policy {
        Policy::Public => None,
        Policy::ReadPublicWriteAdmin if read => None,
        Policy::Customer => Some(verifier.authenticate(authorization).await?),
        Policy::Admin | Policy::ReadPublicWriteAdmin => {
            Some(verifier.authorize_admin(authorization).await?)
        }
    };
    Ok(claims.map(|c| c.sub))
}

async fn proxy(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    pass: Pass,
) -> Response {
    let Pass { policy, group, .. } = pass;
    let (parts, body) = request.into_parts();
    let client =
        emporium_platform::http::client_addr(Some(peer.ip()), &parts.headers, &gateway.trusted)
            .unwrap_or(peer.ip());
    let mut tightest = match gateway.limits.by_address(group, Some(client)).await {
        Ok(decision) => decision,
        Err(refused) => return refused,
    };
    let user = match admit(&gateway.verifier, policy, &parts.method, &parts.headers).await {
        Ok(user) => user,
        Err(problem) => return with_limit_headers(problem.into_response(), tightest),
    };
    if let Some(user) = &user {
        match gateway.limits.by_user(group, user).await {
            Ok(decision) => tightest = tighter(tightest, decision),
            Err(refused) => return refused,
        }
    }
    with_limit_headers(
        forward(
            &gateway,
            pass,
            parts,
            body,
            user,
            SocketAddr::new(client, peer.port()),
        )
        .await,
        tightest,
    )
}

/// Sends the request on to the service: in this process, or to its
/// replicas. `client` is the address the gateway resolved: a service in
/// this process sees it as its peer, a remote one in `X-Forwarded-For`
/// from the gateway (which it must list in its `http.trusted_proxies`).
async fn forward(
    gateway: &Gateway,
    pass: Pass,
    parts: axum::http::request::Parts,
    body: Body,
    user: Option<String>,
    client: SocketAddr,
) -> Response {
    let Pass {
        service,
        limit,
        timeout,
        ..
    } = pass;
    let Some(body) = read_limited(body, limit).await else {
        return Problem::new(
            ErrorCode::PayloadTooLarge,
            "the body is larger than this endpoint accepts",
        )
        .into_response();
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let mut headers = forwarded_headers(&parts.headers, client.ip());
    headers.remove(USER_HEADER);
    if let Some(user) = user.and_then(|u| HeaderValue::from_str(&u).ok()) {
        headers.insert(USER_HEADER, user);
    }
    emporium_platform::telemetry::inject_current(&mut headers);
    let pool = match gateway.upstreams.get(service) {
        Some(Upstream::Replicas(pool)) => pool,
        Some(Upstream::Local(router)) => {
            let Ok(uri) = path_and_query.parse::<Uri>() else {
                return Problem::bad_request("the request path is not valid").into_response();
            };
            let mut local = Request::new(Body::from(body));
            *local.method_mut() = parts.method;
            *local.uri_mut() = uri;
            *local.headers_mut() = headers;
            local.extensions_mut().insert(ConnectInfo(client));
            return match tokio::time::timeout(timeout, router.clone().oneshot(local)).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => Problem::new(
                    ErrorCode::Timeout,
                    format!("{service} did not answer in time"),
                )
                .into_response(),
            };
        }
        None => return Problem::unavailable(service).into_response(),
    };
    for base in pool.order() {
        let Ok(uri) = format!("{base}{path_and_query}").parse::<Uri>() else {
            return Problem::bad_request("the request path is not valid").into_response();
        };
        let mut upstream = Request::new(Body::from(body.clone()));
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers.clone();
        match tokio::time::timeout(timeout, gateway.client.request(upstream)).await {
            Ok(Ok(response)) => {
                let status = response.status();
                if matches!(
                    status,
                    StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                ) {
                    pool.failed(&base);
                } else {
                    pool.succeeded(&base);
                }
                let (mut parts, body) = response.into_parts();
                for name in HOP_BY_HOP {
                    parts.headers.remove(*name);
                }
                return Response::from_parts(parts, Body::new(body));
            }
            Ok(Err(e)) if e.is_connect() => {
                tracing::warn!(replica = %base, error = %e, "replica unreachable; trying the next");
                pool.failed(&base);
            }
            Ok(Err(e)) => {
                // The request may have reached the replica: do not replay it.
                tracing::warn!(replica = %base, error = %e, "replica failed mid-request");
                pool.failed(&base);
                return Problem::unavailable(pool.service).into_response();
            }
            Err(_) => {
                pool.failed(&base);
                return Problem::new(
                    ErrorCode::Timeout,
                    format!("{} did not answer in time", pool.service),
                )
                .into_response();
            }
        }
    }
    Problem::unavailable(pool.service).into_response()
}

/// The request's headers for the service: without the hop-by-hop ones, and
/// with `X-Forwarded-For` holding only the client the gateway resolved, so
/// that nothing a client wrote there reaches a service that trusts the
/// gateway.
fn forwarded_headers(incoming: &HeaderMap, client: std::net::IpAddr) -> HeaderMap {
    let mut headers = incoming.clone();
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    headers.remove("forwarded");
    headers.remove("x-forwarded-for");
    if let Ok(value) = HeaderValue::from_str(&client.to_string()) {
        headers.insert("x-forwarded-for", value);
    }
    headers
}

/// The services' documents merged into one, cached for a minute. A schema
/// that two services name alike must be the same in both.
async fn openapi(State(gateway): State<Gateway>) -> Response {
    let mut cached = gateway.openapi.lock().await;
    if let Some((at, doc)) = cached.as_ref()
        && at.elapsed() < Duration::from_secs(60)
    {
        return Json(doc.clone()).into_response();
    }
    let mut documents = Vec::new();
    let mut services: Vec<_> = gateway.upstreams.iter().collect();
    services.sort_by_key(|(name, _)| **name);
    for (service, upstream) in services {
        let Some(doc) = fetch_document(&gateway.client, upstream).await else {
            return Problem::unavailable(service).into_response();
        };
        documents.push((*service, doc));
    }
    match merge_documents(&documents) {
        Ok(merged) => {
            *cached = Some((Instant::now(), merged.clone()));
            Json(merged).into_response()
        }
        Err(e) => Problem::internal(e).into_response(),
    }
}

/// One OpenAPI 3.1 document from the services' own.
pub fn merge_documents(
    documents: &[(&str, serde_json::Value)],
) -> Result<serde_json::Value, String> {
    let mut merged = serde_json::json!({
        "openapi": "3.1.0",
        "info": { "title": "Emporium API", "version": "1", "description": "The public REST API of Emporium, through the gateway." },
        "servers": [{ "url": "/" }],
        "paths": {},
        "components": { "schemas": {}, "securitySchemes": {} }
    });
    let mut owners: HashMap<String, &str> = HashMap::new();
    for (service, doc) in documents {
        for section in ["paths", "components/schemas", "components/securitySchemes"] {
            let pointer = format!("/{section}");
            let Some(from) = doc.pointer(&pointer).and_then(|v| v.as_object()) else {
                continue;
            };
            let Some(into) = merged.pointer_mut(&pointer).and_then(|v| v.as_object_mut()) else {
                continue;
            };
            for (name, value) in from {
                let key = format!("{section}/{name}");
                match into.get(name) {
                    Some(existing) if existing != value => {
                        return Err(format!(
                            "{key} differs between {} and {service}",
                            owners.get(&key).copied().unwrap_or("?")
                        ));
                    }
                    Some(_) => {}
                    None => {
                        into.insert(name.clone(), value.clone());
                        owners.insert(key, service);
                    }
                }
            }
        }
    }
    add_edge_answers(&mut merged);
    Ok(merged)
}

/// What the gateway itself may answer on any route: 429 over a rate limit,
/// 503 when no replica of the service answers, 504 when it answers late.
fn add_edge_answers(merged: &mut serde_json::Value) {
    let Some(paths) = merged.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
    {
        let Some(responses) = operation
            .get_mut("responses")
            .and_then(|r| r.as_object_mut())
        else {
            continue;
        };
        for (status, description) in [
            ("429", "over a rate limit; see Retry-After"),
            ("503", "the service is unreachable"),
            ("504", "the service did not answer in time"),
        ] {
            responses
                .entry(status)
                .or_insert_with(|| emporium_platform::openapi::problem(description));
        }
    }
}

async fn fetch_document(client: &HttpClient, upstream: &Upstream) -> Option<serde_json::Value> {
    let pool = match upstream {
        Upstream::Local(router) => {
            let request = Request::get("/openapi.json").body(Body::empty()).ok()?;
            let Ok(response) = router.clone().oneshot(request).await;
            let bytes = axum::body::to_bytes(response.into_body(), 4 * 1024 * 1024)
                .await
                .ok()?;
            return serde_json::from_slice(&bytes).ok();
        }
        Upstream::Replicas(pool) => pool,
    };
    for base in pool.order() {
        let uri = format!("{base}/openapi.json").parse::<Uri>().ok()?;
        let request = Request::get(uri).body(Body::empty()).ok()?;
        let Ok(Ok(response)) =
            tokio::time::timeout(Duration::from_secs(3), client.request(request)).await
        else {
            continue;
        };
        if !response.status().is_success() {
            continue;
        }
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), 4 * 1024 * 1024)
            .await
            .ok()?;
        if let Ok(doc) = serde_json::from_slice(&bytes) {
            return Some(doc);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::merge_documents;
    use serde_json::json;

    #[test]
    fn documents_merge_and_shared_schemas_must_agree() {
        let shared = emporium_platform::openapi::shared_schemas();
        let doc = |path: &str, extra: serde_json::Value| {
            let mut schemas = shared.clone();
            schemas.insert("Extra".into(), extra);
            json!({ "paths": { path: { "get": { "responses": {} } } }, "components": { "schemas": schemas } })
        };
        let merged = merge_documents(&[
            ("catalog", doc("/a", json!({ "type": "string" }))),
            ("basket", doc("/b", json!({ "type": "string" }))),
        ])
        .unwrap();
        assert!(merged.pointer("/paths/~1a").is_some() && merged.pointer("/paths/~1b").is_some());
        assert!(
            merged.pointer("/paths/~1a/get/responses/429").is_some(),
            "the gateway's own answers are documented on every operation"
        );
        assert_eq!(
            merged.pointer("/components/schemas/Problem/properties/dependency/type"),
            Some(&json!("string"))
        );
        let err = merge_documents(&[
            ("catalog", doc("/a", json!({ "type": "string" }))),
            ("basket", doc("/b", json!({ "type": "integer" }))),
        ])
        .unwrap_err();
        assert!(
            err.contains("Extra") && err.contains("catalog") && err.contains("basket"),
            "{err}"
        );
    }
}
