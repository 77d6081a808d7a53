//! What a load run measured: a latency histogram of log buckets, each step's
//! answers by status, each second's latencies, and how checkouts ended.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Sub-buckets per power of two: a value's bucket is at most 1/32 (3 %)
/// wider than the value, which is the error of every percentile.
const SUB: u64 = 32;
const SUB_BITS: u32 = 5;
/// Microseconds up to 2^27 (134 s) are told apart; longer ones share the
/// last bucket.
const TOP_BIT: u32 = 27;
const BUCKETS: usize = (SUB + (TOP_BIT as u64 - SUB_BITS as u64) * SUB) as usize;

/// Latencies in microseconds, counted in log-linear buckets.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u32>,
    total: u64,
    sum: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            max: 0,
        }
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let top = (63 - micros.leading_zeros()).min(TOP_BIT - 1);
    let shift = top - SUB_BITS;
    let sub = ((micros >> shift) - SUB).min(SUB - 1);
    (SUB + u64::from(shift) * SUB + sub) as usize
}

/// The lowest value of bucket `index` and its width.
fn bounds_of(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB {
        return (index, 1);
    }
    let shift = (index - SUB) / SUB;
    let sub = (index - SUB) % SUB;
    ((SUB + sub) << shift, 1 << shift)
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
        self.sum = self.sum.saturating_add(micros);
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max_ms(&self) -> f64 {
        self.max as f64 / 1e3
    }

    pub fn mean_ms(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64 / 1e3
        }
    }

    /// The value below which a share `q` of the values lie, in ms: the
    /// middle of its bucket, never above the largest value seen.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                let (low, width) = bounds_of(index);
                let middle = low as f64 + (width as f64 - 1.0) / 2.0;
                return middle.min(self.max as f64) / 1e3;
            }
        }
        self.max_ms()
    }

    /// The non-empty buckets as (lowest ms, highest ms, count).
    pub fn buckets(&self) -> Vec<(f64, f64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(index, &count)| {
                let (low, width) = bounds_of(index);
                (
                    low as f64 / 1e3,
                    (low + width) as f64 / 1e3,
                    u64::from(count),
                )
            })
            .collect()
    }
}

/// What the shop answered to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A status the shopper expected (2xx, or a 4xx it knows may come).
    Expected(u16),
    /// 429: the edge's rate limits, counted apart from the shop's errors.
    Throttled,
    /// Any other status: a 4xx the shopper did not expect, or a 5xx.
    Unexpected(u16),
    /// No answer: refused connection, reset, timeout.
    Missing,
}

impl Answer {
    pub fn is_error(self) -> bool {
        matches!(self, Answer::Unexpected(_) | Answer::Missing)
    }
}

/// One step's answers.
#[derive(Default, Clone)]
pub struct StepStats {
    pub latency: Histogram,
    /// Count by status; 0 stands for no answer.
    pub statuses: BTreeMap<u16, u64>,
    pub errors: u64,
    pub throttled: u64,
    /// 4xx the step expects (a line a confirmed order took out of the
    /// basket), which are not errors.
    pub expected_4xx: u64,
}

/// One second of the run, all steps together.
#[derive(Default, Clone)]
pub struct Second {
    pub requests: u64,
    pub latency: Histogram,
    pub errors: u64,
    pub throttled: u64,
}

/// How the checkouts of the run ended, as the order API said.
#[derive(Default, Clone)]
pub struct Checkouts {
    pub confirmed: u64,
    /// Orders that failed, by the reason the order gives.
    pub failed: BTreeMap<String, u64>,
    /// Checkouts refused before an order was made (4xx with a problem),
    /// by the problem's detail.
    pub refused: BTreeMap<String, u64>,
    /// Checkouts that ended neither confirmed nor failed with a reason: a
    /// 5xx, no answer, or an order left pending or failed without reason.
    pub unsettled: u64,
    /// The first few unsettled ones, described.
    pub unsettled_examples: Vec<String>,
    pub cancelled: u64,
}

