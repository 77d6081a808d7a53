//! gRPC: servers with health and reflection behind the same observing
//! middleware as HTTP, and clients with deadlines and trace propagation.

use std::time::Duration;

use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};
use tonic_health::ServingStatus;

use crate::config::HttpSettings;
use crate::http::{Observe, observe};

/// Health, reflection and `routes` as one router, observed like HTTP.
pub async fn router(
    service: &'static str,
    routes: Routes,
    descriptor_set: &'static [u8],
    served: &[&str],
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
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptor_set)
        .build_v1()?;
    let state = Observe {
        service,
        timeout: Duration::from_millis(settings.request_timeout_ms),
    };
    Ok(routes
        .add_service(health)
        .add_service(reflection)
        .prepare()
        .into_axum_router()
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

/// A channel whose every call carries the current trace.
pub type Traced = tonic::service::interceptor::InterceptedService<
    Channel,
    fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
>;

/// `channel` with [`propagate_trace`] on every call; generated clients take
/// it: `InventoryClient::new(traced(channel))`.
pub fn traced(channel: Channel) -> Traced {
    tonic::service::interceptor::InterceptedService::new(channel, propagate_trace as _)
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
    channel: Channel,
    policy: PeerPolicy,
    circuit: std::sync::Arc<std::sync::Mutex<Circuit>>,
}

impl Peer {
    pub fn new(name: &'static str, url: &str, policy: PeerPolicy) -> anyhow::Result<Self> {
        Ok(Self {
            name,
            channel: channel(url, policy.deadline)?,
            policy,
            circuit: std::sync::Arc::new(std::sync::Mutex::new(Circuit::Closed { failures: 0 })),
        })
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
        metrics::gauge!("grpc_client_circuit_open", "peer" => self.name).set(if open {
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
        F: FnMut(Channel) -> Fut,
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
                metrics::counter!("grpc_client_requests_total", "peer" => self.name, "method" => method, "code" => "CircuitOpen").increment(1);
                return Err(PeerError::Unavailable {
                    peer: self.name,
                    reason: "circuit open".into(),
                });
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
            }
            let started = std::time::Instant::now();
            let outcome = call(self.channel.clone()).await;
            metrics::histogram!("grpc_client_duration_seconds", "peer" => self.name, "method" => method)
                .record(started.elapsed().as_secs_f64());
            let code = match &outcome {
                Ok(_) => tonic::Code::Ok,
                Err(status) => status.code(),
            };
            metrics::counter!("grpc_client_requests_total", "peer" => self.name, "method" => method, "code" => format!("{code:?}")).increment(1);
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
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn idempotent_calls_are_retried_and_the_circuit_opens_then_tries_again() {
        let peer = peer(3, Duration::from_millis(100));
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let failing = |calls: std::sync::Arc<std::sync::atomic::AtomicU32>| {
            move |_channel: Channel| {
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
