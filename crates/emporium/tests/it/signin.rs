//! Sign-in, client addresses and identity's secrets, end to end through the
//! shop as `emporium up` starts it: whose address a limit counts, who
//! waits after failed sign-ins, what is stored and printed, and what the
//! public port serves.

use emporium_platform::auth::Role;
use emporium_platform::config::Settings;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{TestShop, shop_settings};

const PASSWORD: &str = "a long enough passphrase";

/// A shop whose settings `change` adjusts; the data dir is returned too.
async fn shop_with(change: impl FnOnce(&mut Settings)) -> (TestShop, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut settings = shop_settings(dir.path());
    change(&mut settings);
    (TestShop::start_with(settings, dir).await, path)
}

/// Trusts the test client (on loopback) as a proxy: its `X-Forwarded-For`
/// then names the client, so that one test can speak from many addresses.
/// Set through serde, as a configuration file would.
fn trust_loopback(settings: &mut Settings) {
    settings.http = serde_json::from_value(json!({ "trusted_proxies": ["127.0.0.1/32"] }))
        .expect("http.trusted_proxies is a setting");
}

fn identity_limits(settings: &mut Settings, per_address: u32) {
    settings.update_section::<emporium_identity::IdentitySettings>(|identity| {
        identity.login_failures_per_address = per_address;
    });
}

fn gateway_auth_limit(settings: &mut Settings, per_address: u32) {
    settings.update_section::<emporium_gateway::GatewaySettings>(|gateway| {
        gateway.auth_per_address = per_address;
    });
}

