//! Gateway → catalog against a minimal hyper server, on loopback, in one go:
//! cached `GET /api/v1/products/{id}` and `GET /api/v1/products?q=…`; then,
//! if the release binary is built, `emporium up`'s time to ready and idle RSS.
//!
//! `cargo build --release -p emporium && cargo bench -p emporium-bench`
//! (BENCH_SECONDS and BENCH_CONCURRENCY tune the load.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

use bytes::Bytes;
use emporium::load;
use emporium_platform::config::Settings;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The baseline: hyper answering a fixed body of a product's size.
async fn minimal_server(body: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let body = body.clone();
                    async move {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn row(name: &str, report: &load::Report, baseline: &load::Report) {
    println!(
        "{name:<34} {report}   throughput {:.2}x of minimal, p50 {:.1}x, p99 {:.1}x",
        report.rps() / baseline.rps(),
        report.p50.as_secs_f64() / baseline.p50.as_secs_f64().max(1e-9),
        report.p99.as_secs_f64() / baseline.p99.as_secs_f64().max(1e-9)
    );
}

async fn startup() {
    let Ok(bench) = std::env::current_exe() else {
        return;
    };
    let Some(binary) = bench
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("emporium"))
    else {
        return;
    };
    if !binary.exists() {
        println!("start-up: skipped, build the binary first: cargo build --release -p emporium");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&binary)
        .args(["up", "--data-dir"])
        .arg(dir.path())
        .args([
            "--set",
            "gateway.http_addr=127.0.0.1:28080",
            "--set",
            "catalog.http_addr=127.0.0.1:28006",
        ])
        .args([
            "--set",
            "catalog.grpc_addr=127.0.0.1:25050",
            "--set",
            "log.level=warn",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The banner is printed once every service answers and the demo
    // catalog is seeded.
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ready = None;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
    {
        if line.contains("ready in") {
            ready = Some(started.elapsed());
            break;
        }
    }
    match ready {
        Some(t) => println!(
            "start-up: {} ms from exec to the ready banner (fresh data dir, demo catalog seeded); target < 2000 ms",
            t.as_millis()
        ),
        None => println!("start-up: no ready banner within 30 s"),
    }
    let answered = reqwest::get("http://127.0.0.1:28080/api/v1/products?per_page=1")
        .await
        .is_ok_and(|r| r.status().is_success());
    assert!(answered, "the shop answers after its banner");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_kib = child
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
        });
    if let Some(kib) = rss_kib {
        println!(
            "idle RSS: {:.1} MiB two seconds after the banner; target < 100 MiB",
            kib as f64 / 1024.0
        );
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[tokio::main]
async fn main() {
    let seconds = Duration::from_secs(env_number("BENCH_SECONDS", 5));
    let concurrency = env_number("BENCH_CONCURRENCY", 16) as usize;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::ephemeral(dir.path());
    // One client address sends everything here: the per-address limits
    // would measure 429s, not the proxy.
    settings.update_section::<emporium_gateway::GatewaySettings>(|g| {
        g.api_per_address = 0;
        g.api_per_user = 0;
    });
    let shop = emporium::up(settings, true).await.unwrap().running;
    let gateway = shop.url("gateway").unwrap();

    let page: serde_json::Value = reqwest::get(format!("{gateway}/api/v1/products?per_page=20"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    let product_urls: Vec<String> = items
        .iter()
        .map(|p| format!("{gateway}/api/v1/products/{}", p["id"].as_str().unwrap()))
        .collect();
    let sample = serde_json::to_vec(&items[0]).unwrap();
    let search_urls: Vec<String> = ["coffee", "wool", "cast iron", "bat", "light"]
        .iter()
        .map(|q| {
            format!(
                "{gateway}/api/v1/products?q={}&per_page=10",
                q.replace(' ', "%20")
            )
        })
        .collect();
    let minimal = minimal_server(Bytes::from(sample)).await;
    let minimal_urls = vec![format!("http://{minimal}/")];

    // Warm-up: fills the product cache and the connection pools.
    load::run(&product_urls, concurrency, Duration::from_secs(1))
        .await
        .unwrap();
    load::run(&minimal_urls, concurrency, Duration::from_secs(1))
        .await
        .unwrap();

    println!(
        "loopback, {concurrency} connections, {} s per scenario, one process on {} cores",
        seconds.as_secs(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let baseline = load::run(&minimal_urls, concurrency, seconds)
        .await
        .unwrap();
    row("minimal hyper server", &baseline, &baseline);
    let cached = load::run(&product_urls, concurrency, seconds)
        .await
        .unwrap();
    row("gateway → catalog, cached get", &cached, &baseline);
    let search = load::run(&search_urls, concurrency, seconds).await.unwrap();
    row("gateway → catalog, search q=…", &search, &baseline);
    shop.stop(Duration::from_secs(5)).await;

    startup().await;
}
