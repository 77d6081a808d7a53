//! Events: the envelope, the transactional outbox and its relay, the inbox
//! that drops repeats, and the two transports (in-process and RabbitMQ).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::BusSettings;
use crate::http::Check;

pub const EXCHANGE: &str = "emporium.events";
pub const DEAD_LETTER_EXCHANGE: &str = "emporium.events.dlx";
const RETRY_HEADER: &str = "x-emporium-retries";

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
    async fn subscribe(
        &self,
        queue: &str,
        patterns: &[&str],
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>>;
    /// Readiness: the broker answers.
    async fn check(&self) -> Result<(), String>;
    fn name(&self) -> &'static str;
}

pub type SharedTransport = Arc<dyn Transport>;

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

async fn handle_observed(
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

// ---------------------------------------------------------------------------
// In-process transport

struct Subscription {
    patterns: Vec<String>,
    sender: tokio::sync::mpsc::UnboundedSender<Envelope>,
}

/// Events between services of one process; retries then dead-letters like
/// the broker does.
pub struct InProcess {
    queues: Mutex<HashMap<String, Subscription>>,
    dead_letters: Arc<Mutex<Vec<(String, Envelope)>>>,
    max_retries: u32,
}

impl InProcess {
    pub fn new(max_retries: u32) -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            dead_letters: Arc::default(),
            max_retries,
        }
    }

    /// Events that failed every retry, by queue.
    pub fn dead_letters(&self) -> Vec<(String, Envelope)> {
        self.dead_letters
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Transport for InProcess {
    async fn publish(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let queues = self
            .queues
            .lock()
            .map_err(|_| anyhow::anyhow!("bus lock poisoned"))?;
        for subscription in queues.values() {
            if subscription
                .patterns
                .iter()
                .any(|p| topic_matches(p, &envelope.kind))
            {
                let _ = subscription.sender.send(envelope.clone());
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        queue: &str,
        patterns: &[&str],
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let subscription = Subscription {
            patterns: patterns.iter().map(|p| String::from(*p)).collect(),
            sender,
        };
        self.queues
            .lock()
            .map_err(|_| anyhow::anyhow!("bus lock poisoned"))?
            .insert(queue.to_owned(), subscription);
        let queue = queue.to_owned();
        let dead_letters = self.dead_letters.clone();
        let max_retries = self.max_retries;
        Ok(tokio::spawn(async move {
            loop {
                let envelope = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = receiver.recv() => match next { Some(e) => e, None => break },
                };
                let mut attempt = 0;
                while handle_observed(&queue, handler.as_ref(), &envelope)
                    .await
                    .is_err()
                {
                    attempt += 1;
                    if attempt > max_retries {
                        tracing::error!(queue = %queue, event_id = %envelope.id, "event dead-lettered");
                        if let Ok(mut dead) = dead_letters.lock() {
                            dead.push((queue.clone(), envelope.clone()));
                        }
                        break;
                    }
                    let backoff = Duration::from_millis(20 * 2u64.pow(attempt.min(6)));
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }))
    }

    async fn check(&self) -> Result<(), String> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

// ---------------------------------------------------------------------------
// RabbitMQ transport

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// A durable topic exchange, one durable queue per consumer, publisher
/// confirms, manual acks, bounded retries then a dead-letter queue.
pub struct RabbitMq {
    url: String,
    prefetch: u16,
    max_retries: u32,
    publisher: tokio::sync::Mutex<Option<(Connection, Channel)>>,
}

impl RabbitMq {
    pub fn new(url: &str, prefetch: u16, max_retries: u32) -> Self {
        Self {
            url: url.to_owned(),
            prefetch,
            max_retries,
            publisher: tokio::sync::Mutex::new(None),
        }
    }

    async fn open(url: &str) -> anyhow::Result<(Connection, Channel)> {
        let connect = Connection::connect(url, ConnectionProperties::default());
        let connection = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| anyhow::anyhow!("broker did not answer within 5s"))??;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                EXCHANGE.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                DEAD_LETTER_EXCHANGE.into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        Ok((connection, channel))
    }

    async fn publisher_channel(&self) -> anyhow::Result<Channel> {
        let mut guard = self.publisher.lock().await;
        if let Some((connection, channel)) = guard.as_ref()
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        *guard = None;
        let (connection, channel) = Self::open(&self.url).await?;
        *guard = Some((connection, channel.clone()));
        Ok(channel)
    }

    async fn forget_publisher(&self) {
        if let Some((connection, _)) = self.publisher.lock().await.take() {
            let _ = connection.close(0, "reconnecting".into()).await;
        }
    }
}

async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> anyhow::Result<()> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            payload,
            properties,
        )
        .await?;
    let confirmation = tokio::time::timeout(Duration::from_secs(10), confirm)
        .await
        .map_err(|_| anyhow::anyhow!("no publisher confirm within 10s"))??;
    if confirmation.is_nack() {
        anyhow::bail!("broker refused the event");
    }
    Ok(())
}

fn properties_for(envelope: &Envelope, retries: u32) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(RETRY_HEADER.into(), AMQPValue::LongUInt(retries));
    if let Some(tp) = &envelope.traceparent {
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString(tp.as_str().into()),
        );
    }
    BasicProperties::default()
        .with_content_type("application/cloudevents+json".into())
        .with_delivery_mode(2)
        .with_message_id(ShortString::from(envelope.id.to_string()))
        .with_type(ShortString::from(envelope.kind.clone()))
        .with_headers(headers)
}

