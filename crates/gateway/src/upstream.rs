//! Replicas of one service behind the gateway: round-robin over those in
//! rotation, ejection of a replica that keeps failing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Replica {
    base: String,
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
}

/// One service's replicas.
#[derive(Debug)]
pub struct Pool {
    pub service: &'static str,
    replicas: Mutex<Vec<Replica>>,
    next: AtomicUsize,
    eject_after: u32,
    eject_for: Duration,
}

impl Pool {
    pub fn new(
        service: &'static str,
        bases: Vec<String>,
        eject_after: u32,
        eject_for: Duration,
    ) -> Self {
        let replicas = bases
            .into_iter()
            .map(|b| Replica {
                base: b.trim_end_matches('/').to_owned(),
                consecutive_failures: 0,
                ejected_until: None,
            })
            .collect();
        Self {
            service,
            replicas: Mutex::new(replicas),
            next: AtomicUsize::new(0),
            eject_after: eject_after.max(1),
            eject_for,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool::new(
            "catalog",
            vec!["http://a".into(), "http://b".into(), "http://c".into()],
            2,
            Duration::from_secs(60),
        )
    }

    #[test]
    fn requests_go_round_robin() {
        let pool = pool();
        let firsts: Vec<_> = (0..6).map(|_| pool.order()[0].clone()).collect();
        assert_eq!(
            firsts,
            [
                "http://a", "http://b", "http://c", "http://a", "http://b", "http://c"
            ]
        );
    }

    #[test]
    fn a_failing_replica_leaves_rotation_and_returns_on_success() {
        let pool = pool();
        pool.failed("http://b");
        assert_eq!(pool.in_rotation(), 3, "one failure is not enough");
        pool.failed("http://b");
        assert_eq!(pool.in_rotation(), 2);
        for _ in 0..6 {
            let order = pool.order();
            assert_ne!(order[0], "http://b");
            assert_eq!(
                order.last().map(String::as_str),
                Some("http://b"),
                "ejected replicas are tried last"
            );
        }
        pool.succeeded("http://b");
        assert_eq!(pool.in_rotation(), 3);
    }
}
