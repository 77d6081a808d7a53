//! The sign-in throttle: failures counted by account and client address
//! together, each further attempt after the free ones waiting a time that
//! doubles, and a budget per address across every account.
//!
//! An attempt is counted before its password is checked and refunded when
//! it succeeds, all under one lock, so that guesses sent at once cannot
//! slip past the limit while the first of them is still being hashed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use emporium_platform::ratelimit::address_key;

/// Entries kept before forgotten ones are swept.
const SWEEP_AT: usize = 100_000;

/// How hard sign-in is throttled.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Failures of one account from one address that cost nothing.
    pub free_failures: u32,
    /// The wait after the first failure beyond the free ones; it doubles
    /// with each further failure.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// Attempts one address may fail within `window`, whatever the accounts.
    pub failures_per_address: u32,
    /// How long failures are remembered.
    pub window: Duration,
}

/// Failures of one account from one address.
struct Pair {
    failures: u32,
    last: Instant,
}

/// Failures from one address in the current window.
struct Budget {
    failures: u32,
    since: Instant,
}

#[derive(Default)]
struct Counts {
    pairs: HashMap<String, Pair>,
    addresses: HashMap<String, Budget>,
}

pub struct Throttle {
    limits: Limits,
    counts: Mutex<Counts>,
}

/// An attempt let through and counted as a failure until it succeeds.
#[must_use = "a successful attempt must be refunded"]
pub struct Attempt {
    pair: String,
    address: String,
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Lets one attempt for `account` from `client` through and counts it,
    /// or says how long to wait. An unknown address is one address: a
    /// service reached without one still has a budget.
    pub fn begin(&self, account: &str, client: Option<IpAddr>) -> Result<Attempt, Duration> {
        let address = client.map_or_else(|| "unknown".to_owned(), address_key);
        let pair = format!("{account}|{address}");
        let limits = self.limits;
        let now = Instant::now();
        let mut counts = self.lock();
        if counts.pairs.len() + counts.addresses.len() >= SWEEP_AT {
            counts
                .pairs
                .retain(|_, p| now - p.last < limits.window.max(limits.delay(p.failures)));
            counts
                .addresses
                .retain(|_, b| now - b.since < limits.window);
        }
        let budget = counts.addresses.entry(address.clone()).or_insert(Budget {
            failures: 0,
            since: now,
        });
        if now - budget.since >= limits.window {
            *budget = Budget {
                failures: 0,
                since: now,
            };
        }
        if budget.failures >= limits.failures_per_address {
            return Err(limits.window.saturating_sub(now - budget.since));
        }
        let wait = match counts.pairs.get(&pair) {
            Some(p) if now - p.last >= limits.window.max(limits.delay(p.failures)) => None,
            Some(p) if p.failures >= limits.free_failures => {
                let ready = p.last + limits.delay(p.failures);
                (ready > now).then(|| ready - now)
            }
            _ => None,
        };
        if let Some(wait) = wait {
            return Err(wait);
        }
        let entry = counts.pairs.entry(pair.clone()).or_insert(Pair {
            failures: 0,
            last: now,
        });
        if now - entry.last >= limits.window.max(limits.delay(entry.failures)) {
            entry.failures = 0;
        }
        entry.failures += 1;
        entry.last = now;
        if let Some(budget) = counts.addresses.get_mut(&address) {
            budget.failures += 1;
        }
        Ok(Attempt { pair, address })
    }

    /// The password was wrong: the attempt stays counted, and the pair's
    /// wait runs from now, not from when the check began (a slow check
    /// must not shorten the wait).
    pub fn failed(&self, attempt: Attempt) {
        if let Some(pair) = self.lock().pairs.get_mut(&attempt.pair) {
            pair.last = Instant::now();
        }
    }

    /// The password was right: the pair starts afresh and the address gets
    /// its attempt back.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut counts = self.lock();
        counts.pairs.remove(&attempt.pair);
        if let Some(budget) = counts.addresses.get_mut(&attempt.address) {
            budget.failures = budget.failures.saturating_sub(1);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        match self.counts.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Limits {
    /// The wait after `failures` failures: nothing within the free ones,
    /// then `first_delay` doubling with each failure, at most `max_delay`.
    pub fn delay(&self, failures: u32) -> Duration {
        match failures.checked_sub(self.free_failures) {
            None => Duration::ZERO,
            Some(beyond) => {
                let factor = 1u32.checked_shl(beyond.min(31)).unwrap_or(u32::MAX);
                self.first_delay
                    .checked_mul(factor)
                    .unwrap_or(self.max_delay)
                    .min(self.max_delay)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits() -> Limits {
        Limits {
            free_failures: 3,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            failures_per_address: 100,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn delays_double_after_the_free_failures_and_stop_at_the_cap() {
        let limits = limits();
        let delays: Vec<u128> = (0..8).map(|n| limits.delay(n).as_millis()).collect();
        assert_eq!(delays, [0, 0, 0, 100, 200, 350, 350, 350]);
        assert_eq!(limits.delay(u32::MAX), limits.max_delay);
    }

    #[test]
    fn each_failure_beyond_the_free_ones_waits_longer() {
        let throttle = Throttle::new(limits());
        let client = Some("203.0.113.7".parse().unwrap());
        for _ in 0..3 {
            throttle.failed(throttle.begin("ada", client).unwrap());
        }
        let wait = throttle.begin("ada", client).err().unwrap();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::from_millis(50));
        std::thread::sleep(wait);
        throttle.failed(throttle.begin("ada", client).unwrap());
        let wait = throttle.begin("ada", client).err().unwrap();
        assert!(wait > Duration::from_millis(150), "doubled: {wait:?}");
        // The same account from elsewhere, and another account from here,
        // are not held back.
        assert!(
            throttle
                .begin("ada", Some("198.51.100.1".parse().unwrap()))
                .is_ok()
        );
        assert!(throttle.begin("bob", client).is_ok());
    }

    #[test]
    fn a_success_starts_the_pair_afresh_and_refunds_the_address() {
        let throttle = Throttle::new(Limits {
            failures_per_address: 2,
            ..limits()
        });
        let client = Some("203.0.113.7".parse().unwrap());
        let _ = throttle.begin("ada", client).unwrap();
        let attempt = throttle.begin("ada", client).unwrap();
        throttle.succeeded(attempt);
        let _ = throttle.begin("bob", client).unwrap();
        assert!(throttle.begin("carol", client).is_err(), "budget spent");
    }
}