impl Checkouts {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

#[derive(Default, Clone)]
pub struct Sessions {
    pub started: u64,
    pub finished: u64,
    pub signed_up: u64,
    pub signed_in: u64,
    /// Open model: arrivals not started because `--max-active` sessions
    /// were running.
    pub dropped: u64,
    pub active: u64,
}

/// Everything measured so far; shared by the shoppers behind a lock.
pub struct Recorder {
    pub started: Instant,
    pub steps: BTreeMap<&'static str, StepStats>,
    pub seconds: Vec<Second>,
    pub overall: Histogram,
    pub checkouts: Checkouts,
    pub sessions: Sessions,
}

impl Recorder {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            steps: BTreeMap::new(),
            seconds: Vec::new(),
            overall: Histogram::default(),
            checkouts: Checkouts::default(),
            sessions: Sessions::default(),
        }
    }

    /// Records one request of `step` that was sent at `sent`.
    pub fn request(
        &mut self,
        step: &'static str,
        sent: Instant,
        latency: Duration,
        answer: Answer,
    ) {
        let stats = self.steps.entry(step).or_default();
        let second = sent.saturating_duration_since(self.started).as_secs() as usize;
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, Second::default);
        }
        let this_second = &mut self.seconds[second];
        this_second.requests += 1;
        let status = match answer {
            Answer::Expected(s) | Answer::Unexpected(s) => s,
            Answer::Throttled => 429,
            Answer::Missing => 0,
        };
        *stats.statuses.entry(status).or_default() += 1;
        match answer {
            Answer::Throttled => {
                stats.throttled += 1;
                this_second.throttled += 1;
            }
            Answer::Unexpected(_) | Answer::Missing => {
                stats.errors += 1;
                this_second.errors += 1;
            }
            Answer::Expected(s) if s >= 400 => stats.expected_4xx += 1,
            Answer::Expected(_) => {}
        }
        if answer != Answer::Missing {
            stats.latency.record(latency);
            this_second.latency.record(latency);
            self.overall.record(latency);
        }
    }

    pub fn requests(&self) -> u64 {
        self.steps
            .values()
            .map(|s| s.statuses.values().sum::<u64>())
            .sum()
    }

    pub fn errors(&self) -> u64 {
        self.steps.values().map(|s| s.errors).sum()
    }

    pub fn throttled(&self) -> u64 {
        self.steps.values().map(|s| s.throttled).sum()
    }

    /// Answers with a 5xx status, every step.
    pub fn server_errors(&self) -> u64 {
        self.steps
            .values()
            .flat_map(|s| s.statuses.iter())
            .filter(|(status, _)| **status >= 500)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests sent during the last `window` whole seconds before `now`,
    /// per second.
    pub fn recent_rate(&self, now: Instant, window: u64) -> f64 {
        let current = now.saturating_duration_since(self.started).as_secs() as usize;
        let from = current.saturating_sub(window as usize);
        let counted: u64 = self
            .seconds
            .iter()
            .take(current)
            .skip(from)
            .map(|s| s.requests)
            .sum();
        let span = (current - from).max(1);
        counted as f64 / span as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_that_holds_it() {
        for micros in (0..5000).chain([65_535, 1 << 20, (1 << 27) - 1]) {
            let (low, width) = bounds_of(bucket_of(micros));
            assert!(
                low <= micros && micros < low + width,
                "{micros}: {low}+{width}"
            );
            assert!(
                width * SUB <= low.max(SUB),
                "{micros}: {width} too wide for {low}"
            );
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_the_bucket_error() {
        let mut h = Histogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0), (1.0, 1000.0)] {
            let got = h.quantile_ms(q);
            assert!(
                (got - exact).abs() / exact < 0.035,
                "q{q}: {got} vs {exact}"
            );
        }
        assert!((h.mean_ms() - 500.5).abs() < 1e-9);
        assert_eq!(h.max_ms(), 1000.0);
        assert_eq!(h.buckets().iter().map(|b| b.2).sum::<u64>(), 1000);
    }

    #[test]
    fn throttled_and_failed_answers_are_counted_apart() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        let ms = Duration::from_millis(3);
        r.request("browse", start, ms, Answer::Expected(200));
        r.request("browse", start, ms, Answer::Throttled);
        r.request("checkout", start, ms, Answer::Unexpected(503));
        r.request("checkout", start, ms, Answer::Missing);
        r.request("basket_quantity", start, ms, Answer::Expected(404));
        assert_eq!(
            (r.requests(), r.errors(), r.throttled(), r.server_errors()),
            (5, 2, 1, 1)
        );
        assert_eq!(r.overall.count(), 4, "no answer has no latency");
        assert_eq!(r.steps["basket_quantity"].expected_4xx, 1);
    }
}
