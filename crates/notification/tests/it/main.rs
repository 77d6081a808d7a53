//! Notification's store and dispatcher contract, run on SQLite always and on
//! PostgreSQL and MariaDB when their URLs are set: each message is sent
//! once however many dispatchers run, retried and then `failed` with its
//! error, held back past its recipient's budget; each event queues its
//! messages once; and bad input on every REST route.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use emporium_notification::channels::{Channel as Send, Outgoing, SendError, Smtp};
use emporium_notification::dispatch::{Channels, Dispatcher, Retry};
use emporium_notification::domain::{Channel, Composer, Directory, Draft, Status};
use emporium_notification::events::Consumer;
use emporium_notification::http::{AppState, router};
use emporium_notification::live::{Hub, SocketSettings};
use emporium_notification::store::{Filter, Store};
use emporium_notification::templates::Templates;
use emporium_platform::bus::{Envelope, Handler};
use emporium_platform::config::Secret;
use emporium_platform::grpc::{Peer, PeerPolicy, ServiceCredentials};
use emporium_platform::ratelimit::Limiter;
use emporium_testkit::{Backend, TestDatabase, Tokens, on_every_backend};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A channel that records what it was asked and fails the first
/// `failures` attempts of each message.
#[derive(Default)]
struct Recording {
    failures: u32,
    tries: Mutex<HashMap<String, u32>>,
    sent: Mutex<Vec<String>>,
}

