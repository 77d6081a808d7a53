//! The operations page's figures: a sampler that reads each watched
//! service's readiness and its process's metrics every few seconds, keeps a
//! ring of what changed between samples, and sums the ring into each
//! service's traffic and the shop's health.
//!
//! Metrics come as Prometheus text from one of two sources, read by one
//! parser: this process's registry, or the `/metrics` of another process.
//! Readiness comes from a service's own checks: run in this process as its
//! `/ready` runs them, or asked of its `/ready` over HTTP.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The metric series the figures are made of; every other line of a
/// scrape is passed over.
const KEPT: &[&str] = &[
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "grpc_server_requests_total",
    "grpc_server_request_duration_seconds_bucket",
    "grpc_client_circuit_open",
    "order_processing_duration_seconds_count",
    "outbox_pending_events",
    "events_dead_lettered_total",
    "inventory_low_stock_items",
    "fault_flag_active",
];

/// Routes of the platform's own that probes and scrapers call: not the
/// service's traffic (the sampler's own readings would be counted too).
const OPERATIONAL: &[&str] = &["/health", "/ready", "/metrics"];

/// gRPC codes that say the server failed, not that the caller asked amiss.
const SERVER_FAULTS: &[&str] = &[
    "UNKNOWN",
    "DEADLINE_EXCEEDED",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
];

/// The longest wait for one service's readiness or one process's metrics.
const PATIENCE: Duration = Duration::from_secs(3);

/// One line of Prometheus text: a metric's name, its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The samples of a scrape in Prometheus's text format; comments, blank
/// and malformed lines and NaN values are passed over.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inside)?;
        labels = parsed;
        rest = after;
    }
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    if value.is_nan() {
        return None;
    }
    labels.sort();
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `key="value",...}` and what follows the closing brace; values keep
/// their escaped quotes, backslashes and newlines.
fn parse_labels(mut rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once('=')?;
        let quoted = after.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = &quoted[end + 1..];
    }
}

/// A metric series of one source (`local`, or a process's base URL).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Series {
    source: Arc<str>,
    name: String,
    labels: Vec<(String, String)>,
}

/// One reading of every source's kept series.
#[derive(Clone, Debug, Default)]
struct Reading {
    values: HashMap<Series, f64>,
    /// The sources that answered: a series of one that did not is unknown,
    /// not zero.
    answered: HashSet<Arc<str>>,
}

impl Reading {
    fn add(&mut self, source: &Arc<str>, text: &str) {
        self.answered.insert(source.clone());
        for sample in parse(text) {
            if KEPT.contains(&sample.name.as_str()) {
                self.values.insert(
                    Series {
                        source: source.clone(),
                        name: sample.name,
                        labels: sample.labels,
                    },
                    sample.value,
                );
            }
        }
    }

    /// The current value of each kept series, as a sample.
    fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        self.values.iter().map(|(series, &value)| Sample {
            name: series.name.clone(),
            labels: series.labels.clone(),
            value,
        })
    }
}

/// How much each counter of `after` grew since `before`: a counter lower
/// than before was reset (its process restarted) and counts from zero; a
/// series new to a source that answered before counts from zero; a source
/// that did not answer before gives nothing yet.
fn increases(before: &Reading, after: &Reading) -> Vec<(Sample, f64)> {
    after
        .values
        .iter()
        .filter(|(series, _)| before.answered.contains(&series.source))
        .map(|(series, &now)| {
            let then = before.values.get(series).copied().unwrap_or(0.0);
            let grew = if now >= then { now - then } else { now };
            let sample = Sample {
                name: series.name.clone(),
                labels: series.labels.clone(),
                value: now,
            };
            (sample, grew)
        })
        .collect()
}

/// A service's requests served over some time: counts, failures, and the
/// latency histogram's buckets as `(upper bound, requests at or under it)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Traffic {
    pub requests: f64,
    pub errors: f64,
    pub buckets: Vec<(f64, f64)>,
}

