//! Use cases: take, process, cancel and refund payments through the
//! processor, never taking one twice (decision 0012).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use emporium_platform::bus::{Envelope, Outbox};
use emporium_platform::db::{self, Db};
use emporium_platform::http::Page;
use emporium_platform::money::{Money, MoneyJson};
use emporium_platform::{FieldError, Problem};
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Action, PaymentDraft, Refusal, Status, transition};
use crate::events;
use crate::provider::{Provider, ProviderError};
use crate::store::{self, Change, Filter, PaymentRow};

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("no payment has this id")]
    NotFound,
    #[error("{0}")]
    Refused(Refusal),
    #[error("the payment expired before it was processed")]
    Expired,
    #[error("the refund is in {0}; the payment is in {1}")]
    Currency(String, String),
    #[error("the payment changed while this request ran; try again")]
    Raced,
    #[error(
        "this request made no refund: an earlier refund of {0}, cut off before it was recorded, was finished by it; ask again for another"
    )]
    FinishedEarlier(String),
    #[error("the card processor is unavailable: {0}")]
    Processor(String),
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("stored payment unreadable: {0}")]
    Corrupt(String),
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
}

impl From<PaymentError> for Problem {
    fn from(err: PaymentError) -> Self {
        match err {
            PaymentError::NotFound => Problem::not_found(err.to_string()),
            PaymentError::Refused(Refusal::TooMuch { .. }) | PaymentError::Currency(..) => {
                Problem::invalid(vec![FieldError {
                    field: "amount".into(),
                    message: err.to_string(),
                }])
            }
            PaymentError::Refused(_)
            | PaymentError::Expired
            | PaymentError::Raced
            | PaymentError::FinishedEarlier(_) => Problem::conflict(err.to_string()),
            PaymentError::Processor(_) => {
                tracing::warn!(error = %err, "processor unavailable");
                Problem::unavailable("card processor")
            }
            PaymentError::Db(e) => Problem::from(e),
            PaymentError::Corrupt(_) | PaymentError::Encode(_) => Problem::internal(err),
        }
    }
}

pub type Result<T, E = PaymentError> = std::result::Result<T, E>;

/// A payment as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentView {
    pub id: String,
    pub order_id: String,
    pub user_id: String,
    pub amount: MoneyJson,
    pub refunded: MoneyJson,
    pub status: String,
    pub method: String,
    pub provider: String,
    pub provider_id: Option<String>,
    pub card_last4: String,
    pub metadata: serde_json::Value,
    pub failure_reason: Option<String>,
    pub processed_at: Option<chrono::DateTime<Utc>>,
    pub expires_at: chrono::DateTime<Utc>,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

fn money(minor: i64, currency: &str) -> Result<Money> {
    Money::from_minor(minor, currency).map_err(PaymentError::Corrupt)
}

