//! Ordering's store and saga contract, run on SQLite always and on
//! PostgreSQL and MariaDB when their URLs are set: orders move by
//! compare-and-set only, a checkout confirms paid once with its stock
//! committed or fails with everything undone, an interrupted checkout is
//! settled by the resumer, a cancellation refunds, and another user's order
//! answers as a missing one. The peers (catalog, inventory, basket,
//! payment) are the real services on SQLite in this process; only
//! ordering's store changes backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use emporium_ordering::Orders;
use emporium_ordering::checkout::{OrderError, Peers};
use emporium_ordering::domain::{Checkout, Status};
use emporium_ordering::store::{self, Change, LineRow, OrderRow};
use emporium_platform::auth::Role;
use emporium_platform::bus::Outbox;
use emporium_platform::config::Settings;
use emporium_platform::grpc::{Outgoing, Peer, PeerPolicy, ServiceCredentials};
use emporium_platform::service::Running;
use emporium_testkit::{Backend, TestDatabase, Tokens, on_every_backend};
use reqwest::StatusCode;
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

const CARD: &str = "4242424242424242";

struct Fixture {
    shop: Running,
    /// Ordering's saga on the store under test, beside the served one.
    orders: Orders,
    /// The served peers, as `orders` calls them.
    peers: Peers,
    db: DatabaseConnection,
    tokens: Tokens,
    http: reqwest::Client,
    /// (id, sku) of demo products.
    products: Vec<(Uuid, String)>,
    _guard: TestDatabase,
    _dir: tempfile::TempDir,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let guard = TestDatabase::fresh(backend).await?;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::ephemeral(dir.path());
    let url = guard.url.clone();
    settings.update_section::<emporium_ordering::OrderingSettings>(move |o| {
        o.database_url = Some(url);
        // The tests settle interrupted checkouts themselves.
        o.resume_after_secs = 3600;
    });
    settings.update_section::<emporium_payment::PaymentSettings>(|p| {
        p.provider_timeout_ms = 300;
    });
    // The test's customers and the saga's service tokens are signed by the
    // test's issuer, trusted from a key file beside identity's own keys.
    let tokens = Tokens::new();
    let jwks = dir.path().join("test-jwks.json");
    std::fs::write(&jwks, tokens.issuer.jwks()).unwrap();
    settings.auth.jwks_file = Some(jwks);
    let shop = emporium_testkit::spawn(
        settings.clone(),
        &[
            // Gives the basket, in the same process, its tokens for the catalog.
            emporium_identity::definition(),
            emporium_catalog::definition(),
            emporium_inventory::definition(),
            emporium_basket::definition(),
            emporium_payment::definition(),
            emporium_ordering::definition(),
        ],
    )
    .await;
    let settings = Arc::new(settings);
    for definition in [
        emporium_catalog::definition(),
        emporium_inventory::definition(),
    ] {
        (definition.seed.unwrap())(settings.clone(), shop.services.clone())
            .await
            .unwrap();
    }
    let db = emporium_platform::db::connect(&guard.url).await.unwrap();
    let peer = |name: &'static str| {
        let addr = shop.get(name).unwrap().grpc_addr.unwrap();
        let token = tokens
            .issuer
            .mint_service("ordering", name, std::time::Duration::from_secs(3600))
            .unwrap();
        let credentials = ServiceCredentials::fixed("ordering", &token).unwrap();
        Peer::new(
            name,
            &format!("http://{addr}"),
            PeerPolicy::default(),
            credentials,
        )
        .unwrap()
    };
    let peers = Peers {
        catalog: peer("catalog"),
        inventory: peer("inventory"),
        payment: peer("payment"),
        basket: peer("basket"),
    };
    let orders = Orders::new(db.clone(), Outbox::new(), peers.clone(), 900);
    let http = reqwest::Client::new();
    let products = format!(
        "{}/api/v1/products?per_page=3",
        shop.url("catalog").unwrap()
    );
    let page = get_json(&http, &products, None).await;
    let products = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                Uuid::parse_str(p["id"].as_str().unwrap()).unwrap(),
                p["sku"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    Some(Fixture {
        shop,
        orders,
        peers,
        db,
        tokens,
        http,
        products,
        _guard: guard,
        _dir: dir,
    })
}

impl Fixture {
    fn url(&self, service: &str, path: &str) -> String {
        format!("{}{path}", self.shop.url(service).unwrap())
    }

