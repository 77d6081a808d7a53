//! Payment's store contract, on SQLite always and on PostgreSQL and MariaDB
//! when their URLs are set: the state machine against the mock processor,
//! nothing taken twice under concurrency, refunds bounded by the capture,
//! the mock's ledger surviving a restart, and idempotency keys (also on
//! Redis).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use emporium_payment::Payments;
use emporium_payment::domain::{PaymentDraft, PaymentInput, Refusal};
use emporium_payment::payments::{PaymentError, Policy};
use emporium_payment::provider::{self, MockBehaviour, MockProvider, Provider};
use emporium_platform::bus::Outbox;
use emporium_platform::idempotency::{Claim, IdempotencyStore, Recorded, SqlKeys};
use emporium_platform::money::{Money, MoneyJson};
use emporium_testkit::{Backend, TestDatabase, on_every_backend};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use uuid::Uuid;

mod http;

struct Fixture {
    payments: Payments,
    mock: MockProvider,
    db: DatabaseConnection,
    _guard: TestDatabase,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let guard = TestDatabase::fresh(backend).await?;
    let db = emporium_platform::db::connect(&guard.url).await.unwrap();
    emporium_platform::db::migrate::<emporium_payment::migrations::Migrator>(&db)
        .await
        .unwrap();
    let mock = MockProvider::new(MockBehaviour::default(), db.clone());
    let payments = Payments::new(
        db.clone(),
        Outbox::new(),
        Arc::new(mock.clone()),
        Policy {
            provider_timeout: Duration::from_millis(300),
            payment_ttl: Duration::from_secs(600),
        },
    );
    Some(Fixture {
        payments,
        mock,
        db,
        _guard: guard,
    })
}

fn draft(card: &str, amount: &str) -> PaymentDraft {
    PaymentDraft::parse(&PaymentInput {
        order_id: Some("order-1".into()),
        amount: Some(MoneyJson {
            amount: amount.into(),
            currency: "USD".into(),
        }),
        card_number: Some(card.into()),
        ..PaymentInput::default()
    })
    .unwrap()
}

const GOOD: &str = "4242424242424242";

impl Fixture {
    async fn pay(&self, card: &str, amount: &str) -> Uuid {
        let view = self
            .payments
            .create(&draft(card, amount), "ada")
            .await
            .unwrap();
        Uuid::parse_str(&view.id).unwrap()
    }

