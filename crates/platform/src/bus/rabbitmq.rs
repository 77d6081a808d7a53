//! The RabbitMQ transport: a durable topic exchange, a durable queue per
//! consumer, publisher confirms, manual acks, bounded retries, dead letters.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use std::collections::BTreeMap;

use super::{
    Consumer, DEAD_LETTER_EXCHANGE, EXCHANGE, Envelope, Handler, Interest, Interests, OUTAGE_PAUSE,
    Queue, RETRY_HEADER, Sender, Transport, dead_lettered, handle_observed, refusal, refused,
    unreachable,
};

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// A durable topic exchange, one durable queue per consumer, publisher
/// confirms, manual acks, bounded retries then a dead-letter queue.
/// Every event carries the broker user that published it (`user_id`,
/// which the broker checks against the connection), and consumers take an
/// event only from the user its source publishes as.
pub struct RabbitMq {
    url: String,
    prefetch: u16,
    max_retries: u32,
    /// The user this process connects as.
    user: String,
    /// The users other services publish as, by service (`bus.publishers`).
    publishers: Arc<BTreeMap<String, String>>,
    publisher: tokio::sync::Mutex<Option<(Connection, Channel)>>,
}

impl RabbitMq {
    pub fn new(url: &str, prefetch: u16, max_retries: u32) -> Self {
        Self {
            url: url.to_owned(),
            prefetch,
            max_retries,
            user: broker_user(url),
            publishers: Arc::default(),
            publisher: tokio::sync::Mutex::new(None),
        }
    }

