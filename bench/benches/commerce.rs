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

use std::path::{Path, PathBuf};

use emporium_bench::load::{self, lua};
use emporium_bench::shop::{self, Layout, Product};
use emporium_bench::{Wrk, env_number, installed, row, spawn, wrk};

const SKUS: usize = 64;
/// Concurrent customers in the checkout scenario.
const CHECKOUT_CLIENTS: u64 = 16;

/// An admin token from identity's store under `dir`.
async fn token(binary: &Path, dir: &Path, settings: &[String]) -> String {
    shop::token(binary, dir, "admin", "dev-admin", settings, &[])
        .await
        .unwrap()
}

/// Puts a billion units of each bench SKU in both warehouses, and 900
/// million of each product in the first (for checkouts).
async fn stock(inventory: &str, token: &str, products: &[Product]) {
    shop::stock(
        inventory,
        token,
        &shop::bench_stock(SKUS, products, 900_000_000),
    )
    .await
    .unwrap();
}

/// wrk scripts: reservations of one unit (one SKU, or one of 64 at
/// random), adds of one product to one of a million baskets, checkouts.
fn scripts(dir: &Path, token: &str, products: &[Product]) -> [PathBuf; 4] {
    let ids: Vec<String> = products.iter().map(|p| p.id.clone()).collect();
    [
        ("hot", lua::reserve_hot(token)),
        ("spread", lua::reserve_spread(token, SKUS)),
        ("basket", lua::basket_add(token, &ids)),
        ("checkout", lua::checkout(&[token.to_owned()], &ids)),
    ]
    .map(|(name, text)| load::script(dir, name, &text).unwrap())
}

/// `pgbench -b tpcb-like` TPS on a scratch database of the same server.
async fn pgbench(url: &str, connections: u64, seconds: u64) -> f64 {
    load::pgbench(url, connections, seconds).await.unwrap()
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
    scripts: &[PathBuf; 4],
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
    let up_layout = Layout::fixed();
    let mut up_args = vec!["up".to_owned()];
    up_args.extend(up_layout.set_flags());
    let (up, _) = spawn(&binary, up_dir.path(), &up_args, None).await;
    let up_token = token(&binary, up_dir.path(), &[]).await;
    let products = shop::products(&up_layout.url("catalog")).await.unwrap();
    stock(&up_layout.url("inventory"), &up_token, &products).await;
    let up_scripts = scripts(up_dir.path(), &up_token, &products);

    // Baselines, on the servers the distributed run uses.
    let pgbench_url = format!("{postgres_url}/{db}");
    load::pgbench_init(&pgbench_url).await.unwrap();
    let tps = pgbench(&pgbench_url, connections, seconds).await;
    let tps16 = pgbench(&pgbench_url, CHECKOUT_CLIENTS, seconds).await;
    let sets = load::redis_set(&redis_url, connections).await.unwrap();

    let embedded = measure(
        &Targets {
            inventory: &up_layout.url("inventory"),
            basket: &up_layout.url("basket"),
            ordering: &up_layout.url("ordering"),
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
    let layout = Layout::free().unwrap();
    let mut settings = layout.set_flags();
    for setting in [
        format!("inventory.database_url={postgres_url}/{db}"),
        format!("ordering.database_url={postgres_url}/{orders_db}"),
        format!("payment.database_url={postgres_url}/{payments_db}"),
        format!("basket.redis_prefix=bench-{}", std::process::id()),
        format!("basket.redis_url={redis_url}"),
    ] {
        settings.extend(["--set".to_owned(), setting]);
    }
    let seeded = tokio::process::Command::new(&binary)
        .args(["seed", "identity", "catalog", "--data-dir"])
        .arg(serve_dir.path())
        .args(&settings)
        .output()
        .await
        .unwrap();
    assert!(seeded.status.success(), "{seeded:?}");
    let mut args: Vec<String> = [
        "serve",
        "identity",
        "catalog",
        "inventory",
        "basket",
        "payment",
        "ordering",
    ]
    .map(str::to_owned)
    .into();
    args.extend(settings.iter().cloned());
    let ready = format!("{}/ready", layout.url("ordering"));
    let (served, _) = spawn(&binary, serve_dir.path(), &args, Some(&ready)).await;
    let serve_token = token(&binary, serve_dir.path(), &settings).await;
    let products = shop::products(&layout.url("catalog")).await.unwrap();
    stock(&layout.url("inventory"), &serve_token, &products).await;
    let serve_scripts = scripts(serve_dir.path(), &serve_token, &products);
    let distributed = measure(
        &Targets {
            inventory: &layout.url("inventory"),
            basket: &layout.url("basket"),
            ordering: &layout.url("ordering"),
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
