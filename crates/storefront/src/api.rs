//! The gateway's REST API, as the storefront calls it for what a signed-in
//! shopper does: in this process through the gateway's own router, or over
//! HTTP at `storefront.api_url`; either way with the shopper's token and
//! address, so that the gateway admits and limits them as it would the
//! shopper's own browser.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::shelves::Missing;

#[derive(Clone)]
pub enum Api {
    /// The gateway's router, in this process.
    Local(axum::Router),
    /// The gateway at `base` (`http://gateway:8080`), which must list the
    /// storefront among `http.trusted_proxies` to take the shopper's
    /// address from `X-Forwarded-For`.
    Remote {
        base: String,
        client: reqwest::Client,
    },
}

/// One call: who makes it and what it sends.
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub token: Option<&'a str>,
    pub body: Option<Value>,
    /// A body that is not JSON (an upload), sent instead of `body`.
    pub raw: Option<Raw<'a>>,
    pub client: SocketAddr,
    pub idempotency_key: Option<&'a str>,
}

/// Bytes to send as they are, with their content type (`image/png`).
pub struct Raw<'a> {
    pub bytes: Bytes,
    pub content_type: &'a str,
}

/// An answer: its status and JSON body (`Null` when none).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The problem's words: `detail`, with each field's message.
    pub fn message(&self) -> String {
        let detail = self.body["detail"]
            .as_str()
            .unwrap_or("something went wrong");
        let fields: Vec<String> = self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| {
                        Some(format!(
                            "{} {}",
                            e["field"].as_str()?,
                            e["message"].as_str()?
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if fields.is_empty() {
            detail.to_owned()
        } else {
            fields.join("; ")
        }
    }

    /// The message of one field, if the problem names it.
    pub fn field(&self, name: &str) -> Option<String> {
        self.body["errors"].as_array()?.iter().find_map(|e| {
            (e["field"].as_str()? == name).then(|| e["message"].as_str().map(str::to_owned))?
        })
    }
}

const LARGEST: usize = 4 * 1024 * 1024;

impl Api {
    pub async fn call(&self, call: Call<'_>) -> Result<Answer, Missing> {
        match self {
            Api::Local(router) => {
                let mut request = Request::builder()
                    .method(call.method)
                    .uri(call.path)
                    .header(header::ACCEPT, "application/json");
                if let Some(token) = call.token {
                    request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
                }
                if let Some(key) = call.idempotency_key {
                    request = request.header("idempotency-key", key);
                }
                let body = match (call.raw, call.body) {
                    (Some(raw), _) => {
                        request = request.header(header::CONTENT_TYPE, raw.content_type);
                        Body::from(raw.bytes)
                    }
                    (None, Some(json)) => {
                        request = request.header(header::CONTENT_TYPE, "application/json");
                        Body::from(json.to_string())
                    }
                    (None, None) => Body::empty(),
                };
                let mut request = request
                    .body(body)
                    .map_err(|_| Missing::Unavailable("gateway"))?;
                request.extensions_mut().insert(ConnectInfo(call.client));
                emporium_platform::telemetry::inject_current(request.headers_mut());
                let Ok(response) = router.clone().oneshot(request).await;
                let status = response.status();
                let bytes = axum::body::to_bytes(response.into_body(), LARGEST)
                    .await
                    .map_err(|_| Missing::Unavailable("gateway"))?;
                Ok(Answer {
                    status,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                })
            }
            Api::Remote { base, client } => {
                let mut request = client
                    .request(call.method, format!("{base}{}", call.path))
                    .header(header::ACCEPT, "application/json");
                if let Ok(value) = HeaderValue::from_str(&call.client.ip().to_string()) {
                    request = request.header("x-forwarded-for", value);
                }
                // The page's trace continues at the gateway.
                let mut traced = axum::http::HeaderMap::new();
                emporium_platform::telemetry::inject_current(&mut traced);
                request = request.headers(traced);
                if let Some(token) = call.token {
                    request = request.bearer_auth(token);
                }
                if let Some(key) = call.idempotency_key {
                    request = request.header("idempotency-key", key);
                }
                match (call.raw, call.body) {
                    (Some(raw), _) => {
                        request = request
                            .header(header::CONTENT_TYPE, raw.content_type)
                            .body(raw.bytes);
                    }
                    (None, Some(json)) => request = request.json(&json),
                    (None, None) => {}
                }
                let response = request.send().await.map_err(|e| {
                    tracing::warn!(error = %e, "the gateway did not answer the storefront");
                    Missing::Unavailable("gateway")
                })?;
                let status = StatusCode::from_u16(response.status().as_u16())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                let body = response.json().await.unwrap_or(Value::Null);
                Ok(Answer { status, body })
            }
        }
    }
}
