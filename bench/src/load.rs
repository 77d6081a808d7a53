//! The load, always from a process other than the one measured: wrk on
//! loopback (Lua scripts for the shop's writes), the servers' own
//! benchmarks (pgbench, redis-benchmark), and shoppers' whole flows (a
//! basket add, then the basket's checkout) timed from this process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::percentile;

/// The mock processor's card that always pays.
pub const CARD: &str = "4242424242424242";

/// What wrk measured.
#[derive(Clone, Debug)]
pub struct Wrk {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Answers outside 2xx and 3xx.
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
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
/// wrk wants a connection per thread), with a Lua `script` when given. A
/// request may take 10 s before wrk counts it as a timeout. When wrk
/// cannot run, the figures are NaN and `errors` is set.
pub async fn wrk(url: &str, connections: u64, seconds: u64, script: Option<&Path>) -> Wrk {
    let mut command = tokio::process::Command::new("wrk");
    command.args([
        &format!("-t{}", connections.clamp(1, 2)),
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--timeout",
        "10s",
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let text = match command.arg(url).output().await {
        Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
        Err(_) => String::new(),
    };
    parse_wrk(&text)
}

/// wrk's report (`--latency`) as figures; NaN where a line is missing.
fn parse_wrk(text: &str) -> Wrk {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("nan")
            .to_owned()
    };
    let non_2xx = field("Non-2xx or 3xx responses:").parse().unwrap_or(0);
    // "Socket errors: connect 0, read 0, write 0, timeout 12"
    let socket_errors = text
        .lines()
        .find(|l| l.trim().starts_with("Socket errors:"))
        .map(|l| {
            l.split([',', ' '])
                .filter_map(|w| w.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let rps: f64 = field("Requests/sec:").parse().unwrap_or(f64::NAN);
    Wrk {
        rps,
        p50_ms: millis(&field("50%")),
        p99_ms: millis(&field("99%")),
        requests,
        non_2xx,
        socket_errors,
        errors: non_2xx > 0 || socket_errors > 0 || !rps.is_finite(),
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

/// wrk's Lua scripts for the shop's writes, each POSTing JSON with a
/// bearer token.
pub mod lua {
    fn head(token: &str) -> String {
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
        )
    }

    fn list(items: &[String]) -> String {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A reservation of one unit of `BENCH-0` (to `/api/v1/inventory/reserve`).
    pub fn reserve_hot(token: &str) -> String {
        format!(
            "{}wrk.body = '{{\"lines\":[{{\"sku\":\"BENCH-0\",\"quantity\":1}}],\"ttl_secs\":3600}}'\n",
            head(token)
        )
    }

    /// A reservation of one unit of one of `BENCH-0`..`BENCH-{skus-1}`.
    pub fn reserve_spread(token: &str, skus: usize) -> String {
        format!(
            "{}request = function()\n  local body = '{{\"lines\":[{{\"sku\":\"BENCH-' .. math.random(0, {}) .. '\",\"quantity\":1}}],\"ttl_secs\":3600}}'\n  return wrk.format(nil, nil, nil, body)\nend\n",
            head(token),
            skus - 1
        )
    }

    /// An add of one of `ids` to one of a million baskets (an admin may
    /// write any basket).
    pub fn basket_add(token: &str, ids: &[String]) -> String {
        format!(
            "{}local ids = {{{}}}\nrequest = function()\n  local path = '/api/v1/baskets/u' .. math.random(1, 1000000) .. '/items'\n  return wrk.format(nil, path, nil, '{{\"product_id\":\"' .. ids[math.random(1, #ids)] .. '\"}}')\nend\n",
            head(token),
            list(ids)
        )
    }

    /// A checkout (`POST /api/v1/orders`) of one of `ids`, paid with the
    /// card that always pays, by one of `tokens`' customers at random.
    pub fn checkout(tokens: &[String], ids: &[String]) -> String {
        format!(
            "local tokens = {{{}}}\nlocal ids = {{{}}}\nrequest = function()\n  local body = '{{\"items\":[{{\"product_id\":\"' .. ids[math.random(1, #ids)] .. '\",\"quantity\":1}}],\"card_number\":\"{}\"}}'\n  local headers = {{[\"Content-Type\"] = \"application/json\", [\"Authorization\"] = \"Bearer \" .. tokens[math.random(1, #tokens)]}}\n  return wrk.format(\"POST\", '/api/v1/orders', headers, body)\nend\n",
            list(tokens),
            list(ids),
            super::CARD
        )
    }
}

/// Writes a Lua script to `dir/name.lua`.
pub fn script(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, text)?;
    Ok(path)
}

async fn run_tool(tool: &str, args: &[String]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(tool)
        .args(args)
        .output()
        .await
        .with_context(|| format!("cannot run {tool}"))?;
    if !output.status.success() {
        bail!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `pgbench -i -s 10`: the tpcb-like tables in the database at `url`.
pub async fn pgbench_init(url: &str) -> anyhow::Result<()> {
    run_tool("pgbench", &["-i", "-q", "-s", "10", url].map(str::to_owned))
        .await
        .map(|_| ())
}

/// Connections the PostgreSQL server at `url` takes still, and its limit.
async fn postgres_room(url: &str) -> anyhow::Result<(i64, i64)> {
    use sea_orm::sqlx::{self, Connection};
    let mut connection = sqlx::PgConnection::connect(url).await?;
    let (limit, open): (i32, i64) = sqlx::query_as(
        "SELECT current_setting('max_connections')::int, (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
    )
    .fetch_one(&mut connection)
    .await?;
    // This connection closes before pgbench connects.
    Ok((i64::from(limit) - open + 1, i64::from(limit)))
}

/// `pgbench -b tpcb-like` TPS with as many clients, on the database at
/// `url` (made by [`pgbench_init`]). The server's other clients (the
/// shop's pools, other programs) may leave too few connections: it waits
/// up to 30 s for room, then says so instead of measuring.
pub async fn pgbench(url: &str, connections: u64, seconds: u64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (free, limit) = postgres_room(url).await?;
        if free >= connections as i64 + 2 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "not run: PostgreSQL takes {free} more connections of its {limit} (other clients hold the rest) and pgbench -c{connections} needs {connections}"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let args = [
        "-b".to_owned(),
        "tpcb-like".to_owned(),
        "-c".to_owned(),
        connections.to_string(),
        "-j".to_owned(),
        "2".to_owned(),
        "-T".to_owned(),
        seconds.to_string(),
        url.to_owned(),
    ];
    let text = run_tool("pgbench", &args).await?;
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .context("no `tps = ` in pgbench's output")
}

/// `redis-benchmark` SET requests/s with as many clients, on the server and
/// database of `url` (`redis://host:port/db`).
pub async fn redis_set(url: &str, connections: u64) -> anyhow::Result<f64> {
    let url = reqwest::Url::parse(url)?;
    let db = url.path().trim_start_matches('/');
    let args = [
        "-h".to_owned(),
        url.host_str().unwrap_or("127.0.0.1").to_owned(),
        "-p".to_owned(),
        url.port().unwrap_or(6379).to_string(),
        "--dbnum".to_owned(),
        if db.is_empty() { "0" } else { db }.to_owned(),
        "-t".to_owned(),
        "set".to_owned(),
        "-n".to_owned(),
        "200000".to_owned(),
        "-q".to_owned(),
        "-c".to_owned(),
        connections.to_string(),
    ];
    let text = run_tool("redis-benchmark", &args).await?;
    // Progress lines end in `\r`; the result is the line that says
    // "SET: 123456.78 requests per second".
    text.split(['\r', '\n'])
        .find(|l| l.contains("requests per second"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no `requests per second` in redis-benchmark's output")
}

/// A customer of the flows: the basket's owner and their token.
#[derive(Clone, Debug)]
pub struct Shopper {
    pub subject: String,
    pub token: String,
}

/// Shoppers' whole flows, timed from the first request to the answer of
/// the last.
#[derive(Clone, Debug)]
pub struct Flows {
    pub flows: u64,
    pub failed: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The first failure's status and body, for the report.
    pub first_failure: Option<String>,
}

/// Every shopper at once, each on its own connection, for `duration`: add
/// one unit of a product (each in turn of `products`) to their basket
/// through the gateway at `base`, then check out the basket with the card
/// that pays; a flow counts when the order comes back confirmed.
pub async fn flows(
    base: &str,
    shoppers: &[Shopper],
    products: &[String],
    duration: Duration,
) -> Flows {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers = shoppers.iter().enumerate().map(|(n, shopper)| {
        let base = base.to_owned();
        let shopper = shopper.clone();
        let products = products.to_vec();
        async move {
            let http = reqwest::Client::new();
            let mut times = vec![];
            let (mut failed, mut first_failure) = (0, None);
            let mut turn = n;
            while Instant::now() < deadline {
                turn += 1;
                let product = &products[turn % products.len()];
                let began = Instant::now();
                match flow(&http, &base, &shopper, product).await {
                    Ok(()) => times.push(began.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        failed += 1;
                        first_failure.get_or_insert(e.to_string());
                    }
                }
            }
            (times, failed, first_failure)
        }
    });
    let mut times = vec![];
    let (mut failed, mut first_failure) = (0, None);
    for (t, f, first) in futures::future::join_all(workers).await {
        times.extend(t);
        failed += f;
        first_failure = first_failure.or(first);
    }
    let elapsed = started.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    Flows {
        flows: times.len() as u64,
        failed,
        per_second: times.len() as f64 / elapsed,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        first_failure,
    }
}

async fn flow(
    http: &reqwest::Client,
    base: &str,
    shopper: &Shopper,
    product: &str,
) -> anyhow::Result<()> {
    let added = http
        .post(format!("{base}/api/v1/baskets/{}/items", shopper.subject))
        .bearer_auth(&shopper.token)
        .json(&serde_json::json!({ "product_id": product, "quantity": 1 }))
        .send()
        .await?;
    let status = added.status();
    if !status.is_success() {
        bail!("basket add: {status} {}", snippet(&added.text().await?));
    }
    let ordered = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(&shopper.token)
        .json(&serde_json::json!({ "card_number": CARD }))
        .send()
        .await?;
    let status = ordered.status();
    let body = ordered.text().await?;
    let order: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status.as_u16() != 201 || order["status"] != "confirmed" {
        bail!("checkout: {status} {}", snippet(&body));
    }
    Ok(())
}

fn snippet(body: &str) -> String {
    body.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://127.0.0.1:8080/api/v1/orders
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   165.45ms  200.10ms   1.11s    88.00%
    Req/Sec    40.00     10.00    60.00     70.00%
  Latency Distribution
     50%  165.45ms
     75%  200.00ms
     90%  400.00ms
     99%    1.11s
  782 requests in 10.03s, 1.20MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:     77.97
Transfer/sec:    122.00KB
";

    #[test]
    fn wrk_report_gives_rate_latencies_and_every_error() {
        let run = parse_wrk(REPORT);
        assert!((run.rps - 77.97).abs() < 1e-9);
        assert!((run.p50_ms - 165.45).abs() < 1e-9);
        assert!((run.p99_ms - 1110.0).abs() < 1e-9);
        assert_eq!(run.requests, 782);
        assert_eq!(run.non_2xx, 4);
        assert_eq!(run.socket_errors, 5);
        assert!(run.errors);
    }

    #[test]
    fn no_report_is_no_figure() {
        let run = parse_wrk("");
        assert!(run.rps.is_nan() && run.p50_ms.is_nan());
        assert!(run.errors);
    }

    #[test]
    fn microseconds_and_seconds_become_milliseconds() {
        assert!((millis("850.00us") - 0.85).abs() < 1e-9);
        assert!((millis("2.50s") - 2500.0).abs() < 1e-9);
    }
}
