//! Stock reservations and basket writes, the shop in its own process and
//! loaded by wrk, each next to a baseline measured in the same run on the
//! same server: `pgbench -b tpcb-like` TPS for reservations, and
//! `redis-benchmark` SET for basket adds.
//!
//! - `emporium up` (SQLite, in-process events): reservations on one hot SKU
//!   and on 64 SKUs, and adds to random baskets (SQL store).
//! - `emporium serve identity catalog inventory basket payment ordering`
//!   with inventory, ordering and payment on PostgreSQL and baskets on
//!   Redis: the same three.
//!
//! Then checkouts (`POST /orders` of one random product, the whole saga)
//! with 16 concurrent customers in each, against `pgbench -c16`.
//!
//! `cargo build --release -p emporium && cargo bench -p emporium-bench --bench commerce`
//! (BENCH_SECONDS, BENCH_CONNECTIONS; EMPORIUM_BENCH_POSTGRES_URL and
//! EMPORIUM_BENCH_REDIS_URL name the servers, loopback defaults; wrk,
//! pgbench and redis-benchmark from apt.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use emporium_bench::{Wrk, env_number, installed, row, spawn, wrk};

const SKUS: usize = 64;
/// Concurrent customers in the checkout scenario.
const CHECKOUT_CLIENTS: u64 = 16;

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

