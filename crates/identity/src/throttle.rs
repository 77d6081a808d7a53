//! Login throttling: failed sign-ins counted per account and per client
//! address in a fixed window; over the limit, sign-in is refused until the
//! window ends, whether the password is right or not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

impl Throttle {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` while `key` is over its limit.
    pub fn blocked(&self, key: &str) -> Option<Duration> {
        let failures = self.lock();
        let (count, since) = failures.get(key)?;
        let elapsed = since.elapsed();
        (*count >= self.limit && elapsed < self.window).then(|| self.window - elapsed)
    }

    pub fn fail(&self, key: &str) {
        let mut failures = self.lock();
        if failures.len() >= SWEEP_AT {
            let window = self.window;
            failures.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = failures
            .entry(key.to_owned())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        match self.failures.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_blocked_after_its_limit_until_the_window_ends() {
        let throttle = Throttle::new(3, Duration::from_millis(200));
        for _ in 0..2 {
            throttle.fail("a");
        }
        assert!(throttle.blocked("a").is_none());
        throttle.fail("a");
        let wait = throttle.blocked("a");
        assert!(wait.is_some_and(|w| w <= Duration::from_millis(200)));
        assert!(throttle.blocked("b").is_none(), "keys are apart");
        std::thread::sleep(Duration::from_millis(220));
        assert!(throttle.blocked("a").is_none());
        throttle.fail("a");
        assert!(throttle.blocked("a").is_none(), "a new window counts anew");
        throttle.clear("a");
        assert!(throttle.blocked("a").is_none());
    }
}
