//! `emporium load`: virtual shoppers through the gateway's REST API, a
//! closed number of them or an open arrival rate, for a fixed time; a live
//! progress line, then a summary, a JSON report and an HTML page.

mod report;
mod shopper;
mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub use report::Report;
pub use shopper::STEPS;
use shopper::{Rng, Shop};
use stats::Recorder;

const DEFAULT_MIX: &str =
    "browse=20,search=15,product=25,add=15,quantity=5,checkout=10,orders=6,cancel=3";

/// What `emporium load` is told.
#[derive(clap::Args, Clone, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct Options {
    /// The gateway's base URL. Only loopback hosts (127.0.0.0/8, [::1],
    /// localhost) unless named by --allow-host.
    #[arg(default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Closed model: this many shoppers at once, each starting a new
    /// session when its last one ends (the default, with 16).
    #[arg(long, conflicts_with = "rate", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub users: Option<u32>,
    /// Open model: new shopper sessions per second, however many are still
    /// running.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open model: arrivals while this many sessions run are dropped (and
    /// counted).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_active: u32,
    /// How long to send load (`90s`, `5m`, `1h`, or seconds); it stops by
    /// itself then, finishing the requests in flight.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seeds every choice: the same seed makes the same sessions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Weights of a session's actions; the names left out keep their
    /// default, 0 turns one off.
    #[arg(long, default_value = DEFAULT_MIX, value_parser = Mix::parse)]
    pub mix: Mix,
    /// Share of checkouts paid with a test card that declines.
    #[arg(long, default_value_t = 0.15, value_parser = parse_share)]
    pub declined: f64,
    /// Share of sessions that sign in to an account an earlier session of
    /// this run made, rather than sign up.
    #[arg(long, default_value_t = 0.3, value_parser = parse_share)]
    pub returning: f64,
    /// Actions per session after signing on: `N` or `FEWEST..MOST`.
    #[arg(long, default_value = "5..20", value_parser = parse_actions)]
    pub actions: (u32, u32),
    /// Mean pause before each action (exponential, at most ten times this);
    /// `0s` for none.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub think: Duration,
    /// Longest wait for one answer.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A host that may be a target although it is not loopback (repeat for
    /// more).
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Where the report goes: PATH.json and PATH.html.
    #[arg(long, default_value = "load-report")]
    pub report: PathBuf,
    /// An admin token (`emporium token --role admin`), for --restock.
    #[arg(long, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Before the run, bring every SKU's available stock in each warehouse
    /// up to this many units, so that long runs do not sell out.
    #[arg(long, default_value_t = 0, requires = "admin_token")]
    pub restock: i64,
}

const AFTER_HELP: &str = "\
Against `emporium up`: every shopper comes from one address, and each session
signs up or in once, so the edge's per-address limits would answer most
requests with 429 (counted apart, not as errors of the shop). Start the shop
with them off:

  emporium up --set gateway.auth_per_address=0 --set gateway.api_per_address=0 \\
              --set gateway.api_per_user=0

The demo stock sells out within a minute of checkouts; for longer runs,
--restock 100000 --admin-token \"$(emporium token --role admin)\".

Exit status: 0 when no answer was a 5xx, every request had an answer and every
checkout ended confirmed or failed with a reason (the order's own); 1 otherwise.";

/// What a session may do after signing on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A category's product listing.
    Browse,
    /// A full-text search.
    Search,
    /// A product's page: the product, its stock, its recommendations.
    Product,
    Add,
    Quantity,
    /// The basket, then an order of it paid with a test card.
    Checkout,
    Orders,
    Cancel,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Browse,
        Action::Search,
        Action::Product,
        Action::Add,
        Action::Quantity,
        Action::Checkout,
        Action::Orders,
        Action::Cancel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Browse => "browse",
            Action::Search => "search",
            Action::Product => "product",
            Action::Add => "add",
            Action::Quantity => "quantity",
            Action::Checkout => "checkout",
            Action::Orders => "orders",
            Action::Cancel => "cancel",
        }
    }
}

/// The weight of each action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix([u64; 8]);

impl Mix {
    pub fn weight(&self, action: Action) -> u64 {
        self.0[action as usize]
    }