fn retries_of(properties: &BasicProperties) -> u32 {
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(RETRY_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongUInt(n) => Some(n),
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            _ => None,
        })
        .unwrap_or(0)
}

#[async_trait]
impl Transport for RabbitMq {
    async fn publish(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(envelope)?;
        let channel = self.publisher_channel().await?;
        let outcome = publish_confirmed(
            &channel,
            EXCHANGE,
            &envelope.kind,
            &payload,
            properties_for(envelope, 0),
        )
        .await;
        if outcome.is_err() {
            self.forget_publisher().await;
        }
        outcome
    }

    async fn subscribe(
        &self,
        queue: &str,
        patterns: &[&str],
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        let consumer = RabbitConsumer {
            url: self.url.clone(),
            queue: queue.to_owned(),
            patterns: patterns.iter().map(|p| String::from(*p)).collect(),
            prefetch: self.prefetch,
            max_retries: self.max_retries,
            handler,
        };
        // Declare the topology now, so events published from here on are kept
        // even before the consumer's first delivery.
        let (connection, channel) = Self::open(&self.url).await?;
        consumer.declare(&channel).await?;
        let _ = connection.close(0, "declared".into()).await;
        Ok(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !shutdown.is_cancelled() {
                match consumer.consume(&shutdown).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(queue = %consumer.queue, error = %e, "consumer lost its broker, reconnecting")
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }))
    }

    /// A round trip to the broker, not the cached connection state, which
    /// lags behind a dropped link.
    async fn check(&self) -> Result<(), String> {
        let channel = self.publisher_channel().await.map_err(|e| e.to_string())?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let probe = channel.exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Topic,
            passive,
            FieldTable::default(),
        );
        match tokio::time::timeout(Duration::from_secs(1), probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.forget_publisher().await;
                Err(e.to_string())
            }
            Err(_) => {
                self.forget_publisher().await;
                Err("the broker did not answer within 1s".into())
            }
        }
    }

    fn name(&self) -> &'static str {
        "rabbitmq"
    }
}

struct RabbitConsumer {
    url: String,
    queue: String,
    patterns: Vec<String>,
    prefetch: u16,
    max_retries: u32,
    handler: Arc<dyn Handler>,
}

