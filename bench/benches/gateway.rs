//! The shop as a newcomer runs it (`emporium up`, release build, its own
//! process) against a bare hyper server answering the same product bytes
//! (this process), both loaded by wrk (a third process) on loopback:
//! cached `GET /api/v1/products/{id}` at the catalog's own port and through
//! the gateway, and a search through the gateway; the storefront's home and
//! product pages beside the cached JSON of the same product, loaded and at
//! one connection (a page's own server time). Also `up`'s time to ready and
//! idle RSS.
//!
//! `cargo build --release -p emporium && cargo bench -p emporium-bench`
//! (BENCH_SECONDS and BENCH_CONNECTIONS tune the load; wrk from apt.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use emporium_bench::bare::fixed_body;
use emporium_bench::shop::Layout;
use emporium_bench::{env_number, row, rss_mib, spawn, wrk};

#[tokio::main]
async fn main() {
    let seconds = env_number("BENCH_SECONDS", 10);
    let connections = env_number("BENCH_CONNECTIONS", 32);
    let Some(binary) = emporium_bench::binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["up".to_owned()];
    args.extend(Layout::fixed().set_flags());
    // One client address sends everything here: the per-address limits
    // would measure 429s, not the shop.
    for limit in ["gateway.api_per_address=0", "gateway.api_per_user=0"] {
        args.extend(["--set".to_owned(), limit.to_owned()]);
    }
    let (mut shop, ready) = spawn(&binary, dir.path(), &args, None).await;
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
    let bare = fixed_body(Bytes::from(serde_json::to_vec(product).unwrap())).await;
    let by_id = format!("/api/v1/products/{id}");

    // Warm-up: the product in the cache, the pools full.
    for url in [format!("{gateway}{by_id}"), format!("http://{bare}/")] {
        wrk(&url, connections, 2, None).await;
    }
    println!(
        "wrk -t2 -c{connections} -d{seconds}s on loopback, {} cores; the shop in its own process",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| scenario | req/s | p50 ms | p99 ms | of bare |");
    println!("|---|---|---|---|---|");
    let baseline = wrk(&format!("http://{bare}/"), connections, seconds, None).await;
    row("bare hyper server, same bytes", &baseline, baseline.rps);
    let direct = wrk(
        &format!("http://127.0.0.1:28006{by_id}"),
        connections,
        seconds,
        None,
    )
    .await;
    row(
        "catalog's own port, cached get by id",
        &direct,
        baseline.rps,
    );
    let through = wrk(&format!("{gateway}{by_id}"), connections, seconds, None).await;
    row(
        "gateway → catalog in-process, cached get by id",
        &through,
        baseline.rps,
    );
    let search = wrk(
        &format!("{gateway}/api/v1/products?q=coffee&per_page=10"),
        connections,
        seconds,
        None,
    )
    .await;
    row("gateway → catalog, search q=coffee", &search, baseline.rps);
    println!(
        "gateway cost: {:.0} % of the catalog's own throughput",
        100.0 * through.rps / direct.rps
    );

    // The storefront's pages, each beside the cached JSON of the product it
    // shows: the page adds the stock, the recommendations, the categories
    // and the template to the same catalog read.
    let product_page = format!("/products/{id}");
    wrk(&format!("{gateway}{product_page}"), connections, 2, None).await;
    println!();
    println!("| page, through the gateway | req/s | p50 ms | p99 ms | of the cached JSON |");
    println!("|---|---|---|---|---|");
    row("cached JSON `/api/v1/products/{id}`", &through, through.rps);
    let home = wrk(&format!("{gateway}/"), connections, seconds, None).await;
    row("home `/`", &home, through.rps);
    let page = wrk(
        &format!("{gateway}{product_page}"),
        connections,
        seconds,
        None,
    )
    .await;
    row("product page `/products/{id}`", &page, through.rps);
    let own = wrk(
        &format!("http://127.0.0.1:23000{product_page}"),
        connections,
        seconds,
        None,
    )
    .await;
    row(
        "product page at the storefront's own port",
        &own,
        through.rps,
    );
    // One connection: no queue, so the latency is the page's own time
    // (plus loopback and wrk's).
    println!();
    println!(
        "| one connection, through the gateway | req/s | p50 ms | p99 ms | of the cached JSON |"
    );
    println!("|---|---|---|---|---|");
    let json_alone = wrk(&format!("{gateway}{by_id}"), 1, seconds, None).await;
    row(
        "cached JSON `/api/v1/products/{id}`",
        &json_alone,
        json_alone.rps,
    );
    let home_alone = wrk(&format!("{gateway}/"), 1, seconds, None).await;
    row("home `/`", &home_alone, json_alone.rps);
    let page_alone = wrk(&format!("{gateway}{product_page}"), 1, seconds, None).await;
    row("product page `/products/{id}`", &page_alone, json_alone.rps);
    let own_alone = wrk(
        &format!("http://127.0.0.1:23000{product_page}"),
        1,
        seconds,
        None,
    )
    .await;
    row(
        "product page at the storefront's own port",
        &own_alone,
        json_alone.rps,
    );
    println!(
        "product page server time at the storefront's port, one connection: p50 {:.2} ms, p99 {:.2} ms (goal: under 5 ms)",
        own_alone.p50_ms, own_alone.p99_ms
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