impl Recording {
    fn failing(failures: u32) -> Arc<Self> {
        Arc::new(Self {
            failures,
            ..Self::default()
        })
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl Send for Recording {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
        let tries = {
            let mut tries = self.tries.lock().unwrap();
            let n = tries.entry(message.id.clone()).or_default();
            *n += 1;
            *n
        };
        // A send takes a little while, so that two dispatchers overlap.
        tokio::time::sleep(Duration::from_millis(5)).await;
        if tries <= self.failures {
            return Err(SendError(format!("450 mailbox busy (try {tries})")));
        }
        self.sent.lock().unwrap().push(message.id.clone());
        Ok(())
    }
}

struct Fixture {
    store: Store,
    _guard: TestDatabase,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let guard = TestDatabase::fresh(backend).await?;
    let db = emporium_platform::db::connect(&guard.url)
        .await
        .expect("connect");
    emporium_platform::db::migrate::<emporium_notification::migrations::Migrator>(&db)
        .await
        .expect("migrate");
    Some(Fixture {
        store: Store::new(db),
        _guard: guard,
    })
}

fn draft(user: Option<&str>, to: &str, kind: &str) -> Draft {
    Draft {
        user_id: user.map(str::to_owned),
        channel: Channel::Email,
        recipient: to.to_owned(),
        kind: kind.to_owned(),
        subject: "Subject".to_owned(),
        text: "Body".to_owned(),
        html: None,
        event_id: None,
        error: None,
    }
}

fn dispatcher(store: &Store, email: Arc<Recording>, retry: Retry, per_hour: u32) -> Dispatcher {
    Dispatcher::new(
        store.clone(),
        Channels {
            email,
            sms: Arc::new(Recording::default()),
        },
        Limiter::memory(Duration::from_secs(3600)),
        retry,
        per_hour,
    )
}

const QUICK: Retry = Retry {
    max_attempts: 3,
    base: Duration::from_millis(20),
};

/// Runs `dispatchers` until nothing is queued, or `within` passes.
async fn drain(store: &Store, dispatchers: &[Dispatcher], within: Duration) {
    let stop = CancellationToken::new();
    let running: Vec<_> = dispatchers
        .iter()
        .map(|d| tokio::spawn(d.clone().run(stop.clone())))
        .collect();
    let drained = emporium_testkit::eventually(within, || async {
        (store.queued().await.unwrap() == 0).then_some(())
    })
    .await;
    stop.cancel();
    for task in running {
        task.await.unwrap();
    }
    assert!(drained.is_some(), "messages still queued after {within:?}");
}

async fn records_list_filter_page_and_show_each_state(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let store = &f.store;
    for i in 0..5 {
        Store::insert(
            store.db(),
            &draft(
                Some("ann"),
                &format!("ann{i}@example.org"),
                "order.confirmed",
            ),
        )
        .await
        .unwrap();
    }
    Store::insert(
        store.db(),
        &draft(Some("bob"), "bob@example.org", "order.shipped"),
    )
    .await
    .unwrap();
    let failed = Store::insert(
        store.db(),
        &Draft {
            error: Some("template: undefined value".into()),
            ..draft(None, "staff@example.org", "stock.low")
        },
    )
    .await
    .unwrap();
    assert_eq!(failed.status, "failed");

    let anns = Filter {
        user_id: Some("ann".into()),
        ..Filter::default()
    };
    let (first, total) = store.list(&anns, 1, 2).await.unwrap();
    assert_eq!((first.len(), total), (2, 5));
    let (last, _) = store.list(&anns, 3, 2).await.unwrap();
    assert_eq!(last.len(), 1);
    // Newest first, and no record on two pages.
    assert!(first[0].created_at >= first[1].created_at);
    let (all, _) = store.list(&anns, 1, 10).await.unwrap();
    let mut ids: Vec<_> = all.iter().map(|r| r.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    let by = |status, kind: Option<&str>| Filter {
        status,
        kind: kind.map(str::to_owned),
        ..Filter::default()
    };
    assert_eq!(
        store
            .list(&by(Some(Status::Failed), None), 1, 10)
            .await
            .unwrap()
            .1,
        1
    );
    assert_eq!(
        store
            .list(&by(Some(Status::Queued), None), 1, 10)
            .await
            .unwrap()
            .1,
        6
    );
    assert_eq!(
        store
            .list(&by(None, Some("order.shipped")), 1, 10)
            .await
            .unwrap()
            .1,
        1
    );
    assert_eq!(store.queued().await.unwrap(), 6);
    assert_eq!(
        store
            .get(&failed.id)
            .await
            .unwrap()
            .unwrap()
            .error
            .as_deref(),
        Some("template: undefined value")
    );

    // A record read once is taken by one dispatcher only.
    let due = store.due(chrono::Utc::now(), 10).await.unwrap();
    let lease = chrono::Utc::now() + chrono::Duration::seconds(60);
    assert!(store.take(&due[0], lease).await.unwrap());
    assert!(!store.take(&due[0], lease).await.unwrap());
    assert!(
        !store
            .due(chrono::Utc::now(), 10)
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == due[0].id)
    );
}

async fn dispatchers_send_each_message_once_retry_and_then_fail(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let store = &f.store;
    for i in 0..40 {
        Store::insert(
            store.db(),
            &draft(None, &format!("c{i}@example.org"), "order.confirmed"),
        )
        .await
        .unwrap();
    }
    // Two dispatchers (two replicas) over the same records, every message
    // failing once first.
    let email = Recording::failing(1);
    let both = [
        dispatcher(store, email.clone(), QUICK, 0),
        dispatcher(store, email.clone(), QUICK, 0),
    ];
    drain(store, &both, Duration::from_secs(30)).await;
    let mut sent = email.sent();
    assert_eq!(sent.len(), 40, "each message sent once");
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), 40, "no message sent twice");
    let (records, _) = store
        .list(
            &Filter {
                status: Some(Status::Sent),
                ..Filter::default()
            },
            1,
            100,
        )
        .await
        .unwrap();
    assert_eq!(records.len(), 40);
    assert!(
        records.iter().all(|r| r.attempts == 2 && r.error.is_none()),
        "{:?}",
        records[0]
    );

    // A channel that never works: the record ends `failed` with the last
    // error after the last attempt.
    let broken = Store::insert(store.db(), &draft(None, "d@example.org", "order.shipped"))
        .await
        .unwrap();
    let never = Recording::failing(u32::MAX);
    drain(
        store,
        &[dispatcher(store, never.clone(), QUICK, 0)],
        Duration::from_secs(10),
    )
    .await;
    let broken = store.get(&broken.id).await.unwrap().unwrap();
    assert_eq!((broken.status.as_str(), broken.attempts), ("failed", 3));
    assert_eq!(broken.error.as_deref(), Some("450 mailbox busy (try 3)"));
    assert!(never.sent().is_empty());
}