impl Traffic {
    fn add_bucket(&mut self, bound: f64, count: f64) {
        match self.buckets.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, n)) => *n += count,
            None => self.buckets.push((bound, count)),
        }
    }

    fn add(&mut self, other: &Traffic) {
        self.requests += other.requests;
        self.errors += other.errors;
        for &(bound, count) in &other.buckets {
            self.add_bucket(bound, count);
        }
    }

    /// Requests per second over `span`; `None` for no traffic.
    pub fn per_second(&self, span: Duration) -> Option<f64> {
        (self.requests > 0.0 && !span.is_zero()).then(|| self.requests / span.as_secs_f64())
    }

    /// The share of requests that failed on the server's side; `None` for
    /// no traffic.
    pub fn error_ratio(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors / self.requests)
    }

    pub fn quantile(&self, q: f64) -> Option<Estimate> {
        quantile(&self.buckets, q)
    }
}

/// A quantile read from histogram buckets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Estimate {
    /// Within a bucket, interpolated linearly, in seconds.
    Within(f64),
    /// Above the largest finite bound, in seconds.
    Over(f64),
}

/// The `q` quantile of cumulative buckets `(upper bound, count)`, as
/// Prometheus's `histogram_quantile` reads it: linear within the bucket
/// where the rank falls, the first bucket starting at zero. `None` for no
/// observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<Estimate> {
    let mut sorted = buckets.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = sorted.iter().map(|&(_, n)| n).fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(bound, count) in &sorted {
        if count >= rank && count > 0.0 {
            if bound.is_infinite() {
                return Some(Estimate::Over(lower));
            }
            let inside = count - below;
            let fraction = if inside > 0.0 {
                ((rank - below) / inside).clamp(0.0, 1.0)
            } else {
                1.0
            };
            return Some(Estimate::Within(lower + (bound - lower) * fraction));
        }
        lower = bound;
        below = below.max(count);
    }
    Some(Estimate::Over(lower))
}

/// What changed between two samples.
#[derive(Clone, Debug, Default)]
struct Step {
    from: Option<SystemTime>,
    to: Option<SystemTime>,
    services: BTreeMap<String, Traffic>,
    confirmed: f64,
    failed: f64,
    dead_letters: f64,
}

impl Step {
    fn of(increases: &[(Sample, f64)]) -> Self {
        let mut step = Step::default();
        for (sample, grew) in increases {
            let grew = *grew;
            let service = || sample.label("service").to_owned();
            let operational = OPERATIONAL.contains(&sample.label("endpoint"));
            match sample.name.as_str() {
                "http_requests_total" if !operational => {
                    let traffic = step.services.entry(service()).or_default();
                    traffic.requests += grew;
                    if sample.label("status").starts_with('5') {
                        traffic.errors += grew;
                    }
                }
                "grpc_server_requests_total" => {
                    let traffic = step.services.entry(service()).or_default();
                    traffic.requests += grew;
                    if SERVER_FAULTS.contains(&sample.label("code")) {
                        traffic.errors += grew;
                    }
                }
                "http_request_duration_seconds_bucket"
                | "grpc_server_request_duration_seconds_bucket"
                    if !operational =>
                {
                    if let Ok(bound) = sample.label("le").parse::<f64>() {
                        step.services
                            .entry(service())
                            .or_default()
                            .add_bucket(bound, grew);
                    }
                }
                "order_processing_duration_seconds_count" => match sample.label("status") {
                    "confirmed" => step.confirmed += grew,
                    "failed" => step.failed += grew,
                    _ => {}
                },
                "events_dead_lettered_total" => step.dead_letters += grew,
                _ => {}
            }
        }
        step
    }

    fn add(&mut self, other: &Step) {
        self.from = match (self.from, other.from) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.to = self.to.max(other.to);
        for (name, traffic) in &other.services {
            self.services.entry(name.clone()).or_default().add(traffic);
        }
        self.confirmed += other.confirmed;
        self.failed += other.failed;
        self.dead_letters += other.dead_letters;
    }