    /// A checkout through ordering's REST face, as `user`.
    async fn checkout(&self, user: &str, product: Uuid, quantity: i64, card: &str) -> Value {
        let response = self
            .http
            .post(self.url("ordering", "/api/v1/orders"))
            .bearer_auth(self.tokens.user(user, Role::Customer))
            .json(&json!({ "items": [{ "product_id": product, "quantity": quantity }], "card_number": card }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// Puts `quantity` of `product` in `user`'s basket, through the
    /// basket's REST face.
    async fn add_to_basket(&self, user: &str, product: Uuid, quantity: i64) {
        let response = self
            .http
            .post(self.url("basket", &format!("/api/v1/baskets/{user}/items")))
            .bearer_auth(self.tokens.user(user, Role::Customer))
            .json(&json!({ "product_id": product, "quantity": quantity }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// (on hand, reserved) of a SKU over its warehouses.
    async fn stock(&self, sku: &str) -> (i64, i64) {
        let url = self.url("inventory", &format!("/api/v1/inventory/{sku}"));
        let body = get_json(&self.http, &url, None).await;
        (
            body["on_hand"].as_i64().unwrap(),
            body["reserved"].as_i64().unwrap(),
        )
    }

    /// Every payment of an order, whoever's.
    async fn payments(&self, order: &str) -> Vec<Value> {
        let url = self.url("payment", &format!("/api/v1/payments/order/{order}"));
        let page = get_json(&self.http, &url, Some(&self.tokens.admin())).await;
        page["items"].as_array().unwrap().clone()
    }

    /// The types of the events ordering wrote for `order`, oldest first.
    async fn events(&self, order: &str) -> Vec<String> {
        emporium_testkit::outbox_events(&self.db, order).await
    }

    async fn stop(self) {
        self.shop.stop(Duration::from_secs(5)).await;
    }
}

/// The JSON body of `GET url`, with `token` as its bearer when given.
async fn get_json(http: &reqwest::Client, url: &str, token: Option<&str>) -> Value {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

fn row(id: &str, user: &str, step: &str, age_secs: i64) -> OrderRow {
    let at = Utc::now() - chrono::Duration::seconds(age_secs);
    OrderRow {
        id: id.to_owned(),
        user_id: user.to_owned(),
        status: Status::Pending.as_str().into(),
        step: step.into(),
        currency: "USD".into(),
        total_minor: 1000,
        reservation_id: None,
        payment_id: None,
        failure_reason: None,
        created_at: at,
        updated_at: at,
        from_basket: true,
    }
}

fn line(order: &str, product: Uuid, sku: &str, quantity: i64) -> LineRow {
    LineRow {
        order_id: order.to_owned(),
        product_id: product.to_string(),
        sku: sku.to_owned(),
        name: "a product".into(),
        unit_minor: 500,
        quantity,
    }
}

/// The store alone: rows as written, moves by compare-and-set (of eight
/// runners moving one order at once, one wins), pages, the unfinished, and
/// counts by status.
async fn contract_the_store_moves_an_order_by_compare_and_set(backend: Backend) {
    let Some(guard) = TestDatabase::fresh(backend).await else {
        return;
    };
    let db = emporium_platform::db::connect(&guard.url).await.unwrap();
    emporium_platform::db::migrate::<emporium_ordering::migrations::Migrator>(&db)
        .await
        .unwrap();
    let ids: Vec<String> = (0..3).map(|_| Uuid::now_v7().to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        let user = if i == 2 { "bob" } else { "ada" };
        store::insert(
            &db,
            row(id, user, "priced", 100 - i as i64),
            vec![
                line(id, Uuid::from_u128(2), "SKU-B", 2),
                line(id, Uuid::from_u128(1), "SKU-A", 1),
            ],
        )
        .await
        .unwrap();
    }
    let found = store::find(&db, &ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (
            found.user_id.as_str(),
            found.step.as_str(),
            found.total_minor
        ),
        ("ada", "priced", 1000)
    );
    assert!(store::find(&db, "no-such-order").await.unwrap().is_none());
    let skus: Vec<String> = store::lines(&db, &ids[0])
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.sku)
        .collect();
    assert_eq!(skus, ["SKU-A", "SKU-B"]);

    let runners = (0..8).map(|_| {
        let (db, id) = (db.clone(), ids[0].clone());
        tokio::spawn(async move {
            store::advance(
                &db,
                &id,
                ("pending", "priced"),
                ("pending", "reserved"),
                Change {
                    reservation_id: Some(id.clone()),
                    ..Change::default()
                },
            )
            .await
            .unwrap()
        })
    });
    let won = futures::future::join_all(runners)
        .await
        .into_iter()
        .filter(|moved| *moved.as_ref().unwrap())
        .count();
    assert_eq!(won, 1, "one runner moves an order from one state");
    let moved = store::find(&db, &ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (moved.step.as_str(), moved.reservation_id.as_deref()),
        ("reserved", Some(ids[0].as_str()))
    );
    assert!(
        !store::advance(
            &db,
            &ids[0],
            ("pending", "priced"),
            ("failed", "priced"),
            Change::default()
        )
        .await
        .unwrap(),
        "a move from a state the order left is refused"
    );
    assert!(
        store::advance(
            &db,
            &ids[1],
            ("pending", "priced"),
            ("failed", "priced"),
            Change {
                failure_reason: Some("out of stock".into()),
                ..Change::default()
            }
        )
        .await
        .unwrap()
    );

    let (page, total) = store::list(&db, Some("ada"), None, 1, 1).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));
    assert_eq!(page[0].id, ids[1], "newest first");
    let (failed, total) = store::list(&db, None, Some("failed"), 1, 10).await.unwrap();
    assert_eq!((failed.len(), total), (1, 1));
    assert_eq!(failed[0].failure_reason.as_deref(), Some("out of stock"));
    let unfinished: Vec<String> = store::unfinished(&db, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(unfinished, [ids[0].clone(), ids[2].clone()], "oldest first");
    let mut counts = store::count_by_status(&db).await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        [("failed".to_owned(), 1), ("pending".to_owned(), 2)]
    );
}

/// A checkout confirms with one captured payment of its total, its stock
/// committed and its events written; a declined card fails it with the
/// stock released and nothing captured.
async fn contract_a_checkout_confirms_paid_once_or_fails_with_everything_undone(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (product, sku) = f.products[0].clone();
    let (on_hand, reserved) = f.stock(&sku).await;
    assert_eq!(reserved, 0);

    let confirmed = f.checkout("ada", product, 2, CARD).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    let id = confirmed["id"].as_str().unwrap();
    let payments = f.payments(id).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(
        (
            &payments[0]["status"],
            &payments[0]["amount"],
            &payments[0]["id"]
        ),
        (
            &json!("captured"),
            &confirmed["total"],
            &confirmed["payment_id"]
        )
    );
    assert_eq!(f.stock(&sku).await, (on_hand - 2, 0), "committed");
    assert_eq!(f.events(id).await, ["order.created", "order.confirmed"]);
    let stored = store::find(&f.db, id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.step.as_str()),
        ("confirmed", "done")
    );

    let failed = f
        .checkout("ada", product, 2, emporium_payment::provider::DECLINED)
        .await;
    assert_eq!(
        (failed["status"].as_str(), failed["failure_reason"].as_str()),
        (Some("failed"), Some("payment failed: card_declined")),
        "{failed}"
    );
    let id = failed["id"].as_str().unwrap();
    let payments = f.payments(id).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["status"], "failed");
    assert_eq!(f.stock(&sku).await, (on_hand - 2, 0), "released");
    assert_eq!(f.events(id).await, ["order.created", "order.failed"]);
    f.stop().await;
}

/// A checkout a crash left before paying is settled by the resumer without
/// its card: released and failed, nothing paid; one still within the grace
/// is left alone, and run with its card (as its request does) it pays.
async fn contract_an_interrupted_checkout_is_settled_when_resumed(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (product, sku) = f.products[1].clone();
    let (on_hand, _) = f.stock(&sku).await;
    let (id, fresh) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    for (order, age_secs) in [(&id, 60), (&fresh, 0)] {
        let lines = vec![line(order, product, &sku, 1)];
        store::insert(&f.db, row(order, "ada", "priced", age_secs), lines)
            .await
            .unwrap();
    }
    let settled = f.orders.resume(Duration::from_secs(30)).await.unwrap();
    assert_eq!(settled, 1, "only the one left longer than the grace");
    let resumed = store::find(&f.db, &id).await.unwrap().unwrap();
    assert_eq!(
        (resumed.status.as_str(), resumed.failure_reason.as_deref()),
        ("failed", Some("interrupted before payment"))
    );
    assert_eq!(f.stock(&sku).await, (on_hand, 0), "released");
    assert!(f.payments(&id).await.is_empty(), "nothing paid");
    let untouched = store::find(&f.db, &fresh).await.unwrap().unwrap();
    assert_eq!(
        (untouched.status.as_str(), untouched.step.as_str()),
        ("pending", "priced")
    );

    // Run with its card (as the request that started it does), it pays.
    let done = f.orders.run(untouched, Some(CARD)).await.unwrap();
    assert_eq!(
        (done.status.as_str(), done.step.as_str()),
        ("confirmed", "done")
    );
    assert_eq!(f.payments(&fresh).await.len(), 1);
    assert_eq!(f.stock(&sku).await, (on_hand - 1, 0));
    f.stop().await;
}

/// A crash after payment made the order's payment and before the order
/// recorded it: the resumed checkout, which has no card, voids that
/// payment (it was left pending, for its payer to capture later) and one
/// its payer captured meanwhile is refunded; the order fails, stock back.
async fn contract_a_payment_made_before_a_crash_is_voided_when_resumed(backend: Backend) {
    use emporium_proto::payment::v1::payments_client::PaymentsClient;
    use emporium_proto::payment::v1::{CreatePaymentRequest, PaymentRequest};
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (product, sku) = f.products[2].clone();
    let (on_hand, _) = f.stock(&sku).await;
    let addr = f.shop.get("payment").unwrap().grpc_addr.unwrap();
    let token = f
        .tokens
        .issuer
        .mint_service("ordering", "payment", Duration::from_secs(300))
        .unwrap();
    let channel =
        emporium_platform::grpc::channel(&format!("http://{addr}"), Duration::from_secs(5))
            .unwrap();
    let mut payments =
        PaymentsClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            Ok(request)
        });
    let (pending, captured) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    for order in [&pending, &captured] {
        let lines = vec![line(order, product, &sku, 1)];
        store::insert(&f.db, row(order, "ada", "reserved", 60), lines)
            .await
            .unwrap();
        let made = payments
            .create_payment(CreatePaymentRequest {
                order_id: order.clone(),
                user_id: "ada".into(),
                amount: Some(emporium_proto::common::v1::Money {
                    amount_minor: 1000,
                    currency: "USD".into(),
                }),
                method: "card".into(),
                card_number: CARD.into(),
                idempotency_key: format!("order-{order}"),
            })
            .await
            .unwrap()
            .into_inner();
        if order == &captured {
            payments
                .process_payment(PaymentRequest { id: made.id })
                .await
                .unwrap();
        }
    }
    let settled = f.orders.resume(Duration::from_secs(30)).await.unwrap();
    assert_eq!(settled, 2);
    for (order, expected) in [(&pending, "cancelled"), (&captured, "refunded")] {
        let resumed = store::find(&f.db, order).await.unwrap().unwrap();
        assert_eq!(
            (resumed.status.as_str(), resumed.failure_reason.as_deref()),
            ("failed", Some("interrupted before payment"))
        );
        let made = f.payments(order).await;
        assert_eq!(made.len(), 1, "{made:?}");
        assert_eq!(made[0]["status"], expected, "{made:?}");
    }
    assert_eq!(f.stock(&sku).await, (on_hand, 0));
    f.stop().await;
}

