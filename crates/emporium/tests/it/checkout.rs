//! The checkout saga in the whole shop, through the gateway: confirmed or
//! fully undone, never oversold, never charged twice.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

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

/// How many payments are captured in the whole shop.
async fn captured(shop: &TestShop, admin: &str) -> u64 {
    let (_, _, page) = shop
        .call(
            reqwest::Method::GET,
            "/api/v1/payments?status=captured&per_page=1",
            Some(admin),
            None,
        )
        .await;
    page["total"].as_u64().unwrap()
}

/// A counter of the shop, summed over the samples whose labels hold every
/// one of `labels`.
async fn counter(shop: &TestShop, name: &str, labels: &[&str]) -> f64 {
    let text = shop.metrics().await;
    super::commerce::metric_sum(&text, name, labels)
}

/// What this test's checkouts add to the counters: orders made, payments
/// captured, refunds. Read from the test's own baseline, since under
/// `cargo test` every shop of the binary counts into one recorder.
async fn checkout_counters(shop: &TestShop) -> [f64; 3] {
    [
        counter(shop, "orders_created_total", &[]).await,
        counter(shop, "payments_processed_total{", &["status=\"completed\""]).await,
        counter(shop, "refunds_processed_total", &[]).await,
    ]
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
    // The demo's past orders went through the real checkout.
    for (status, expected) in [
        ("delivered", 1),
        ("shipped", 1),
        ("confirmed", 1),
        ("failed", 0),
    ] {
        let path = format!("/api/v1/orders?status={status}");
        let (_, _, page) = shop.call(Method::GET, &path, Some(&admin), None).await;
        assert_eq!(page["total"], expected, "{status}: {page}");
    }
    assert_eq!(captured(&shop, &admin).await, 3);
    let counted_before = checkout_counters(&shop).await;
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
    // Five at once with a new key and the same items: one order.
    let racers = (0..5).map(|_| {
        let body = json!({ "items": [{ "product_id": first }], "card_number": CARD });
        order(&shop, &ada, Some("checkout-2"), body)
    });
    let raced = futures::future::join_all(racers).await;
    assert!(
        raced
            .iter()
            .all(|(s, o)| *s == StatusCode::CREATED && o["id"] == raced[0].1["id"]),
        "{raced:?}"
    );

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
    assert_eq!(stock(&shop, &sku).await, (on_hand - 4, 0, on_hand - 4));
    let emptied = emporium_testkit::eventually(Duration::from_secs(10), || {
        let call = shop.call(Method::GET, "/api/v1/baskets/ada", Some(&ada), None);
        async move { (call.await.2["item_count"] == 0).then_some(()) }
    })
    .await;
    assert!(emptied.is_some(), "order.confirmed empties the basket");
    let (_, _, mine) = shop
        .call(Method::GET, "/api/v1/orders", Some(&ada), None)
        .await;
    assert_eq!(mine["total"], 2);
    // Another user's order answers as a missing one.
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
        StatusCode::NOT_FOUND
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
        StatusCode::NOT_FOUND
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
        async move { (probe.await.0 == on_hand - 1).then_some(()) }
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
    // Every step is announced, each once.
    let heard = Arc::new(Heard::default());
    let listening = CancellationToken::new();
    let consumer = shop
        .shop
        .as_ref()
        .unwrap()
        .runtime
        .transport
        .subscribe(
            "test-fulfilment",
            &[emporium_platform::bus::Interest::new(
                "order.*",
                "emporium.ordering",
            )],
            heard.clone(),
            listening.clone(),
        )
        .await
        .unwrap();
    let consumer = tokio::spawn(consumer);
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
    let order_id = next["id"].as_str().unwrap().to_owned();
    // The subscription began after the checkout: its own events
    // (`order.created`, `order.confirmed`) may still be on their way out of
    // the outbox and arrive first, each at most once.
    let announced = emporium_testkit::eventually(Duration::from_secs(10), || {
        let (heard, order_id) = (heard.clone(), order_id.clone());
        async move {
            let kinds = heard.kinds_of(&order_id).await;
            let steps = kinds
                .iter()
                .filter(|k| !matches!(k.as_str(), "order.created" | "order.confirmed"))
                .count();
            (steps >= 3).then_some(kinds)
        }
    })
    .await
    .expect("three fulfilment events");
    let (earlier, steps): (Vec<&String>, Vec<&String>) = announced
        .iter()
        .partition(|k| matches!(k.as_str(), "order.created" | "order.confirmed"));
    assert_eq!(
        steps,
        ["order.processing", "order.shipped", "order.delivered"]
    );
    for kind in ["order.created", "order.confirmed"] {
        let times = earlier.iter().filter(|k| k.as_str() == kind).count();
        assert!(times <= 1, "{kind} {times} times: {announced:?}");
    }
    listening.cancel();
    consumer.await.unwrap();
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
    // The business metrics of the checkout are exported, and grew by what
    // this test did: three orders paid, one refunded.
    let counted_after = checkout_counters(&shop).await;
    for (i, (what, expected)) in [("orders", 3.0), ("captures", 3.0), ("refunds", 1.0)]
        .into_iter()
        .enumerate()
    {
        crate::assert_counted(counted_after[i] - counted_before[i], expected, what);
    }
    let text = shop.metrics().await;
    for (service, names) in [
        (
            "ordering",
            &[
                "orders_created_total",
                "order_processing_duration_seconds_bucket{",
            ][..],
        ),
        (
            "payment",
            &[
                "payments_processed_total{",
                "payment_amount_sum{",
                "refunds_processed_total",
                "payment_gateway_latency_seconds_bucket{",
            ][..],
        ),
    ] {
        for name in names {
            assert!(text.contains(name), "{service}: {name} missing");
        }
    }
    // `orders_by_status` is counted by the resumer, off the request path.
    let metrics_url = shop.shop.as_ref().unwrap().metrics_url().unwrap();
    let counted = emporium_testkit::eventually(Duration::from_secs(15), || {
        let request = reqwest::get(metrics_url.clone());
        async move {
            let text = request.await.ok()?.text().await.ok()?;
            text.contains("orders_by_status{status=\"confirmed\"}")
                .then_some(())
        }
    })
    .await;
    assert!(counted.is_some(), "orders_by_status is exported");
    shop.stop().await;
}

