//! Platform against real stores and brokers: the bus on both transports,
//! the outbox through a broker outage, consumers through a store outage,
//! the inbox, and the Redis cache.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use emporium_platform::bus::inbox_row as inbox;
use emporium_platform::bus::{
    self, Envelope, Handler, InProcess, Interest, Outbox, Queue, RabbitMq, SharedTransport,
    Transport,
};
use emporium_platform::cache;
use emporium_platform::config::Secret;
use emporium_testkit::{Backend, Link, TestDatabase, eventually, server_url};
use sea_orm::{DatabaseConnection, EntityTrait, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

struct OutboxOnly;

impl MigratorTrait for OutboxOnly {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(bus::OutboxMigration)]
    }
}

async fn database(backend: Backend) -> Option<(TestDatabase, DatabaseConnection)> {
    let test_db = TestDatabase::fresh(backend).await?;
    let db = emporium_platform::db::connect(&test_db.url)
        .await
        .expect("connect");
    emporium_platform::db::migrate::<OutboxOnly>(&db)
        .await
        .expect("migrate");
    Some((test_db, db))
}

/// Records what it sees; fails the first `fail_first` deliveries.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Envelope>>,
    fail_first: u32,
    calls: AtomicU32,
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.fail_first {
            anyhow::bail!("failing on purpose ({call})");
        }
        self.seen.lock().await.push(envelope.clone());
        Ok(())
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

fn event(kind: &str, n: u64) -> Envelope {
    Envelope::new(
        kind,
        "test",
        format!("things/{n}"),
        serde_json::json!({ "n": n }),
    )
}

async fn seen_count(recorder: &Recorder, n: usize) -> bool {
    eventually(Duration::from_secs(10), || async {
        (recorder.seen.lock().await.len() >= n).then_some(())
    })
    .await
    .is_some()
}

async fn publishes_and_delivers_by_topic(transport: SharedTransport, queue: &str) {
    let shutdown = CancellationToken::new();
    let topic = unique("t");
    let recorder = Arc::new(Recorder::default());
    let pattern = format!("{topic}.*");
    let task = transport
        .subscribe(
            queue,
            &[Interest::new(&pattern, "test")],
            recorder.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);
    let wanted = event(&format!("{topic}.created"), 1);
    transport.publish(&wanted).await.unwrap();
    transport
        .publish(&event(&format!("other{topic}.created"), 2))
        .await
        .unwrap();
    assert!(seen_count(&recorder, 1).await, "the event arrived");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = recorder.seen.lock().await.clone();
    assert_eq!(seen, vec![wanted], "only the matching event, once, intact");
    shutdown.cancel();
    task.await.unwrap();
}

