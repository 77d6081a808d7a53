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

/// Interceptor that carries the current trace to the callee.
pub fn propagate_trace(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(value) = crate::telemetry::current_traceparent().and_then(|v| v.parse().ok()) {
        request.metadata_mut().insert("traceparent", value);
    }
    Ok(request)
}
