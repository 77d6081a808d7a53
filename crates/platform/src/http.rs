//! HTTP serving: extractors that answer bad input with problem+json, the
//! observing middleware (request ids, traces, RED metrics, timeouts), the
//! operational routes and graceful serving.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{ErrorCode, Problem};
use crate::telemetry;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// JSON in and out; a body that does not parse is a problem+json 4xx. A
/// request body must be a JSON object: serde would otherwise read an array
/// as a struct's fields in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let axum::Json(value) =
            axum::Json::<serde_json::Value>::from_request(request, state).await?;
        if !value.is_object() {
            return Err(Problem::new(
                ErrorCode::Unprocessable,
                "the body must be a JSON object",
            ));
        }
        parse_value(value).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A JSON value read as `T`; a value of the wrong shape is a 422, as the
/// `Json` extractor answers it (for handlers that keep the raw value, such
/// as those that fingerprint the body for `Idempotency-Key`).
pub fn parse_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    serde_json::from_value(value).map_err(|e| {
        Problem::new(
            ErrorCode::Unprocessable,
            format!("the body does not match the expected shape: {e}"),
        )
    })
}

/// Path parameters; a malformed one is a 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct Path<T>(pub T);

/// Query parameters; a malformed one is a 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct Query<T>(pub T);

fn status_code(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::Unprocessable,
        _ => ErrorCode::BadRequest,
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        let detail = match &rejection {
            JsonRejection::JsonDataError(e) => format!(
                "the body does not match the expected shape: {}",
                e.body_text()
            ),
            JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON".to_owned(),
            JsonRejection::MissingJsonContentType(_) => {
                "expected `Content-Type: application/json`".to_owned()
            }
            JsonRejection::BytesRejection(_)
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                "the body is larger than this endpoint accepts".to_owned()
            }
            _ => "the body could not be read".to_owned(),
        };
        Problem::new(status_code(rejection.status()), detail)
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Problem::bad_request(format!("invalid path parameter: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Problem::bad_request(format!("invalid query: {}", rejection.body_text()))
    }
}

/// An address block in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a
/// bare address is a block of one. Read from the configuration as a string,
/// so that a malformed block stops the start rather than trusting nobody or
/// everybody by surprise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let network = address
            .parse::<IpAddr>()
            .map_err(|_| format!("`{raw}` is not an address or a CIDR block"))?
            .to_canonical();
        let longest = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => longest,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= longest)
                .ok_or_else(|| format!("`{raw}`: the prefix must be 0 to {longest}"))?,
        };
        Ok(Self { network, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`http.trusted_proxies`),
/// handed to every handler as a request extension by [`finish_router`].
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Arc<[Cidr]>);

impl TrustedProxies {
    pub fn new(blocks: &[Cidr]) -> Self {
        Self(blocks.into())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(ip))
    }
}

/// The client's address: the direct peer unless it is a trusted proxy, in
/// which case the rightmost address of `X-Forwarded-For` that is not a
/// trusted proxy. A client cannot choose its address by sending the header:
/// only the hops our own proxies appended are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        // A router served without `finish_router` trusts no proxy.
        let trusted = parts
            .extensions
            .get::<TrustedProxies>()
            .cloned()
            .unwrap_or_default();
        Ok(Self(client_addr(peer, &parts.headers, &trusted)))
    }
}

pub fn client_addr(
    peer: Option<IpAddr>,
    headers: &axum::http::HeaderMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !trusted.contains(peer) {
        return Some(peer);
    }
    // Every header line, in order: a proxy may append a line of its own
    // rather than extend the last one.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop that does not parse was not written by a proxy we trust:
        // the last trusted hop is the client as far as we can tell.
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !trusted.contains(client) {
            break;
        }
    }
    Some(client)
}

/// One page of a list, as every list endpoint answers it.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            page: self.page,
            per_page: self.per_page,
            total: self.total,
        }
    }
}

/// The most items a list endpoint answers at once.
pub const MAX_PER_PAGE: u64 = 100;