    fn span(&self) -> Duration {
        match (self.from, self.to) {
            (Some(from), Some(to)) => to.duration_since(from).unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }
}

/// Whether a service takes traffic, as its readiness checks say.
#[derive(Clone, Debug, PartialEq)]
pub enum Readiness {
    Ready,
    /// Serving, with these degradable checks down.
    Degraded(Vec<String>),
    /// Out of rotation: the failing check, when it is named, and why.
    NotReady {
        check: Option<String>,
        reason: String,
    },
}

impl Readiness {
    /// What a `/ready` answered.
    pub fn of_answer(status: StatusCode, body: &Value) -> Self {
        if status.is_success() {
            let down: Vec<String> = body["checks"]
                .as_object()
                .map(|checks| {
                    checks
                        .iter()
                        .filter(|(_, state)| state.as_str() != Some("up"))
                        .map(|(name, _)| name.clone())
                        .collect()
                })
                .unwrap_or_default();
            return if down.is_empty() {
                Readiness::Ready
            } else {
                Readiness::Degraded(down)
            };
        }
        Readiness::NotReady {
            check: body["dependency"].as_str().map(str::to_owned),
            reason: body["detail"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("/ready answered {status}")),
        }
    }
}

/// Where a watched service is read.
#[derive(Clone)]
pub enum Watched {
    /// In this process: its readiness checks, served as its `/ready`
    /// serves them (`emporium_platform::http::operational_routes`).
    Local { name: String, ready: axum::Router },
    /// In another process: its HTTP base URL, where its `/ready` answers,
    /// and its process's `/metrics` where it owns them.
    Remote { name: String, base: String },
}

impl Watched {
    pub fn name(&self) -> &str {
        match self {
            Watched::Local { name, .. } | Watched::Remote { name, .. } => name,
        }
    }

    async fn readiness(&self, http: &reqwest::Client) -> Readiness {
        let asked = match self {
            Watched::Local { ready, .. } => local_ready(ready.clone()).await,
            Watched::Remote { base, .. } => remote_ready(http, base).await,
        };
        match asked {
            Ok((status, body)) => Readiness::of_answer(status, &body),
            Err(reason) => Readiness::NotReady {
                check: None,
                reason,
            },
        }
    }
}

async fn local_ready(router: axum::Router) -> Result<(StatusCode, Value), String> {
    let request = Request::get("/ready")
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(PATIENCE, router.oneshot(request))
        .await
        .map_err(|_| format!("no answer within {} s", PATIENCE.as_secs()))?;
    let Ok(response) = answer;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

async fn remote_ready(http: &reqwest::Client, base: &str) -> Result<(StatusCode, Value), String> {
    let url = format!("{base}/ready");
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| unanswered(&url, &e))?;
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Why `url` gave no answer, in a few words.
fn unanswered(url: &str, error: &reqwest::Error) -> String {
    let why = if error.is_connect() {
        "the connection was refused or failed"
    } else if error.is_timeout() {
        "no answer in time"
    } else {
        "no answer"
    };
    format!("{url}: {why}")
}

/// A process's metrics, when `base` serves them: a process of several
/// services serves them at one service's port only.
async fn remote_metrics(http: &reqwest::Client, base: &str) -> Option<String> {
    let url = format!("{base}/metrics");
    match http.get(&url).send().await {
        Ok(response) if response.status().is_success() => response.text().await.ok(),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(url, error = %e, "no metrics for the operations page");
            None
        }
    }
}

/// The sampler's settings.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Time between samples.
    pub every: Duration,
    /// How far back the figures reach.
    pub window: Duration,
}

/// The sampler and what it has seen.
pub struct Ops {
    pace: Pace,
    watched: Vec<Watched>,
    http: reqwest::Client,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    last: Option<(SystemTime, Reading)>,
    steps: VecDeque<Step>,
    ready: Vec<(String, Readiness)>,
    sampled_at: Option<SystemTime>,
    /// Gauges and totals of the last reading.
    now: Now,
}

/// What the last reading says now, not over the window.
#[derive(Clone, Debug, Default, PartialEq)]
struct Now {
    outbox: BTreeMap<String, f64>,
    dead_letters: f64,
    low_stock: Option<f64>,
    circuits: Vec<String>,
    /// Fault flags switched on (decision 0032), in any process read.
    faults: Vec<String>,
}

