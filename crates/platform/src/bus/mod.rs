//! Events: the envelope, the transactional outbox and its relay, the inbox
//! that drops repeats, and the two transports (in-process and RabbitMQ).

mod inbox;
mod memory;
mod outbox;
mod rabbitmq;
mod tables;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::BusSettings;
use crate::http::Check;

pub use inbox::claim;
pub use memory::InProcess;
pub use outbox::{Outbox, pending_count, prune_sent, relay_pending};
pub use rabbitmq::RabbitMq;
pub use tables::{OutboxMigration, inbox_row, outbox_row};

pub const EXCHANGE: &str = "emporium.events";
pub const DEAD_LETTER_EXCHANGE: &str = "emporium.events.dlx";
pub(crate) const RETRY_HEADER: &str = "x-emporium-retries";

/// A CloudEvents-shaped event, with the trace it was born in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub specversion: String,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub time: DateTime<Utc>,
    pub subject: String,
    pub datacontenttype: String,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// A new event from `source` about `subject`, in the current trace.
    pub fn new(
        kind: &str,
        source: &str,
        subject: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        Self {
            specversion: "1.0".into(),
            id: Uuid::now_v7(),
            kind: kind.into(),
            source: source.into(),
            time: Utc::now(),
            subject: subject.into(),
            datacontenttype: "application/json".into(),
            data,
            traceparent: crate::telemetry::current_traceparent(),
        }
    }

    /// The service that sent it: its `source` without the `emporium.`
    /// namespace.
    pub fn service(&self) -> &str {
        self.source
            .strip_prefix("emporium.")
            .unwrap_or(&self.source)
    }
}

/// A consumer's durable queue and the events it takes: what a broker must
/// hold before anything is published for it.
#[derive(Clone, Copy, Debug)]
pub struct Queue {
    pub name: &'static str,
    pub interests: &'static [Interest<'static>],
}

/// Events a consumer takes: those whose type matches `pattern` (topic
/// syntax) and that come from `source`, the one service that may send
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest<'a> {
    pub pattern: &'a str,
    pub source: &'a str,
}

impl<'a> Interest<'a> {
    pub const fn new(pattern: &'a str, source: &'a str) -> Self {
        Self { pattern, source }
    }
}

/// A consumer's interests, kept by the transport.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interests(Vec<(String, String)>);

impl Interests {
    pub(crate) fn new(interests: &[Interest<'_>]) -> Self {
        Self(
            interests
                .iter()
                .map(|i| (i.pattern.to_owned(), i.source.to_owned()))
                .collect(),
        )
    }

    pub(crate) fn patterns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(pattern, _)| pattern.as_str())
    }

    /// Whether any interest takes events of type `kind` at all.
    pub(crate) fn wants(&self, kind: &str) -> bool {
        self.patterns().any(|p| topic_matches(p, kind))
    }

    /// Whether `envelope` comes from the source its type may come from.
    fn admits_source(&self, envelope: &Envelope) -> bool {
        self.0.iter().any(|(pattern, source)| {
            *source == envelope.source && topic_matches(pattern, &envelope.kind)
        })
    }
}

/// Who handed a delivery over, as far as the transport can tell.
pub(crate) enum Sender<'a> {
    /// This process: nothing outside it reaches the in-process transport.
    Process,
    /// A broker connection, which the broker authenticated: `user` is the
    /// message's `user_id`, which the broker refuses unless it is the
    /// connection's own user.
    Broker {
        user: Option<&'a str>,
        exchange: &'a str,
        routing_key: &'a str,
        /// This process's broker user, and the users other sources publish
        /// as (`bus.publishers`; a source not named there publishes as this
        /// process's user, as with one account for the whole shop).
        own_user: &'a str,
        publishers: &'a BTreeMap<String, String>,
    },
}

/// Why `envelope` must not reach the handler, if it must not: its source
/// may not send its type, or the broker user that published it may not
/// speak for that source.
pub(crate) fn refusal(
    envelope: &Envelope,
    interests: &Interests,
    sender: Sender<'_>,
) -> Option<&'static str> {
    if !interests.admits_source(envelope) {
        return Some("source may not send this type");
    }
    let Sender::Broker {
        user,
        exchange,
        routing_key,
        own_user,
        publishers,
    } = sender
    else {
        return None;
    };
    let Some(user) = user else {
        return Some("publisher not named");
    };
    let expected = if exchange == EXCHANGE {
        if routing_key != envelope.kind {
            return Some("routed under another type");
        }
        let service = envelope.service();
        publishers
            .get(service)
            .map(String::as_str)
            .unwrap_or(own_user)
    } else {
        // Put back on this consumer's own queue for a retry, by itself.
        own_user
    };
    (user != expected).then_some("publisher may not speak for this source")
}

/// Counts an event set aside as a dead letter by `consumer`.
pub(crate) fn dead_lettered(consumer: &str) {
    metrics::counter!("events_dead_lettered_total", "consumer" => consumer.to_owned()).increment(1);
}

/// Counts and logs an event a consumer refused.
pub(crate) fn refused(consumer: &str, envelope: &Envelope, reason: &'static str) {
    metrics::counter!("events_refused_total", "consumer" => consumer.to_owned(), "reason" => reason)
        .increment(1);
    tracing::warn!(
        consumer,
        event_id = %envelope.id,
        event_type = %envelope.kind,
        source = %envelope.source,
        reason,
        "event refused"
    );
}

