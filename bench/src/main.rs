//! `emporium-bench`: every row of issue 24's table in one run on loopback,
//! each Emporium figure beside its baseline measured in the same run, the
//! load always from a process other than the one measured. Prints one
//! table and writes it with every measurement to `--out` (JSON and
//! markdown). `bench/run` builds it and the shop, then runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod distributed;
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use emporium_bench::load::{self, Shopper, lua};
use emporium_bench::shop::{self, Layout, Ready, Started};
use emporium_bench::{bare, rss_mib, wrk};

use crate::distributed::{Scratch, Servers};
use crate::report::{Measured, Results};

#[derive(Parser, Debug)]
#[command(about = "Issue 24's table: the shop beside its baselines, in one run")]
struct Args {
    /// Where the results go (results.json, results.md); made if missing.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// The shop's binary (default: `emporium` beside this program).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Seconds of load for each measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connections of the read, reservation and basket loads (and of the
    /// pgbench and redis-benchmark baselines they are put beside).
    #[arg(long, default_value_t = 32)]
    connections: u64,
    /// Customers checking out at once.
    #[arg(long, default_value_t = 16)]
    customers: u64,
    /// Fresh starts of `up` timed to the banner (the median is reported).
    #[arg(long, default_value_t = 3)]
    starts: usize,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres_url: String,
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    mysql_url: String,
    /// A database for the bench alone: the distributed shop's caches and,
    /// under a prefix of the run, its baskets and keys go there, and
    /// redis-benchmark's one key; what they wrote is deleted at the end.
    #[arg(long, default_value = "redis://127.0.0.1:6379/13")]
    redis_url: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672")]
    amqp_url: String,
    /// Leave out the distributed shop.
    #[arg(long)]
    no_distributed: bool,
    /// Also time a cold `cargo build --release -p emporium` in an empty
    /// target directory (about 15 minutes on 2 cores).
    #[arg(long)]
    cold_build: bool,
    /// The repository, for the cold build and the commit named in the report.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
    repo: PathBuf,
}

/// The product searched for in the search rows.
const SEARCH: &str = "coffee";
/// Units of each product stocked for the checkouts.
const STOCK_EACH: i64 = 900_000_000;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => shop::beside_this_program()
            .context("no `emporium` beside this program: cargo build --release -p emporium")?,
    };
    if !emporium_bench::installed("wrk") {
        bail!("wrk is not installed (apt-get install wrk): every row needs it");
    }
    std::fs::create_dir_all(&args.out)?;
    let work = tempfile::tempdir()?;
    let servers = Servers {
        postgres: args.postgres_url.trim_end_matches('/').to_owned(),
        mysql: args.mysql_url.trim_end_matches('/').to_owned(),
        redis: args.redis_url.clone(),
        amqp: args.amqp_url.trim_end_matches('/').to_owned(),
    };
    let mut results = Results::new(
        &args.repo,
        &binary,
        &command_line(),
        (args.customers.max(1), args.connections),
    );
    say(&format!(
        "{} on {} ({} cores, {}); results to {}",
        binary.display(),
        results.machine.cpu,
        results.machine.cores,
        results.machine.memory,
        args.out.display()
    ));
    let busy: f64 = results
        .machine
        .load
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    if busy > results.machine.cores as f64 / 2.0 {
        results.note(format!(
            "the machine was busy at the start (load average {busy:.1} on {} cores): other work moves the figures, the ratios less",
            results.machine.cores
        ));
    }
    let mut scratch = Scratch::new();
    let started = Instant::now();
    let bench = Bench {
        args: &args,
        binary: &binary,
        work: work.path(),
        servers: &servers,
    };
    let measured = tokio::select! {
        r = measure(&bench, &mut scratch, &mut results) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // The processes went with the future; the stores made stay until now.
    for line in scratch.remove(&servers).await {
        say(&line);
    }
    if let Err(e) = &measured {
        results.note(format!("the run stopped early: {e:#}"));
    }
    results.seconds = started.elapsed().as_secs_f64();
    let table = results.table();
    println!();
    println!("{}", results.heading());
    println!("{table}");
    for note in &results.notes {
        println!("- {note}");
    }
    results.write(&args.out)?;
    say(&format!(
        "wrote {} and {}",
        args.out.join("results.json").display(),
        args.out.join("results.md").display()
    ));
    measured
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn say(line: &str) {
    println!("[{}] {line}", chrono::Local::now().format("%H:%M:%S"));
}

/// What every phase is given.
struct Bench<'a> {
    args: &'a Args,
    binary: &'a Path,
    /// A temporary folder for data dirs and scripts.
    work: &'a Path,
    servers: &'a Servers,
}