/// Ordering's saga on the fixture's store and peers, payment reached
/// through `link` within a 300 ms deadline.
fn with_payment_through(f: &Fixture, link: &emporium_testkit::Link) -> Orders {
    let peer = |name: &'static str, addr: std::net::SocketAddr, deadline: Duration| {
        let token = f
            .tokens
            .issuer
            .mint_service("ordering", name, Duration::from_secs(300))
            .unwrap();
        let credentials = ServiceCredentials::fixed("ordering", &token).unwrap();
        let policy = PeerPolicy {
            deadline,
            ..PeerPolicy::default()
        };
        Peer::new(name, &format!("http://{addr}"), policy, credentials).unwrap()
    };
    let local = |name: &'static str| {
        peer(
            name,
            f.shop.get(name).unwrap().grpc_addr.unwrap(),
            PeerPolicy::default().deadline,
        )
    };
    Orders::new(
        f.db.clone(),
        Outbox::new(),
        Peers {
            catalog: local("catalog"),
            inventory: local("inventory"),
            payment: peer("payment", link.addr, Duration::from_millis(300)),
            basket: local("basket"),
        },
        900,
    )
}

/// A channel to `peer`'s gRPC face as ordering calls it.
fn as_ordering(
    f: &Fixture,
    peer: &str,
) -> tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Outgoing> {
    let addr = f.shop.get(peer).unwrap().grpc_addr.unwrap();
    let token = f
        .tokens
        .issuer
        .mint_service("ordering", peer, Duration::from_secs(300))
        .unwrap();
    let channel =
        emporium_platform::grpc::channel(&format!("http://{addr}"), Duration::from_secs(5))
            .unwrap();
    tonic::service::interceptor::InterceptedService::new(channel, Outgoing::bearer(&token).unwrap())
}

