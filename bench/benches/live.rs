//! Live order status at scale: `emporium up` (release build, its own
//! process, embedded stores, in-process events) with 1,000 idle
//! authenticated sockets of one buyer open at notification's own port.
//! Measures the process's RSS before and after they open, and for a few
//! dozen checkouts the time from `order.confirmed` being written (the
//! event's `time`, set when ordering confirms the order) to its message at
//! the first and at the 1,000th socket. Also `up`'s idle RSS and time to
//! ready (its banner) against the goals of 50 MB and 0.5 s.
//!
//! `cargo build --release -p emporium && cargo bench -p emporium-bench --bench live`
//! (LIVE_SOCKETS and LIVE_EVENTS tune the run.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use emporium_bench::shop::{self, Layout, Ready};
use emporium_bench::{env_number, percentile, rss_mib};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

/// Where the fixed layout puts notification.
const NOTIFICATION: &str = "127.0.0.1:28005";
const GATEWAY: &str = "http://127.0.0.1:28080";
const CATALOG: &str = "http://127.0.0.1:28006";
const INVENTORY: &str = "http://127.0.0.1:28002";

/// `emporium up` in its own process, once its banner says it is ready:
/// the child, the wall time to the banner and the time the banner states.
async fn up(binary: &Path, dir: &Path) -> (tokio::process::Child, Duration, u64) {
    let mut args = vec!["up".to_owned()];
    args.extend(Layout::fixed().set_flags());
    args.extend(["--set".to_owned(), "gateway.api_per_user=100000".to_owned()]);
    let started = shop::start(
        binary,
        dir,
        &args,
        &[],
        Ready::Banner,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let stated = started.stated.expect("a ready banner").as_millis() as u64;
    (started.child, started.took, stated)
}

/// A token minted by the binary with identity's key under `dir`.
async fn token(binary: &Path, dir: &Path, role: &str, subject: &str) -> String {
    shop::token(binary, dir, role, subject, &[], &[])
        .await
        .unwrap()
}

/// One arrival of an `order.confirmed`: which order, when it was written,
/// when it arrived.
struct Arrival {
    order_id: String,
    written: SystemTime,
    arrived: SystemTime,
}

/// Opens a socket as a browser does and reports each `order.confirmed`
/// it receives; the reader answers pings as it reads.
async fn open(token: &str, arrivals: tokio::sync::mpsc::UnboundedSender<Arrival>) {
    let mut request = format!("ws://{NOTIFICATION}/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("emporium.v1, bearer.{token}").parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = socket.next().await {
            let Message::Text(text) = frame else { continue };
            let arrived = SystemTime::now();
            let message: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if message["type"] != "order.confirmed" {
                continue;
            }
            let written: chrono::DateTime<chrono::Utc> =
                message["time"].as_str().unwrap().parse().unwrap();
            let _ = arrivals.send(Arrival {
                order_id: message["data"]["order_id"].as_str().unwrap().to_owned(),
                written: written.into(),
                arrived,
            });
        }
    });
}

#[tokio::main]
async fn main() {
    let sockets = env_number("LIVE_SOCKETS", 1000) as usize;
    let events = env_number("LIVE_EVENTS", 40) as usize;
    let Some(binary) = shop::beside_this_program() else {
        println!("skipped: build the binary first: cargo build --release -p emporium");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (child, wall, stated) = up(&binary, dir.path()).await;
    let pid = child.id().unwrap();
    // Idle: whatever start-up left to settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(pid).unwrap();
    println!(
        "emporium up: ready in {stated} ms by its banner ({} ms from spawn), idle RSS {idle:.1} MiB (goals 500 ms, 50 MB)",
        wall.as_millis()
    );

    let admin = token(&binary, dir.path(), "admin", "bench-admin").await;
    let buyer = token(&binary, dir.path(), "customer", "bench-buyer").await;
    let http = reqwest::Client::new();
    let page: serde_json::Value = http
        .get(format!("{CATALOG}/api/v1/products?per_page=1&sort=name"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = page["items"][0]["id"].as_str().unwrap().to_owned();
    let sku = page["items"][0]["sku"].as_str().unwrap().to_owned();
    let stocked = http
        .post(format!("{INVENTORY}/api/v1/inventory/adjust"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "sku": sku, "warehouse": "east", "delta": 100_000, "reason": "benchmark stock" }))
        .send()
        .await
        .unwrap();
    assert!(stocked.status().is_success(), "{:?}", stocked.text().await);

    let (arrivals_in, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let opening = Instant::now();
    for batch in (0..sockets).collect::<Vec<_>>().chunks(50) {
        futures::future::join_all(batch.iter().map(|_| open(&buyer, arrivals_in.clone()))).await;
    }
    let opened_in = opening.elapsed();
    drop(arrivals_in);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = rss_mib(pid).unwrap();
    println!(
        "{sockets} sockets opened in {} ms; RSS {idle:.1} -> {held:.1} MiB ({:.1} KiB a socket)",
        opened_in.as_millis(),
        (held - idle) * 1024.0 / sockets as f64
    );

    let mut to_first = vec![];
    let mut to_last = vec![];
    for _ in 0..events {
        let response = http
            .post(format!("{GATEWAY}/api/v1/orders"))
            .bearer_auth(&buyer)
            .json(&serde_json::json!({ "items": [{ "product_id": product }], "card_number": "4242424242424242" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let order: serde_json::Value = response.json().await.unwrap();
        let order_id = order["id"].as_str().unwrap().to_owned();
        let mut times = vec![];
        while times.len() < sockets {
            let arrival = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
                .await
                .expect("every socket hears of the order")
                .expect("sockets open");
            assert_eq!(arrival.order_id, order_id, "one order at a time");
            let took = arrival
                .arrived
                .duration_since(arrival.written)
                .unwrap_or_default();
            times.push(took.as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        to_first.push(times[0]);
        to_last.push(times[sockets - 1]);
    }
    to_first.sort_by(f64::total_cmp);
    to_last.sort_by(f64::total_cmp);
    let after = rss_mib(pid).unwrap();
    println!("order.confirmed written -> message, over {events} checkouts, {sockets} sockets:");
    println!("| socket | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    let last = format!("{sockets}th");
    for (name, series) in [("first", &to_first), (last.as_str(), &to_last)] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            percentile(series, 0.5),
            percentile(series, 0.99),
            series[series.len() - 1]
        );
    }
    println!("RSS after the events: {after:.1} MiB");
    drop(child);
}
