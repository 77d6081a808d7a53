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
    // KIT-001 is one of the few low demo items (the past orders may have
    // bought one of its four).
    let (_, kit) = shop.get("/api/v1/inventory/KIT-001").await;
    let units = kit["available"].as_i64().unwrap();
    assert!((3..=4).contains(&units), "{kit}");
    assert_eq!(kit["on_hand"].as_i64(), Some(units), "nothing held");
    assert_eq!(kit["warehouses"].as_array().unwrap().len(), 2);
    let west = kit["warehouses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["warehouse"] == "west")
        .unwrap()["on_hand"]
        .as_i64()
        .unwrap();

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

    // Hold every unit, fail to take one more, let them go.
    let (status, _, held) = shop.call(Method::POST,
        "/api/v1/inventory/reserve",
        Some(&admin),
        Some(json!({ "lines": [{ "sku": "KIT-001", "quantity": units }], "reference": "phone order" })),
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
        units
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
        (StatusCode::OK, Some(west + 6)),
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
    let metrics = shop.metrics().await;
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

/// `(id, price amount)` of the first `n` demo products.
async fn products(shop: &TestShop, n: usize) -> Vec<(String, String)> {
    let page = shop.get(&format!("/api/v1/products?per_page={n}")).await.1;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["price"]["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Rows of `event_type` about `subject` in a service's embedded outbox.
async fn outbox_rows(dir: &std::path::Path, service: &str, event_type: &str, subject: &str) -> i64 {
    use sea_orm::ConnectionTrait;
    let url = format!(
        "sqlite://{}?mode=ro",
        dir.join(format!("{service}.db")).display()
    );
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            format!(
                "SELECT COUNT(*) AS n FROM outbox WHERE event_type = '{event_type}' AND envelope LIKE '%\"subject\":\"{subject}\"%'"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    let n = row.try_get::<i64>("", "n").unwrap();
    db.close().await.unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_fills_and_empties_a_basket_through_the_gateway() {
    use reqwest::Method;
    let shop = TestShop::start().await;
    let ada = shop
        .issuer
        .mint("ada", Role::Customer, Duration::from_secs(300))
        .unwrap();
    let bob = shop
        .issuer
        .mint("bob", Role::Customer, Duration::from_secs(300))
        .unwrap();
    let admin = shop.token(Role::Admin);
    let items = products(&shop, 3).await;
    let (first, second, third) = (&items[0], &items[1], &items[2]);

    let (status, _, made) = shop
        .call(Method::POST, "/api/v1/baskets", Some(&ada), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(
        (made["user_id"].as_str(), made["total"].is_null()),
        (Some("ada"), true)
    );
    let (status, _, _) = shop
        .call(Method::POST, "/api/v1/baskets", Some(&ada), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "the basket exists already");
    for (product, quantity) in [(first, 2), (second, 1), (first, 1)] {
        let (status, _, body) = shop
            .call(
                Method::POST,
                "/api/v1/baskets/ada/items",
                Some(&ada),
                Some(json!({ "product_id": product.0, "quantity": quantity })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _, basket) = shop
        .call(Method::GET, "/api/v1/baskets/ada", Some(&ada), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(basket["item_count"], 4);
    assert_eq!(basket["checked"], true);
    assert_eq!(basket["items"][0]["quantity"], 3);
    assert!(
        basket["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "current")
    );
    let cents = |amount: &str| -> i64 {
        let (whole, frac) = amount.split_once('.').unwrap_or((amount, "0"));
        whole.parse::<i64>().unwrap() * 100 + format!("{frac:0<2}")[..2].parse::<i64>().unwrap()
    };
    assert_eq!(
        cents(basket["total"]["amount"].as_str().unwrap()),
        3 * cents(&first.1) + cents(&second.1)
    );

    // Another customer's basket is closed; an admin may read it.
    for method in [Method::GET, Method::DELETE] {
        let (status, kind, _) = shop
            .call(method, "/api/v1/baskets/ada", Some(&bob), None)
            .await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::FORBIDDEN, "application/problem+json")
        );
    }
    let (status, _, _) = shop
        .call(
            Method::POST,
            "/api/v1/baskets/ada/items",
            Some(&bob),
            Some(json!({ "product_id": third.0 })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, seen) = shop
        .call(Method::GET, "/api/v1/baskets/ada", Some(&admin), None)
        .await;
    assert_eq!(
        (status, seen["item_count"].as_i64()),
        (StatusCode::OK, Some(4))
    );
    let (status, _, _) = shop
        .call(Method::GET, "/api/v1/baskets/ada", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bad input changes nothing.
    let bad: Vec<(Method, String, Option<Value>, StatusCode)> = vec![
        (
            Method::POST,
            "/api/v1/baskets/ada/items".into(),
            Some(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/baskets/ada/items".into(),
            Some(json!({ "product_id": "nope" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/baskets/ada/items".into(),
            Some(json!({ "product_id": first.0, "quantity": 0 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/baskets/ada/items".into(),
            Some(json!({ "product_id": first.0, "quantity": 97 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/baskets/ada/items".into(),
            Some(json!({ "product_id": first.0, "quantity": "2" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/baskets/ada/items".into(),
            Some(json!({ "product_id": uuid::Uuid::now_v7() })),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PUT,
            format!("/api/v1/baskets/ada/items/{}", first.0),
            Some(json!({ "quantity": -1 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::PUT,
            format!("/api/v1/baskets/ada/items/{}", first.0),
            Some(json!({ "quantity": 100 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::PUT,
            format!("/api/v1/baskets/ada/items/{}", first.0),
            Some(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::PUT,
            format!("/api/v1/baskets/ada/items/{}", first.0),
            Some(json!([5])),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::PUT,
            format!("/api/v1/baskets/ada/items/{}", third.0),
            Some(json!({ "quantity": 1 })),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PUT,
            "/api/v1/baskets/ada/items/not-a-uuid".into(),
            Some(json!({ "quantity": 1 })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            format!("/api/v1/baskets/ada/items/{}", third.0),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/baskets/a%20b".into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/v1/baskets".into(),
            Some(json!({ "user_id": "bob" })),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/api/v1/baskets".into(),
            Some(json!({ "user_id": 7 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (method, path, body, expected) in bad {
        let (status, kind, problem) = shop
            .call(method.clone(), &path, Some(&ada), body.clone())
            .await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {problem}");
        assert_eq!(kind, "application/problem+json", "{method} {path}");
    }
    let (_, _, unchanged) = shop
        .call(Method::GET, "/api/v1/baskets/ada", Some(&ada), None)
        .await;
    assert_eq!(unchanged["items"], basket["items"]);

    // A price change and a deleted product are reported, not hidden.
    let (status, _, product) = shop
        .call(
            Method::GET,
            &format!("/api/v1/products/{}", second.0),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut changed = json!({
        "sku": product["sku"], "name": product["name"], "description": product["description"],
        "price": { "amount": "999.99", "currency": product["price"]["currency"] }, "category": product["category"]
    });
    let (status, _, body) = shop
        .call(
            Method::PUT,
            &format!("/api/v1/products/{}", second.0),
            Some(&admin),
            Some(changed.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = shop
        .call(
            Method::DELETE,
            &format!("/api/v1/products/{}", first.0),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, checked) = shop
        .call(Method::GET, "/api/v1/baskets/ada", Some(&ada), None)
        .await;
    assert_eq!(checked["items"][0]["status"], "unavailable", "{checked}");
    assert_eq!(checked["items"][1]["status"], "price_changed");
    assert_eq!(checked["items"][1]["current_price"]["amount"], "999.99");
    assert_eq!(
        checked["items"][1]["unit_price"]["amount"],
        second.1.as_str(),
        "the price seen is kept"
    );
    changed["price"]["amount"] = json!("1.00");

    // Quantities change and lines go; emptying the basket publishes once.
    let (status, _, body) = shop
        .call(
            Method::PUT,
            &format!("/api/v1/baskets/ada/items/{}", second.0),
            Some(&ada),
            Some(json!({ "quantity": 5 })),
        )
        .await;
    assert_eq!(
        (status, body["item_count"].as_i64()),
        (StatusCode::OK, Some(8)),
        "{body}"
    );
    let (status, _, body) = shop
        .call(
            Method::DELETE,
            &format!("/api/v1/baskets/ada/items/{}", first.0),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(
        (status, body["item_count"].as_i64()),
        (StatusCode::OK, Some(5))
    );
    assert_eq!(
        outbox_rows(shop._dir.path(), "basket", "basket.cleared", "baskets/ada").await,
        0
    );
    let (status, _, _) = shop
        .call(Method::DELETE, "/api/v1/baskets/ada", Some(&ada), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, empty) = shop
        .call(Method::GET, "/api/v1/baskets/ada", Some(&ada), None)
        .await;
    assert_eq!(
        (empty["item_count"].as_i64(), empty["total"].is_null()),
        (Some(0), true)
    );
    assert_eq!(
        outbox_rows(shop._dir.path(), "basket", "basket.cleared", "baskets/ada").await,
        1
    );
    shop.stop().await;
}

/// 50 customers' worth of concurrent adds to one basket: none is lost.
async fn fifty_concurrent_adds(shop: &TestShop) {
    let ada = shop
        .issuer
        .mint("ada", Role::Customer, Duration::from_secs(300))
        .unwrap();
    let items = products(shop, 5).await;
    let adds = (0..50).map(|i| {
        let (http, url, token) = (
            shop.http.clone(),
            shop.url("/api/v1/baskets/ada/items"),
            ada.clone(),
        );
        let product = items[i % 5].0.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({ "product_id": product, "quantity": 1 }))
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    for status in futures::future::join_all(adds).await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let (_, _, basket) = shop
        .call(
            reqwest::Method::GET,
            "/api/v1/baskets/ada",
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(basket["item_count"], 50, "{basket}");
    assert!(
        basket["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["quantity"] == 10)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_to_one_basket_lose_nothing_on_sqlite() {
    let shop = TestShop::start().await;
    fifty_concurrent_adds(&shop).await;
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_to_one_basket_lose_nothing_on_redis() {
    let Some(redis) = emporium_testkit::server_url(emporium_testkit::REDIS) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(dir.path());
    settings.update_section::<emporium_basket::BasketSettings>(|b| {
        b.redis_url = Some(emporium_platform::config::Secret::new(redis));
        b.redis_prefix = format!("test-basket-{}", uuid::Uuid::now_v7().simple());
    });
    let shop = TestShop::start_with(settings, dir).await;
    fifty_concurrent_adds(&shop).await;
    shop.stop().await;
}

/// `order.confirmed` takes the ordered lines out of the buyer's basket
/// once, however often it comes, and leaves what was added after the
/// checkout; an order of named items leaves the basket alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_order_takes_its_lines_out_of_the_basket_once() {
    use emporium_platform::bus::Envelope;
    let shop = TestShop::start().await;
    let ada = shop
        .issuer
        .mint("ada", Role::Customer, Duration::from_secs(300))
        .unwrap();
    let items = products(&shop, 3).await;
    let (a, b, c) = (items[0].0.clone(), items[1].0.clone(), items[2].0.clone());
    let add = |product: &str, quantity: i64| {
        let (http, url, token) = (
            shop.http.clone(),
            shop.url("/api/v1/baskets/ada/items"),
            ada.clone(),
        );
        let body = json!({ "product_id": product, "quantity": quantity });
        async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    };
    // (product, quantity) of each line.
    let lines = |shop: &TestShop| {
        let (http, url, token) = (
            shop.http.clone(),
            shop.url("/api/v1/baskets/ada"),
            ada.clone(),
        );
        async move {
            let body: Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut lines: Vec<(String, i64)> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["product_id"].as_str().unwrap().to_owned(),
                        i["quantity"].as_i64().unwrap(),
                    )
                })
                .collect();
            lines.sort();
            lines
        }
    };
    let sorted = |mut v: Vec<(String, i64)>| {
        v.sort();
        v
    };
    let metrics_url = shop.shop.as_ref().unwrap().metrics_url().unwrap();
    let consumed = || {
        let url = metrics_url.clone();
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            metric_sum(
                &text,
                "events_consumed_total{",
                &[
                    "consumer=\"basket\"",
                    "type=\"order.confirmed\"",
                    "outcome=\"ok\"",
                ],
            )
        }
    };
    let transport = shop.shop.as_ref().unwrap().runtime.transport.clone();
    // Publishes `envelope` and waits until the basket has handled it.
    let deliver = |envelope: Envelope| {
        let transport = transport.clone();
        async move {
            let before = consumed().await;
            transport.publish(&envelope).await.unwrap();
            let handled = emporium_testkit::eventually(Duration::from_secs(10), || {
                let probe = consumed();
                async move { (probe.await > before).then_some(()) }
            })
            .await;
            assert!(handled.is_some(), "{} was delivered", envelope.id);
        }
    };
    let confirmed = |order: &str, basket: bool, bought: &[(&str, i64)]| {
        let lines: Vec<Value> = bought
            .iter()
            .map(|(p, q)| json!({ "product_id": p, "sku": "X", "quantity": q, "unit_minor": 100 }))
            .collect();
        Envelope::new(
            "order.confirmed",
            "emporium.ordering",
            format!("orders/{order}"),
            json!({ "order_id": order, "user_id": "ada", "status": "confirmed", "basket": basket, "lines": lines }),
        )
    };

    // Ada checks out 2 of A and her B; before the confirmation comes she
    // adds a third A and a C. The confirmation takes only what it bought.
    add(&a, 2).await;
    add(&b, 1).await;
    let first = confirmed("order-1", true, &[(&a, 2), (&b, 1)]);
    add(&a, 1).await;
    add(&c, 1).await;
    deliver(first.clone()).await;
    let after = sorted(vec![(a.clone(), 1), (c.clone(), 1)]);
    assert_eq!(lines(&shop).await, after);
    // The same event again, and the same order in another event: nothing.
    deliver(first).await;
    deliver(confirmed("order-1", true, &[(&a, 2), (&b, 1)])).await;
    assert_eq!(lines(&shop).await, after);
    // A "buy now" of named items leaves the basket as it is.
    deliver(confirmed("order-2", false, &[(&a, 1), (&c, 1)])).await;
    assert_eq!(lines(&shop).await, after);
    assert_eq!(
        outbox_rows(shop._dir.path(), "basket", "basket.cleared", "baskets/ada").await,
        0,
        "not emptied"
    );
    // An order of all that is left empties it, and says so once.
    deliver(confirmed("order-3", true, &[(&a, 1), (&c, 1)])).await;
    assert!(lines(&shop).await.is_empty());
    assert_eq!(
        outbox_rows(shop._dir.path(), "basket", "basket.cleared", "baskets/ada").await,
        1
    );
    shop.stop().await;
}

/// `SettleOrder`, as ordering calls it after a checkout: bad input is
/// refused with `INVALID_ARGUMENT` and changes nothing; an order's lines
/// come out once, however often it is asked, and what was added besides
/// stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_an_order_takes_its_lines_once_and_refuses_bad_input() {
    use emporium_proto::basket::v1 as pb;
    let shop = TestShop::start().await;
    let bea = shop
        .issuer
        .mint("bea", Role::Customer, Duration::from_secs(300))
        .unwrap();
    let items = products(&shop, 2).await;
    let (a, b) = (items[0].0.clone(), items[1].0.clone());
    for (product, quantity) in [(&a, 3), (&b, 1)] {
        let response = shop
            .http
            .post(shop.url("/api/v1/baskets/bea/items"))
            .bearer_auth(&bea)
            .json(&json!({ "product_id": product, "quantity": quantity }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut basket = pb::baskets_client::BasketsClient::new(shop.grpc_as("ordering", "basket"));
    let held = |client: &pb::baskets_client::BasketsClient<ServiceChannel>| {
        let mut client = client.clone();
        async move {
            let mut lines: Vec<(String, i64)> = client
                .get_basket(pb::BasketRequest {
                    user_id: "bea".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .items
                .into_iter()
                .map(|i| (i.product_id, i.quantity))
                .collect();
            lines.sort();
            lines
        }
    };
    let before = held(&basket).await;
    let line = |product: &str, quantity: i64| pb::OrderLine {
        product_id: product.into(),
        quantity,
    };
    let settle = |user: &str, order: &str, lines: Vec<pb::OrderLine>| pb::SettleOrderRequest {
        user_id: user.into(),
        order_id: order.into(),
        lines,
    };
    for (what, bad) in [
        ("no user", settle("", "o-1", vec![line(&a, 1)])),
        ("no order", settle("bea", "", vec![line(&a, 1)])),
        (
            "an order id too long",
            settle("bea", &"o".repeat(65), vec![line(&a, 1)]),
        ),
        (
            "a product that is no UUID",
            settle("bea", "o-1", vec![line("a", 1)]),
        ),
        ("a quantity of 0", settle("bea", "o-1", vec![line(&a, 0)])),
        (
            "a negative quantity",
            settle("bea", "o-1", vec![line(&a, -2)]),
        ),
    ] {
        let refused = basket.settle_order(bad).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{what}");
    }
    assert_eq!(held(&basket).await, before, "nothing changed");
    // Two of A bought: one A and the B stay, asked twice or not.
    for _ in 0..2 {
        basket
            .settle_order(settle("bea", "o-1", vec![line(&a, 2)]))
            .await
            .unwrap();
    }
    let mut left = vec![(a.clone(), 1), (b.clone(), 1)];
    left.sort();
    assert_eq!(held(&basket).await, left);
    shop.stop().await;
}

/// The loop of the issue: add one item, order it, again and again, through
/// the real checkout; and a "buy now" of named items beside a full basket.
/// No order finds the basket empty, and the basket keeps what was not
/// ordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_in_a_loop_never_finds_the_basket_emptied_by_the_last_order() {
    let shop = TestShop::start().await;
    let me = "looper";
    let token = shop
        .issuer
        .mint(me, Role::Customer, Duration::from_secs(600))
        .unwrap();
    let items = products(&shop, 2).await;
    // Enough of the first for every round.
    let sku = shop
        .get(&format!("/api/v1/products/{}", items[0].0))
        .await
        .1["sku"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, adjusted) = shop
        .call(
            reqwest::Method::POST,
            "/api/v1/inventory/adjust",
            Some(&shop.token(Role::Admin)),
            Some(json!({ "sku": sku, "warehouse": "east", "delta": 50, "reason": "test stock" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{adjusted}");
    let add = |product: &str| {
        shop.http
            .post(shop.url(&format!("/api/v1/baskets/{me}/items")))
            .bearer_auth(&token)
            .json(&json!({ "product_id": product, "quantity": 1 }))
            .send()
    };
    for round in 0..12 {
        assert_eq!(add(&items[0].0).await.unwrap().status(), StatusCode::OK);
        let response = shop
            .http
            .post(shop.url("/api/v1/orders"))
            .bearer_auth(&token)
            .json(&json!({ "card_number": "4242424242424242" }))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "round {round}: {body}");
        assert_eq!(body["status"], "confirmed", "round {round}: {body}");
    }
    // A buy-now beside a basket: the basket keeps its line.
    assert_eq!(add(&items[1].0).await.unwrap().status(), StatusCode::OK);
    let settled = emporium_testkit::eventually(Duration::from_secs(10), || async {
        let body: Value = shop
            .http
            .get(shop.url(&format!("/api/v1/baskets/{me}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (body["item_count"] == 1).then_some(body)
    })
    .await;
    assert!(
        settled.is_some(),
        "the loop's orders took their lines, not the new one"
    );
    let response = shop
        .http
        .post(shop.url("/api/v1/orders"))
        .bearer_auth(&token)
        .json(&json!({ "items": [{ "product_id": items[0].0, "quantity": 1 }], "card_number": "4242424242424242" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let body: Value = shop
        .http
        .get(shop.url(&format!("/api/v1/baskets/{me}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["items"][0]["product_id"],
        items[1].0.as_str(),
        "{body}"
    );
    assert_eq!(body["item_count"], 1, "{body}");
    shop.stop().await;
}

/// The catalog alone with the demo products; the ids of the first `n`.
async fn seeded_catalog(
    n: usize,
) -> (
    emporium_platform::service::Running,
    tempfile::TempDir,
    Vec<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(dir.path());
    knows_callers(&mut settings, &["basket"]);
    let catalog = emporium_testkit::spawn(
        settings.clone(),
        &emporium::select(&["identity".to_owned(), "catalog".to_owned()]).unwrap(),
    )
    .await;
    emporium::seed_demo(
        std::sync::Arc::new(settings),
        &["catalog".to_owned()],
        Vec::new().into(),
    )
    .await
    .unwrap();
    let page: Value = reqwest::get(format!(
        "{}/api/v1/products?per_page={n}",
        catalog.url("catalog").unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ids = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    (catalog, dir, ids)
}

/// The basket of `ada` as its owner reads it.
async fn read_basket(http: &reqwest::Client, base: &str, token: &str) -> Value {
    http.get(format!("{base}/api/v1/baskets/ada"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A basket alone in its runtime, reaching the catalog (and Redis, when
/// given) through links the test can cut, with tokens from identity in
/// the catalog's process; it trusts `tokens` for its customers.
async fn lone_basket(
    catalog: &emporium_platform::service::Running,
    catalog_grpc: std::net::SocketAddr,
    redis: Option<String>,
    tokens: &emporium_testkit::Tokens,
    dir: &std::path::Path,
) -> emporium_platform::service::Running {
    let mut settings = shop_settings(dir);
    asks_identity_of(&mut settings, "basket", catalog);
    settings
        .peers
        .insert("catalog".into(), catalog_grpc.to_string());
    settings.update_section::<emporium_basket::BasketSettings>(|b| {
        b.redis_url = redis.map(emporium_platform::config::Secret::new);
        b.redis_prefix = format!("test-basket-{}", uuid::Uuid::now_v7().simple());
        b.catalog_deadline_ms = 500;
    });
    let basket = emporium::start(settings, &["basket".to_owned()])
        .await
        .unwrap();
    basket
        .runtime
        .verifier
        .publish(&tokens.issuer.jwks())
        .unwrap();
    emporium_testkit::wait_ready(&basket.url("basket").unwrap()).await;
    basket
}

/// How many calls to the catalog a basket's circuit breaker has refused
/// without trying, as `base/metrics` counts them.
async fn circuit_refusals(base: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_sum(
        &text,
        "grpc_client_requests_total{",
        &["peer=\"catalog\"", "code=\"CIRCUIT_OPEN\""],
    )
}

/// The sum of the samples of `prefix` whose labels hold every one of
/// `labels`.
pub(super) fn metric_sum(text: &str, prefix: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The catalog away: reads answer from what the basket holds, adds fail
/// with 503 naming it (at once, once the circuit is open), and all comes
/// back with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_basket_reads_without_the_catalog_and_adds_again_when_it_returns() {
    let (catalog, _catalog_dir, ids) = seeded_catalog(2).await;
    let link = emporium_testkit::Link::to(catalog.get("catalog").unwrap().grpc_addr.unwrap()).await;
    let tokens = emporium_testkit::Tokens::new();
    let dir = tempfile::tempdir().unwrap();
    let basket = lone_basket(&catalog, link.addr, None, &tokens, dir.path()).await;
    let base = basket.url("basket").unwrap();
    let ada = tokens.user("ada", Role::Customer);
    let http = reqwest::Client::new();
    let add = |product: &str| {
        http.post(format!("{base}/api/v1/baskets/ada/items"))
            .bearer_auth(&ada)
            .json(&json!({ "product_id": product }))
            .send()
    };
    assert_eq!(add(&ids[0]).await.unwrap().status(), StatusCode::OK);

    let refused_before = circuit_refusals(&base).await;
    link.cut();
    let read = read_basket(&http, &base, &ada).await;
    assert_eq!(read["checked"], false, "{read}");
    assert_eq!(read["items"][0]["status"], "unchecked");
    assert_eq!(read["item_count"], 1);
    for _ in 0..6 {
        let response = add(&ids[1]).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["dependency"], "catalog", "{problem}");
    }
    // Counted from this test's own baseline, not read from the gauge or
    // the mere presence of a line: under `cargo test` every test of this
    // binary shares one recorder.
    let refused = circuit_refusals(&base).await - refused_before;
    assert!(refused >= 1.0, "calls were refused without trying");

    link.restore();
    let back = emporium_testkit::eventually(Duration::from_secs(20), || {
        let request = add(&ids[1]);
        async move { (request.await.ok()?.status() == StatusCode::OK).then_some(()) }
    })
    .await;
    assert!(back.is_some(), "adds did not come back with the catalog");
    let read = read_basket(&http, &base, &ada).await;
    assert_eq!(
        (read["checked"].as_bool(), read["item_count"].as_i64()),
        (Some(true), Some(2))
    );
    basket.stop(Duration::from_secs(5)).await;
    catalog.stop(Duration::from_secs(5)).await;
}

/// Redis away while a basket is emptied: the client gets 503 and no event
/// is recorded; its retry, once Redis is back, empties the basket and
/// records `basket.cleared` once (decision 0007).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptying_a_basket_while_redis_is_away_is_refused_whole_and_done_on_retry() {
    let Some(redis) = emporium_testkit::server_url(emporium_testkit::REDIS) else {
        return;
    };
    let (catalog, _catalog_dir, ids) = seeded_catalog(1).await;
    let product = ids[0].clone();
    let redis_addr = server_addr(&redis, 6379).await;
    let redis_link = emporium_testkit::Link::to(redis_addr).await;
    let tokens = emporium_testkit::Tokens::new();
    let dir = tempfile::tempdir().unwrap();
    let basket = lone_basket(
        &catalog,
        catalog.get("catalog").unwrap().grpc_addr.unwrap(),
        Some(through(&redis_link, &redis)),
        &tokens,
        dir.path(),
    )
    .await;
    let base = basket.url("basket").unwrap();
    let ada = tokens.user("ada", Role::Customer);
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/api/v1/baskets/ada/items"))
        .bearer_auth(&ada)
        .json(&json!({ "product_id": product, "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    redis_link.cut();
    let response = http
        .delete(format!("{base}/api/v1/baskets/ada"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["dependency"], "redis", "{problem}");
    assert_eq!(
        outbox_rows(dir.path(), "basket", "basket.cleared", "baskets/ada").await,
        0
    );
    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "Redis is required"
    );

    redis_link.restore();
    let emptied = emporium_testkit::eventually(Duration::from_secs(20), || {
        let request = http
            .delete(format!("{base}/api/v1/baskets/ada"))
            .bearer_auth(&ada)
            .send();
        async move { (request.await.ok()?.status() == StatusCode::NO_CONTENT).then_some(()) }
    })
    .await;
    assert!(emptied.is_some(), "the retry did not empty the basket");
    let read = read_basket(&http, &base, &ada).await;
    assert_eq!(read["item_count"], 0);
    assert_eq!(
        outbox_rows(dir.path(), "basket", "basket.cleared", "baskets/ada").await,
        1
    );
    basket.stop(Duration::from_secs(5)).await;
    catalog.stop(Duration::from_secs(5)).await;
}

/// The gRPC faces checkout will use: inventory's reservations, idempotent
/// by id, and the basket read and emptied for its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_basket_answer_over_grpc() {
    use emporium_proto::basket::v1::BasketRequest;
    use emporium_proto::basket::v1::baskets_client::BasketsClient;
    use emporium_proto::inventory::v1::inventory_client::InventoryClient;
    use emporium_proto::inventory::v1::{
        GetStockRequest, Line, ReservationRequest, ReserveRequest,
    };
    let shop = TestShop::start().await;
    let mut inventory = InventoryClient::new(shop.grpc_as("ordering", "inventory"));
    let id = uuid::Uuid::now_v7().to_string();
    let reserve = ReserveRequest {
        reservation_id: id.clone(),
        lines: vec![Line {
            sku: "kit-003".into(),
            quantity: 2,
        }],
        ttl_secs: 60,
        reference: "order 1".into(),
    };
    let first = inventory
        .reserve(reserve.clone())
        .await
        .unwrap()
        .into_inner();
    let again = inventory
        .reserve(reserve.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.status.as_str(), first.allocations.len()),
        ("active", 1)
    );
    assert_eq!(first, again);
    /// (on hand, reserved) of KIT-003 over its warehouses.
    async fn stock(inventory: &mut InventoryClient<crate::ServiceChannel>) -> (i64, i64) {
        let levels = inventory
            .get_stock(GetStockRequest {
                skus: vec!["KIT-003".into()],
            })
            .await
            .unwrap()
            .into_inner()
            .levels;
        levels
            .iter()
            .map(|l| (l.on_hand, l.reserved))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
    let before = stock(&mut inventory).await;
    assert_eq!(before.1, 2);
    for _ in 0..2 {
        let committed = inventory
            .commit(ReservationRequest {
                reservation_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(committed.status, "committed");
    }
    let after = stock(&mut inventory).await;
    assert_eq!(after, (before.0 - 2, 0));
    let refused = inventory
        .release(ReservationRequest {
            reservation_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
    let bad = inventory
        .reserve(ReserveRequest {
            lines: vec![Line {
                sku: "no sku".into(),
                quantity: 0,
            }],
            ..reserve
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let addr = shop
        .shop
        .as_ref()
        .unwrap()
        .get("inventory")
        .unwrap()
        .grpc_addr
        .unwrap();
    let plain = |addr: std::net::SocketAddr| {
        emporium_platform::grpc::channel(&format!("http://{addr}"), Duration::from_secs(5)).unwrap()
    };
    let forged = authorized(ReservationRequest { reservation_id: id }, "not-a-token");
    assert_eq!(
        InventoryClient::new(plain(addr))
            .commit(forged)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );

    let ada = shop
        .issuer
        .mint("ada", Role::Customer, Duration::from_secs(300))
        .unwrap();
    let product = products(&shop, 1).await.remove(0).0;
    let (status, _, _) = shop
        .call(
            reqwest::Method::POST,
            "/api/v1/baskets/ada/items",
            Some(&ada),
            Some(json!({ "product_id": product, "quantity": 3 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut baskets = BasketsClient::new(shop.grpc_as("ordering", "basket"));
    let held = baskets
        .get_basket(BasketRequest {
            user_id: "ada".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((held.items.len(), held.items[0].quantity), (1, 3));
    assert_eq!(
        held.total.unwrap().amount_minor,
        3 * held.items[0].unit_price.clone().unwrap().amount_minor
    );
    // A customer's own token is no service's: not even for their basket.
    let addr = shop
        .shop
        .as_ref()
        .unwrap()
        .get("basket")
        .unwrap()
        .grpc_addr
        .unwrap();
    let denied = BasketsClient::new(plain(addr))
        .get_basket(authorized(
            BasketRequest {
                user_id: "ada".into(),
            },
            &ada,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    let denied = BasketsClient::new(shop.grpc_as("storefront", "basket"))
        .clear_basket(BasketRequest {
            user_id: "ada".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "reads only");
    baskets
        .clear_basket(BasketRequest {
            user_id: "ada".into(),
        })
        .await
        .unwrap();
    let emptied = baskets
        .get_basket(BasketRequest {
            user_id: "ada".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(emptied.items.is_empty() && emptied.total.is_none());
    shop.stop().await;
}

/// A POST with an optional `Idempotency-Key`: status, replayed or not, body.
async fn post_keyed(
    shop: &TestShop,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, bool, Value) {
    let mut request = shop
        .http
        .post(shop.url(path))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (
        status,
        replayed,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_pays_once_per_idempotency_key_through_the_gateway() {
    // Payments are made over REST by admins only, for the payer they name
    // (decision 0020); the payer processes them.
    use reqwest::Method;
    let shop = TestShop::start().await;
    let ada = shop
        .issuer
        .mint("ada", Role::Customer, Duration::from_secs(300))
        .unwrap();
    let bob = shop
        .issuer
        .mint("bob", Role::Customer, Duration::from_secs(300))
        .unwrap();
    let admin = shop.token(Role::Admin);
    let ops = shop
        .issuer
        .mint("ops", Role::Admin, Duration::from_secs(300))
        .unwrap();
    let order = |id: &str, card: &str| json!({ "order_id": id, "user_id": "ada", "amount": { "amount": "25.00", "currency": "USD" }, "card_number": card });
    let good = "4242 4242 4242 4242";

    let (status, replayed, first) = post_keyed(
        &shop,
        "/api/v1/payments",
        &admin,
        Some("k-1"),
        order("order-7", good),
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false), "{first}");
    assert_eq!(
        (first["status"].as_str(), first["card_last4"].as_str()),
        (Some("pending"), Some("4242"))
    );
    let (status, replayed, again) = post_keyed(
        &shop,
        "/api/v1/payments",
        &admin,
        Some("k-1"),
        order("order-7", good),
    )
    .await;
    assert_eq!(
        (status, replayed, &again["id"]),
        (StatusCode::CREATED, true, &first["id"])
    );
    let (status, _, _) = post_keyed(
        &shop,
        "/api/v1/payments",
        &admin,
        Some("k-1"),
        order("order-9", good),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the key was used for another request"
    );
    // Another caller's k-1 is its own.
    let (status, replayed, _) = post_keyed(
        &shop,
        "/api/v1/payments",
        &ops,
        Some("k-1"),
        json!({ "order_id": "order-b", "user_id": "bob", "amount": { "amount": "25.00", "currency": "USD" }, "card_number": good }),
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));

    // The same key eight times at once: one payment.
    let racers = (0..8).map(|_| {
        post_keyed(
            &shop,
            "/api/v1/payments",
            &admin,
            Some("k-2"),
            order("order-8", good),
        )
    });
    let answers = futures::future::join_all(racers).await;
    assert!(
        answers
            .iter()
            .all(|(s, _, b)| *s == StatusCode::CREATED && b["id"] == answers[0].2["id"]),
        "{answers:?}"
    );
    let (_, _, of_order) = shop
        .call(
            Method::GET,
            "/api/v1/payments/order/order-8",
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(of_order["total"], 1);

    // Processing, once per key; without a key a second time is refused.
    let id = first["id"].as_str().unwrap();
    let process = format!("/api/v1/payments/{id}/process");
    let (status, _, captured) = post_keyed(&shop, &process, &ada, Some("p-1"), json!(null)).await;
    assert_eq!(
        (status, captured["status"].as_str()),
        (StatusCode::OK, Some("captured")),
        "{captured}"
    );
    let (status, replayed, _) = post_keyed(&shop, &process, &ada, Some("p-1"), json!(null)).await;
    assert_eq!((status, replayed), (StatusCode::OK, true));
    let (status, _, _) = post_keyed(&shop, &process, &ada, None, json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Who sees what: another user's payment answers as a missing one.
    let path = format!("/api/v1/payments/{id}");
    assert_eq!(
        shop.call(Method::GET, &path, Some(&bob), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        shop.call(Method::GET, &path, Some(&ada), None).await.0,
        StatusCode::OK
    );
    let (_, _, mine) = shop
        .call(Method::GET, "/api/v1/users/ada/payments", Some(&ada), None)
        .await;
    assert_eq!(mine["total"], 2);
    assert_eq!(
        shop.call(Method::GET, "/api/v1/users/ada/payments", Some(&bob), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        shop.call(Method::GET, "/api/v1/payments", Some(&ada), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // Refunds are for admins, and bounded by the capture.
    let refund = format!("/api/v1/payments/{id}/refund");
    let (status, _, _) = post_keyed(&shop, &refund, &ada, None, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, part) = post_keyed(
        &shop,
        &refund,
        &admin,
        None,
        json!({ "amount": { "amount": "10.00", "currency": "USD" } }),
    )
    .await;
    assert_eq!(
        (status, part["status"].as_str()),
        (StatusCode::OK, Some("partially_refunded")),
        "{part}"
    );
    let (status, _, _) = post_keyed(
        &shop,
        &refund,
        &admin,
        None,
        json!({ "amount": { "amount": "15.01", "currency": "USD" } }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A declined card, and the mock told to fail every call.
    let (_, _, declined) = post_keyed(
        &shop,
        "/api/v1/payments",
        &admin,
        None,
        order("order-d", "4000000000000002"),
    )
    .await;
    let (status, _, failed) = post_keyed(
        &shop,
        &format!(
            "/api/v1/payments/{}/process",
            declined["id"].as_str().unwrap()
        ),
        &ada,
        None,
        json!(null),
    )
    .await;
    assert_eq!(
        (
            status,
            failed["status"].as_str(),
            failed["failure_reason"].as_str()
        ),
        (StatusCode::OK, Some("failed"), Some("card_declined"))
    );
    let (status, _, behaviour) = shop
        .call(
            Method::PUT,
            "/api/v1/payments/provider",
            Some(&admin),
            Some(json!({ "failure_rate": 1.0 })),
        )
        .await;
    assert_eq!(
        (status, behaviour["failure_rate"].as_f64()),
        (StatusCode::OK, Some(1.0))
    );
    let (_, _, doomed) = post_keyed(
        &shop,
        "/api/v1/payments",
        &admin,
        None,
        order("order-f", good),
    )
    .await;
    let (_, _, failed) = post_keyed(
        &shop,
        &format!(
            "/api/v1/payments/{}/process",
            doomed["id"].as_str().unwrap()
        ),
        &ada,
        None,
        json!(null),
    )
    .await;
    assert_eq!(failed["status"], "failed");

    // Bad input: a problem, and no payment more.
    let (_, _, before) = shop
        .call(
            Method::GET,
            "/api/v1/payments?per_page=1",
            Some(&admin),
            None,
        )
        .await;
    let long_key = "k".repeat(300);
    type Case<'a> = (Method, String, Option<&'a str>, Option<Value>, StatusCode);
    let bad: Vec<Case> = vec![
        (
            Method::POST,
            "/api/v1/payments".into(),
            None,
            Some(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/payments".into(),
            None,
            Some(order("order 1", good)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/payments".into(),
            None,
            Some(order("o", "4242424242424241")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/payments".into(),
            None,
            Some(
                json!({ "order_id": "o", "amount": { "amount": "0", "currency": "USD" }, "card_number": good }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/payments".into(),
            None,
            Some(
                json!({ "order_id": "o", "amount": { "amount": "1.00", "currency": "XXX" }, "card_number": good }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/payments".into(),
            None,
            Some(
                json!({ "order_id": "o", "amount": { "amount": "1.001", "currency": "USD" }, "card_number": good }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/payments".into(),
            None,
            Some(json!({ "order_id": "o", "amount": "1.00", "card_number": good })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/payments".into(),
            None,
            Some(
                json!({ "order_id": "o", "amount": { "amount": "1.00", "currency": "USD" }, "card_number": good, "metadata": [1] }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/payments".into(),
            None,
            Some(
                json!({ "order_id": "o", "amount": { "amount": "1.00", "currency": "USD" }, "card_number": good, "user_id": "b o b" }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/payments".into(),
            Some(long_key.as_str()),
            Some(order("o", good)),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/v1/payments/nope/process".into(),
            None,
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("/api/v1/payments/{}/process", uuid::Uuid::now_v7()),
            None,
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            format!("/api/v1/payments/{id}/cancel"),
            None,
            None,
            StatusCode::CONFLICT,
        ),
        (
            Method::GET,
            "/api/v1/payments/order/bad%20order".into(),
            None,
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/v1/users/ada/payments?status=lost".into(),
            None,
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/v1/users/ada/payments?page=0".into(),
            None,
            None,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, key, body, expected) in bad {
        // Bodies for a new payment are an admin's to get wrong.
        let token = if path == "/api/v1/payments" {
            &admin
        } else {
            &ada
        };
        let mut request = shop
            .http
            .request(method.clone(), shop.url(&path))
            .bearer_auth(token);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected, "{method} {path} {body:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
    }
    // A customer makes no payment of their own, for any order.
    let (status, _, _) = post_keyed(
        &shop,
        "/api/v1/payments",
        &ada,
        None,
        order("order-x", good),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for (body, expected) in [
        (json!([null, null]), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({ "failure_rate": 2 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "latency_ms": -1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, kind, _) = shop
            .call(
                Method::PUT,
                "/api/v1/payments/provider",
                Some(&admin),
                Some(body),
            )
            .await;
        assert_eq!(
            (status, kind.as_str()),
            (expected, "application/problem+json")
        );
    }
    let (_, _, after) = shop
        .call(
            Method::GET,
            "/api/v1/payments?per_page=1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(after["total"], before["total"]);
    shop.stop().await;
}
