//! Side-by-side benchmarks: each scenario is measured next to a baseline
//! taken in the same run, and reported as a ratio. The helpers every
//! bench shares: the shop's binary in a process of its own, wrk, RSS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

/// `emporium up` on fixed loopback ports (28xxx HTTP, 25xxx gRPC), so that
/// a bench can reach each service.
pub const UP: &[&str] = &[
    "up",
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
    "--set",
    "inventory.http_addr=127.0.0.1:28002",
    "--set",
    "inventory.grpc_addr=127.0.0.1:25054",
    "--set",
    "basket.http_addr=127.0.0.1:28007",
    "--set",
    "basket.grpc_addr=127.0.0.1:25051",
    "--set",
    "payment.http_addr=127.0.0.1:28003",
    "--set",
    "payment.grpc_addr=127.0.0.1:25052",
    "--set",
    "ordering.http_addr=127.0.0.1:28001",
    "--set",
    "ordering.grpc_addr=127.0.0.1:25053",
    "--set",
    "recommendation.http_addr=127.0.0.1:28008",
    "--set",
    "recommendation.grpc_addr=127.0.0.1:25057",
    "--set",
    "notification.http_addr=127.0.0.1:28005",
    "--set",
    "notification.grpc_addr=127.0.0.1:25056",
    "--set",
    "storefront.http_addr=127.0.0.1:23000",
    "--set",
    "gateway.internal_addr=127.0.0.1:29080",
];

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The release binary beside the bench, or `None` after saying how to
/// build it; also `None` when wrk is missing.
pub fn binary() -> Option<PathBuf> {
    let found = std::env::current_exe()
        .ok()
        .and_then(|bench| Some(bench.parent()?.parent()?.join("emporium")))
        .filter(|b| b.exists());
    if found.is_none() {
        println!("skipped: build the binary first: cargo build --release -p emporium");
        return None;
    }
    if !installed("wrk") {
        println!("skipped: wrk is not installed (apt-get install wrk)");
        return None;
    }
    found
}

/// Whether `tool --version` runs.
pub fn installed(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok()
}

/// The shop's binary running `args` in its own process, returned once it is
/// ready (at most 30 s) with the time that took: `up` when it prints its
/// banner, `serve` when `ready_url` answers 200.
pub async fn spawn(
    binary: &Path,
    data_dir: &Path,
    args: &[&str],
    ready_url: Option<&str>,
) -> (tokio::process::Child, Duration) {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--log-format", "json", "--set", "log.level=warn"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = started + Duration::from_secs(30);
    match ready_url {
        None => {
            let mut ready = false;
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout_at(deadline.into(), lines.next_line()).await
            {
                if line.contains("ready in") {
                    ready = true;
                    break;
                }
            }
            assert!(ready, "a ready banner within 30 s");
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        }
        Some(url) => {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            loop {
                if let Ok(r) = reqwest::get(url).await
                    && r.status().is_success()
                {
                    break;
                }
                assert!(Instant::now() < deadline, "{url} ready within 30 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    (child, started.elapsed())
}

/// What wrk measured.
pub struct Wrk {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: bool,
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

/// wrk `--latency` on `url` from two threads (one for one connection:
/// wrk wants a connection per thread), with a Lua `script` when given.
pub async fn wrk(url: &str, connections: u64, seconds: u64, script: Option<&Path>) -> Wrk {
    let mut command = tokio::process::Command::new("wrk");
    command.args([
        &format!("-t{}", connections.clamp(1, 2)),
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().await.expect("wrk runs");
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

/// One table row: throughput, latency and the ratio to `baseline` (per
/// second, whatever it counts).
pub fn row(name: &str, run: &Wrk, baseline: f64) {
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {:.2}x |{}",
        run.rps,
        run.p50_ms,
        run.p99_ms,
        run.rps / baseline,
        if run.errors { " errors!" } else { "" }
    );
}

pub fn rss_mib(pid: u32) -> Option<f64> {
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
