//! Stock reservations and basket writes, the shop in its own process and
//! loaded by wrk, each next to a baseline measured in the same run on the
//! same server: `pgbench -b tpcb-like` TPS for reservations, and
//! `redis-benchmark` SET for basket adds.
//!
//! - `emporium up` (SQLite, in-process events): reservations on one hot SKU
//!   and on 64 SKUs, and adds to random baskets (SQL store).
//! - `emporium serve identity catalog inventory basket` with inventory on
//!   PostgreSQL and baskets on Redis: the same three.
//!
//! `cargo build --release -p emporium && cargo bench -p emporium-bench --bench commerce`
//! (BENCH_SECONDS, BENCH_CONNECTIONS; EMPORIUM_BENCH_POSTGRES_URL and
//! EMPORIUM_BENCH_REDIS_URL name the servers, loopback defaults; wrk,
//! pgbench and redis-benchmark from apt.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use emporium_bench::{Wrk, env_number, installed, row, spawn, wrk};

const SKUS: usize = 64;

/// A development token from identity's store under `dir`.
async fn token(binary: &Path, dir: &Path, settings: &[&str]) -> String {
    let output = tokio::process::Command::new(binary)
        .args(["token", "--role", "admin", "--data-dir"])
        .arg(dir)
        .args(settings)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Puts a billion units of each bench SKU in both warehouses.
async fn stock(inventory: &str, token: &str) {
    let http = reqwest::Client::new();
    for i in 0..SKUS {
        for warehouse in ["east", "west"] {
            let response = http
                .post(format!("{inventory}/api/v1/inventory/adjust"))
                .bearer_auth(token)
                .json(&serde_json::json!({
                    "sku": format!("BENCH-{i}"), "warehouse": warehouse,
                    "delta": 1_000_000_000, "reason": "benchmark stock"
                }))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
        }
    }
}

/// The ids of the catalog's products.
async fn product_ids(catalog: &str) -> Vec<String> {
    let page: serde_json::Value = reqwest::get(format!("{catalog}/api/v1/products?per_page=100"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

/// wrk scripts: reservations of one unit (one SKU, or one of 64 at
/// random), and adds of one product to one of a million baskets.
fn scripts(dir: &Path, token: &str, ids: &[String]) -> [std::path::PathBuf; 3] {
    let head = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
    );
    let hot = format!(
        "{head}wrk.body = '{{\"lines\":[{{\"sku\":\"BENCH-0\",\"quantity\":1}}],\"ttl_secs\":3600}}'\n"
    );
    let spread = format!(
        "{head}request = function()\n  local body = '{{\"lines\":[{{\"sku\":\"BENCH-' .. math.random(0, {}) .. '\",\"quantity\":1}}],\"ttl_secs\":3600}}'\n  return wrk.format(nil, nil, nil, body)\nend\n",
        SKUS - 1
    );
    let list = ids
        .iter()
        .map(|id| format!("\"{id}\""))
        .collect::<Vec<_>>()
        .join(",");
    let basket = format!(
        "{head}local ids = {{{list}}}\nrequest = function()\n  local path = '/api/v1/baskets/u' .. math.random(1, 1000000) .. '/items'\n  return wrk.format(nil, path, nil, '{{\"product_id\":\"' .. ids[math.random(1, #ids)] .. '\"}}')\nend\n"
    );
    let mut paths = vec![];
    for (name, text) in [("hot", hot), ("spread", spread), ("basket", basket)] {
        let path = dir.join(format!("{name}.lua"));
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    paths.try_into().unwrap()
}

/// `pgbench -b tpcb-like` TPS on a scratch database of the same server.
async fn pgbench(db: &str, connections: u64, seconds: u64) -> f64 {
    let run = |args: Vec<String>| async move {
        let output = tokio::process::Command::new("pgbench")
            .args(["-h", "127.0.0.1", "-U", "postgres"])
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(vec![
        "-i".into(),
        "-q".into(),
        "-s".into(),
        "10".into(),
        db.into(),
    ])
    .await;
    let text = run(vec![
        "-b".into(),
        "tpcb-like".into(),
        "-c".into(),
        connections.to_string(),
        "-j".into(),
        "2".into(),
        "-T".into(),
        seconds.to_string(),
        db.into(),
    ])
    .await;
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `redis-benchmark` SET requests/s with as many clients.
async fn redis_set(connections: u64) -> f64 {
    let output = tokio::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-t", "set", "-n", "200000", "-q", "-c"])
        .arg(connections.to_string())
        .output()
        .await
        .unwrap();
    // Progress lines end in `\r`; the result is the line that says
    // "SET: 123456.78 requests per second".
    String::from_utf8_lossy(&output.stdout)
        .split(['\r', '\n'])
        .find(|l| l.contains("requests per second"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

async fn postgres(args: &[&str]) -> bool {
    tokio::process::Command::new(args[0])
        .args(["-h", "127.0.0.1", "-U", "postgres"])
        .args(&args[1..])
        .status()
        .await
        .is_ok_and(|s| s.success())
}

struct Runs {
    hot: Wrk,
    spread: Wrk,
    basket: Wrk,
}

async fn measure(
    inventory: &str,
    basket: &str,
    scripts: &[std::path::PathBuf; 3],
    connections: u64,
    seconds: u64,
) -> Runs {
    wrk(inventory, connections, 2, Some(&scripts[1])).await;
    Runs {
        hot: wrk(inventory, connections, seconds, Some(&scripts[0])).await,
        spread: wrk(inventory, connections, seconds, Some(&scripts[1])).await,
        basket: wrk(basket, connections, seconds, Some(&scripts[2])).await,
    }
}

fn table(mode: &str, runs: &Runs, tps: f64, sets: f64) {
    row(
        &format!("{mode}: reserve 1 unit, one hot SKU"),
        &runs.hot,
        tps,
    );
    row(
        &format!("{mode}: reserve 1 unit, 64 SKUs"),
        &runs.spread,
        tps,
    );
    row(&format!("{mode}: add to a basket"), &runs.basket, sets);
}

#[tokio::main]
async fn main() {
    let seconds = env_number("BENCH_SECONDS", 10);
    let connections = env_number("BENCH_CONNECTIONS", 32);
    let Some(binary) = emporium_bench::binary() else {
        return;
    };
    for tool in ["pgbench", "redis-benchmark", "createdb"] {
        if !installed(tool) {
            println!("skipped: {tool} is not installed");
            return;
        }
    }
    let postgres_url = std::env::var("EMPORIUM_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let redis_url = std::env::var("EMPORIUM_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let db = format!("emporium_bench_{}", std::process::id());
    assert!(postgres(&["createdb", &db]).await, "createdb {db}");

    // The whole shop on embedded stores.
    let up_dir = tempfile::tempdir().unwrap();
    let (up, _) = spawn(&binary, up_dir.path(), emporium_bench::UP, None).await;
    let up_token = token(&binary, up_dir.path(), &[]).await;
    stock("http://127.0.0.1:28002", &up_token).await;
    let ids = product_ids("http://127.0.0.1:28006").await;
    let up_scripts = scripts(up_dir.path(), &up_token, &ids);

    // Baselines, on the servers the distributed run uses.
    let tps = pgbench(&db, connections, seconds).await;
    let sets = redis_set(connections).await;

    let embedded = measure(
        "http://127.0.0.1:28002/api/v1/inventory/reserve",
        "http://127.0.0.1:28007",
        &up_scripts,
        connections,
        seconds,
    )
    .await;
    drop(up);

    // Inventory on PostgreSQL and baskets on Redis, in a process of their own.
    let serve_dir = tempfile::tempdir().unwrap();
    let inventory_db = format!("inventory.database_url={postgres_url}/{db}");
    let prefix = format!("basket.redis_prefix=bench-{}", std::process::id());
    let redis = format!("basket.redis_url={redis_url}");
    let settings = [
        "--set",
        "catalog.http_addr=127.0.0.1:38006",
        "--set",
        "catalog.grpc_addr=127.0.0.1:35050",
        "--set",
        "identity.http_addr=127.0.0.1:38004",
        "--set",
        "identity.grpc_addr=127.0.0.1:35055",
        "--set",
        "inventory.http_addr=127.0.0.1:38002",
        "--set",
        "inventory.grpc_addr=127.0.0.1:35054",
        "--set",
        "basket.http_addr=127.0.0.1:38007",
        "--set",
        "basket.grpc_addr=127.0.0.1:35051",
        "--set",
        &inventory_db,
        "--set",
        &redis,
        "--set",
        &prefix,
    ];
    let seeded = tokio::process::Command::new(&binary)
        .args(["seed", "identity", "catalog", "--data-dir"])
        .arg(serve_dir.path())
        .args(settings)
        .output()
        .await
        .unwrap();
    assert!(seeded.status.success(), "{seeded:?}");
    let mut args = vec!["serve", "identity", "catalog", "inventory", "basket"];
    args.extend(settings);
    let (served, _) = spawn(
        &binary,
        serve_dir.path(),
        &args,
        Some("http://127.0.0.1:38007/ready"),
    )
    .await;
    let serve_token = token(&binary, serve_dir.path(), &settings).await;
    stock("http://127.0.0.1:38002", &serve_token).await;
    let ids = product_ids("http://127.0.0.1:38006").await;
    let serve_scripts = scripts(serve_dir.path(), &serve_token, &ids);
    let distributed = measure(
        "http://127.0.0.1:38002/api/v1/inventory/reserve",
        "http://127.0.0.1:38007",
        &serve_scripts,
        connections,
        seconds,
    )
    .await;
    drop(served);
    let _ = postgres(&["dropdb", &db]).await;

    println!(
        "wrk -t2 -c{connections} -d{seconds}s on loopback, {} cores; the shop in its own process",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "baselines: pgbench -b tpcb-like -c{connections}: {tps:.0} TPS; redis-benchmark SET -c{connections}: {sets:.0} req/s"
    );
    println!("| scenario | req/s | p50 ms | p99 ms | of baseline |");
    println!("|---|---|---|---|---|");
    table("up (SQLite)", &embedded, tps, sets);
    table("serve (PostgreSQL, Redis)", &distributed, tps, sets);
}