async fn register(shop: &TestShop, email: &str) -> (StatusCode, Option<String>, Value) {
    let response = shop
        .http
        .post(shop.url("/api/v1/users/register"))
        .json(&json!({ "email": email, "password": PASSWORD, "name": "Grace Hopper" }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        location,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// One sign-in through the gateway (or `base`), from `forwarded` if set.
async fn sign_in_at(
    shop: &TestShop,
    base: &str,
    email: &str,
    password: &str,
    forwarded: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = shop
        .http
        .post(format!("{base}/api/v1/users/login"))
        .json(&json!({ "email": email, "password": password }));
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn sign_in(
    shop: &TestShop,
    email: &str,
    password: &str,
    forwarded: Option<&str>,
) -> (StatusCode, Value) {
    sign_in_at(shop, &shop.base, email, password, forwarded).await
}

/// Wrong passwords at `base`, one per `(email, forwarded)`, each
/// answered 401.
async fn wrong_sign_ins(shop: &TestShop, base: &str, attempts: &[(String, Option<String>)]) {
    for (email, forwarded) in attempts {
        let (status, body) = sign_in_at(
            shop,
            base,
            email,
            "not the passphrase",
            forwarded.as_deref(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{email} {forwarded:?}: {body}"
        );
    }
}

/// `count` sign-ins, the n-th (from `from`) as `email(n)` from `hop(n)`.
fn attempts(
    from: usize,
    count: usize,
    email: impl Fn(usize) -> String,
    hop: impl Fn(usize) -> Option<String>,
) -> Vec<(String, Option<String>)> {
    (from..from + count).map(|n| (email(n), hop(n))).collect()
}

fn identity_base(shop: &TestShop) -> String {
    let running = shop.shop.as_ref().unwrap();
    format!("http://{}", running.get("identity").unwrap().http_addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_addresses_forwarded_by_an_untrusted_client_do_not_escape_the_gateway_limit() {
    let (shop, _) = shop_with(|_| {}).await;
    let mut refused = 0;
    for n in 0..35 {
        let (status, body) = sign_in(
            &shop,
            &format!("nobody{n}@example.org"),
            "not the passphrase",
            Some(&format!("198.51.100.{n}")),
        )
        .await;
        match status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(
                    body["detail"].as_str().unwrap().contains("address"),
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(
        refused, 5,
        "30 sign-ins per address, whatever the header says"
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_addresses_are_not_taken_from_an_untrusted_peer_by_identity() {
    let (shop, _) = shop_with(|s| identity_limits(s, 3)).await;
    register(&shop, "grace@example.org").await;
    let identity = identity_base(&shop);
    let guesses = attempts(
        0,
        3,
        |n| format!("nobody{n}@example.org"),
        |n| Some(format!("198.51.100.{n}")),
    );
    wrong_sign_ins(&shop, &identity, &guesses).await;
    // Reached directly, identity counts the peer, not what it claims.
    let (status, body) = sign_in_at(
        &shop,
        &identity,
        "grace@example.org",
        PASSWORD,
        Some("198.51.100.99"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_addresses_resolved_by_the_gateway_reach_identity_in_process() {
    let (shop, _) = shop_with(|s| {
        trust_loopback(s);
        identity_limits(s, 3);
    })
    .await;
    register(&shop, "grace@example.org").await;
    // A client-written hop before the trusted one is not the client.
    let guesses = attempts(
        0,
        3,
        |n| format!("nobody{n}@example.org"),
        |n| Some(format!("6.6.6.{n}, 198.51.100.7")),
    );
    wrong_sign_ins(&shop, &shop.base, &guesses).await;
    let (status, body) = sign_in(&shop, "grace@example.org", PASSWORD, Some("198.51.100.7")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, body) = sign_in(&shop, "grace@example.org", PASSWORD, Some("198.51.100.8")).await;
    assert_eq!(status, StatusCode::OK, "another client: {body}");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_failures_by_a_stranger_do_not_lock_the_owner_out() {
    let (shop, _) = shop_with(trust_loopback).await;
    register(&shop, "grace@example.org").await;
    let stranger = Some("203.0.113.7");
    let guesses = attempts(
        0,
        5,
        |_| "grace@example.org".to_owned(),
        |_| stranger.map(str::to_owned),
    );
    wrong_sign_ins(&shop, &shop.base, &guesses).await;
    let (status, body) = sign_in(&shop, "grace@example.org", "not the passphrase", stranger).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, body) = sign_in(&shop, "grace@example.org", PASSWORD, Some("198.51.100.20")).await;
    assert_eq!(status, StatusCode::OK, "the owner elsewhere: {body}");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_counts_concurrent_guesses_before_checking_them() {
    let (shop, _) = shop_with(|s| gateway_auth_limit(s, 0)).await;
    register(&shop, "grace@example.org").await;
    let guesses = (0..40).map(|_| sign_in(&shop, "grace@example.org", "not the passphrase", None));
    let statuses: Vec<StatusCode> = futures::future::join_all(guesses)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, throttled), (5, 35), "{statuses:?}");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_limited_by_their_64() {
    let (shop, _) = shop_with(|s| {
        trust_loopback(s);
        gateway_auth_limit(s, 3);
    })
    .await;
    let guesses = attempts(
        1,
        3,
        |_| "nobody@example.org".to_owned(),
        |n| Some(format!("2001:db8:1:2::{n}")),
    );
    wrong_sign_ins(&shop, &shop.base, &guesses).await;
    let (status, body) = sign_in(
        &shop,
        "nobody@example.org",
        "not the passphrase",
        Some("2001:db8:1:2:ffff::1"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "same /64: {body}");
    let (status, _) = sign_in(
        &shop,
        "nobody@example.org",
        "not the passphrase",
        Some("2001:db8:1:3::1"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another /64");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_are_stored_encrypted_under_a_key_only_the_owner_reads() {
    use sea_orm::ConnectionTrait;
    let (shop, dir) = shop_with(|_| {}).await;
    let db = emporium_platform::db::connect(&emporium_platform::config::Secret::new(format!(
        "sqlite://{}",
        dir.join("identity.db").display()
    )))
    .await
    .unwrap();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT private_key FROM signing_keys".to_owned(),
        ))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let stored: String = row.try_get("", "private_key").unwrap();
        assert!(stored.starts_with("aes256gcm:"), "stored in the clear");
    }
    let key = dir.join("identity-key-encryption.key");
    assert_eq!(owner_only(&key), 0o600);
    shop.stop().await;
}

fn owner_only(file: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_admin_password_goes_to_an_owner_only_file_when_seeding_apart() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["seed", "identity", "--data-dir"])
        .arg(dir.path())
        .env("EMPORIUM__LOG__LEVEL", "warn")
        .output()
        .await
        .unwrap();
    assert!(seeded.status.success(), "{seeded:?}");
    let printed = String::from_utf8(seeded.stdout).unwrap();
    let file = dir.path().join("identity-admin-password");
    assert_eq!(owner_only(&file), 0o600);
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 20, "a generated password");
    assert!(!printed.contains(&password), "printed: {printed}");
    assert!(
        printed.contains(&file.display().to_string()),
        "the path is printed: {printed}"
    );
    let logged = String::from_utf8(seeded.stderr).unwrap();
    assert!(!logged.contains(&password), "logged: {logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_routes_of_the_gateway_are_served_on_its_internal_listener_only() {
    let internal = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(dir.path());
    let mut gateway =
        serde_json::to_value(settings.section::<emporium_gateway::GatewaySettings>()).unwrap();
    gateway["internal_addr"] = json!(internal.to_string());
    settings.set_section::<emporium_gateway::GatewaySettings>(
        serde_json::from_value(gateway).expect("gateway.internal_addr is a setting"),
    );
    let shop = emporium::up(settings, false).await.unwrap().running;
    emporium_testkit::wait_ready(&format!("http://{internal}")).await;
    let public = shop.url("gateway").unwrap();
    for path in ["/ready", "/metrics"] {
        let status = reqwest::get(format!("{public}{path}"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::NOT_FOUND, "public {path}");
        let inside = reqwest::get(format!("http://{internal}{path}"))
            .await
            .unwrap();
        assert_eq!(inside.status(), StatusCode::OK, "internal {path}");
    }
    let status = reqwest::get(format!("{public}/health"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK, "liveness stays public");
    let metrics = reqwest::get(format!("http://{internal}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    shop.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_of_a_taken_email_answers_like_a_new_one() {
    let (shop, _) = shop_with(|_| {}).await;
    let (status, location, first) = register(&shop, "grace@example.org").await;
    assert_eq!(status, StatusCode::CREATED);
    let (again, again_location, second) = register(&shop, "GRACE@example.org").await;
    assert_eq!(again, StatusCode::CREATED, "{second}");
    let shape = |user: &Value| {
        let mut keys: Vec<String> = user.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(shape(&first), shape(&second));
    assert_eq!(
        (second["email"].as_str(), second["role"].as_str()),
        (Some("grace@example.org"), Some("customer"))
    );
    assert_ne!(
        first["id"], second["id"],
        "the owner's id is not given away"
    );
    assert_eq!(
        again_location,
        Some(format!("/api/v1/users/{}", second["id"].as_str().unwrap()))
    );
    assert!(location.is_some());
    let (status, _) = sign_in(&shop, "grace@example.org", PASSWORD, None).await;
    assert_eq!(status, StatusCode::OK, "the owner's account is untouched");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_live_five_minutes() {
    let (shop, _) = shop_with(|_| {}).await;
    register(&shop, "grace@example.org").await;
    let (status, tokens) = sign_in(&shop, "grace@example.org", PASSWORD, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["expires_in"], 300);
    let payload = tokens["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300,
        "{claims}"
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_cannot_be_demoted_or_disabled() {
    let (shop, _) = shop_with(|_| {}).await;
    let (email, password) = super::demo_admin(&shop);
    let (status, session) = sign_in(&shop, &email, &password, None).await;
    assert_eq!(status, StatusCode::OK);
    let admin_id = session["user"]["id"].as_str().unwrap().to_owned();
    // An admin token whose subject is no admin of the shop (a development
    // token, or one issued before its admin was demoted).
    let token = shop.token(Role::Admin);
    for change in [
        json!({ "name": "Administrator", "role": "customer" }),
        json!({ "name": "Administrator", "active": false }),
    ] {
        let (status, kind, problem) = shop
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/users/{admin_id}"),
                Some(&token),
                Some(change),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert_eq!(kind, "application/problem+json");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("last active admin"),
            "{problem}"
        );
    }
    let (status, _) = sign_in(&shop, &email, &password, None).await;
    assert_eq!(status, StatusCode::OK, "still an admin who signs in");
    shop.stop().await;
}