/// Every phase in turn; a phase that fails is noted and the next runs.
async fn measure(
    bench: &Bench<'_>,
    scratch: &mut Scratch,
    results: &mut Results,
) -> anyhow::Result<()> {
    let baselines = Baselines::prepare(bench, scratch).await;
    if let Err(e) = up_phase(bench, &baselines, results).await {
        results.note(format!("`up`: {e:#}"));
    }
    if bench.args.no_distributed {
        results.note("distributed: left out (--no-distributed)".into());
    } else if let Err(e) = distributed_phase(bench, &baselines, scratch, results).await {
        results.note(format!("distributed: {e:#}"));
    }
    if bench.args.cold_build {
        say("cold build: cargo build --release -p emporium in an empty target directory");
        match cold_build(&bench.args.repo, bench.work).await {
            Ok(took) => results.put("build.cold", Measured::Value(took.as_secs_f64())),
            Err(e) => results.put("build.cold", Measured::Failed(format!("{e:#}"))),
        }
    }
    Ok(())
}

fn up_args(layout: &Layout) -> Vec<String> {
    let mut args = vec!["up".to_owned()];
    args.extend(layout.set_flags());
    // One client address and a few users send everything: the edge's
    // limits would measure 429s, not the shop.
    for limit in ["gateway.api_per_address=0", "gateway.api_per_user=0"] {
        args.extend(["--set".to_owned(), limit.to_owned()]);
    }
    args
}

async fn up_phase(
    bench: &Bench<'_>,
    baselines: &Baselines,
    results: &mut Results,
) -> anyhow::Result<()> {
    let Bench {
        args, binary, work, ..
    } = *bench;
    // Fresh data dirs; the last start stays up for the load.
    let mut shop = None;
    let (mut stated, mut wall) = (vec![], vec![]);
    for n in 0..args.starts.max(1) {
        let layout = Layout::free()?;
        let dir = work.join(format!("up-{n}"));
        let started = shop::start(
            binary,
            &dir,
            &up_args(&layout),
            &[],
            Ready::Banner,
            Duration::from_secs(60),
        )
        .await
        .context("emporium up")?;
        stated.push(started.stated.unwrap_or(started.took).as_secs_f64() * 1000.0);
        wall.push(started.took.as_secs_f64() * 1000.0);
        results.put(
            "up.services",
            Measured::Value(started.services.len() as f64),
        );
        results.up_services.clone_from(&started.services);
        say(&format!(
            "up #{}: ready in {:.0} ms by its banner, {:.0} ms from exec, {} services",
            n + 1,
            stated[n],
            wall[n],
            started.services.len()
        ));
        if let Some((old, _, _)) = shop.replace((started, layout, dir)) {
            Started::stop(old).await;
        }
    }
    results.put("up.start.banner_ms", Measured::Series(stated));
    results.put("up.start.exec_ms", Measured::Series(wall));
    let (up, layout, dir) = shop.context("no start")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = up.pid().context("up has exited")?;
    if let Some(mib) = rss_mib(pid) {
        results.put("up.rss.idle", Measured::Value(mib));
    }

    let gateway = layout.url("gateway");
    let (admin, shoppers, products) = prepare(bench, &dir, &[], &gateway).await?;
    let catalog_db = format!("sqlite://{}?mode=ro", dir.join("catalog.db").display());
    let target = Target {
        mode: "up",
        gateway: &gateway,
        admin: &admin,
        shoppers: &shoppers,
        products: &products,
        catalog_db: &catalog_db,
        scripts: work.join("up-scripts"),
    };
    reads(args, &target, results).await;
    writes(args, baselines, &target, results).await;
    say("up: flows, one customer at a time, then 16 at once");
    let ids: Vec<String> = products.iter().map(|p| p.id.clone()).collect();
    let seconds = Duration::from_secs(args.seconds);
    let one = load::flows(&gateway, &shoppers[..1], &ids, seconds).await;
    results.put("up.flows.1", Measured::Flows(one));
    let many = load::flows(&gateway, &shoppers, &ids, seconds).await;
    results.put(
        &format!("up.flows.{}", shoppers.len()),
        Measured::Flows(many),
    );
    failed_orders("up", &gateway, &admin, results).await;
    if let Some(mib) = rss_mib(pid) {
        results.put("up.rss.after", Measured::Value(mib));
    }
    up.stop().await;
    Ok(())
}

