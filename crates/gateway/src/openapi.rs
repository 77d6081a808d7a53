//! The one OpenAPI document of the whole API: the services' own, merged,
//! with what the gateway itself may answer on every route.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use emporium_platform::Problem;
use emporium_platform::http::Json;
use tower::ServiceExt;

use crate::{Gateway, HttpClient, Upstream};

/// The services' documents merged into one, cached for a minute. A schema
/// that two services name alike must be the same in both.
pub(crate) async fn document(State(gateway): State<Gateway>) -> Response {
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
    // What the gateway answers itself.
    documents.push(("gateway", emporium_platform::faults::openapi()));
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
        Upstream::Local(slot) => {
            let router = Upstream::local(slot)?;
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
