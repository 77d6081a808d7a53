//! A closed-loop load generator: N workers send requests back to back for a
//! fixed time and record each latency. Loopback targets only.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone, Debug)]
pub struct Report {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Report {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} requests, {} errors)",
            self.rps(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.requests,
            self.errors
        )
    }
}

/// GETs `urls` in turn from `concurrency` workers for `duration`. A non-2xx
/// answer counts as an error.
pub async fn run(
    urls: &[String],
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Report> {
    let uris = urls
        .iter()
        .map(|u| u.parse::<hyper::Uri>())
        .collect::<Result<Vec<_>, _>>()?;
    for uri in &uris {
        let host = uri.host().unwrap_or_default();
        if !(host == "localhost" || host.starts_with("127.") || host == "[::1]") {
            anyhow::bail!("load targets must be on loopback, not {host}");
        }
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let started = Instant::now();
    let until = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency.max(1) {
        let client = client.clone();
        let uris = uris.clone();
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut i = worker;
            while Instant::now() < until {
                let uri = uris[i % uris.len()].clone();
                i += 1;
                let sent = Instant::now();
                match client.get(uri).await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let drained = response.into_body().collect().await.is_ok();
                        if ok && drained {
                            latencies.push(sent.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(result) = workers.join_next().await {
        let (l, e) = result?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Report {
        requests: latencies.len() as u64,
        errors,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
    })
}
