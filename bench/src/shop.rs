//! The shop's binary in processes of its own: where each service listens,
//! `up` and `serve` started and waited for, tokens, and the products and
//! stock a load needs.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead};

/// Every service with its default HTTP and gRPC ports (SPEC §1), in the
/// order the distributed shop starts them: identity first (the others
/// fetch its keys), the gateway last (ready once every upstream is). The
/// gateway also has its internal listener (readiness, metrics).
const SERVICES: [(&str, u16, Option<u16>); 10] = [
    ("identity", 8004, Some(50055)),
    ("catalog", 8006, Some(50050)),
    ("inventory", 8002, Some(50054)),
    ("basket", 8007, Some(50051)),
    ("payment", 8003, Some(50052)),
    ("ordering", 8001, Some(50053)),
    ("recommendation", 8008, Some(50057)),
    ("notification", 8005, Some(50056)),
    ("storefront", 3000, None),
    ("gateway", 8080, None),
];

/// The names of every service, in start order.
pub fn services() -> [&'static str; 10] {
    SERVICES.map(|(name, _, _)| name)
}

const GATEWAY_INTERNAL: u16 = 9080;

/// Where every service of one shop listens: each setting key
/// (`catalog.grpc_addr`) and its address.
#[derive(Clone, Debug)]
pub struct Layout {
    addresses: Vec<(String, SocketAddr)>,
}

impl Layout {
    /// The fixed ports the benches have always used: 2xxxx for HTTP (the
    /// gateway at 28080), 25xxx for gRPC.
    pub fn fixed() -> Self {
        Self::try_from_ports(|_, port| {
            Ok::<_, std::convert::Infallible>(if port >= 50000 {
                port - 25000
            } else {
                port + 20000
            })
        })
        .unwrap_or_else(|never| match never {})
    }

    /// Ports the kernel has free now, so that a run does not collide with
    /// another shop on the machine.
    pub fn free() -> anyhow::Result<Self> {
        // Every listener held until all are bound, so no port comes twice.
        let mut held = vec![];
        let layout = Self::try_from_ports(|_, _| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            held.push(listener);
            Ok::<_, std::io::Error>(port)
        })?;
        drop(held);
        Ok(layout)
    }

    fn try_from_ports<E>(mut port: impl FnMut(&str, u16) -> Result<u16, E>) -> Result<Self, E> {
        let mut addresses = vec![];
        for (service, http, grpc) in SERVICES {
            let mut keys = vec![(format!("{service}.http_addr"), http)];
            if let Some(grpc) = grpc {
                keys.push((format!("{service}.grpc_addr"), grpc));
            }
            if service == "gateway" {
                keys.push(("gateway.internal_addr".to_owned(), GATEWAY_INTERNAL));
            }
            for (key, default) in keys {
                let chosen = port(&key, default)?;
                addresses.push((key, SocketAddr::from(([127, 0, 0, 1], chosen))));
            }
        }
        Ok(Self { addresses })
    }

    fn address(&self, key: &str) -> SocketAddr {
        self.addresses
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no address for {key}"))
    }

    /// `http://` and the service's HTTP address.
    pub fn url(&self, service: &str) -> String {
        format!("http://{}", self.address(&format!("{service}.http_addr")))
    }

    /// `http://` and the service's gRPC address.
    pub fn grpc_url(&self, service: &str) -> String {
        format!("http://{}", self.address(&format!("{service}.grpc_addr")))
    }

    /// The gateway's internal listener (`/ready`, `/metrics`).
    pub fn internal_url(&self) -> String {
        format!("http://{}", self.address("gateway.internal_addr"))
    }

    /// `--set key=address` for every listener, as `up` takes them.
    pub fn set_flags(&self) -> Vec<String> {
        self.addresses
            .iter()
            .flat_map(|(key, addr)| ["--set".to_owned(), format!("{key}={addr}")])
            .collect()
    }

    /// The same as `EMPORIUM__SECTION__KEY` variables, as a process of the
    /// distributed shop is configured.
    pub fn env(&self) -> Vec<(String, String)> {
        self.addresses
            .iter()
            .map(|(key, addr)| (env_name(key), addr.to_string()))
            .collect()
    }
}

/// `catalog.http_addr` as the variable `EMPORIUM__CATALOG__HTTP_ADDR`.
pub fn env_name(key: &str) -> String {
    format!("EMPORIUM__{}", key.replace('.', "__").to_uppercase())
}

