//! Replicas of one service behind the gateway: each configured base URL
//! whose host is a name stands for one replica per address the name
//! resolves to (re-resolved while the gateway runs), round-robin over those
//! in rotation, ejection of a replica that keeps failing.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::Uri;

/// Turns a host name and port into addresses: the system's resolver
/// (`/etc/hosts`, then DNS, as every other program on the host), or a
/// table a test controls.
pub type Resolve = Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system's resolver, through tokio's `lookup_host`.
pub fn system_resolver() -> Resolve {
    Arc::new(|host, port| {
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), port)).await?;
            Ok(found.map(|addr| addr.ip()).collect())
        })
    })
}

/// How long one name may take to resolve before its last addresses are
/// kept for this round.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Replica {
    base: String,
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
}

impl Replica {
    fn fresh(base: String) -> Self {
        Self {
            base,
            consecutive_failures: 0,
            ejected_until: None,
        }
    }
}

/// One configured base URL.
#[derive(Debug)]
enum Source {
    /// An IP literal (or an `https://` base, whose name the certificate
    /// must match): one replica, as written.
    Fixed(String),
    Named(Named),
}

/// A base URL whose host is a name, and what is known of it.
#[derive(Debug)]
struct Named {
    scheme: String,
    host: String,
    port: u16,
    /// The base's path, if any, kept on every replica.
    path: String,
    /// The addresses of the last successful resolution.
    addresses: Vec<IpAddr>,
    /// Whether the last attempt failed: a failure is logged when it
    /// starts, not on every attempt.
    failing: bool,
}

impl Named {
    fn bases(&self) -> impl Iterator<Item = String> + '_ {
        self.addresses.iter().map(|ip| {
            format!(
                "{}://{}{}",
                self.scheme,
                SocketAddr::new(*ip, self.port),
                self.path
            )
        })
    }
}

/// What one resolution of a name changed in what the gateway reports.
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    /// Resolved as before, or failed again: nothing to say.
    Quiet,
    /// Resolved after failing.
    Recovered,
    /// The first failure after a success (or at start).
    Failing(String),
}

impl Named {
    /// Takes one resolution's outcome: new addresses replace the last ones
    /// (in the order given, without repeats); a failure or an empty answer
    /// keeps them.
    fn settle(&mut self, outcome: Result<Vec<IpAddr>, String>) -> Settled {
        let outcome = outcome.and_then(|found| {
            if found.is_empty() {
                Err("no address".to_owned())
            } else {
                Ok(found)
            }
        });
        match outcome {
            Ok(found) => {
                let mut unique: Vec<IpAddr> = Vec::with_capacity(found.len());
                for ip in found {
                    if !unique.contains(&ip) {
                        unique.push(ip);
                    }
                }
                self.addresses = unique;
                let was_failing = std::mem::replace(&mut self.failing, false);
                if was_failing {
                    Settled::Recovered
                } else {
                    Settled::Quiet
                }
            }
            Err(error) => {
                if std::mem::replace(&mut self.failing, true) {
                    Settled::Quiet
                } else {
                    Settled::Failing(error)
                }
            }
        }
    }
}

/// The replicas for `bases`, in that order and without repeats: a replica
/// whose base was there before keeps its failures and ejection, a new one
/// starts in rotation, one whose base went is dropped.
fn merge(old: Vec<Replica>, bases: impl IntoIterator<Item = String>) -> Vec<Replica> {
    let mut old = old;
    let mut merged: Vec<Replica> = Vec::new();
    for base in bases {
        if merged.iter().any(|r| r.base == base) {
            continue;
        }
        match old.iter().position(|r| r.base == base) {
            Some(at) => merged.push(old.swap_remove(at)),
            None => merged.push(Replica::fresh(base)),
        }
    }
    merged
}

/// Parses a configured base URL: `http://` or `https://`, a host, no query.
fn source(base: &str) -> Result<Source, String> {
    let base = base.trim().trim_end_matches('/');
    let uri: Uri = base.parse().map_err(|_| "is not a URL".to_owned())?;
    let scheme = match uri.scheme_str() {
        Some(scheme @ ("http" | "https")) => scheme.to_owned(),
        _ => return Err("must be an http:// URL".to_owned()),
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Err("has no host".to_owned());
    };
    if uri.query().is_some() {
        return Err("must not have a query".to_owned());
    }
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok();
    if literal || scheme == "https" {
        return Ok(Source::Fixed(base.to_owned()));
    }
    Ok(Source::Named(Named {
        port: uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 }),
        scheme,
        host: host.to_owned(),
        path: uri.path().trim_end_matches('/').to_owned(),
        addresses: Vec::new(),
        failing: false,
    }))
}