/// An order of one unit of `sku` that got as far as making its payment
/// (stock reserved for `ttl_secs`, the payment pending), as a checkout cut
/// off there leaves it.
async fn order_at_paying(f: &Fixture, product: Uuid, sku: &str, ttl_secs: i64) -> String {
    use emporium_proto::inventory::v1::inventory_client::InventoryClient;
    use emporium_proto::inventory::v1::{Line, ReserveRequest};
    use emporium_proto::payment::v1::CreatePaymentRequest;
    use emporium_proto::payment::v1::payments_client::PaymentsClient;
    let channel = |peer: &str| as_ordering(f, peer);
    // The checkout got as far as making its payment: stock reserved, the
    // payment pending.
    let id = Uuid::now_v7().to_string();
    store::insert(
        &f.db,
        row(&id, "ada", "reserved", 0),
        vec![line(&id, product, sku, 1)],
    )
    .await
    .unwrap();
    InventoryClient::new(channel("inventory"))
        .reserve(ReserveRequest {
            reservation_id: id.clone(),
            lines: vec![Line {
                sku: sku.to_owned(),
                quantity: 1,
            }],
            ttl_secs,
            reference: format!("order {id}"),
        })
        .await
        .unwrap();
    let payment = PaymentsClient::new(channel("payment"))
        .create_payment(CreatePaymentRequest {
            order_id: id.clone(),
            user_id: "ada".into(),
            amount: Some(emporium_proto::common::v1::Money {
                amount_minor: 500,
                currency: "USD".into(),
            }),
            method: "card".into(),
            card_number: CARD.into(),
            idempotency_key: format!("order-{id}"),
        })
        .await
        .unwrap()
        .into_inner();
    let change = Change {
        reservation_id: Some(id.clone()),
        payment_id: Some(payment.id.clone()),
        ..Change::default()
    };
    assert!(
        store::advance(
            &f.db,
            &id,
            ("pending", "reserved"),
            ("pending", "paying"),
            change
        )
        .await
        .unwrap()
    );
    id
}