/// What the loads need of a shop whose identity store `data_dir` and
/// `env` configure: an admin's token, the customers `bench-shopper-N` with
/// theirs, the products, and stock for them all.
async fn prepare(
    bench: &Bench<'_>,
    data_dir: &Path,
    env: &[(String, String)],
    gateway: &str,
) -> anyhow::Result<(String, Vec<Shopper>, Vec<shop::Product>)> {
    let mint = |role, subject: String| async move {
        shop::token(bench.binary, data_dir, role, &subject, &[], env).await
    };
    let admin = mint("admin", "bench-admin".to_owned()).await?;
    let mut shoppers = vec![];
    for n in 0..bench.args.customers.max(1) {
        let subject = format!("bench-shopper-{n}");
        let token = mint("customer", subject.clone()).await?;
        shoppers.push(Shopper { subject, token });
    }
    let products = shop::products(gateway).await?;
    shop::stock(
        gateway,
        &admin,
        &shop::bench_stock(1, &products, STOCK_EACH),
    )
    .await?;
    Ok((admin, shoppers, products))
}

/// A running shop as the loads see it.
struct Target<'a> {
    /// `up` or `distributed`: the prefix of its measurements.
    mode: &'static str,
    gateway: &'a str,
    admin: &'a str,
    shoppers: &'a [Shopper],
    products: &'a [shop::Product],
    /// The catalog's database, for the bare handler.
    catalog_db: &'a str,
    scripts: PathBuf,
}

/// Reads through the gateway, each beside its bare ceiling, in pairs.
async fn reads(args: &Args, target: &Target<'_>, results: &mut Results) {
    let mode = target.mode;
    let (c, s) = (args.connections, args.seconds);
    say(&format!(
        "{mode}: reads through the gateway beside their bare ceilings"
    ));
    let product = &target.products[0].id;
    let by_id = format!("{}/api/v1/products/{product}", target.gateway);
    let body = match reqwest::get(&by_id).await {
        Ok(r) => r.bytes().await.unwrap_or_default(),
        Err(_) => Bytes::new(),
    };
    let fixed = bare::fixed_body(body).await;
    let mut pairs = vec![("by_id", format!("http://{fixed}/"), by_id)];
    let list = "/api/v1/products?per_page=20".to_owned();
    let search = format!("/api/v1/products?q={SEARCH}&per_page=20");
    let catalog = bare::catalog_reads(target.catalog_db).await;
    match &catalog {
        Ok(catalog) => {
            for (name, path) in [("list", &list), ("search", &search)] {
                let ours = format!("http://{}{path}", catalog.addr);
                let theirs = format!("{}{path}", target.gateway);
                if let Some(difference) = differ(&ours, &theirs).await {
                    results.note(format!(
                        "{mode}: the bare {name} answers otherwise than the catalog ({difference}): has the catalog's SQL changed? (bench/src/bare.rs)"
                    ));
                }
                pairs.push((name, ours, theirs));
            }
        }
        Err(e) => {
            for name in ["list", "search"] {
                results.put(
                    &format!("{mode}.read.{name}.bare"),
                    Measured::Failed(format!("{e:#}")),
                );
            }
        }
    }
    for (name, bare_url, shop_url) in pairs {
        // Warm: the product cached, the pools full.
        wrk(&bare_url, c, 2, None).await;
        wrk(&shop_url, c, 2, None).await;
        let bare = wrk(&bare_url, c, s, None).await;
        let shop = wrk(&shop_url, c, s, None).await;
        say(&format!(
            "{mode}: {name}: bare {:.0}/s, through the gateway {:.0}/s",
            bare.rps, shop.rps
        ));
        results.put(&format!("{mode}.read.{name}.bare"), Measured::Wrk(bare));
        results.put(&format!("{mode}.read.{name}"), Measured::Wrk(shop));
    }
    if let Ok(catalog) = catalog {
        catalog.close().await;
    }
}

