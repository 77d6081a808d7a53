//! Sends queued messages: takes each due record, spends one of its
//! recipient's hourly budget, tries its channel, and records the outcome:
//! `sent`, queued again after a wait that doubles with each attempt, or
//! `failed` with the error after the last.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use emporium_platform::ratelimit::Limiter;
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::channels::{Channel as Send, Outgoing};
use crate::domain::Channel;
use crate::store::{Outcome, Record, Store, channel_of};

/// How long a taken message is left to its dispatcher before another may
/// take it again: longer than any one attempt.
const LEASE: Duration = Duration::from_secs(60);
/// One attempt's longest wait.
const ATTEMPT: Duration = Duration::from_secs(30);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Records taken at once, and sent at once.
const BATCH: u64 = 32;
const PARALLEL: usize = 8;
/// How often a dispatcher looks for records other replicas queued.
const POLL: Duration = Duration::from_secs(1);

pub struct Channels {
    pub email: Arc<dyn Send>,
    pub sms: Arc<dyn Send>,
}

#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub max_attempts: u32,
    /// The wait after the first attempt; it doubles after each one.
    pub base: Duration,
}

impl Retry {
    /// The wait after attempt number `attempts` (from 1).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.base.saturating_mul(1 << doublings).min(MAX_BACKOFF)
    }
}

#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    channels: Channels,
    limiter: Limiter,
    retry: Retry,
    per_hour: u32,
    wake: Notify,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        channels: Channels,
        limiter: Limiter,
        retry: Retry,
        per_hour: u32,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                channels,
                limiter,
                retry,
                per_hour,
                wake: Notify::new(),
            }),
        }
    }

    /// Something was queued: look now rather than at the next poll.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Sends until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut gauge_at = Instant::now();
        loop {
            let worked = match self.round().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "notification store unreachable; retrying");
                    0
                }
            };
            if gauge_at.elapsed() >= POLL || worked > 0 {
                gauge_at = Instant::now();
                if let Ok(queued) = self.inner.store.queued().await {
                    metrics::gauge!("notification_queue_size").set(queued as f64);
                }
            }
            if worked as u64 == BATCH {
                continue;
            }
            let wait = match self.inner.store.next_due().await {
                Ok(Some(at)) => (at - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(POLL),
                _ => POLL,
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            }
        }
    }

    /// Takes and tries the due records: how many it took.
    pub async fn round(&self) -> Result<usize, sea_orm::DbErr> {
        let now = Utc::now();
        let due = self.inner.store.due(now, BATCH).await?;
        let lease = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        let mut taken = Vec::with_capacity(due.len());
        for record in due {
            if self.inner.store.take(&record, lease).await? {
                taken.push(Record {
                    version: record.version + 1,
                    ..record
                });
            }
        }
        let count = taken.len();
        futures::stream::iter(taken)
            .for_each_concurrent(PARALLEL, |record| async move {
                let id = record.id.clone();
                if let Err(e) = self.attempt(record).await {
                    tracing::warn!(notification_id = %id, error = %e, "attempt not recorded; it is retried when its lease ends");
                }
            })
            .await;
        Ok(count)
    }

    async fn attempt(&self, record: Record) -> Result<(), sea_orm::DbErr> {
        let inner = &self.inner;
        if inner.per_hour > 0 {
            let key = record.user_id.as_deref().unwrap_or(&record.recipient);
            let decision = inner.limiter.hit(key, inner.per_hour).await;
            if !decision.allowed {
                let at =
                    Utc::now() + chrono::Duration::from_std(decision.reset).unwrap_or_default();
                let note = format!(
                    "rate limited: more than {} messages to this recipient in an hour; waits until {}",
                    inner.per_hour,
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
                tracing::info!(notification_id = %record.id, "rate limited; deferred");
                let outcome = Outcome::Deferred {
                    attempts: record.attempts,
                    note,
                    at,
                };
                inner
                    .store
                    .settle(&record.id, record.version, outcome)
                    .await?;
                return Ok(());
            }
        }
        let outgoing = Outgoing {
            id: record.id.clone(),
            recipient: record.recipient.clone(),
            subject: record.subject.clone(),
            text: record.body_text.clone(),
            html: record.body_html.clone(),
        };
        let sent = match channel_of(&record) {
            Some(Channel::Email) => {
                tokio::time::timeout(ATTEMPT, inner.channels.email.send(&outgoing)).await
            }
            Some(Channel::Sms) => {
                tokio::time::timeout(ATTEMPT, inner.channels.sms.send(&outgoing)).await
            }
            None => Ok(Err(crate::channels::SendError(format!(
                "unknown channel `{}`",
                record.channel
            )))),
        };
        let attempts = record.attempts.saturating_add(1);
        let error = match sent {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.0),
            Err(_) => Some(format!("no answer within {} s", ATTEMPT.as_secs())),
        };
        let outcome = match error {
            None => Outcome::Sent { attempts },
            Some(error)
                if u32::try_from(attempts).unwrap_or(u32::MAX) >= inner.retry.max_attempts =>
            {
                tracing::warn!(notification_id = %record.id, attempts, error, "message failed for good");
                Outcome::Failed { attempts, error }
            }
            Some(error) => {
                let wait = inner
                    .retry
                    .backoff(u32::try_from(attempts).unwrap_or(u32::MAX));
                tracing::info!(notification_id = %record.id, attempts, error, wait_ms = wait.as_millis() as u64, "message not sent; retrying");
                Outcome::Retry {
                    attempts,
                    error,
                    at: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
                }
            }
        };
        let status = match &outcome {
            Outcome::Sent { .. } => Some("sent"),
            Outcome::Failed { .. } => Some("failed"),
            _ => None,
        };
        if inner
            .store
            .settle(&record.id, record.version, outcome)
            .await?
        {
            if let Some(status) = status {
                metrics::counter!("notifications_sent_total", "type" => record.kind.clone(), "status" => status)
                    .increment(1);
            }
        } else {
            tracing::warn!(notification_id = %record.id, "attempt outlived its lease; another dispatcher took it");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_and_stop_growing_at_an_hour() {
        let retry = Retry {
            max_attempts: 5,
            base: Duration::from_millis(500),
        };
        let waits: Vec<u128> = (1..=4).map(|a| retry.backoff(a).as_millis()).collect();
        assert_eq!(waits, vec![500, 1_000, 2_000, 4_000]);
        assert_eq!(retry.backoff(40), MAX_BACKOFF);
    }
}