/// Finding (chaos suite): a payment answering after ordering's deadline
/// (slow, or cut off) had its order failed and its stock released while
/// the late request went on to capture it: the customer charged for a
/// failed order. An order whose payment cannot be known is now left
/// pending, and the resumer settles it once payment answers: confirmed,
/// paid once, its stock committed.
async fn contract_a_payment_answering_late_is_settled_not_lost(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (product, sku) = f.products[0].clone();
    let (on_hand, _) = f.stock(&sku).await;
    let id = order_at_paying(&f, product, &sku, 900).await;
    // Payment answers ordering only after its deadline.
    let link = emporium_testkit::Link::to(f.shop.get("payment").unwrap().grpc_addr.unwrap()).await;
    link.delay(Duration::from_millis(600));
    let orders = with_payment_through(&f, &link);
    let stored = store::find(&f.db, &id).await.unwrap().unwrap();
    let outcome = orders.run(stored, None).await;
    assert!(
        matches!(outcome, Err(OrderError::Peer(_))),
        "not settled while its payment is unknown: {outcome:?}"
    );
    let waiting = store::find(&f.db, &id).await.unwrap().unwrap();
    assert_eq!(
        (waiting.status.as_str(), waiting.step.as_str()),
        ("pending", "paying")
    );
    assert_eq!(f.stock(&sku).await, (on_hand, 1), "still held");
    // The late request took the payment; once payment answers in time,
    // the resumer confirms the order.
    let taken = emporium_testkit::eventually(Duration::from_secs(10), || async {
        let made = f.payments(&id).await;
        (made[0]["status"] == "captured").then_some(())
    })
    .await;
    assert!(taken.is_some(), "{:?}", f.payments(&id).await);
    assert_eq!(f.orders.resume(Duration::ZERO).await.unwrap(), 1);
    let settled = store::find(&f.db, &id).await.unwrap().unwrap();
    assert_eq!(
        (settled.status.as_str(), settled.step.as_str()),
        ("confirmed", "done")
    );
    let made = f.payments(&id).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["status"], "captured");
    assert_eq!(f.stock(&sku).await, (on_hand - 1, 0), "committed");
    f.stop().await;
}