/// `page` (from 1, default 1) and `per_page` (1 to [`MAX_PER_PAGE`], default
/// 20), each refused with its own message.
pub fn page_params(page: Option<&str>, per_page: Option<&str>) -> Result<(u64, u64), Problem> {
    let page = match page {
        None => 1,
        Some(p) => p
            .parse::<u64>()
            .ok()
            .filter(|p| (1..=1_000_000).contains(p))
            .ok_or_else(|| {
                Problem::bad_parameter("page", "must be a whole number from 1 to 1000000")
            })?,
    };
    let per_page = match per_page {
        None => 20,
        Some(p) => p
            .parse::<u64>()
            .ok()
            .filter(|p| (1..=MAX_PER_PAGE).contains(p))
            .ok_or_else(|| {
                Problem::bad_parameter(
                    "per_page",
                    format!("must be a whole number from 1 to {MAX_PER_PAGE}"),
                )
            })?,
    };
    Ok((page, per_page))
}

/// What the observing middleware needs to know.
#[derive(Clone)]
pub struct Observe {
    pub service: &'static str,
    pub timeout: Duration,
}

/// Request ids, a span joined to the caller's trace, RED metrics by route
/// template, and a deadline; for HTTP and gRPC alike.
pub async fn observe(State(observe): State<Observe>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let grpc = is_grpc(&request);
    // A gRPC route matches a whole service; the method is the path, kept as
    // a label only when the service knew the method (bounded cardinality).
    let grpc_method = (grpc && endpoint != "unmatched").then(|| request.uri().path().to_owned());
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    let span_name = match &grpc_method {
        Some(path) => path.trim_start_matches('/').to_owned(),
        None => format!("{method} {endpoint}"),
    };
    let span = tracing::info_span!(
        "request",
        "otel.name" = %span_name,
        "otel.kind" = "server",
        service = observe.service,
        method = %method,
        endpoint = %endpoint,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        "otel.status_code" = tracing::field::Empty,
    );
    telemetry::join_remote_trace(&span, request.headers());
    // A gRPC caller states its own deadline; the shorter one holds.
    let timeout = match grpc.then(|| grpc_timeout(request.headers())).flatten() {
        Some(asked) => asked.min(observe.timeout),
        None => observe.timeout,
    };
    let outcome = tokio::time::timeout(timeout, next.run(request).instrument(span.clone())).await;
    let mut response = match outcome {
        Ok(response) => response,
        Err(_) => {
            let _enter = span.enter();
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
            if grpc {
                tonic::Status::deadline_exceeded("the call took longer than its deadline")
                    .into_http::<axum::body::Body>()
            } else {
                Problem::new(ErrorCode::Timeout, "the request took too long").into_response()
            }
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    if grpc {
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(grpc_code_name)
            .unwrap_or("OK");
        let endpoint = match grpc_method {
            Some(path) if code != "UNIMPLEMENTED" => path,
            _ => "unknown".to_owned(),
        };
        let labels = [
            ("service", observe.service.to_owned()),
            ("method", endpoint.clone()),
            ("code", code.to_owned()),
        ];
        metrics::counter!("grpc_server_requests_total", &labels).increment(1);
        let labels = [
            ("service", observe.service.to_owned()),
            ("method", endpoint),
        ];
        metrics::histogram!("grpc_server_request_duration_seconds", &labels).record(elapsed);
    } else {
        let status = response.status().as_u16().to_string();
        let labels = [
            ("service", observe.service.to_owned()),
            ("method", method.clone()),
            ("endpoint", endpoint.clone()),
            ("status", status),
        ];
        metrics::counter!("http_requests_total", &labels).increment(1);
        let labels = [
            ("service", observe.service.to_owned()),
            ("method", method),
            ("endpoint", endpoint),
        ];
        metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    // At debug, as an access log: one line a request, in its trace; the
    // span is entered only when the line is written.
    if tracing::enabled!(tracing::Level::DEBUG) {
        span.in_scope(|| {
            tracing::debug!(
                status = response.status().as_u16(),
                duration_ms = elapsed * 1000.0,
                "request answered"
            )
        });
    }
    response
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The `grpc-timeout` header (gRPC over HTTP/2: at most 8 digits and a unit).
fn grpc_timeout(headers: &axum::http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The canonical name of a `grpc-status` value, as gRPC's own tools print it.
fn grpc_code_name(code: &str) -> &'static str {
    match code.trim().parse::<i32>() {
        Ok(number) => code_name(tonic::Code::from_i32(number)),
        Err(_) => "UNKNOWN",
    }
}

/// The canonical name of a gRPC status code (`UNAVAILABLE`), the same in
/// the servers' and the clients' metrics.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A dependency probed by `/ready`. A required one decides readiness; a
/// degradable one (a cache, a broker behind an outbox) is reported but keeps
/// the service in rotation, since it still serves without it.
#[derive(Clone)]
pub struct Check {
    pub name: &'static str,
    pub required: bool,
    probe: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl Check {
    pub fn new<F, Fut>(name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            required: true,
            probe: Arc::new(move || Box::pin(probe())),
        }
    }

    /// Reported by `/ready` without taking the service out of rotation.
    pub fn degradable(self) -> Self {
        Self {
            required: false,
            ..self
        }
    }

    async fn run(&self) -> Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(2), (self.probe)()).await {
            Ok(outcome) => outcome,
            Err(_) => Err("no answer within 2s".to_owned()),
        }
    }
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
    service: &'static str,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    checks: serde_json::Map<String, serde_json::Value>,
}

/// `/health`: the process is up. Public everywhere, since it tells nothing.
pub fn health_route(service: &'static str) -> Router {
    let health = move || async move {
        Json(Status {
            status: "up",
            service,
            checks: Default::default(),
        })
    };
    Router::new().route("/health", get(health))
}

/// `/health`, `/ready` and `/metrics`, the same on every service.
pub fn operational_routes(service: &'static str, checks: Vec<Check>) -> Router {
    let ready = move || {
        let checks = checks.clone();
        async move {
            let outcomes = futures::future::join_all(checks.iter().map(Check::run)).await;
            let mut report = serde_json::Map::new();
            let mut failed_required = None;
            for (check, outcome) in checks.iter().zip(outcomes) {
                let state = match outcome {
                    Ok(()) => "up".to_owned(),
                    Err(e) => {
                        tracing::warn!(dependency = check.name, required = check.required, error = %e, "dependency check failed");
                        if check.required && failed_required.is_none() {
                            failed_required = Some(check.name);
                        }
                        "down".to_owned()
                    }
                };
                report.insert(check.name.to_owned(), serde_json::Value::from(state));
            }
            match failed_required {
                Some(name) => Problem::unavailable(name).into_response(),
                None => {
                    let degraded = report.values().any(|v| v == "down");
                    let status = if degraded { "degraded" } else { "ready" };
                    Json(Status {
                        status,
                        service,
                        checks: report,
                    })
                    .into_response()
                }
            }
        }
    };
    health_route(service).route("/ready", get(ready)).route(
        "/metrics",
        get(
            move |owner: Option<axum::Extension<crate::service::MetricsOwner>>| {
                metrics_text(service, owner.map(|axum::Extension(owner)| owner.0))
            },
        ),
    )
}

/// The process's metrics, at the port of the service that owns them: a
/// process of several services serves them once (see `Runtime`).
async fn metrics_text(service: &'static str, owner: Option<&'static str>) -> Response {
    if let Some(owner) = owner.filter(|&owner| owner != service) {
        return Problem::not_found(format!(
            "this process serves its metrics once, at {owner}'s /metrics"
        ))
        .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry::metrics_handle().render(),
    )
        .into_response()
}

/// Wraps a service's routes with the operational routes, the observing
/// middleware, the body limit and a problem+json fallback.
pub fn finish_router(
    service: &'static str,
    routes: Router,
    checks: Vec<Check>,
    settings: &crate::config::HttpSettings,
) -> Router {
    finish(
        service,
        routes.merge(operational_routes(service, checks)),
        settings,
    )
}

/// As [`finish_router`], with `/health` alone: for a port the public
/// reaches, whose readiness and metrics are served on another listener.
pub fn finish_public_router(
    service: &'static str,
    routes: Router,
    settings: &crate::config::HttpSettings,
) -> Router {
    finish(service, routes.merge(health_route(service)), settings)
}

fn finish(service: &'static str, routes: Router, settings: &crate::config::HttpSettings) -> Router {
    let observe_state = Observe {
        service,
        timeout: Duration::from_millis(settings.request_timeout_ms),
    };
    routes
        .layer(axum::Extension(TrustedProxies::new(
            &settings.trusted_proxies,
        )))
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            settings.body_limit_bytes,
        ))
        .layer(middleware::from_fn_with_state(observe_state, observe))
}