async fn retries_a_failing_handler(transport: SharedTransport, queue: &str) {
    let shutdown = CancellationToken::new();
    let topic = unique("t");
    let recorder = Arc::new(Recorder {
        fail_first: 2,
        ..Recorder::default()
    });
    let task = transport
        .subscribe(
            queue,
            &[Interest::new(&format!("{topic}.#"), "test")],
            recorder.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);
    transport
        .publish(&event(&format!("{topic}.x"), 1))
        .await
        .unwrap();
    assert!(seen_count(&recorder, 1).await);
    assert_eq!(
        recorder.calls.load(Ordering::SeqCst),
        3,
        "two failures then one success"
    );
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn in_process_bus_delivers_by_topic() {
    publishes_and_delivers_by_topic(Arc::new(InProcess::new(3)), "q-topic").await;
}

#[tokio::test]
async fn in_process_bus_retries_then_dead_letters() {
    retries_a_failing_handler(Arc::new(InProcess::new(3)), "q-retry").await;
    let bus = Arc::new(InProcess::new(2));
    let shutdown = CancellationToken::new();
    let recorder = Arc::new(Recorder {
        fail_first: u32::MAX,
        ..Recorder::default()
    });
    let task = bus
        .subscribe(
            "dlq-test",
            &[Interest::new("doomed.*", "test")],
            recorder.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);
    bus.publish(&event("doomed.x", 1)).await.unwrap();
    let dead = eventually(Duration::from_secs(5), || async {
        (!bus.dead_letters().is_empty()).then(|| bus.dead_letters())
    })
    .await;
    assert_eq!(dead.expect("dead-lettered").len(), 1);
    assert_eq!(
        recorder.calls.load(Ordering::SeqCst),
        3,
        "first try and two retries"
    );
    shutdown.cancel();
    task.await.unwrap();
}

fn rabbit() -> Option<(String, Arc<RabbitMq>)> {
    server_url(emporium_testkit::AMQP)
        .map(|url| (url.clone(), Arc::new(RabbitMq::new(&url, 16, 2))))
}

#[tokio::test]
async fn rabbitmq_bus_delivers_by_topic() {
    let Some((url, rabbit)) = rabbit() else {
        return;
    };
    rabbit.check().await.expect("broker reachable");
    let queue = unique("q-");
    publishes_and_delivers_by_topic(rabbit, &queue).await;
    emporium_testkit::delete_queues(&url, &queue).await;
}

#[tokio::test]
async fn rabbitmq_bus_retries_a_failing_handler() {
    let Some((url, rabbit)) = rabbit() else {
        return;
    };
    let queue = unique("q-");
    retries_a_failing_handler(rabbit, &queue).await;
    emporium_testkit::delete_queues(&url, &queue).await;
}

#[tokio::test]
async fn rabbitmq_dead_letters_after_bounded_retries() {
    let Some(url) = server_url(emporium_testkit::AMQP) else {
        return;
    };
    let rabbit = Arc::new(RabbitMq::new(&url, 16, 2));
    let shutdown = CancellationToken::new();
    let topic = unique("t");
    let queue = unique("q-");
    let recorder = Arc::new(Recorder {
        fail_first: u32::MAX,
        ..Recorder::default()
    });
    let task = rabbit
        .subscribe(
            &queue,
            &[Interest::new(&format!("{topic}.*"), "test")],
            recorder.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);
    rabbit
        .publish(&event(&format!("{topic}.x"), 7))
        .await
        .unwrap();
    let calls = eventually(Duration::from_secs(10), || async {
        (recorder.calls.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert!(calls.is_some(), "first try and two retries");
    // The dead-letter queue holds it.
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let envelope = dead_letter(&channel, &queue).await.expect("dead letter");
    assert_eq!(envelope.data["n"], 7);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        recorder.calls.load(Ordering::SeqCst),
        3,
        "no more tries after dead-lettering"
    );
    shutdown.cancel();
    task.await.unwrap();
    emporium_testkit::delete_queues(&url, &queue).await;
}

fn from(kind: &str, source: &str, n: u64) -> Envelope {
    Envelope::new(
        kind,
        source,
        format!("things/{n}"),
        serde_json::json!({ "n": n }),
    )
}

/// Anything in this process may publish on the in-process bus, but a
/// consumer still takes a type only from the service that owns it.
#[tokio::test]
async fn in_process_bus_refuses_an_event_from_a_source_that_may_not_send_it() {
    let bus = Arc::new(InProcess::new(2));
    let shutdown = CancellationToken::new();
    let recorder = Arc::new(Recorder::default());
    let task = bus
        .subscribe(
            "inventory",
            &[Interest::new("order.cancelled", "emporium.ordering")],
            recorder.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);
    let forged = from("order.cancelled", "emporium.basket", 1);
    let genuine = from("order.cancelled", "emporium.ordering", 2);
    bus.publish(&forged).await.unwrap();
    bus.publish(&genuine).await.unwrap();
    // One queue, in order: once the second is seen, the first was handed
    // over before it and refused.
    assert!(seen_count(&recorder, 1).await);
    assert_eq!(recorder.seen.lock().await.clone(), vec![genuine]);
    assert_eq!(
        recorder.calls.load(Ordering::SeqCst),
        1,
        "the forged one never reached the handler"
    );
    shutdown.cancel();
    task.await.unwrap();
}

/// Publishes `envelope` as a bare broker client would: routed under
/// `routing_key`, naming `user_id` or not.
async fn publish_raw(
    channel: &lapin::Channel,
    envelope: &Envelope,
    routing_key: &str,
    user_id: Option<&str>,
) {
    let mut properties = lapin::BasicProperties::default()
        .with_message_id(envelope.id.to_string().into())
        .with_delivery_mode(2);
    if let Some(user) = user_id {
        properties = properties.with_user_id(user.into());
    }
    channel
        .basic_publish(
            bus::EXCHANGE.into(),
            routing_key.into(),
            lapin::options::BasicPublishOptions::default(),
            &serde_json::to_vec(envelope).unwrap(),
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Any client of the broker could publish `order.cancelled` and restock:
/// a consumer takes a type only from its source, and that source only from
/// the broker user it publishes as (which the broker vouches for in
/// `user_id`); what it refuses is dead-lettered and counted, never handled.
#[tokio::test]
async fn rabbitmq_consumers_take_events_only_from_the_broker_user_of_their_source() {
    let Some(url) = server_url(emporium_testkit::AMQP) else {
        return;
    };
    // Ordering publishes as its own user; the basket shares this process's.
    let publishers = [("ordering".to_owned(), "emporium-ordering".to_owned())].into();
    let rabbit = Arc::new(RabbitMq::new(&url, 16, 2).with_publishers(publishers));
    let shutdown = CancellationToken::new();
    let queue = unique("q-");
    let recorder = Arc::new(Recorder::default());
    let task = rabbit
        .subscribe(
            &queue,
            &[
                Interest::new("order.cancelled", "emporium.ordering"),
                Interest::new("basket.cleared", "emporium.basket"),
            ],
            recorder.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    let forged = [
        // Ordering's type from a user that is not ordering's.
        (
            from("order.cancelled", "emporium.ordering", 1),
            "order.cancelled",
            Some("guest"),
        ),
        // Ordering's type claimed by another source.
        (
            from("order.cancelled", "emporium.basket", 2),
            "order.cancelled",
            Some("guest"),
        ),
        // No publisher named at all.
        (
            from("basket.cleared", "emporium.basket", 3),
            "basket.cleared",
            None,
        ),
        // Routed under one type, saying another.
        (
            from("basket.cleared", "emporium.basket", 4),
            "order.cancelled",
            Some("guest"),
        ),
    ];
    for (envelope, routing_key, user) in &forged {
        publish_raw(&channel, envelope, routing_key, *user).await;
    }
    let genuine = from("basket.cleared", "emporium.basket", 5);
    rabbit.publish(&genuine).await.unwrap();
    assert!(seen_count(&recorder, 1).await, "the genuine event arrived");
    assert_eq!(recorder.seen.lock().await.clone(), vec![genuine]);
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 1);
    // Each forged event was delivered, refused and kept aside.
    let mut dead = std::collections::BTreeSet::new();
    while dead.len() < forged.len() {
        let envelope = dead_letter(&channel, &queue)
            .await
            .expect("every forged event is dead-lettered");
        dead.insert(envelope.data["n"].as_u64().unwrap());
    }
    assert_eq!(dead, [1, 2, 3, 4].into());
    shutdown.cancel();
    task.await.unwrap();
    emporium_testkit::delete_queues(&url, &queue).await;
}

/// Acts on each event through the inbox of a database it reaches over a
/// link the test cuts.
struct Inboxed {
    db: DatabaseConnection,
    calls: AtomicU32,
}

#[async_trait]
impl Handler for Inboxed {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(txn) = bus::claim(&self.db, "outage", envelope).await? {
            txn.commit().await?;
        }
        Ok(())
    }
}

/// Finding (chaos suite): a consumer whose database was cut for longer
/// than its few retries last (about 1.5 s) dead-lettered the events that
/// came meanwhile, and their effects were lost. An event whose handler
/// cannot reach its store now waits for it, whatever its retries, and is
/// acted on once it is back; none is dead-lettered.
async fn waits_out_a_store_outage(transport: SharedTransport, queue: &str) -> Option<()> {
    let (guard, direct) = database(Backend::Postgres).await?;
    let postgres = server_url(emporium_testkit::POSTGRES)?;
    let server = postgres
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let link = Link::to(server.replace("localhost", "127.0.0.1").parse().unwrap()).await;
    let through = guard.url.expose().replace(&server, &link.addr.to_string());
    let db = emporium_platform::db::connect(&Secret::new(through))
        .await
        .unwrap();
    let handler = Arc::new(Inboxed {
        db,
        calls: AtomicU32::new(0),
    });
    let shutdown = CancellationToken::new();
    let topic = unique("t");
    let task = transport
        .subscribe(
            queue,
            &[Interest::new(&format!("{topic}.*"), "test")],
            handler.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);
    link.cut();
    let sent = event(&format!("{topic}.x"), 9);
    transport.publish(&sent).await.unwrap();
    // Longer than every retry of a failing handler together.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(handler.calls.load(Ordering::SeqCst) >= 1, "tried meanwhile");
    link.restore();
    let held = eventually(Duration::from_secs(20), || async {
        let rows = inbox::Entity::find().all(&direct).await.unwrap();
        rows.iter()
            .any(|r| r.event_id == sent.id.to_string())
            .then_some(())
    })
    .await;
    assert!(held.is_some(), "acted on once the database was back");
    shutdown.cancel();
    task.await.unwrap();
    Some(())
}

#[tokio::test]
async fn in_process_bus_waits_out_a_store_outage() {
    let bus = Arc::new(InProcess::new(2));
    if waits_out_a_store_outage(bus.clone(), "q-outage")
        .await
        .is_some()
    {
        assert!(bus.dead_letters().is_empty(), "{:?}", bus.dead_letters());
    }
}

#[tokio::test]
async fn rabbitmq_waits_out_a_store_outage() {
    let Some((url, rabbit)) = rabbit() else {
        return;
    };
    let queue = unique("q-");
    if waits_out_a_store_outage(rabbit, &queue).await.is_some() {
        assert_eq!(
            emporium_testkit::dead_letters(&url, &queue).await,
            0,
            "nothing dead-lettered"
        );
    }
    emporium_testkit::delete_queues(&url, &queue).await;
}

/// Holds its first delivery for a while; records every one.
#[derive(Default)]
struct Slow {
    seen: Mutex<Vec<Envelope>>,
    calls: AtomicU32,
}

#[async_trait]
impl Handler for Slow {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3)).await;
        self.seen.lock().await.push(envelope.clone());
        Ok(())
    }
}

/// Finding (chaos suite): a consumer whose broker connection broke while
/// it handled an event waited for that event's acknowledgement forever and
/// took no event again. It now gives up on a broker that does not answer,
/// connects again, and takes the next ones (the one in hand comes again,
/// for the inbox to drop).
#[tokio::test]
async fn rabbitmq_consumer_cut_off_midway_takes_the_next_events() {
    let Some((url, rabbit)) = rabbit() else {
        return;
    };
    let broker = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .replace("localhost", "127.0.0.1");
    let link = Link::to(broker.parse().unwrap()).await;
    let cut_off = Arc::new(RabbitMq::new(
        &url.replace(&broker, &link.addr.to_string()),
        16,
        2,
    ));
    let handler = Arc::new(Slow::default());
    let shutdown = CancellationToken::new();
    let topic = unique("t");
    let queue = unique("q-");
    let task = cut_off
        .subscribe(
            &queue,
            &[Interest::new(&format!("{topic}.*"), "test")],
            handler.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);
    // Cut while events flow, three times: the cut lands between a
    // delivery and its acknowledgement sooner or later.
    for round in 0..3u64 {
        let before = handler.calls.load(Ordering::SeqCst);
        for n in 0..200 {
            rabbit
                .publish(&event(&format!("{topic}.x"), round * 1000 + n))
                .await
                .unwrap();
        }
        let flowing = eventually(Duration::from_secs(30), || async {
            (handler.calls.load(Ordering::SeqCst) >= before + 30).then_some(())
        })
        .await;
        assert!(flowing.is_some(), "events are taken (round {round})");
        link.cut();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        link.restore();
    }
    let next = event(&format!("{topic}.x"), 9999);
    rabbit.publish(&next).await.unwrap();
    let taken = eventually(Duration::from_secs(30), || async {
        handler.seen.lock().await.contains(&next).then_some(())
    })
    .await;
    assert!(taken.is_some(), "the consumer took the next event");
    shutdown.cancel();
    task.await.unwrap();
    emporium_testkit::delete_queues(&url, &queue).await;
}

/// The next event in `queue`'s dead-letter queue, waiting up to 5 s.
async fn dead_letter(channel: &lapin::Channel, queue: &str) -> Option<Envelope> {
    let dlq = format!("{queue}.dlq");
    let got = eventually(Duration::from_secs(5), || {
        let channel = channel.clone();
        let dlq = dlq.clone();
        async move {
            channel
                .basic_get(
                    dlq.as_str().into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .ok()
                .flatten()
        }
    })
    .await?;
    Some(serde_json::from_slice(&got.delivery.data).unwrap())
}

/// Writes commit while the broker is away; the relay sends them, each once,
/// when it is back.
#[tokio::test]
async fn outbox_holds_events_through_a_broker_outage() {
    let Some(url) = server_url(emporium_testkit::AMQP) else {
        return;
    };
    let (_guard, db) = database(Backend::Sqlite).await.unwrap();
    let broker: std::net::SocketAddr = {
        let parsed = url::Url::parse(&url).unwrap();
        let host = parsed.host_str().unwrap().replace("localhost", "127.0.0.1");
        format!("{host}:{}", parsed.port().unwrap_or(5672))
            .parse()
            .unwrap()
    };
    let link = Link::to(broker).await;
    let mut through_link = url::Url::parse(&url).unwrap();
    through_link.set_port(Some(link.addr.port())).unwrap();
    through_link.set_host(Some("127.0.0.1")).unwrap();
    let relay_transport = Arc::new(RabbitMq::new(through_link.as_str(), 16, 2));
    let direct = Arc::new(RabbitMq::new(&url, 16, 2));

    let shutdown = CancellationToken::new();
    let topic = unique("t");
    let recorder = Arc::new(Recorder::default());
    let queue = unique("q-");
    let task = direct
        .subscribe(
            &queue,
            &[Interest::new(&format!("{topic}.*"), "test")],
            recorder.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);

    relay_transport
        .check()
        .await
        .expect("reachable through the link");
    link.cut();
    let outbox = Outbox::new();
    for n in 0..5 {
        let txn = db.begin().await.unwrap();
        outbox
            .enqueue(&txn, &event(&format!("{topic}.made"), n))
            .await
            .unwrap();
        txn.commit().await.unwrap();
    }
    assert!(
        bus::relay_pending(&db, relay_transport.as_ref())
            .await
            .is_err(),
        "the broker is away"
    );
    assert_eq!(
        bus::pending_count(&db).await.unwrap(),
        5,
        "nothing lost, nothing marked sent"
    );

    link.restore();
    let relay = tokio::spawn(outbox.clone().relay(
        "test",
        db.clone(),
        relay_transport.clone(),
        Duration::from_millis(50),
        shutdown.clone(),
    ));
    assert!(
        seen_count(&recorder, 5).await,
        "every event went out after the broker came back"
    );
    // Marked sent when the relay's batch commits, which may be just after
    // the consumer has them.
    let sent = emporium_testkit::eventually(Duration::from_secs(5), || async {
        (bus::pending_count(&db).await.unwrap() == 0).then_some(())
    })
    .await;
    assert!(sent.is_some(), "every event marked sent");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = recorder.seen.lock().await;
    let mut numbers: Vec<u64> = seen.iter().map(|e| e.data["n"].as_u64().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [0, 1, 2, 3, 4], "each exactly once");
    drop(seen);
    shutdown.cancel();
    relay.await.unwrap();
    task.await.unwrap();
    emporium_testkit::delete_queues(&url, &queue).await;
}

/// Finding (issue 25): a topic exchange drops what no queue is bound to,
/// so the events a service published before its consumer's first start
/// (the first admin's welcome, a seeded catalog) were lost. Declared ahead
/// (`emporium serve` declares every consumer's queue before it starts),
/// they wait for the consumer.
#[tokio::test]
async fn rabbitmq_queues_declared_ahead_keep_what_is_published_before_their_consumer() {
    let Some(url) = server_url(emporium_testkit::AMQP) else {
        return;
    };
    let transport = RabbitMq::new(&url, 16, 2);
    let topic = unique("ahead");
    let pattern: &'static str = Box::leak(format!("{topic}.*").into_boxed_str());
    let queue: &'static str = Box::leak(unique("q-ahead-").into_boxed_str());
    let interests: &'static [Interest<'static>] =
        Box::leak(vec![Interest::new(pattern, "test")].into_boxed_slice());
    // Before any queue: dropped by the broker, as before the fix.
    transport
        .publish(&event(&format!("{topic}.made"), 0))
        .await
        .unwrap();
    transport
        .declare_queues(&[Queue {
            name: queue,
            interests,
        }])
        .await
        .unwrap();
    transport
        .publish(&event(&format!("{topic}.made"), 1))
        .await
        .unwrap();
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        transport
            .subscribe(queue, interests, recorder.clone(), shutdown.clone())
            .await
            .unwrap(),
    );
    assert!(
        seen_count(&recorder, 1).await,
        "the event waited for its consumer"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen: Vec<u64> = recorder
        .seen
        .lock()
        .await
        .iter()
        .map(|e| e.data["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seen,
        [1],
        "only what was published once the queue was declared"
    );
    shutdown.cancel();
    task.await.unwrap();
    emporium_testkit::delete_queues(&url, queue).await;
}

#[tokio::test]
async fn the_outbox_forgets_only_old_sent_events() {
    let (_guard, db) = database(Backend::Sqlite).await.unwrap();
    let outbox = Outbox::new();
    for n in 0..3 {
        let txn = db.begin().await.unwrap();
        outbox.enqueue(&txn, &event("prune.me", n)).await.unwrap();
        txn.commit().await.unwrap();
    }
    let transport = InProcess::new(0);
    assert_eq!(bus::relay_pending(&db, &transport).await.unwrap(), 3);
    let txn = db.begin().await.unwrap();
    outbox.enqueue(&txn, &event("prune.me", 9)).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        bus::prune_sent(&db, chrono::Duration::days(1))
            .await
            .unwrap(),
        0,
        "recent events stay"
    );
    assert_eq!(
        bus::prune_sent(&db, chrono::Duration::seconds(-1))
            .await
            .unwrap(),
        3,
        "old sent events go"
    );
    assert_eq!(
        bus::pending_count(&db).await.unwrap(),
        1,
        "an unsent event is never pruned"
    );
}

/// An effect that counts applications, guarded by the inbox.
struct Counted {
    db: DatabaseConnection,
    applied: AtomicU32,
}

#[async_trait]
impl Handler for Counted {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        if let Some(txn) = bus::claim(&self.db, "counter", envelope).await? {
            self.applied.fetch_add(1, Ordering::SeqCst);
            txn.commit().await?;
        }
        Ok(())
    }
}

