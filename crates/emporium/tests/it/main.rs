//! The shop end to end, started as `emporium up` starts it (embedded stores,
//! demo catalog, development key), driven through the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use emporium_platform::auth::{Issuer, Role};
use emporium_platform::config::Settings;
use emporium_testkit::listening_addr;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod admin_catalog;
mod admin_ops;
mod admin_people;
mod browser;
mod chaos;
mod checkout;
mod commerce;
mod faults;
mod live;
mod load;
mod notify;
mod recommend;
mod signin;
mod sockets;
mod storefront;
mod trust;

struct TestShop {
    shop: Option<emporium_platform::service::Running>,
    issuer: std::sync::Arc<Issuer>,
    notices: Vec<String>,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

fn shop_settings(dir: &std::path::Path) -> Settings {
    Settings::ephemeral(dir)
}

impl TestShop {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_with(shop_settings(dir.path()), dir).await
    }

    async fn start_with(settings: Settings, dir: tempfile::TempDir) -> Self {
        let emporium::Up {
            running: shop,
            issuer,
            notices,
        } = emporium::up(settings, true).await.expect("shop starts");
        let base = shop.url("gateway").unwrap();
        emporium_testkit::wait_ready(&base).await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            shop: Some(shop),
            issuer,
            notices,
            http,
            base,
            _dir: dir,
        }
    }

    fn token(&self, role: Role) -> String {
        self.issuer
            .mint("tester", role, Duration::from_secs(300))
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A channel to `callee`'s gRPC port whose calls carry a token of
    /// service `caller` for it.
    fn grpc_as(&self, caller: &str, callee: &str) -> ServiceChannel {
        let addr = self
            .shop
            .as_ref()
            .unwrap()
            .get(callee)
            .unwrap()
            .grpc_addr
            .unwrap();
        let channel =
            emporium_platform::grpc::channel(&format!("http://{addr}"), Duration::from_secs(5))
                .unwrap();
        let token = self
            .issuer
            .mint_service(caller, callee, Duration::from_secs(300))
            .unwrap();
        tonic::service::interceptor::InterceptedService::new(
            channel,
            emporium_platform::grpc::Outgoing::bearer(&token).unwrap(),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, body) = self.call(method, path, token, body).await;
        (status, body)
    }

    /// Status, content type and body of one request through the gateway.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, String, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, kind, response.json().await.unwrap_or(Value::Null))
    }

    async fn total(&self) -> u64 {
        self.get("/api/v1/products?per_page=1").await.1["total"]
            .as_u64()
            .unwrap()
    }

    /// The Prometheus text the shop's process exports.
    async fn metrics(&self) -> String {
        let url = self.shop.as_ref().unwrap().metrics_url().unwrap();
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    async fn stop(mut self) {
        if let Some(shop) = self.shop.take() {
            shop.stop(Duration::from_secs(5)).await;
        }
    }
}

/// The ids of a page of products.
fn ids_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