/// Finding (chaos suite): two runners of one checkout (both replicas'
/// resumers, or a resumer and the slow request) both saw its payment
/// captured; the one that came second found the order confirmed by the
/// first and refunded the payment, taking it for a failed order: the
/// customer kept the goods and the money. Only an order failed meanwhile
/// gives its money back.
async fn contract_a_second_runner_does_not_refund_a_confirmed_order(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (product, sku) = f.products[1].clone();
    let (on_hand, _) = f.stock(&sku).await;
    let id = order_at_paying(&f, product, &sku, 900).await;
    let stale = store::find(&f.db, &id).await.unwrap().unwrap();
    let first = f.orders.run(stale.clone(), None).await.unwrap();
    assert_eq!(first.status, "confirmed");
    let second = f.orders.run(stale, None).await.unwrap();
    assert_eq!(second.status, "confirmed");
    let made = f.payments(&id).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["status"], "captured", "{made:?}");
    assert_eq!(f.stock(&sku).await, (on_hand - 1, 0));
    f.stop().await;
}

/// Finding (chaos suite, long run): a checkout whose reservation expired
/// before it could be committed (payment and inventory killed on its way)
/// was failed though its refund could not be made, payment being away: a
/// failed order, paid. The refund is now made before the order fails, and
/// the resumer asks for it until it is.
async fn contract_an_expired_reservation_is_refunded_before_the_order_fails(backend: Backend) {
    use emporium_proto::payment::v1::PaymentRequest;
    use emporium_proto::payment::v1::payments_client::PaymentsClient;
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (product, sku) = f.products[2].clone();
    let (on_hand, _) = f.stock(&sku).await;
    let id = order_at_paying(&f, product, &sku, 1).await;
    let row = store::find(&f.db, &id).await.unwrap().unwrap();
    let payment = row.payment_id.clone().unwrap();
    PaymentsClient::new(as_ordering(&f, "payment"))
        .process_payment(PaymentRequest {
            id: payment.clone(),
        })
        .await
        .unwrap();
    assert!(
        store::advance(
            &f.db,
            &id,
            ("pending", "paying"),
            ("pending", "paid"),
            Change::default()
        )
        .await
        .unwrap()
    );
    let expired = emporium_testkit::eventually(Duration::from_secs(10), || async {
        (f.stock(&sku).await == (on_hand, 0)).then_some(())
    })
    .await;
    assert!(expired.is_some(), "the reservation expired");
    // Payment away when the money should go back.
    let link = emporium_testkit::Link::to(f.shop.get("payment").unwrap().grpc_addr.unwrap()).await;
    link.cut();
    let away = with_payment_through(&f, &link);
    let paid = store::find(&f.db, &id).await.unwrap().unwrap();
    let outcome = away.run(paid, None).await;
    assert!(matches!(outcome, Err(OrderError::Peer(_))), "{outcome:?}");
    let waiting = store::find(&f.db, &id).await.unwrap().unwrap();
    assert_eq!(
        (waiting.status.as_str(), waiting.step.as_str()),
        ("pending", "paid")
    );
    assert_eq!(f.payments(&id).await[0]["status"], "captured");
    // Payment back: the resumer refunds, then fails the order.
    assert_eq!(f.orders.resume(Duration::ZERO).await.unwrap(), 1);
    let settled = store::find(&f.db, &id).await.unwrap().unwrap();
    assert_eq!(settled.status, "failed");
    assert!(
        settled
            .failure_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("stock not committed")),
        "{settled:?}"
    );
    assert_eq!(f.payments(&id).await[0]["status"], "refunded");
    assert_eq!(f.stock(&sku).await, (on_hand, 0));
    f.stop().await;
}

