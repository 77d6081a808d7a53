//! gRPC: servers with health and reflection behind the same observing
//! middleware as HTTP, and clients with deadlines and trace propagation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_health::ServingStatus;
use tracing::Instrument;

use crate::auth::Verifier;
use crate::config::{HttpSettings, Secret, Settings};
use crate::http::{Observe, observe};

/// Who may call one gRPC method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callers {
    /// Any caller, with no credential: only the credential exchange itself.
    Anyone,
    /// These services, each presenting its own token for this service.
    Services(&'static [&'static str]),
}

/// Every gRPC method a service serves (full path, `/pkg.Service/Method`)
/// and who may call it. A method missing here admits no one.
pub type Admission = &'static [(&'static str, Callers)];

/// The service that made a call, as its verified token says; handlers
/// find it in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallingService(pub String);

/// Health and reflection answer anyone: probes and tools need no secret.
fn open_to_anyone(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

#[derive(Clone)]
struct Gate {
    service: &'static str,
    admission: Admission,
    verifier: Verifier,
}

/// Admits a call only with a token of a service the method admits, minted
/// for this service; answers `UNAUTHENTICATED` or `PERMISSION_DENIED`
/// before the method runs otherwise.
async fn admit(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if open_to_anyone(&path) {
        return next.run(request).await;
    }
    let callers = gate
        .admission
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, callers)| *callers);
    if callers == Some(Callers::Anyone) {
        return next.run(request).await;
    }
    let refuse = |status: tonic::Status, reason: &'static str, caller: &str| {
        metrics::counter!("grpc_server_refused_total", "service" => gate.service, "reason" => reason)
            .increment(1);
        tracing::warn!(method = %path, caller, reason, "grpc call refused");
        status.into_http::<axum::body::Body>()
    };
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let Some(token) = token else {
        return refuse(
            tonic::Status::unauthenticated("a service token is required"),
            "no credential",
            "",
        );
    };
    let claims = match gate.verifier.verify_service(&token, gate.service).await {
        Ok(claims) => claims,
        Err(problem) => {
            return refuse(
                tonic::Status::unauthenticated(problem.detail),
                "bad credential",
                "",
            );
        }
    };
    match callers {
        Some(Callers::Services(admitted)) if admitted.contains(&claims.svc.as_str()) => {}
        _ => {
            let detail = format!("{} may not call {path}", claims.svc);
            return refuse(
                tonic::Status::permission_denied(detail),
                "caller not admitted",
                &claims.svc,
            );
        }
    }
    request.extensions_mut().insert(CallingService(claims.svc));
    next.run(request).await
}

