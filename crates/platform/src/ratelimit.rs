//! Counting in fixed windows, by key: [`Windows`] in this process, the one
//! counter behind identity's sign-in throttle; and [`Limiter`], in this
//! process or in Redis so that replicas share one budget, behind the
//! gateway's rate limits and notification's per-recipient limit. When
//! Redis does not answer, a replica counts on its own rather than turn
//! everyone away.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Secret;

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

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the window ends.
    pub reset: Duration,
}

impl Decision {
    fn of(count: u64, limit: u32, reset: Duration) -> Self {
        Self {
            allowed: count <= u64::from(limit),
            limit,
            remaining: u32::try_from(u64::from(limit).saturating_sub(count)).unwrap_or(0),
            reset,
        }
    }
}

#[derive(Clone)]
pub enum Limiter {
    Memory(Arc<Windows>),
    Redis {
        connection: redis::aio::ConnectionManager,
        prefix: String,
        window: Duration,
        fallback: Arc<Windows>,
        /// The setting that named the store, for the fallback's log.
        setting: &'static str,
    },
}

/// Counts one hit and makes the window expire with its first hit.
const SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

impl Limiter {
    /// Counts in this process alone, in windows of `window`.
    pub fn memory(window: Duration) -> Self {
        Self::Memory(Arc::new(Windows::new(window)))
    }

    /// `memory://`, or `redis://…` with keys under `prefix`; windows of
    /// `window`. `setting` names the URL's key in errors and logs.
    pub async fn from_url(
        url: &Secret,
        prefix: &str,
        window: Duration,
        setting: &'static str,
    ) -> anyhow::Result<Self> {
        let raw = url.expose();
        if raw.is_empty() || raw == "memory://" {
            return Ok(Self::memory(window));
        }
        if raw.starts_with("redis://") || raw.starts_with("rediss://") {
            return Ok(Self::Redis {
                connection: crate::cache::redis_connection(url, setting).await?,
                prefix: prefix.to_owned(),
                window,
                fallback: Arc::new(Windows::new(window)),
                setting,
            });
        }
        anyhow::bail!(
            "configuration: {setting} `{}` must be memory:// or redis://",
            url.masked()
        )
    }

    /// Counts one request for `key` against `limit` in the current window.
    pub async fn hit(&self, key: &str, limit: u32) -> Decision {
        let local = |windows: &Windows| {
            let (count, left) = windows.add(key);
            Decision::of(count, limit, left)
        };
        match self {
            Limiter::Memory(windows) => local(windows),
            Limiter::Redis {
                connection,
                prefix,
                window,
                fallback,
                setting,
            } => {
                let mut connection = connection.clone();
                let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
                let counted: Result<(u64, i64), _> = redis::Script::new(SCRIPT)
                    .key(format!("{prefix}:{key}"))
                    .arg(millis)
                    .invoke_async(&mut connection)
                    .await;
                match counted {
                    Ok((count, ttl)) => Decision::of(
                        count,
                        limit,
                        Duration::from_millis(u64::try_from(ttl).unwrap_or(0)),
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, setting, "rate limit store unreachable; counting locally");
                        metrics::counter!("rate_limit_fallbacks_total", "setting" => *setting)
                            .increment(1);
                        local(fallback)
                    }
                }
            }
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

    #[tokio::test]
    async fn a_window_allows_its_limit_then_refuses_until_it_ends() {
        let window = Duration::from_millis(300);
        let limiter = Limiter::from_url(&Secret::new("memory://"), "t", window, "test.limit")
            .await
            .unwrap();
        for n in 1..=3u32 {
            let decision = limiter.hit("a", 3).await;
            assert!(decision.allowed);
            assert_eq!(decision.remaining, 3 - n);
        }
        let refused = limiter.hit("a", 3).await;
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(refused.reset <= window);
        assert!(limiter.hit("b", 3).await.allowed, "keys are apart");
        tokio::time::sleep(window + Duration::from_millis(20)).await;
        assert!(limiter.hit("a", 3).await.allowed, "a new window");
    }
}