    /// The broker users other services publish as, by service name.
    pub fn with_publishers(mut self, publishers: BTreeMap<String, String>) -> Self {
        self.publishers = Arc::new(publishers);
        self
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

/// Declares durable `queue`, dead-lettering to `queue.dlq`, bound to the
/// exchange by `patterns`: the same whoever declares it, the consumer or
/// a process declaring the shop's queues ahead of it.
async fn declare_queue<'a>(
    channel: &Channel,
    queue: &str,
    patterns: impl Iterator<Item = &'a str>,
) -> anyhow::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let dead = format!("{queue}.dlq");
    channel
        .queue_declare(dead.as_str().into(), durable, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            dead.as_str().into(),
            DEAD_LETTER_EXCHANGE.into(),
            queue.into(),
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
        AMQPValue::LongString(queue.into()),
    );
    channel
        .queue_declare(queue.into(), durable, arguments)
        .await?;
    for pattern in patterns {
        channel
            .queue_bind(
                queue.into(),
                EXCHANGE.into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> anyhow::Result<()> {
    let confirmed = async {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                payload,
                properties,
            )
            .await?;
        anyhow::Ok(confirm.await?)
    };
    let confirmation = tokio::time::timeout(Duration::from_secs(10), confirmed)
        .await
        .map_err(|_| anyhow::anyhow!("no publisher confirm within 10s"))??;
    if confirmation.is_nack() {
        anyhow::bail!("broker refused the event");
    }
    Ok(())
}

/// The user an AMQP URL connects as (`guest` when it names none, as the
/// client does).
fn broker_user(url: &str) -> String {
    url.parse::<lapin::uri::AMQPUri>()
        .map(|uri| uri.authority.userinfo.username)
        .unwrap_or_else(|_| "guest".to_owned())
}

fn properties_for(envelope: &Envelope, retries: u32, user: &str) -> BasicProperties {
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
        .with_user_id(ShortString::from(user.to_owned()))
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
            properties_for(envelope, 0, &self.user),
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
        interests: &[Interest<'_>],
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Consumer> {
        let consumer = RabbitConsumer {
            url: self.url.clone(),
            queue: queue.to_owned(),
            interests: Interests::new(interests),
            user: self.user.clone(),
            publishers: self.publishers.clone(),
            prefetch: self.prefetch,
            max_retries: self.max_retries,
            handler,
        };
        // Declare the topology now, so events published from here on are kept
        // even before the consumer's first delivery.
        let (connection, channel) = Self::open(&self.url).await?;
        consumer.declare(&channel).await?;
        let _ = connection.close(0, "declared".into()).await;
        Ok(Box::pin(async move {
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

    async fn declare_queues(&self, queues: &[Queue]) -> anyhow::Result<()> {
        let (connection, channel) = Self::open(&self.url).await?;
        for queue in queues {
            let interests = Interests::new(queue.interests);
            declare_queue(&channel, queue.name, interests.patterns()).await?;
        }
        let _ = connection.close(0, "declared".into()).await;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "rabbitmq"
    }
}

struct RabbitConsumer {
    url: String,
    queue: String,
    interests: Interests,
    user: String,
    publishers: Arc<BTreeMap<String, String>>,
    prefetch: u16,
    max_retries: u32,
    handler: Arc<dyn Handler>,
}

impl RabbitConsumer {
    async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        declare_queue(channel, &self.queue, self.interests.patterns()).await
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
        // A connection that broke does not always end the delivery stream:
        // its state is looked at while waiting.
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = connection.close(0, "shutdown".into()).await;
                    return Ok(());
                }
                _ = watch.tick() => {
                    if !connection.status().connected() || !channel.status().connected() {
                        anyhow::bail!("broker connection lost");
                    }
                    continue;
                }
                next = deliveries.next() => match next {
                    Some(delivery) => delivery?,
                    None => anyhow::bail!("delivery stream ended"),
                },
            };
            let Ok(envelope) = serde_json::from_slice::<Envelope>(&delivery.data) else {
                tracing::error!(queue = %self.queue, "undecodable event dead-lettered");
                dead_lettered(&self.queue);
                answered(dead_letter(&delivery)).await?;
                continue;
            };
            let sender = Sender::Broker {
                user: delivery.properties.user_id().as_ref().map(|u| u.as_str()),
                exchange: delivery.exchange.as_str(),
                routing_key: delivery.routing_key.as_str(),
                own_user: &self.user,
                publishers: &self.publishers,
            };
            if let Some(reason) = refusal(&envelope, &self.interests, sender) {
                // Kept in the dead-letter queue for whoever investigates.
                refused(&self.queue, &envelope, reason);
                dead_lettered(&self.queue);
                answered(dead_letter(&delivery)).await?;
                continue;
            }
            let Err(failure) = handle_observed(&self.queue, self.handler.as_ref(), &envelope).await
            else {
                answered(delivery.ack(BasicAckOptions::default())).await?;
                continue;
            };
            let retries = retries_of(&delivery.properties);
            // A store out of reach is waited for, not counted against the
            // event.
            let outage = unreachable(&failure);
            if retries >= self.max_retries && !outage {
                tracing::error!(queue = %self.queue, event_id = %envelope.id, retries, "event dead-lettered");
                dead_lettered(&self.queue);
                answered(dead_letter(&delivery)).await?;
                continue;
            }
            // Back to the end of this queue only (not to every subscriber),
            // after a pause that grows with each retry.
            let (pause, retries) = if outage {
                (OUTAGE_PAUSE, retries)
            } else {
                (
                    Duration::from_millis(50 * 2u64.pow(retries.min(6))),
                    retries + 1,
                )
            };
            tokio::time::sleep(pause).await;
            publish_confirmed(
                &channel,
                "",
                &self.queue,
                &delivery.data,
                properties_for(&envelope, retries, &self.user),
            )
            .await?;
            answered(delivery.ack(BasicAckOptions::default())).await?;
        }
    }
}

/// How long the broker may take to take an acknowledgement.
const SETTLE_WITHIN: Duration = Duration::from_secs(5);

/// `settle`, an acknowledgement or refusal of a delivery, or an error if
/// the broker does not take it in time: on a connection that broke while
/// it was sent, it would be awaited forever, and the consumer with it.
async fn answered<T, E: Into<anyhow::Error>>(
    settle: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<()> {
    tokio::time::timeout(SETTLE_WITHIN, settle)
        .await
        .map_err(|_| anyhow::anyhow!("the broker did not take the acknowledgement in time"))?
        .map(|_| ())
        .map_err(Into::into)
}

/// Refuses a delivery without requeueing: the queue's dead-letter exchange
/// moves it to `<queue>.dlq`.
async fn dead_letter(delivery: &lapin::message::Delivery) -> Result<(), lapin::Error> {
    delivery
        .nack(BasicNackOptions {
            requeue: false,
            ..BasicNackOptions::default()
        })
        .await
        .map(|_| ())
}
