//! The gateway in front of replicas found by name: every address a name
//! resolves to is a replica that requests reach, followed as the name's
//! addresses change, with readiness that says when none can be found.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use emporium_gateway::GatewaySettings;
use emporium_gateway::upstream::Resolve;
use emporium_platform::Runtime;
use emporium_platform::config::Settings;
use emporium_testkit::{eventually, wait_ready};

/// The services whose routes the gateway serves; each must have replicas
/// when none runs in the gateway's process.
const SERVICES: &[&str] = &[
    "identity",
    "catalog",
    "inventory",
    "basket",
    "payment",
    "ordering",
    "recommendation",
    "notification",
    "storefront",
];

/// A replica that answers `/health`, and every other path with the address
/// it listens on, so that a test sees which one a request reached.
fn replica(listener: tokio::net::TcpListener) {
    let me = listener.local_addr().unwrap().ip().to_string();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(move || {
            let me = me.clone();
            async move { me }
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// Replicas on one port at each of `ips`, as containers of one service
/// each listen on the same port at their own address. Returns the port.
async fn replicas_on_one_port(ips: &[IpAddr]) -> u16 {
    for _ in 0..50 {
        let first = tokio::net::TcpListener::bind(SocketAddr::new(ips[0], 0))
            .await
            .unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for ip in &ips[1..] {
            match tokio::net::TcpListener::bind(SocketAddr::new(*ip, port)).await {
                Ok(listener) => listeners.push(listener),
                Err(_) => break,
            }
        }
        if listeners.len() == ips.len() {
            listeners.into_iter().for_each(replica);
            return port;
        }
    }
    panic!("no port free at every one of {ips:?}");
}

/// A resolver answering from a table the test changes, counting the
/// lookups; a name it does not hold fails as an unknown name does.
#[derive(Clone, Default)]
struct Table {
    entries: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
    lookups: Arc<AtomicUsize>,
}

impl Table {
    fn set(&self, host: &str, ips: &[IpAddr]) {
        self.entries
            .lock()
            .unwrap()
            .insert(host.to_owned(), ips.to_vec());
    }
    fn forget(&self, host: &str) {
        self.entries.lock().unwrap().remove(host);
    }
    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
    fn resolver(&self) -> Resolve {
        let table = self.clone();
        Arc::new(move |host, _port| {
            table.lookups.fetch_add(1, Ordering::SeqCst);
            let found = table.entries.lock().unwrap().get(&host).cloned();
            Box::pin(async move {
                found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown name"))
            })
        })
    }
}

/// Settings of a gateway alone, every service's replicas at `base`,
/// names resolved again every second.
fn gateway_settings(dir: &std::path::Path, base: &str) -> Settings {
    let mut settings = Settings::ephemeral(dir);
    settings.update_section::<GatewaySettings>(|g| {
        for service in SERVICES {
            g.upstreams.insert((*service).into(), vec![base.to_owned()]);
        }
        g.upstream_resolve_secs = 1;
        g.api_per_address = 0;
        g.api_per_user = 0;
    });
    settings
}

async fn start(settings: Settings, resolve: Option<Resolve>) -> (String, Runtime) {
    let runtime = Runtime::new(settings).await.unwrap();
    let started = match resolve {
        Some(resolve) => emporium_gateway::start_resolving(&runtime, &[], resolve).await,
        None => emporium_gateway::start(&runtime, &[]).await,
    }
    .unwrap();
    (format!("http://{}", started.http_addr), runtime)
}

/// Which replicas `n` requests through the gateway reached.
async fn reached(http: &reqwest::Client, gateway: &str, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let response = http
            .get(format!("{gateway}/api/v1/products"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        seen.insert(response.text().await.unwrap());
    }
    seen
}

fn set(ips: &[&str]) -> BTreeSet<String> {
    ips.iter().map(|s| (*s).to_owned()).collect()
}

/// `/etc/hosts` here names `localhost` once (127.0.0.1), so the name's
/// several addresses come from a table: 127.0.0.1 and ::1, as `localhost`
/// resolves where both are listed, then ::1 and 127.0.0.2, as replicas
/// come and go behind `docker compose up --scale`. The replicas are real
/// servers on those addresses, reached through the gateway's proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_every_address_of_a_name_and_follow_its_changes() {
    let [v4, v6, other]: [IpAddr; 3] =
        ["127.0.0.1", "::1", "127.0.0.2"].map(|ip| ip.parse().unwrap());
    let port = replicas_on_one_port(&[v4, v6, other]).await;
    let table = Table::default();
    table.set("replicas.test", &[v4, v6]);
    let dir = tempfile::tempdir().unwrap();
    let settings = gateway_settings(dir.path(), &format!("http://replicas.test:{port}"));
    let (gateway, runtime) = start(settings, Some(table.resolver())).await;
    wait_ready(&gateway).await;
    let http = reqwest::Client::new();

    assert_eq!(
        reached(&http, &gateway, 20).await,
        set(&["127.0.0.1", "::1"]),
        "one name, two addresses: both replicas serve"
    );

    // One replica goes, another comes.
    table.set("replicas.test", &[v6, other]);
    let followed = eventually(Duration::from_secs(10), || {
        let http = http.clone();
        let gateway = gateway.clone();
        async move {
            let seen = reached(&http, &gateway, 10).await;
            (seen == set(&["127.0.0.2", "::1"])).then_some(seen)
        }
    })
    .await;
    assert!(
        followed.is_some(),
        "the gateway did not follow the name to ::1 and 127.0.0.2"
    );
    assert_eq!(
        reached(&http, &gateway, 20).await,
        set(&["127.0.0.2", "::1"]),
        "the replica whose address went gets nothing more"
    );

    // The name stops resolving: the last addresses serve on.
    table.forget("replicas.test");
    let lookups = table.lookups();
    let retried = eventually(Duration::from_secs(10), || {
        let now = table.lookups();
        async move { (now >= lookups + 2).then_some(()) }
    })
    .await;
    assert!(retried.is_some(), "the name was not looked up again");
    assert_eq!(
        reached(&http, &gateway, 20).await,
        set(&["127.0.0.2", "::1"])
    );
    let ready = http.get(format!("{gateway}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    runtime.stop(Duration::from_secs(5)).await;
}

/// With the system's resolver: every address `localhost` has here is a
/// replica that requests reach (127.0.0.1 alone where `/etc/hosts` lists
/// only it; 127.0.0.1 and ::1 where it lists both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_every_address_the_system_gives_localhost() {
    let [v4, v6]: [IpAddr; 2] = ["127.0.0.1", "::1"].map(|ip| ip.parse().unwrap());
    let port = replicas_on_one_port(&[v4, v6]).await;
    let expected: BTreeSet<String> = tokio::net::lookup_host(("localhost", port))
        .await
        .unwrap()
        .map(|a| a.ip().to_string())
        .collect();
    assert!(!expected.is_empty());
    eprintln!("localhost resolves here to {expected:?}");
    let dir = tempfile::tempdir().unwrap();
    let settings = gateway_settings(dir.path(), &format!("http://localhost:{port}"));
    let (gateway, runtime) = start(settings, None).await;
    wait_ready(&gateway).await;
    let http = reqwest::Client::new();
    assert_eq!(reached(&http, &gateway, 20).await, expected);
    runtime.stop(Duration::from_secs(5)).await;
}

/// A name that resolves to nothing yet leaves its service without
/// replicas: the gateway starts, its routes for that service answer 503,
/// its readiness says degraded with that service down (it stays in
/// rotation for the others), and it is whole once the name resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_is_ready_once_its_names_resolve() {
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    let port = replicas_on_one_port(&[v4]).await;
    let table = Table::default();
    for service in SERVICES.iter().filter(|s| **s != "recommendation") {
        table.set(&format!("{service}.test"), &[v4]);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::ephemeral(dir.path());
    settings.update_section::<GatewaySettings>(|g| {
        for service in SERVICES {
            g.upstreams.insert(
                (*service).into(),
                vec![format!("http://{service}.test:{port}")],
            );
        }
        g.upstream_resolve_secs = 1;
    });
    let (gateway, runtime) = start(settings, Some(table.resolver())).await;
    let http = reqwest::Client::new();
    let ready = http.get(format!("{gateway}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["recommendation"], "down", "{ready}");
    let recommendations = || {
        let request = http.get(format!("{gateway}/api/v1/recommendations")).send();
        async move { request.await.unwrap().status() }
    };
    assert_eq!(
        recommendations().await,
        reqwest::StatusCode::SERVICE_UNAVAILABLE
    );

    table.set("recommendation.test", &[v4]);
    let resolved = eventually(Duration::from_secs(10), || {
        let request = http.get(format!("{gateway}/ready")).send();
        async move {
            let ready: serde_json::Value = request.await.ok()?.json().await.ok()?;
            (ready["status"] == "ready").then_some(())
        }
    })
    .await;
    assert!(resolved.is_some(), "ready once the name resolves");
    assert_eq!(recommendations().await, reqwest::StatusCode::OK);
    runtime.stop(Duration::from_secs(5)).await;
}
