//! Events: the envelope, the transactional outbox and its relay, the inbox
//! that drops repeats, and the two transports (in-process and RabbitMQ).

mod inbox;
mod memory;
mod outbox;
mod rabbitmq;
mod tables;

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
    /// Delivers events whose type matches one of `patterns` (topic syntax:
    /// `*` one word, `#` any words) to `handler`, until `shutdown`.
    /// The queue and its bindings exist once this returns, so events
    /// published from then on are kept; the returned consumer runs until
    /// `shutdown` and is the caller's to spawn (on a task tracker).
    async fn subscribe(
        &self,
        queue: &str,
        patterns: &[&str],
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Consumer>;
    /// Readiness: the broker answers.
    async fn check(&self) -> Result<(), String>;
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
        Ok(Arc::new(RabbitMq::new(
            url,
            settings.prefetch,
            settings.max_retries,
        )))
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

pub(crate) async fn handle_observed(
    consumer: &str,
    handler: &dyn Handler,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let span = tracing::info_span!(
        "event",
        consumer = %consumer,
        event_type = %envelope.kind,
        event_id = %envelope.id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    crate::telemetry::join_traceparent(&span, envelope.traceparent.as_deref());
    let outcome = handler.handle(envelope).instrument(span.clone()).await;
    let label = if outcome.is_ok() { "ok" } else { "error" };
    metrics::counter!("events_consumed_total", "consumer" => consumer.to_owned(), "type" => envelope.kind.clone(), "outcome" => label)
        .increment(1);
    if let Err(e) = &outcome {
        span.in_scope(|| tracing::warn!(error = %e, "event handler failed"));
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