/// 50 customers at once for a product with 10 in stock: exactly 10 orders
/// confirmed and paid, the rest failed cleanly, nothing left reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_checkouts_for_ten_in_stock_confirm_exactly_ten() {
    let shop = TestShop::start().await;
    let admin = shop.token(Role::Admin);
    let (id, sku) = product(&shop, 4).await;
    stock_to(&shop, &admin, &sku, 10).await;
    let (on_hand, _, _) = stock(&shop, &sku).await;
    let paid = captured(&shop, &admin).await;
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
    assert_eq!(captured(&shop, &admin).await - paid, 10);
    shop.stop().await;
}

/// A declined card or a processor that hangs after stock is reserved: the
/// stock is released, the order failed, nothing captured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_or_hanging_payment_releases_the_stock() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(dir.path());
    settings.update_section::<emporium_payment::PaymentSettings>(|p| p.provider_timeout_ms = 300);
    let shop = TestShop::start_with(settings, dir).await;
    let admin = shop.token(Role::Admin);
    let ada = customer(&shop, "ada");
    let (id, sku) = product(&shop, 5).await;
    stock_to(&shop, &admin, &sku, 5).await;
    let before = stock(&shop, &sku).await;
    let paid = captured(&shop, &admin).await;
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
    assert_eq!(captured(&shop, &admin).await, paid, "nothing captured");
    shop.stop().await;
}

/// `emporium serve ordering` in its own process, its peers in this one;
/// its address once it listens.
async fn ordering_process(
    dir: &std::path::Path,
    peers: &emporium_platform::service::Running,
    jwks: &std::path::Path,
) -> (tokio::process::Child, String) {
    let grpc = |name: &str| peers.get(name).unwrap().grpc_addr.unwrap().to_string();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["serve", "ordering", "--data-dir"])
        .arg(dir)
        .args(["--log-format", "json"])
        .env("PORT", "0")
        .env("GRPC_PORT", "0")
        .env("PRODUCT_SERVICE_URL", grpc("catalog"))
        .env("INVENTORY_SERVICE_URL", grpc("inventory"))
        .env("PAYMENT_SERVICE_URL", grpc("payment"))
        .env("BASKET_SERVICE_URL", grpc("basket"))
        .env("EMPORIUM__AUTH__JWKS_FILE", jwks)
        .env("IDENTITY_SERVICE_URL", grpc("identity"))
        .env(
            "EMPORIUM__AUTH__SERVICE_SECRETS__ORDERING",
            crate::test_secret("ordering").expose(),
        )
        .env("EMPORIUM__ORDERING__RESUME_AFTER_SECS", "1")
        .env("EMPORIUM__ORDERING__RESUME_EVERY_SECS", "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let (addr, _) = listening_addr(&mut stdout, "ordering").await;
    tokio::spawn(async move {
        let mut sink = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut sink).await;
    });
    let base = format!("http://{addr}");
    emporium_testkit::wait_ready(&base).await;
    (child, base)
}