impl Now {
    fn of(reading: &Reading) -> Self {
        let mut now = Now::default();
        for sample in reading.samples() {
            let value = sample.value;
            match sample.name.as_str() {
                "outbox_pending_events" => {
                    *now.outbox
                        .entry(sample.label("service").to_owned())
                        .or_default() += value;
                }
                "events_dead_lettered_total" => now.dead_letters += value,
                "inventory_low_stock_items" => {
                    *now.low_stock.get_or_insert(0.0) += value;
                }
                "grpc_client_circuit_open" if value >= 1.0 => {
                    now.circuits.push(sample.label("peer").to_owned());
                }
                "fault_flag_active" if value >= 1.0 => {
                    now.faults.push(sample.label("flag").to_owned());
                }
                _ => {}
            }
        }
        now.circuits.sort();
        now.circuits.dedup();
        now.faults.sort();
        now.faults.dedup();
        now
    }
}

impl Ops {
    pub fn new(pace: Pace, watched: Vec<Watched>) -> anyhow::Result<Self> {
        Ok(Self {
            pace,
            watched,
            http: reqwest::Client::builder().timeout(PATIENCE).build()?,
            seen: Mutex::new(Seen::default()),
        })
    }

    pub fn pace(&self) -> Pace {
        self.pace
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Samples every `pace.every` until `stop` completes.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.pace.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => self.sample().await,
            }
        }
    }

    /// Reads every source once and keeps what changed.
    pub async fn sample(&self) {
        let (ready, reading) = tokio::join!(self.readiness(), self.read_metrics());
        self.record(SystemTime::now(), reading, ready);
    }

    /// Each watched service's readiness, asked of all at once.
    async fn readiness(&self) -> Vec<(String, Readiness)> {
        let mut asking = tokio::task::JoinSet::new();
        for (order, watched) in self.watched.iter().cloned().enumerate() {
            let http = self.http.clone();
            asking.spawn(async move {
                let readiness = watched.readiness(&http).await;
                (order, watched.name().to_owned(), readiness)
            });
        }
        let mut answers = asking.join_all().await;
        answers.sort_by_key(|(order, _, _)| *order);
        answers
            .into_iter()
            .map(|(_, name, readiness)| (name, readiness))
            .collect()
    }

    async fn read_metrics(&self) -> Reading {
        let mut reading = Reading::default();
        if self
            .watched
            .iter()
            .any(|w| matches!(w, Watched::Local { .. }))
        {
            let text = emporium_platform::telemetry::metrics_handle().render();
            reading.add(&Arc::from("local"), &text);
        }
        let mut bases: Vec<String> = self
            .watched
            .iter()
            .filter_map(|w| match w {
                Watched::Remote { base, .. } => Some(base.clone()),
                Watched::Local { .. } => None,
            })
            .collect();
        bases.sort_unstable();
        bases.dedup();
        let mut asking = tokio::task::JoinSet::new();
        for base in bases {
            let http = self.http.clone();
            asking.spawn(async move {
                let text = remote_metrics(&http, &base).await;
                (base, text)
            });
        }
        for (base, text) in asking.join_all().await {
            if let Some(text) = text {
                reading.add(&Arc::from(base.as_str()), &text);
            }
        }
        reading
    }

    fn record(&self, at: SystemTime, reading: Reading, ready: Vec<(String, Readiness)>) {
        let mut seen = self.seen();
        if let Some((before_at, before)) = &seen.last {
            let mut step = Step::of(&increases(before, &reading));
            step.from = Some(*before_at);
            step.to = Some(at);
            seen.steps.push_back(step);
        }
        while let Some(first) = seen.steps.front().filter(|_| seen.steps.len() > 1) {
            let old = first
                .from
                .and_then(|from| at.duration_since(from).ok())
                .is_some_and(|age| age > self.pace.window);
            if !old {
                break;
            }
            seen.steps.pop_front();
        }
        seen.now = Now::of(&reading);
        seen.last = Some((at, reading));
        seen.ready = ready;
        seen.sampled_at = Some(at);
    }

    /// The figures, worded for the page.
    pub fn view(&self) -> Value {
        let seen = self.seen();
        let mut window = Step::default();
        for step in &seen.steps {
            window.add(step);
        }
        let span = window.span();
        let quiet = Traffic::default();
        let services: Vec<Value> = seen
            .ready
            .iter()
            .map(|(name, readiness)| {
                let traffic = window.services.get(name).unwrap_or(&quiet);
                service_row(name, readiness, traffic, span)
            })
            .collect();
        let checkouts = window.confirmed + window.failed;
        let now = &seen.now;
        json!({
            "sampled_at": seen.sampled_at.map(clock),
            "span": (!span.is_zero()).then(|| duration(span)),
            "every": duration(self.pace.every),
            "services": services,
            "shop": {
                "checkouts": count(checkouts),
                "per_minute": per_minute(checkouts, span),
                "success": (checkouts > 0.0).then(|| percent(window.confirmed / checkouts)),
                "failed": count(window.failed),
                "outbox": now.outbox.iter().map(|(service, n)| json!({ "service": service, "pending": count(*n) })).collect::<Vec<_>>(),
                "backlog": count(now.outbox.values().sum()),
                "dead_window": count(window.dead_letters),
                "dead_total": count(now.dead_letters),
                "low_stock": now.low_stock.map(count),
                "circuits": now.circuits,
                "faults": now.faults,
            },
        })
    }
}