    async fn events(&self, kind: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM outbox WHERE event_type = '{kind}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    /// The types of the events written for payment `id`, in order.
    async fn outbox_of(&self, id: Uuid) -> Vec<String> {
        emporium_testkit::outbox_events(&self.db, &id.to_string()).await
    }
}

fn usd(amount: &str) -> Money {
    Money::parse(amount, "USD").unwrap()
}

async fn contract_a_payment_is_captured_then_refunded_within_bounds(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let id = f.pay(GOOD, "100.00").await;
    let pending = f.payments.get(id).await.unwrap();
    assert_eq!(
        (pending.status.as_str(), pending.card_last4.as_str()),
        ("pending", "4242")
    );
    assert!(
        !pending.card_token.contains("424242424242"),
        "the number is not kept"
    );
    let captured = f.payments.process(id).await.unwrap();
    assert_eq!(captured.status, "captured");
    assert!(captured.provider_id.is_some() && captured.processed_at.is_some());
    assert_eq!(f.mock.taken().await.unwrap(), 10_000);
    assert!(matches!(
        f.payments.process(id).await,
        Err(PaymentError::Refused(Refusal::Transition { .. }))
    ));
    assert!(matches!(
        f.payments.cancel(id).await,
        Err(PaymentError::Refused(Refusal::Transition { .. }))
    ));
    let part = f.payments.refund(id, Some(usd("30.00"))).await.unwrap();
    assert_eq!(
        (part.status.as_str(), part.refunded.amount.as_str()),
        ("partially_refunded", "30.00")
    );
    assert!(matches!(
        f.payments.refund(id, Some(usd("70.01"))).await,
        Err(PaymentError::Refused(Refusal::TooMuch { left: 7000 }))
    ));
    assert!(matches!(
        f.payments
            .refund(id, Some(Money::parse("1.00", "EUR").unwrap()))
            .await,
        Err(PaymentError::Currency(..))
    ));
    let rest = f.payments.refund(id, None).await.unwrap();
    assert_eq!(
        (rest.status.as_str(), rest.refunded.amount.as_str()),
        ("refunded", "100.00")
    );
    assert_eq!(f.mock.taken().await.unwrap(), 0);
    assert!(f.payments.refund(id, None).await.is_err());
    assert_eq!(f.events("payment.completed").await, 1);
    assert_eq!(f.events("payment.refunded").await, 2);
}

async fn contract_declines_errors_and_timeouts_fail_without_taking(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    for (card, reason) in [
        (provider::DECLINED, "card_declined"),
        (provider::INSUFFICIENT_FUNDS, "insufficient_funds"),
        (
            provider::PROCESSOR_ERROR,
            "processor_unavailable: processing_error",
        ),
        (provider::HANGS, "processor_unavailable: timed out"),
    ] {
        let id = f.pay(card, "12.00").await;
        let failed = f.payments.process(id).await.unwrap();
        assert_eq!(failed.status, "failed", "{card}");
        assert_eq!(failed.failure_reason.as_deref(), Some(reason));
        assert!(matches!(
            f.payments.process(id).await,
            Err(PaymentError::Refused(_))
        ));
    }
    // The processor down for every call: the payment fails, nothing taken.
    f.mock.set_behaviour(MockBehaviour {
        failure_rate: 1.0,
        latency_ms: 0,
    });
    let id = f.pay(GOOD, "5.00").await;
    assert_eq!(f.payments.process(id).await.unwrap().status, "failed");
    assert_eq!(f.mock.taken().await.unwrap(), 0);
    assert_eq!(f.events("payment.failed").await, 5);
    assert_eq!(f.events("payment.completed").await, 0);
}

async fn contract_concurrent_processing_takes_the_money_once(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.mock.set_behaviour(MockBehaviour {
        failure_rate: 0.0,
        latency_ms: 5,
    });
    let id = f.pay(GOOD, "40.00").await;
    let calls = (0..8).map(|_| {
        let payments = f.payments.clone();
        tokio::spawn(async move { payments.process(id).await })
    });
    let mut answers = vec![];
    for outcome in futures::future::join_all(calls).await {
        match outcome.unwrap() {
            Ok(view) => answers.push(view),
            Err(PaymentError::Refused(_) | PaymentError::Raced) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    // The mock takes a payment id once whatever it is asked, so its counts
    // prove nothing of the service: the service's own record and events
    // must say one capture. Every caller that got an answer was shown that
    // one capture, moved once (one `processed_at`, one authorization).
    let row = f.payments.get(id).await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.amount_minor, row.refunded_minor),
        ("captured", 4000, 0)
    );
    assert!(!answers.is_empty());
    for answer in &answers {
        assert_eq!(
            (
                answer.status.as_str(),
                answer.processed_at,
                &answer.provider_id
            ),
            ("captured", row.processed_at, &row.provider_id),
        );
    }
    assert_eq!(f.events("payment.completed").await, 1);
    assert_eq!(f.events("payment.failed").await, 0);
    assert_eq!(f.outbox_of(id).await, vec!["payment.completed".to_owned()]);

    // Ten refunds of 15.00 at once against 40.00: two land, never more.
    let refunds = (0..10).map(|_| {
        let payments = f.payments.clone();
        tokio::spawn(async move { payments.refund(id, Some(usd("15.00"))).await })
    });
    let landed = futures::future::join_all(refunds)
        .await
        .into_iter()
        .filter(|o| matches!(o, Ok(Ok(_))))
        .count();
    let row = f.payments.get(id).await.unwrap();
    assert!((1..=2).contains(&landed), "{landed}");
    assert_eq!(row.refunded_minor, 1500 * landed as i64);
    assert_eq!(f.events("payment.refunded").await, landed as i64);
    assert_eq!(f.mock.taken().await.unwrap(), 4000 - row.refunded_minor);
}

async fn contract_cancellation_and_expiry(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let id = f.pay(GOOD, "9.99").await;
    assert_eq!(f.payments.cancel(id).await.unwrap().status, "cancelled");
    assert!(f.payments.cancel(id).await.is_err());
    assert!(f.payments.process(id).await.is_err());
    assert_eq!(f.mock.taken().await.unwrap(), 0);
    assert!(matches!(
        f.payments.get(Uuid::now_v7()).await,
        Err(PaymentError::NotFound)
    ));
    let short = Payments::new(
        f.db.clone(),
        Outbox::new(),
        Arc::new(f.mock.clone()),
        Policy {
            provider_timeout: Duration::from_millis(300),
            payment_ttl: Duration::from_millis(50),
        },
    );
    let late = short.create(&draft(GOOD, "1.00"), "ada").await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let late = Uuid::parse_str(&late.id).unwrap();
    assert!(matches!(
        short.process(late).await,
        Err(PaymentError::Expired)
    ));
    assert_eq!(short.get(late).await.unwrap().status, "cancelled");
}

/// A payment authorized by a processor that then went away (the process
/// ended after payment recorded the authorization): a new mock over the
/// same store captures it, or voids it, as a real processor would.
async fn contract_a_restarted_processor_captures_and_voids_what_it_authorized(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let mut authorized = vec![];
    for amount in ["31.00", "12.50"] {
        let id = f.pay(GOOD, amount).await;
        let row = f.payments.get(id).await.unwrap();
        let authorization = f
            .mock
            .authorize(id, usd(amount), &row.card_token)
            .await
            .unwrap();
        let change = emporium_payment::store::Change {
            provider_id: Some(authorization),
            ..Default::default()
        };
        assert!(
            emporium_payment::store::advance(&f.db, &row.id, "pending", "authorized", change)
                .await
                .unwrap()
        );
        authorized.push(id);
    }
    // The process ends; another starts on the same store.
    let restarted = MockProvider::new(MockBehaviour::default(), f.db.clone());
    let payments = Payments::new(
        f.db.clone(),
        Outbox::new(),
        Arc::new(restarted.clone()),
        Policy {
            provider_timeout: Duration::from_millis(300),
            payment_ttl: Duration::from_secs(600),
        },
    );
    let captured = payments.process(authorized[0]).await.unwrap();
    assert_eq!(
        (captured.status.as_str(), captured.failure_reason),
        ("captured", None)
    );
    assert_eq!(
        payments.cancel(authorized[1]).await.unwrap().status,
        "cancelled"
    );
    assert_eq!(restarted.taken().await.unwrap(), 3100);
    let ledger = provider::ledger::rows(&f.db).await.unwrap();
    assert_eq!(ledger.len(), 2);
    assert!(ledger.iter().all(|r| !r.open()), "{ledger:?}");
    let voided = ledger
        .iter()
        .find(|r| r.payment_id == authorized[1].to_string())
        .unwrap();
    assert!(voided.voided_at.is_some() && voided.captured_minor == 0);
    // A refund after the restart is bounded by what was captured before.
    assert_eq!(
        payments.refund(authorized[0], None).await.unwrap().status,
        "refunded"
    );
    assert_eq!(restarted.taken().await.unwrap(), 0);
}

/// Every processor call asked twice, at once from two processes on one
/// store, moves money once; a refund beyond the capture, a capture of a
/// voided authorization and a void of a capture are refused.
async fn contract_processor_calls_asked_twice_move_money_once(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let other = MockProvider::new(MockBehaviour::default(), f.db.clone());
    let token = f.mock.tokenize(GOOD);
    let (a, b) = (f.mock.clone(), other);
    let payment = Uuid::now_v7();
    let (first, second) = tokio::join!(
        a.authorize(payment, usd("20.00"), &token),
        b.authorize(payment, usd("20.00"), &token)
    );
    assert_eq!(first.clone().unwrap(), second.unwrap());
    let authorization = first.unwrap();
    let (one, two) = tokio::join!(
        a.capture(payment, &authorization),
        b.capture(payment, &authorization)
    );
    assert_eq!((one, two), (Ok(()), Ok(())));
    let refund = Uuid::now_v7();
    let (one, two) = tokio::join!(
        a.refund(payment, refund, usd("5.00")),
        b.refund(payment, refund, usd("5.00"))
    );
    assert_eq!((one, two), (Ok(()), Ok(())));
    assert_eq!(f.mock.taken().await.unwrap(), 1500);
    let effective = |operation: &str| {
        a.calls()
            .into_iter()
            .chain(b.calls())
            .filter(|c| c.operation == operation && c.effective)
            .count()
    };
    assert_eq!(
        (
            effective("authorize"),
            effective("capture"),
            effective("refund")
        ),
        (1, 1, 1)
    );
    assert_eq!(
        a.refund(payment, Uuid::now_v7(), usd("15.01")).await,
        Err(provider::ProviderError::Declined(
            "refund_exceeds_capture".into()
        ))
    );
    assert_eq!(
        b.void(payment, &authorization).await,
        Err(provider::ProviderError::Declined("already_captured".into()))
    );
    // A void asked twice; then the capture is refused.
    let voided = Uuid::now_v7();
    let held = a.authorize(voided, usd("7.00"), &token).await.unwrap();
    let (one, two) = tokio::join!(a.void(voided, &held), b.void(voided, &held));
    assert_eq!((one, two), (Ok(()), Ok(())));
    assert_eq!(effective("void"), 1);
    assert_eq!(
        b.capture(voided, &held).await,
        Err(provider::ProviderError::Declined(
            "authorization_not_capturable".into()
        ))
    );
    // A void that came before its authorization (whose answer was lost):
    // the authorization is born void and cannot be captured.
    let ahead = Uuid::now_v7();
    a.void(ahead, "").await.unwrap();
    let late = b.authorize(ahead, usd("3.00"), &token).await.unwrap();
    assert!(a.capture(ahead, &late).await.is_err());
    assert_eq!(
        a.capture(Uuid::now_v7(), "auth_x").await,
        Err(provider::ProviderError::Declined("no_authorization".into()))
    );
    let ledger = provider::ledger::rows(&f.db).await.unwrap();
    assert!(ledger.iter().all(|r| !r.open()), "{ledger:?}");
    assert_eq!(f.mock.taken().await.unwrap(), 1500);
}

/// Finding (chaos suite): a payment cancelled while pending kept an
/// authorization its processing had made before it was cut off (the
/// caller's deadline, a killed process), and one the processor had
/// captured could not be cancelled and stayed `authorized`. Now a cancel
/// voids at the processor whatever the record says, ahead of an
/// authorization still on its way, and records a capture it finds.
async fn contract_a_cancel_leaves_nothing_held_at_the_processor(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let token = f.mock.tokenize(GOOD);
    // Authorized, its answer lost: the record says pending.
    let lost = f.pay(GOOD, "8.00").await;
    f.mock.authorize(lost, usd("8.00"), &token).await.unwrap();
    assert_eq!(f.payments.cancel(lost).await.unwrap().status, "cancelled");
    // Cancelled first; the authorization arrives after.
    let late = f.pay(GOOD, "9.00").await;
    assert_eq!(f.payments.cancel(late).await.unwrap().status, "cancelled");
    let held = f.mock.authorize(late, usd("9.00"), &token).await.unwrap();
    assert!(f.mock.capture(late, &held).await.is_err());
    let ledger = provider::ledger::rows(&f.db).await.unwrap();
    assert!(ledger.iter().all(|r| !r.open()), "{ledger:?}");
    // Captured at the processor, its answer lost: the record says
    // authorized. The cancel is refused and the capture recorded.
    let taken = f.pay(GOOD, "10.00").await;
    let row = f.payments.get(taken).await.unwrap();
    let authorization = f.mock.authorize(taken, usd("10.00"), &token).await.unwrap();
    let change = emporium_payment::store::Change {
        provider_id: Some(authorization.clone()),
        ..Default::default()
    };
    assert!(
        emporium_payment::store::advance(&f.db, &row.id, "pending", "authorized", change)
            .await
            .unwrap()
    );
    f.mock.capture(taken, &authorization).await.unwrap();
    assert!(matches!(
        f.payments.cancel(taken).await,
        Err(PaymentError::Refused(Refusal::Transition { .. }))
    ));
    assert_eq!(f.payments.get(taken).await.unwrap().status, "captured");
    assert_eq!(
        f.outbox_of(taken).await,
        vec!["payment.completed".to_owned()]
    );
    assert_eq!(f.mock.taken().await.unwrap(), 1000);
}

/// Finding (chaos suite): a refund whose caller went away half-way (its
/// deadline passed, its process killed) left the payment recorded as
/// refunded while the processor had given nothing back: the request was
/// dropped between the record and the processor. A change of money now
/// runs to its end whoever stops waiting for it.
async fn contract_a_caller_gone_midway_leaves_record_and_processor_agreeing(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let id = f.pay(GOOD, "25.00").await;
    assert_eq!(f.payments.process(id).await.unwrap().status, "captured");
    f.mock.set_behaviour(MockBehaviour {
        failure_rate: 0.0,
        latency_ms: 200,
    });
    let gone = tokio::time::timeout(Duration::from_millis(50), f.payments.refund(id, None)).await;
    assert!(gone.is_err(), "the caller stopped waiting");
    let agreed = emporium_testkit::eventually(Duration::from_secs(5), || async {
        let row = f.payments.get(id).await.unwrap();
        let taken = f.mock.taken().await.unwrap();
        (row.status == "refunded" && taken == 0).then_some(())
    })
    .await;
    let row = f.payments.get(id).await.unwrap();
    assert!(
        agreed.is_some(),
        "record {} refunded {}, processor keeps {}",
        row.status,
        row.refunded_minor,
        f.mock.taken().await.unwrap()
    );
}

/// The mock processor, whose refunds are made but, while `lose` is set,
/// answered as if it had not answered: what a process killed between the
/// processor and its record sees.
struct LostAnswers {
    mock: MockProvider,
    lose: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Provider for LostAnswers {
    fn name(&self) -> &'static str {
        self.mock.name()
    }
    fn tokenize(&self, digits: &str) -> String {
        self.mock.tokenize(digits)
    }
    async fn authorize(
        &self,
        payment: Uuid,
        amount: Money,
        token: &str,
    ) -> Result<String, provider::ProviderError> {
        self.mock.authorize(payment, amount, token).await
    }
    async fn capture(
        &self,
        payment: Uuid,
        authorization: &str,
    ) -> Result<(), provider::ProviderError> {
        self.mock.capture(payment, authorization).await
    }
    async fn void(
        &self,
        payment: Uuid,
        authorization: &str,
    ) -> Result<(), provider::ProviderError> {
        self.mock.void(payment, authorization).await
    }
    async fn refund(
        &self,
        payment: Uuid,
        refund: Uuid,
        amount: Money,
    ) -> Result<(), provider::ProviderError> {
        self.mock.refund(payment, refund, amount).await?;
        if self.lose.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(provider::ProviderError::Unavailable("answer lost".into()));
        }
        Ok(())
    }
}

