//! The storefront without the services behind it: every page says so in
//! HTML, never JSON, a stack or a blank page.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use emporium_platform::grpc::{Peer, PeerPolicy, ServiceCredentials};
use emporium_storefront::api::Api;
use emporium_storefront::pages::{AppState, router};
use emporium_storefront::sessions::Sessions;
use emporium_storefront::shelves::Shelves;
use emporium_storefront::views::Views;
use tower::ServiceExt;

fn nowhere(name: &'static str) -> Peer {
    Peer::new(
        name,
        "http://127.0.0.1:9",
        PeerPolicy {
            deadline: Duration::from_millis(300),
            retries: 0,
            ..PeerPolicy::default()
        },
        ServiceCredentials::fixed("storefront", "unused").unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn every_page_says_in_html_that_the_shop_is_away() {
    let app = router(AppState {
        shelves: Shelves {
            catalog: nowhere("catalog"),
            inventory: nowhere("inventory"),
            recommendation: nowhere("recommendation"),
            categories: Default::default(),
        },
        views: Arc::new(Views::new().unwrap()),
        api: Api::Remote {
            base: "http://127.0.0.1:9".into(),
            client: reqwest::Client::new(),
        },
        sessions: Arc::new(Sessions::default()),
    });
    for (path, expected) in [
        ("/", StatusCode::SERVICE_UNAVAILABLE),
        ("/products?q=lamp", StatusCode::SERVICE_UNAVAILABLE),
        (
            "/products/01a237ae-8def-77dd-b466-fb30a9b5b037",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        ("/products/not-an-id", StatusCode::NOT_FOUND),
        ("/products?page=0", StatusCode::BAD_REQUEST),
        ("/elsewhere", StatusCode::NOT_FOUND),
    ] {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{path}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8",
            "{path}"
        );
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let page = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(page.starts_with("<!doctype html>"), "{path}: {page}");
        if expected == StatusCode::SERVICE_UNAVAILABLE {
            assert!(page.contains("catalog is not answering"), "{path}: {page}");
        }
    }
}