/// A listener bound before the service starts, so that tests can ask for
/// port 0 and learn the real one.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {what} on {addr}: {e}"))
}

/// A connection whose small writes leave at once. An answer is several
/// small writes (a gRPC answer's headers, data and trailers); with Nagle's
/// algorithm the last waits for the ACK of the first, which a client
/// delays by up to 40 ms: every call of a quiet page paid that.
pub trait NoDelay {
    fn no_delay(&self);
}

impl NoDelay for tokio::net::TcpStream {
    fn no_delay(&self) {
        if let Err(e) = self.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    }
}

impl NoDelay for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn no_delay(&self) {
        self.get_ref().0.no_delay();
    }
}

/// Serves HTTP/1.1 and HTTP/2 (gRPC) until `shutdown`, then drains.
pub async fn serve<L>(
    listener: L,
    router: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: NoDelay,
{
    use axum::serve::ListenerExt;
    // `tap_io` is also what lets axum hand the peer address of any
    // listener to `ConnectInfo`.
    axum::serve(
        listener.tap_io(|io| io.no_delay()),
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn forwarded(values: &[&str]) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn proxies(blocks: &[&str]) -> TrustedProxies {
        let blocks: Vec<Cidr> = blocks.iter().map(|b| b.parse().unwrap()).collect();
        TrustedProxies::new(&blocks)
    }

    fn ip(raw: &str) -> Option<IpAddr> {
        Some(raw.parse().unwrap())
    }

    #[test]
    fn client_addresses_come_from_forwarding_headers_only_from_trusted_proxies() {
        let header = forwarded(&["198.51.100.1"]);
        // No proxy is trusted by default, loopback and private peers included.
        let none = TrustedProxies::default();
        for peer in ["127.0.0.1", "10.1.2.3", "192.168.0.9", "::1", "203.0.113.9"] {
            assert_eq!(client_addr(ip(peer), &header, &none), ip(peer), "{peer}");
        }
        // A peer outside the list is the client, whatever it says.
        let trusted = proxies(&["10.0.0.0/8", "2001:db8:ff::/48"]);
        assert_eq!(
            client_addr(ip("192.168.0.9"), &header, &trusted),
            ip("192.168.0.9")
        );
        // A trusted proxy: the rightmost address that is not one of ours.
        let chain = forwarded(&["6.6.6.6, 198.51.100.1", "10.0.0.2"]);
        assert_eq!(
            client_addr(ip("10.0.0.1"), &chain, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_addr(
                ip("2001:db8:ff:1::5"),
                &forwarded(&["2001:db8:1::7"]),
                &trusted
            ),
            ip("2001:db8:1::7")
        );
        // Without a header, or with a hop that does not parse, the last
        // trusted hop is all we know.
        let empty = axum::http::HeaderMap::new();
        assert_eq!(
            client_addr(ip("10.0.0.1"), &empty, &trusted),
            ip("10.0.0.1")
        );
        let garbage = forwarded(&["198.51.100.1, nonsense, 10.0.0.3"]);
        assert_eq!(
            client_addr(ip("10.0.0.1"), &garbage, &trusted),
            ip("10.0.0.3")
        );
        // IPv4 over an IPv6 socket is the IPv4 address.
        assert_eq!(
            client_addr(ip("::ffff:10.0.0.1"), &header, &trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn cidr_blocks_parse_and_refuse_nonsense() {
        let block: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(block.contains("10.255.0.1".parse().unwrap()));
        assert!(!block.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "192.0.2.4".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.4/32");
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        assert!(!all.contains("192.0.2.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "::/129", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_grpc_code_is_named_as_itself() {
        let names: Vec<&str> = (0..=16).map(|n| grpc_code_name(&n.to_string())).collect();
        assert_eq!(
            names,
            [
                "OK",
                "CANCELLED",
                "UNKNOWN",
                "INVALID_ARGUMENT",
                "DEADLINE_EXCEEDED",
                "NOT_FOUND",
                "ALREADY_EXISTS",
                "PERMISSION_DENIED",
                "RESOURCE_EXHAUSTED",
                "FAILED_PRECONDITION",
                "ABORTED",
                "OUT_OF_RANGE",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS",
                "UNAUTHENTICATED",
            ]
        );
        assert_eq!(grpc_code_name("x"), "UNKNOWN");
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let parse = |v: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_str(v).unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("1u"), Some(Duration::from_micros(1)));
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("123456789S"), None, "more than 8 digits");
        assert_eq!(parse("5x"), None);
        assert_eq!(parse("S"), None);
    }
}