impl RabbitConsumer {
    async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let dead = format!("{}.dlq", self.queue);
        channel
            .queue_declare(dead.as_str().into(), durable, FieldTable::default())
            .await?;
        channel
            .queue_bind(
                dead.as_str().into(),
                DEAD_LETTER_EXCHANGE.into(),
                self.queue.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.queue.as_str().into()),
        );
        channel
            .queue_declare(self.queue.as_str().into(), durable, arguments)
            .await?;
        for pattern in &self.patterns {
            channel
                .queue_bind(
                    self.queue.as_str().into(),
                    EXCHANGE.into(),
                    pattern.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Consumes until shutdown (`Ok`) or until the connection fails (`Err`).
    async fn consume(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let (connection, channel) = RabbitMq::open(&self.url).await?;
        self.declare(&channel).await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("{}-{}", self.queue, Uuid::now_v7());
        let mut deliveries = channel
            .basic_consume(
                self.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = connection.close(0, "shutdown".into()).await;
                    return Ok(());
                }
                next = deliveries.next() => match next {
                    Some(delivery) => delivery?,
                    None => anyhow::bail!("delivery stream ended"),
                },
            };
            let Ok(envelope) = serde_json::from_slice::<Envelope>(&delivery.data) else {
                tracing::error!(queue = %self.queue, "undecodable event dead-lettered");
                delivery
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..BasicNackOptions::default()
                    })
                    .await?;
                continue;
            };
            if handle_observed(&self.queue, self.handler.as_ref(), &envelope)
                .await
                .is_ok()
            {
                delivery.ack(BasicAckOptions::default()).await?;
                continue;
            }
            let retries = retries_of(&delivery.properties);
            if retries >= self.max_retries {
                tracing::error!(queue = %self.queue, event_id = %envelope.id, retries, "event dead-lettered");
                delivery
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..BasicNackOptions::default()
                    })
                    .await?;
                continue;
            }
            // Back to the end of this queue only (not to every subscriber),
            // after a pause that grows with each retry.
            let pause = Duration::from_millis(50 * 2u64.pow(retries.min(6)));
            tokio::time::sleep(pause).await;
            publish_confirmed(
                &channel,
                "",
                &self.queue,
                &delivery.data,
                properties_for(&envelope, retries + 1),
            )
            .await?;
            delivery.ack(BasicAckOptions::default()).await?;
        }
    }
}

// ---------------------------------------------------------------------------
// Outbox and inbox tables

pub mod outbox_row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub event_type: String,
        #[sea_orm(column_type = "Text")]
        pub envelope: String,
        pub created_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
        pub attempts: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod inbox_row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub processed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The outbox and inbox tables, part of every service's migrations.
pub struct OutboxMigration;

impl sea_orm_migration::MigrationName for OutboxMigration {
    fn name(&self) -> &str {
        "m20261123_000000_outbox_inbox"
    }
}

#[async_trait]
impl sea_orm_migration::MigrationTrait for OutboxMigration {
    async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::*;
        manager
            .create_table(
                Table::create()
                    .table("outbox")
                    .if_not_exists()
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("event_type").string_len(128).not_null())
                    .col(ColumnDef::new("envelope").text().not_null())
                    .col(
                        ColumnDef::new("created_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new("sent_at").timestamp_with_time_zone().null())
                    .col(ColumnDef::new("attempts").integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_unsent")
                    .table("outbox")
                    .col("sent_at")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("inbox")
                    .if_not_exists()
                    .col(ColumnDef::new("consumer").string_len(64).not_null())
                    .col(ColumnDef::new("event_id").string_len(36).not_null())
                    .col(
                        ColumnDef::new("processed_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col("consumer").col("event_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::*;
        manager
            .drop_table(Table::drop().table("inbox").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("outbox").to_owned())
            .await
    }
}

/// A service's handle on its outbox: write events in the caller's
/// transaction, then wake the relay.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `envelope` in the same transaction as the state change.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        conn: &C,
        envelope: &Envelope,
    ) -> Result<(), DbErr> {
        let row = outbox_row::ActiveModel {
            id: Set(envelope.id.to_string()),
            event_type: Set(envelope.kind.clone()),
            envelope: Set(
                serde_json::to_string(envelope).map_err(|e| DbErr::Custom(e.to_string()))?
            ),
            created_at: Set(Utc::now()),
            sent_at: Set(None),
            attempts: Set(0),
        };
        outbox_row::Entity::insert(row)
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }

    /// Tells the relay there is work; call after the transaction commits.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes unsent events until `shutdown`, then once more to flush.
    pub async fn relay(
        self,
        db: DatabaseConnection,
        transport: SharedTransport,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut failures: u32 = 0;
        let mut pruned = std::time::Instant::now();
        loop {
            let pause = if failures == 0 {
                interval
            } else {
                (interval * 2u32.pow(failures.min(5))).min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified(), if failures == 0 => {}
                _ = tokio::time::sleep(pause) => {}
            }
            if pruned.elapsed() > Duration::from_secs(3600) {
                pruned = std::time::Instant::now();
                if let Err(e) = prune_sent(&db, chrono::Duration::days(7)).await {
                    tracing::warn!(error = %e, "could not prune the outbox");
                }
            }
            match relay_pending(&db, transport.as_ref()).await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "outbox relay could not publish; will retry");
                }
            }
        }
        if let Err(e) = relay_pending(&db, transport.as_ref()).await {
            tracing::warn!(error = %e, "outbox relay could not flush at shutdown; events stay queued");
        }
    }
}