/// Where the bare handler's page and the catalog's differ: the total or
/// the ids in order.
async fn differ(ours: &str, theirs: &str) -> Option<String> {
    async fn page(url: &str) -> Option<(u64, Vec<String>)> {
        let v: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
        let ids = v["items"]
            .as_array()?
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect();
        Some((v["total"].as_u64()?, ids))
    }
    match (page(ours).await, page(theirs).await) {
        (Some(a), Some(b)) if a == b => None,
        (Some((ta, ia)), Some((tb, ib))) => Some(format!(
            "total {ta} against {tb}, {} against {} items",
            ia.len(),
            ib.len()
        )),
        (a, b) => Some(format!(
            "bare answered: {}, the catalog: {}",
            a.is_some(),
            b.is_some()
        )),
    }
}

/// The shop's writes through the gateway: one checkout at a time, basket
/// adds, reservations of one hot SKU, and checkouts by many customers;
/// each load just after the baseline it is divided by, so that both meet
/// the same machine.
async fn writes(args: &Args, baselines: &Baselines, target: &Target<'_>, results: &mut Results) {
    let mode = target.mode;
    let (c, s) = (args.connections, args.seconds);
    let ids: Vec<String> = target.products.iter().map(|p| p.id.clone()).collect();
    let tokens: Vec<String> = target.shoppers.iter().map(|s| s.token.clone()).collect();
    let scripts = (|| -> anyhow::Result<_> {
        std::fs::create_dir_all(&target.scripts)?;
        Ok([
            load::script(
                &target.scripts,
                "checkout-one",
                &lua::checkout(&tokens[..1], &ids),
            )?,
            load::script(
                &target.scripts,
                "basket",
                &lua::basket_add(target.admin, &ids),
            )?,
            load::script(&target.scripts, "hot", &lua::reserve_hot(target.admin))?,
            load::script(&target.scripts, "checkout", &lua::checkout(&tokens, &ids))?,
        ])
    })();
    let scripts = match scripts {
        Ok(s) => s,
        Err(e) => {
            results.note(format!("{mode}: writes not measured: {e:#}"));
            return;
        }
    };
    let orders = format!("{}/api/v1/orders", target.gateway);
    say(&format!("{mode}: one checkout at a time"));
    wrk(&orders, 1, 2, Some(&scripts[0])).await;
    let one = wrk(&orders, 1, s, Some(&scripts[0])).await;
    results.put(&format!("{mode}.checkout.1"), Measured::Wrk(one));
    say(&format!("{mode}: redis-benchmark SET, then basket adds"));
    results.put(
        &format!("{mode}.base.redis.set"),
        baselines.redis_set(c).await,
    );
    let basket = wrk(target.gateway, c, s, Some(&scripts[1])).await;
    results.put(&format!("{mode}.basket.add"), Measured::Wrk(basket));
    say(&format!("{mode}: reservations of one hot SKU"));
    baselines.pgbench_once(mode, c, s, results).await;
    let reserve = format!("{}/api/v1/inventory/reserve", target.gateway);
    let hot = wrk(&reserve, c, s, Some(&scripts[2])).await;
    results.put(&format!("{mode}.reserve.hot"), Measured::Wrk(hot));
    let customers = target.shoppers.len();
    say(&format!(
        "{mode}: checkouts by {customers} customers at once"
    ));
    baselines
        .pgbench_once(mode, customers as u64, s, results)
        .await;
    let many = wrk(&orders, customers as u64, s, Some(&scripts[3])).await;
    results.put(&format!("{mode}.checkout.{customers}"), Measured::Wrk(many));
}

/// How many orders ended `failed`, and why the latest did.
async fn failed_orders(mode: &str, gateway: &str, admin: &str, results: &mut Results) {
    let answer = async {
        let page: serde_json::Value = reqwest::Client::new()
            .get(format!("{gateway}/api/v1/orders?status=failed&per_page=1"))
            .bearer_auth(admin)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let total = page["total"].as_u64().context("no total")?;
        let reason = page["items"][0]["failure_reason"]
            .as_str()
            .map(str::to_owned);
        anyhow::Ok((total, reason))
    };
    let measured = match answer.await {
        Ok((total, reason)) => {
            if let Some(reason) = reason {
                results.note(format!(
                    "{mode}: {total} orders failed, the latest for: {reason}"
                ));
            }
            Measured::Value(total as f64)
        }
        Err(e) => Measured::Failed(format!("{e:#}")),
    };
    results.put(&format!("{mode}.orders.failed"), measured);
}

