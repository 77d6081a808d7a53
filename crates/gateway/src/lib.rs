//! The edge: routes the public API to the services' replicas, passes on
//! request ids and trace context, applies CORS and body limits, and serves
//! the one OpenAPI document of the whole API.

pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use emporium_platform::http::{Check, Json};
use emporium_platform::{ErrorCode, Problem, Runtime};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::upstream::Pool;

type HttpClient = Client<HttpConnector, Body>;

#[derive(Clone)]
struct Gateway {
    client: HttpClient,
    catalog: Arc<Pool>,
    timeout: Duration,
    openapi: Arc<tokio::sync::Mutex<Option<(Instant, serde_json::Value)>>>,
}

pub struct Started {
    pub http_addr: SocketAddr,
}

/// Serves the gateway. `local_catalog` is the catalog of this process, used
/// when no replicas are configured.
pub async fn start(
    runtime: &Runtime,
    local_catalog: Option<SocketAddr>,
) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = &settings.gateway;
    let mut catalog = own.catalog.clone();
    if catalog.is_empty() {
        match local_catalog {
            Some(addr) => catalog.push(format!("http://{addr}")),
            None => anyhow::bail!(
                "configuration: gateway.catalog (or PRODUCT_SERVICE_URL) is required when catalog runs elsewhere"
            ),
        }
    }
    for base in &catalog {
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || base.parse::<Uri>().is_err()
        {
            anyhow::bail!("configuration: gateway.catalog `{base}` must be an http:// URL");
        }
    }
    let pool = Arc::new(Pool::new(
        "catalog",
        catalog,
        own.eject_after_failures,
        Duration::from_secs(own.eject_secs),
    ));
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let gateway = Gateway {
        client,
        catalog: pool.clone(),
        timeout: Duration::from_millis(settings.http.request_timeout_ms),
        openapi: Arc::default(),
    };
    let body_limit = settings.http.body_limit_bytes;
    let image_limit = settings.catalog.image_limit_bytes.max(body_limit);
    // The catalog's public routes; image uploads take the larger limit.
    let catalog_routes = [
        ("/api/v1/products", body_limit),
        ("/api/v1/products/{id}", body_limit),
        ("/api/v1/products/{id}/images", image_limit),
        ("/api/v1/products/{id}/images/{name}", body_limit),
        ("/api/v1/categories", body_limit),
    ];
    let mut routes = Router::new().route("/api/v1/openapi.json", get(openapi));
    for (path, limit) in catalog_routes {
        routes = routes.route(path, any(move |s, c, r| proxy(s, c, r, limit)));
    }
    let routes = routes.with_state(gateway.clone());
    let checks = vec![upstream_check(gateway.clone())];
    let mut router =
        emporium_platform::http::finish_router("gateway", routes, checks, &settings.http);
    if let Some(cors) = cors(&settings.http.cors_origins)? {
        router = router.layer(cors);
    }
    let listener = emporium_platform::http::bind(own.http_addr, "gateway http").await?;
    let http_addr = listener.local_addr()?;
    let shutdown = runtime.shutdown.clone();
    runtime.tasks.spawn(async move {
        if let Err(e) = emporium_platform::http::serve(listener, router, shutdown).await {
            tracing::error!(error = %e, "gateway server stopped");
        }
    });
    tracing::info!(service = "gateway", http = %http_addr, "gateway listening");
    Ok(Started { http_addr })
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

fn upstream_check(gateway: Gateway) -> Check {
    Check::new("catalog", move || {
        let gateway = gateway.clone();
        async move {
            for base in gateway.catalog.order() {
                let Ok(uri) = format!("{base}/health").parse::<Uri>() else {
                    continue;
                };
                let request = Request::get(uri)
                    .body(Body::empty())
                    .map_err(|e| e.to_string())?;
                if let Ok(Ok(response)) =
                    tokio::time::timeout(Duration::from_secs(1), gateway.client.request(request))
                        .await
                    && response.status().is_success()
                {
                    return Ok(());
                }
            }
            Err("no catalog replica answers".to_owned())
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

async fn proxy(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    limit: usize,
) -> Response {
    let (parts, body) = request.into_parts();
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
    let mut headers = forwarded_headers(&parts.headers, peer);
    emporium_platform::telemetry::inject_current(&mut headers);
    let pool = &gateway.catalog;
    for base in pool.order() {
        let Ok(uri) = format!("{base}{path_and_query}").parse::<Uri>() else {
            return Problem::bad_request("the request path is not valid").into_response();
        };
        let mut upstream = Request::new(Body::from(body.clone()));
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers.clone();
        match tokio::time::timeout(gateway.timeout, gateway.client.request(upstream)).await {
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

fn forwarded_headers(incoming: &HeaderMap, peer: SocketAddr) -> HeaderMap {
    let mut headers = incoming.clone();
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    let forwarded_for = match incoming
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers
}

/// The services' documents merged into one, cached for a minute.
async fn openapi(State(gateway): State<Gateway>) -> Response {
    let mut cached = gateway.openapi.lock().await;
    if let Some((at, doc)) = cached.as_ref()
        && at.elapsed() < Duration::from_secs(60)
    {
        return Json(doc.clone()).into_response();
    }
    let mut merged = serde_json::json!({
        "openapi": "3.1.0",
        "info": { "title": "Emporium API", "version": "1", "description": "The public REST API of Emporium, through the gateway." },
        "servers": [{ "url": "/" }],
        "paths": {},
        "components": { "schemas": {}, "securitySchemes": {} }
    });
    let pools = [&gateway.catalog];
    for pool in pools {
        let Some(doc) = fetch_document(&gateway.client, pool).await else {
            return Problem::unavailable(pool.service).into_response();
        };
        for section in ["paths", "components/schemas", "components/securitySchemes"] {
            let pointer = format!("/{section}");
            if let (Some(from), Some(into)) = (
                doc.pointer(&pointer).and_then(|v| v.as_object()).cloned(),
                merged.pointer_mut(&pointer).and_then(|v| v.as_object_mut()),
            ) {
                into.extend(from);
            }
        }
    }
    *cached = Some((Instant::now(), merged.clone()));
    Json(merged).into_response()
}

async fn fetch_document(client: &HttpClient, pool: &Pool) -> Option<serde_json::Value> {
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