/// Publishes every unsent event in order; returns how many went out.
pub async fn relay_pending(
    db: &DatabaseConnection,
    transport: &dyn Transport,
) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let txn = crate::db::begin_write(db).await?;
        let mut query = outbox_row::Entity::find()
            .filter(outbox_row::Column::SentAt.is_null())
            .order_by_asc(outbox_row::Column::Id)
            .limit(100);
        // Replicas share the table: each takes rows the others are not on.
        if db.get_database_backend() != DbBackend::Sqlite {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = query.all(&txn).await?;
        if rows.is_empty() {
            txn.commit().await?;
            return Ok(total);
        }
        for row in rows {
            let envelope: Envelope = match serde_json::from_str(&row.envelope) {
                Ok(envelope) => envelope,
                Err(e) => {
                    tracing::error!(event_id = %row.id, error = %e, "undecodable outbox row skipped");
                    mark_sent(&txn, &row.id).await?;
                    continue;
                }
            };
            if let Err(e) = transport.publish(&envelope).await {
                let attempts = outbox_row::ActiveModel {
                    id: Set(row.id.clone()),
                    attempts: Set(row.attempts + 1),
                    ..Default::default()
                };
                outbox_row::Entity::update(attempts).exec(&txn).await?;
                txn.commit().await?;
                return Err(e);
            }
            mark_sent(&txn, &row.id).await?;
            metrics::counter!("events_published_total", "type" => envelope.kind.clone(), "transport" => transport.name())
                .increment(1);
            total += 1;
        }
        txn.commit().await?;
    }
}

async fn mark_sent(txn: &DatabaseTransaction, id: &str) -> Result<(), DbErr> {
    let sent = outbox_row::ActiveModel {
        id: Set(id.to_owned()),
        sent_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    outbox_row::Entity::update(sent).exec(txn).await?;
    Ok(())
}

/// Forgets events published longer ago than `age`; returns how many.
pub async fn prune_sent(db: &DatabaseConnection, age: chrono::Duration) -> Result<u64, DbErr> {
    let before = Utc::now() - age;
    let result = outbox_row::Entity::delete_many()
        .filter(outbox_row::Column::SentAt.is_not_null())
        .filter(outbox_row::Column::SentAt.lt(before))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Events not yet published.
pub async fn pending_count(db: &DatabaseConnection) -> Result<u64, DbErr> {
    outbox_row::Entity::find()
        .filter(outbox_row::Column::SentAt.is_null())
        .count(db)
        .await
}

/// Starts the consumer's transaction for `envelope`, or `None` when this
/// consumer has processed it already. Commit the transaction with the
/// effects of the event.
pub async fn claim(
    db: &DatabaseConnection,
    consumer: &str,
    envelope: &Envelope,
) -> Result<Option<DatabaseTransaction>, DbErr> {
    let txn = crate::db::begin_write(db).await?;
    let row = inbox_row::ActiveModel {
        consumer: Set(consumer.to_owned()),
        event_id: Set(envelope.id.to_string()),
        processed_at: Set(Utc::now()),
    };
    match inbox_row::Entity::insert(row)
        .exec_without_returning(&txn)
        .await
    {
        Ok(_) => Ok(Some(txn)),
        Err(e)
            if matches!(
                e.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) =>
        {
            txn.rollback().await?;
            tracing::debug!(consumer, event_id = %envelope.id, "repeated event dropped");
            Ok(None)
        }
        Err(e) => Err(e),
    }
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
