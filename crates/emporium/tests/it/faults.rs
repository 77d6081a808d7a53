//! Fault flags (decision 0032) switched in a running `emporium up` through
//! the gateway's admin API: each shows its effect on checkouts at once
//! (declines fail them, a slow payment service or store slows them,
//! duplicate deliveries and failed publishes change nothing), is visible as
//! `fault_flag_active{flag}`, and switched off restores the checkout. Bad
//! input and callers who are not admins change nothing.

use super::admin_ops::page_when;
use super::browser::Chromium;
use super::storefront::sign_in_at;
use super::*;

/// A checkout of one unit of `product`: its status and how long it took.
async fn checkout(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    product: &str,
) -> (String, Option<String>, Duration) {
    let started = std::time::Instant::now();
    let response = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(token)
        .json(&json!({
            "items": [{ "product_id": product, "quantity": 1 }],
            "card_number": "4242424242424242"
        }))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();
    (
        order["status"].as_str().unwrap().to_owned(),
        order["failure_reason"].as_str().map(str::to_owned),
        took,
    )
}

/// Five checkouts under `flags`: their statuses (with reasons), and the
/// fastest and median times, which it prints.
async fn round(
    flags: &str,
    http: &reqwest::Client,
    base: &str,
    token: &str,
    product: &str,
) -> (Vec<String>, Duration, Duration) {
    let mut outcomes = vec![];
    let mut times = vec![];
    for _ in 0..5 {
        let (status, reason, took) = checkout(http, base, token, product).await;
        outcomes.push(match reason {
            Some(reason) => format!("{status}: {reason}"),
            None => status,
        });
        times.push(took);
    }
    times.sort();
    eprintln!(
        "{flags}: {outcomes:?}; fastest {:?}, median {:?}, slowest {:?}",
        times[0], times[2], times[4]
    );
    (outcomes, times[0], times[2])
}

async fn put_flags(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let mut request = http.put(format!("{base}/api/v1/admin/faults")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, kind, response.json().await.unwrap())
}