/// Health, reflection and `routes` as one router, observed like HTTP:
/// reflection (v1 and v1alpha) lists exactly what this port serves, and
/// every other method admits only the callers `admission` names.
pub async fn router(
    service: &'static str,
    routes: Routes,
    served: &[&'static str],
    admission: Admission,
    verifier: Verifier,
    settings: &HttpSettings,
) -> anyhow::Result<axum::Router> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in served {
        reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(emporium_proto::DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in served {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let state = Observe {
        service,
        timeout: Duration::from_millis(settings.request_timeout_ms),
    };
    let gate = Gate {
        service,
        admission,
        verifier,
    };
    Ok(routes
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(gate, admit))
        .layer(axum::middleware::from_fn_with_state(state, observe)))
}

/// A lazily connecting channel whose every call has `deadline`.
pub fn channel(url: &str, deadline: Duration) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| anyhow::anyhow!("configuration: grpc url `{url}`: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(deadline)
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

/// What every outgoing call carries: the current trace and, to a peer, the
/// caller's service token.
#[derive(Clone, Default)]
pub struct Outgoing {
    authorization: Option<AsciiMetadataValue>,
}

impl Outgoing {
    /// Presents `token` as the bearer on every call: for a caller that
    /// holds a token of its own instead of a [`Peer`]'s credentials (tests,
    /// tools).
    pub fn bearer(token: &str) -> Result<Self, tonic::metadata::errors::InvalidMetadataValue> {
        Ok(Self {
            authorization: Some(format!("Bearer {token}").parse()?),
        })
    }
}

impl tonic::service::Interceptor for Outgoing {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut request = propagate_trace(request)?;
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The channel a [`Peer`] hands each call: generated clients take it,
/// `InventoryClient::new(channel)`.
pub type Authorized = InterceptedService<Transport, Outgoing>;

/// Where a peer's calls go: over HTTP/2 to its address, or, when the peer
/// runs in this process, straight into its gRPC router: the same admission
/// (the caller's token is checked), observation and handlers, without the
/// socket, the HTTP/2 framing and the tasks that carry them.
#[derive(Clone)]
pub enum Transport {
    Remote(Channel),
    Local {
        router: axum::Router,
        deadline: Duration,
    },
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<tonic::body::Body>> for Transport {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        match self {
            Self::Remote(channel) => {
                tower::Service::poll_ready(channel, cx).map_err(BoxError::from)
            }
            Self::Local { .. } => std::task::Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        match self {
            Self::Remote(channel) => {
                let answer = tower::Service::call(channel, request);
                Box::pin(async move { answer.await.map_err(BoxError::from) })
            }
            Self::Local { router, deadline } => {
                let (router, deadline) = (router.clone(), *deadline);
                Box::pin(async move {
                    let answer = tower::ServiceExt::oneshot(router, request);
                    match tokio::time::timeout(deadline, answer).await {
                        Ok(Ok(response)) => Ok(response.map(tonic::body::Body::new)),
                        Ok(Err(never)) => match never {},
                        // As the channel's own deadline answers.
                        Err(_) => Ok(tonic::Status::deadline_exceeded(
                            "the peer did not answer in time",
                        )
                        .into_http()),
                    }
                })
            }
        }
    }
}

/// Interceptor that carries the current trace to the callee.
pub fn propagate_trace(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(value) = crate::telemetry::current_traceparent().and_then(|v| v.parse().ok()) {
        request.metadata_mut().insert("traceparent", value);
    }
    Ok(request)
}

/// A token is fetched again once less than this share of its life is left,
/// so a short outage of identity costs no call.
const REFRESH_AT_REMAINING: f64 = 0.5;

/// A service's own credentials: its secret, exchanged at identity for a
/// short-lived token per callee, kept until half its life is gone. A token
/// still valid is used while identity cannot be reached.
#[derive(Clone)]
pub struct ServiceCredentials {
    inner: Arc<CredentialsInner>,
}

struct CredentialsInner {
    service: &'static str,
    source: Source,
    tokens: tokio::sync::Mutex<HashMap<&'static str, CachedToken>>,
}

enum Source {
    /// Client credentials at identity.
    Identity { secret: Secret, channel: Channel },
    /// One token minted elsewhere, for every callee (tests and tools).
    Fixed(AsciiMetadataValue),
}

struct CachedToken {
    value: AsciiMetadataValue,
    refresh_at: Instant,
    expires_at: Instant,
}

impl ServiceCredentials {
    /// The credentials of `service`, which runs in this process: its secret
    /// from `auth.service_secrets`, identity as configured or in `local`.
    pub fn for_service(
        settings: &Settings,
        local: &[crate::Started],
        service: &'static str,
    ) -> anyhow::Result<Self> {
        let secret = settings
            .auth
            .service_secrets
            .get(service)
            .filter(|s| !s.expose().is_empty())
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "configuration: auth.service_secrets.{service} (EMPORIUM__AUTH__SERVICE_SECRETS__{}) is required to call other services",
                    service.to_uppercase()
                )
            })?;
        let url = crate::service::peer_url(settings, local, "identity")?;
        Ok(Self::from_source(
            service,
            Source::Identity {
                secret,
                channel: channel(&url, Duration::from_secs(3))?,
            },
        ))
    }

    /// Presents `token` on every call, whatever the callee: a token minted
    /// outside identity's exchange, for tests and tools.
    pub fn fixed(service: &'static str, token: &str) -> anyhow::Result<Self> {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("a token must be ASCII"))?;
        Ok(Self::from_source(service, Source::Fixed(value)))
    }

    fn from_source(service: &'static str, source: Source) -> Self {
        Self {
            inner: Arc::new(CredentialsInner {
                service,
                source,
                tokens: tokio::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// The `authorization` value for calls to `audience`.
    pub async fn authorization(
        &self,
        audience: &'static str,
    ) -> Result<AsciiMetadataValue, PeerError> {
        let (secret, identity) = match &self.inner.source {
            Source::Fixed(value) => return Ok(value.clone()),
            Source::Identity { secret, channel } => (secret, channel),
        };
        let mut tokens = self.inner.tokens.lock().await;
        let now = Instant::now();
        if let Some(cached) = tokens.get(audience)
            && now < cached.refresh_at
        {
            return Ok(cached.value.clone());
        }
        match self.fetch(secret, identity, audience).await {
            Ok(fresh) => {
                let value = fresh.value.clone();
                tokens.insert(audience, fresh);
                Ok(value)
            }
            Err(e) => match tokens.get(audience) {
                Some(cached) if now < cached.expires_at => {
                    tracing::warn!(error = %e, audience, "service token not renewed; using the one held");
                    Ok(cached.value.clone())
                }
                _ => Err(e),
            },
        }
    }

    async fn fetch(
        &self,
        secret: &Secret,
        identity: &Channel,
        audience: &'static str,
    ) -> Result<CachedToken, PeerError> {
        use emporium_proto::identity::v1 as pb;
        let request = pb::IssueServiceTokenRequest {
            service: self.inner.service.to_owned(),
            secret: secret.expose().to_owned(),
            audience: audience.to_owned(),
        };
        let started = Instant::now();
        let answer = pb::identity_client::IdentityClient::with_interceptor(
            identity.clone(),
            propagate_trace,
        )
        .issue_service_token(request)
        .await
        .map_err(|status| {
            if transient(&status) {
                PeerError::Unavailable {
                    peer: "identity",
                    reason: status.message().to_owned(),
                }
            } else {
                PeerError::Refused {
                    peer: "identity",
                    status,
                }
            }
        })?
        .into_inner();
        let life = (answer.expires_at - chrono::Utc::now().timestamp()).max(1) as f64;
        let value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {}", answer.token))
            .map_err(|_| PeerError::Unavailable {
                peer: "identity",
                reason: "the token is not ASCII".into(),
            })?;
        Ok(CachedToken {
            value,
            refresh_at: started + Duration::from_secs_f64(life * (1.0 - REFRESH_AT_REMAINING)),
            expires_at: started + Duration::from_secs_f64((life - 5.0).max(0.0)),
        })
    }
}

/// How a service calls one peer: the deadline of each attempt, how often an
/// idempotent call is retried, and when the circuit opens.
#[derive(Clone, Copy, Debug)]
pub struct PeerPolicy {
    pub deadline: Duration,
    /// Further attempts of an idempotent call after a transient failure.
    pub retries: u32,
    /// Consecutive transient failures that open the circuit.
    pub failures_to_open: u32,
    /// How long an open circuit refuses calls before one trial goes through.
    pub open_for: Duration,
}

impl Default for PeerPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(1500),
            retries: 2,
            failures_to_open: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// Why a call to a peer did not answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer is down, slow or its circuit is open: worth a 503.
    #[error("{peer} is unavailable: {reason}")]
    Unavailable { peer: &'static str, reason: String },
    /// The peer answered with an error of its own.
    #[error("{peer} answered {}: {}", .status.code(), .status.message())]
    Refused {
        peer: &'static str,
        status: tonic::Status,
    },
}

impl From<PeerError> for crate::Problem {
    fn from(err: PeerError) -> Self {
        match err {
            PeerError::Unavailable { peer, reason } => {
                tracing::warn!(peer, reason, "peer unavailable");
                crate::Problem::unavailable(peer)
            }
            refused @ PeerError::Refused { .. } => crate::Problem::internal(refused),
        }
    }
}

/// Failures that say nothing about the request, only about the peer (a
/// connection closed under a call answers `Cancelled`).
fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
    )
}

#[derive(Debug)]
enum Circuit {
    Closed {
        failures: u32,
    },
    Open {
        until: std::time::Instant,
    },
    /// One trial call is out; the others are refused until it returns.
    Trial,
}

/// A peer's channel with a deadline on every call, retries for idempotent
/// ones, and a circuit breaker that fails fast while the peer is down.
#[derive(Clone)]
pub struct Peer {
    name: &'static str,
    transport: Transport,
    policy: PeerPolicy,
    credentials: ServiceCredentials,
    circuit: std::sync::Arc<std::sync::Mutex<Circuit>>,
}

impl Peer {
    /// Calls to service `name` at `url`, each with a token of `credentials`
    /// minted for `name`.
    pub fn new(
        name: &'static str,
        url: &str,
        policy: PeerPolicy,
        credentials: ServiceCredentials,
    ) -> anyhow::Result<Self> {
        Ok(Self::over(
            name,
            Transport::Remote(channel(url, policy.deadline)?),
            policy,
            credentials,
        ))
    }

    fn over(
        name: &'static str,
        transport: Transport,
        policy: PeerPolicy,
        credentials: ServiceCredentials,
    ) -> Self {
        Self {
            name,
            transport,
            policy,
            credentials,
            circuit: std::sync::Arc::new(std::sync::Mutex::new(Circuit::Closed { failures: 0 })),
        }
    }

    /// `name`, where the settings or this process say it runs: a peer
    /// started in this process, and not configured elsewhere, is called
    /// in-process.
    pub fn of(
        name: &'static str,
        settings: &Settings,
        local: &[crate::Started],
        policy: PeerPolicy,
        credentials: &ServiceCredentials,
    ) -> anyhow::Result<Self> {
        if settings.peer(name).is_none()
            && let Some(router) = local
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.grpc_router.clone())
        {
            let transport = Transport::Local {
                router,
                deadline: policy.deadline,
            };
            return Ok(Self::over(name, transport, policy, credentials.clone()));
        }
        let url = crate::service::peer_url(settings, local, name)?;
        Self::new(name, &url, policy, credentials.clone())
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the circuit lets a call through now.
    fn admit(&self) -> bool {
        let mut circuit = self.circuit.lock().unwrap_or_else(|e| e.into_inner());
        match *circuit {
            Circuit::Closed { .. } => true,
            Circuit::Open { until } if std::time::Instant::now() >= until => {
                *circuit = Circuit::Trial;
                true
            }
            Circuit::Open { .. } | Circuit::Trial => false,
        }
    }

    fn record(&self, healthy: bool) {
        let mut circuit = self.circuit.lock().unwrap_or_else(|e| e.into_inner());
        let next = match (&*circuit, healthy) {
            (_, true) => Circuit::Closed { failures: 0 },
            (Circuit::Closed { failures }, false)
                if failures + 1 < self.policy.failures_to_open =>
            {
                Circuit::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => Circuit::Open {
                until: std::time::Instant::now() + self.policy.open_for,
            },
        };
        let open = matches!(next, Circuit::Open { .. });
        *circuit = next;
        metrics::gauge!("grpc_client_circuit_open", "service" => self.credentials.service(), "peer" => self.name).set(if open {
            1.0
        } else {
            0.0
        });
    }

    /// Calls `method` on the peer: `call` builds the request on the
    /// channel it is given. An idempotent call is tried again after a
    /// transient failure; no call is made while the circuit is open.
    pub async fn call<T, F, Fut>(
        &self,
        method: &'static str,
        idempotent: bool,
        mut call: F,
    ) -> Result<T, PeerError>
    where
        F: FnMut(Authorized) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let attempts = if idempotent {
            1 + self.policy.retries
        } else {
            1
        };
        let mut last = String::new();
        for attempt in 0..attempts {
            if !self.admit() {
                metrics::counter!("grpc_client_requests_total", "service" => self.credentials.service(), "peer" => self.name, "method" => method, "code" => "CIRCUIT_OPEN").increment(1);
                return Err(PeerError::Unavailable {
                    peer: self.name,
                    reason: "circuit open".into(),
                });
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
            }
            let authorization = self.credentials.authorization(self.name).await?;
            let channel = InterceptedService::new(
                self.transport.clone(),
                Outgoing {
                    authorization: Some(authorization),
                },
            );
            let started = Instant::now();
            // The client's side of the call, in the caller's trace; the
            // callee's request span is its child.
            let span = tracing::info_span!(
                "grpc call",
                "otel.name" = %format!("{}/{method}", self.name),
                "otel.kind" = "client",
                service = self.credentials.service(),
                peer = self.name,
                rpc.method = method,
                rpc.grpc.status_code = tracing::field::Empty,
            );
            let outcome = match crate::faults::process()
                .before_peer_call(self.name, self.policy.deadline)
                .await
            {
                Ok(None) => call(channel).instrument(span.clone()).await,
                // A fault flag's latency spent part of the deadline.
                Ok(Some(left)) => {
                    tokio::time::timeout(left, call(channel).instrument(span.clone()))
                        .await
                        .unwrap_or_else(|_| {
                            Err(tonic::Status::deadline_exceeded(format!(
                                "{} did not answer within the deadline",
                                self.name
                            )))
                        })
                }
                Err(fault) => Err(fault),
            };
            metrics::histogram!("grpc_client_duration_seconds", "service" => self.credentials.service(), "peer" => self.name, "method" => method)
                .record(started.elapsed().as_secs_f64());
            let code = match &outcome {
                Ok(_) => tonic::Code::Ok,
                Err(status) => status.code(),
            };
            metrics::counter!("grpc_client_requests_total", "service" => self.credentials.service(), "peer" => self.name, "method" => method, "code" => crate::http::code_name(code)).increment(1);
            span.record("rpc.grpc.status_code", code as i32);
            match outcome {
                Ok(response) => {
                    self.record(true);
                    return Ok(response.into_inner());
                }
                Err(status) if transient(&status) => {
                    self.record(false);
                    last = format!("{}: {}", status.code(), status.message());
                }
                Err(status) => {
                    self.record(true);
                    return Err(PeerError::Refused {
                        peer: self.name,
                        status,
                    });
                }
            }
        }
        Err(PeerError::Unavailable {
            peer: self.name,
            reason: last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(failures_to_open: u32, open_for: Duration) -> Peer {
        Peer::new(
            "catalog",
            "http://127.0.0.1:9",
            PeerPolicy {
                deadline: Duration::from_millis(200),
                retries: 2,
                failures_to_open,
                open_for,
            },
            ServiceCredentials::fixed("basket", "t").unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn idempotent_calls_are_retried_and_the_circuit_opens_then_tries_again() {
        let peer = peer(3, Duration::from_millis(100));
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let failing = |calls: std::sync::Arc<std::sync::atomic::AtomicU32>| {
            move |_channel: Authorized| {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<tonic::Response<()>, _>(tonic::Status::unavailable("down")) }
            }
        };
        // Three attempts, three failures: the circuit opens.
        let err = peer
            .call("Get", true, failing(calls.clone()))
            .await
            .unwrap_err();
        assert!(matches!(err, PeerError::Unavailable { .. }), "{err}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Open: refused without a call.
        let err = peer
            .call("Get", true, failing(calls.clone()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("circuit open"), "{err}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        // After the pause one trial goes through; it succeeds and closes it.
        tokio::time::sleep(Duration::from_millis(120)).await;
        let answer = peer
            .call("Get", true, |_| async { Ok(tonic::Response::new(7)) })
            .await
            .unwrap_or_default();
        assert_eq!(answer, 7);
        assert!(matches!(
            *peer.circuit.lock().unwrap_or_else(|e| e.into_inner()),
            Circuit::Closed { failures: 0 }
        ));
    }

    #[tokio::test]
    async fn writes_are_tried_once_and_answers_of_the_peer_do_not_open_the_circuit() {
        let peer = peer(1, Duration::from_secs(60));
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        for _ in 0..3 {
            let calls = calls.clone();
            let err = peer
                .call("Create", false, move |_| {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async { Err::<tonic::Response<()>, _>(tonic::Status::not_found("no")) }
                })
                .await
                .unwrap_err();
            assert!(matches!(err, PeerError::Refused { .. }));
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        let calls2 = calls.clone();
        let err = peer
            .call("Create", false, move |_| {
                calls2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<tonic::Response<()>, _>(tonic::Status::unavailable("down")) }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, PeerError::Unavailable { .. }));
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "not retried"
        );
        assert!(!peer.admit(), "one failure opens this circuit");
    }
}