/// One service's replicas.
pub struct Pool {
    pub service: &'static str,
    sources: Mutex<Vec<Source>>,
    replicas: Mutex<Vec<Replica>>,
    next: AtomicUsize,
    eject_after: u32,
    eject_for: Duration,
    resolve: Resolve,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("service", &self.service)
            .field("replicas", &self.bases())
            .finish()
    }
}

impl Pool {
    /// A pool of `bases` (`http://` URLs): those whose host is an IP
    /// literal are replicas at once; those whose host is a name have none
    /// until [`Pool::refresh`] resolves it.
    pub fn new(
        service: &'static str,
        bases: &[String],
        eject_after: u32,
        eject_for: Duration,
        resolve: Resolve,
    ) -> Result<Self, String> {
        let sources = bases
            .iter()
            .map(|base| source(base).map_err(|why| format!("`{base}` {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        let pool = Self {
            service,
            sources: Mutex::new(sources),
            replicas: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            eject_after: eject_after.max(1),
            eject_for,
            resolve,
        };
        pool.rebuild();
        Ok(pool)
    }

    /// Whether some base has a name to resolve.
    pub fn has_names(&self) -> bool {
        self.sources
            .lock()
            .map(|s| s.iter().any(|s| matches!(s, Source::Named(_))))
            .unwrap_or(false)
    }

    /// Resolves every name again and updates the replicas: see [`merge`].
    /// A name that fails keeps its last addresses.
    pub async fn refresh(&self) {
        let names: Vec<(usize, String, u16)> = match self.sources.lock() {
            Ok(sources) => sources
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s {
                    Source::Named(n) => Some((i, n.host.clone(), n.port)),
                    Source::Fixed(_) => None,
                })
                .collect(),
            Err(_) => return,
        };
        if names.is_empty() {
            return;
        }
        let mut outcomes = Vec::with_capacity(names.len());
        for (at, host, port) in names {
            let outcome =
                match tokio::time::timeout(RESOLVE_TIMEOUT, (self.resolve)(host, port)).await {
                    Ok(Ok(found)) => Ok(found),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {RESOLVE_TIMEOUT:?}")),
                };
            outcomes.push((at, outcome));
        }
        if let Ok(mut sources) = self.sources.lock() {
            for (at, outcome) in outcomes {
                let Some(Source::Named(named)) = sources.get_mut(at) else {
                    continue;
                };
                match named.settle(outcome) {
                    Settled::Quiet => {}
                    Settled::Recovered => tracing::info!(
                        service = self.service,
                        host = %named.host,
                        addresses = named.addresses.len(),
                        "upstream name resolves again"
                    ),
                    Settled::Failing(error) => tracing::warn!(
                        service = self.service,
                        host = %named.host,
                        error = %error,
                        kept = named.addresses.len(),
                        "upstream name does not resolve; its last addresses are kept"
                    ),
                }
            }
        }
        self.rebuild();
    }

    /// The replicas from the sources as they stand, merged with the
    /// current ones; a change is logged.
    fn rebuild(&self) {
        let mut bases: Vec<String> = Vec::new();
        match self.sources.lock() {
            Ok(sources) => {
                for source in sources.iter() {
                    match source {
                        Source::Fixed(base) => bases.push(base.clone()),
                        Source::Named(named) => bases.extend(named.bases()),
                    }
                }
            }
            Err(_) => return,
        }
        let Ok(mut replicas) = self.replicas.lock() else {
            return;
        };
        let before: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
        *replicas = merge(std::mem::take(&mut *replicas), bases);
        let after: Vec<&str> = replicas.iter().map(|r| r.base.as_str()).collect();
        if before != after {
            let added: Vec<&str> = after
                .iter()
                .copied()
                .filter(|b| !before.iter().any(|o| o == b))
                .collect();
            let removed: Vec<&str> = before
                .iter()
                .map(String::as_str)
                .filter(|b| !after.contains(b))
                .collect();
            tracing::info!(
                service = self.service,
                replicas = after.len(),
                added = ?added,
                removed = ?removed,
                "upstream replicas changed"
            );
        }
    }

    /// The replicas' base URLs, in pool order.
    pub fn bases(&self) -> Vec<String> {
        self.replicas
            .lock()
            .map(|rs| rs.iter().map(|r| r.base.clone()).collect())
            .unwrap_or_default()
    }

    /// Replicas to try for one request, in order: those in rotation starting
    /// at the next in turn, then (if all are out) the ejected ones, so that a
    /// fully ejected pool still gets a chance to recover.
    pub fn order(&self) -> Vec<String> {
        let Ok(replicas) = self.replicas.lock() else {
            return vec![];
        };
        if replicas.is_empty() {
            return vec![];
        }
        let now = Instant::now();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % replicas.len();
        let rotated = (0..replicas.len()).map(|i| &replicas[(start + i) % replicas.len()]);
        let (live, out): (Vec<_>, Vec<_>) =
            rotated.partition(|r| r.ejected_until.is_none_or(|until| until <= now));
        live.into_iter()
            .chain(out)
            .map(|r| r.base.clone())
            .collect()
    }

    pub fn succeeded(&self, base: &str) {
        if let Ok(mut replicas) = self.replicas.lock()
            && let Some(r) = replicas.iter_mut().find(|r| r.base == base)
        {
            r.consecutive_failures = 0;
            r.ejected_until = None;
        }
    }

    pub fn failed(&self, base: &str) {
        if let Ok(mut replicas) = self.replicas.lock()
            && let Some(r) = replicas.iter_mut().find(|r| r.base == base)
        {
            r.consecutive_failures += 1;
            if r.consecutive_failures >= self.eject_after {
                if r.ejected_until.is_none() {
                    tracing::warn!(service = self.service, replica = %r.base, failures = r.consecutive_failures, "replica ejected");
                }
                r.ejected_until = Some(Instant::now() + self.eject_for);
            }
        }
    }

    pub fn in_rotation(&self) -> usize {
        let now = Instant::now();
        self.replicas
            .lock()
            .map(|rs| {
                rs.iter()
                    .filter(|r| r.ejected_until.is_none_or(|u| u <= now))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Resolves every pool's names again every `every` until `shutdown`.
pub async fn keep_resolving(
    pools: Vec<Arc<Pool>>,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the gateway resolved once at start.
    tick.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                for pool in &pools {
                    pool.refresh().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Addresses by host name, as a test sets them.
    type Entries = Arc<Mutex<std::collections::HashMap<String, Vec<IpAddr>>>>;

    /// A resolver answering from a table that the test changes; a host it
    /// does not hold fails as an unknown name does.
    fn table(entries: &[(&str, &[&str])]) -> (Resolve, Entries) {
        let table: Entries = Arc::new(Mutex::new(
            entries
                .iter()
                .map(|(h, ips)| (h.to_string(), ips.iter().map(|i| ip(i)).collect()))
                .collect(),
        ));
        let held = table.clone();
        let resolve: Resolve = Arc::new(move |host, _port| {
            let found = held.lock().unwrap().get(&host).cloned();
            Box::pin(async move {
                found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown name"))
            })
        });
        (resolve, table)
    }

    fn pool() -> Pool {
        let (resolve, _) = table(&[]);
        Pool::new(
            "catalog",
            &[
                "http://10.0.0.1".into(),
                "http://10.0.0.2".into(),
                "http://10.0.0.3".into(),
            ],
            2,
            Duration::from_secs(60),
            resolve,
        )
        .unwrap()
    }

    #[test]
    fn requests_go_round_robin() {
        let pool = pool();
        let firsts: Vec<_> = (0..6).map(|_| pool.order()[0].clone()).collect();
        assert_eq!(
            firsts,
            [
                "http://10.0.0.1",
                "http://10.0.0.2",
                "http://10.0.0.3",
                "http://10.0.0.1",
                "http://10.0.0.2",
                "http://10.0.0.3"
            ]
        );
    }

    #[test]
    fn a_failing_replica_leaves_rotation_and_returns_on_success() {
        let pool = pool();
        pool.failed("http://10.0.0.2");
        assert_eq!(pool.in_rotation(), 3, "one failure is not enough");
        pool.failed("http://10.0.0.2");
        assert_eq!(pool.in_rotation(), 2);
        for _ in 0..6 {
            let order = pool.order();
            assert_ne!(order[0], "http://10.0.0.2");
            assert_eq!(
                order.last().map(String::as_str),
                Some("http://10.0.0.2"),
                "ejected replicas are tried last"
            );
        }
        pool.succeeded("http://10.0.0.2");
        assert_eq!(pool.in_rotation(), 3);
    }

    #[test]
    fn merging_keeps_the_state_of_staying_replicas_drops_gone_ones_and_adds_new_ones() {
        let until = Instant::now() + Duration::from_secs(60);
        let old = vec![
            Replica {
                base: "http://10.0.0.1:8001".into(),
                consecutive_failures: 3,
                ejected_until: Some(until),
            },
            Replica {
                base: "http://10.0.0.2:8001".into(),
                consecutive_failures: 1,
                ejected_until: None,
            },
        ];
        let merged = merge(
            old,
            [
                "http://10.0.0.3:8001".to_owned(),
                "http://10.0.0.1:8001".to_owned(),
                "http://10.0.0.3:8001".to_owned(),
            ],
        );
        assert_eq!(
            merged,
            vec![
                Replica::fresh("http://10.0.0.3:8001".into()),
                Replica {
                    base: "http://10.0.0.1:8001".into(),
                    consecutive_failures: 3,
                    ejected_until: Some(until),
                },
            ]
        );
        assert_eq!(merge(merged, []), vec![], "no base, no replica");
    }

    #[test]
    fn only_names_are_resolved() {
        let kinds: Vec<_> = [
            "http://10.1.2.3:8001",
            "http://[::1]:8001/",
            "https://catalog.internal:8443",
            "http://ordering:8001",
            "http://Ordering.svc/prefix/",
        ]
        .iter()
        .map(|b| match source(b).unwrap() {
            Source::Fixed(base) => format!("fixed {base}"),
            Source::Named(n) => format!("named {} {} {} `{}`", n.scheme, n.host, n.port, n.path),
        })
        .collect();
        assert_eq!(
            kinds,
            [
                "fixed http://10.1.2.3:8001",
                "fixed http://[::1]:8001",
                "fixed https://catalog.internal:8443",
                "named http ordering 8001 ``",
                "named http Ordering.svc 80 `/prefix`",
            ]
        );
        for bad in [
            "ordering:8001",
            "ftp://ordering",
            "http://",
            "http://ordering:8001/?x=1",
        ] {
            assert!(source(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_failing_name_keeps_its_addresses_and_is_reported_once() {
        let Source::Named(mut named) = source("http://ordering:8001").unwrap() else {
            panic!("a name");
        };
        assert_eq!(
            named.settle(Ok(vec![ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.1")])),
            Settled::Quiet
        );
        assert_eq!(named.addresses, [ip("10.0.0.1"), ip("10.0.0.2")]);
        assert_eq!(
            named.settle(Err("timed out".into())),
            Settled::Failing("timed out".into())
        );
        assert_eq!(named.settle(Err("timed out".into())), Settled::Quiet);
        assert_eq!(named.settle(Ok(vec![])), Settled::Quiet, "still failing");
        assert_eq!(named.addresses, [ip("10.0.0.1"), ip("10.0.0.2")]);
        assert_eq!(named.settle(Ok(vec![ip("10.0.0.3")])), Settled::Recovered);
        assert_eq!(named.addresses, [ip("10.0.0.3")]);
        assert_eq!(
            named.settle(Ok(vec![])),
            Settled::Failing("no address".into())
        );
    }

    #[tokio::test]
    async fn a_name_becomes_one_replica_per_address_and_follows_its_changes() {
        let (resolve, table) = table(&[("ordering", &["10.0.0.1", "10.0.0.2"])]);
        let pool = Pool::new(
            "ordering",
            &["http://ordering:8001".into(), "http://10.9.9.9:8001".into()],
            1,
            Duration::from_secs(60),
            resolve,
        )
        .unwrap();
        assert!(pool.has_names());
        assert_eq!(
            pool.bases(),
            ["http://10.9.9.9:8001"],
            "a literal serves before any name resolves"
        );
        pool.refresh().await;
        assert_eq!(
            pool.bases(),
            [
                "http://10.0.0.1:8001",
                "http://10.0.0.2:8001",
                "http://10.9.9.9:8001"
            ]
        );
        pool.failed("http://10.0.0.2:8001");
        assert_eq!(pool.in_rotation(), 2);

        // A replica goes, another comes: the one that stays is still out.
        table
            .lock()
            .unwrap()
            .insert("ordering".into(), vec![ip("10.0.0.2"), ip("10.0.0.3")]);
        pool.refresh().await;
        assert_eq!(
            pool.bases(),
            [
                "http://10.0.0.2:8001",
                "http://10.0.0.3:8001",
                "http://10.9.9.9:8001"
            ]
        );
        assert_eq!(pool.in_rotation(), 2, "10.0.0.2 stays ejected");

        // The name stops resolving: its last addresses serve on.
        table.lock().unwrap().remove("ordering");
        pool.refresh().await;
        pool.refresh().await;
        assert_eq!(pool.bases().len(), 3);
    }

    #[tokio::test]
    async fn a_name_that_never_resolved_gives_no_replica() {
        let (resolve, _) = table(&[]);
        let pool = Pool::new(
            "ordering",
            &["http://ordering:8001".into()],
            1,
            Duration::from_secs(60),
            resolve,
        )
        .unwrap();
        pool.refresh().await;
        assert!(pool.order().is_empty());
        assert_eq!(pool.in_rotation(), 0);
    }

    #[tokio::test]
    async fn the_system_resolver_knows_localhost() {
        let found = system_resolver()("localhost".into(), 80).await.unwrap();
        assert!(found.iter().all(IpAddr::is_loopback), "{found:?}");
        assert!(!found.is_empty());
    }
}
