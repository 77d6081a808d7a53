//! The checkout saga in the whole shop, through the gateway: confirmed or
//! fully undone, never oversold, never charged twice.

use super::*;

const CARD: &str = "4242424242424242";

fn customer(shop: &TestShop, name: &str) -> String {
    shop.issuer
        .mint(name, Role::Customer, Duration::from_secs(600))
        .unwrap()
}

/// A demo product's (id, sku).
async fn product(shop: &TestShop, index: usize) -> (String, String) {
    let page = shop.get("/api/v1/products?per_page=20").await.1;
    let item = &page["items"][index];
    (
        item["id"].as_str().unwrap().to_owned(),
        item["sku"].as_str().unwrap().to_owned(),
    )
}

/// (on hand, reserved, available) of a SKU over its warehouses.
async fn stock(shop: &TestShop, sku: &str) -> (i64, i64, i64) {
    let body = shop.get(&format!("/api/v1/inventory/{sku}")).await.1;
    (
        body["on_hand"].as_i64().unwrap(),
        body["reserved"].as_i64().unwrap(),
        body["available"].as_i64().unwrap(),
    )
}

/// Sets a SKU's available units to `units`: added to its first warehouse,
/// or taken from its warehouses in turn.
async fn stock_to(shop: &TestShop, admin: &str, sku: &str, units: i64) {
    let body = shop.get(&format!("/api/v1/inventory/{sku}")).await.1;
    let mut delta = units - body["available"].as_i64().unwrap();
    for warehouse in body["warehouses"].as_array().unwrap() {
        let change = if delta >= 0 {
            delta
        } else {
            delta.max(-warehouse["available"].as_i64().unwrap())
        };
        if change == 0 {
            continue;
        }
        let (status, _, answer) = shop
            .call(
                reqwest::Method::POST,
                "/api/v1/inventory/adjust",
                Some(admin),
                Some(json!({ "sku": sku, "warehouse": warehouse["warehouse"], "delta": change, "reason": "test stock" })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        delta -= change;
    }
    assert_eq!(stock(shop, sku).await.2, units);
}

async fn order(
    shop: &TestShop,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = shop
        .http
        .post(shop.url("/api/v1/orders"))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basket_checks_out_into_a_confirmed_paid_order_and_back_out_when_cancelled() {
    use reqwest::Method;
    let shop = TestShop::start().await;
    let admin = shop.token(Role::Admin);
    let ada = customer(&shop, "ada");
    let (first, sku) = product(&shop, 2).await;
    stock_to(&shop, &admin, &sku, 20).await;
    let (on_hand, _, _) = stock(&shop, &sku).await;
    let (status, _, _) = shop
        .call(
            Method::POST,
            "/api/v1/baskets/ada/items",
            Some(&ada),
            Some(json!({ "product_id": first, "quantity": 3 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, confirmed) = order(
        &shop,
        &ada,
        Some("checkout-1"),
        json!({ "card_number": CARD }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{confirmed}");
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    assert_eq!(confirmed["lines"][0]["quantity"], 3);
    let (status, again) = order(
        &shop,
        &ada,
        Some("checkout-1"),
        json!({ "card_number": CARD }),
    )
    .await;
    assert_eq!(
        (status, &again["id"]),
        (StatusCode::CREATED, &confirmed["id"]),
        "one order per key"
    );
    let id = confirmed["id"].as_str().unwrap();

    // Paid once, stock committed, basket emptied by the event.
    let (_, _, payments) = shop
        .call(
            Method::GET,
            &format!("/api/v1/payments/order/{id}"),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(payments["total"], 1);
    assert_eq!(payments["items"][0]["status"], "captured");
    assert_eq!(payments["items"][0]["amount"], confirmed["total"]);
    assert_eq!(stock(&shop, &sku).await, (on_hand - 3, 0, on_hand - 3));
    let emptied = emporium_testkit::eventually(Duration::from_secs(10), || {
        let call = shop.call(Method::GET, "/api/v1/baskets/ada", Some(&ada), None);
        async move { (call.await.2["item_count"] == 0).then_some(()) }
    })
    .await;
    assert!(emptied.is_some(), "order.confirmed empties the basket");
    let (_, _, mine) = shop
        .call(Method::GET, "/api/v1/orders", Some(&ada), None)
        .await;
    assert_eq!(mine["total"], 1);
    let bob = customer(&shop, "bob");
    assert_eq!(
        shop.call(
            Method::GET,
            &format!("/api/v1/orders/{id}"),
            Some(&bob),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        shop.call(
            Method::DELETE,
            &format!("/api/v1/orders/{id}"),
            Some(&bob),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        shop.call(Method::GET, "/api/v1/orders", Some(&bob), None)
            .await
            .2["total"],
        0
    );

    // Cancelled before shipping: refunded, and the stock comes back.
    let (status, _, cancelled) = shop
        .call(
            Method::DELETE,
            &format!("/api/v1/orders/{id}"),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{cancelled}"
    );
    let (_, _, payments) = shop
        .call(
            Method::GET,
            &format!("/api/v1/payments/order/{id}"),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(payments["items"][0]["status"], "refunded");
    let restocked = emporium_testkit::eventually(Duration::from_secs(10), || {
        let probe = stock(&shop, &sku);
        async move { (probe.await.0 == on_hand).then_some(()) }
    })
    .await;
    assert!(restocked.is_some(), "order.cancelled puts the stock back");
    assert_eq!(
        shop.call(
            Method::DELETE,
            &format!("/api/v1/orders/{id}"),
            Some(&ada),
            None
        )
        .await
        .0,
        StatusCode::CONFLICT
    );

    // An admin moves another order along; skipping a state is refused.
    let (_, next) = order(
        &shop,
        &ada,
        None,
        json!({ "items": [{ "product_id": first }], "card_number": CARD }),
    )
    .await;
    let path = format!("/api/v1/orders/{}", next["id"].as_str().unwrap());
    assert_eq!(
        shop.call(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({ "status": "shipped" }))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    for step in ["processing", "shipped", "delivered"] {
        let (status, _, moved) = shop
            .call(
                Method::PUT,
                &path,
                Some(&admin),
                Some(json!({ "status": step })),
            )
            .await;
        assert_eq!(
            (status, moved["status"].as_str()),
            (StatusCode::OK, Some(step))
        );
    }
    assert_eq!(
        shop.call(
            Method::PUT,
            &path,
            Some(&ada),
            Some(json!({ "status": "delivered" }))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        shop.call(Method::DELETE, &path, Some(&ada), None).await.0,
        StatusCode::CONFLICT,
        "delivered"
    );

    // Bad input: a problem, and no order more.
    let (_, _, before) = shop
        .call(Method::GET, "/api/v1/orders?per_page=1", Some(&admin), None)
        .await;
    let cases: Vec<(Method, String, Option<Value>, StatusCode)> = vec![
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(json!({ "card_number": CARD })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(json!({ "items": [], "card_number": CARD })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(json!({ "items": [{ "product_id": "x" }], "card_number": CARD })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(
                json!({ "items": [{ "product_id": first, "quantity": 100 }], "card_number": CARD }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(json!({ "items": [{ "product_id": uuid::Uuid::now_v7() }], "card_number": CARD })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(json!([1])),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/api/v1/orders/nope".into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/v1/orders/{}", uuid::Uuid::now_v7()),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/orders?status=lost".into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            format!("/api/v1/orders/{}", uuid::Uuid::now_v7()),
            None,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, kind, problem) = shop
            .call(method.clone(), &path, Some(&ada), body.clone())
            .await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {problem}");
        assert_eq!(kind, "application/problem+json", "{method} {path}");
    }
    let (status, kind, _) = shop
        .call(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({ "status": "lost" })),
        )
        .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json")
    );
    let (_, _, after) = shop
        .call(Method::GET, "/api/v1/orders?per_page=1", Some(&admin), None)
        .await;
    assert_eq!(after["total"], before["total"]);
    shop.stop().await;
}

/// 50 customers at once for a product with 10 in stock: exactly 10 orders
/// confirmed and paid, the rest failed cleanly, nothing left reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_checkouts_for_ten_in_stock_confirm_exactly_ten() {
    use reqwest::Method;
    let shop = TestShop::start().await;
    let admin = shop.token(Role::Admin);
    let (id, sku) = product(&shop, 4).await;
    stock_to(&shop, &admin, &sku, 10).await;
    let (on_hand, _, _) = stock(&shop, &sku).await;
    let checkouts = (0..50).map(|i| {
        let token = customer(&shop, &format!("buyer-{i}"));
        let body = json!({ "items": [{ "product_id": id }], "card_number": CARD });
        let shop = &shop;
        async move { order(shop, &token, None, body).await }
    });
    let answers = futures::future::join_all(checkouts).await;
    let confirmed = answers
        .iter()
        .filter(|(_, o)| o["status"] == "confirmed")
        .count();
    let failed: Vec<_> = answers
        .iter()
        .filter(|(_, o)| o["status"] == "failed")
        .collect();
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{answers:?}"
    );
    assert_eq!((confirmed, failed.len()), (10, 40));
    assert!(
        failed.iter().all(|(_, o)| o["failure_reason"]
            .as_str()
            .unwrap()
            .starts_with("out of stock")),
        "{failed:?}"
    );
    assert_eq!(stock(&shop, &sku).await, (on_hand - 10, 0, 0));
    let (_, _, captured) = shop
        .call(
            Method::GET,
            "/api/v1/payments?status=captured&per_page=1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(captured["total"], 10);
    shop.stop().await;
}

/// A declined card or a processor that hangs after stock is reserved: the
/// stock is released, the order failed, nothing captured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_or_hanging_payment_releases_the_stock() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(dir.path());
    settings.update_section::<emporium_payment::PaymentSettings>(|p| p.provider_timeout_ms = 300);
    let shop = TestShop::start_with(settings, dir).await;
    let admin = shop.token(Role::Admin);
    let ada = customer(&shop, "ada");
    let (id, sku) = product(&shop, 5).await;
    stock_to(&shop, &admin, &sku, 5).await;
    let before = stock(&shop, &sku).await;
    for (card, reason) in [
        ("4000000000000002", "payment failed: card_declined"),
        (
            "4000000000000101",
            "payment failed: processor_unavailable: timed out",
        ),
    ] {
        let (status, failed) = order(
            &shop,
            &ada,
            None,
            json!({ "items": [{ "product_id": id, "quantity": 2 }], "card_number": card }),
        )
        .await;
        assert_eq!(
            (status, failed["status"].as_str()),
            (StatusCode::CREATED, Some("failed")),
            "{failed}"
        );
        assert_eq!(failed["failure_reason"], reason);
        assert_eq!(stock(&shop, &sku).await, before, "released");
    }
    let (_, _, captured) = shop
        .call(
            Method::GET,
            "/api/v1/payments?status=captured&per_page=1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(captured["total"], 0);
    shop.stop().await;
}