/// Puts a billion units of each bench SKU in both warehouses, and 900
/// million of each product in `skus` in the first (for checkouts).
async fn stock(inventory: &str, token: &str, skus: &[String]) {
    let http = reqwest::Client::new();
    let bench = (0..SKUS).flat_map(|i| {
        ["east", "west"].map(|warehouse| (format!("BENCH-{i}"), warehouse, 1_000_000_000))
    });
    // The demo products hold a few units already; the total stays in bounds.
    let demo = skus.iter().map(|sku| (sku.clone(), "east", 900_000_000));
    for (sku, warehouse, delta) in bench.chain(demo) {
        let response = http
            .post(format!("{inventory}/api/v1/inventory/adjust"))
            .bearer_auth(token)
            .json(&serde_json::json!({
                "sku": sku, "warehouse": warehouse,
                "delta": delta, "reason": "benchmark stock"
            }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
}

/// The ids and SKUs of the catalog's products.
async fn products(catalog: &str) -> (Vec<String>, Vec<String>) {
    let page: serde_json::Value = reqwest::get(format!("{catalog}/api/v1/products?per_page=100"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    let field = |name: &str| {
        items
            .iter()
            .map(|p| p[name].as_str().unwrap().to_owned())
            .collect()
    };
    (field("id"), field("sku"))
}

/// wrk scripts: reservations of one unit (one SKU, or one of 64 at
/// random), and adds of one product to one of a million baskets.
fn scripts(dir: &Path, token: &str, ids: &[String]) -> [std::path::PathBuf; 4] {
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
    let checkout = format!(
        "{head}local ids = {{{list}}}\nrequest = function()\n  local body = '{{\"items\":[{{\"product_id\":\"' .. ids[math.random(1, #ids)] .. '\"}}],\"card_number\":\"4242424242424242\"}}'\n  return wrk.format(nil, '/api/v1/orders', nil, body)\nend\n"
    );
    let mut paths = vec![];
    for (name, text) in [
        ("hot", hot),
        ("spread", spread),
        ("basket", basket),
        ("checkout", checkout),
    ] {
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
    checkout: Wrk,
    /// Checkouts that did not confirm.
    failed: u64,
}

/// The service addresses a run loads: inventory, basket, ordering.
struct Targets<'a> {
    inventory: &'a str,
    basket: &'a str,
    ordering: &'a str,
}

async fn measure(
    targets: &Targets<'_>,
    scripts: &[std::path::PathBuf; 4],
    token: &str,
    connections: u64,
    seconds: u64,
) -> Runs {
    let reserve = format!("{}/api/v1/inventory/reserve", targets.inventory);
    wrk(&reserve, connections, 2, Some(&scripts[1])).await;
    let hot = wrk(&reserve, connections, seconds, Some(&scripts[0])).await;
    let spread = wrk(&reserve, connections, seconds, Some(&scripts[1])).await;
    let basket = wrk(targets.basket, connections, seconds, Some(&scripts[2])).await;
    let checkout = wrk(
        targets.ordering,
        CHECKOUT_CLIENTS,
        seconds,
        Some(&scripts[3]),
    )
    .await;
    let failed: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/orders?status=failed&per_page=1",
            targets.ordering
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Runs {
        hot,
        spread,
        basket,
        checkout,
        failed: failed["total"].as_u64().unwrap_or(u64::MAX),
    }
}

fn table(mode: &str, runs: &Runs, (tps, tps16, sets): (f64, f64, f64)) {
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
    row(
        &format!(
            "{mode}: checkout, {CHECKOUT_CLIENTS} customers ({} failed)",
            runs.failed
        ),
        &runs.checkout,
        tps16,
    );
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
    let (orders_db, payments_db) = (format!("{db}_orders"), format!("{db}_payments"));
    for name in [&db, &orders_db, &payments_db] {
        assert!(postgres(&["createdb", name]).await, "createdb {name}");
    }

    // The whole shop on embedded stores.
    let up_dir = tempfile::tempdir().unwrap();
    let (up, _) = spawn(&binary, up_dir.path(), emporium_bench::UP, None).await;
    let up_token = token(&binary, up_dir.path(), &[]).await;
    let (ids, skus) = products("http://127.0.0.1:28006").await;
    stock("http://127.0.0.1:28002", &up_token, &skus).await;
    let up_scripts = scripts(up_dir.path(), &up_token, &ids);

    // Baselines, on the servers the distributed run uses.
    let tps = pgbench(&db, connections, seconds).await;
    let tps16 = pgbench(&db, CHECKOUT_CLIENTS, seconds).await;
    let sets = redis_set(connections).await;

    let embedded = measure(
        &Targets {
            inventory: "http://127.0.0.1:28002",
            basket: "http://127.0.0.1:28007",
            ordering: "http://127.0.0.1:28001",
        },
        &up_scripts,
        &up_token,
        connections,
        seconds,
    )
    .await;
    drop(up);

    // Inventory on PostgreSQL and baskets on Redis, in a process of their own.
    let serve_dir = tempfile::tempdir().unwrap();
    let inventory_db = format!("inventory.database_url={postgres_url}/{db}");
    let ordering_db = format!("ordering.database_url={postgres_url}/{orders_db}");
    let payment_db = format!("payment.database_url={postgres_url}/{payments_db}");
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
        "payment.http_addr=127.0.0.1:38003",
        "--set",
        "payment.grpc_addr=127.0.0.1:35052",
        "--set",
        "ordering.http_addr=127.0.0.1:38001",
        "--set",
        "ordering.grpc_addr=127.0.0.1:35053",
        "--set",
        &inventory_db,
        "--set",
        &ordering_db,
        "--set",
        &payment_db,
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
    let mut args = vec![
        "serve",
        "identity",
        "catalog",
        "inventory",
        "basket",
        "payment",
        "ordering",
    ];
    args.extend(settings);
    let (served, _) = spawn(
        &binary,
        serve_dir.path(),
        &args,
        Some("http://127.0.0.1:38001/ready"),
    )
    .await;
    let serve_token = token(&binary, serve_dir.path(), &settings).await;
    let (ids, skus) = products("http://127.0.0.1:38006").await;
    stock("http://127.0.0.1:38002", &serve_token, &skus).await;
    let serve_scripts = scripts(serve_dir.path(), &serve_token, &ids);
    let distributed = measure(
        &Targets {
            inventory: "http://127.0.0.1:38002",
            basket: "http://127.0.0.1:38007",
            ordering: "http://127.0.0.1:38001",
        },
        &serve_scripts,
        &serve_token,
        connections,
        seconds,
    )
    .await;
    drop(served);
    for name in [&db, &orders_db, &payments_db] {
        let _ = postgres(&["dropdb", name]).await;
    }

    println!(
        "wrk -t2 -c{connections} -d{seconds}s on loopback, {} cores; the shop in its own process",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "baselines: pgbench -b tpcb-like -c{connections}: {tps:.0} TPS, -c{CHECKOUT_CLIENTS}: {tps16:.0} TPS; redis-benchmark SET -c{connections}: {sets:.0} req/s"
    );
    println!("| scenario | req/s | p50 ms | p99 ms | of baseline |");
    println!("|---|---|---|---|---|");
    table("up (SQLite)", &embedded, (tps, tps16, sets));
    table(
        "serve (PostgreSQL, Redis)",
        &distributed,
        (tps, tps16, sets),
    );
}
