//! Faults on purpose, under shopper load: every service its own `emporium
//! serve` process on PostgreSQL, MariaDB, Redis and RabbitMQ (two replicas
//! of ordering and of the gateway), customers buying all along, and one
//! fault after another: processes killed (-9), the broker, PostgreSQL and
//! Redis cut, a gateway replica gone, events delivered twice, a peer slower
//! than its caller's deadline. After each, a quiet period and a
//! reconciliation from the stores and the APIs: every order settled, every
//! unit of stock and every cent accounted for, every event acted on once by
//! each consumer, no 5xx but the fault's, the shop serving again.
//!
//! `EMPORIUM_CHAOS_SECONDS` sets how long a fault lasts (8 by default, as
//! in CI; `bench/chaos` runs 30), `EMPORIUM_CHAOS_SCENARIOS` picks some by
//! name (comma-separated), `EMPORIUM_CHAOS_REPORT` names a Markdown file
//! for the report, which is printed either way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use emporium_payment::provider::ledger::{self, LedgerRow};
use emporium_platform::bus::{Envelope, Interest, RabbitMq, Transport, topic_matches};
use emporium_testkit::{
    AMQP, Backend, DISTRIBUTED_DATABASES, Link, MYSQL, POSTGRES, REDIS, ServiceProcess,
    TestDatabase, TestVhost, free_port, server_url,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Statement};
use tokio_util::sync::CancellationToken;

use super::*;

const GOOD_CARD: &str = "4242424242424242";
/// Units of the scarce product put in before each scenario, for the
/// shoppers to fight over.
const SCARCE_UNITS: i64 = 12;
/// Units of every other product the shoppers buy: more than they can.
const PLENTY: i64 = 20_000;
const ADMIN_EMAIL: &str = "chaos-admin@example.org";
const ADMIN_PASSWORD: &str = "a long admin passphrase";
/// Each way, on the link from ordering to payment: past ordering's 3 s
/// deadline for a round trip.
const SLOW: Duration = Duration::from_secs(2);
/// Ordering resumes a checkout left unfinished this long.
const RESUME_AFTER_SECS: u64 = 3;

/// How long each part of a scenario lasts.
#[derive(Clone, Copy, Debug)]
struct Profile {
    /// A fault's length: the broker's cut, the time processes are killed
    /// again and again, events sent twice, payment slow.
    fault: Duration,
    /// How long PostgreSQL and Redis are cut.
    cut: Duration,
    /// Shopping before the fault, and at least after it.
    before: Duration,
    after: Duration,
    /// The longest the shop may take to confirm a checkout again once the
    /// fault is over.
    recover_within: Duration,
    /// The longest it may take to settle once the shoppers stop.
    settle_within: Duration,
    shoppers: usize,
}

impl Profile {
    fn from_env() -> Self {
        let seconds = std::env::var("EMPORIUM_CHAOS_SECONDS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(8)
            .max(2);
        Self {
            fault: Duration::from_secs(seconds),
            cut: Duration::from_secs((seconds / 3).max(5)),
            before: Duration::from_secs(2),
            after: Duration::from_secs((seconds / 4).max(4)),
            recover_within: Duration::from_secs(20),
            settle_within: Duration::from_secs(60),
            shoppers: 6,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    OrderingKilled,
    PaymentAndInventoryKilled,
    BrokerCut,
    PostgresCut,
    RedisCut,
    GatewayKilled,
    EventsTwice,
    PaymentSlow,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::OrderingKilled,
        Fault::PaymentAndInventoryKilled,
        Fault::BrokerCut,
        Fault::PostgresCut,
        Fault::RedisCut,
        Fault::GatewayKilled,
        Fault::EventsTwice,
        Fault::PaymentSlow,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::OrderingKilled => "ordering-killed",
            Fault::PaymentAndInventoryKilled => "payment-inventory-killed",
            Fault::BrokerCut => "broker-cut",
            Fault::PostgresCut => "postgres-cut",
            Fault::RedisCut => "redis-cut",
            Fault::GatewayKilled => "gateway-killed",
            Fault::EventsTwice => "events-twice",
            Fault::PaymentSlow => "payment-slow",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Fault::OrderingKilled => {
                "kill -9 ordering, one replica then the other then both, again and again"
            }
            Fault::PaymentAndInventoryKilled => {
                "kill -9 payment, then inventory, then both, again and again"
            }
            Fault::BrokerCut => "the broker cut off from every service",
            Fault::PostgresCut => "PostgreSQL cut off from every service",
            Fault::RedisCut => "Redis cut off from every service",
            Fault::GatewayKilled => "kill -9 one of the two gateway replicas",
            Fault::EventsTwice => "events delivered twice (outbox envelopes published again)",
            Fault::PaymentSlow => "payment answering ordering after its deadline",
        }
    }
}

/// The scenarios `EMPORIUM_CHAOS_SCENARIOS` names, or all of them.
fn chosen() -> Vec<Fault> {
    let Ok(names) = std::env::var("EMPORIUM_CHAOS_SCENARIOS") else {
        return Fault::ALL.to_vec();
    };
    let chosen: Vec<Fault> = names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            Fault::ALL
                .into_iter()
                .find(|f| f.name() == n)
                .unwrap_or_else(|| panic!("no chaos scenario is named {n}"))
        })
        .collect();
    if chosen.is_empty() {
        Fault::ALL.to_vec()
    } else {
        chosen
    }
}

fn binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_emporium"))
}

/// One process of the shop that the test kills and starts again on the
/// ports its callers were told.
struct Node {
    name: String,
    service: &'static str,
    env: Vec<(String, String)>,
    ports: (u16, u16),
    /// Where its readiness is asked.
    ready: String,
    process: Option<ServiceProcess>,
    /// The lines of the processes killed before this one.
    history: String,
}

impl Node {
    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.0)
    }

    fn grpc(&self) -> String {
        format!("127.0.0.1:{}", self.ports.1)
    }

    async fn start(&mut self, dir: &std::path::Path) {
        self.process =
            Some(ServiceProcess::start(binary(), self.service, &self.env, dir, self.ports).await);
    }

    async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await;
            self.history.push_str(&process.logs.lock().unwrap());
        }
    }

    async fn restart(&mut self, dir: &std::path::Path) {
        self.kill().await;
        self.start(dir).await;
        emporium_testkit::wait_ready(&self.ready).await;
    }
}

/// A shopper's identity.
#[derive(Clone, Debug)]
struct Customer {
    email: String,
    id: String,
    token: String,
}

#[derive(Clone, Debug)]
struct Product {
    id: String,
    sku: String,
}

/// One request a shopper made, as the shopper saw it.
#[derive(Clone, Debug)]
struct Sample {
    /// When it was sent, from the start of the run.
    at: Duration,
    op: &'static str,
    /// 0: no answer (the connection failed or timed out).
    status: u16,
    latency: Duration,
    /// A checkout's order status and reason, when it made one.
    outcome: Option<String>,
    detail: String,
}

/// The end of the last request a fault that ended at `fault_end` spoiled
/// (`fault_end` when none outlasted it).
fn recovered_since(samples: &[Sample], fault_end: Duration) -> Duration {
    samples
        .iter()
        .filter(|s| s.spoilt() && s.at + s.latency >= fault_end)
        .map(|s| s.at + s.latency)
        .max()
        .unwrap_or(fault_end)
}

impl Sample {
    /// Not served as a working shop serves: no answer, a 5xx, or a
    /// checkout failed for a reason other than the card or the stock.
    fn spoilt(&self) -> bool {
        self.status == 0
            || self.status >= 500
            || self.outcome.as_deref().is_some_and(|o| {
                o.starts_with("failed")
                    && !o.ends_with("card_declined")
                    && !o.ends_with("out of stock")
            })
    }

    /// A 5xx, or no answer at all.
    fn unanswered(&self) -> bool {
        self.status == 0 || self.status >= 500
    }
}