fn product_body(sku: &str) -> Value {
    json!({ "sku": sku, "name": "Test Lantern", "description": "Bright", "price": { "amount": "25.00", "currency": "USD" }, "category": "outdoor" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_catalog_lists_filters_searches_and_pages_through_the_gateway() {
    let shop = TestShop::start().await;
    let (status, page) = shop.get("/api/v1/products?per_page=15").await;
    assert_eq!(status, StatusCode::OK);
    let total = page["total"].as_u64().unwrap();
    assert!(total >= 36, "dozens of demo products, got {total}");
    assert_eq!(page["items"].as_array().unwrap().len(), 15);
    assert_eq!(
        (page["page"].as_u64(), page["per_page"].as_u64()),
        (Some(1), Some(15))
    );

    // Paging visits every product once.
    let mut seen = std::collections::HashSet::new();
    for n in 1..=total.div_ceil(15) {
        let (_, page) = shop
            .get(&format!("/api/v1/products?per_page=15&page={n}&sort=name"))
            .await;
        for item in page["items"].as_array().unwrap() {
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_owned()),
                "no product on two pages"
            );
        }
    }
    assert_eq!(seen.len() as u64, total);

    let (_, categories) = shop.get("/api/v1/categories").await;
    let categories = categories["items"].as_array().unwrap();
    assert!(categories.len() >= 5);
    let books = categories.iter().find(|c| c["slug"] == "books").unwrap();
    let (_, in_books) = shop
        .get("/api/v1/products?category=books&per_page=100")
        .await;
    assert_eq!(in_books["total"], books["product_count"]);
    assert!(
        in_books["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["category"] == "books")
    );

    let (_, found) = shop.get("/api/v1/products?q=coffee").await;
    let found = found["items"].as_array().unwrap();
    assert!(!found.is_empty());
    for product in found {
        let text = format!("{} {}", product["name"], product["description"]).to_lowercase();
        assert!(text.contains("coffee"), "{text}");
    }

    let (_, priced) = shop
        .get("/api/v1/products?min_price=20&max_price=30.00&sort=price&per_page=100")
        .await;
    let prices: Vec<f64> = priced["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["price"]["amount"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(!prices.is_empty());
    assert!(
        prices.iter().all(|p| (20.0..=30.0).contains(p)),
        "{prices:?}"
    );
    assert!(
        prices.windows(2).all(|w| w[0] <= w[1]),
        "sorted by price: {prices:?}"
    );

    let first = &page["items"][0];
    let id = first["id"].as_str().unwrap();
    let (status, product) = shop.get(&format!("/api/v1/products/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&product, first);
    let image_url = product["images"][0]["url"].as_str().unwrap();
    let image = shop.http.get(shop.url(image_url)).send().await.unwrap();
    assert_eq!(image.status(), StatusCode::OK);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert!(image.bytes().await.unwrap().starts_with(b"\x89PNG"));
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_updates_uploads_and_deletes_through_the_gateway() {
    let shop = TestShop::start().await;
    let admin = shop.token(Role::Admin);
    let before = shop.total().await;
    let response = shop
        .http
        .post(shop.url("/api/v1/products"))
        .bearer_auth(&admin)
        .json(&product_body("lamp-9"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/products/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(created["sku"], "LAMP-9");
    assert_eq!(shop.total().await, before + 1);

    let mut changed = product_body("lamp-9");
    changed["name"] = json!("Storm Lantern");
    changed["price"] = json!({ "amount": "27.5", "currency": "USD" });
    let (status, updated) = shop
        .send(reqwest::Method::PUT, &location, Some(&admin), Some(changed))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            updated["name"].as_str(),
            updated["price"]["amount"].as_str()
        ),
        (Some("Storm Lantern"), Some("27.50"))
    );
    assert_eq!(
        shop.get(&location).await.1["name"],
        "Storm Lantern",
        "reads see the write at once"
    );
    let (_, found) = shop.get("/api/v1/products?q=storm%20lantern").await;
    assert_eq!(found["total"], 1);

    let png = emporium_catalog::seed::picture(9);
    let response = shop
        .http
        .post(shop.url(&format!("{location}/images")))
        .bearer_auth(&admin)
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let with_image: Value = response.json().await.unwrap();
    let image_url = with_image["images"][0]["url"].as_str().unwrap();
    let fetched = shop
        .http
        .get(shop.url(image_url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(fetched, png);

    let (status, _) = shop
        .send(reqwest::Method::DELETE, &location, Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, problem) = shop.get(&location).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["status"], 404);
    assert_eq!(shop.total().await, before);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_an_admin_token_are_refused_and_change_nothing() {
    let shop = TestShop::start().await;
    let customer = shop.token(Role::Customer);
    let stranger = emporium_testkit::issuer()
        .mint("x", Role::Admin, Duration::from_secs(60))
        .unwrap();
    let (_, page) = shop.get("/api/v1/products?per_page=1").await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let before = shop.get(&format!("/api/v1/products/{id}")).await.1;
    let total = shop.total().await;
    let writes = [
        (
            reqwest::Method::POST,
            "/api/v1/products".to_owned(),
            Some(product_body("nope-1")),
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/products/{id}"),
            Some(product_body("nope-1")),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/products/{id}"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/products/{id}/images"),
            Some(json!("x")),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/categories".to_owned(),
            Some(json!({ "slug": "new", "name": "New" })),
        ),
    ];
    for (method, path, body) in writes {
        for (token, expected) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("garbage"), StatusCode::UNAUTHORIZED),
            (Some(stranger.as_str()), StatusCode::UNAUTHORIZED),
            (Some(customer.as_str()), StatusCode::FORBIDDEN),
        ] {
            let (status, problem) = shop.send(method.clone(), &path, token, body.clone()).await;
            assert_eq!(status, expected, "{method} {path} with {token:?}");
            assert_eq!(problem["status"], expected.as_u16());
        }
    }
    assert_eq!(shop.total().await, total);
    assert_eq!(shop.get(&format!("/api/v1/products/{id}")).await.1, before);
    shop.stop().await;
}

/// Every bad request gets a problem+json 4xx, and the catalog is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_problem_json_and_changes_nothing() {
    let shop = TestShop::start().await;
    let admin = shop.token(Role::Admin);
    let (_, page) = shop.get("/api/v1/products?per_page=1&sort=name").await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let product_path = format!("/api/v1/products/{id}");
    let before = shop.get(&product_path).await.1;
    let total = shop.total().await;
    let with_price = |amount: Value, currency: &str| {
        let mut body = product_body("bad-1");
        body["price"] = json!({ "amount": amount, "currency": currency });
        body.to_string()
    };
    let huge = format!(
        "{{\"sku\":\"big\",\"name\":\"{}\"}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let json_ct = "application/json";
    let cases: Vec<(&str, String, &str, String, u16)> = vec![
        ("POST", "/api/v1/products".into(), json_ct, "{not json".into(), 400),
        ("POST", "/api/v1/products".into(), json_ct, String::new(), 400),
        ("POST", "/api/v1/products".into(), json_ct, "[]".into(), 422),
        ("POST", "/api/v1/products".into(), json_ct, "{}".into(), 422),
        ("POST", "/api/v1/products".into(), json_ct, with_price(json!(19.99), "USD"), 422),
        ("POST", "/api/v1/products".into(), json_ct, with_price(json!("-5.00"), "USD"), 422),
        ("POST", "/api/v1/products".into(), json_ct, with_price(json!("0"), "USD"), 422),
        ("POST", "/api/v1/products".into(), json_ct, with_price(json!("999999999999999999999999"), "USD"), 422),
        ("POST", "/api/v1/products".into(), json_ct, with_price(json!("1e9"), "USD"), 422),
        ("POST", "/api/v1/products".into(), json_ct, with_price(json!("10.00"), "XYZ"), 422),
        ("POST", "/api/v1/products".into(), json_ct, with_price(json!("10.001"), "USD"), 422),
        ("POST", "/api/v1/products".into(), json_ct, json!({ "sku": "'; DROP TABLE products; --", "name": "x", "price": { "amount": "1.00", "currency": "USD" }, "category": "books" }).to_string(), 422),
        ("POST", "/api/v1/products".into(), json_ct, json!({ "sku": "ok-2", "name": "x", "price": { "amount": "1.00", "currency": "USD" }, "category": "<script>" }).to_string(), 422),
        ("POST", "/api/v1/products".into(), json_ct, json!({ "sku": "ok-3", "name": "", "price": { "amount": "1.00", "currency": "USD" }, "category": "books" }).to_string(), 422),
        ("POST", "/api/v1/products".into(), json_ct, json!({ "sku": "ok-4", "name": "x", "price": { "amount": "1.00", "currency": "USD" }, "category": "books", "admin": true }).to_string(), 422),
        ("POST", "/api/v1/products".into(), json_ct, json!({ "sku": "ok-5", "name": "x", "price": { "amount": "1.00", "currency": "USD" }, "category": "no-such" }).to_string(), 422),
        ("POST", "/api/v1/products".into(), json_ct, json!({ "sku": 5, "name": "x", "price": { "amount": "1.00", "currency": "USD" }, "category": "books" }).to_string(), 422),
        ("POST", "/api/v1/products".into(), "text/plain", product_body("ok-6").to_string(), 415),
        ("POST", "/api/v1/products".into(), json_ct, huge.clone(), 413),
        ("PUT", product_path.clone(), json_ct, with_price(json!("-1"), "USD"), 422),
        ("PUT", product_path.clone(), json_ct, "null".into(), 422),
        ("PUT", "/api/v1/products/not-a-uuid".into(), json_ct, product_body("ok-7").to_string(), 400),
        ("PUT", format!("/api/v1/products/{}", uuid::Uuid::now_v7()), json_ct, product_body("ok-8").to_string(), 404),
        ("DELETE", "/api/v1/products/1%20OR%201=1".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products/%27%3B%20DROP%20TABLE%20products".into(), json_ct, String::new(), 400),
        ("GET", format!("/api/v1/products/{}", uuid::Uuid::now_v7()), json_ct, String::new(), 404),
        ("GET", "/api/v1/products?per_page=1000".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products?per_page=0".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products?page=0".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products?page=abc".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products?page=99999999999999999999".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products?sort=id;drop".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products?min_price=-1".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products?min_price=abc".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products?min_price=30&max_price=10".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products?currency=ZZZ&min_price=1".into(), json_ct, String::new(), 400),
        ("GET", "/api/v1/products?category=%27%20OR%201%3D1".into(), json_ct, String::new(), 400),
        ("GET", format!("/api/v1/products?q={}", "a".repeat(500)), json_ct, String::new(), 400),
        ("POST", format!("{product_path}/images"), "image/png", "<svg onload=alert(1)>".into(), 415),
        ("POST", format!("{product_path}/images"), "image/png", String::new(), 400),
        ("POST", format!("{product_path}/images"), "image/png", "\u{89}".repeat(6 * 1024 * 1024), 413),
        ("GET", format!("{product_path}/images/..%2F..%2Fetc%2Fpasswd"), json_ct, String::new(), 404),
        ("POST", "/api/v1/categories".into(), json_ct, json!({ "slug": "Bad Slug", "name": "x" }).to_string(), 422),
        ("POST", "/api/v1/categories".into(), json_ct, json!({ "slug": "books", "name": "Again" }).to_string(), 409),
        ("GET", "/api/v1/nowhere".into(), json_ct, String::new(), 404),
        ("PATCH", product_path.clone(), json_ct, "{}".into(), 405),
    ];
    for (method, path, content_type, body, expected) in cases {
        let response = shop
            .http
            .request(method.parse().unwrap(), shop.url(&path))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let media = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        assert_eq!(
            status,
            expected,
            "{method} {} -> {text}",
            &path[..path.len().min(80)]
        );
        assert_eq!(
            media.as_deref(),
            Some("application/problem+json"),
            "{method} {path}"
        );
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["status"], expected);
        assert!(
            problem["type"].is_string()
                && problem["title"].is_string()
                && problem["detail"].is_string(),
            "{problem}"
        );
    }
    assert_eq!(shop.total().await, total, "no product was added or removed");
    assert_eq!(
        shop.get(&product_path).await.1,
        before,
        "the product is unchanged"
    );

    // Text that looks like SQL or script is data, stored and returned as sent.
    let mut body = product_body("odd-1");
    body["name"] = json!("Robert'); DROP TABLE products;-- <script>alert(1)</script>");
    let (status, created) = shop
        .send(
            reqwest::Method::POST,
            "/api/v1/products",
            Some(&admin),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["name"], body["name"]);
    assert_eq!(shop.total().await, total + 1);
    shop.stop().await;
}

/// Minimal Prometheus text parser: every line is a comment or
/// `name{labels} value`.
type Labels = Vec<(String, String)>;

fn parse_prometheus(text: &str) -> Vec<(String, Labels, f64)> {
    let mut samples = vec![];
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<_> = comment.split_whitespace().collect();
            assert!(
                matches!(words.first(), Some(&"TYPE") | Some(&"HELP")),
                "bad comment: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let labels = inner
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label: {line}"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, vec![]),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

/// Every metric the shop declares: the platform's and each service's.
fn declared_metrics() -> Vec<emporium_platform::telemetry::Metric> {
    [
        emporium_platform::telemetry::PLATFORM_METRICS,
        emporium_identity::METRICS,
        emporium_catalog::METRICS,
        emporium_basket::METRICS,
        emporium_inventory::METRICS,
        emporium_ordering::METRICS,
        emporium_payment::METRICS,
        emporium_notification::METRICS,
        emporium_recommendation::METRICS,
        emporium_storefront::METRICS,
        emporium_gateway::METRICS,
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_label_routes_by_template() {
    let shop = TestShop::start().await;
    let running = shop.shop.as_ref().unwrap();
    // Before any request: every declared metric with known labels is there
    // and described, at zero unless the demo data's seeding counted.
    let first = shop.metrics().await;
    for metric in declared_metrics() {
        if metric.zeros.is_empty() {
            continue;
        }
        let kind = format!("{:?}", metric.kind).to_lowercase();
        assert!(
            first.contains(&format!("# HELP {} {}", metric.name, metric.help)),
            "{}: no HELP line",
            metric.name
        );
        assert!(
            first.contains(&format!("# TYPE {} {kind}", metric.name)),
            "{}: no TYPE line",
            metric.name
        );
    }
    for status in emporium_ordering::domain::Status::ALL.map(|s| s.as_str()) {
        assert!(
            first.contains(&format!("orders_by_status{{status=\"{status}\"}}")),
            "orders_by_status {status}"
        );
    }
    for status in ["completed", "failed", "refunded"] {
        assert!(
            first.contains(&format!(
                "payments_processed_total{{status=\"{status}\",method=\"card\"}} "
            )),
            "payments_processed_total {status}: {first}"
        );
    }

    let (_, page) = shop.get("/api/v1/products?per_page=3").await;
    for item in page["items"].as_array().unwrap() {
        shop.get(&format!(
            "/api/v1/products/{}",
            item["id"].as_str().unwrap()
        ))
        .await;
    }
    shop.get("/api/v1/products/not-a-uuid").await;
    // One /metrics for the process, at the gateway's port: the catalog's
    // says where, so that no scrape counts the process twice.
    let catalog = running.get("catalog").unwrap().http_addr;
    let elsewhere = shop
        .http
        .get(format!("http://{catalog}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
    assert!(
        elsewhere
            .text()
            .await
            .unwrap()
            .contains("at gateway's /metrics")
    );
    assert_eq!(
        running.metrics_url().unwrap(),
        format!("{}/metrics", shop.base)
    );
    let text = shop.metrics().await;
    let samples = parse_prometheus(&text);
    let requests: Vec<_> = samples
        .iter()
        .filter(|(n, _, _)| n == "http_requests_total")
        .collect();
    let label = |labels: &Labels, key: &str| {
        labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    for service in ["gateway", "catalog"] {
        let by_template: f64 = requests
            .iter()
            .filter(|(_, l, _)| {
                label(l, "service").as_deref() == Some(service)
                    && label(l, "endpoint").as_deref() == Some("/api/v1/products/{id}")
                    && label(l, "status").as_deref() == Some("200")
            })
            .map(|(_, _, v)| v)
            .sum();
        assert!(by_template >= 3.0, "{service}: {requests:?}");
    }
    assert!(
        requests
            .iter()
            .all(|(_, l, _)| !label(l, "endpoint").unwrap().contains("-7")),
        "no raw ids as labels"
    );
    assert!(
        samples
            .iter()
            .any(|(n, l, _)| n == "http_request_duration_seconds_bucket"
                && label(l, "le").as_deref() == Some("+Inf"))
    );
    // Prometheus's own linter finds nothing to say.
    if let Some(promtool) = emporium_testkit::server_url("EMPORIUM_TEST_PROMTOOL") {
        let mut check = tokio::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use tokio::io::AsyncWriteExt;
        let mut stdin = check.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
        drop(stdin);
        let out = check.wait_with_output().await.unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}"
        );
    }
    shop.stop().await;
}

/// Every metric a service records is declared, so that it has HELP and
/// TYPE lines: read off the sources, as a reviewer would.
#[test]
fn every_recorded_metric_is_declared() {
    let declared: std::collections::HashSet<&str> =
        declared_metrics().iter().map(|m| m.name).collect();
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut recorded = vec![];
    let mut stack = vec![crates];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if name != "tests" && name != "target" {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for macro_call in ["counter!(", "gauge!(", "histogram!("] {
                    for (at, _) in text.match_indices(macro_call) {
                        let rest = text[at + macro_call.len()..].trim_start();
                        if let Some(quoted) = rest.strip_prefix('"') {
                            let metric = &quoted[..quoted.find('"').unwrap()];
                            recorded.push((metric.to_owned(), path.display().to_string()));
                        }
                    }
                }
            }
        }
    }
    assert!(recorded.len() > 30, "the sources were read: {recorded:?}");
    let undeclared: Vec<_> = recorded
        .iter()
        .filter(|(metric, _)| !declared.contains(metric.as_str()))
        .collect();
    assert!(
        undeclared.is_empty(),
        "recorded, not declared: {undeclared:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_one_openapi_document_for_its_routes() {
    let shop = TestShop::start().await;
    let (status, doc) = shop.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/products",
        "/api/v1/products/{id}",
        "/api/v1/products/{id}/images",
        "/api/v1/categories",
    ] {
        assert!(paths.contains_key(path), "{path} documented");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    // Every documented public GET without path parameters answers; the
    // others ask for a token; one whose query names a required parameter
    // refuses to answer without it.
    for (path, item) in paths {
        let Some(get) = item.get("get") else { continue };
        if path.contains('{') {
            continue;
        }
        let required = get["parameters"]
            .as_array()
            .is_some_and(|all| all.iter().any(|p| p["required"] == true));
        let expected = if get.get("security").is_some() {
            StatusCode::UNAUTHORIZED
        } else if required {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        assert_eq!(shop.get(path).await.0, expected, "{path}");
    }
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_ids_and_trace_context() {
    let shop = TestShop::start().await;
    let response = shop
        .http
        .get(shop.url("/api/v1/categories"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-123");
    let response = shop
        .http
        .get(shop.url("/api/v1/categories"))
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(generated).is_ok(),
        "a fresh id is a UUID: {generated}"
    );
    let response = shop
        .http
        .get(shop.url("/api/v1/products?per_page=1"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reads_in_batches_and_guards_writes() {
    use emporium_proto::catalog::v1::catalog_client::CatalogClient;
    use emporium_proto::catalog::v1::{
        CreateProductRequest, GetProductRequest, GetProductsRequest, ProductFields,
    };
    use emporium_proto::common::v1::Money;
    let shop = TestShop::start().await;
    let grpc = shop
        .shop
        .as_ref()
        .unwrap()
        .get("catalog")
        .unwrap()
        .grpc_addr
        .unwrap();
    let channel =
        emporium_platform::grpc::channel(&format!("http://{grpc}"), Duration::from_secs(5))
            .unwrap();
    let mut client = CatalogClient::new(shop.grpc_as("basket", "catalog"));
    let (_, page) = shop.get("/api/v1/products?per_page=2").await;
    let ids = ids_of(&page);
    let one = client
        .get_product(GetProductRequest { id: ids[0].clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.id, ids[0]);
    assert!(one.price.unwrap().amount_minor > 0);
    let missing = uuid::Uuid::now_v7().to_string();
    let batch = client
        .get_products(GetProductsRequest {
            ids: vec![ids[0].clone(), missing.clone(), ids[1].clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        batch
            .products
            .iter()
            .map(|p| p.id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(batch.missing, vec![missing]);
    let status = client
        .get_product(GetProductRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let fields = ProductFields {
        sku: "grpc-1".into(),
        name: "Wire Basket".into(),
        description: String::new(),
        price: Some(Money {
            amount_minor: 1250,
            currency: "USD".into(),
        }),
        category: "home".into(),
    };
    // The basket reads; writes are the storefront's, for an admin.
    let request = for_user(
        CreateProductRequest {
            fields: Some(fields.clone()),
        },
        &shop.token(Role::Admin),
    );
    assert_eq!(
        client.create_product(request).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let mut client = CatalogClient::new(shop.grpc_as("storefront", "catalog"));
    let status = client
        .create_product(CreateProductRequest {
            fields: Some(fields.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let request = for_user(
        CreateProductRequest {
            fields: Some(fields.clone()),
        },
        &shop.token(Role::Customer),
    );
    assert_eq!(
        client.create_product(request).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let request = for_user(
        CreateProductRequest {
            fields: Some(ProductFields {
                price: Some(Money {
                    amount_minor: -1,
                    currency: "USD".into(),
                }),
                ..fields.clone()
            }),
        },
        &shop.token(Role::Admin),
    );
    assert_eq!(
        client.create_product(request).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    let request = for_user(
        CreateProductRequest {
            fields: Some(fields),
        },
        &shop.token(Role::Admin),
    );
    let created = client.create_product(request).await.unwrap().into_inner();
    assert_eq!(
        (created.sku.as_str(), created.price.unwrap().amount_minor),
        ("GRPC-1", 1250)
    );
    assert_eq!(
        shop.get(&format!("/api/v1/products/{}", created.id))
            .await
            .1["price"]["amount"],
        "12.50"
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "emporium.catalog.v1.Catalog".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    shop.stop().await;
}

/// Every service behind the gateway.
fn backends() -> Vec<emporium_platform::service::Definition> {
    // The storefront is a client of the gateway, which these tests start
    // apart; they serve the API alone.
    emporium::services()
        .into_iter()
        .filter(|d| !matches!(d.name, "gateway" | "storefront"))
        .collect()
}

/// Points a gateway at every service of `running`.
fn point_at(
    gateway: &mut emporium_gateway::GatewaySettings,
    running: &emporium_platform::service::Running,
) {
    for service in running.services.iter() {
        gateway.upstreams.insert(
            service.name.into(),
            vec![format!("http://{}", service.http_addr)],
        );
    }
}

/// Asserts that a counter grew by `expected` since this test's baseline
/// (`grew`). Under nextest each test runs in a process of its own, so the
/// recorder is this test's and the growth is exact; under `cargo test`
/// every test of the binary counts into one recorder at once, and the
/// growth is at least this test's.
fn assert_counted(grew: f64, expected: f64, what: &str) {
    if std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test") {
        assert_eq!(grew, expected, "{what}");
    } else {
        assert!(grew >= expected, "{what}: {grew} < {expected}");
    }
}

type ServiceChannel = tonic::service::interceptor::InterceptedService<
    tonic::transport::Channel,
    emporium_platform::grpc::Outgoing,
>;

/// A settings' secret for `service`, known to the identity of a process
/// that runs elsewhere, as a deployment would set it.
fn test_secret(service: &str) -> emporium_platform::config::Secret {
    emporium_platform::config::Secret::new(format!("test secret of {service}"))
}

/// Settings of a process that runs identity, knowing `callers` that run
/// in other processes by their secrets.
fn knows_callers(settings: &mut Settings, callers: &[&str]) {
    for caller in callers {
        settings
            .auth
            .service_secrets
            .insert((*caller).to_owned(), test_secret(caller));
    }
}

/// `service`, alone in its process, asks `identity`'s process (which
/// [`knows_callers`] it) for its tokens.
fn asks_identity_of(
    settings: &mut Settings,
    service: &str,
    identity: &emporium_platform::service::Running,
) {
    let addr = identity.get("identity").unwrap().grpc_addr.unwrap();
    settings.peers.insert("identity".into(), addr.to_string());
    settings
        .auth
        .service_secrets
        .insert(service.to_owned(), test_secret(service));
}

/// `message` on behalf of a user: the caller's own credential goes in
/// `authorization`, the user's token beside it.
fn for_user<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "user-authorization",
        format!("Bearer {token}").parse().unwrap(),
    );
    request
}

fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A dead replica is skipped and taken out of rotation; with none alive the
/// service's routes answer 503 naming it, and the gateway's readiness says
/// it is degraded, with the service down, without leaving rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_routes_around_a_dead_replica() {
    use emporium_gateway::GatewaySettings;
    // A catalog on its own, and a port that refuses connections.
    let catalog_dir = tempfile::tempdir().unwrap();
    let catalog = emporium_testkit::spawn(shop_settings(catalog_dir.path()), &backends()).await;
    let real_addr = catalog.get("catalog").unwrap().http_addr;
    let dead = emporium_testkit::RefusingPort::new();
    let gateway_alone = |replicas: Vec<String>| {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = shop_settings(dir.path());
        settings.update_section::<GatewaySettings>(|g| {
            point_at(g, &catalog);
            g.upstreams.insert("catalog".into(), replicas);
        });
        (settings, dir)
    };
    let (settings, dir) = gateway_alone(vec![
        format!("http://{}", dead.addr),
        format!("http://{real_addr}"),
    ]);
    let gateway = emporium::start(settings, &["gateway".to_owned()])
        .await
        .unwrap();
    let base = gateway.url("gateway").unwrap();
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let status = http
            .get(format!("{base}/api/v1/categories"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
    }
    let status = http
        .get(format!("{base}/ready"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    gateway.stop(Duration::from_secs(5)).await;
    drop(dir);

    let (settings, dir) = gateway_alone(vec![format!("http://{}", dead.addr)]);
    let gateway = emporium::start(settings, &["gateway".to_owned()])
        .await
        .unwrap();
    let base = gateway.url("gateway").unwrap();
    let get = |path: &str| {
        let request = http.get(format!("{base}{path}")).send();
        async move {
            let response = request.await.unwrap();
            (
                response.status(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, problem) = get("/api/v1/products").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem["dependency"], "catalog");
    // Still in rotation for the other services, and saying what is down.
    let (status, ready) = get("/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["catalog"], "down", "{ready}");
    let (status, _) = get("/api/v1/users/me").await;
    assert_ne!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "identity is served"
    );
    gateway.stop(Duration::from_secs(5)).await;
    catalog.stop(Duration::from_secs(5)).await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_shop_keeps_its_data_and_does_not_seed_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let shop = TestShop::start_with(shop_settings(&path), dir).await;
    let admin = shop.token(Role::Admin);
    let (status, _) = shop
        .send(
            reqwest::Method::POST,
            "/api/v1/products",
            Some(&admin),
            Some(product_body("keep-1")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let total = shop.total().await;
    let TestShop {
        shop: running,
        _dir: dir,
        ..
    } = shop;
    running.unwrap().stop(Duration::from_secs(5)).await;

    let again = TestShop::start_with(shop_settings(&path), dir).await;
    assert_eq!(again.total().await, total);
    let (_, found) = again.get("/api/v1/products?q=lantern").await;
    assert_eq!(found["total"], 1);
    // The same development key still signs valid tokens.
    let (status, _) = again
        .send(
            reqwest::Method::DELETE,
            &format!(
                "/api/v1/products/{}",
                found["items"][0]["id"].as_str().unwrap()
            ),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(dir.path());
    settings.http.cors_origins = vec!["http://shop.example".into()];
    let shop = TestShop::start_with(settings, dir).await;
    let preflight = |origin: &'static str| {
        shop.http
            .request(reqwest::Method::OPTIONS, shop.url("/api/v1/products"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("http://shop.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://shop.example"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let refused = preflight("http://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let response = shop
        .http
        .get(shop.url("/api/v1/categories"))
        .header("origin", "http://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://shop.example"
    );
    shop.stop().await;
}

/// The binary as an operator runs it: `emporium serve catalog` exports its
/// traces by OTLP when told where, answers, and stops cleanly on SIGINT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_traces_by_otlp_and_stops_on_sigint() {
    use std::sync::{Arc, Mutex};
    // A collector that records what is posted to it.
    let posts: Arc<Mutex<Vec<(String, String, usize)>>> = Arc::default();
    let recorded = posts.clone();
    let collector = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let recorded = recorded.clone();
        async move {
            let path = request.uri().path().to_owned();
            let kind = request
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            let body = axum::body::to_bytes(request.into_body(), 1 << 24)
                .await
                .unwrap_or_default();
            recorded.lock().unwrap().push((path, kind, body.len()));
            ""
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let dir = tempfile::tempdir().unwrap();
    // Port 0: the service reports where it listens; no port is guessed.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["serve", "catalog", "--data-dir"])
        .arg(dir.path())
        .env("PORT", "0")
        .env("GRPC_PORT", "0")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let (http_addr, mut logs) = listening_addr(&mut stdout, "catalog").await;
    let base = format!("http://{http_addr}");
    emporium_testkit::wait_ready(&base).await;
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{base}/api/v1/products"))
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    interrupt_and_wait(&mut child).await;
    let posts = posts.lock().unwrap().clone();
    assert!(
        posts.iter().any(|(path, kind, len)| path == "/v1/traces"
            && kind == "application/x-protobuf"
            && *len > 0),
        "spans were exported: {posts:?}"
    );
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut logs)
        .await
        .unwrap();
    assert!(
        logs.contains("service listening") && logs.contains("shutdown requested"),
        "{logs}"
    );
    for line in logs.lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|_| panic!("a log line that is not JSON: {line}"));
        assert!(
            value["timestamp"].is_string()
                && value["level"].is_string()
                && value["message"].is_string()
                && value["service"] == "catalog",
            "{line}"
        );
    }
}

/// Sends SIGINT and expects a clean exit within 30 s.
async fn interrupt_and_wait(child: &mut tokio::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops within 30 s")
        .unwrap();
    assert!(exit.success(), "clean exit: {exit:?}");
}

/// `emporium up` in a process of its own, on free ports, logging JSON: for
/// what belongs to a process (its metrics registry, its trace exporter),
/// which a shop started in this test binary shares with every other test's
/// under `cargo test`.
struct UpProcess {
    child: tokio::process::Child,
    /// The gateway's address.
    base: String,
    /// Every line up to the banner's last.
    banner: String,
    rest: tokio::task::JoinHandle<String>,
    errors: tokio::task::JoinHandle<String>,
    dir: tempfile::TempDir,
}

impl UpProcess {
    /// Started with `env` besides the free ports; returns once the banner
    /// is written (up, seeded, the demo's past orders checked out).
    async fn start(env: &[(&str, &str)]) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let dir = tempfile::tempdir().unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"));
        command
            .args(["up", "--data-dir"])
            .arg(dir.path())
            .args(["--log-format", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for service in emporium::names() {
            let section = service.to_uppercase();
            command.env(format!("EMPORIUM__{section}__HTTP_ADDR"), "127.0.0.1:0");
            // The gateway and the storefront have no gRPC face.
            if !matches!(service, "gateway" | "storefront") {
                command.env(format!("EMPORIUM__{section}__GRPC_ADDR"), "127.0.0.1:0");
            }
        }
        // The gateway's readiness and metrics listener, and no limit on
        // one address's requests: the tests come from one.
        command
            .env("EMPORIUM__GATEWAY__INTERNAL_ADDR", "127.0.0.1:0")
            .env("EMPORIUM__GATEWAY__AUTH_PER_ADDRESS", "0")
            .env("EMPORIUM__GATEWAY__API_PER_ADDRESS", "0")
            .env("EMPORIUM__GATEWAY__API_PER_USER", "0");
        command.envs(env.iter().copied());
        let mut child = command.spawn().unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut stderr = child.stderr.take().unwrap();
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let mut banner = String::new();
        let mut gateway = None;
        let up = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                let mut line = String::new();
                if stdout.read_line(&mut line).await.unwrap() == 0 {
                    panic!("the shop ended before it was up: {banner}");
                }
                banner.push_str(&line);
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && value["message"] == "service listening"
                    && value["service"] == "gateway"
                {
                    gateway = value["http"].as_str().map(str::to_owned);
                }
                if line.starts_with("Press Ctrl-C to stop") {
                    break;
                }
            }
        })
        .await;
        assert!(up.is_ok(), "the shop is up within 120 s: {banner}");
        let rest = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text).await;
            text
        });
        let base = format!(
            "http://{}",
            gateway.expect("the gateway said where it listens")
        );
        Self {
            child,
            base,
            banner,
            rest,
            errors,
            dir,
        }
    }

    /// The two words after `label` on the banner's line for it
    /// (`admin sign-in a@b / secret`: the email and the password).
    fn credentials(&self, label: &str) -> (String, String) {
        let line = self
            .banner
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in the banner: {}", self.banner));
        match line[label.len()..].split_whitespace().collect::<Vec<_>>()[..] {
            [email, "/", password, ..] => (email.to_owned(), password.to_owned()),
            _ => panic!("{line}"),
        }
    }

    /// A token `emporium token` mints from the shop's own key.
    async fn token(&self, role: &str, subject: &str) -> String {
        let token = tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"))
            .args(["token", "--role", role, "--subject", subject, "--data-dir"])
            .arg(self.dir.path())
            .output()
            .await
            .unwrap();
        assert!(token.status.success(), "{token:?}");
        String::from_utf8(token.stdout).unwrap().trim().to_owned()
    }

    /// Stops it with SIGINT, expecting a clean exit; returns every line
    /// it wrote after the banner, then its standard error.
    async fn stop(mut self) -> (String, String) {
        interrupt_and_wait(&mut self.child).await;
        (self.rest.await.unwrap(), self.errors.await.unwrap())
    }
}

fn through(link: &emporium_testkit::Link, url: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(link.addr.port())).unwrap();
    url.to_string()
}

async fn server_addr(url: &str, default_port: u16) -> std::net::SocketAddr {
    let url = url::Url::parse(url).unwrap();
    format!("127.0.0.1:{}", url.port().unwrap_or(default_port))
        .parse()
        .unwrap()
}

/// Without its database the catalog is not ready and says so; without its
/// broker it stays ready (degraded) and keeps taking writes, whose events
/// wait in the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_database_and_tolerates_a_missing_broker() {
    let Some(amqp) = emporium_testkit::server_url(emporium_testkit::AMQP) else {
        return;
    };
    let Some(database) =
        emporium_testkit::TestDatabase::fresh(emporium_testkit::Backend::Postgres).await
    else {
        return;
    };
    let db_link = emporium_testkit::Link::to(server_addr(database.url.expose(), 5432).await).await;
    let broker_link = emporium_testkit::Link::to(server_addr(&amqp, 5672).await).await;
    let dir = tempfile::tempdir().unwrap();
    let issuer = emporium_testkit::issuer();
    std::fs::write(dir.path().join("jwks.json"), issuer.jwks()).unwrap();
    let mut settings = shop_settings(dir.path());
    settings.update_section::<emporium_catalog::CatalogSettings>(|c| {
        c.database_url = Some(emporium_platform::config::Secret::new(through(
            &db_link,
            database.url.expose(),
        )));
    });
    settings.bus.url = emporium_platform::config::Secret::new(through(&broker_link, &amqp));
    settings.auth.jwks_file = Some(dir.path().join("jwks.json"));
    let shop = emporium::start(settings, &["catalog".to_owned()])
        .await
        .unwrap();
    let base = shop.url("catalog").unwrap();
    let http = reqwest::Client::new();
    let ready = || async {
        let r = http.get(format!("{base}/ready")).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let (status, body) = ready().await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{body}"
    );

    broker_link.cut();
    let degraded = emporium_testkit::eventually(Duration::from_secs(10), || async {
        let (status, body) = ready().await;
        (body["status"] == "degraded").then_some((status, body))
    })
    .await;
    let (status, body) = degraded.expect("the broker is reported down");
    assert_eq!(
        (status, body["checks"]["broker"].as_str()),
        (StatusCode::OK, Some("down")),
        "{body}"
    );
    let admin = issuer
        .mint("a", Role::Admin, Duration::from_secs(60))
        .unwrap();
    let response = http
        .post(format!("{base}/api/v1/categories"))
        .bearer_auth(&admin)
        .json(&json!({ "slug": "tools", "name": "Tools" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let mut body = product_body("wrench-1");
    body["category"] = json!("tools");
    let response = http
        .post(format!("{base}/api/v1/products"))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "writes go on without the broker"
    );
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    db_link.cut();
    let (status, body) = ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["dependency"], "database");
    let response = http
        .get(format!("{base}/api/v1/products?q=lantern"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.json::<Value>().await.unwrap()["dependency"],
        "database"
    );

    db_link.restore();
    broker_link.restore();
    let back = emporium_testkit::eventually(Duration::from_secs(15), || async {
        let (status, body) = ready().await;
        (status == StatusCode::OK && body["status"] == "ready").then_some(())
    })
    .await;
    assert!(back.is_some(), "ready again once both are back");
    let product = http
        .get(format!("{base}/api/v1/products/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(product.status(), StatusCode::OK);
    shop.stop(Duration::from_secs(5)).await;
}

/// `emporium migrate catalog` with the seeds' plain DATABASE_URL builds the
/// schema on MariaDB, and a second run has nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_builds_the_schema_on_mariadb_from_plain_variables() {
    let Some(database) =
        emporium_testkit::TestDatabase::fresh(emporium_testkit::Backend::MySql).await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"))
            .args(["migrate", "catalog", "--data-dir"])
            .arg(dir.path())
            .env("DATABASE_URL", database.url.expose())
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let db = emporium_platform::db::connect(&database.url).await.unwrap();
    use sea_orm::ConnectionTrait;
    let tables = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SHOW TABLES",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect::<std::collections::BTreeSet<_>>();
    for table in [
        "products",
        "categories",
        "outbox",
        "inbox",
        "seaql_migrations",
    ] {
        assert!(tables.contains(table), "{table} in {tables:?}");
    }
    let _ = db.close().await;
}

/// SIGINT in the middle of a burst of writes: the server drains, then the
/// relay publishes what was committed. Every product the database holds has
/// its event on the broker, and the outbox ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_a_burst_of_writes_loses_no_event() {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use sea_orm::ConnectionTrait;
    let Some(amqp) = emporium_testkit::server_url(emporium_testkit::AMQP) else {
        return;
    };
    // A queue of the test's own on the shop's exchange, declared first.
    let queue = format!("test.burst.{}", uuid::Uuid::now_v7().simple());
    let connection = lapin::Connection::connect(&amqp, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            emporium_platform::bus::EXCHANGE.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            emporium_platform::bus::EXCHANGE.into(),
            "product.created".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let issuer = emporium_testkit::issuer();
    std::fs::write(dir.path().join("jwks.json"), issuer.jwks()).unwrap();
    let token = issuer
        .mint("burst", Role::Admin, Duration::from_secs(600))
        .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["serve", "catalog", "--data-dir"])
        .arg(dir.path())
        .env("PORT", "0")
        .env("GRPC_PORT", "0")
        .env("AMQP_URL", &amqp)
        .env("EMPORIUM__AUTH__JWKS_FILE", dir.path().join("jwks.json"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let (http_addr, _) = listening_addr(&mut stdout, "catalog").await;
    let base = format!("http://{http_addr}");
    emporium_testkit::wait_ready(&base).await;
    // Keep reading the logs so that the child never blocks on a full pipe.
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text).await;
        text
    });
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/api/v1/categories"))
        .bearer_auth(&token)
        .json(&json!({ "slug": "burst", "name": "Burst" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    // Eight writers create products back to back until the server goes.
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (http, base, token, accepted) =
                (http.clone(), base.clone(), token.clone(), accepted.clone());
            tokio::spawn(async move {
                for n in 0..10_000 {
                    let body = json!({ "sku": format!("B-{writer}-{n}"), "name": "Burst", "price": { "amount": "1.00", "currency": "USD" }, "category": "burst" });
                    let sent = http
                        .post(format!("{base}/api/v1/products"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    let burst_going = emporium_testkit::eventually(Duration::from_secs(30), || {
        let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n >= 100).then_some(()) }
    })
    .await;
    assert!(
        burst_going.is_some(),
        "writes are accepted before the signal"
    );
    interrupt_and_wait(&mut child).await;
    for writer in writers {
        writer.await.unwrap();
    }
    let logs = logs.await.unwrap();

    let db = sea_orm::Database::connect(format!(
        "sqlite://{}?mode=ro",
        dir.path().join("catalog.db").display()
    ))
    .await
    .unwrap();
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql,
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
        }
    };
    let products = count("SELECT COUNT(*) AS n FROM products").await;
    let unsent = count("SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL").await;
    let accepted = accepted.load(std::sync::atomic::Ordering::SeqCst) as i64;
    assert!(
        products >= accepted,
        "every acknowledged write is stored: {products} < {accepted}"
    );
    assert_eq!(unsent, 0, "the outbox ends empty\n{logs}");
    let on_broker = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count() as i64;
    assert_eq!(
        on_broker, products,
        "one product.created on the broker per stored product"
    );
    emporium_testkit::delete_queues(&amqp, &queue).await;
}

/// The demo admin's email and password, from the notice `up` prints once.
fn demo_admin(shop: &TestShop) -> (String, String) {
    let notice = shop
        .notices
        .iter()
        .find(|n| n.starts_with("admin sign-in"))
        .expect("a generated admin on first start");
    let mut words = notice.split_whitespace().skip(2);
    let email = words.next().unwrap().to_owned();
    assert_eq!(words.next(), Some("/"));
    (email, words.next().unwrap().to_owned())
}

async fn login(shop: &TestShop, email: &str, password: &str) -> Value {
    let (status, body) = shop
        .send(
            reqwest::Method::POST,
            "/api/v1/users/login",
            None,
            Some(json!({ "email": email, "password": password })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_registers_signs_in_refreshes_and_signs_out_through_the_gateway() {
    let shop = TestShop::start().await;
    let post = |path: &'static str, body: Value| {
        let shop = &shop;
        async move {
            shop.send(reqwest::Method::POST, path, None, Some(body))
                .await
        }
    };
    let registration = json!({ "email": "Grace@Example.org", "password": "a long enough passphrase", "name": "Grace Hopper" });
    let response = shop
        .http
        .post(shop.url("/api/v1/users/register"))
        .json(&registration)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let user: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/users/{}", user["id"].as_str().unwrap())
    );
    assert_eq!(
        (user["email"].as_str(), user["role"].as_str()),
        (Some("grace@example.org"), Some("customer"))
    );
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());
    // A taken email is answered like a new one (no existence oracle).
    let (status, body) = post("/api/v1/users/register", registration.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(body["id"], user["id"]);

    // Wrong password and unknown email answer alike.
    let (wrong, wrong_body) = post(
        "/api/v1/users/login",
        json!({ "email": "grace@example.org", "password": "not the passphrase" }),
    )
    .await;
    let (unknown, unknown_body) = post(
        "/api/v1/users/login",
        json!({ "email": "nobody@example.org", "password": "not the passphrase" }),
    )
    .await;
    assert_eq!(
        (wrong, unknown),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(wrong_body["detail"], unknown_body["detail"]);

    let response = shop
        .http
        .post(shop.url("/api/v1/users/login"))
        .json(&json!({ "email": "GRACE@example.org", "password": "a long enough passphrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (status, me) = shop
        .send(
            reqwest::Method::GET,
            "/api/v1/users/me",
            Some(&access),
            None,
        )
        .await;
    assert_eq!((status, &me["id"]), (StatusCode::OK, &user["id"]));

    // The token's key is published, and the catalog accepts the token (a
    // customer may not write: 403, not 401).
    let (_, jwks) = shop.get("/.well-known/jwks.json").await;
    let header = jsonwebtoken_header_kid(&access);
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header)
    );
    let (status, _) = shop
        .send(
            reqwest::Method::POST,
            "/api/v1/categories",
            Some(&access),
            Some(json!({ "slug": "x", "name": "X" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Another account is not hers to read; the admin's list is not either.
    let (_, admin_tokens) = {
        let (email, password) = demo_admin(&shop);
        (email.clone(), login(&shop, &email, &password).await)
    };
    let admin_id = admin_tokens["user"]["id"].as_str().unwrap().to_owned();
    let (status, _) = shop
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/users/{admin_id}"),
            Some(&access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = shop
        .send(reqwest::Method::GET, "/api/v1/users", Some(&access), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let admin_access = admin_tokens["access_token"].as_str().unwrap();
    let (status, page) = shop
        .send(
            reqwest::Method::GET,
            "/api/v1/users?email=grace",
            Some(admin_access),
            None,
        )
        .await;
    assert_eq!((status, page["total"].as_u64()), (StatusCode::OK, Some(1)));

    // Refresh rotates; the spent token again ends the session.
    let first = tokens["refresh_token"].as_str().unwrap();
    let (status, second) = post("/api/v1/auth/refresh", json!({ "refresh_token": first })).await;
    assert_eq!(status, StatusCode::OK);
    let second = second["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = post("/api/v1/auth/refresh", json!({ "refresh_token": first })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post("/api/v1/auth/refresh", json!({ "refresh_token": second })).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the family ended with the reuse"
    );

    // Sign out ends a fresh session.
    let third = login(&shop, "grace@example.org", "a long enough passphrase").await;
    let refresh = third["refresh_token"].as_str().unwrap();
    let (status, _) = post("/api/v1/auth/logout", json!({ "refresh_token": refresh })).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = post("/api/v1/auth/refresh", json!({ "refresh_token": refresh })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    shop.stop().await;
}

/// The `kid` of a JWT's header.
fn jsonwebtoken_header_kid(token: &str) -> Value {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["kid"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_answers_bad_input_with_problems_and_writes_nothing() {
    let shop = TestShop::start().await;
    let (email, password) = demo_admin(&shop);
    let admin = login(&shop, &email, &password).await;
    let admin_token = admin["access_token"].as_str().unwrap().to_owned();
    let admin_id = admin["user"]["id"].as_str().unwrap().to_owned();
    let users = || async {
        shop.send(
            reqwest::Method::GET,
            "/api/v1/users?per_page=1",
            Some(&admin_token),
            None,
        )
        .await
        .1["total"]
            .as_u64()
            .unwrap()
    };
    let before = users().await;
    let long = "x".repeat(5000);
    type Case<'a> = (
        reqwest::Method,
        String,
        Option<&'a str>,
        Option<&'a str>,
        u16,
    );
    let cases: Vec<Case> = vec![
        (
            reqwest::Method::POST,
            "/api/v1/users/register".into(),
            None,
            Some("{"),
            400,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users/register".into(),
            None,
            Some("[]"),
            422,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users/register".into(),
            None,
            Some(r#"{"email": 5}"#),
            422,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users/register".into(),
            None,
            Some("{}"),
            422,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users/register".into(),
            None,
            Some(r#"{"email":"a@b.co","password":"short","name":"A"}"#),
            422,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users/register".into(),
            None,
            Some(r#"{"email":"a@b.co","password":"long enough pass","name":""}"#),
            422,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users/register".into(),
            None,
            Some(
                r#"{"email":"a@b.co","password":"long enough pass","name":"A","phone":"call me"}"#,
            ),
            422,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users/login".into(),
            None,
            Some("{}"),
            422,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users/login".into(),
            None,
            Some("nonsense"),
            400,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/auth/refresh".into(),
            None,
            Some("{}"),
            422,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/auth/refresh".into(),
            None,
            Some(r#"{"refresh_token":"made-up"}"#),
            401,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/auth/logout".into(),
            None,
            Some(r#"{"refresh_token": null}"#),
            422,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/users/me".into(),
            None,
            None,
            401,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/users/me".into(),
            Some("Bearer nonsense"),
            None,
            401,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/users/not-a-uuid".into(),
            Some("admin"),
            None,
            400,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/users/{}", uuid::Uuid::now_v7()),
            Some("admin"),
            None,
            404,
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/users/{admin_id}"),
            Some("admin"),
            Some(r#"{"name":""}"#),
            422,
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/users/{admin_id}"),
            Some("admin"),
            Some(r#"{"name":"A","role":"owner"}"#),
            422,
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/users/{admin_id}"),
            Some("admin"),
            Some(r#"{"name":"A","active":false}"#),
            422,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/users?page=0".into(),
            Some("admin"),
            None,
            400,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/users?per_page=abc".into(),
            Some("admin"),
            None,
            400,
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/users/me".into(),
            Some("admin"),
            None,
            405,
        ),
    ];
    for (method, path, auth, body, expected) in cases {
        let mut request = shop.http.request(method.clone(), shop.url(&path));
        match auth {
            Some("admin") => request = request.bearer_auth(&admin_token),
            Some(other) => request = request.header("authorization", other),
            None => {}
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(status, expected, "{method} {path} {body:?}");
        assert_eq!(content_type, "application/problem+json", "{method} {path}");
    }
    // A body that is not declared JSON, on every JSON route.
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/users/register".to_owned()),
        (reqwest::Method::POST, "/api/v1/users/login".to_owned()),
        (reqwest::Method::POST, "/api/v1/auth/refresh".to_owned()),
        (reqwest::Method::POST, "/api/v1/auth/logout".to_owned()),
        (reqwest::Method::PUT, format!("/api/v1/users/{admin_id}")),
    ] {
        let response = shop
            .http
            .request(method.clone(), shop.url(&path))
            .bearer_auth(&admin_token)
            .header("content-type", "text/plain")
            .body(r#"{"name":"A"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{method} {path}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let (status, _) = shop
        .send(
            reqwest::Method::POST,
            "/api/v1/users/login",
            None,
            Some(json!({ "email": "x@example.org", "password": 12345678901u64 })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a number is not a password"
    );
    // A huge name and a huge password are refused before any hashing.
    for body in [
        json!({ "email": "huge@example.org", "password": long, "name": "A" }),
        json!({ "email": "huge@example.org", "password": "long enough pass", "name": long }),
    ] {
        let (status, _) = shop
            .send(
                reqwest::Method::POST,
                "/api/v1/users/register",
                None,
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (status, _) = shop
        .send(
            reqwest::Method::POST,
            "/api/v1/users/login",
            None,
            Some(json!({ "email": "x@example.org", "password": long })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(users().await, before, "nothing was written");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_validates_tokens_over_grpc_and_counts_what_it_does() {
    use emporium_proto::identity::v1::identity_client::IdentityClient;
    use emporium_proto::identity::v1::{GetUserRequest, ValidateTokenRequest};
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(dir.path());
    settings.update_section::<emporium_identity::IdentitySettings>(|i| i.upkeep_secs = 1);
    let shop = TestShop::start_with(settings, dir).await;
    let metrics_url = shop.shop.as_ref().unwrap().metrics_url().unwrap();
    let scrape = || async {
        shop.http
            .get(&metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Counters are the process's: under `cargo test` other tests add to
    // them at the same time, so this test counts from here and at least.
    let before = scrape().await;
    let (email, password) = demo_admin(&shop);
    let admin = login(&shop, &email, &password).await;
    let access = admin["access_token"].as_str().unwrap().to_owned();
    let admin_id = admin["user"]["id"].as_str().unwrap().to_owned();
    let mut client = IdentityClient::new(shop.grpc_as("gateway", "identity"));

    let valid = client
        .validate_token(ValidateTokenRequest {
            token: access.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (valid.user_id.as_str(), valid.roles, valid.email.as_str()),
        (admin_id.as_str(), vec!["admin".to_owned()], email.as_str())
    );
    for (token, code) in [
        ("garbage", tonic::Code::Unauthenticated),
        ("", tonic::Code::InvalidArgument),
    ] {
        let status = client
            .validate_token(ValidateTokenRequest {
                token: token.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{token:?}");
    }
    // A service the gRPC face admits reads any account.
    let user = client
        .get_user(GetUserRequest {
            id: admin_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (user.email.as_str(), user.role.as_str()),
        (email.as_str(), "admin")
    );
    let status = client
        .get_user(GetUserRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // One registration and one failed sign-in, then the metrics.
    let (status, _) = shop
        .send(
            reqwest::Method::POST,
            "/api/v1/users/register",
            None,
            Some(json!({ "email": "counted@example.org", "password": "a long passphrase", "name": "Counted" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = shop
        .send(
            reqwest::Method::POST,
            "/api/v1/users/login",
            None,
            Some(json!({ "email": email, "password": "not the password" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let sample = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let text = emporium_testkit::eventually(Duration::from_secs(10), || async {
        let text = scrape().await;
        (sample(&text, "active_sessions_current") >= 1.0).then_some(text)
    })
    .await
    .expect("the session gauge counts the admin's session");
    let grew = |name: &str| sample(&text, name) - sample(&before, name);
    for (name, expected) in [
        ("users_registered_total", 1.0),
        ("jwt_tokens_issued_total", 1.0),
        ("login_attempts_total{status=\"success\"}", 1.0),
        ("login_attempts_total{status=\"failure\"}", 1.0),
    ] {
        assert_counted(grew(name), expected, name);
    }
    shop.stop().await;
}

/// Identity and the catalog in one process, the gateway in another runtime
/// that knows identity only by its JWKS URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_elsewhere_verifies_identity_tokens_through_the_jwks_url() {
    use emporium_gateway::GatewaySettings;
    let services_dir = tempfile::tempdir().unwrap();
    let services = emporium_testkit::spawn(shop_settings(services_dir.path()), &backends()).await;
    let identity = services.url("identity").unwrap();
    let gateway_dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(gateway_dir.path());
    settings.auth.jwks_url = Some(format!("{identity}/.well-known/jwks.json"));
    settings.update_section::<GatewaySettings>(|g| {
        point_at(g, &services);
    });
    let gateway = emporium::start(settings, &["gateway".to_owned()])
        .await
        .unwrap();
    let base = gateway.url("gateway").unwrap();
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/api/v1/users/register"))
        .json(
            &json!({ "email": "far@example.org", "password": "a long passphrase", "name": "Far" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let tokens: Value = http
        .post(format!("{base}/api/v1/users/login"))
        .json(&json!({ "email": "far@example.org", "password": "a long passphrase" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let me = http
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // A token from a key identity never published is turned away at the
    // gateway, before any service sees it.
    let forged = emporium_testkit::issuer()
        .mint(
            "x",
            emporium_platform::auth::Role::Admin,
            Duration::from_secs(60),
        )
        .unwrap();
    let response = http
        .get(format!("{base}/api/v1/users"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    gateway.stop(Duration::from_secs(5)).await;
    services.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_limits_requests_per_address_and_says_when_to_come_back() {
    use emporium_gateway::GatewaySettings;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(dir.path());
    settings.update_section::<GatewaySettings>(|g| {
        g.auth_per_address = 3;
        g.api_per_address = 1000;
    });
    let shop = TestShop::start_with(settings, dir).await;
    let attempt = || {
        shop.http
            .post(shop.url("/api/v1/users/login"))
            .json(&json!({ "email": "nobody@example.org", "password": "not a password" }))
            .send()
    };
    for left in (0..3).rev() {
        let response = attempt().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            left.to_string().as_str()
        );
    }
    // Under `cargo test` every shop of this binary counts into one
    // recorder: the count is measured from this test's own baseline.
    let limited = || async {
        let text = shop
            .http
            .get(shop.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        commerce::metric_sum(
            &text,
            "gateway_rate_limited_total{",
            &["group=\"auth\"", "by=\"address\""],
        )
    };
    let before = limited().await;
    let refused = attempt().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    // Other route groups keep their own budget.
    let response = shop
        .http
        .get(shop.url("/api/v1/categories"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["ratelimit-remaining"], "999");
    assert_counted(limited().await - before, 1.0, "the refusal was counted");
    shop.stop().await;
}

/// Two gateway replicas sharing Redis count against one budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_replicas_share_one_budget_through_redis() {
    use emporium_gateway::GatewaySettings;
    let Some(redis) = emporium_testkit::server_url(emporium_testkit::REDIS) else {
        return;
    };
    let services_dir = tempfile::tempdir().unwrap();
    let services = emporium_testkit::spawn(shop_settings(services_dir.path()), &backends()).await;
    let prefix = format!("test:{}", uuid::Uuid::now_v7().simple());
    let mut gateways = vec![];
    let mut dirs = vec![];
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = shop_settings(dir.path());
        settings.update_section::<GatewaySettings>(|g| {
            point_at(g, &services);
            g.rate_limit_url = emporium_platform::config::Secret::new(redis.clone());
            g.rate_limit_prefix = prefix.clone();
            g.api_per_address = 6;
        });
        gateways.push(
            emporium::start(settings, &["gateway".to_owned()])
                .await
                .unwrap(),
        );
        dirs.push(dir);
    }
    let http = reqwest::Client::new();
    let mut allowed = 0;
    for n in 0..12 {
        let base = gateways[n % 2].url("gateway").unwrap();
        let status = http
            .get(format!("{base}/api/v1/categories"))
            .send()
            .await
            .unwrap()
            .status();
        match status {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(allowed, 6, "one budget across both replicas");
    for gateway in gateways {
        gateway.stop(Duration::from_secs(5)).await;
    }
    services.stop(Duration::from_secs(5)).await;
}

/// `emporium seed` fills the configured stores once: a second run adds
/// nothing and shows no new admin password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_loads_the_demo_data_once() {
    let dir = tempfile::tempdir().unwrap();
    let seed = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"))
            .args(["seed", "--data-dir"])
            .arg(dir.path())
            .env("EMPORIUM__LOG__LEVEL", "warn")
            .output()
    };
    let first = seed().await.unwrap();
    assert!(first.status.success(), "{first:?}");
    let printed = String::from_utf8(first.stdout).unwrap();
    // Seeding apart from `up` keeps the password out of the output.
    assert!(
        printed.contains("admin sign-in  admin@emporium.local: password in "),
        "{printed}"
    );
    let password = std::fs::read_to_string(dir.path().join("identity-admin-password")).unwrap();
    assert!(!printed.contains(password.trim()), "{printed}");
    let second = seed().await.unwrap();
    assert!(second.status.success());
    assert_eq!(String::from_utf8(second.stdout).unwrap(), "", "nothing new");

    let shop = emporium_testkit::spawn(shop_settings(dir.path()), &backends()).await;
    let base = shop.url("catalog").unwrap();
    let page: Value = reqwest::get(format!("{base}/api/v1/products?per_page=1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 40);
    shop.stop(Duration::from_secs(5)).await;
}

/// With a certificate and key, the gateway speaks HTTPS (HTTP/2 by ALPN)
/// and nothing else; a half-set pair stops start-up with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_https_with_a_configured_certificate() {
    use emporium_gateway::GatewaySettings;
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let mut settings = shop_settings(dir.path());
    settings.update_section::<GatewaySettings>(|g| {
        g.tls_cert_file = Some(cert.clone());
        g.tls_key_file = Some(key.clone());
    });
    let shop = emporium::up(settings, false).await.unwrap().running;
    let port = shop.get("gateway").unwrap().http_addr.port();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{port}/api/v1/categories"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    // Plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // A client that stalls in its handshake holds up no one.
    let _stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let response = client
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    shop.stop(Duration::from_secs(5)).await;

    let mut half = shop_settings(dir.path());
    half.update_section::<GatewaySettings>(|g| g.tls_cert_file = Some(cert.clone()));
    let err = emporium::start(half, &[]).await.err().unwrap();
    assert!(
        format!("{err:#}").contains("gateway.tls_cert_file and gateway.tls_key_file go together"),
        "{err:#}"
    );
}