/// `fault_flag_active` of each flag, as the process's `/metrics` says.
async fn active_in_metrics(http: &reqwest::Client, metrics: &str) -> Vec<(String, f64)> {
    let text = http
        .get(metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut found: Vec<(String, f64)> = parse_prometheus(&text)
        .into_iter()
        .filter(|(name, _, _)| name == "fault_flag_active")
        .map(|(_, labels, value)| (labels[0].1.clone(), value))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The JSON of `GET url`, as `token` when given.
async fn get_json(http: &reqwest::Client, url: String, token: Option<&str>) -> Value {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_flags_switched_in_up_show_on_checkouts_and_off_restores_them() {
    let up = UpProcess::start(&[("EMPORIUM__STOREFRONT__OPS_SAMPLE_MS", "1000")]).await;
    let internal = up
        .banner
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "gateway readiness and metrics served apart from the public port")
        .and_then(|v| v["addr"].as_str().map(str::to_owned))
        .expect("the gateway said where its metrics are");
    let metrics = format!("http://{internal}/metrics");
    let http = reqwest::Client::new();
    let admin = up.token("admin", "faults-admin").await;
    let customer = up.token("customer", "faults-customer").await;
    let page = get_json(
        &http,
        format!("{}/api/v1/products?per_page=1", up.base),
        None,
    )
    .await;
    let product = page["items"][0]["id"].as_str().unwrap().to_owned();
    let sku = page["items"][0]["sku"].as_str().unwrap().to_owned();
    let adjusted = http
        .post(format!("{}/api/v1/inventory/adjust", up.base))
        .bearer_auth(&admin)
        .json(
            &json!({ "sku": sku, "warehouse": "east", "delta": 100, "reason": "fault flags test" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(adjusted.status(), StatusCode::OK);

    // Off at start, in the API and in the metrics.
    let read = get_json(
        &http,
        format!("{}/api/v1/admin/faults", up.base),
        Some(&admin),
    )
    .await;
    assert_eq!(
        (&read["allowed"], &read["active"]),
        (&json!(true), &json!([]))
    );
    let at_start = active_in_metrics(&http, &metrics).await;
    assert_eq!(at_start.len(), emporium_platform::faults::FLAG_LABELS.len());
    assert!(at_start.iter().all(|(_, v)| *v == 0.0), "{at_start:?}");

    // Refused: no token, a customer, values out of range, unknown flags.
    let on = json!({ "payment_decline_ratio": 1.0 });
    let (status, _, _) = put_flags(&http, &up.base, None, on.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = put_flags(&http, &up.base, Some(&customer), on.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for bad in [
        json!({ "payment_decline_ratio": 1.5 }),
        json!({ "store_latency_ms": 10_000_000 }),
        json!({ "peers": ["Payment; DROP"] }),
        json!({ "decline_everything": true }),
        json!({ "peer_latency_ms": "slow" }),
        json!([1, 2]),
    ] {
        let (status, kind, body) = put_flags(&http, &up.base, Some(&admin), bad.clone()).await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
        assert_eq!(kind.as_deref(), Some("application/problem+json"), "{bad}");
    }
    let (outcomes, _, usual) = round("no flag", &http, &up.base, &customer, &product).await;
    assert_eq!(outcomes, ["confirmed"; 5], "nothing was switched on");

    // Every card declined.
    let (status, _, body) = put_flags(&http, &up.base, Some(&admin), on).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], json!(["payment_decline_ratio"]));
    assert!(
        active_in_metrics(&http, &metrics)
            .await
            .contains(&("payment_decline_ratio".to_owned(), 1.0))
    );
    let (outcomes, _, _) = round(
        "payment_decline_ratio 1",
        &http,
        &up.base,
        &customer,
        &product,
    )
    .await;
    assert_eq!(
        outcomes, ["failed: payment failed: card_declined"; 5],
        "declined while the flag is on"
    );
    // The operations page names it, in its next sample.
    let (email, password) = up.credentials("admin sign-in");
    let (mut browser, _, status, signed) = sign_in_at(&up.base, &email, &password).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{signed}");
    page_when(&mut browser, |page| {
        page.contains("id=\"faults\" class=\"bad\">switched on: payment decline ratio")
    })
    .await;
    match emporium_testkit::server_url("EMPORIUM_TEST_CHROMEDRIVER") {
        Some(driver) => {
            let chromium = Chromium::start(&driver, &super::browser::shots("faults")).await;
            chromium
                .client
                .goto(&format!("{}/signin?next=/admin/ops", up.base))
                .await
                .unwrap();
            chromium.fill("input[name=email]", &email).await;
            chromium.fill("input[name=password]", &password).await;
            chromium.submit("form.stack button").await;
            chromium
                .shoot_at("ops-with-a-fault-flag-on", "#faults")
                .await;
            chromium.stop().await;
        }
        None => eprintln!(
            "skipped: the operations page's picture, since EMPORIUM_TEST_CHROMEDRIVER is not set"
        ),
    }

    // The payment service slow as ordering sees it: every checkout waits.
    let slow = Duration::from_millis(600);
    let (status, _, body) = put_flags(
        &http,
        &up.base,
        Some(&admin),
        json!({ "peer_latency_ms": 600, "peers": ["payment"] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], json!(["peer_latency_ms"]));
    let (outcomes, slowed, _) = round(
        "peer_latency_ms 600 on payment",
        &http,
        &up.base,
        &customer,
        &product,
    )
    .await;
    assert_eq!(outcomes, ["confirmed"; 5], "slow, not failing");
    assert!(slowed >= slow, "fastest slowed checkout {slowed:?}");

    // A slow store, every event twice and half the publishes failing:
    // slower, never wrong.
    let (status, _, body) = put_flags(
        &http,
        &up.base,
        Some(&admin),
        json!({ "store_latency_ms": 100, "duplicate_delivery_ratio": 1.0, "publish_failure_ratio": 0.5 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["active"],
        json!([
            "duplicate_delivery_ratio",
            "publish_failure_ratio",
            "store_latency_ms"
        ])
    );
    let (outcomes, fastest, _) = round(
        "store_latency_ms 100, duplicate_delivery_ratio 1, publish_failure_ratio 0.5",
        &http,
        &up.base,
        &customer,
        &product,
    )
    .await;
    assert_eq!(outcomes, ["confirmed"; 5]);
    // A checkout writes its order, reservation and payment at least.
    assert!(
        fastest >= Duration::from_millis(300),
        "fastest checkout on a slow store {fastest:?}"
    );

    // Off: the checkout as it was.
    let (status, _, body) = put_flags(&http, &up.base, Some(&admin), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], json!([]));
    let (outcomes, _, median) = round("all off again", &http, &up.base, &customer, &product).await;
    assert_eq!(outcomes, ["confirmed"; 5]);
    assert!(
        median < slowed,
        "median checkout {median:?} off, fastest {slowed:?} on (before any flag: {usual:?})"
    );
    let after = active_in_metrics(&http, &metrics).await;
    assert!(after.iter().all(|(_, v)| *v == 0.0), "{after:?}");
    up.stop().await;
}