    /// `browse=20,checkout=5`: the names given change the default mix.
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut weights = [20, 15, 25, 15, 5, 10, 6, 3];
        let known = || {
            Action::ALL
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not NAME=WEIGHT (names: {})", known()))?;
            let action = Action::ALL
                .iter()
                .find(|a| a.name() == name.trim())
                .ok_or_else(|| format!("no action is called `{name}` (names: {})", known()))?;
            weights[*action as usize] = weight
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|w| *w <= 1_000_000)
                .ok_or_else(|| {
                    format!("the weight of {name} must be a whole number from 0 to 1000000, not `{weight}`")
                })?;
        }
        if weights.iter().all(|w| *w == 0) {
            return Err("at least one action needs a weight above 0".into());
        }
        Ok(Mix(weights))
    }

    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        Action::ALL
            .iter()
            .map(|a| (a.name(), self.weight(*a)))
            .collect()
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<String> = self
            .pairs()
            .iter()
            .map(|(name, weight)| format!("{name}={weight}"))
            .collect();
        f.write_str(&pairs.join(","))
    }
}

/// `250ms`, `90s`, `5m`, `1h`, or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 250ms, 90s, 5m or 1h"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1e3,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (ms, s, m or h)"
            ));
        }
    };
    if !(0.0..=7.0 * 86_400.0).contains(&seconds) {
        return Err(format!("`{text}` is longer than a week"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_share(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("`{text}` is not a share from 0 to 1"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && *v <= 10_000.0)
        .ok_or_else(|| {
            format!("`{text}` is not a rate of sessions per second above 0 and at most 10000")
        })
}

fn parse_actions(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{text}` is not N or FEWEST..MOST with 1 <= FEWEST <= MOST <= 1000");
    let (fewest, most) = match text.split_once("..") {
        Some((a, b)) => (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ),
        None => {
            let n = text.trim().parse().map_err(|_| bad())?;
            (n, n)
        }
    };
    if !(1..=most).contains(&fewest) || most > 1000 {
        return Err(bad());
    }
    Ok((fewest, most))
}

/// The target as a URL, if it may be sent load: a loopback host, or one
/// `allowed` names.
pub fn check_target(target: &str, allowed: &[String]) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(target).map_err(|e| {
        anyhow::anyhow!(
            "the target `{target}` is not a URL ({e}); give the gateway's, such as http://127.0.0.1:8080"
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("the target `{target}` must be an http:// or https:// URL");
    }
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    };
    if !loopback
        && !allowed
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(bare))
    {
        bail!(
            "refusing to send load to `{host}`: it is not a loopback address (127.0.0.0/8, [::1], localhost); \
             name it with --allow-host {bare} if it is a shop of yours"
        );
    }
    Ok(url)
}

/// What every session follows.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub mix: Mix,
    pub declined: f64,
    pub returning: f64,
    pub actions: (u32, u32),
    pub think: Duration,
    /// Tells this run's accounts and idempotency keys from an earlier
    /// run's against the same shop.
    pub tag: String,
}

/// Words of the catalog's product names, to search for; asking for them
/// also shows that the target is a shop that answers.
async fn catalog_words(http: &reqwest::Client, base: &str) -> anyhow::Result<Vec<String>> {
    let url = format!("{base}/api/v1/products?per_page=100");
    let response = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the shop at {base}: is it running?"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let Some(items) = body["items"].as_array().filter(|_| status.is_success()) else {
        bail!("{url} answered {status} without a product list: is {base} an Emporium gateway?");
    };
    let mut words: Vec<String> = items
        .iter()
        .filter_map(|p| p["name"].as_str())
        .flat_map(|name| name.split(|c: char| !c.is_alphanumeric()))
        .filter(|w| w.len() >= 4)
        .map(str::to_lowercase)
        .collect();
    words.sort();
    words.dedup();
    if words.is_empty() {
        bail!("the shop at {base} has no products to shop for (start it without --no-seed)");
    }
    Ok(words)
}

/// Tops every SKU's available stock in each warehouse up to `units`;
/// returns how many levels it raised.
async fn restock(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    units: i64,
) -> anyhow::Result<u64> {
    let mut raised = 0;
    for page in 1.. {
        let url = format!("{base}/api/v1/inventory?per_page=100&page={page}");
        let response = http.get(&url).bearer_auth(token).send().await?;
        let status = response.status();
        if !status.is_success() {
            bail!("restock: {url} answered {status} (is --admin-token an admin's?)");
        }
        let body: Value = response.json().await?;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        for level in &items {
            let available = level["available"].as_i64().unwrap_or(0);
            if available >= units {
                continue;
            }
            let adjustment = json!({
                "sku": level["sku"],
                "warehouse": level["warehouse"],
                "delta": units - available,
                "reason": "restocked for a load run",
            });
            let response = http
                .post(format!("{base}/api/v1/inventory/adjust"))
                .bearer_auth(token)
                .json(&adjustment)
                .send()
                .await?;
            if !response.status().is_success() {
                bail!(
                    "restock of {} in {}: {}",
                    level["sku"],
                    level["warehouse"],
                    response.status()
                );
            }
            raised += 1;
        }
        if items.len() < 100 {
            break;
        }
    }
    Ok(raised)
}

/// Runs the shoppers, prints the summary, writes the report files and
/// returns the report; [`Report::verdict`] says whether the run passed.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    let target = check_target(&options.target, &options.allow_hosts)?;
    let base = target.as_str().trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .build()?;
    let words = catalog_words(&http, &base).await?;
    if options.restock > 0 {
        let token = options.admin_token.as_deref().unwrap_or_default();
        let raised = restock(&http, &base, token, options.restock).await?;
        eprintln!(
            "restocked {raised} stock levels to {} units",
            options.restock
        );
    }
    let tag = format!(
        "{}-{:x}",
        options.seed,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let plan = Plan {
        seed: options.seed,
        mix: options.mix.clone(),
        declined: options.declined,
        returning: options.returning,
        actions: options.actions,
        think: options.think,
        tag,
    };
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let shop = Arc::new(Shop {
        http,
        base: base.clone(),
        plan,
        recorder: Arc::new(Mutex::new(Recorder::new(started))),
        deadline: started + options.duration,
        stop: AtomicBool::new(false),
        idle_accounts: Mutex::new(vec![]),
        words,
    });
    let interrupted = Arc::new(AtomicBool::new(false));
    let interrupt = {
        let shop = shop.clone();
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::Relaxed);
                shop.stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let (done, finished) = tokio::sync::oneshot::channel();
    let progress = tokio::spawn(progress(shop.clone(), options.duration, finished));
    match options.rate {
        Some(rate) => open_model(&shop, rate, options.max_active).await,
        None => closed_model(&shop, options.users.unwrap_or(16)).await,
    }
    let elapsed = started.elapsed();
    let _ = done.send(());
    let _ = progress.await;
    interrupt.abort();
    let report = {
        let recorder = shop
            .recorder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Report::new(
            &options,
            &base,
            started_at,
            elapsed,
            interrupted.load(Ordering::Relaxed),
            &recorder,
        )
    };
    print!("{}", report.summary());
    report.write(&options.report)?;
    println!(
        "report: {} and {}",
        options.report.with_extension("json").display(),
        options.report.with_extension("html").display()
    );
    Ok(report)
}

/// `users` shoppers, each running sessions back to back.
async fn closed_model(shop: &Arc<Shop>, users: u32) {
    let next = Arc::new(AtomicU64::new(0));
    let mut shoppers = tokio::task::JoinSet::new();
    for _ in 0..users {
        let shop = shop.clone();
        let next = next.clone();
        shoppers.spawn(async move {
            while !shop.over() {
                let session = next.fetch_add(1, Ordering::Relaxed);
                if !shopper::session(shop.clone(), session).await {
                    // A shop that cannot sign anyone on is not helped by
                    // a tight loop of new sessions.
                    let left = shop.deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(Duration::from_secs(1).min(left)).await;
                }
            }
        });
    }
    while shoppers.join_next().await.is_some() {}
}

/// New sessions at `rate` a second on average (exponential gaps), however
/// many are running, up to `max_active`.
async fn open_model(shop: &Arc<Shop>, rate: f64, max_active: u32) {
    let mut arrivals = Rng::new(shop.plan.seed, u64::MAX);
    let mut sessions = tokio::task::JoinSet::new();
    let mut next_at = Instant::now();
    let mut session = 0;
    loop {
        next_at += arrivals.pause(Duration::from_secs_f64(1.0 / rate));
        tokio::time::sleep_until(next_at.into()).await;
        if shop.over() {
            break;
        }
        while sessions.try_join_next().is_some() {}
        if sessions.len() >= max_active as usize {
            shop.record(|r| r.sessions.dropped += 1);
            continue;
        }
        sessions.spawn(shopper::session(shop.clone(), session));
        session += 1;
    }
    while sessions.join_next().await.is_some() {}
}

/// The live line: on a terminal a bar redrawn four times a second, else a
/// plain line every five seconds.
async fn progress(
    shop: Arc<Shop>,
    duration: Duration,
    mut finished: tokio::sync::oneshot::Receiver<()>,
) {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(duration.as_secs().max(1)),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:24}] {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let tick = if terminal {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    };
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = &mut finished => break,
            () = tokio::time::sleep(tick) => {}
        }
        let line = {
            let recorder = shop
                .recorder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            live_line(&recorder, Instant::now())
        };
        match &bar {
            Some(bar) => {
                bar.set_position(started.elapsed().as_secs().min(duration.as_secs()));
                bar.set_message(line);
            }
            None => eprintln!("load {:>5.0}s  {line}", started.elapsed().as_secs_f64()),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn live_line(recorder: &Recorder, now: Instant) -> String {
    let elapsed = now
        .saturating_duration_since(recorder.started)
        .as_secs_f64();
    let rate = if elapsed >= 6.0 {
        recorder.recent_rate(now, 5)
    } else {
        recorder.requests() as f64 / elapsed.max(0.001)
    };
    format!(
        "{rate:>6.0} req/s  {} requests  {} errors  {} throttled  p99 {:.1} ms  {} shoppers",
        recorder.requests(),
        recorder.errors(),
        recorder.throttled(),
        recorder.overall.quantile_ms(0.99),
        recorder.sessions.active,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_or_named_hosts_are_targets() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3/",
            "http://localhost:8080",
            "http://[::1]:8080",
            "https://LOCALHOST",
        ] {
            assert!(check_target(ok, &[]).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.0.0.1:8080",
            "http://192.168.1.1",
            "http://shop.example.com",
            "http://localhost.example.com",
            "http://[::2]:8080",
        ] {
            let err = check_target(refused, &[]).unwrap_err().to_string();
            assert!(err.contains("not a loopback address"), "{refused}: {err}");
        }
        assert!(check_target("http://shop.example.com:8080", &["shop.example.com".into()]).is_ok());
        assert!(check_target("ftp://127.0.0.1", &[]).is_err());
        assert!(check_target("127.0.0.1:8080", &[]).is_err());
    }

    #[test]
    fn flags_parse_or_say_what_is_wrong() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("unit"));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_actions("3..9"), Ok((3, 9)));
        assert_eq!(parse_actions("4"), Ok((4, 4)));
        assert!(parse_actions("9..3").is_err());
        assert!(parse_actions("0").is_err());
        assert!(parse_share("1.5").is_err());
        assert!(parse_rate("0").is_err());
        let mix = Mix::parse("checkout=40, cancel=0").unwrap();
        assert_eq!(mix.weight(Action::Checkout), 40);
        assert_eq!(mix.weight(Action::Cancel), 0);
        assert_eq!(mix.weight(Action::Browse), 20);
        assert_eq!(Mix::parse(&mix.to_string()), Ok(mix));
        assert_eq!(Mix::parse(DEFAULT_MIX), Mix::parse(""));
        assert!(
            Mix::parse("buy=3")
                .unwrap_err()
                .contains("no action is called `buy`")
        );
        assert!(Mix::parse("browse").unwrap_err().contains("NAME=WEIGHT"));
        assert!(
            Mix::parse("browse=-1")
                .unwrap_err()
                .contains("whole number")
        );
    }
}
