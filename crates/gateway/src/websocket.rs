//! WebSocket handshakes through the edge: the `Upgrade` a client asks for
//! reaches the service (in this process or on a replica), and once it
//! answers 101 the two connections are joined byte for byte until either
//! side closes or the gateway stops.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use emporium_platform::{ErrorCode, Problem};
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

use crate::{Gateway, Upstream};

/// Whether the request asks to become a WebSocket.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    upgrade && connection
}

/// A handshake on its way to `service`: the headers the gateway prepared
/// for it, and the client the gateway resolved.
pub(crate) struct Handshake<'a> {
    pub(crate) service: &'static str,
    pub(crate) headers: HeaderMap,
    pub(crate) path_and_query: &'a str,
    pub(crate) client: SocketAddr,
    /// For the handshake only: a joined socket lives as long as its ends.
    pub(crate) timeout: Duration,
}

/// Hands the handshake on, with the two headers that make it one (which
/// the gateway drops from every other request as the connection's own).
pub(crate) async fn pass_through(
    gateway: &Gateway,
    mut parts: axum::http::request::Parts,
    handshake: Handshake<'_>,
) -> Response {
    let Handshake {
        service,
        mut headers,
        path_and_query,
        client,
        timeout,
    } = handshake;
    headers.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    let Ok(uri) = path_and_query.parse::<Uri>() else {
        return Problem::bad_request("the request path is not valid").into_response();
    };
    match gateway.upstreams.get(service) {
        // In this process the service's own upgrade takes the client's
        // connection, which travels in the request's extensions.
        Some(Upstream::Local(slot)) => {
            let Some(router) = Upstream::local(slot) else {
                return Problem::unavailable(service).into_response();
            };
            let mut local = Request::new(Body::empty());
            *local.method_mut() = parts.method;
            *local.uri_mut() = uri;
            *local.headers_mut() = headers;
            *local.extensions_mut() = std::mem::take(&mut parts.extensions);
            local
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(client));
            match tokio::time::timeout(timeout, router.clone().oneshot(local)).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => late(service),
            }
        }
        Some(Upstream::Replicas(pool)) => {
            let Some(client_side) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
                return Problem::bad_request("this connection cannot be upgraded").into_response();
            };
            for base in pool.order() {
                let Ok(uri) = format!("{base}{path_and_query}").parse::<Uri>() else {
                    return Problem::bad_request("the request path is not valid").into_response();
                };
                let mut upstream = Request::new(Body::empty());
                *upstream.method_mut() = parts.method.clone();
                *upstream.uri_mut() = uri;
                *upstream.headers_mut() = headers.clone();
                let answer = match tokio::time::timeout(timeout, gateway.client.request(upstream))
                    .await
                {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(e)) if e.is_connect() => {
                        tracing::warn!(replica = %base, error = %e, "replica unreachable; trying the next");
                        pool.failed(&base);
                        continue;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(replica = %base, error = %e, "replica failed the handshake");
                        pool.failed(&base);
                        return Problem::unavailable(service).into_response();
                    }
                    Err(_) => {
                        pool.failed(&base);
                        return late(service);
                    }
                };
                pool.succeeded(&base);
                if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
                    // A refusal (401, 400, ...) goes back as the service wrote it.
                    let (parts, body) = answer.into_parts();
                    return Response::from_parts(parts, Body::new(body));
                }
                let mut answer = answer;
                let service_side = hyper::upgrade::on(&mut answer);
                let mut switched = Response::new(Body::empty());
                *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                *switched.headers_mut() = answer.headers().clone();
                let shutdown = gateway.runtime.shutdown.clone();
                gateway.runtime.spawn(
                    crate::NAME,
                    "socket",
                    join(client_side, service_side, shutdown),
                );
                return switched;
            }
            Problem::unavailable(service).into_response()
        }
        None => Problem::unavailable(service).into_response(),
    }
}

fn late(service: &str) -> Response {
    Problem::new(
        ErrorCode::Timeout,
        format!("{service} did not answer in time"),
    )
    .into_response()
}

/// How long one direction of a joined socket may go on after the other
/// ended: enough for a close handshake, not for a peer that never leaves.
const LINGER: Duration = Duration::from_secs(5);

/// Copies bytes both ways between the client's connection and the
/// service's until both directions end, or the gateway stops.
///
/// Each direction is copied on its own rather than with
/// `copy_bidirectional`, which stops both at the first error: a service
/// that refuses an oversized frame sends its close frame and resets the
/// connection while the client is still writing, and that close frame
/// must still reach the client after the write towards the service fails.
async fn join(
    client: hyper::upgrade::OnUpgrade,
    service: hyper::upgrade::OnUpgrade,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use tokio::io::AsyncWriteExt;
    let (client, service) = match tokio::try_join!(client, service) {
        Ok(both) => both,
        Err(e) => {
            tracing::warn!(error = %e, "socket not joined");
            return;
        }
    };
    let (mut client_read, mut client_write) = tokio::io::split(TokioIo::new(client));
    let (mut service_read, mut service_write) = tokio::io::split(TokioIo::new(service));
    let upstream = async {
        if let Err(e) = tokio::io::copy(&mut client_read, &mut service_write).await {
            tracing::debug!(error = %e, "socket closed towards the service");
        }
        let _ = service_write.shutdown().await;
    };
    let downstream = async {
        if let Err(e) = tokio::io::copy(&mut service_read, &mut client_write).await {
            tracing::debug!(error = %e, "socket closed towards the client");
        }
        let _ = client_write.shutdown().await;
    };
    tokio::pin!(upstream, downstream);
    let both = async {
        tokio::select! {
            () = &mut upstream => {
                let _ = tokio::time::timeout(LINGER, &mut downstream).await;
            }
            () = &mut downstream => {
                let _ = tokio::time::timeout(LINGER, &mut upstream).await;
            }
        }
    };
    tokio::select! {
        () = both => {}
        _ = shutdown.cancelled() => {}
    }
}
