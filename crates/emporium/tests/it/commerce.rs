//! Inventory and basket in the whole shop, through the gateway.

use super::*;

async fn ledger_size(shop: &TestShop, admin: &str, sku: &str) -> u64 {
    let (status, _, body) = shop
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/inventory/{sku}/movements?per_page=1"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_stocks_the_demo_catalog_and_holds_stock_through_the_gateway() {
    use reqwest::Method;
    let shop = TestShop::start().await;
    let admin = shop.token(Role::Admin);
    let customer = shop.token(Role::Customer);

    // Every demo product has stock rows in both warehouses; most have units.
    let products = shop.get("/api/v1/products?per_page=100").await.1;
    let mut stocked = 0;
    for product in products["items"].as_array().unwrap() {
        let sku = product["sku"].as_str().unwrap();
        let (status, stock) = shop.get(&format!("/api/v1/inventory/{sku}")).await;
        assert_eq!(status, StatusCode::OK, "{sku}: {stock}");
        if stock["available"].as_i64().unwrap() > 0 {
            stocked += 1;
        }
    }
    assert_eq!(stocked, 40);
    let (_, kit) = shop.get("/api/v1/inventory/KIT-001").await;
    assert_eq!(
        (kit["on_hand"].as_i64(), kit["available"].as_i64()),
        (Some(4), Some(4))
    );
    assert_eq!(kit["warehouses"].as_array().unwrap().len(), 2);

    // Alerts and the list are for admins.
    for (token, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(customer.as_str()), StatusCode::FORBIDDEN),
    ] {
        let (status, kind, _) = shop
            .call(Method::GET, "/api/v1/inventory/alerts", token, None)
            .await;
        assert_eq!(status, expected);
        assert_eq!(kind, "application/problem+json");
    }
    let (status, _, alerts) = shop
        .call(
            Method::GET,
            "/api/v1/inventory/alerts?per_page=100",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let low = alerts["items"].as_array().unwrap();
    assert!(low.len() >= 7, "{alerts}");
    assert!(
        low.iter()
            .all(|r| r["low"] == true && r["available"].as_i64() < r["threshold"].as_i64())
    );

    // Hold all four units, fail to take a fifth, let them go.
    let (status, _, held) = shop.call(Method::POST,
        "/api/v1/inventory/reserve",
        Some(&admin),
        Some(json!({ "lines": [{ "sku": "KIT-001", "quantity": 4 }], "reference": "phone order" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    let (status, kind, refused) = shop
        .call(
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(&admin),
            Some(json!({ "lines": [{ "sku": "KIT-001", "quantity": 1 }] })),
        )
        .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::CONFLICT, "application/problem+json"),
        "{refused}"
    );
    assert_eq!(
        shop.get("/api/v1/inventory/KIT-001").await.1["available"],
        0
    );
    let (status, _, released) = shop
        .call(
            Method::POST,
            "/api/v1/inventory/release",
            Some(&admin),
            Some(json!({ "reservation_id": held["id"] })),
        )
        .await;
    assert_eq!(
        (status, released["status"].as_str()),
        (StatusCode::OK, Some("released"))
    );
    assert_eq!(
        shop.get("/api/v1/inventory/KIT-001").await.1["available"],
        4
    );
    let (status, _, adjusted) = shop
        .call(
            Method::POST,
            "/api/v1/inventory/adjust",
            Some(&admin),
            Some(
                json!({ "sku": "KIT-001", "warehouse": "west", "delta": 6, "reason": "delivery" }),
            ),
        )
        .await;
    assert_eq!(
        (status, adjusted["on_hand"].as_i64()),
        (StatusCode::OK, Some(7)),
        "{adjusted}"
    );

    // Bad input: a problem, and the ledger does not grow.
    let before = ledger_size(&shop, &admin, "KIT-001").await;
    let bad: Vec<(Method, &str, Option<Value>, StatusCode)> = vec![
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(json!({ "lines": [] })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(json!({ "lines": [{ "sku": "KIT-001", "quantity": 0 }] })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(json!({ "lines": [{ "sku": "KIT-001", "quantity": -3 }] })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(json!({ "lines": [{ "sku": "KIT-001", "quantity": 1e30 }] })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(json!({ "lines": [{ "sku": "KIT 001", "quantity": 1 }] })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(json!({ "lines": [{ "sku": "KIT-001", "quantity": 1 }], "ttl_secs": 0 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(json!({ "lines": [{ "sku": "KIT-001", "quantity": 1 }], "reservation_id": "x" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(json!({ "lines": "KIT-001" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/reserve",
            Some(json!({ "lines": [{ "sku": "NOPE-1", "quantity": 1 }] })),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/v1/inventory/adjust",
            Some(json!({ "sku": "KIT-001", "warehouse": "west", "delta": 0, "reason": "x" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/adjust",
            Some(json!({ "sku": "KIT-001", "warehouse": "west", "delta": 1 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/adjust",
            Some(json!({ "sku": "KIT-001", "warehouse": "West Side", "delta": 1, "reason": "x" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/adjust",
            Some(json!({ "sku": "KIT-001", "warehouse": "west", "delta": -100, "reason": "x" })),
            StatusCode::CONFLICT,
        ),
        (
            Method::POST,
            "/api/v1/inventory/adjust",
            Some(json!({ "sku": "KIT-001", "warehouse": "north", "delta": -1, "reason": "x" })),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/v1/inventory/release",
            Some(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/release",
            Some(json!({ "reservation_id": "nope" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/inventory/release",
            Some(json!({ "reservation_id": uuid::Uuid::now_v7() })),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/inventory/KIT%20001",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/v1/inventory/NOPE-1",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/inventory?page=0",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/v1/inventory?low=maybe",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/v1/inventory?warehouse=NORTH!",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/v1/inventory/NOPE-1/movements",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/inventory/KIT-001/movements?per_page=1000",
            None,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, body, expected) in bad {
        let (status, kind, problem) = shop
            .call(method.clone(), path, Some(&admin), body.clone())
            .await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {problem}");
        assert_eq!(kind, "application/problem+json", "{method} {path}");
    }
    let response = shop
        .http
        .post(shop.url("/api/v1/inventory/reserve"))
        .bearer_auth(&admin)
        .body("{\"lines\": [")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(ledger_size(&shop, &admin, "KIT-001").await, before);

    // The business metrics are exported.
    let inventory = shop.shop.as_ref().unwrap().url("inventory").unwrap();
    let metrics = reqwest::get(format!("{inventory}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "inventory_stock_level{",
        "inventory_low_stock_items",
        "inventory_reservations_total{",
        "inventory_operations_duration_seconds_bucket{",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    shop.stop().await;
}