const NO_TRAFFIC: &str = "no traffic";

fn service_row(name: &str, readiness: &Readiness, traffic: &Traffic, span: Duration) -> Value {
    let (state, said, why) = match readiness {
        Readiness::Ready => ("ready", "Ready", String::new()),
        Readiness::Degraded(down) => (
            "degraded",
            "Degraded",
            format!("{} down; still serving", down.join(", ")),
        ),
        Readiness::NotReady { check, reason } => (
            "not-ready",
            "Not ready",
            match check {
                Some(check) if !reason.contains(check.as_str()) => format!("{check}: {reason}"),
                _ => reason.clone(),
            },
        ),
    };
    let latency = |q: f64| traffic.quantile(q).map_or(NO_TRAFFIC.into(), latency);
    let errors = traffic.error_ratio();
    json!({
        "name": name,
        "state": state,
        "said": said,
        "why": why,
        "rps": traffic.per_second(span).map_or(NO_TRAFFIC.into(), rate),
        "errors": errors.map_or(NO_TRAFFIC.into(), percent),
        "failing": errors.is_some_and(|e| e > 0.0),
        "p50": latency(0.5),
        "p99": latency(0.99),
    })
}

/// `3.25`, `41.3`, `1200`: three figures at most where they mean something.
fn rate(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn per_minute(events: f64, span: Duration) -> Option<String> {
    (!span.is_zero()).then(|| rate(events * 60.0 / span.as_secs_f64()))
}

fn percent(ratio: f64) -> String {
    let pct = ratio * 100.0;
    if pct == 0.0 || pct == 100.0 || pct >= 10.0 {
        format!("{pct:.0}%")
    } else {
        format!("{pct:.1}%")
    }
}

fn count(value: f64) -> String {
    format!("{value:.0}")
}

fn latency(estimate: Estimate) -> String {
    let words = |seconds: f64| {
        if seconds >= 1.0 {
            format!("{seconds:.2} s")
        } else if seconds >= 0.01 {
            format!("{:.0} ms", seconds * 1000.0)
        } else {
            format!("{:.1} ms", seconds * 1000.0)
        }
    };
    match estimate {
        Estimate::Within(seconds) => words(seconds),
        Estimate::Over(seconds) => format!("over {}", words(seconds)),
    }
}

/// `4 min 35 s`.
fn duration(span: Duration) -> String {
    let secs = span.as_secs_f64().round() as u64;
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// `14:03:27 UTC`.
fn clock(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn ops(window: Duration) -> Ops {
        let pace = Pace {
            every: Duration::from_secs(5),
            window,
        };
        Ops::new(pace, Vec::new()).unwrap()
    }

    fn reading(text: &str) -> Reading {
        let mut reading = Reading::default();
        reading.add(&Arc::from("local"), text);
        reading
    }

    fn ready(name: &str) -> Vec<(String, Readiness)> {
        vec![(name.to_owned(), Readiness::Ready)]
    }

    fn row<'a>(view: &'a Value, name: &str) -> &'a Value {
        view["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
    }

    const CATALOG: &str = r#"http_requests_total{service="catalog",method="GET",endpoint="/api/v1/products",status="200"}"#;

    #[test]
    fn prometheus_text_parses_names_labels_escapes_and_special_values() {
        let text = concat!(
            "# HELP http_requests_total HTTP requests.\n",
            "# TYPE http_requests_total counter\n",
            "http_requests_total{service=\"gateway\",endpoint=\"/a \\\"b\\\" \\\\ c\",status=\"200\"} 42\n",
            "\n",
            "inventory_low_stock_items 3 1700000000000\n",
            "lat_bucket{le=\"+Inf\"} 7\n",
            "broken{le=\"1\" 2\n",
            "nan_gauge NaN\n",
        );
        let samples = parse(text);
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].name, "http_requests_total");
        assert_eq!(samples[0].label("endpoint"), "/a \"b\" \\ c");
        assert_eq!(samples[0].label("service"), "gateway");
        assert_eq!(samples[0].value, 42.0);
        assert_eq!(
            (samples[1].name.as_str(), samples[1].value),
            ("inventory_low_stock_items", 3.0)
        );
        assert_eq!(samples[2].label("le").parse::<f64>(), Ok(f64::INFINITY));
    }

    #[test]
    fn a_counter_reset_counts_from_zero_and_the_steps_add_up() {
        let board = ops(Duration::from_secs(600));
        for (secs, value) in [(0, 10), (10, 25), (20, 5), (30, 12)] {
            let text = format!("{CATALOG} {value}\n");
            board.record(at(secs), reading(&text), ready("catalog"));
        }
        // 15, then a restart (5 from zero), then 7: 27 over 30 s.
        let view = board.view();
        assert_eq!(row(&view, "catalog")["rps"], "0.90");
        assert_eq!(view["span"], "30 s");
    }

    #[test]
    fn a_new_series_counts_from_zero_but_a_silent_source_gives_nothing() {
        let before = reading("");
        let after = reading(&format!("{CATALOG} 4\n"));
        let grew = increases(&before, &after);
        assert_eq!(grew.len(), 1);
        assert_eq!(grew[0].1, 4.0);
        let unanswered = Reading::default();
        assert!(increases(&unanswered, &after).is_empty());
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let buckets = [(0.1, 10.0), (0.5, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(quantile(&buckets, 0.25), Some(Estimate::Within(0.05)));
        assert_eq!(quantile(&buckets, 0.5), Some(Estimate::Within(0.1)));
        let Some(Estimate::Within(p99)) = quantile(&buckets, 0.99) else {
            panic!()
        };
        assert!((p99 - 0.492).abs() < 1e-9, "{p99}");
        // Beyond the largest bound all that is known is "over it".
        let slow = [(0.1, 1.0), (10.0, 2.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(&slow, 0.99), Some(Estimate::Over(10.0)));
        assert_eq!(latency(Estimate::Over(10.0)), "over 10.00 s");
        // Unsorted buckets, as two series merge them, read the same.
        let shuffled = [(f64::INFINITY, 20.0), (0.5, 20.0), (0.1, 10.0)];
        assert_eq!(quantile(&shuffled, 0.25), Some(Estimate::Within(0.05)));
    }

    #[test]
    fn an_empty_window_says_no_traffic_never_nan() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.99), None);
        let quiet = Traffic::default();
        assert_eq!(quiet.per_second(Duration::from_secs(60)), None);
        assert_eq!(quiet.error_ratio(), None);

        let board = ops(Duration::from_secs(600));
        let view = board.view();
        assert_eq!(view["sampled_at"], Value::Null);
        assert_eq!(view["shop"]["per_minute"], Value::Null);
        assert_eq!(view["shop"]["success"], Value::Null);
        for secs in [0, 5] {
            board.record(
                at(secs),
                reading(&format!("{CATALOG} 3\n")),
                ready("catalog"),
            );
        }
        let view = board.view();
        let catalog = row(&view, "catalog");
        for figure in ["rps", "errors", "p50", "p99"] {
            assert_eq!(catalog[figure], NO_TRAFFIC, "{figure}");
        }
        assert_eq!(view["shop"]["checkouts"], "0");
        assert_eq!(view["shop"]["per_minute"], "0.00");
        assert_eq!(view["shop"]["success"], Value::Null);
        assert!(!view.to_string().contains("NaN"), "{view}");
    }

    #[test]
    fn a_window_sums_requests_errors_latency_and_checkouts_per_service() {
        let board = ops(Duration::from_secs(600));
        let scrape = |ok: u32, failed: u32, fast: u32, slow: u32, confirmed: u32| {
            format!(
                concat!(
                    "http_requests_total{{service=\"gateway\",method=\"GET\",endpoint=\"/api/v1/products\",status=\"200\"}} {ok}\n",
                    "http_requests_total{{service=\"gateway\",method=\"GET\",endpoint=\"/api/v1/products\",status=\"503\"}} {failed}\n",
                    "http_requests_total{{service=\"gateway\",method=\"GET\",endpoint=\"/ready\",status=\"200\"}} {ok}\n",
                    "http_request_duration_seconds_bucket{{service=\"gateway\",method=\"GET\",endpoint=\"/api/v1/products\",le=\"0.01\"}} {fast}\n",
                    "http_request_duration_seconds_bucket{{service=\"gateway\",method=\"GET\",endpoint=\"/api/v1/products\",le=\"0.1\"}} {slow}\n",
                    "http_request_duration_seconds_bucket{{service=\"gateway\",method=\"GET\",endpoint=\"/api/v1/products\",le=\"+Inf\"}} {slow}\n",
                    "grpc_server_requests_total{{service=\"catalog\",method=\"/x/Get\",code=\"OK\"}} {ok}\n",
                    "grpc_server_requests_total{{service=\"catalog\",method=\"/x/Get\",code=\"NOT_FOUND\"}} {failed}\n",
                    "order_processing_duration_seconds_count{{status=\"confirmed\"}} {confirmed}\n",
                    "order_processing_duration_seconds_count{{status=\"failed\"}} 1\n",
                    "events_dead_lettered_total{{consumer=\"notification\"}} 2\n",
                    "outbox_pending_events{{service=\"ordering\"}} 4\n",
                    "outbox_pending_events{{service=\"payment\"}} 0\n",
                    "inventory_low_stock_items 3\n",
                    "grpc_client_circuit_open{{peer=\"payment\"}} 1\n",
                    "grpc_client_circuit_open{{peer=\"catalog\"}} 0\n",
                    "fault_flag_active{{flag=\"store_latency_ms\"}} 1\n",
                    "fault_flag_active{{flag=\"peer_error_ratio\"}} 0\n",
                ),
                ok = ok,
                failed = failed,
                fast = fast,
                slow = slow,
                confirmed = confirmed,
            )
        };
        let services = || {
            vec![
                ("gateway".to_owned(), Readiness::Ready),
                ("catalog".to_owned(), Readiness::Ready),
            ]
        };
        board.record(at(0), reading(&scrape(0, 0, 0, 0, 0)), services());
        board.record(at(60), reading(&scrape(90, 10, 50, 100, 3)), services());
        let view = board.view();
        let gateway = row(&view, "gateway");
        // /ready is the sampler's own traffic: not counted.
        assert_eq!(gateway["rps"], "1.67");
        assert_eq!(gateway["errors"], "10%");
        assert_eq!(gateway["failing"], true);
        assert_eq!(gateway["p50"], "10 ms");
        assert_eq!(gateway["p99"], "98 ms");
        let catalog = row(&view, "catalog");
        // A gRPC NOT_FOUND is the caller's doing, not a fault.
        assert_eq!(catalog["errors"], "0%");
        assert_eq!(catalog["rps"], "1.67");
        let shop = &view["shop"];
        assert_eq!(shop["checkouts"], "3");
        assert_eq!(shop["per_minute"], "3.00");
        assert_eq!(shop["success"], "100%");
        assert_eq!(shop["dead_window"], "0", "dead letters before the window");
        assert_eq!(shop["dead_total"], "2");
        assert_eq!(shop["backlog"], "4");
        assert_eq!(shop["low_stock"], "3");
        assert_eq!(shop["circuits"], json!(["payment"]));
        assert_eq!(shop["faults"], json!(["store_latency_ms"]));
        assert_eq!(view["span"], "1 min");
    }

    #[test]
    fn steps_older_than_the_window_are_dropped_but_the_last() {
        let board = ops(Duration::from_secs(60));
        board.record(at(0), reading(&format!("{CATALOG} 0\n")), ready("catalog"));
        board.record(
            at(30),
            reading(&format!("{CATALOG} 600\n")),
            ready("catalog"),
        );
        board.record(
            at(100),
            reading(&format!("{CATALOG} 630\n")),
            ready("catalog"),
        );
        let view = board.view();
        // The first step began 100 s before the last sample: dropped. The
        // last step is kept, though longer than the window (samples late).
        assert_eq!(view["span"], "1 min 10 s");
        assert_eq!(row(&view, "catalog")["rps"], "0.43");
    }

    #[test]
    fn readiness_reads_what_ready_answers() {
        let ok = json!({ "status": "ready", "service": "catalog", "checks": { "database": "up" } });
        assert_eq!(Readiness::of_answer(StatusCode::OK, &ok), Readiness::Ready);
        let degraded =
            json!({ "status": "degraded", "checks": { "database": "up", "cache": "down" } });
        assert_eq!(
            Readiness::of_answer(StatusCode::OK, &degraded),
            Readiness::Degraded(vec!["cache".into()])
        );
        let down =
            json!({ "status": 503, "detail": "database is unavailable", "dependency": "database" });
        let readiness = Readiness::of_answer(StatusCode::SERVICE_UNAVAILABLE, &down);
        assert_eq!(
            readiness,
            Readiness::NotReady {
                check: Some("database".into()),
                reason: "database is unavailable".into()
            }
        );
        let row = service_row("catalog", &readiness, &Traffic::default(), Duration::ZERO);
        assert_eq!(
            (row["state"].as_str(), row["why"].as_str()),
            (Some("not-ready"), Some("database is unavailable"))
        );
        let bare = Readiness::of_answer(StatusCode::BAD_GATEWAY, &Value::Null);
        assert_eq!(
            bare,
            Readiness::NotReady {
                check: None,
                reason: "/ready answered 502 Bad Gateway".into()
            }
        );
    }

    #[tokio::test]
    async fn a_process_elsewhere_is_read_over_http_with_the_same_parser() {
        let metrics = format!("# TYPE http_requests_total counter\n{CATALOG} 7\n");
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(move || async move { metrics }))
            .route(
                "/ready",
                axum::routing::get(|| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(json!({ "detail": "database is unavailable", "dependency": "database" })),
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        // A port nothing listens on: bound, then let go.
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        let pace = Pace {
            every: Duration::from_secs(5),
            window: Duration::from_secs(600),
        };
        let board = Ops::new(
            pace,
            vec![
                Watched::Remote {
                    name: "catalog".into(),
                    base: format!("http://{addr}"),
                },
                Watched::Remote {
                    name: "search".into(),
                    base: format!("http://{gone_addr}"),
                },
            ],
        )
        .unwrap();
        board.sample().await;
        let view = board.view();
        let catalog = row(&view, "catalog");
        assert_eq!(catalog["said"], "Not ready");
        assert_eq!(catalog["why"], "database is unavailable");
        let search = row(&view, "search");
        assert_eq!(search["state"], "not-ready");
        let why = search["why"].as_str().unwrap();
        assert!(why.contains(&format!("http://{gone_addr}/ready")), "{why}");
        assert!(why.contains("refused"), "{why}");
        let seen = board.seen();
        let (_, last) = seen.last.as_ref().unwrap();
        let source: Arc<str> = Arc::from(format!("http://{addr}").as_str());
        assert!(last.answered.contains(&source));
        assert_eq!(last.values.len(), 1, "{:?}", last.values);
        drop(seen);
        server.abort();
    }
}