/// The release binary beside this bench, or `None` after saying how to
/// build it; also `None` when wrk is missing.
pub fn binary() -> Option<PathBuf> {
    let found = beside_this_program();
    if found.is_none() {
        println!("skipped: build the binary first: cargo build --release -p emporium");
        return None;
    }
    if !crate::installed("wrk") {
        println!("skipped: wrk is not installed (apt-get install wrk)");
        return None;
    }
    found
}

/// `emporium` in the folder of this program (a `bin`) or the one above it
/// (a bench, in `deps/`).
pub fn beside_this_program() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    let folder = me.parent()?;
    [folder.join("emporium"), folder.parent()?.join("emporium")]
        .into_iter()
        .find(|b| b.is_file())
}

/// When a started process counts as ready.
#[derive(Clone, Copy, Debug)]
pub enum Ready<'a> {
    /// `up`'s banner, "ready in N ms".
    Banner,
    /// This URL answers 200.
    Url(&'a str),
}

/// A process of the shop, ready.
pub struct Started {
    pub child: tokio::process::Child,
    /// From exec to ready, by this clock.
    pub took: Duration,
    /// What `up`'s banner states ("ready in N ms").
    pub stated: Option<Duration>,
    /// The services `up`'s banner lists.
    pub services: Vec<String>,
    /// The last lines it wrote, for errors.
    pub tail: Tail,
}

impl Started {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The last lines of a process's output.
#[derive(Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == 20 {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

fn drain(stream: impl AsyncRead + Unpin + Send + 'static, tail: Tail) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tail.push(line);
        }
    });
}