/// Finding (chaos suite, long run): a resumer that found a checkout left
/// at `reserved` while its request was still paying refunded the payment
/// that request went on to record and confirm: a confirmed order with its
/// money given back. The resumer now claims the order before it gives
/// anything back, and leaves alone one that moved on.
async fn contract_a_resumer_behind_a_live_checkout_leaves_its_payment(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (product, sku) = f.products[0].clone();
    let (on_hand, _) = f.stock(&sku).await;
    let confirmed = f.checkout("ada", product, 1, CARD).await;
    let id = confirmed["id"].as_str().unwrap().to_owned();
    // The resumer's view, read while the request was still paying.
    let mut stale = store::find(&f.db, &id).await.unwrap().unwrap();
    stale.status = "pending".into();
    stale.step = "reserved".into();
    stale.payment_id = None;
    let after = f.orders.run(stale, None).await.unwrap();
    assert_eq!(
        (after.status.as_str(), after.step.as_str()),
        ("confirmed", "done")
    );
    let made = f.payments(&id).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["status"], "captured", "{made:?}");
    assert_eq!(f.stock(&sku).await, (on_hand - 1, 0), "still committed");
    f.stop().await;
}

/// Finding (chaos suite): a cancellation cut off after payment refunded
/// (ordering killed, or payment's answer late) left the order confirmed
/// with its money given back. The intent is now written first and the
/// resumer finishes it: cancelled, refunded once, `order.cancelled`
/// written; the admin cannot ship it meanwhile.
async fn contract_a_cancellation_cut_off_is_finished_by_the_resumer(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (product, _) = f.products[1].clone();
    let confirmed = f.checkout("ada", product, 1, CARD).await;
    let id = Uuid::parse_str(confirmed["id"].as_str().unwrap()).unwrap();
    let link = emporium_testkit::Link::to(f.shop.get("payment").unwrap().grpc_addr.unwrap()).await;
    link.delay(Duration::from_millis(600));
    let late = with_payment_through(&f, &link);
    let outcome = late.cancel(id, Some("ada")).await;
    assert!(matches!(outcome, Err(OrderError::Peer(_))), "{outcome:?}");
    // The late refund lands; the order is not shipped meanwhile.
    let refunded = emporium_testkit::eventually(Duration::from_secs(10), || async {
        (f.payments(&id.to_string()).await[0]["status"] == "refunded").then_some(())
    })
    .await;
    assert!(
        refunded.is_some(),
        "{:?}",
        f.payments(&id.to_string()).await
    );
    assert!(matches!(
        f.orders.fulfil(id, Status::Processing).await,
        Err(OrderError::State(_))
    ));
    assert_eq!(f.orders.resume(Duration::ZERO).await.unwrap(), 1);
    let settled = store::find(&f.db, &id.to_string()).await.unwrap().unwrap();
    assert_eq!(
        (settled.status.as_str(), settled.step.as_str()),
        ("cancelled", "done")
    );
    let payments = f.payments(&id.to_string()).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(
        (&payments[0]["status"], &payments[0]["refunded"]),
        (&json!("refunded"), &confirmed["total"])
    );
    assert_eq!(
        f.events(&id.to_string()).await,
        ["order.created", "order.confirmed", "order.cancelled"]
    );
    f.stop().await;
}

/// The buyer cancels a confirmed order: refunded, `order.cancelled`
/// written, cancelled once. Another user reading or cancelling it is
/// answered as for an order that does not exist.
async fn contract_a_cancellation_refunds_and_another_user_sees_no_order(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (product, _) = f.products[2].clone();
    let confirmed = f.checkout("ada", product, 1, CARD).await;
    let id = Uuid::parse_str(confirmed["id"].as_str().unwrap()).unwrap();
    for outcome in [
        f.orders.get(id, Some("bob")).await.map(|_| ()),
        f.orders.cancel(id, Some("bob")).await.map(|_| ()),
        f.orders.get(Uuid::now_v7(), Some("bob")).await.map(|_| ()),
    ] {
        assert!(matches!(outcome, Err(OrderError::NotFound)), "{outcome:?}");
    }
    let cancelled = f.orders.cancel(id, Some("ada")).await.unwrap();
    assert_eq!(cancelled.status, "cancelled");
    assert!(matches!(
        f.orders.cancel(id, Some("ada")).await,
        Err(OrderError::State(_))
    ));
    let payments = f.payments(&id.to_string()).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "refunded");
    assert_eq!(
        f.events(&id.to_string()).await,
        ["order.created", "order.confirmed", "order.cancelled"]
    );
    f.stop().await;
}

