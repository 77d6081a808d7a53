//! The REST face of payment started as production starts it: who may make
//! a payment, what another user's payment answers, and what an
//! `Idempotency-Key` leaves behind.

use emporium_platform::auth::Role;
use emporium_platform::config::Settings;
use emporium_testkit::Tokens;
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

struct Served {
    running: emporium_platform::service::Running,
    tokens: Tokens,
    base: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

async fn served() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let running = emporium_testkit::spawn(
        Settings::ephemeral(dir.path()),
        &[emporium_payment::definition()],
    )
    .await;
    let tokens = Tokens::new();
    running
        .runtime
        .verifier
        .publish(&tokens.issuer.jwks())
        .unwrap();
    Served {
        base: running.url("payment").unwrap(),
        running,
        tokens,
        http: reqwest::Client::new(),
        dir,
    }
}

fn body(order: &str, card: &str) -> Value {
    json!({ "order_id": order, "user_id": "ada", "amount": { "amount": "25.00", "currency": "USD" }, "card_number": card })
}

impl Served {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// A payment an admin makes for ada.
    async fn make(&self, order: &str) -> (StatusCode, Value) {
        let admin = self.tokens.admin();
        let body = body(order, "4242424242424242");
        self.send(
            reqwest::Method::POST,
            "/api/v1/payments",
            &admin,
            Some(&body),
        )
        .await
    }

    async fn total(&self) -> u64 {
        let admin = self.tokens.admin();
        let (_, page) = self
            .send(reqwest::Method::GET, "/api/v1/payments", &admin, None)
            .await;
        page["total"].as_u64().unwrap()
    }

    async fn stop(self) {
        self.running.stop(std::time::Duration::from_secs(5)).await;
    }
}

/// Finding: a customer could create a payment for any `order_id` with any
/// amount. Payments for an order come from ordering's checkout; over REST
/// only an admin makes one (decision 0020).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cannot_create_a_payment_for_any_order_over_rest() {
    let shop = served().await;
    let ada = shop.tokens.user("ada", Role::Customer);
    for order in ["someone-elses-order", "order-of-ada"] {
        let (status, problem) = shop
            .send(
                reqwest::Method::POST,
                "/api/v1/payments",
                &ada,
                Some(&json!({ "order_id": order, "amount": { "amount": "0.01", "currency": "USD" }, "card_number": "4242424242424242" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
        assert_eq!(problem["status"], 403, "{problem}");
    }
    assert_eq!(shop.total().await, 0, "nothing was made");
    let (status, made) = shop.make("order-1").await;
    assert_eq!(
        (status, made["user_id"].as_str()),
        (StatusCode::CREATED, Some("ada")),
        "{made}"
    );
    shop.stop().await;
}

/// Finding: another user's payment answered 403 and a missing one 404, so
/// ids could be probed. Both answer the same 404 now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_payment_answers_404_like_a_missing_one() {
    let shop = served().await;
    let admin = shop.tokens.admin();
    let (_, made) = shop.make("order-1").await;
    let id = made["id"].as_str().unwrap();
    let missing = uuid::Uuid::now_v7();
    let bob = shop.tokens.user("bob", Role::Customer);
    for (method, tail) in [
        (reqwest::Method::GET, ""),
        (reqwest::Method::POST, "/process"),
        (reqwest::Method::POST, "/cancel"),
    ] {
        let (theirs_status, theirs) = shop
            .send(
                method.clone(),
                &format!("/api/v1/payments/{id}{tail}"),
                &bob,
                None,
            )
            .await;
        let (none_status, none) = shop
            .send(
                method.clone(),
                &format!("/api/v1/payments/{missing}{tail}"),
                &bob,
                None,
            )
            .await;
        assert_eq!(
            theirs_status,
            StatusCode::NOT_FOUND,
            "{method} {tail}: {theirs}"
        );
        assert_eq!(
            (theirs_status, &theirs),
            (none_status, &none),
            "{method} {tail}"
        );
    }
    let ada = shop.tokens.user("ada", Role::Customer);
    let (status, _) = shop
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/payments/{id}"),
            &ada,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "its payer still sees it");
    let (status, pending) = shop
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/payments/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (status, pending["status"].as_str()),
        (StatusCode::OK, Some("pending")),
        "bob's tries changed nothing"
    );
    shop.stop().await;
}

/// Finding: idempotency fingerprints were an unsalted SHA-256 of a body
/// holding the card number, kept 24 h beside its last four digits. What is
/// kept now is an HMAC under a key made for the data dir, readable by its
/// owner only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_fingerprints_are_not_an_unsalted_digest_of_the_card_number() {
    let shop = served().await;
    let admin = shop.tokens.admin();
    let request = body("order-1", "4242424242424242");
    let response = shop
        .http
        .post(format!("{}/api/v1/payments", shop.base))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "k-1")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let db = emporium_platform::db::connect(
        &shop.running.runtime.settings.database_url("payment", None),
    )
    .await
    .unwrap();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT fingerprint FROM idempotency_keys".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    let kept: String = row.try_get("", "fingerprint").unwrap();
    let bare = emporium_platform::idempotency::fingerprint(
        "POST",
        "/api/v1/payments",
        request.to_string().as_bytes(),
    );
    assert_ne!(
        kept, bare,
        "a bare digest can be matched against guessed cards"
    );
    let key = shop.dir.path().join("payment-fingerprint.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the key is its owner's only");
    // The same request under the same key is still told apart from another.
    let again = shop
        .http
        .post(format!("{}/api/v1/payments", shop.base))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "k-1")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let other = shop
        .http
        .post(format!("{}/api/v1/payments", shop.base))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "k-1")
        .json(&body("order-1", "5555555555554444"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    shop.stop().await;
}