/// The ordering process killed (SIGKILL) while the payment is being taken,
/// then started again: the order ends confirmed, or failed with its stock
/// released and nothing captured; never pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_killed_mid_payment_is_settled_when_ordering_restarts() {
    let tokens = emporium_testkit::Tokens::new();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, tokens.issuer.jwks()).unwrap();
    let mut settings = shop_settings(dir.path());
    settings.update_section::<emporium_payment::PaymentSettings>(|p| {
        p.mock.latency_ms = 700;
        p.provider_timeout_ms = 5000;
    });
    // Identity beside the peers gives ordering, elsewhere, its tokens;
    // the test's customers are trusted from the key file.
    settings.auth.jwks_file = Some(jwks.clone());
    crate::knows_callers(&mut settings, &["ordering"]);
    let names: Vec<String> = ["catalog", "inventory", "basket", "payment"]
        .map(String::from)
        .to_vec();
    let served: Vec<String> = std::iter::once("identity".to_owned())
        .chain(names.iter().cloned())
        .collect();
    let peers =
        emporium_testkit::spawn(settings.clone(), &emporium::select(&served).unwrap()).await;
    emporium::seed_demo(std::sync::Arc::new(settings), &names, Vec::new().into())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let catalog = peers.url("catalog").unwrap();
    let inventory = peers.url("inventory").unwrap();
    let page: Value = http
        .get(format!("{catalog}/api/v1/products?per_page=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (product, sku) = (
        page["items"][0]["id"].clone(),
        page["items"][0]["sku"].as_str().unwrap().to_owned(),
    );
    let level = |http: reqwest::Client| {
        let url = format!("{inventory}/api/v1/inventory/{sku}");
        async move {
            let body: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            (
                body["on_hand"].as_i64().unwrap(),
                body["reserved"].as_i64().unwrap(),
            )
        }
    };
    let (on_hand, reserved) = level(http.clone()).await;
    assert_eq!(reserved, 0);

    let ordering_dir = tempfile::tempdir().unwrap();
    let (mut first, base) = ordering_process(ordering_dir.path(), &peers, &jwks).await;
    let ada = tokens.user("ada", Role::Customer);
    let checkout = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(&ada)
        .json(&json!({ "items": [{ "product_id": product, "quantity": 2 }], "card_number": CARD }))
        .send();
    let request = tokio::spawn(checkout);
    // The stock is held: the saga is past reserving and taking the payment.
    let held = emporium_testkit::eventually(Duration::from_secs(10), || {
        let probe = level(http.clone());
        async move { (probe.await.1 == 2).then_some(()) }
    })
    .await;
    assert!(held.is_some(), "the checkout reserved its stock");
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    assert!(
        request.await.unwrap().is_err(),
        "the request died with the process"
    );

    let (_second, base) = ordering_process(ordering_dir.path(), &peers, &jwks).await;
    let admin = tokens.admin();
    // Every order the shop holds, read as an admin: exactly one, settled.
    let settled = emporium_testkit::eventually(Duration::from_secs(30), || {
        let request = http
            .get(format!("{base}/api/v1/orders"))
            .bearer_auth(&admin)
            .send();
        async move {
            let page: Value = request.await.ok()?.json().await.ok()?;
            let order = page["items"][0].clone();
            (order["status"] != "pending" && !order.is_null()).then_some(page)
        }
    })
    .await
    .expect("the order is settled after the restart");
    assert_eq!(settled["total"], 1, "exactly one order: {settled}");
    let settled = settled["items"][0].clone();
    assert_eq!(settled["user_id"], "ada");
    // Every payment of the shop, whoever's: exactly one, for this order.
    let payments: Value = http
        .get(format!("{}/api/v1/payments", peers.url("payment").unwrap()))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(payments["total"], 1, "exactly one payment: {payments}");
    let payment = &payments["items"][0];
    assert_eq!(payment["order_id"], settled["id"], "{payments}");
    match settled["status"].as_str().unwrap() {
        "confirmed" => {
            assert_eq!(payment["status"], "captured", "{payments}");
            assert_eq!(payment["amount"], settled["total"], "{payments}");
            assert_eq!(settled["payment_id"], payment["id"]);
            assert_eq!(level(http.clone()).await, (on_hand - 2, 0));
        }
        "failed" => {
            // Nothing taken and no authorization left standing: the
            // payment failed or was cancelled (which voids it).
            assert!(
                matches!(payment["status"].as_str(), Some("failed" | "cancelled")),
                "{payments}"
            );
            assert_eq!(level(http.clone()).await, (on_hand, 0), "released");
        }
        other => panic!("settled as {other}: {settled}"),
    }
    peers.stop(Duration::from_secs(5)).await;
}

