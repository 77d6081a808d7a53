//! One request through the edge: its client resolved, rate limits counted,
//! its caller admitted by the route's policy, then sent on to the service,
//! in this process or to a replica, without what belongs to the connection.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use emporium_platform::auth::Verifier;
use emporium_platform::{ErrorCode, Problem};
use tower::ServiceExt;

use crate::ratelimit::{tighter, with_limit_headers};
use crate::routes::{Group, Policy};
use crate::{Gateway, Upstream};

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
pub(crate) struct Pass {
    pub(crate) service: &'static str,
    pub(crate) policy: Policy,
    pub(crate) group: Group,
    pub(crate) limit: usize,
    pub(crate) timeout: Duration,
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
    uri: &Uri,
) -> Result<Option<String>, Problem> {
    // A socket's token may come in its subprotocols or query instead.
    let presented = emporium_platform::auth::presented_authorization(headers, uri);
    let authorization = presented.as_deref();
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

/// The per-address limit of the API group, for what the gateway answers
/// itself (the fault flags): the same as every proxied API route.
pub(crate) async fn limited(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let client =
        emporium_platform::http::client_addr(Some(peer.ip()), request.headers(), &gateway.trusted)
            .unwrap_or(peer.ip());
    match gateway.limits.by_address(Group::Api, Some(client)).await {
        Ok(decision) => with_limit_headers(next.run(request).await, decision),
        Err(refused) => refused,
    }
}

pub(crate) async fn proxy(
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
    let user = match admit(
        &gateway.verifier,
        policy,
        &parts.method,
        &parts.headers,
        &parts.uri,
    )
    .await
    {
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
    if crate::websocket::is_upgrade(&parts.headers) {
        let handshake = crate::websocket::Handshake {
            service,
            headers,
            path_and_query: &path_and_query,
            client,
            timeout,
        };
        return crate::websocket::pass_through(gateway, parts, handshake).await;
    }
    let Some(body) = read_limited(body, limit).await else {
        return Problem::new(
            ErrorCode::PayloadTooLarge,
            "the body is larger than this endpoint accepts",
        )
        .into_response();
    };
    let pool = match gateway.upstreams.get(service) {
        Some(Upstream::Replicas(pool)) => pool,
        Some(Upstream::Local(slot)) => {
            let Some(router) = Upstream::local(slot) else {
                return Problem::unavailable(service).into_response();
            };
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