pub fn view(row: &PaymentRow) -> Result<PaymentView> {
    Ok(PaymentView {
        id: row.id.clone(),
        order_id: row.order_id.clone(),
        user_id: row.user_id.clone(),
        amount: money(row.amount_minor, &row.currency)?.to_json(),
        refunded: money(row.refunded_minor, &row.currency)?.to_json(),
        status: row.status.clone(),
        method: row.method.clone(),
        provider: row.provider.clone(),
        provider_id: row.provider_id.clone(),
        card_last4: row.card_last4.clone(),
        metadata: serde_json::from_str(&row.metadata).unwrap_or(serde_json::Value::Null),
        failure_reason: row.failure_reason.clone(),
        processed_at: row.processed_at,
        expires_at: row.expires_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// The state a refund of `amount` leaves `row` in, or why it may not.
fn refunded(row: &PaymentRow, from: Status, amount: i64) -> Result<Status> {
    transition(
        from,
        Action::Refund {
            amount,
            captured: row.amount_minor,
            refunded: row.refunded_minor,
        },
    )
    .map_err(PaymentError::Refused)
}

fn status(row: &PaymentRow) -> Result<Status> {
    Status::parse(&row.status).ok_or_else(|| PaymentError::Corrupt(row.status.clone()))
}

/// What payment is told at start.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The longest one call to the processor may take.
    pub provider_timeout: Duration,
    /// How long a pending payment may wait to be processed.
    pub payment_ttl: Duration,
}

#[derive(Clone)]
pub struct Payments {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    outbox: Outbox,
    provider: Arc<dyn Provider>,
    policy: Policy,
}

impl Payments {
    pub fn new(db: Db, outbox: Outbox, provider: Arc<dyn Provider>, policy: Policy) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                outbox,
                provider,
                policy,
            }),
        }
    }

    /// Calls the processor within the configured time; a call that takes
    /// longer counts as the processor being unavailable.
    async fn call<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.inner.policy.provider_timeout, call)
            .await
            .unwrap_or_else(|_| Err(ProviderError::Unavailable("timed out".into())));
        metrics::histogram!("payment_gateway_latency_seconds", "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    pub async fn create(&self, draft: &PaymentDraft, user_id: &str) -> Result<PaymentView> {
        let now = Utc::now();
        let row = PaymentRow {
            id: Uuid::now_v7().to_string(),
            order_id: draft.order_id.clone(),
            user_id: user_id.to_owned(),
            amount_minor: draft.amount.minor,
            currency: draft.amount.currency.code().into(),
            refunded_minor: 0,
            status: Status::Pending.as_str().into(),
            method: draft.method.clone(),
            provider: self.inner.provider.name().into(),
            provider_id: None,
            card_last4: draft.card[draft.card.len() - 4..].to_owned(),
            card_token: self.inner.provider.tokenize(&draft.card),
            metadata: draft.metadata.to_string(),
            failure_reason: None,
            processed_at: None,
            expires_at: now
                + chrono::Duration::from_std(self.inner.policy.payment_ttl)
                    .unwrap_or(chrono::Duration::minutes(30)),
            created_at: now,
            updated_at: now,
            refund_pending_id: None,
            refund_pending_minor: None,
        };
        store::insert(&self.inner.db, row.clone()).await?;
        view(&row)
    }

    pub async fn get(&self, id: Uuid) -> Result<PaymentRow> {
        store::find(&self.inner.db, &id.to_string())
            .await?
            .ok_or(PaymentError::NotFound)
    }

    pub async fn list(
        &self,
        filter: &Filter,
        page: u64,
        per_page: u64,
    ) -> Result<Page<PaymentView>> {
        let (rows, total) = store::list(&self.inner.db, filter, page, per_page).await?;
        Ok(Page {
            items: rows.iter().map(view).collect::<Result<_>>()?,
            page,
            per_page,
            total,
        })
    }

    /// Moves the payment from `from` by `action`, with its event in the
    /// same transaction; `Raced` when it moved in between.
    async fn advance(
        &self,
        row: &PaymentRow,
        from: Status,
        to: Status,
        change: Change,
        event: Option<&'static str>,
    ) -> Result<PaymentRow> {
        let txn = db::begin_write(&self.inner.db).await?;
        if !store::advance(&txn, &row.id, from.as_str(), to.as_str(), change).await? {
            return Err(PaymentError::Raced);
        }
        let after = store::find(&txn, &row.id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        if let Some(kind) = event {
            let envelope: Envelope = events::payment(kind, &after)?;
            self.inner.outbox.enqueue(&txn, &envelope).await?;
        }
        txn.commit().await?;
        if event.is_some() {
            self.inner.outbox.wake();
        }
        Ok(after)
    }

    async fn fail(&self, row: &PaymentRow, from: Status, reason: String) -> Result<PaymentRow> {
        let failed = self
            .advance(
                row,
                from,
                Status::Failed,
                Change {
                    failure_reason: Some(reason.chars().take(100).collect()),
                    processed_at: Some(Utc::now()),
                    ..Change::default()
                },
                Some(events::PAYMENT_FAILED),
            )
            .await?;
        metrics::counter!("payments_processed_total", "status" => "failed", "method" => failed.method.clone())
            .increment(1);
        Ok(failed)
    }

    /// Authorizes and captures a pending payment. A declined card or an
    /// unavailable processor leaves it `failed` with the reason; nothing is
    /// captured twice, whoever calls and however often (the processor
    /// takes the payment id as its idempotency key).
    pub async fn process(&self, id: Uuid) -> Result<PaymentView> {
        let this = self.clone();
        detached(async move { this.process_now(id).await }).await
    }

    async fn process_now(&self, id: Uuid) -> Result<PaymentView> {
        let mut row = self.get(id).await?;
        loop {
            let from = status(&row)?;
            match from {
                Status::Pending if row.expires_at <= Utc::now() => {
                    let _ = self
                        .advance(
                            &row,
                            from,
                            Status::Cancelled,
                            Change {
                                failure_reason: Some("expired".into()),
                                ..Change::default()
                            },
                            None,
                        )
                        .await;
                    return Err(PaymentError::Expired);
                }
                Status::Pending => {
                    let amount = money(row.amount_minor, &row.currency)?;
                    let provider = &self.inner.provider;
                    let authorized = self
                        .call("authorize", provider.authorize(id, amount, &row.card_token))
                        .await;
                    let moved = match authorized {
                        Ok(authorization) => {
                            self.advance(
                                &row,
                                from,
                                Status::Authorized,
                                Change {
                                    provider_id: Some(authorization),
                                    ..Change::default()
                                },
                                None,
                            )
                            .await
                        }
                        Err(ProviderError::Declined(reason)) => self.fail(&row, from, reason).await,
                        Err(ProviderError::Unavailable(reason)) => {
                            let _ = self.call("void", provider.void(id, "")).await;
                            self.fail(&row, from, format!("processor_unavailable: {reason}"))
                                .await
                        }
                    };
                    row = self.settled(id, moved).await?;
                }
                Status::Authorized => {
                    let authorization = row.provider_id.clone().unwrap_or_default();
                    let provider = &self.inner.provider;
                    let captured = match self
                        .call("capture", provider.capture(id, &authorization))
                        .await
                    {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            match self.call("void", provider.void(id, &authorization)).await {
                                // It was captured after all: the answer was lost.
                                Err(ProviderError::Declined(r)) if r == "already_captured" => {
                                    Ok(())
                                }
                                _ => Err(e),
                            }
                        }
                    };
                    let moved = match captured {
                        Ok(()) => {
                            let done = self
                                .advance(
                                    &row,
                                    from,
                                    Status::Captured,
                                    Change {
                                        processed_at: Some(Utc::now()),
                                        ..Change::default()
                                    },
                                    Some(events::PAYMENT_COMPLETED),
                                )
                                .await;
                            if let Ok(done) = &done {
                                metrics::counter!("payments_processed_total", "status" => "completed", "method" => done.method.clone())
                                    .increment(1);
                                if let Ok(amount) =
                                    Money::from_minor(done.amount_minor, &done.currency)
                                {
                                    metrics::histogram!("payment_amount", "currency" => done.currency.clone())
                                        .record(amount.units());
                                }
                            }
                            done
                        }
                        Err(e) => self.fail(&row, from, e.to_string()).await,
                    };
                    row = self.settled(id, moved).await?;
                    return view(&row);
                }
                _ => {
                    return Err(PaymentError::Refused(Refusal::Transition {
                        from,
                        action: "processed",
                    }));
                }
            }
            if status(&row)? != Status::Authorized {
                return view(&row);
            }
        }
    }

    /// The row after a move, or as another request left it when it raced.
    async fn settled(&self, id: Uuid, moved: Result<PaymentRow>) -> Result<PaymentRow> {
        match moved {
            Err(PaymentError::Raced) => self.get(id).await,
            other => other,
        }
    }

    /// Cancels a payment that was not captured, voiding its authorization.
    /// A pending one is voided at the processor too: an authorization may
    /// have been made for it whose answer never came back (a call cut off
    /// by its caller's deadline, a process killed), and one still on its
    /// way is then born void. One the processor captured, though this
    /// record never heard, is recorded as captured and not cancelled.
    pub async fn cancel(&self, id: Uuid) -> Result<PaymentView> {
        let this = self.clone();
        detached(async move { this.cancel_now(id).await }).await
    }

    async fn cancel_now(&self, id: Uuid) -> Result<PaymentView> {
        let row = self.get(id).await?;
        let from = status(&row)?;
        let to = transition(from, Action::Cancel).map_err(PaymentError::Refused)?;
        let authorization = row.provider_id.clone().unwrap_or_default();
        match self
            .call("void", self.inner.provider.void(id, &authorization))
            .await
        {
            Ok(()) => {}
            Err(ProviderError::Declined(reason)) if reason == "already_captured" => {
                let captured = self.process_now(id).await?;
                tracing::warn!(payment_id = %id, status = %captured.status, "payment to cancel was captured at the processor");
                return Err(PaymentError::Refused(Refusal::Transition {
                    from: status(&self.get(id).await?)?,
                    action: "cancelled",
                }));
            }
            Err(e) => return Err(PaymentError::Processor(e.to_string())),
        }
        let cancelled = self
            .advance(&row, from, to, Change::default(), None)
            .await?;
        view(&cancelled)
    }

    /// Refunds `amount` (all that is left when `None`) of a captured
    /// payment; never more than was captured, even when asked concurrently.
    pub async fn refund(&self, id: Uuid, amount: Option<Money>) -> Result<PaymentView> {
        let this = self.clone();
        detached(async move { this.refund_now(id, amount).await }).await
    }

    async fn refund_now(&self, id: Uuid, amount: Option<Money>) -> Result<PaymentView> {
        let mut row = self.get(id).await?;
        if let Some(a) = &amount
            && a.currency.code() != row.currency
        {
            return Err(PaymentError::Currency(
                a.currency.code().into(),
                row.currency.clone(),
            ));
        }
        // A refund left half-way (a crash, a processor that did not
        // answer) is finished first, under its own id. A request for all
        // that is left goes on from there (done when nothing is); one for
        // an amount is told which refund it finished and that it made none
        // of its own, since a retry of that refund and another refund of
        // the same amount look alike.
        if let (Some(pending), Some(minor)) =
            (row.refund_pending_id.clone(), row.refund_pending_minor)
        {
            row = self.make_refund(id, &row, &pending, minor).await?;
            if amount.is_some() {
                return Err(PaymentError::FinishedEarlier(
                    money(minor, &row.currency)?.to_string(),
                ));
            }
            if row.refunded_minor == row.amount_minor {
                return view(&row);
            }
        }
        let amount = amount.map_or(row.amount_minor - row.refunded_minor, |a| a.minor);
        let from = status(&row)?;
        refunded(&row, from, amount)?;
        // The refund is written as asked before the processor is asked,
        // under the id it is asked with, and recorded as made (with its
        // event) once the processor has said yes: whatever stops in
        // between, the next refund of this payment asks again under the
        // same id, and the processor gives back once.
        let refund = Uuid::now_v7().to_string();
        if !store::begin_refund(
            &self.inner.db,
            &row.id,
            from.as_str(),
            row.refunded_minor,
            &refund,
            amount,
        )
        .await?
        {
            return Err(PaymentError::Raced);
        }
        let done = self.make_refund(id, &row, &refund, amount).await?;
        view(&done)
    }

    /// Finishes every refund left pending for longer than `grace` (its
    /// request cut off, its process killed, its caller gone without asking
    /// again); how many it recorded as made.
    pub async fn finish_pending_refunds(&self, grace: Duration) -> Result<usize> {
        let cutoff = Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        let mut made = 0;
        for row in store::pending_refunds(&self.inner.db, cutoff).await? {
            let (Some(refund), Some(minor)) =
                (row.refund_pending_id.clone(), row.refund_pending_minor)
            else {
                continue;
            };
            let id = Uuid::parse_str(&row.id).map_err(|_| PaymentError::Corrupt(row.id.clone()))?;
            let this = self.clone();
            match detached(async move { this.make_refund(id, &row, &refund, minor).await }).await {
                Ok(_) => made += 1,
                Err(e) => {
                    tracing::warn!(payment_id = %id, error = %e, "pending refund not finished yet")
                }
            }
        }
        Ok(made)
    }

    /// Asks the processor for pending refund `refund` of `amount` and
    /// records it as made. A refusal drops it; a processor that did not
    /// answer leaves it pending, to be asked again.
    async fn make_refund(
        &self,
        id: Uuid,
        row: &PaymentRow,
        refund: &str,
        amount: i64,
    ) -> Result<PaymentRow> {
        let from = status(row)?;
        let to = refunded(row, from, amount)?;
        let key = Uuid::parse_str(refund).map_err(|_| PaymentError::Corrupt(refund.into()))?;
        let asked = self
            .call(
                "refund",
                self.inner
                    .provider
                    .refund(id, key, money(amount, &row.currency)?),
            )
            .await;
        match asked {
            Ok(()) => {}
            Err(e @ ProviderError::Declined(_)) => {
                store::drop_refund(&self.inner.db, &row.id, refund).await?;
                return Err(PaymentError::Processor(e.to_string()));
            }
            Err(e) => return Err(PaymentError::Processor(e.to_string())),
        }
        let made = self
            .advance(
                row,
                from,
                to,
                Change {
                    refunded: Some((row.refunded_minor + amount, row.refunded_minor)),
                    refund_made: Some(refund.to_owned()),
                    ..Change::default()
                },
                Some(events::PAYMENT_REFUNDED),
            )
            .await;
        if made.is_ok() {
            metrics::counter!("refunds_processed_total").increment(1);
            metrics::counter!("payments_processed_total", "status" => "refunded", "method" => row.method.clone())
                .increment(1);
        }
        // Raced: another request finished this same refund.
        self.settled(id, made).await
    }
}

/// Runs `work`, a change of money, to its end in a task of its own: a
/// caller that goes away (its deadline passed, its connection cut) drops
/// its request, and with it anything the request awaits; a change left
/// half-way between the processor and the record would tell one thing
/// where the processor holds another.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|e| Err(PaymentError::Corrupt(format!("payment task ended: {e}"))))
}

/// What an admin changes of the mock processor.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct BehaviourInput {
    pub failure_rate: Option<f64>,
    pub latency_ms: Option<u64>,
}