on_every_backend!(
    contract_the_store_moves_an_order_by_compare_and_set,
    contract_a_checkout_confirms_paid_once_or_fails_with_everything_undone,
    contract_an_interrupted_checkout_is_settled_when_resumed,
    contract_a_payment_made_before_a_crash_is_voided_when_resumed,
    contract_a_payment_answering_late_is_settled_not_lost,
    contract_a_second_runner_does_not_refund_a_confirmed_order,
    contract_an_expired_reservation_is_refunded_before_the_order_fails,
    contract_a_resumer_behind_a_live_checkout_leaves_its_payment,
    contract_a_cancellation_cut_off_is_finished_by_the_resumer,
    contract_a_cancellation_refunds_and_another_user_sees_no_order,
);

/// Finding: another user's order answered 403 and a missing one 404, so
/// order ids could be probed. Through ordering's REST face both answer the
/// same 404, reading and cancelling, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_order_answers_404_like_a_missing_one() {
    let f = fixture(Backend::Sqlite).await.unwrap();
    let (product, _) = f.products[0].clone();
    let confirmed = f.checkout("ada", product, 1, CARD).await;
    let id = confirmed["id"].as_str().unwrap();
    let bob = f.tokens.user("bob", Role::Customer);
    let missing = Uuid::now_v7();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let mut answers = vec![];
        for order in [id.to_owned(), missing.to_string()] {
            let response = f
                .http
                .request(
                    method.clone(),
                    f.url("ordering", &format!("/api/v1/orders/{order}")),
                )
                .bearer_auth(&bob)
                .send()
                .await
                .unwrap();
            let status = response.status();
            answers.push((status, response.json::<Value>().await.unwrap()));
        }
        assert_eq!(answers[0].0, StatusCode::NOT_FOUND, "{method}: {answers:?}");
        assert_eq!(answers[0], answers[1], "{method}");
    }
    let still = f
        .orders
        .get(Uuid::parse_str(id).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(still.status, "confirmed", "bob's tries changed nothing");
    f.stop().await;
}

/// Finding: the basket gave up a confirmed order's lines only when
/// `order.confirmed` reached it, so a checkout soon after another bought
/// them again (the customer paid twice) and the late event then took out
/// a line added since. The checkout settles the basket before it answers:
/// with ordering's events never delivered at all, the next checkout finds
/// only what was added after the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_takes_its_lines_out_of_the_basket_before_it_answers() {
    let f = fixture(Backend::Sqlite).await.unwrap();
    // Ordering on a store of its own whose outbox nothing relays.
    let silent = TestDatabase::fresh(Backend::Sqlite).await.unwrap();
    let db = emporium_platform::db::connect(&silent.url).await.unwrap();
    emporium_platform::db::migrate::<emporium_ordering::migrations::Migrator>(&db)
        .await
        .unwrap();
    let orders = Orders::new(db, Outbox::new(), f.peers.clone(), 900);
    let (first, _) = f.products[0].clone();
    let (second, _) = f.products[1].clone();
    let basket = Checkout {
        items: None,
        card_number: CARD.into(),
    };
    let bought = |order: &emporium_ordering::checkout::OrderView| {
        order
            .lines
            .iter()
            .map(|l| (l.product_id.clone(), l.quantity))
            .collect::<Vec<_>>()
    };

    f.add_to_basket("cleo", first, 1).await;
    let one = orders.checkout("cleo", &basket).await.unwrap();
    assert_eq!(one.status, "confirmed", "{one:?}");
    assert_eq!(bought(&one), [(first.to_string(), 1)]);
    let again = orders.checkout("cleo", &basket).await;
    assert!(
        matches!(&again, Err(OrderError::Invalid(e)) if e[0].message == "the basket is empty"),
        "{again:?}"
    );

    f.add_to_basket("cleo", first, 1).await;
    f.add_to_basket("cleo", second, 2).await;
    let two = orders.checkout("cleo", &basket).await.unwrap();
    assert_eq!(two.status, "confirmed", "{two:?}");
    assert_eq!(
        bought(&two),
        [(first.to_string(), 1), (second.to_string(), 2)],
        "the first order's unit is not bought twice"
    );
    // A declined card leaves the basket as it was, to pay again.
    f.add_to_basket("cleo", second, 1).await;
    let declined = Checkout {
        items: None,
        card_number: emporium_payment::provider::DECLINED.into(),
    };
    let failed = orders.checkout("cleo", &declined).await.unwrap();
    assert_eq!(failed.status, "failed", "{failed:?}");
    let paid = orders.checkout("cleo", &basket).await.unwrap();
    assert_eq!(bought(&paid), [(second.to_string(), 1)]);
    f.stop().await;
}
