//! Test-only helpers: services started and awaited as production starts
//! them, fresh databases per test on every backend (and the macro that runs
//! a store contract on each), the real servers' URLs (or a printed skip), a
//! token issuer, reserved ports, a TCP link that a test can cut (or slow)
//! to take a server away, services in `emporium serve` processes of their
//! own, and a broker virtual host per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use emporium_platform::auth::{Issuer, Role};
use emporium_platform::config::Secret;
use sea_orm::{ConnectionTrait, Database};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub const POSTGRES: &str = "EMPORIUM_TEST_POSTGRES_URL";
pub const MYSQL: &str = "EMPORIUM_TEST_MYSQL_URL";
pub const REDIS: &str = "EMPORIUM_TEST_REDIS_URL";
pub const AMQP: &str = "EMPORIUM_TEST_AMQP_URL";
/// A real SMTP server (aiosmtpd in CI)...
pub const SMTP: &str = "EMPORIUM_TEST_SMTP_URL";
/// ...and the Maildir it delivers into.
pub const SMTP_MAILDIR: &str = "EMPORIUM_TEST_SMTP_MAILDIR";

/// An SMTP server that answers every connection with `refusal` (a reply
/// line such as `554 5.7.1 relaying denied`) and closes: what a mail
/// server that will not take the shop's mail looks like.
pub async fn refusing_smtp(refusal: &'static str) -> SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(format!("{refusal}\r\n").as_bytes()).await;
        }
    });
    addr
}

/// The messages in the Maildir at `maildir` addressed to `to` (its `To:`
/// header), as raw text.
pub fn delivered(maildir: &str, to: &str) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(std::path::Path::new(maildir).join(sub)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let addressed = text
                .lines()
                .take_while(|l| !l.is_empty())
                .any(|l| l.strip_prefix("To: ").is_some_and(|v| v.trim() == to));
            if addressed {
                found.push(text);
            }
        }
    }
    found
}

/// The URL of a real server for this test, or `None` after printing why the
/// test is skipped.
pub fn server_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr: the test harness captures `println!`, and
            // a skip should be seen even when the test passes.
            use std::io::Write;
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {test}: {variable} is not set (it names the server this test needs)"
            );
            None
        }
    }
}

/// `redis_url` with Redis database `database` instead of its own. The
/// services' caches name their keys by service and SKU or product, which
/// every demo shop shares: two distributed shops running at once on one
/// database would read each other's cached stock. Each suite that runs
/// one takes a database of its own (the bench has 13).
pub fn redis_database(redis_url: &str, database: u8) -> String {
    let mut url = url::Url::parse(redis_url).expect("a Redis URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// Starts `definitions` as the binary does and waits until each answers
/// `/ready` (at most 30 s).
pub async fn spawn(
    settings: emporium_platform::config::Settings,
    definitions: &[emporium_platform::service::Definition],
) -> emporium_platform::service::Running {
    let running = emporium_platform::service::start(settings, definitions)
        .await
        .expect("services start");
    for service in running.services.iter() {
        wait_ready(&format!("http://{}", service.http_addr)).await;
    }
    running
}

/// Waits until `base/ready` answers 200 (at most 30 s), instead of sleeping.
pub async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(30), || {
        let request = client.get(format!("{base}/ready")).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    assert!(
        ready.is_some(),
        "{base}/ready did not answer 200 within 30 s"
    );
}

/// A loopback port held for the test's lifetime: bound but not listening,
/// so that connections to it are refused and no other test can take it.
pub struct RefusingPort {
    pub addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

impl RefusingPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind a loopback port");
        let addr = socket.local_addr().expect("local address");
        Self {
            addr,
            _socket: socket,
        }
    }
}

impl Default for RefusingPort {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs a store contract, `async fn contract(backend: Backend)`, as one test
/// per backend: `sqlite::contract`, `postgres::contract`, `mariadb::contract`.
/// The server backends skip (and say so) when their URL is not set.
#[macro_export]
macro_rules! on_every_backend {
    ($($contract:ident),* $(,)?) => {
        mod sqlite { use super::*; $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $contract() { super::$contract($crate::Backend::Sqlite).await } )* }
        mod postgres { use super::*; $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $contract() { super::$contract($crate::Backend::Postgres).await } )* }
        mod mariadb { use super::*; $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $contract() { super::$contract($crate::Backend::MySql).await } )* }
    };
}

/// The relational backends a store test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