async fn inbox_drops_repeats(backend: Backend) {
    let Some((_guard, db)) = database(backend).await else {
        return;
    };
    let counted = Arc::new(Counted {
        db,
        applied: AtomicU32::new(0),
    });
    let envelope = event("thing.done", 1);
    // Delivered four times, two of them at the same moment.
    let (a, b) = tokio::join!(counted.handle(&envelope), counted.handle(&envelope));
    a.unwrap();
    b.unwrap();
    counted.handle(&envelope).await.unwrap();
    counted.handle(&envelope).await.unwrap();
    counted.handle(&event("thing.done", 2)).await.unwrap();
    assert_eq!(
        counted.applied.load(Ordering::SeqCst),
        2,
        "one effect per distinct event"
    );
}

#[tokio::test]
async fn inbox_drops_repeats_on_sqlite() {
    inbox_drops_repeats(Backend::Sqlite).await;
}

#[tokio::test]
async fn inbox_drops_repeats_on_postgres() {
    inbox_drops_repeats(Backend::Postgres).await;
}

#[tokio::test]
async fn inbox_drops_repeats_on_mariadb() {
    inbox_drops_repeats(Backend::MySql).await;
}

async fn cache_contract(cache: cache::SharedCache) {
    let key = unique("k");
    assert_eq!(cache.get(&key).await.unwrap(), None);
    cache
        .set(&key, b"value", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key).await.unwrap().as_deref(),
        Some(&b"value"[..])
    );
    cache.delete(&key).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap(), None);
    cache
        .set(&key, b"short", Duration::from_secs(1))
        .await
        .unwrap();
    let gone = eventually(Duration::from_secs(5), || async {
        cache.get(&key).await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(gone.is_some(), "entries expire");
    cache.check().await.unwrap();

    // Cache-aside fencing: a copy read before a write does not outlive it.
    let key = unique("fenced");
    let before_write = cache.fence(&key).await.unwrap();
    cache.invalidate(&key).await.unwrap(); // a writer commits meanwhile
    assert!(
        !cache
            .set_fenced(&key, b"old", Duration::from_secs(30), before_write)
            .await
            .unwrap()
    );
    assert_eq!(
        cache.get(&key).await.unwrap(),
        None,
        "the stale copy was not stored"
    );
    let after_write = cache.fence(&key).await.unwrap();
    assert_ne!(after_write, before_write);
    assert!(
        cache
            .set_fenced(&key, b"new", Duration::from_secs(30), after_write)
            .await
            .unwrap()
    );
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some(&b"new"[..]));
    cache.invalidate(&key).await.unwrap();
    assert_eq!(
        cache.get(&key).await.unwrap(),
        None,
        "invalidation removes the value"
    );
}