async fn a_recipients_budget_holds_the_rest_back(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let store = &f.store;
    for _ in 0..3 {
        Store::insert(store.db(), &draft(Some("ann"), "ann@example.org", "manual"))
            .await
            .unwrap();
    }
    Store::insert(store.db(), &draft(Some("bob"), "bob@example.org", "manual"))
        .await
        .unwrap();
    let email = Recording::failing(0);
    let d = dispatcher(store, email.clone(), QUICK, 2);
    for _ in 0..3 {
        d.round().await.unwrap();
    }
    assert_eq!(email.sent().len(), 3, "two of ann's and bob's");
    let (held, _) = store
        .list(
            &Filter {
                status: Some(Status::Queued),
                ..Filter::default()
            },
            1,
            10,
        )
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].user_id.as_deref(), Some("ann"));
    assert_eq!(held[0].attempts, 0, "a held message spends no attempt");
    assert!(
        held[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("rate limited"),
        "{:?}",
        held[0].error
    );
    assert!(held[0].next_attempt_at > chrono::Utc::now() + chrono::Duration::minutes(30));
}

fn consumer(store: &Store, hub: Hub) -> Consumer {
    // Identity is not running: the events used here need no lookup.
    let identity = Peer::new(
        "identity",
        "http://127.0.0.1:9",
        PeerPolicy::default(),
        ServiceCredentials::fixed("notification", "unused").unwrap(),
    )
    .unwrap();
    Consumer {
        store: store.clone(),
        directory: Directory::new(identity),
        composer: Composer {
            templates: Templates::load(None).unwrap(),
            shop_url: "https://shop.example.org".into(),
            staff: vec!["ops@example.org".into(), "lead@example.org".into()],
        },
        dispatcher: dispatcher(store, Recording::failing(0), QUICK, 0),
        hub,
    }
}