/// Finding (chaos suite): payment recorded a refund before asking the
/// processor, so a payment killed in between kept a record of money given
/// back that the processor still held. A refund is now written as asked,
/// under the id the processor dedupes on, and recorded as made once the
/// processor says so: one whose answer was lost stays captured, and the
/// next refund asks again under the same id and records it, with the
/// processor giving back once.
async fn contract_a_refund_whose_answer_was_lost_is_made_once_when_asked_again(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let processor = Arc::new(LostAnswers {
        mock: f.mock.clone(),
        lose: true.into(),
    });
    let payments = Payments::new(
        f.db.clone(),
        Outbox::new(),
        processor.clone(),
        Policy {
            provider_timeout: Duration::from_millis(300),
            payment_ttl: Duration::from_secs(600),
        },
    );
    let id = f.pay(GOOD, "25.00").await;
    assert_eq!(payments.process(id).await.unwrap().status, "captured");
    let lose = |on: bool| {
        processor
            .lose
            .store(on, std::sync::atomic::Ordering::SeqCst)
    };

    // A part, lost, then asked again: the request finishes it, says so,
    // and makes none of its own (a retry and another refund of the same
    // amount look alike).
    let lost = payments.refund(id, Some(usd("10.00"))).await;
    assert!(matches!(lost, Err(PaymentError::Processor(_))), "{lost:?}");
    let row = payments.get(id).await.unwrap();
    assert_eq!((row.status.as_str(), row.refunded_minor), ("captured", 0));
    assert_eq!(
        f.mock.taken().await.unwrap(),
        1500,
        "the processor gave 10.00 back"
    );
    lose(false);
    let again = payments.refund(id, Some(usd("10.00"))).await;
    assert!(
        matches!(&again, Err(PaymentError::FinishedEarlier(m)) if m == "10.00 USD"),
        "{again:?}"
    );
    let row = payments.get(id).await.unwrap();
    assert_eq!(
        (
            row.status.as_str(),
            row.refunded_minor,
            row.refund_pending_id.as_deref()
        ),
        ("partially_refunded", 1000, None)
    );
    assert_eq!(f.mock.taken().await.unwrap(), 1500, "given back once");

    // A part lost and never asked again: the sweep finishes it, once its
    // grace is over, and again finds nothing.
    lose(true);
    assert!(payments.refund(id, Some(usd("5.00"))).await.is_err());
    lose(false);
    assert_eq!(
        payments
            .finish_pending_refunds(Duration::from_secs(60))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        payments
            .finish_pending_refunds(Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        payments
            .finish_pending_refunds(Duration::ZERO)
            .await
            .unwrap(),
        0
    );
    assert_eq!(payments.get(id).await.unwrap().refunded_minor, 1500);
    assert_eq!(f.mock.taken().await.unwrap(), 1000);

    // All that is left, lost, then asked again: the retry is answered by it.
    lose(true);
    assert!(payments.refund(id, None).await.is_err());
    assert_eq!(payments.get(id).await.unwrap().refunded_minor, 1500);
    lose(false);
    let rest = payments.refund(id, None).await.unwrap();
    assert_eq!(
        (rest.status.as_str(), rest.refunded.amount.as_str()),
        ("refunded", "25.00")
    );
    assert_eq!(f.mock.taken().await.unwrap(), 0);
    assert_eq!(
        f.outbox_of(id).await,
        [
            "payment.completed",
            "payment.refunded",
            "payment.refunded",
            "payment.refunded"
        ]
    );
}

async fn keys_contract(store: &dyn IdempotencyStore) {
    let key = format!("ada:{}", Uuid::now_v7());
    let ttl = Duration::from_secs(60);
    assert_eq!(store.claim(&key, "fp-1", ttl).await.unwrap(), Claim::New);
    assert_eq!(
        store.claim(&key, "fp-1", ttl).await.unwrap(),
        Claim::InFlight
    );
    assert_eq!(
        store.claim(&key, "fp-2", ttl).await.unwrap(),
        Claim::Mismatch
    );
    let answer = Recorded {
        status: 201,
        body: "{\"id\":1}".into(),
    };
    store.complete(&key, &answer, ttl).await.unwrap();
    assert_eq!(
        store.claim(&key, "fp-1", ttl).await.unwrap(),
        Claim::Replay(answer)
    );
    let other = format!("ada:{}", Uuid::now_v7());
    assert_eq!(store.claim(&other, "fp", ttl).await.unwrap(), Claim::New);
    store.release(&other).await.unwrap();
    assert_eq!(store.claim(&other, "fp", ttl).await.unwrap(), Claim::New);
}

async fn contract_idempotency_keys_in_sql(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    keys_contract(&SqlKeys::new(f.db.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_in_redis() {
    let Some(url) = emporium_testkit::server_url(emporium_testkit::REDIS) else {
        return;
    };
    let guard = TestDatabase::fresh(Backend::Sqlite).await.unwrap();
    let db = emporium_platform::db::connect(&guard.url).await.unwrap();
    let store = emporium_platform::idempotency::from_settings(
        Some(&emporium_platform::config::Secret::new(url)),
        &format!("test-{}", Uuid::now_v7().simple()),
        &db,
    )
    .await
    .unwrap();
    keys_contract(store.as_ref()).await;
}

on_every_backend!(
    contract_a_payment_is_captured_then_refunded_within_bounds,
    contract_declines_errors_and_timeouts_fail_without_taking,
    contract_concurrent_processing_takes_the_money_once,
    contract_cancellation_and_expiry,
    contract_a_restarted_processor_captures_and_voids_what_it_authorized,
    contract_processor_calls_asked_twice_move_money_once,
    contract_a_cancel_leaves_nothing_held_at_the_processor,
    contract_a_caller_gone_midway_leaves_record_and_processor_agreeing,
    contract_a_refund_whose_answer_was_lost_is_made_once_when_asked_again,
    contract_idempotency_keys_in_sql,
);