struct Answer {
    status: u16,
    body: Value,
    at: Duration,
    latency: Duration,
}

/// Requests through the gateway replicas, as a load balancer in front of
/// them sends them: in turn, and to the next when one refuses to connect.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    gateways: Arc<Vec<String>>,
    turn: Arc<AtomicUsize>,
    epoch: Instant,
    /// When each request still waiting for its answer was sent, by number.
    waiting: Arc<Mutex<BTreeMap<usize, Duration>>>,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Answer {
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        let at = self.epoch.elapsed();
        self.waiting.lock().unwrap().insert(first, at);
        let started = Instant::now();
        let mut status = 0;
        let mut answer = Value::Null;
        for offset in 0..self.gateways.len() {
            let base = &self.gateways[(first + offset) % self.gateways.len()];
            let mut request = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            match request.send().await {
                Ok(response) => {
                    status = response.status().as_u16();
                    answer = response.json().await.unwrap_or(Value::Null);
                    break;
                }
                Err(e) if e.is_connect() => {}
                Err(e) => {
                    answer = json!({ "detail": e.to_string() });
                    break;
                }
            }
        }
        self.waiting.lock().unwrap().remove(&first);
        Answer {
            status,
            body: answer,
            at,
            latency: started.elapsed(),
        }
    }

    /// When the oldest request still waiting was sent.
    fn oldest_waiting(&self) -> Option<Duration> {
        self.waiting.lock().unwrap().values().min().copied()
    }

    async fn login(&self, email: &str, password: &str) -> Option<(String, String)> {
        let answer = self
            .send(
                reqwest::Method::POST,
                "/api/v1/users/login",
                None,
                Some(&json!({ "email": email, "password": password })),
                None,
            )
            .await;
        Some((
            answer.body["access_token"].as_str()?.to_owned(),
            answer.body["user"]["id"].as_str()?.to_owned(),
        ))
    }
}

/// A small random source for the shoppers' choices (xorshift).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const SHOPPER_PASSWORD: &str = "a long shopper passphrase";

/// One customer shopping until `stop`: browses, refills the basket, checks
/// out (one in ten with a card that is declined), sometimes cancels.
async fn shop(
    client: Client,
    mut customer: Customer,
    products: Arc<Vec<Product>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
    seed: u64,
) -> Customer {
    let mut dice = Dice(seed | 1);
    let record = |op: &'static str, answer: &Answer, outcome: Option<String>| {
        let detail = if answer.status >= 500 || answer.status == 0 {
            answer.body["detail"]
                .as_str()
                .or(answer.body["title"].as_str())
                .unwrap_or_default()
                .to_owned()
        } else {
            String::new()
        };
        samples.lock().unwrap().push(Sample {
            at: answer.at,
            op,
            status: answer.status,
            latency: answer.latency,
            outcome,
            detail,
        });
    };
    while !stop.is_cancelled() {
        let me = customer.id.clone();
        let page = 1 + dice.below(3);
        let browse = client
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/products?per_page=12&page={page}"),
                None,
                None,
                None,
            )
            .await;
        record("browse", &browse, None);
        let cleared = client
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/baskets/{me}/items"),
                Some(&customer.token),
                None,
                None,
            )
            .await;
        record("basket", &cleared, None);
        if cleared.status == 401 {
            // Access tokens live five minutes: sign in again.
            if let Some((token, _)) = client.login(&customer.email, SHOPPER_PASSWORD).await {
                customer.token = token;
            }
            continue;
        }
        let mut ready = (200..300).contains(&cleared.status);
        for _ in 0..=dice.below(2) {
            if !ready {
                break;
            }
            let product = &products[usize::try_from(dice.below(products.len() as u64)).unwrap()];
            let added = client
                .send(
                    reqwest::Method::POST,
                    &format!("/api/v1/baskets/{me}/items"),
                    Some(&customer.token),
                    Some(&json!({ "product_id": product.id, "quantity": 1 + dice.below(2) })),
                    None,
                )
                .await;
            record("basket", &added, None);
            ready = (200..300).contains(&added.status);
        }
        if !ready {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let card = if dice.chance(10) {
            emporium_payment::provider::DECLINED
        } else {
            GOOD_CARD
        };
        let key = uuid::Uuid::now_v7().to_string();
        let checkout = client
            .send(
                reqwest::Method::POST,
                "/api/v1/orders",
                Some(&customer.token),
                Some(&json!({ "card_number": card })),
                Some(&key),
            )
            .await;
        let outcome = (checkout.status == 201).then(|| match checkout.body["status"].as_str() {
            Some("failed") => format!(
                "failed: {}",
                reason(checkout.body["failure_reason"].as_str().unwrap_or_default())
            ),
            other => other.unwrap_or("?").to_owned(),
        });
        record("checkout", &checkout, outcome.clone());
        if outcome.as_deref() == Some("confirmed") && dice.chance(15) {
            let id = checkout.body["id"].as_str().unwrap_or_default();
            let cancelled = client
                .send(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/orders/{id}"),
                    Some(&customer.token),
                    None,
                    None,
                )
                .await;
            record("cancel", &cancelled, None);
        }
        tokio::time::sleep(Duration::from_millis(50 + dice.below(100))).await;
    }
    customer
}

/// A failure reason without what varies from order to order.
fn reason(raw: &str) -> String {
    if raw.starts_with("out of stock") {
        return "out of stock".into();
    }
    raw.chars().take(70).collect()
}

/// The shoppers, running until stopped.
struct Driver {
    stop: CancellationToken,
    samples: Arc<Mutex<Vec<Sample>>>,
    shoppers: Vec<tokio::task::JoinHandle<Customer>>,
}

impl Driver {
    fn start(client: &Client, customers: Vec<Customer>, products: &Arc<Vec<Product>>) -> Self {
        let stop = CancellationToken::new();
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let shoppers = customers
            .into_iter()
            .enumerate()
            .map(|(index, customer)| {
                let seed = u64::try_from(client.epoch.elapsed().as_nanos() % 1_000_003)
                    .unwrap_or(7)
                    .wrapping_mul(index as u64 + 1);
                tokio::spawn(shop(
                    client.clone(),
                    customer,
                    products.clone(),
                    samples.clone(),
                    stop.clone(),
                    seed,
                ))
            })
            .collect();
        Self {
            stop,
            samples,
            shoppers,
        }
    }

    /// When the shop served normally again after a fault that ended at
    /// `fault_end`: the end of the last request the fault spoiled, once a
    /// checkout sent after it confirmed, every request sent before that
    /// checkout has its answer, and two quiet seconds passed.
    fn recovered(&self, client: &Client, fault_end: Duration) -> Option<Duration> {
        let samples = self.samples.lock().unwrap();
        let since = recovered_since(&samples, fault_end);
        let confirmed = samples
            .iter()
            .filter(|s| s.at >= since && s.outcome.as_deref() == Some("confirmed"))
            .map(|s| s.at)
            .min()?;
        let settled = client.oldest_waiting().is_none_or(|at| at >= confirmed);
        (settled && client.epoch.elapsed() >= since + Duration::from_secs(2)).then_some(since)
    }

    async fn stop(self) -> (Vec<Customer>, Vec<Sample>) {
        self.stop.cancel();
        let mut customers = vec![];
        for shopper in self.shoppers {
            customers.push(shopper.await.unwrap());
        }
        let samples = self.samples.lock().unwrap().clone();
        (customers, samples)
    }
}

/// Who consumes what: (service, queue, interests); each queue is the
/// inbox's consumer name and is named after its service.
fn consumers() -> Vec<(&'static str, &'static str, &'static [Interest<'static>])> {
    emporium::queues()
        .into_iter()
        .map(|q| (q.name, q.name, q.interests))
        .collect()
}