/// One service in its own `emporium serve` process on the real servers.
type Served = emporium_testkit::ServiceProcess;

async fn serve(service: &str, env: &[(String, String)], dir: &std::path::Path) -> Served {
    serve_on(service, env, dir, 0).await
}

/// As [`serve`], its HTTP port `port` (0: any free one).
async fn serve_on(
    service: &str,
    env: &[(String, String)],
    dir: &std::path::Path,
    port: u16,
) -> Served {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_emporium"));
    Served::start(binary, service, env, dir, (port, 0)).await
}

/// Every service in its own process on PostgreSQL, MariaDB (payment),
/// Redis and RabbitMQ, the broker behind a link, notification twice behind
/// the gateway mailing through a real SMTP server: a customer registers,
/// fills a basket and checks out through the gateway; with the broker cut
/// the order still confirms and the basket is settled, and once the broker
/// is back exactly one confirmation is mailed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_journey_runs_distributed_and_survives_the_broker_going_away() {
    use emporium_testkit::{AMQP, REDIS, SMTP, SMTP_MAILDIR, TestDatabase, delivered, server_url};
    let (Some(amqp), Some(redis), Some(smtp), Some(maildir)) = (
        server_url(AMQP),
        server_url(REDIS),
        server_url(SMTP),
        server_url(SMTP_MAILDIR),
    ) else {
        return;
    };
    // A Redis database of its own: the chaos suite runs a distributed
    // shop with the same SKUs beside it.
    let redis = emporium_testkit::redis_database(&redis, 15);
    let mut databases = std::collections::HashMap::new();
    for (service, backend) in emporium_testkit::DISTRIBUTED_DATABASES {
        let Some(db) = TestDatabase::fresh(backend).await else {
            return;
        };
        databases.insert(service, db);
    }
    for queue in ["inventory", "basket", "recommendation", "notification"] {
        emporium_testkit::delete_queues(&amqp, queue).await;
    }
    let broker = emporium_testkit::Link::to(server_addr(&amqp, 5672).await).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("test-{}", uuid::Uuid::now_v7().simple());
    // Every process traces to one receiver and logs its requests and
    // events (debug lines of the platform).
    let receiver = emporium_testkit::TraceReceiver::start().await;
    let traced = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            receiver.url.clone(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "200".to_owned()),
        (
            "EMPORIUM__LOG__LEVEL".to_owned(),
            "info,emporium_platform=debug".to_owned(),
        ),
    ];
    let env = |service: &str, extra: Vec<(String, String)>| {
        let mut env = vec![
            ("REDIS_URL".to_owned(), redis.clone()),
            ("AMQP_URL".to_owned(), through(&broker, &amqp)),
        ];
        env.extend(traced.iter().cloned());
        if let Some(database) = databases.get(service) {
            env.push(("DATABASE_URL".to_owned(), database.url.expose().to_owned()));
        }
        if matches!(service, "basket" | "payment" | "ordering") {
            env.push((
                format!("EMPORIUM__{}__REDIS_PREFIX", service.to_uppercase()),
                prefix.clone(),
            ));
        }
        env.extend(extra);
        env
    };
    // Each service's secret: identity holds them all, each service its own.
    let secret = |service: &str| {
        (
            format!(
                "EMPORIUM__AUTH__SERVICE_SECRETS__{}",
                service.to_uppercase()
            ),
            crate::test_secret(service).expose().to_owned(),
        )
    };
    let admin_password = "a long admin passphrase";
    let mut identity_env = vec![
        ("EMPORIUM_ADMIN_EMAIL".into(), "admin@example.org".into()),
        ("EMPORIUM_ADMIN_PASSWORD".into(), admin_password.into()),
        // On PostgreSQL, identity seals its signing keys with this.
        (
            "EMPORIUM__IDENTITY__KEY_ENCRYPTION_KEYS".into(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        ),
    ];
    identity_env.extend(["basket", "ordering", "notification", "storefront"].map(secret));
    let identity = serve("identity", &env("identity", identity_env), dir.path()).await;
    let jwks = (
        "EMPORIUM__AUTH__JWKS_URL".to_owned(),
        format!(
            "http://127.0.0.1:{}/.well-known/jwks.json",
            identity.http.port()
        ),
    );
    let mut served = vec![("identity", identity)];
    // Each after the peers it calls, told where those listen.
    for service in [
        "catalog",
        "inventory",
        "payment",
        "basket",
        "ordering",
        "recommendation",
    ] {
        let mut extra = vec![jwks.clone(), secret(service)];
        for (peer, process) in &served {
            let variable = match *peer {
                "catalog" => "PRODUCT".to_owned(),
                other => other.to_uppercase(),
            };
            extra.push((
                format!("{variable}_SERVICE_URL"),
                process.grpc.unwrap().to_string(),
            ));
        }
        let process = serve(service, &env(service, extra), dir.path()).await;
        served.push((service, process));
    }
    // Notification twice, on one database, one after the other (each
    // migrates it at start); they share the queue and, through Redis, the
    // sockets.
    let mut notifiers = Vec::new();
    for _ in 0..2 {
        let extra = vec![
            jwks.clone(),
            secret("notification"),
            ("SMTP_URL".to_owned(), smtp.clone()),
            (
                "IDENTITY_SERVICE_URL".to_owned(),
                served[0].1.grpc.unwrap().to_string(),
            ),
        ];
        notifiers.push(serve("notification", &env("notification", extra), dir.path()).await);
    }
    let mut gateway_env = vec![jwks.clone(), ("REDIS_URL".to_owned(), redis.clone())];
    gateway_env.extend(traced.iter().cloned());
    for (service, process) in &served {
        gateway_env.push((
            format!("EMPORIUM__GATEWAY__UPSTREAMS__{}", service.to_uppercase()),
            format!("http://{}", process.http),
        ));
    }
    gateway_env.push((
        "EMPORIUM__GATEWAY__UPSTREAMS__NOTIFICATION".to_owned(),
        notifiers
            .iter()
            .map(|n| format!("http://{}", n.http))
            .collect::<Vec<_>>()
            .join(","),
    ));
    gateway_env.push((
        "EMPORIUM__GATEWAY__RATE_LIMIT_PREFIX".to_owned(),
        prefix.clone(),
    ));
    // The gateway's readiness is served apart from its public port.
    let internal = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    gateway_env.push((
        "EMPORIUM__GATEWAY__INTERNAL_ADDR".to_owned(),
        internal.to_string(),
    ));
    // The storefront calls the gateway and the gateway routes pages to it:
    // its port is chosen first, so that each can be told of the other.
    let storefront_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    gateway_env.push((
        "EMPORIUM__GATEWAY__UPSTREAMS__STOREFRONT".to_owned(),
        format!("http://{storefront_addr}"),
    ));
    // The storefront's calls carry the shopper's address.
    gateway_env.push((
        "EMPORIUM__HTTP__TRUSTED_PROXIES".to_owned(),
        "127.0.0.1/32".to_owned(),
    ));
    let gateway = serve("gateway", &gateway_env, dir.path()).await;
    let base = format!("http://{}", gateway.http);
    let mut storefront_env = vec![
        jwks.clone(),
        secret("storefront"),
        ("EMPORIUM__STOREFRONT__API_URL".to_owned(), base.clone()),
    ];
    storefront_env.extend(traced.iter().cloned());
    for (peer, process) in &served {
        if let ("identity" | "catalog" | "inventory" | "recommendation", Some(grpc)) =
            (*peer, process.grpc)
        {
            let variable = if *peer == "catalog" {
                "PRODUCT"
            } else {
                &peer.to_uppercase()
            };
            storefront_env.push((format!("{variable}_SERVICE_URL"), grpc.to_string()));
        }
    }
    let mut storefront = serve_on(
        "storefront",
        &storefront_env,
        dir.path(),
        storefront_addr.port(),
    )
    .await;
    for process in served.iter().map(|(_, p)| p).chain(&notifiers) {
        emporium_testkit::wait_ready(&format!("http://{}", process.http)).await;
    }
    emporium_testkit::wait_ready(&format!("http://{internal}")).await;

    // Demo data through the services' own commands.
    for service in ["catalog", "inventory"] {
        let seeded = tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"))
            .args(["seed", service, "--data-dir"])
            .arg(dir.path())
            .envs(env(service, vec![]))
            .output()
            .await
            .unwrap();
        assert!(seeded.status.success(), "{seeded:?}");
    }
    let http = reqwest::Client::new();
    let page: Value = http
        .get(format!("{base}/api/v1/products?per_page=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = page["items"][0]["id"].as_str().unwrap().to_owned();
    let sku = page["items"][0]["sku"].as_str().unwrap().to_owned();
    let stock = || {
        let request = http.get(format!("{base}/api/v1/inventory/{sku}")).send();
        async move {
            let body: Value = request.await.unwrap().json().await.unwrap();
            (
                body["on_hand"].as_i64().unwrap_or(-1),
                body["reserved"].as_i64().unwrap_or(-1),
            )
        }
    };
    let (on_hand, _) = stock().await;
    assert!(on_hand >= 2, "demo stock in PostgreSQL: {on_hand}");

    // Register, sign in, fill the basket. The address is this run's own:
    // the SMTP server's Maildir outlives the test.
    let email = format!("far-{}@example.org", uuid::Uuid::now_v7().simple());
    let response = http
        .post(format!("{base}/api/v1/users/register"))
        .json(&json!({ "email": email, "password": "a long passphrase", "name": "Far" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let session: Value = http
        .post(format!("{base}/api/v1/users/login"))
        .json(&json!({ "email": email, "password": "a long passphrase" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().unwrap().to_owned();
    let me = session["user"]["id"].as_str().unwrap().to_owned();
    // Her sockets: one on each notification process, one through the
    // gateway; and another customer's, which must hear nothing of hers.
    use crate::live::{messages_until, next_message, open, ws_url};
    let mut sockets = Vec::new();
    for process in &notifiers {
        sockets.push(open(&ws_url(&format!("http://{}", process.http)), &token).await);
    }
    sockets.push(open(&ws_url(&base), &token).await);
    let other = format!("near-{}@example.org", uuid::Uuid::now_v7().simple());
    for path in ["register", "login"] {
        let response = http
            .post(format!("{base}/api/v1/users/{path}"))
            .json(&json!({ "email": other, "password": "a long passphrase", "name": "Near" }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}");
        if path == "login" {
            let other_session: Value = response.json().await.unwrap();
            let other_token = other_session["access_token"].as_str().unwrap().to_owned();
            sockets.push(open(&ws_url(&base), &other_token).await);
        }
    }
    let mut stranger = sockets.pop().unwrap();
    let basket_count = || {
        let request = http
            .get(format!("{base}/api/v1/baskets/{me}"))
            .bearer_auth(&token)
            .send();
        async move {
            let body: Value = request.await.unwrap().json().await.unwrap();
            body["item_count"].as_i64().unwrap()
        }
    };
    let added = http
        .post(format!("{base}/api/v1/baskets/{me}/items"))
        .bearer_auth(&token)
        .json(&json!({ "product_id": product, "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);

    // The broker away: the checkout still confirms, paid and committed.
    broker.cut();
    let response = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "distributed-1")
        .json(&json!({ "card_number": CARD }))
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
    let payments: Value = http
        .get(format!(
            "{base}/api/v1/payments/order/{}",
            order["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        payments["items"][0]["status"], "captured",
        "payment on MariaDB: {payments}"
    );
    assert_eq!(stock().await, (on_hand - 2, 0));
    // The checkout took its lines out of the basket before it answered
    // (a gRPC call, no broker needed); order.confirmed, which mails the
    // confirmation, waits in the outbox.
    assert_eq!(basket_count().await, 0, "the basket is settled");
    let subjects = || {
        let mut subjects: Vec<String> = delivered(&maildir, &email)
            .iter()
            .filter_map(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .map(str::to_owned)
            })
            .collect();
        subjects.sort();
        subjects
    };
    let confirmation = format!("Order {} is confirmed", order["id"].as_str().unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !subjects().contains(&confirmation),
        "order.confirmed waits in the outbox: {:?}",
        subjects()
    );

    broker.restore();
    // Recommendation, a process of its own on MariaDB, learnt the product
    // from the catalog's events through the broker.
    let learnt = emporium_testkit::eventually(Duration::from_secs(30), || {
        let request = http
            .get(format!(
                "{base}/api/v1/recommendations?product_id={product}"
            ))
            .send();
        async move { (request.await.ok()?.status() == StatusCode::OK).then_some(()) }
    })
    .await;
    assert!(learnt.is_some(), "recommendation knows the product");
    // The storefront, a process of its own, shows the shop through the
    // gateway from the catalog's and inventory's gRPC faces.
    let home = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    assert!(home.text().await.unwrap().contains("Shop by category"));
    let page = http
        .get(format!("{base}/products/{product}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&sku), "the product page: {page}");
    // Signed in on the storefront's pages, which call the gateway over
    // HTTP with her token: her order is there.
    let mut browser = crate::storefront::Browser::at(&base);
    let (_, _, form) = browser.get("/signin").await;
    let csrf = crate::storefront::Browser::field(&form, "csrf");
    let (status, to, _) = browser
        .post(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", &email),
                ("password", "a long passphrase"),
                ("next", "/orders"),
            ],
        )
        .await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/orders"));
    let (_, _, orders) = browser.get("/orders").await;
    assert!(orders.contains(order["id"].as_str().unwrap()), "{orders}");

    // Through the real SMTP server: the welcome, and exactly one
    // confirmation, though two notification processes consume the queue.
    let order_id = order["id"].as_str().unwrap();
    // Each of her sockets heard the confirmation once, whichever process
    // consumed it: the other one's came through Redis.
    for socket in &mut sockets {
        let heard = messages_until(socket, "order.confirmed", order_id).await;
        let confirmations = heard
            .iter()
            .filter(|m| m["type"] == "order.confirmed")
            .count();
        assert_eq!(confirmations, 1, "{heard:?}");
        assert!(
            heard.iter().all(|m| m["data"]["user_id"] == me.as_str()),
            "{heard:?}"
        );
    }
    let quiet = tokio::time::timeout(
        Duration::from_millis(500),
        next_message(&mut stranger, Duration::from_secs(5)),
    )
    .await;
    assert!(quiet.is_err(), "another customer's socket heard: {quiet:?}");
    let mailed = emporium_testkit::eventually(Duration::from_secs(30), || async {
        (subjects().len() >= 2).then_some(())
    })
    .await;
    assert!(mailed.is_some(), "mailed: {:?}", subjects());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        subjects(),
        [
            format!("Order {order_id} is confirmed"),
            "Welcome to Emporium, Far".to_owned()
        ]
    );
    // Both records sent, in the customer's list through either replica.
    let mine: Value = http
        .get(format!("{base}/api/v1/notifications"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 2, "{mine}");
    assert!(
        mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "sent"),
        "{mine}"
    );
    // One trace from the gateway through ordering, its peers, the broker
    // (the event waited in the outbox while it was cut) and the consumers,
    // each process under its service's name; each one's lines carry it.
    let trace_id = one_trace(&receiver, &request_id).await;
    let mut logs = String::new();
    for process in served
        .iter()
        .map(|(_, p)| p)
        .chain(&notifiers)
        .chain([&gateway, &storefront])
    {
        logs.push_str(&process.logs.lock().unwrap());
    }
    lines_carry(&logs, &trace_id);
    for mut process in notifiers {
        let _ = process.child.start_kill();
    }
    let _ = storefront.child.start_kill();
    for (_, mut process) in served {
        let _ = process.child.start_kill();
    }
    let mut gateway = gateway;
    let _ = gateway.child.start_kill();
    for queue in ["inventory", "basket", "recommendation", "notification"] {
        emporium_testkit::delete_queues(&amqp, queue).await;
    }
}

/// The binary as an operator runs it (`emporium up`, JSON logs at debug
/// level, traces to an OTLP receiver), a checkout through the gateway:
/// it is one trace over every service it touched, each under its own name,
/// and the log lines of each service carry that trace's id. And, a
/// finding (`Checkout` and `PaymentDraft` printed the card number in their
/// `Debug`): of every line it wrote, none holds a card number, the demo
/// checkouts' included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_in_up_is_one_trace_its_lines_carry_it_and_none_holds_the_card() {
    let card = "5555 5555 5555 4444";
    let receiver = emporium_testkit::TraceReceiver::start().await;
    let up = crate::UpProcess::start(&[
        ("EMPORIUM__LOG__LEVEL", "debug"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ])
    .await;
    let base = up.base.clone();
    let token = up.token("customer", "ada").await;
    let http = reqwest::Client::new();
    let page: Value = http
        .get(format!("{base}/api/v1/products?per_page=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = page["items"][0]["id"].clone();
    let response = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "logged-checkout")
        .json(&json!({ "items": [{ "product_id": product }], "card_number": card }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
    let trace_id = one_trace(&receiver, &request_id).await;
    let mut logs = up.banner.clone();
    let (during, errors) = up.stop().await;
    lines_carry(&during, &trace_id);
    // The checkout's calls between services were logged, at debug level.
    assert!(
        during
            .lines()
            .any(|l| l.contains("\"level\":\"debug\"") && l.contains("\"target\":\"h2::")),
        "the checkout was logged at debug level"
    );
    logs.push_str(&during);
    logs.push_str(&errors);
    for number in [card, "5555555555554444", "4242424242424242"] {
        let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(number)).collect();
        assert!(leaks.is_empty(), "{number} logged: {leaks:#?}");
    }
}

/// The services one checkout passes through: the gateway, ordering, the
/// three it calls for the saga, and the consumers of its events.
const CHECKOUT_SERVICES: [&str; 7] = [
    "gateway",
    "ordering",
    "catalog",
    "inventory",
    "payment",
    "basket",
    "notification",
];

/// The trace of the request the gateway answered as `request_id`, once it
/// has arrived whole: spans of every service of [`CHECKOUT_SERVICES`],
/// each under its own service name, every span's parent in the trace but
/// the gateway's; ordering's gRPC client spans parent the callee's server
/// spans, and the `order.confirmed` a producer span publishes is consumed
/// under it by basket and by notification. Returns its id.
async fn one_trace(receiver: &emporium_testkit::TraceReceiver, request_id: &str) -> String {
    use emporium_testkit::ReceivedSpan;
    let whole = |spans: &[ReceivedSpan]| {
        CHECKOUT_SERVICES
            .iter()
            .all(|service| spans.iter().any(|s| s.service == *service))
            && spans.iter().all(|s| {
                s.parent_span_id.is_empty() || spans.iter().any(|p| p.span_id == s.parent_span_id)
            })
    };
    let found = emporium_testkit::eventually(Duration::from_secs(30), || async {
        let root = receiver.spans().into_iter().find(|s| {
            s.service == "gateway"
                && s.attributes.get("request_id").map(String::as_str) == Some(request_id)
        })?;
        let spans = receiver.trace(&root.trace_id);
        whole(&spans).then_some((root, spans))
    })
    .await;
    let Some((root, spans)) = found else {
        let seen: Vec<String> = receiver
            .spans()
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} <- {}",
                    s.service, s.name, s.span_id, s.parent_span_id
                )
            })
            .collect();
        panic!("no whole trace for request {request_id} within 30 s: {seen:#?}");
    };
    assert!(
        root.parent_span_id.is_empty(),
        "the gateway's span is the root: {root:?}"
    );
    for span in &spans {
        assert!(
            emporium::names().iter().any(|name| *name == span.service),
            "a span under no service of the shop: {span:?}"
        );
    }
    let parent_of = |span: &ReceivedSpan| spans.iter().find(|p| p.span_id == span.parent_span_id);
    for callee in ["catalog", "inventory", "payment"] {
        let called = spans.iter().any(|s| {
            s.service == callee
                && s.kind == 2
                && parent_of(s).is_some_and(|p| {
                    p.service == "ordering"
                        && p.kind == 3
                        && p.attributes.get("peer").map(String::as_str) == Some(callee)
                })
        });
        assert!(
            called,
            "ordering's call to {callee} is a client span over {callee}'s server span"
        );
    }
    for consumer in ["basket", "notification"] {
        let consumed = spans.iter().any(|s| {
            s.service == consumer
                && s.kind == 5
                && s.attributes.get("event_type").map(String::as_str) == Some("order.confirmed")
                && parent_of(s).is_some_and(|p| p.service == "ordering" && p.kind == 4)
        });
        assert!(
            consumed,
            "{consumer} consumed order.confirmed under ordering's publish span"
        );
    }
    let mut services: Vec<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    services.sort();
    services.dedup();
    eprintln!(
        "one trace {}: {} spans over {services:?}",
        root.trace_id,
        spans.len()
    );
    root.trace_id
}

/// Each service of [`CHECKOUT_SERVICES`] wrote log lines in the trace
/// `trace_id`: the lines of one checkout are found by its id.
fn lines_carry(logs: &str, trace_id: &str) {
    let mut services: Vec<String> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["trace_id"] == trace_id)
        .filter_map(|line| line["service"].as_str().map(str::to_owned))
        .collect();
    services.sort();
    services.dedup();
    for service in CHECKOUT_SERVICES {
        assert!(
            services.iter().any(|s| s == service),
            "no line of {service} in trace {trace_id}; lines from {services:?}"
        );
    }
}

/// Every event a test subscription hears.
#[derive(Default)]
struct Heard(tokio::sync::Mutex<Vec<emporium_platform::bus::Envelope>>);

impl Heard {
    /// The types of the events about `subject`, in the order heard.
    async fn kinds_of(&self, subject: &str) -> Vec<String> {
        self.0
            .lock()
            .await
            .iter()
            .filter(|e| e.subject.ends_with(subject))
            .map(|e| e.kind.clone())
            .collect()
    }
}

#[async_trait::async_trait]
impl emporium_platform::bus::Handler for Heard {
    async fn handle(&self, envelope: &emporium_platform::bus::Envelope) -> anyhow::Result<()> {
        self.0.lock().await.push(envelope.clone());
        Ok(())
    }
}