/// What a consumer does with one event. An error means "try again later".
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()>;
}

/// Moves envelopes between services.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Returns once the transport holds the event (publisher confirm).
    async fn publish(&self, envelope: &Envelope) -> anyhow::Result<()>;
    /// Delivers events that match one of `interests` (type by topic
    /// syntax: `*` one word, `#` any words; and the source that may send
    /// it) to `handler`, until `shutdown`. Others are refused and counted.
    /// The queue and its bindings exist once this returns, so events
    /// published from then on are kept; the returned consumer runs until
    /// `shutdown` and is the caller's to spawn (on a task tracker).
    async fn subscribe(
        &self,
        queue: &str,
        interests: &[Interest<'_>],
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Consumer>;
    /// Readiness: the broker answers.
    async fn check(&self) -> Result<(), String>;
    /// Declares `queues` with their bindings, as each consumer does when
    /// it starts, so that what is published before a consumer's first
    /// start is kept for it. Nothing to do in-process, where consumers
    /// start before anything is published.
    async fn declare_queues(&self, queues: &[Queue]) -> anyhow::Result<()> {
        let _ = queues;
        Ok(())
    }
    fn name(&self) -> &'static str;
}

pub type SharedTransport = Arc<dyn Transport>;

/// A consumer's delivery loop; it ends after shutdown, once the event in
/// hand is settled.
pub type Consumer = BoxFuture<'static, ()>;

/// The transport that `bus.url` names.
pub fn transport_from_settings(settings: &BusSettings) -> anyhow::Result<SharedTransport> {
    let url = settings.url.expose();
    if url == "memory://" || url.is_empty() {
        Ok(Arc::new(InProcess::new(settings.max_retries)))
    } else if url.starts_with("amqp://") || url.starts_with("amqps://") {
        Ok(Arc::new(
            RabbitMq::new(url, settings.prefetch, settings.max_retries)
                .with_publishers(settings.publishers.clone()),
        ))
    } else {
        anyhow::bail!(
            "configuration: bus.url `{}` must be memory:// or amqp://",
            settings.url.masked()
        )
    }
}

pub fn check(transport: SharedTransport) -> Check {
    Check::new("broker", move || {
        let transport = transport.clone();
        async move { transport.check().await }
    })
    .degradable()
}

/// Topic matching as RabbitMQ does it.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

/// How long a consumer waits before trying an event again whose handler
/// could not reach a store it needs.
pub(crate) const OUTAGE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a handler's `error` says a store it needs could not be reached
/// (a database or Redis connection refused, cut or timed out): an outage,
/// not a fault of the event, so it does not use up the event's retries,
/// which any outage longer than a few seconds would, dead-lettering every
/// event that came meanwhile.
pub fn unreachable(error: &anyhow::Error) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    error.chain().any(|cause| {
        if let Some(db) = cause.downcast_ref::<DbErr>() {
            return match db {
                DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
                DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
                    matches!(
                        e.as_ref(),
                        sqlx::Error::Io(_)
                            | sqlx::Error::Tls(_)
                            | sqlx::Error::PoolTimedOut
                            | sqlx::Error::PoolClosed
                            | sqlx::Error::WorkerCrashed
                    )
                }
                _ => false,
            };
        }
        if let Some(redis) = cause.downcast_ref::<redis::RedisError>() {
            return redis.is_io_error()
                || redis.is_connection_dropped()
                || redis.is_connection_refusal()
                || redis.is_timeout();
        }
        cause.downcast_ref::<std::io::Error>().is_some()
    })
}

pub(crate) async fn handle_observed(
    consumer: &str,
    handler: &dyn Handler,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let span = tracing::info_span!(
        "event",
        "otel.name" = %format!("{} process", envelope.kind),
        "otel.kind" = "consumer",
        service = %consumer,
        consumer = %consumer,
        event_type = %envelope.kind,
        event_id = %envelope.id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    crate::telemetry::join_traceparent(&span, envelope.traceparent.as_deref());
    let mut outcome = handler.handle(envelope).instrument(span.clone()).await;
    // A fault flag's duplicate: the same event again, as a broker
    // redelivering it would hand it over; the inbox must make it a no-op.
    if outcome.is_ok() && crate::faults::process().delivers_twice() {
        outcome = handler.handle(envelope).instrument(span.clone()).await;
    }
    let label = if outcome.is_ok() { "ok" } else { "error" };
    metrics::counter!("events_consumed_total", "consumer" => consumer.to_owned(), "type" => envelope.kind.clone(), "outcome" => label)
        .increment(1);
    match &outcome {
        Ok(()) => span.in_scope(|| tracing::debug!("event handled")),
        Err(e) => span.in_scope(|| tracing::warn!(error = %e, "event handler failed")),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn topics_match_like_rabbitmq() {
        assert!(topic_matches("product.*", "product.created"));
        assert!(!topic_matches("product.*", "product.created.v2"));
        assert!(topic_matches("product.#", "product.created.v2"));
        assert!(topic_matches("#", "order.failed"));
        assert!(topic_matches("#.failed", "payment.failed"));
        assert!(!topic_matches("order.*", "product.created"));
        assert!(topic_matches("order.created", "order.created"));
    }
}