/// The shop's binary running `args` (with `env`) in its own process, in
/// `data_dir` (also its working directory, so no `emporium.toml` of the
/// caller's folder is read), logging warnings as JSON; returned once
/// `ready` holds, at most `limit` later.
pub async fn start(
    binary: &Path,
    data_dir: &Path,
    args: &[String],
    env: &[(String, String)],
    ready: Ready<'_>,
    limit: Duration,
) -> anyhow::Result<Started> {
    std::fs::create_dir_all(data_dir)?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--log-format", "json", "--set", "log.level=warn"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let tail = Tail::default();
    drain(child.stderr.take().context("stderr")?, tail.clone());
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let deadline = tokio::time::Instant::now() + limit;
    let (mut took, mut stated) = (None, None);
    let mut services = vec![];
    match ready {
        Ready::Banner => {
            // The banner, then a line per listener at once, then "Press
            // Ctrl-C"; a pause after the banner also ends it.
            loop {
                let wait = match took {
                    Some(_) => (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline),
                    None => deadline,
                };
                let line = match tokio::time::timeout_at(wait, stdout.next_line()).await {
                    Ok(Ok(Some(line))) => line,
                    _ if took.is_some() => break,
                    Ok(_) => bail!("exited before its banner:\n{}", tail.text()),
                    Err(_) => bail!("no ready banner within {limit:?}:\n{}", tail.text()),
                };
                if let Some(rest) = line.split("ready in ").nth(1) {
                    took = Some(started.elapsed());
                    stated = rest
                        .split(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .map(Duration::from_millis);
                } else if took.is_some() && line.starts_with("Press Ctrl-C") {
                    break;
                } else if took.is_some() {
                    let mut words = line.split_whitespace();
                    if let (Some(name), Some("http" | "grpc")) = (words.next(), words.next())
                        && !services.iter().any(|s| s == name)
                    {
                        services.push(name.to_owned());
                    }
                }
                tail.push(line);
            }
            drain(stdout.into_inner(), tail.clone());
        }
        Ready::Url(url) => {
            drain(stdout.into_inner(), tail.clone());
            let http = reqwest::Client::new();
            loop {
                if let Ok(r) = http.get(url).timeout(Duration::from_secs(2)).send().await
                    && r.status().is_success()
                {
                    break;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("exited ({status}) before {url} answered:\n{}", tail.text());
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("{url} not ready within {limit:?}:\n{}", tail.text());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
    Ok(Started {
        child,
        took: took.unwrap_or_else(|| started.elapsed()),
        stated,
        services,
        tail,
    })
}

/// As [`start`], for the benches that stop at the first failure: the child
/// and the time to ready (30 s at most).
pub async fn spawn(
    binary: &Path,
    data_dir: &Path,
    args: &[String],
    ready_url: Option<&str>,
) -> (tokio::process::Child, Duration) {
    let ready = ready_url.map_or(Ready::Banner, Ready::Url);
    let started = start(binary, data_dir, args, &[], ready, Duration::from_secs(30))
        .await
        .unwrap();
    (started.child, started.took)
}

/// A one-shot command of the binary (`token`, `migrate`, `seed`), with
/// the settings `args` and `env` give, on the stores under `data_dir`:
/// what it printed.
pub async fn once(
    binary: &Path,
    data_dir: &Path,
    args: &[String],
    env: &[(String, String)],
) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(binary)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(data_dir)
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "emporium {}: {}",
            args.first().map_or("", String::as_str),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// A development token minted by the binary with identity's key, from the
/// store that `args` and `env` configure under `data_dir`.
pub async fn token(
    binary: &Path,
    data_dir: &Path,
    role: &str,
    subject: &str,
    args: &[String],
    env: &[(String, String)],
) -> anyhow::Result<String> {
    let mut all: Vec<String> = ["token", "--role", role, "--subject", subject]
        .map(str::to_owned)
        .into();
    all.extend(args.iter().cloned());
    once(binary, data_dir, &all, env).await
}

/// A product of the catalog: what the load names.
#[derive(Clone, Debug)]
pub struct Product {
    pub id: String,
    pub sku: String,
}

/// The first hundred products of the catalog at `base`.
pub async fn products(base: &str) -> anyhow::Result<Vec<Product>> {
    let page: serde_json::Value = reqwest::get(format!("{base}/api/v1/products?per_page=100"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let items = page["items"].as_array().context("no items")?;
    let field = |p: &serde_json::Value, name: &str| p[name].as_str().map(str::to_owned);
    let products: Vec<Product> = items
        .iter()
        .filter_map(|p| {
            Some(Product {
                id: field(p, "id")?,
                sku: field(p, "sku")?,
            })
        })
        .collect();
    if products.is_empty() {
        bail!("the catalog at {base} lists no products");
    }
    Ok(products)
}

/// One stock adjustment: SKU, warehouse, units.
pub type Adjustment = (String, &'static str, i64);

/// The bench SKUs `BENCH-0`.. in both warehouses (a billion units each),
/// for reservations, and `each` units of every product in `products` in
/// the first warehouse, for checkouts.
pub fn bench_stock(skus: usize, products: &[Product], each: i64) -> Vec<Adjustment> {
    let bench = (0..skus).flat_map(|i| {
        ["east", "west"].map(|warehouse| (format!("BENCH-{i}"), warehouse, 1_000_000_000))
    });
    // The demo products hold a few units already; the total stays in bounds.
    let demo = products.iter().map(|p| (p.sku.clone(), "east", each));
    bench.chain(demo).collect()
}

/// Applies `adjustments` through inventory's API at `base` as `admin`.
pub async fn stock(base: &str, admin: &str, adjustments: &[Adjustment]) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for (sku, warehouse, delta) in adjustments {
        let response = http
            .post(format!("{base}/api/v1/inventory/adjust"))
            .bearer_auth(admin)
            .json(&serde_json::json!({
                "sku": sku, "warehouse": warehouse,
                "delta": delta, "reason": "benchmark stock"
            }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "stock {sku} in {warehouse}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_layout_keeps_the_ports_the_benches_name() {
        let layout = Layout::fixed();
        assert_eq!(layout.url("gateway"), "http://127.0.0.1:28080");
        assert_eq!(layout.internal_url(), "http://127.0.0.1:29080");
        assert_eq!(layout.url("notification"), "http://127.0.0.1:28005");
        assert_eq!(layout.grpc_url("catalog"), "http://127.0.0.1:25050");
        assert_eq!(layout.url("storefront"), "http://127.0.0.1:23000");
    }

    #[test]
    fn free_ports_differ_from_each_other() {
        let flags = Layout::free().unwrap().set_flags();
        let mut ports: Vec<&str> = flags
            .iter()
            .filter_map(|f| f.rsplit(':').next().filter(|_| f.contains('=')))
            .collect();
        let count = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), count);
        assert_eq!(count, 19);
    }

    #[test]
    fn settings_become_their_variables() {
        assert_eq!(
            env_name("auth.service_secrets.basket"),
            "EMPORIUM__AUTH__SERVICE_SECRETS__BASKET"
        );
    }
}