/// A database of its own for one test; dropped (server backends) or deleted
/// (SQLite) when the value goes.
pub struct TestDatabase {
    pub url: Secret,
    pub backend: Backend,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// `None` (and a printed skip) when the backend's server is not configured.
    pub async fn fresh(backend: Backend) -> Option<Self> {
        let name = format!("emporium_test_{}", uuid::Uuid::now_v7().simple());
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Some(Self {
                    url: Secret::new(url),
                    backend,
                    admin_url: None,
                    name,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres | Backend::MySql => {
                let variable = if backend == Backend::Postgres {
                    POSTGRES
                } else {
                    MYSQL
                };
                let admin_url = server_url(variable)?;
                let admin = Database::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("{variable} unreachable: {e}"));
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let _ = admin.close().await;
                let url = replace_database(&admin_url, &name);
                Some(Self {
                    url: Secret::new(url),
                    backend,
                    admin_url: Some(admin_url),
                    name,
                    _dir: None,
                })
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(admin_url) = self.admin_url.clone() else {
            return;
        };
        let statement = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        // Dropped from a thread of its own: Drop cannot await, and the test's
        // runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin.execute_unprepared(&statement).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    match base[scheme_end..].find('/') {
        Some(slash) => format!("{}/{name}{query}", &base[..scheme_end + slash]),
        None => format!("{base}/{name}{query}"),
    }
}

/// Signs tokens for tests; its JWKS is what services under test trust.
pub struct Tokens {
    pub issuer: Issuer,
}

impl Tokens {
    pub fn new() -> Self {
        Self { issuer: issuer() }
    }
    pub fn admin(&self) -> String {
        self.issuer
            .mint("admin-1", Role::Admin, Duration::from_secs(600))
            .expect("mint")
    }
    pub fn customer(&self) -> String {
        self.user("customer-1", Role::Customer)
    }
    pub fn user(&self, subject: &str, role: Role) -> String {
        self.issuer
            .mint(subject, role, Duration::from_secs(600))
            .expect("mint")
    }
}

/// A fresh signing key with the default issuer and audience.
pub fn issuer() -> Issuer {
    Issuer::generate(&emporium_platform::config::AuthSettings::default())
        .expect("signing key")
        .0
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

/// A TCP relay in front of a server that the test can cut and restore, to
/// see what a service does while its dependency is away, or slow down, to
/// see what its callers do when it answers after their deadline.
pub struct Link {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    stop: CancellationToken,
}

impl Link {
    pub async fn to(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind link");
        let addr = listener.local_addr().expect("link addr");
        let up = Arc::new(AtomicBool::new(true));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let stop = CancellationToken::new();
        let (up2, delay2, gen2, stop2) = (
            up.clone(),
            delay_ms.clone(),
            generation.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (inbound, _) = tokio::select! {
                    _ = stop2.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused in effect
                }
                let mut cut = gen2.subscribe();
                let delay = delay2.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (from_client, to_client) = inbound.into_split();
                    let (from_server, to_server) = outbound.into_split();
                    tokio::select! {
                        _ = async {
                            tokio::join!(
                                relay(from_client, to_server, delay.clone()),
                                relay(from_server, to_client, delay),
                            )
                        } => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            up,
            delay_ms,
            generation,
            stop,
        }
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Holds every byte read from now on `by` before passing it on, both
    /// ways (zero: none): the peer answers, late.
    pub fn delay(&self, by: Duration) {
        self.delay_ms.store(
            u64::try_from(by.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

/// Copies one direction of a link, each chunk passed on `delay` after it
/// was read: a delay line, so that a slow link adds latency without
/// queueing chunks behind one another's wait.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (line, mut held) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = from.read(&mut buffer).await.unwrap_or(0);
            let due =
                tokio::time::Instant::now() + Duration::from_millis(delay.load(Ordering::SeqCst));
            // An empty chunk says the other side closed its half.
            if line.send((due, buffer[..read].to_vec())).is_err() || read == 0 {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = held.recv().await {
            tokio::time::sleep_until(due).await;
            if chunk.is_empty() {
                let _ = to.shutdown().await;
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One service in an `emporium serve` process of its own, as production
/// runs it.
pub struct ServiceProcess {
    pub child: tokio::process::Child,
    pub http: SocketAddr,
    /// Where its gRPC face listens, on loopback.
    pub grpc: Option<SocketAddr>,
    /// Every line it has written.
    pub logs: Arc<std::sync::Mutex<String>>,
}

impl ServiceProcess {
    /// `binary serve service` with `env`, its HTTP and gRPC faces on
    /// `ports` (0: any free one); returns once it says where it listens.
    pub async fn start(
        binary: &std::path::Path,
        service: &str,
        env: &[(String, String)],
        dir: &std::path::Path,
        (http_port, grpc_port): (u16, u16),
    ) -> Self {
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["serve", service, "--data-dir"])
            .arg(dir)
            .args(["--log-format", "json"])
            .env("PORT", http_port.to_string())
            .env("GRPC_PORT", grpc_port.to_string())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        let (http, logs) = listening_addr(&mut stdout, service).await;
        // The port it took (`"grpc":"Some(0.0.0.0:50123)"`), so that a peer
        // started after it is told where it is: no port is picked in
        // advance, when another test might take it first.
        let grpc = logs.lines().rev().find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            let raw = value["grpc"].as_str()?;
            let addr: SocketAddr = raw.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok()?;
            Some(SocketAddr::from(([127, 0, 0, 1], addr.port())))
        });
        // Keep reading the logs, so the process never blocks on a full pipe.
        let logs = Arc::new(std::sync::Mutex::new(logs));
        let kept = logs.clone();
        tokio::spawn(async move {
            let mut line = String::new();
            while tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line)
                .await
                .is_ok_and(|n| n > 0)
            {
                kept.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&line);
                line.clear();
            }
        });
        Self {
            child,
            http,
            grpc,
            logs,
        }
    }

    /// SIGKILL, and its end awaited: nothing of it runs any more.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Reads JSON log lines until `service` says where it listens; returns its
/// HTTP address and the lines read so far.
pub async fn listening_addr(
    stdout: &mut tokio::io::BufReader<tokio::process::ChildStdout>,
    service: &str,
) -> (SocketAddr, String) {
    use tokio::io::AsyncBufReadExt;
    let mut seen = String::new();
    let read = async {
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).await.unwrap() == 0 {
                panic!("the process ended before listening: {seen}");
            }
            seen.push_str(&line);
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if value["message"] == "service listening" && value["service"] == service {
                return value["http"].as_str().unwrap().parse().unwrap();
            }
        }
    };
    let addr = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the service reports its address within 30 s");
    (addr, seen)
}

/// A free loopback port, for a process that must come back on the port it
/// had (its callers were told it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A virtual host of its own on the broker for one test: its queues and
/// exchange see no other test's events, and theirs none of its. Made and
/// deleted with `rabbitmqctl` (the broker's own tool, on its machine).
pub struct TestVhost {
    /// The broker URL with this virtual host.
    pub url: String,
    name: String,
}

impl TestVhost {
    pub fn fresh(amqp_url: &str) -> Self {
        let name = format!("emporium-test-{}", uuid::Uuid::now_v7().simple());
        let user = url_user(amqp_url);
        for args in [
            vec!["add_vhost", name.as_str()],
            vec![
                "set_permissions",
                "-p",
                name.as_str(),
                &user,
                ".*",
                ".*",
                ".*",
            ],
        ] {
            let made = std::process::Command::new("rabbitmqctl")
                .args(&args)
                .output()
                .unwrap_or_else(|e| panic!("rabbitmqctl (needed for a test vhost): {e}"));
            assert!(made.status.success(), "rabbitmqctl {args:?}: {made:?}");
        }
        Self {
            // The vhost is the URL's path, as a database is a SQL URL's.
            url: replace_database(amqp_url, &name),
            name,
        }
    }
}

/// The user an AMQP URL connects as (`guest` when it names none, as the
/// client does).
fn url_user(url: &str) -> String {
    url.parse::<lapin::uri::AMQPUri>()
        .map(|uri| uri.authority.userinfo.username)
        .unwrap_or_else(|_| "guest".to_owned())
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// The server each service's database is on when the shop runs
/// distributed (SPEC §1: payment and recommendation on MariaDB).
pub const DISTRIBUTED_DATABASES: [(&str, Backend); 8] = [
    ("identity", Backend::Postgres),
    ("catalog", Backend::Postgres),
    ("inventory", Backend::Postgres),
    ("basket", Backend::Postgres),
    ("ordering", Backend::Postgres),
    ("payment", Backend::MySql),
    ("recommendation", Backend::MySql),
    ("notification", Backend::Postgres),
];

/// How many events a consumer's dead-letter queue holds.
pub async fn dead_letters(amqp_url: &str, queue: &str) -> u32 {
    let connection = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(
            format!("{queue}.dlq").as_str().into(),
            passive,
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(0, "counted".into()).await;
    declared.message_count()
}

/// Removes a consumer's queue and its dead-letter queue from the broker.
pub async fn delete_queues(amqp_url: &str, queue: &str) {
    let connection = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for name in [queue.to_owned(), format!("{queue}.dlq")] {
        let _ = channel
            .queue_delete(
                name.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    let _ = connection.close(0, "done".into()).await;
}

/// The types of the events in a service's outbox whose envelope names
/// `subject` (an order's or a payment's id), oldest first.
pub async fn outbox_events(db: &sea_orm::DatabaseConnection, subject: &str) -> Vec<String> {
    db.query_all_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        "SELECT event_type, envelope FROM outbox ORDER BY id".to_owned(),
    ))
    .await
    .expect("outbox read")
    .into_iter()
    .filter(|r| {
        r.try_get::<String>("", "envelope")
            .expect("envelope")
            .contains(subject)
    })
    .map(|r| r.try_get::<String>("", "event_type").expect("event type"))
    .collect()
}

/// Polls `probe` until it returns `Some` or `deadline` passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One span as an OTLP receiver got it.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// The `service.name` of the resource it came under.
    pub service: String,
    pub name: String,
    /// Lower-case hex, as the logs write them.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root.
    pub parent_span_id: String,
    /// OTLP's numbers: 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// An OTLP/HTTP trace receiver, as a collector listens for it
/// (`POST /v1/traces`, protobuf): it keeps every span it is sent.
pub struct TraceReceiver {
    /// What a service's `otel.endpoint` is set to.
    pub url: String,
    spans: Arc<std::sync::Mutex<Vec<ReceivedSpan>>>,
    server: tokio::task::JoinHandle<()>,
}

impl TraceReceiver {
    pub async fn start() -> Self {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let spans: Arc<std::sync::Mutex<Vec<ReceivedSpan>>> = Arc::default();
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
                    let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                    for resource_spans in request.resource_spans {
                        let service = resource_spans
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .map(|kv| any_value(kv.value.as_ref()))
                            .unwrap_or_default();
                        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                            kept.push(ReceivedSpan {
                                service: service.clone(),
                                name: span.name,
                                trace_id: hex(&span.trace_id),
                                span_id: hex(&span.span_id),
                                parent_span_id: hex(&span.parent_span_id),
                                kind: span.kind,
                                attributes: span
                                    .attributes
                                    .iter()
                                    .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
                                    .collect(),
                            });
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, spans, server }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The spans of one trace received so far.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        let mut spans = self.spans();
        spans.retain(|s| s.trace_id == trace_id);
        spans
    }
}

impl Drop for TraceReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn any_value(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(n)) => n.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// A real S3 API (moto's server in CI): its endpoint, `http://host:port`.
pub const S3: &str = "EMPORIUM_TEST_S3_URL";

/// A new, empty bucket on the S3 API at `endpoint`, named for this test
/// alone. Created by an unsigned `PUT /bucket`, which moto's server takes
/// (a MinIO would want it signed).
pub async fn s3_bucket(endpoint: &str) -> String {
    let bucket = format!("emporium-test-{}", uuid::Uuid::now_v7().simple());
    let response = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
        .send()
        .await
        .expect("the S3 API answers");
    assert!(
        response.status().is_success(),
        "creating bucket {bucket}: {}",
        response.status()
    );
    bucket
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            super::replace_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            super::replace_database("mysql://root@h:3306/test?ssl-mode=disabled", "x"),
            "mysql://root@h:3306/x?ssl-mode=disabled"
        );
        assert_eq!(
            super::replace_database("mysql://root@h:3306", "x"),
            "mysql://root@h:3306/x"
        );
    }

    /// Bytes pass through a link both ways, late when it is slowed, and
    /// not at all once it is cut.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_link_relays_delays_and_cuts() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        let link = super::Link::to(target).await;
        let mut client = tokio::net::TcpStream::connect(link.addr).await.unwrap();
        let mut answer = [0u8; 4];
        client.write_all(b"ping").await.unwrap();
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"ping");
        link.delay(super::Duration::from_secs(1));
        client.write_all(b"pong").await.unwrap();
        let early = tokio::time::timeout(
            super::Duration::from_millis(300),
            client.read_exact(&mut answer),
        )
        .await;
        assert!(early.is_err(), "a slowed link answers late");
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"pong");
        link.delay(super::Duration::ZERO);
        link.cut();
        let mut rest = vec![];
        assert_eq!(client.read_to_end(&mut rest).await.unwrap_or(0), 0);
    }

    #[test]
    fn broker_urls_take_the_test_vhost() {
        assert_eq!(
            super::replace_database("amqp://guest:guest@h:5672/%2f", "t1"),
            "amqp://guest:guest@h:5672/t1"
        );
        assert_eq!(super::url_user("amqp://shop@h:5672"), "shop");
    }

    #[test]
    fn redis_urls_take_the_database_asked_for() {
        assert_eq!(
            super::redis_database("redis://127.0.0.1:6379/0", 14),
            "redis://127.0.0.1:6379/14"
        );
        assert_eq!(
            super::redis_database("redis://:pw@h:6379", 15),
            "redis://:pw@h:6379/15"
        );
    }
}
