//! The shop as a newcomer runs it (`emporium up`, release build, its own
//! process) against a bare hyper server answering the same product bytes
//! (this process), both loaded by wrk (a third process) on loopback:
//! cached `GET /api/v1/products/{id}` at the catalog's own port and through
//! the gateway, and a search through the gateway. Also `up`'s time to ready
//! and idle RSS.
//!
//! `cargo build --release -p emporium && cargo bench -p emporium-bench`
//! (BENCH_SECONDS and BENCH_CONNECTIONS tune the load; wrk from apt.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncBufReadExt;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The baseline: hyper answering a fixed body of a product's size.
async fn bare_server(body: Bytes) -> SocketAddr {
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

/// What wrk measured.
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: bool,
}

fn millis(text: &str) -> f64 {
    let (number, unit) = text
        .find(|c: char| c.is_alphabetic())
        .map(|i| text.split_at(i))
        .unwrap_or((text, "ms"));
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1000.0,
        "s" => value * 1000.0,
        _ => value,
    }
}

async fn wrk(url: &str, connections: u64, seconds: u64) -> Wrk {
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .await
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("nan")
            .to_owned()
    };
    Wrk {
        rps: field("Requests/sec:").parse().unwrap_or(f64::NAN),
        p50_ms: millis(&field("50%")),
        p99_ms: millis(&field("99%")),
        errors: text.contains("Non-2xx") || text.contains("Socket errors"),
    }
}

fn row(name: &str, run: &Wrk, baseline: &Wrk) {
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {:.2}x |{}",
        run.rps,
        run.p50_ms,
        run.p99_ms,
        run.rps / baseline.rps,
        if run.errors { " errors!" } else { "" }
    );
}

fn rss_mib(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<f64>()
        .ok()
        .map(|kib| kib / 1024.0)
}

#[tokio::main]
async fn main() {
    let seconds = env_number("BENCH_SECONDS", 10);
    let connections = env_number("BENCH_CONNECTIONS", 32);
    let Some(binary) = std::env::current_exe()
        .ok()
        .and_then(|bench| Some(bench.parent()?.parent()?.join("emporium")))
        .filter(|b| b.exists())
    else {
        println!("skipped: build the binary first: cargo build --release -p emporium");
        return;
    };
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: wrk is not installed (apt-get install wrk)");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut shop = tokio::process::Command::new(&binary)
        .args(["up", "--data-dir"])
        .arg(dir.path())
        .args(["--log-format", "json"])
        .args([
            "--set",
            "log.level=warn",
            "--set",
            "gateway.http_addr=127.0.0.1:28080",
            "--set",
            "catalog.http_addr=127.0.0.1:28006",
            "--set",
            "catalog.grpc_addr=127.0.0.1:25050",
            "--set",
            "identity.http_addr=127.0.0.1:28004",
            "--set",
            "identity.grpc_addr=127.0.0.1:25055",
            // One client address sends everything here: the per-address
            // limits would measure 429s, not the shop.
            "--set",
            "gateway.api_per_address=0",
            "--set",
            "gateway.api_per_user=0",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The banner comes once every service answers and the demo data is in.
    let mut lines = tokio::io::BufReader::new(shop.stdout.take().unwrap()).lines();
    let mut ready = None;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
    {
        if line.contains("ready in") {
            ready = Some(started.elapsed());
            break;
        }
    }
    let ready = ready.expect("a ready banner within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = shop.id().unwrap();
    let idle = rss_mib(pid);

    let gateway = "http://127.0.0.1:28080";
    let page: serde_json::Value = reqwest::get(format!("{gateway}/api/v1/products?per_page=1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = &page["items"][0];
    let id = product["id"].as_str().unwrap();
    let bare = bare_server(Bytes::from(serde_json::to_vec(product).unwrap())).await;
    let by_id = format!("/api/v1/products/{id}");

    // Warm-up: the product in the cache, the pools full.
    for url in [format!("{gateway}{by_id}"), format!("http://{bare}/")] {
        wrk(&url, connections, 2).await;
    }
    println!(
        "wrk -t2 -c{connections} -d{seconds}s on loopback, {} cores; the shop in its own process",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| scenario | req/s | p50 ms | p99 ms | of bare |");
    println!("|---|---|---|---|---|");
    let baseline = wrk(&format!("http://{bare}/"), connections, seconds).await;
    row("bare hyper server, same bytes", &baseline, &baseline);
    let direct = wrk(
        &format!("http://127.0.0.1:28006{by_id}"),
        connections,
        seconds,
    )
    .await;
    row("catalog's own port, cached get by id", &direct, &baseline);
    let through = wrk(&format!("{gateway}{by_id}"), connections, seconds).await;
    row(
        "gateway → catalog in-process, cached get by id",
        &through,
        &baseline,
    );
    let search = wrk(
        &format!("{gateway}/api/v1/products?q=coffee&per_page=10"),
        connections,
        seconds,
    )
    .await;
    row("gateway → catalog, search q=coffee", &search, &baseline);
    println!(
        "gateway cost: {:.0} % of the catalog's own throughput",
        100.0 * through.rps / direct.rps
    );
    println!(
        "start-up: {} ms from exec to the ready banner (fresh data dir, demo data seeded)",
        ready.as_millis()
    );
    if let Some(mib) = idle {
        println!("idle RSS: {mib:.1} MiB two seconds after the banner");
    }
    if let Some(mib) = rss_mib(pid) {
        println!("RSS after the load: {mib:.1} MiB");
    }
    let _ = shop.start_kill();
    let _ = shop.wait().await;
}