/// Where the baselines run: pgbench (tpcb-like, scale 10) on a scratch
/// database of the PostgreSQL the distributed shop uses, redis-benchmark
/// on its Redis; or why they cannot.
struct Baselines {
    pgbench: Result<String, String>,
    redis: Result<String, String>,
}

impl Baselines {
    async fn prepare(bench: &Bench<'_>, scratch: &mut Scratch) -> Self {
        let redis = if emporium_bench::installed("redis-benchmark") {
            Ok(bench.servers.redis.clone())
        } else {
            Err("redis-benchmark is not installed (apt-get install redis-tools)".to_owned())
        };
        let pgbench = if emporium_bench::installed("pgbench") {
            say("baseline: pgbench -i -s 10 on a scratch database");
            let made = async {
                let url = scratch.postgres_database(bench.servers, "pgbench").await?;
                load::pgbench_init(&url).await?;
                anyhow::Ok(url)
            };
            made.await.map_err(|e| format!("{e:#}"))
        } else {
            Err("pgbench is not installed (Debian: apt-get install postgresql-15)".to_owned())
        };
        Self { pgbench, redis }
    }

    /// pgbench with `clients` as `mode`'s baseline, unless measured
    /// already.
    async fn pgbench_once(&self, mode: &str, clients: u64, seconds: u64, results: &mut Results) {
        let key = format!("{mode}.base.pgbench.{clients}");
        if results.has(&key) {
            return;
        }
        say(&format!("{mode}: pgbench -c{clients}"));
        let measured = match &self.pgbench {
            Ok(url) => Measured::from(load::pgbench(url, clients, seconds).await),
            Err(why) => Measured::Failed(why.clone()),
        };
        results.put(&key, measured);
    }

    async fn redis_set(&self, clients: u64) -> Measured {
        match &self.redis {
            Ok(url) => Measured::from(load::redis_set(url, clients).await),
            Err(why) => Measured::Failed(why.clone()),
        }
    }
}

async fn distributed_phase(
    bench: &Bench<'_>,
    baselines: &Baselines,
    scratch: &mut Scratch,
    results: &mut Results,
) -> anyhow::Result<()> {
    let Bench {
        args,
        binary,
        work,
        servers,
    } = *bench;
    // pgbench first: once the ten services' pools are open, the server
    // (100 connections by default, shared with whatever else runs) may not
    // take pgbench's clients.
    for clients in [args.connections, args.customers] {
        baselines
            .pgbench_once("distributed", clients, args.seconds, results)
            .await;
    }
    say("distributed: scratch stores, migrations, ten `serve` processes, demo data");
    let shop = distributed::start(binary, work, servers, scratch).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (service, process) in &shop.processes {
        if let Some(mib) = process.pid().and_then(rss_mib) {
            results.put(
                &format!("distributed.rss.idle.{service}"),
                Measured::Value(mib),
            );
        }
    }
    let gateway = shop.layout.url("gateway");
    let (admin, shoppers, products) = prepare(bench, &shop.data_dir, &shop.env, &gateway).await?;
    let target = Target {
        mode: "distributed",
        gateway: &gateway,
        admin: &admin,
        shoppers: &shoppers,
        products: &products,
        catalog_db: &shop.catalog_url,
        scripts: work.join("distributed-scripts"),
    };
    reads(args, &target, results).await;
    writes(args, baselines, &target, results).await;
    if let Ok((ours, all, limit)) = scratch.postgres_connections(servers).await {
        results.note(format!(
            "distributed: at the end the shop held {ours} PostgreSQL connections; the server had {all} of its {limit} open"
        ));
    }
    failed_orders("distributed", &gateway, &admin, results).await;
    shop.stop().await;
    Ok(())
}

/// `cargo build --release -p emporium` from nothing: its wall time.
async fn cold_build(repo: &Path, work: &Path) -> anyhow::Result<Duration> {
    let target = work.join("cold-target");
    let started = Instant::now();
    let status = tokio::process::Command::new("cargo")
        .args(["build", "--release", "--locked", "-p", "emporium"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo)
        .status()
        .await?;
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&target);
    if !status.success() {
        bail!("cargo build: {status}");
    }
    Ok(took)
}