async fn each_event_queues_its_messages_once(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let store = &f.store;
    let hub = Hub::start(
        None,
        SocketSettings {
            buffer: 8,
            heartbeat: Duration::from_secs(20),
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let consumer = Arc::new(consumer(store, hub));
    let welcome = Envelope::new(
        "user.registered",
        "emporium.identity",
        "users/u1",
        json!({ "id": "0193a4b2-0000-7000-8000-0000000000a1", "email": "ann@example.org", "name": "Ann <3", "role": "customer", "created_at": "2026-12-02T10:00:00Z" }),
    );
    let low = Envelope::new(
        "stock.low",
        "emporium.inventory",
        "stock/KIT-002/east",
        json!({ "sku": "KIT-002", "warehouse": "east", "on_hand": 3, "reserved": 1, "available": 2, "threshold": 5 }),
    );
    // Each delivered three times, at once.
    let mut deliveries = Vec::new();
    for envelope in [&welcome, &low] {
        for _ in 0..3 {
            let consumer = consumer.clone();
            let envelope = envelope.clone();
            deliveries.push(tokio::spawn(
                async move { consumer.handle(&envelope).await },
            ));
        }
    }
    for delivery in deliveries {
        // A delivery that lost the inbox race may fail; the broker would
        // hand it back, and it would then find the claim.
        let _ = delivery.await.unwrap();
    }
    consumer.handle(&welcome).await.unwrap();
    consumer.handle(&low).await.unwrap();

    let mine = store.of_event(&welcome.id.to_string()).await.unwrap();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let welcome_record = &mine[0];
    assert_eq!(welcome_record.recipient, "ann@example.org");
    assert_eq!(
        welcome_record.user_id.as_deref(),
        Some("0193a4b2-0000-7000-8000-0000000000a1")
    );
    assert_eq!(welcome_record.kind, "user.registered");
    assert!(
        welcome_record.subject.contains("Welcome"),
        "{}",
        welcome_record.subject
    );
    assert!(welcome_record.body_text.contains("Ann <3"));
    let html = welcome_record.body_html.as_deref().unwrap();
    assert!(
        html.contains("Ann &lt;3") && !html.contains("Ann <3"),
        "{html}"
    );

    let staff = store.of_event(&low.id.to_string()).await.unwrap();
    let mut to: Vec<_> = staff.iter().map(|r| r.recipient.as_str()).collect();
    to.sort_unstable();
    assert_eq!(to, ["lead@example.org", "ops@example.org"]);
    assert!(
        staff
            .iter()
            .all(|r| r.user_id.is_none() && r.subject.contains("KIT-002"))
    );
}

on_every_backend!(
    records_list_filter_page_and_show_each_state,
    dispatchers_send_each_message_once_retry_and_then_fail,
    a_recipients_budget_holds_the_rest_back,
    each_event_queues_its_messages_once,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_refuses_leaves_the_message_failed_with_its_answer() {
    let f = fixture(Backend::Sqlite).await.unwrap();
    let store = &f.store;
    let addr = emporium_testkit::refusing_smtp("554 5.3.2 mail.example.org refuses all mail").await;
    let smtp = Smtp::from_url(
        &Secret::new(format!("smtp://{addr}")),
        "Shop <shop@example.org>",
    )
    .unwrap();
    let record = Store::insert(
        store.db(),
        &draft(Some("ann"), "ann@example.org", "order.confirmed"),
    )
    .await
    .unwrap();
    let d = Dispatcher::new(
        store.clone(),
        Channels {
            email: Arc::new(smtp),
            sms: Arc::new(Recording::default()),
        },
        Limiter::memory(Duration::from_secs(3600)),
        QUICK,
        0,
    );
    drain(store, &[d], Duration::from_secs(20)).await;
    let record = store.get(&record.id).await.unwrap().unwrap();
    assert_eq!((record.status.as_str(), record.attempts), ("failed", 3));
    let error = record.error.unwrap();
    assert!(error.contains("refuses all mail"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_smtp_server_receives_one_message_with_both_parts() {
    use emporium_testkit::{SMTP, SMTP_MAILDIR, delivered, server_url};
    let (Some(url), Some(maildir)) = (server_url(SMTP), server_url(SMTP_MAILDIR)) else {
        return;
    };
    let f = fixture(Backend::Sqlite).await.unwrap();
    let store = &f.store;
    let to = format!("smtp-{}@example.org", uuid::Uuid::now_v7().simple());
    let smtp = Smtp::from_url(&Secret::new(url), "Shop <shop@example.org>").unwrap();
    let record = Store::insert(
        store.db(),
        &Draft {
            html: Some("<p>Thanks for your order</p>".into()),
            ..draft(Some("ann"), &to, "order.confirmed")
        },
    )
    .await
    .unwrap();
    let d = Dispatcher::new(
        store.clone(),
        Channels {
            email: Arc::new(smtp),
            sms: Arc::new(Recording::default()),
        },
        Limiter::memory(Duration::from_secs(3600)),
        QUICK,
        0,
    );
    drain(store, &[d], Duration::from_secs(20)).await;
    let record = store.get(&record.id).await.unwrap().unwrap();
    assert_eq!(
        (record.status.as_str(), record.attempts),
        ("sent", 1),
        "{:?}",
        record.error
    );
    let got = emporium_testkit::eventually(Duration::from_secs(5), || async {
        let got = delivered(&maildir, &to);
        (!got.is_empty()).then_some(got)
    })
    .await
    .expect("the SMTP server delivered it");
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains(&format!("Message-ID: <{}@emporium>", record.id)),
        "{}",
        got[0]
    );
    assert!(got[0].contains("multipart/alternative"), "{}", got[0]);
}

fn app(store: &Store, tokens: &Tokens) -> axum::Router {
    let identity = Peer::new(
        "identity",
        "http://127.0.0.1:9",
        PeerPolicy {
            deadline: Duration::from_millis(300),
            retries: 0,
            ..PeerPolicy::default()
        },
        ServiceCredentials::fixed("notification", "unused").unwrap(),
    )
    .unwrap();
    router(AppState {
        store: store.clone(),
        verifier: tokens.issuer.verifier().unwrap(),
        directory: Directory::new(identity),
        dispatcher: dispatcher(store, Recording::failing(0), QUICK, 0),
    })
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, String, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        kind,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Method, URI, token, body and the status expected.
type Case<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    Option<&'a str>,
    StatusCode,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_bad_input_with_a_problem_and_writes_nothing() {
    let f = fixture(Backend::Sqlite).await.unwrap();
    let store = &f.store;
    let tokens = Tokens::new();
    let app = app(store, &tokens);
    let admin = tokens.admin();
    let ann = tokens.user("ann", emporium_platform::auth::Role::Customer);
    let mine = Store::insert(
        store.db(),
        &draft(Some("ann"), "ann@example.org", "order.confirmed"),
    )
    .await
    .unwrap();
    Store::insert(
        store.db(),
        &draft(Some("bob"), "bob@example.org", "order.confirmed"),
    )
    .await
    .unwrap();

    let good = r#"{"to":"x@example.org","subject":"Hi","body":"Hello"}"#;
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/notifications/send".into(),
            None,
            Some(good),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/api/v1/notifications/send".into(),
            Some("forged.token.here"),
            Some(good),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/api/v1/notifications/send".into(),
            Some(&ann),
            Some(good),
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            "/api/v1/notifications/send".into(),
            Some(&admin),
            Some("{"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/v1/notifications/send".into(),
            Some(&admin),
            Some("[]"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v1/notifications/send".into(),
            Some(&admin),
            Some(r#"{"to":"x@example.org","subject":7,"body":"x"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v1/notifications/send".into(),
            Some(&admin),
            Some(r#"{"to":"not-an-address","subject":"Hi","body":"x"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v1/notifications/send".into(),
            Some(&admin),
            Some(r#"{"to":"x@example.org","subject":"Hi\nBcc: y@example.org","body":"x"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        // A user id needs identity, which is down here: 503, not 500.
        (
            "POST",
            "/api/v1/notifications/send".into(),
            Some(&admin),
            Some(r#"{"user_id":"0193a4b2-0000-7000-8000-0000000000a1","subject":"Hi","body":"x"}"#),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "GET",
            "/api/v1/notifications".into(),
            None,
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            "/api/v1/notifications?status=lost".into(),
            Some(&ann),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/v1/notifications?per_page=0".into(),
            Some(&ann),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/v1/notifications?page=x".into(),
            Some(&ann),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            format!("/api/v1/notifications?type={}", "t".repeat(65)),
            Some(&ann),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/v1/notifications?user_id=bob".into(),
            Some(&ann),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            "GET",
            "/api/v1/notifications/not-a-uuid".into(),
            Some(&ann),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            format!("/api/v1/notifications/{}", uuid::Uuid::now_v7()),
            Some(&ann),
            None,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, uri, token, body, expected) in cases {
        let (status, kind, problem) = call(&app, method, &uri, token, body).await;
        assert_eq!(status, expected, "{method} {uri} {body:?}: {problem}");
        assert_eq!(kind, "application/problem+json", "{method} {uri}");
        assert_eq!(problem["status"], expected.as_u16(), "{problem}");
    }
    assert_eq!(
        store.list(&Filter::default(), 1, 100).await.unwrap().1,
        2,
        "nothing written"
    );

    // Bob's message answers Ann as if it were not there; her own shows.
    let (_, _, bobs) = call(
        &app,
        "GET",
        "/api/v1/notifications?user_id=bob",
        Some(&admin),
        None,
    )
    .await;
    let bobs_id = bobs["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, _, _) = call(
        &app,
        "GET",
        &format!("/api/v1/notifications/{bobs_id}"),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, own) = call(
        &app,
        "GET",
        &format!("/api/v1/notifications/{}", mine.id),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(
        (status, own["recipient"].as_str()),
        (StatusCode::OK, Some("ann@example.org"))
    );
    let (_, _, list) = call(&app, "GET", "/api/v1/notifications", Some(&ann), None).await;
    assert_eq!(list["total"], 1, "{list}");
    let (_, _, all) = call(&app, "GET", "/api/v1/notifications", Some(&admin), None).await;
    assert_eq!(all["total"], 2, "{all}");

    // An admin's message to an address is queued and named by Location.
    let (status, _, queued) = call(
        &app,
        "POST",
        "/api/v1/notifications/send",
        Some(&admin),
        Some(good),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(
        (queued["status"].as_str(), queued["type"].as_str()),
        (Some("queued"), Some("manual"))
    );
    assert_eq!(store.list(&Filter::default(), 1, 100).await.unwrap().1, 3);
}