#[tokio::test]
async fn memory_cache_keeps_and_expires() {
    cache_contract(
        cache::from_url(&Secret::new("memory://"), "test")
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn redis_cache_keeps_and_expires() {
    let Some(url) = server_url(emporium_testkit::REDIS) else {
        return;
    };
    cache_contract(cache::from_url(&Secret::new(url), "test").await.unwrap()).await;
}

#[tokio::test]
async fn bad_store_urls_are_named() {
    let err = emporium_platform::db::connect(&Secret::new("oracle://x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("database url"), "{err}");
    let err = cache::from_url(&Secret::new("memcached://x"), "t")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("cache url"), "{err}");
    let err = emporium_platform::objects::from_url("ftp://x")
        .err()
        .unwrap();
    assert!(err.to_string().contains("objects url"), "{err}");
}

/// Captured log lines.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A tracer provider without an exporter: spans get trace and span ids
/// (for logs and propagation) and go nowhere.
fn local_tracer() -> opentelemetry_sdk::trace::Tracer {
    use opentelemetry::trace::TracerProvider as _;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .build()
        .tracer("emporium")
}

/// A request joins its caller's trace: its log lines carry the caller's
/// trace id, and what it calls in turn is handed the same trace.
#[tokio::test(flavor = "current_thread")]
async fn requests_join_the_callers_trace_in_logs_and_onward_calls() {
    use tracing_subscriber::layer::SubscriberExt;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(local_tracer()))
        .with(emporium_platform::telemetry::JsonLogLayer::new(move || {
            writer.clone()
        }));
    let _default = tracing::subscriber::set_default(subscriber);

    let routes = axum::Router::new().route(
        "/work/{id}",
        axum::routing::get(|| async {
            tracing::info!(items = 3, "work done");
            emporium_platform::telemetry::current_traceparent().unwrap_or_default()
        }),
    );
    let router =
        emporium_platform::http::finish_router("test", routes, vec![], &Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(emporium_platform::http::serve(
        listener,
        router,
        shutdown.clone(),
    ));

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/work/42"))
        .header("traceparent", incoming)
        .header("x-request-id", "req-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-7");
    let onward = response.text().await.unwrap();
    let parts: Vec<_> = onward.split('-').collect();
    assert_eq!(parts.len(), 4, "onward traceparent: {onward}");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(parts[2], "00f067aa0ba902b7", "a span of our own");

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "work done")
        .unwrap_or_else(|| panic!("no log line: {text}"));
    assert_eq!(line["level"], "info");
    assert_eq!(line["service"], "test");
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["span_id"], parts[2]);
    assert_eq!(line["request_id"], "req-7");
    assert_eq!(line["endpoint"], "/work/{id}");
    assert_eq!(line["items"], 3);
    assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

/// A gRPC call that outlives the server's deadline is answered as gRPC `DEADLINE_EXCEEDED`, which a tonic
/// client sees as such, and is counted under that code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_deadline_is_answered_and_counted_as_deadline_exceeded() {
    use emporium_platform::http::{Observe, observe};
    use emporium_proto::catalog::v1::GetProductRequest;
    use emporium_proto::catalog::v1::catalog_client::CatalogClient;
    // The process's recorder, installed before anything is counted.
    emporium_platform::telemetry::metrics_handle();

    let slow = axum::Router::new().route(
        "/emporium.catalog.v1.Catalog/GetProduct",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            ""
        }),
    );
    let serve = |service: &'static str, timeout: Duration| {
        let router = slow.clone().layer(axum::middleware::from_fn_with_state(
            Observe { service, timeout },
            observe,
        ));
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(emporium_platform::http::serve(
                listener,
                router,
                CancellationToken::new(),
            ));
            format!("http://{addr}")
        }
    };
    let request = || GetProductRequest {
        id: uuid::Uuid::now_v7().to_string(),
    };

    // The server's own deadline.
    let url = serve("slow-server", Duration::from_millis(100)).await;
    let channel = emporium_platform::grpc::channel(&url, Duration::from_secs(20)).unwrap();
    let started = std::time::Instant::now();
    let status = CatalogClient::new(channel)
        .get_product(request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A caller's own `grpc-timeout` shorter than the server's is honoured
    // too (unit-tested with the header parser): a tonic client enforces it
    // itself as well, and reports its own expiry as CANCELLED.

    let text = emporium_platform::telemetry::metrics_handle().render();
    let counted = text.lines().any(|line| {
        line.starts_with("grpc_server_requests_total{")
            && line.contains("service=\"slow-server\"")
            && line.contains("method=\"/emporium.catalog.v1.Catalog/GetProduct\"")
            && line.contains("code=\"DEADLINE_EXCEEDED\"")
    });
    assert!(counted, "counted as DEADLINE_EXCEEDED:\n{text}");
}