/// The shop on the real servers, every service in its own process, the
/// servers behind links the test cuts.
struct Stack {
    dir: tempfile::TempDir,
    databases: BTreeMap<&'static str, (TestDatabase, DatabaseConnection)>,
    vhost: TestVhost,
    postgres: Link,
    redis: Link,
    broker: Link,
    /// Ordering's way to payment's gRPC face, which the test slows down.
    payment_grpc: Link,
    nodes: Vec<Node>,
    client: Client,
    admin: String,
    products: Arc<Vec<Product>>,
    customers: Vec<Customer>,
    /// How many "internal error" lines the processes had logged when the
    /// last scenario ended.
    internal_errors: usize,
}

/// Each service's secret for the tokens identity issues it.
fn secret(service: &str) -> (String, String) {
    (
        format!(
            "EMPORIUM__AUTH__SERVICE_SECRETS__{}",
            service.to_uppercase()
        ),
        crate::test_secret(service).expose().to_owned(),
    )
}

fn pair(key: &str, value: impl Into<String>) -> (String, String) {
    (key.to_owned(), value.into())
}

impl Stack {
    async fn start(profile: &Profile) -> Option<Self> {
        let (Some(amqp), Some(redis), Some(_), Some(_)) = (
            server_url(AMQP),
            server_url(REDIS),
            server_url(POSTGRES),
            server_url(MYSQL),
        ) else {
            return None;
        };
        // A Redis database of its own: the journey suite runs a
        // distributed shop with the same SKUs beside it.
        let redis = emporium_testkit::redis_database(&redis, 14);
        let mut databases = BTreeMap::new();
        for (service, backend) in DISTRIBUTED_DATABASES {
            let db = TestDatabase::fresh(backend).await?;
            let conn = sea_orm::Database::connect(db.url.expose()).await.unwrap();
            databases.insert(service, (db, conn));
        }
        let vhost = TestVhost::fresh(&amqp);
        // No queue declared beforehand: each `serve` declares every
        // consumer's queue before it starts, as a deployment's would.
        let postgres_url = server_url(POSTGRES).unwrap();
        let postgres = Link::to(server_addr(&postgres_url, 5432).await).await;
        let redis_link = Link::to(server_addr(&redis, 6379).await).await;
        let broker = Link::to(server_addr(&amqp, 5672).await).await;
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("chaos-{}", uuid::Uuid::now_v7().simple());

        // Every port is chosen first, so that every process is told where
        // its peers are and comes back where it was.
        let names = [
            ("identity", "identity"),
            ("catalog", "catalog"),
            ("inventory", "inventory"),
            ("payment", "payment"),
            ("basket", "basket"),
            ("ordering-1", "ordering"),
            ("ordering-2", "ordering"),
            ("recommendation", "recommendation"),
            ("notification", "notification"),
            ("gateway-1", "gateway"),
            ("gateway-2", "gateway"),
        ];
        let mut nodes: Vec<Node> = names
            .iter()
            .map(|&(name, service)| {
                let ports = (
                    free_port(),
                    if service == "gateway" { 0 } else { free_port() },
                );
                Node {
                    name: name.to_owned(),
                    service,
                    env: vec![],
                    ports,
                    ready: format!("http://127.0.0.1:{}", ports.0),
                    process: None,
                    history: String::new(),
                }
            })
            .collect();
        let grpc_of = |service: &str| {
            nodes
                .iter()
                .find(|n| n.service == service)
                .map(Node::grpc)
                .unwrap()
        };
        let http_of = |service: &str| {
            nodes
                .iter()
                .filter(|n| n.service == service)
                .map(Node::http)
                .collect::<Vec<_>>()
                .join(",")
        };
        let payment_grpc = Link::to(grpc_of("payment").parse().unwrap()).await;
        let identity_http = http_of("identity");
        let through_postgres = |url: &str| through(&postgres, url);
        let mut envs = Vec::new();
        for node in &nodes {
            let service = node.service;
            let mut env = vec![
                // What the platform does with each request and event, for
                // whoever reads the kept logs.
                pair(
                    "EMPORIUM__LOG__LEVEL",
                    if std::env::var_os("EMPORIUM_CHAOS_LOGS").is_some() {
                        "info,emporium_platform=debug"
                    } else {
                        "info"
                    },
                ),
                pair("REDIS_URL", through(&redis_link, &redis)),
                pair("AMQP_URL", through(&broker, &vhost.url)),
                secret(service),
            ];
            if service != "identity" {
                env.push(pair(
                    "EMPORIUM__AUTH__JWKS_URL",
                    format!("{identity_http}/.well-known/jwks.json"),
                ));
            }
            if let Some((db, _)) = databases.get(service) {
                let url = match db.backend {
                    Backend::Postgres => through_postgres(db.url.expose()),
                    _ => db.url.expose().to_owned(),
                };
                env.push(pair("DATABASE_URL", url));
            }
            for (peer, variable) in [
                ("identity", "IDENTITY"),
                ("catalog", "PRODUCT"),
                ("inventory", "INVENTORY"),
                ("payment", "PAYMENT"),
                ("basket", "BASKET"),
            ] {
                let address = if peer == "payment" && service == "ordering" {
                    payment_grpc.addr.to_string()
                } else {
                    grpc_of(peer)
                };
                env.push(pair(&format!("{variable}_SERVICE_URL"), address));
            }
            let section = service.to_uppercase();
            match service {
                "identity" => {
                    env.push(pair("EMPORIUM_ADMIN_EMAIL", ADMIN_EMAIL));
                    env.push(pair("EMPORIUM_ADMIN_PASSWORD", ADMIN_PASSWORD));
                    env.push(pair(
                        "EMPORIUM__IDENTITY__KEY_ENCRYPTION_KEYS",
                        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                    ));
                    env.extend(["basket", "ordering", "notification", "storefront"].map(secret));
                }
                "ordering" => {
                    for (key, value) in [
                        ("RESUME_AFTER_SECS", RESUME_AFTER_SECS.to_string()),
                        ("RESUME_EVERY_SECS", "1".to_owned()),
                        ("RESERVATION_TTL_SECS", "20".to_owned()),
                    ] {
                        env.push(pair(&format!("EMPORIUM__ORDERING__{key}"), value));
                    }
                }
                // Every payment takes a moment at the processor, so that
                // kills land in the middle of one.
                "payment" => env.push(pair("EMPORIUM__PAYMENT__MOCK__LATENCY_MS", "40")),
                "gateway" => {
                    let internal = free_port();
                    env.push(pair(
                        "EMPORIUM__GATEWAY__INTERNAL_ADDR",
                        format!("127.0.0.1:{internal}"),
                    ));
                    env.push(pair("EMPORIUM__GATEWAY__RATE_LIMIT_PREFIX", prefix.clone()));
                    // The shoppers all come from one address.
                    for limit in ["AUTH_PER_ADDRESS", "API_PER_ADDRESS", "API_PER_USER"] {
                        env.push(pair(&format!("EMPORIUM__GATEWAY__{limit}"), "0"));
                    }
                    for upstream in [
                        "identity",
                        "catalog",
                        "inventory",
                        "payment",
                        "basket",
                        "ordering",
                        "recommendation",
                        "notification",
                    ] {
                        env.push(pair(
                            &format!("EMPORIUM__GATEWAY__UPSTREAMS__{}", upstream.to_uppercase()),
                            http_of(upstream),
                        ));
                    }
                    envs.push((env, Some(format!("http://127.0.0.1:{internal}"))));
                    continue;
                }
                _ => {}
            }
            if matches!(service, "basket" | "payment" | "ordering") {
                env.push(pair(
                    &format!("EMPORIUM__{section}__REDIS_PREFIX"),
                    prefix.clone(),
                ));
            }
            envs.push((env, None));
        }
        for (node, (env, ready)) in nodes.iter_mut().zip(envs) {
            node.env = env;
            if let Some(ready) = ready {
                node.ready = ready;
            }
        }
        let started = Instant::now();
        for node in &mut nodes {
            node.start(dir.path()).await;
            emporium_testkit::wait_ready(&node.ready).await;
        }
        // Demo data through the services' own commands.
        for service in ["catalog", "inventory"] {
            let node = nodes.iter().find(|n| n.service == service).unwrap();
            let seeded = tokio::process::Command::new(binary())
                .args(["seed", service, "--data-dir"])
                .arg(dir.path())
                .envs(node.env.iter().cloned())
                .output()
                .await
                .unwrap();
            assert!(seeded.status.success(), "{seeded:?}");
        }
        let client = Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            gateways: Arc::new(
                nodes
                    .iter()
                    .filter(|n| n.service == "gateway")
                    .map(Node::http)
                    .collect(),
            ),
            turn: Arc::default(),
            waiting: Arc::default(),
            epoch: Instant::now(),
        };
        let (admin, _) = client
            .login(ADMIN_EMAIL, ADMIN_PASSWORD)
            .await
            .expect("the admin signs in");
        let page = client
            .send(
                reqwest::Method::GET,
                "/api/v1/products?per_page=6",
                None,
                None,
                None,
            )
            .await
            .body;
        let products: Vec<Product> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Product {
                id: p["id"].as_str().unwrap().to_owned(),
                sku: p["sku"].as_str().unwrap().to_owned(),
            })
            .collect();
        assert_eq!(products.len(), 6, "the demo catalog: {page}");
        let mut stack = Self {
            dir,
            databases,
            vhost,
            postgres,
            redis: redis_link,
            broker,
            payment_grpc,
            nodes,
            client,
            admin,
            products: Arc::new(products),
            customers: vec![],
            internal_errors: 0,
        };
        for product in stack.products.iter().skip(1) {
            stack.put_in(&product.sku, PLENTY).await;
        }
        for index in 0..profile.shoppers {
            let email = format!(
                "shopper-{index}-{}@example.org",
                uuid::Uuid::now_v7().simple()
            );
            let registered = stack
                .client
                .send(
                    reqwest::Method::POST,
                    "/api/v1/users/register",
                    None,
                    Some(
                        &json!({ "email": email, "password": SHOPPER_PASSWORD, "name": format!("Shopper {index}") }),
                    ),
                    None,
                )
                .await;
            assert_eq!(registered.status, 201, "{}", registered.body);
            let (token, id) = stack
                .client
                .login(&email, SHOPPER_PASSWORD)
                .await
                .expect("a shopper signs in");
            stack.customers.push(Customer { email, id, token });
        }
        eprintln!(
            "chaos: {} processes up and seeded in {:.1} s",
            stack.nodes.len(),
            started.elapsed().as_secs_f64()
        );
        Some(stack)
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }

    fn db(&self, service: &str) -> &DatabaseConnection {
        &self.databases[service].1
    }

    /// Adds `units` of `sku` to its first warehouse, as an admin.
    async fn put_in(&self, sku: &str, units: i64) {
        let level = self
            .client
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/inventory/{sku}"),
                None,
                None,
                None,
            )
            .await;
        let warehouse = level.body["warehouses"][0]["warehouse"].clone();
        let adjusted = self
            .client
            .send(
                reqwest::Method::POST,
                "/api/v1/inventory/adjust",
                Some(&self.admin),
                Some(&json!({ "sku": sku, "warehouse": warehouse, "delta": units, "reason": "chaos stock" })),
                None,
            )
            .await;
        assert_eq!(adjusted.status, 200, "{}", adjusted.body);
    }

    async fn refresh_admin(&mut self) {
        if let Some((token, _)) = self.client.login(ADMIN_EMAIL, ADMIN_PASSWORD).await {
            self.admin = token;
        }
    }

    /// Kills the named nodes, waits, starts them again; until `length`
    /// has passed. Returns how many kills it made.
    async fn kill_in_turn(&mut self, rounds: &[&[&str]], length: Duration) -> usize {
        let until = Instant::now() + length;
        let mut kills = 0;
        let mut round = 0;
        while Instant::now() < until {
            let victims = rounds[round % rounds.len()];
            for victim in victims {
                self.node(victim).kill().await;
                kills += 1;
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let dir = self.dir.path().to_owned();
            for victim in victims {
                self.node(victim).restart(&dir).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            round += 1;
        }
        kills
    }

    /// Publishes again events already delivered (the newest few of each
    /// kind, in rounds over `length`), as a broker may hand one over
    /// twice; returns how many.
    async fn deliver_twice(&self, length: Duration) -> usize {
        let transport = RabbitMq::new(&self.vhost.url, 16, 3);
        let mut published = 0;
        let rounds = 4;
        for _ in 0..rounds {
            for (service, kinds) in [
                (
                    "ordering",
                    &["order.confirmed", "order.cancelled", "order.failed"][..],
                ),
                ("payment", &["payment.completed", "payment.refunded"][..]),
                ("identity", &["user.registered"][..]),
                ("catalog", &["product.created"][..]),
            ] {
                let delivered: Vec<Envelope> = outbox(self.db(service), service)
                    .await
                    .into_iter()
                    .filter(|row| row.sent && kinds.contains(&row.kind.as_str()))
                    .filter_map(|row| row.envelope)
                    .collect();
                for envelope in delivered.iter().rev().take(8) {
                    transport.publish(envelope).await.unwrap();
                    published += 1;
                }
            }
            tokio::time::sleep(length / rounds).await;
        }
        published
    }

    /// Puts the fault on and takes it off; says what it did.
    async fn inflict(&mut self, fault: Fault, profile: &Profile) -> String {
        match fault {
            Fault::OrderingKilled => {
                let kills = self
                    .kill_in_turn(
                        &[
                            &["ordering-1"],
                            &["ordering-2"],
                            &["ordering-1", "ordering-2"],
                        ],
                        profile.fault,
                    )
                    .await;
                format!("{kills} kills")
            }
            Fault::PaymentAndInventoryKilled => {
                let kills = self
                    .kill_in_turn(
                        &[&["payment"], &["inventory"], &["payment", "inventory"]],
                        profile.fault,
                    )
                    .await;
                format!("{kills} kills")
            }
            Fault::GatewayKilled => {
                self.node("gateway-2").kill().await;
                tokio::time::sleep(profile.fault).await;
                let dir = self.dir.path().to_owned();
                self.node("gateway-2").restart(&dir).await;
                "gateway-2 down, then started again".into()
            }
            Fault::BrokerCut | Fault::PostgresCut | Fault::RedisCut => {
                let (link, length) = match fault {
                    Fault::BrokerCut => (&self.broker, profile.fault),
                    Fault::PostgresCut => (&self.postgres, profile.cut),
                    _ => (&self.redis, profile.cut),
                };
                link.cut();
                tokio::time::sleep(length).await;
                link.restore();
                format!("cut for {} s", length.as_secs())
            }
            Fault::EventsTwice => {
                let copies = self.deliver_twice(profile.fault).await;
                format!("{copies} events published a second time")
            }
            Fault::PaymentSlow => {
                self.payment_grpc.delay(SLOW);
                tokio::time::sleep(profile.fault).await;
                self.payment_grpc.delay(Duration::ZERO);
                format!("{} ms added each way", SLOW.as_millis())
            }
        }
    }

    async fn run(&mut self, fault: Fault, profile: &Profile) -> Report {
        self.refresh_admin().await;
        let scarce = self.products[0].sku.clone();
        self.put_in(&scarce, SCARCE_UNITS).await;
        let driver = Driver::start(
            &self.client,
            std::mem::take(&mut self.customers),
            &self.products,
        );
        tokio::time::sleep(profile.before).await;
        let fault_start = self.client.epoch.elapsed();
        let done = self.inflict(fault, profile).await;
        let fault_end = self.client.epoch.elapsed();
        tokio::time::sleep(profile.after).await;
        let watched = emporium_testkit::eventually(profile.recover_within, || {
            let recovered = driver.recovered(&self.client, fault_end);
            async move { recovered }
        })
        .await;
        let (customers, samples) = driver.stop().await;
        self.customers = customers;
        // Taken again from every answer, those that came after the
        // shoppers were told to stop included.
        let recovered = watched.map(|_| recovered_since(&samples, fault_end));
        let stopped = self.client.epoch.elapsed();
        let quiet = Instant::now();
        let mut snapshot = Snapshot::read(self).await;
        while !snapshot.quiet() && quiet.elapsed() < profile.settle_within {
            tokio::time::sleep(Duration::from_millis(500)).await;
            snapshot = Snapshot::read(self).await;
        }
        let settled = quiet.elapsed();
        self.refresh_admin().await;
        let levels = self.levels().await;
        let dead = self.dead_letters().await;
        let window = Window {
            fault_start,
            fault_end,
            recovered,
            stopped,
        };
        let mut table = snapshot.reconcile(&self.products, &levels, &samples, &window, profile);
        let logged = self.internal_errors();
        let new_errors: Vec<String> = logged.iter().skip(self.internal_errors).cloned().collect();
        self.internal_errors = logged.len();
        table.push(Row::new(
            "internal errors logged",
            format!("{}{}", new_errors.len(), some(&new_errors)),
            new_errors.is_empty(),
        ));
        let set_aside: u32 = dead.values().sum();
        table.push(Row::new(
            "dead letters",
            dead.iter()
                .map(|(queue, n)| format!("{queue} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            set_aside == 0,
        ));
        Report {
            fault,
            done,
            window,
            samples,
            settled,
            table,
        }
    }

    /// (on hand, reserved, available) of each product the shoppers buy, as
    /// inventory's API answers.
    async fn levels(&self) -> HashMap<String, (i64, i64, i64)> {
        let mut levels = HashMap::new();
        for product in self.products.iter() {
            let level = self
                .client
                .send(
                    reqwest::Method::GET,
                    &format!("/api/v1/inventory/{}", product.sku),
                    None,
                    None,
                    None,
                )
                .await
                .body;
            levels.insert(
                product.sku.clone(),
                (
                    level["on_hand"].as_i64().unwrap_or(-1),
                    level["reserved"].as_i64().unwrap_or(-1),
                    level["available"].as_i64().unwrap_or(-1),
                ),
            );
        }
        levels
    }

    /// Kills every process; their logs go to `EMPORIUM_CHAOS_LOGS`, a
    /// directory, when it is set.
    async fn stop(mut self) {
        let keep = std::env::var("EMPORIUM_CHAOS_LOGS").ok();
        for node in &mut self.nodes {
            node.kill().await;
            if let Some(dir) = &keep {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(format!("{dir}/{}.log", node.name), &node.history).unwrap();
            }
        }
    }

    /// The "internal error" lines every process logged (those killed
    /// included), as `process: error`.
    fn internal_errors(&self) -> Vec<String> {
        let mut found = vec![];
        for node in &self.nodes {
            let current = node
                .process
                .as_ref()
                .map(|p| p.logs.lock().unwrap().clone())
                .unwrap_or_default();
            for line in node.history.lines().chain(current.lines()) {
                let Ok(value) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                if value["message"] == "internal error" {
                    found.push(format!(
                        "{}: {}",
                        node.name,
                        value["error"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        found
    }

    /// Events each consumer set aside in its dead-letter queue.
    async fn dead_letters(&self) -> BTreeMap<&'static str, u32> {
        let mut counted = BTreeMap::new();
        for (_, queue, _) in consumers() {
            counted.insert(
                queue,
                emporium_testkit::dead_letters(&self.vhost.url, queue).await,
            );
        }
        counted
    }
}

/// When, in a scenario, the fault was on and the shop worked again.
#[derive(Clone, Copy, Debug)]
struct Window {
    fault_start: Duration,
    fault_end: Duration,
    /// When the last request the fault spoiled ended (a checkout sent
    /// after it confirmed); `None` when the shop did not recover in time.
    recovered: Option<Duration>,
    stopped: Duration,
}

impl Window {
    /// Whether a failure of `sample` is the fault's: it was under way
    /// while the fault was on or the shop was recovering from it.
    fn excuses(&self, sample: &Sample) -> bool {
        sample.at + sample.latency >= self.fault_start
            && sample.at <= self.recovered.unwrap_or(self.stopped)
    }
}

async fn query(conn: &DatabaseConnection, sql: &str) -> Vec<QueryResult> {
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn text(row: &QueryResult, column: &str) -> String {
    row.try_get::<String>("", column)
        .unwrap_or_else(|e| panic!("{column}: {e}"))
}

fn number(row: &QueryResult, column: &str) -> i64 {
    row.try_get::<i64>("", column)
        .unwrap_or_else(|e| panic!("{column}: {e}"))
}

struct OutboxRow {
    id: String,
    kind: String,
    sent: bool,
    envelope: Option<Envelope>,
}

async fn outbox(conn: &DatabaseConnection, service: &str) -> Vec<OutboxRow> {
    let unsent: BTreeSet<String> = query(conn, "SELECT id FROM outbox WHERE sent_at IS NULL")
        .await
        .iter()
        .map(|r| text(r, "id"))
        .collect();
    query(
        conn,
        "SELECT id, event_type, envelope FROM outbox ORDER BY id",
    )
    .await
    .iter()
    .map(|r| {
        let id = text(r, "id");
        OutboxRow {
            sent: !unsent.contains(&id),
            kind: text(r, "event_type"),
            envelope: serde_json::from_str(&text(r, "envelope"))
                .ok()
                .filter(|e: &Envelope| e.service() == service),
            id,
        }
    })
    .collect()
}

#[derive(Clone, Debug)]
struct OrderRow {
    id: String,
    user: String,
    status: String,
    step: String,
    total: i64,
    reason: Option<String>,
}

impl OrderRow {
    /// Its checkout or its cancellation still under way.
    fn unsettled(&self) -> bool {
        self.status == "pending" || self.step == emporium_ordering::checkout::CANCELLING
    }
}

#[derive(Clone, Debug)]
struct PaymentRow {
    id: String,
    order: String,
    status: String,
    amount: i64,
    refunded: i64,
}

/// What the stores hold, read at one moment.
struct Snapshot {
    orders: Vec<OrderRow>,
    /// (order, product, SKU, quantity).
    lines: Vec<(String, String, String, i64)>,
    payments: Vec<PaymentRow>,
    ledger: Vec<LedgerRow>,
    /// SKU → (on hand, reserved), over its warehouses.
    stock: HashMap<String, (i64, i64)>,
    /// SKU → (kind → (on hand, reserved) deltas summed).
    movements: HashMap<String, BTreeMap<String, (i64, i64)>>,
    /// SKU → reservation status → units.
    reservations: HashMap<String, BTreeMap<String, i64>>,
    /// (service, event id, type, sent).
    events: Vec<(&'static str, String, String, bool)>,
    /// Consumer → the event ids its inbox holds.
    inboxes: HashMap<&'static str, BTreeSet<String>>,
    /// Notifications made twice for one event, channel and recipient.
    notified_twice: Vec<String>,
    /// (user, product) → the confirmed orders recommendation counted.
    purchases: HashMap<(String, String), i64>,
}

impl Snapshot {
    async fn read(stack: &Stack) -> Self {
        let ordering = stack.db("ordering");
        let orders = query(
            ordering,
            "SELECT id, user_id, status, step, total_minor, failure_reason FROM orders",
        )
        .await
        .iter()
        .map(|r| OrderRow {
            id: text(r, "id"),
            user: text(r, "user_id"),
            status: text(r, "status"),
            step: text(r, "step"),
            total: number(r, "total_minor"),
            reason: r.try_get::<Option<String>>("", "failure_reason").unwrap(),
        })
        .collect();
        let lines = query(
            ordering,
            "SELECT order_id, product_id, sku, quantity FROM order_lines",
        )
        .await
        .iter()
        .map(|r| {
            (
                text(r, "order_id"),
                text(r, "product_id"),
                text(r, "sku"),
                number(r, "quantity"),
            )
        })
        .collect();
        let payment = stack.db("payment");
        let payments = query(
            payment,
            "SELECT id, order_id, status, amount_minor, refunded_minor FROM payments",
        )
        .await
        .iter()
        .map(|r| PaymentRow {
            id: text(r, "id"),
            order: text(r, "order_id"),
            status: text(r, "status"),
            amount: number(r, "amount_minor"),
            refunded: number(r, "refunded_minor"),
        })
        .collect();
        let ledger = ledger::rows(payment).await.unwrap();
        let inventory = stack.db("inventory");
        let mut stock: HashMap<String, (i64, i64)> = HashMap::new();
        for r in query(inventory, "SELECT sku, on_hand, reserved FROM stock").await {
            let level = stock.entry(text(&r, "sku")).or_default();
            level.0 += number(&r, "on_hand");
            level.1 += number(&r, "reserved");
        }
        let mut movements: HashMap<String, BTreeMap<String, (i64, i64)>> = HashMap::new();
        for r in query(
            inventory,
            "SELECT sku, kind, on_hand_delta, reserved_delta FROM movements",
        )
        .await
        {
            let sum = movements
                .entry(text(&r, "sku"))
                .or_default()
                .entry(text(&r, "kind"))
                .or_default();
            sum.0 += number(&r, "on_hand_delta");
            sum.1 += number(&r, "reserved_delta");
        }
        let mut reservations: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
        for r in query(
            inventory,
            "SELECT r.status, l.sku, l.quantity FROM reservations r \
             JOIN reservation_lines l ON l.reservation_id = r.id",
        )
        .await
        {
            *reservations
                .entry(text(&r, "sku"))
                .or_default()
                .entry(text(&r, "status"))
                .or_default() += number(&r, "quantity");
        }
        let mut events = vec![];
        for (service, _) in DISTRIBUTED_DATABASES {
            for row in outbox(stack.db(service), service).await {
                events.push((service, row.id, row.kind, row.sent));
            }
        }
        let mut inboxes = HashMap::new();
        for (service, queue, _) in consumers() {
            let held = query(
                stack.db(service),
                &format!("SELECT event_id FROM inbox WHERE consumer = '{queue}'"),
            )
            .await
            .iter()
            .map(|r| text(r, "event_id"))
            .collect();
            inboxes.insert(queue, held);
        }
        let notified_twice = query(
            stack.db("notification"),
            "SELECT event_id, channel, recipient FROM notifications \
             WHERE event_id IS NOT NULL GROUP BY event_id, channel, recipient \
             HAVING COUNT(*) > 1",
        )
        .await
        .iter()
        .map(|r| text(r, "event_id"))
        .collect();
        let purchases = query(
            stack.db("recommendation"),
            "SELECT user_id, product_id, orders FROM purchases",
        )
        .await
        .iter()
        .map(|r| {
            (
                (text(r, "user_id"), text(r, "product_id")),
                number(r, "orders"),
            )
        })
        .collect();
        Self {
            orders,
            lines,
            payments,
            ledger,
            stock,
            movements,
            reservations,
            events,
            inboxes,
            notified_twice,
            purchases,
        }
    }

    /// A payment as payment and the processor hold it, for a failing row.
    fn payment_story(&self, id: &str) -> String {
        let Some(p) = self.payments.iter().find(|p| p.id == id) else {
            return format!("payment {id} unknown");
        };
        let processor = self.ledger.iter().find(|r| r.payment_id == id).map_or(
            "processor: nothing".to_owned(),
            |r| {
                format!(
                    "processor: authorized {}, captured {}, voided {}, refunded {}",
                    r.authorization_id.is_some(),
                    r.captured_minor,
                    r.voided_at.is_some(),
                    r.refunded_minor
                )
            },
        );
        format!(
            "payment {id} of order {}: {} {}/{} refunded; {processor}",
            p.order, p.status, p.amount, p.refunded
        )
    }

    /// An order and its payments, for a failing row.
    fn order_story(&self, id: &str) -> String {
        let Some(o) = self.orders.iter().find(|o| o.id == id) else {
            return format!("order {id} unknown");
        };
        let payments: Vec<String> = self
            .payments
            .iter()
            .filter(|p| p.order == id)
            .map(|p| self.payment_story(&p.id))
            .collect();
        format!(
            "order {id} {} at {} ({}), total {}: [{}]",
            o.status,
            o.step,
            o.reason.as_deref().unwrap_or("-"),
            o.total,
            payments.join(" | ")
        )
    }

    /// The events each consumer should hold: those of its interests.
    fn expected(&self, interests: &[Interest<'_>]) -> BTreeSet<String> {
        self.events
            .iter()
            .filter(|(service, _, kind, _)| {
                interests.iter().any(|i| {
                    i.source == format!("emporium.{service}") && topic_matches(i.pattern, kind)
                })
            })
            .map(|(_, id, _, _)| id.clone())
            .collect()
    }

    /// Nothing left to happen: no order pending, no event unsent or not
    /// yet acted on, no stock held.
    fn quiet(&self) -> bool {
        self.orders.iter().all(|o| !o.unsettled())
            && self.events.iter().all(|e| e.3)
            && consumers().iter().all(|(_, queue, interests)| {
                self.expected(interests).is_subset(&self.inboxes[queue])
            })
            && self.stock.values().all(|s| s.1 == 0)
    }

    fn reconcile(
        &self,
        products: &[Product],
        levels: &HashMap<String, (i64, i64, i64)>,
        samples: &[Sample],
        window: &Window,
        profile: &Profile,
    ) -> Vec<Row> {
        let mut table = vec![];
        let count = |status: &str| self.orders.iter().filter(|o| o.status == status).count();
        let pending: Vec<String> = self
            .orders
            .iter()
            .filter(|o| o.unsettled())
            .map(|o| format!("{} {} at {}", o.id, o.status, o.step))
            .collect();
        table.push(Row::new(
            "orders settled",
            format!(
                "{} orders: {} confirmed, {} failed, {} cancelled, {} unsettled{}",
                self.orders.len(),
                count("confirmed"),
                count("failed"),
                count("cancelled"),
                pending.len(),
                some(&pending)
            ),
            pending.is_empty(),
        ));

        // Stock: what was put in, less what was sold, is on the shelves,
        // and the movement ledger says the same.
        let sold_statuses = ["confirmed", "processing", "shipped", "delivered"];
        let status_of: HashMap<&str, &str> = self
            .orders
            .iter()
            .map(|o| (o.id.as_str(), o.status.as_str()))
            .collect();
        for product in products {
            let sku = &product.sku;
            let sold: i64 = self
                .lines
                .iter()
                .filter(|l| {
                    &l.2 == sku
                        && status_of
                            .get(l.0.as_str())
                            .is_some_and(|s| sold_statuses.contains(s))
                })
                .map(|l| l.3)
                .sum();
            let moved = self.movements.get(sku).cloned().unwrap_or_default();
            let put_in = moved.get("adjust").map_or(0, |m| m.0);
            let ledger_on_hand: i64 = moved.values().map(|m| m.0).sum();
            let ledger_reserved: i64 = moved.values().map(|m| m.1).sum();
            let (on_hand, reserved) = self.stock.get(sku).copied().unwrap_or_default();
            let committed = self
                .reservations
                .get(sku)
                .and_then(|r| r.get("committed"))
                .copied()
                .unwrap_or_default();
            let (api_on_hand, api_reserved, available) =
                levels.get(sku).copied().unwrap_or((-1, -1, -1));
            let ok = available + reserved == put_in - sold
                && available >= 0
                && reserved == 0
                && committed == sold
                && ledger_on_hand == on_hand
                && ledger_reserved == reserved
                && (api_on_hand, api_reserved) == (on_hand, reserved);
            table.push(Row::new(
                format!("stock {sku}"),
                format!(
                    "put in {put_in} − sold {sold} = {}; available {available} + reserved {reserved} = {}; \
                     committed {committed}; ledger on hand {ledger_on_hand} (store {on_hand}), reserved {ledger_reserved}",
                    put_in - sold,
                    available + reserved
                ),
                ok,
            ));
        }

        // Money: each confirmed order paid once, in full; nothing kept of
        // a failed or cancelled one; no authorization left holding money.
        let ledger: HashMap<&str, &LedgerRow> = self
            .ledger
            .iter()
            .map(|r| (r.payment_id.as_str(), r))
            .collect();
        let taken = |p: &PaymentRow| {
            ledger
                .get(p.id.as_str())
                .map_or(0, |r| r.captured_minor - r.refunded_minor)
        };
        let kept_money =
            |p: &PaymentRow| matches!(p.status.as_str(), "captured" | "partially_refunded");
        let mut by_order: HashMap<&str, Vec<&PaymentRow>> = HashMap::new();
        for payment in &self.payments {
            by_order
                .entry(payment.order.as_str())
                .or_default()
                .push(payment);
        }
        let (mut paid_once, mut confirmed, mut unpaid) = (0, 0, vec![]);
        let (mut kept, mut refunded, mut cancelled, mut not_refunded) = (vec![], 0, 0, vec![]);
        for order in &self.orders {
            let payments = by_order.get(order.id.as_str()).cloned().unwrap_or_default();
            let net: i64 = payments.iter().map(|p| taken(p)).sum();
            match order.status.as_str() {
                status if sold_statuses.contains(&status) => {
                    confirmed += 1;
                    let captured: Vec<&&PaymentRow> =
                        payments.iter().filter(|p| p.status == "captured").collect();
                    if captured.len() == 1
                        && captured[0].amount == order.total
                        && net == order.total
                    {
                        paid_once += 1;
                    } else {
                        unpaid.push(order.id.as_str());
                    }
                }
                "cancelled" => {
                    cancelled += 1;
                    if net == 0 && !payments.iter().any(|p| kept_money(p)) {
                        refunded += 1;
                    } else {
                        not_refunded.push(order.id.as_str());
                    }
                }
                "failed" if net != 0 || payments.iter().any(|p| kept_money(p)) => {
                    kept.push(order.id.as_str());
                }
                _ => {}
            }
        }
        let stories = |ids: &[&str], story: &dyn Fn(&str) -> String| {
            ids.iter().take(3).map(|id| story(id)).collect::<Vec<_>>()
        };
        let tell = |ids: &[&str]| stories(ids, &|id| self.order_story(id));
        let unpaid_told = tell(&unpaid);
        let not_refunded_told = tell(&not_refunded);
        let kept_told = tell(&kept);
        table.push(Row::new(
            "confirmed orders paid once",
            format!(
                "{paid_once} of {confirmed} hold exactly one captured payment of their total{}",
                some(&unpaid_told)
            ),
            unpaid.is_empty(),
        ));
        table.push(Row::new(
            "cancelled orders refunded",
            format!(
                "{refunded} of {cancelled} refunded in full{}",
                some(&not_refunded_told)
            ),
            not_refunded.is_empty(),
        ));
        table.push(Row::new(
            "failed orders charged",
            format!(
                "{} of {} with money taken{}",
                kept.len(),
                count("failed"),
                some(&kept_told)
            ),
            kept.is_empty(),
        ));
        let open: Vec<&str> = self
            .ledger
            .iter()
            .filter(|r| r.open())
            .map(|r| r.payment_id.as_str())
            .collect();
        table.push(Row::new(
            "authorizations left open",
            format!(
                "{} of {} at the processor{}",
                open.len(),
                self.ledger.len(),
                some(&stories(&open, &|id| self.payment_story(id)))
            ),
            open.is_empty(),
        ));
        let disagree: Vec<&str> = self
            .payments
            .iter()
            .filter(|p| {
                let kept = match p.status.as_str() {
                    "captured" | "partially_refunded" | "refunded" => p.amount - p.refunded,
                    _ => 0,
                };
                kept != taken(p)
            })
            .map(|p| p.id.as_str())
            .collect();
        let processor: i64 = self
            .ledger
            .iter()
            .map(|r| r.captured_minor - r.refunded_minor)
            .sum();
        table.push(Row::new(
            "processor agrees with payments",
            format!(
                "{} payments, {processor} minor units taken at the processor; {} disagree{}",
                self.payments.len(),
                disagree.len(),
                some(&stories(&disagree, &|id| self.payment_story(id)))
            ),
            disagree.is_empty(),
        ));

        // Events: every one sent, and held once by each consumer of it.
        let unsent: Vec<&str> = self
            .events
            .iter()
            .filter(|e| !e.3)
            .map(|e| e.1.as_str())
            .collect();
        let mut written: BTreeMap<&str, usize> = BTreeMap::new();
        for (service, ..) in &self.events {
            *written.entry(service).or_default() += 1;
        }
        table.push(Row::new(
            "events sent",
            format!(
                "{} written ({}), {} unsent{}",
                self.events.len(),
                written
                    .iter()
                    .map(|(s, n)| format!("{s} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                unsent.len(),
                some(&unsent)
            ),
            unsent.is_empty(),
        ));
        let every: BTreeSet<&str> = self.events.iter().map(|e| e.1.as_str()).collect();
        let kinds: HashMap<&str, &str> = self
            .events
            .iter()
            .map(|e| (e.1.as_str(), e.2.as_str()))
            .collect();
        for (_, queue, interests) in consumers() {
            let expected = self.expected(interests);
            let held = &self.inboxes[queue];
            let missing: Vec<String> = expected
                .difference(held)
                .map(|id| format!("{} {id}", kinds.get(id.as_str()).copied().unwrap_or("?")))
                .collect();
            let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
            let foreign: Vec<&str> = held
                .iter()
                .map(String::as_str)
                .filter(|id| !every.contains(id))
                .collect();
            table.push(Row::new(
                format!("inbox {queue}"),
                format!(
                    "{} expected, {} held, {} missing{}, {} foreign{}",
                    expected.len(),
                    held.len(),
                    missing.len(),
                    some(&missing),
                    foreign.len(),
                    some(&foreign)
                ),
                missing.is_empty() && foreign.is_empty(),
            ));
        }
        let product_of: HashMap<&str, Vec<&str>> =
            self.lines.iter().fold(HashMap::new(), |mut m, l| {
                m.entry(l.0.as_str()).or_default().push(l.1.as_str());
                m
            });
        let mut learnt: HashMap<(String, String), i64> = HashMap::new();
        for order in &self.orders {
            if sold_statuses.contains(&order.status.as_str()) || order.status == "cancelled" {
                let mut products: Vec<&str> = product_of
                    .get(order.id.as_str())
                    .cloned()
                    .unwrap_or_default();
                products.sort_unstable();
                products.dedup();
                for product in products {
                    *learnt
                        .entry((order.user.clone(), product.to_owned()))
                        .or_default() += 1;
                }
            }
        }
        let miscounted = learnt
            .iter()
            .filter(|(key, n)| self.purchases.get(*key) != Some(n))
            .count()
            + self
                .purchases
                .keys()
                .filter(|key| !learnt.contains_key(*key))
                .count();
        table.push(Row::new(
            "acted on once",
            format!(
                "{} notifications made twice{}; {miscounted} of {} purchase counts differ from the confirmed orders",
                self.notified_twice.len(),
                some(&self.notified_twice.iter().map(String::as_str).collect::<Vec<_>>()),
                learnt.len()
            ),
            self.notified_twice.is_empty() && miscounted == 0,
        ));

        // The shoppers' side: no 5xx but the fault's; working again soon.
        let blamed: Vec<String> = samples
            .iter()
            .filter(|s| s.status == 500 || (s.unanswered() && !window.excuses(s)))
            .map(|s| {
                format!(
                    "{} {} at {:.1} s: {}",
                    s.op,
                    s.status,
                    s.at.as_secs_f64(),
                    s.detail
                )
            })
            .collect();
        table.push(Row::new(
            "5xx not the fault's",
            format!(
                "{} of {} requests{}",
                blamed.len(),
                samples.len(),
                some(&blamed.iter().map(String::as_str).collect::<Vec<_>>())
            ),
            blamed.is_empty(),
        ));
        let recovery = window
            .recovered
            .map(|at| at.saturating_sub(window.fault_end));
        table.push(Row::new(
            "serving again",
            match recovery {
                Some(after) => format!(
                    "normally {:.1} s after the fault ended (last spoilt request), checkouts confirming",
                    after.as_secs_f64()
                ),
                None => format!(
                    "not within {} s of the fault's end",
                    profile.recover_within.as_secs()
                ),
            },
            recovery.is_some_and(|after| after <= profile.recover_within)
                && window.recovered.is_some_and(|at| {
                    samples
                        .iter()
                        .any(|s| s.at >= at && s.outcome.as_deref() == Some("confirmed"))
                }),
        ));
        table
    }
}

/// The first few of `ids`, for a row's text.
fn some<S: AsRef<str>>(ids: &[S]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = ids.iter().take(3).map(AsRef::as_ref).collect();
    format!(
        " ({}{})",
        shown.join("; "),
        if ids.len() > 3 { "; …" } else { "" }
    )
}

/// One line of a reconciliation.
#[derive(Clone, Debug)]
struct Row {
    check: String,
    found: String,
    ok: bool,
}

impl Row {
    fn new(check: impl Into<String>, found: String, ok: bool) -> Self {
        Self {
            check: check.into(),
            found,
            ok,
        }
    }
}

struct Report {
    fault: Fault,
    done: String,
    window: Window,
    samples: Vec<Sample>,
    settled: Duration,
    table: Vec<Row>,
}

fn p99(samples: &[&Sample]) -> String {
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    if latencies.is_empty() {
        return "–".into();
    }
    latencies.sort_unstable();
    let index = (latencies.len() * 99).div_ceil(100).saturating_sub(1);
    format!("{} ms", latencies[index].as_millis())
}

impl Report {
    fn markdown(&self) -> String {
        let w = &self.window;
        let mut out = String::new();
        let _ = writeln!(out, "### {}: {}\n", self.fault.name(), self.fault.title());
        let _ = writeln!(
            out,
            "Fault from {:.1} s to {:.1} s ({}); shoppers stopped at {:.1} s; settled {:.1} s later.\n",
            w.fault_start.as_secs_f64(),
            w.fault_end.as_secs_f64(),
            self.done,
            w.stopped.as_secs_f64(),
            self.settled.as_secs_f64()
        );
        let checkouts: Vec<&Sample> = self.samples.iter().filter(|s| s.op == "checkout").collect();
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        for checkout in &checkouts {
            let outcome = match &checkout.outcome {
                Some(outcome) => outcome.clone(),
                None if checkout.status == 0 => "no answer".into(),
                None => format!("HTTP {}", checkout.status),
            };
            *outcomes.entry(outcome).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "Checkouts attempted {}: {}.\n",
            checkouts.len(),
            outcomes
                .iter()
                .map(|(o, n)| format!("{o} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut unanswered: BTreeMap<String, usize> = BTreeMap::new();
        for sample in self.samples.iter().filter(|s| s.unanswered()) {
            let what = if sample.status == 0 {
                format!("{} without an answer", sample.op)
            } else {
                format!("{} {} ({})", sample.op, sample.status, sample.detail)
            };
            *unanswered.entry(what).or_default() += 1;
        }
        if !unanswered.is_empty() {
            let _ = writeln!(
                out,
                "Requests not served: {}.\n",
                unanswered
                    .iter()
                    .map(|(what, n)| format!("{what} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let phase = |from: Duration, to: Duration, op: Option<&str>| -> Vec<&Sample> {
            self.samples
                .iter()
                .filter(|s| s.at >= from && s.at < to && op.is_none_or(|op| s.op == op))
                .collect()
        };
        let _ = writeln!(out, "| p99 | before | during | after |\n|---|---|---|---|");
        for (label, op) in [("checkout", Some("checkout")), ("every request", None)] {
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} |",
                p99(&phase(Duration::ZERO, w.fault_start, op)),
                p99(&phase(w.fault_start, w.fault_end, op)),
                p99(&phase(w.fault_end, w.stopped, op)),
            );
        }
        let _ = writeln!(
            out,
            "\nTime to recover: {}.\n",
            w.recovered
                .map_or("not within the limit".to_owned(), |at| format!(
                    "{:.1} s",
                    at.saturating_sub(w.fault_end).as_secs_f64()
                ))
        );
        let _ = writeln!(out, "| check | found | ok |\n|---|---|---|");
        for row in &self.table {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                row.check,
                row.found,
                if row.ok { "yes" } else { "**NO**" }
            );
        }
        out
    }
}

/// One line per scenario: what the shoppers saw and whether everything
/// reconciled.
fn summary(reports: &[Report], profile: &Profile) -> String {
    let mut out = format!(
        "Each fault lasted {} s (PostgreSQL and Redis cut for {} s), with {} shoppers \
         before ({} s), during and after it (at least {} s); then the shoppers stopped \
         and the shop was reconciled once it settled.\n\n\
         | scenario | checkouts | confirmed | failed | no answer or 5xx | p99 checkout during | p99 after | recovered in | reconciled |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        profile.fault.as_secs(),
        profile.cut.as_secs(),
        profile.shoppers,
        profile.before.as_secs(),
        profile.after.as_secs(),
    );
    for report in reports {
        let w = &report.window;
        let checkouts: Vec<&Sample> = report
            .samples
            .iter()
            .filter(|s| s.op == "checkout")
            .collect();
        let with = |prefix: &str| {
            checkouts
                .iter()
                .filter(|s| s.outcome.as_deref().is_some_and(|o| o.starts_with(prefix)))
                .count()
        };
        let during: Vec<&Sample> = checkouts
            .iter()
            .copied()
            .filter(|s| s.at >= w.fault_start && s.at < w.fault_end)
            .collect();
        let after: Vec<&Sample> = checkouts
            .iter()
            .copied()
            .filter(|s| s.at >= w.fault_end)
            .collect();
        let failing = report.table.iter().filter(|r| !r.ok).count();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            report.fault.name(),
            checkouts.len(),
            with("confirmed"),
            with("failed"),
            checkouts.iter().filter(|s| s.unanswered()).count(),
            p99(&during),
            p99(&after),
            w.recovered.map_or("no".to_owned(), |at| format!(
                "{:.1} s",
                at.saturating_sub(w.fault_end).as_secs_f64()
            )),
            match failing {
                0 => format!("all {} rows", report.table.len()),
                1 => "**1 row failed**".to_owned(),
                n => format!("**{n} rows failed**"),
            }
        );
    }
    out
}

/// The shop distributed over processes on the real servers, customers
/// shopping all along, one fault after another; after each, a quiet period
/// and a reconciliation that fails the test on any loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_under_shopper_load_lose_no_order_unit_or_cent() {
    let profile = Profile::from_env();
    let faults = chosen();
    let Some(mut stack) = Stack::start(&profile).await else {
        return;
    };
    let mut reports = vec![];
    for fault in faults {
        let started = Instant::now();
        let report = stack.run(fault, &profile).await;
        eprintln!(
            "{}\n(scenario took {:.1} s)\n",
            report.markdown(),
            started.elapsed().as_secs_f64()
        );
        reports.push(report);
    }
    stack.stop().await;
    if let Ok(path) = std::env::var("EMPORIUM_CHAOS_REPORT") {
        let mut text = summary(&reports, &profile);
        for report in &reports {
            text.push('\n');
            text.push_str(&report.markdown());
        }
        std::fs::write(&path, text).unwrap();
    }
    let failing: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.table
                .iter()
                .filter(|row| !row.ok)
                .map(|row| format!("{}: {}: {}", r.fault.name(), row.check, row.found))
        })
        .collect();
    assert!(
        failing.is_empty(),
        "reconciliation failed:\n{}",
        failing.join("\n")
    );
}
