//! Counting in fixed windows, by key, in this process: the one counter
//! behind identity's sign-in throttle and the gateway's rate limits (which
//! also count in Redis, to share one budget across replicas).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 100_000;

/// The key of a client address: an IPv4 address as it is, an IPv6 address
/// by its /64, since one subscriber is routinely handed a whole /64 and
/// would otherwise get a fresh budget with every address in it.
pub fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", std::net::Ipv6Addr::from(network))
        }
    }
}

pub struct Windows {
    window: Duration,
    counts: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Windows {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one for `key`: the count in its current window and the time
    /// left in that window.
    pub fn add(&self, key: &str) -> (u64, Duration) {
        let mut counts = self.lock();
        if counts.len() >= SWEEP_AT {
            let window = self.window;
            counts.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = counts.entry(key.to_owned()).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        (entry.0, self.window.saturating_sub(entry.1.elapsed()))
    }

    /// The count of `key` in its current window, without counting.
    pub fn peek(&self, key: &str) -> (u64, Duration) {
        match self.lock().get(key) {
            Some((count, since)) if since.elapsed() < self.window => {
                (*count, self.window - since.elapsed())
            }
            _ => (0, self.window),
        }
    }

    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (u64, Instant)>> {
        match self.counts.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let key = |raw: &str| address_key(raw.parse().unwrap());
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(
            key("::ffff:203.0.113.7"),
            "203.0.113.7",
            "IPv4 seen over IPv6"
        );
    }

    #[test]
    fn counts_start_again_with_each_window() {
        let windows = Windows::new(Duration::from_millis(200));
        assert_eq!(windows.add("a").0, 1);
        assert_eq!(windows.add("a").0, 2);
        let (count, left) = windows.peek("a");
        assert_eq!(count, 2);
        assert!(left <= Duration::from_millis(200));
        assert_eq!(windows.peek("b").0, 0, "keys are apart");
        std::thread::sleep(Duration::from_millis(220));
        assert_eq!(windows.peek("a").0, 0);
        assert_eq!(windows.add("a").0, 1, "a new window counts anew");
        windows.clear("a");
        assert_eq!(windows.peek("a").0, 0);
    }
}
