//! The checkout saga, orchestrated here: price from the catalog → reserve
//! in inventory → create and process the payment → commit the reservation
//! and confirm. Each step is written with the order before the next call;
//! every call is idempotent by the order's id, so a step may be run again;
//! a failure undoes what was done and leaves the order `failed` with its
//! reason (decision 0012).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use emporium_platform::bus::Outbox;
use emporium_platform::db::{self, Db};
use emporium_platform::grpc::{Authorized, Peer, PeerError};
use emporium_platform::http::Page;
use emporium_platform::money::{Money, MoneyJson};
use emporium_platform::{FieldError, Problem};
use emporium_proto::basket::v1 as basket;
use emporium_proto::catalog::v1 as catalog;
use emporium_proto::inventory::v1 as inventory;
use emporium_proto::payment::v1 as payment;
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Checkout, Status};
use crate::events;
use crate::store::{self, Change, LineRow, OrderRow};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("no order has this id")]
    NotFound,
    #[error("{0:?}")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("stored order unreadable: {0}")]
    Corrupt(String),
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
}

impl From<OrderError> for Problem {
    fn from(err: OrderError) -> Self {
        match err {
            OrderError::NotFound => Problem::not_found(err.to_string()),
            OrderError::Invalid(errors) => Problem::invalid(errors),
            OrderError::State(_) => Problem::conflict(err.to_string()),
            OrderError::Peer(e) => Problem::from(e),
            OrderError::Db(e) => Problem::from(e),
            OrderError::Corrupt(_) | OrderError::Encode(_) => Problem::internal(err),
        }
    }
}

pub type Result<T, E = OrderError> = std::result::Result<T, E>;

fn invalid(field: &str, message: impl Into<String>) -> OrderError {
    OrderError::Invalid(vec![FieldError {
        field: field.into(),
        message: message.into(),
    }])
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineView {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub unit_price: MoneyJson,
    pub quantity: i64,
}

/// An order as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub total: MoneyJson,
    pub lines: Vec<LineView>,
    pub reservation_id: Option<String>,
    pub payment_id: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

fn money(minor: i64, currency: &str) -> Result<Money> {
    Money::from_minor(minor, currency).map_err(OrderError::Corrupt)
}

pub fn view(row: &OrderRow, lines: &[LineRow]) -> Result<OrderView> {
    Ok(OrderView {
        id: row.id.clone(),
        user_id: row.user_id.clone(),
        status: row.status.clone(),
        total: money(row.total_minor, &row.currency)?.to_json(),
        lines: lines
            .iter()
            .map(|l| {
                Ok(LineView {
                    product_id: l.product_id.clone(),
                    sku: l.sku.clone(),
                    name: l.name.clone(),
                    unit_price: money(l.unit_minor, &row.currency)?.to_json(),
                    quantity: l.quantity,
                })
            })
            .collect::<Result<_>>()?,
        reservation_id: row.reservation_id.clone(),
        payment_id: row.payment_id.clone(),
        failure_reason: row.failure_reason.clone(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// The services a checkout calls.
#[derive(Clone)]
pub struct Peers {
    pub catalog: Peer,
    pub inventory: Peer,
    pub payment: Peer,
    pub basket: Peer,
}

#[derive(Clone)]
pub struct Orders {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    outbox: Outbox,
    peers: Peers,
    reservation_ttl_secs: i64,
}

/// The step of an order whose cancellation has begun and not ended.
pub const CANCELLING: &str = "cancelling";

/// The step of a checkout being undone because it was left before its
/// payment was recorded.
pub const ABANDONING: &str = "abandoning";

/// The code of a peer's refusal, if it refused.
fn refused(err: &PeerError) -> Option<tonic::Code> {
    match err {
        PeerError::Refused { status, .. } => Some(status.code()),
        PeerError::Unavailable { .. } => None,
    }
}

/// A step left for the resumer because its peer did not settle it: to the
/// caller the peer is unavailable for now, whether it did not answer or
/// answered with an error (a refusal that escaped would read as a fault of
/// ordering's own).
fn unsettled(err: PeerError) -> OrderError {
    OrderError::Peer(match err {
        PeerError::Refused { peer, status } => PeerError::Unavailable {
            peer,
            reason: format!("{}: {}", status.code(), status.message()),
        },
        unavailable @ PeerError::Unavailable { .. } => unavailable,
    })
}

fn message(err: &PeerError) -> String {
    match err {
        PeerError::Refused { status, .. } => status.message().to_owned(),
        PeerError::Unavailable { peer, .. } => format!("{peer} unavailable"),
    }
}

impl Orders {
    pub fn new(db: Db, outbox: Outbox, peers: Peers, reservation_ttl_secs: i64) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                outbox,
                peers,
                reservation_ttl_secs,
            }),
        }
    }

    async fn load(&self, id: &str) -> Result<OrderRow> {
        store::find(&self.inner.db, id)
            .await?
            .ok_or(OrderError::NotFound)
    }

    /// The order with its lines, if `user` may see it (`None`: anyone).
    pub async fn get(&self, id: Uuid, user: Option<&str>) -> Result<OrderView> {
        let row = self.load(&id.to_string()).await?;
        if user.is_some_and(|u| u != row.user_id) {
            // Another user's order answers as a missing one: ids cannot be probed.
            return Err(OrderError::NotFound);
        }
        view(&row, &store::lines(&self.inner.db, &row.id).await?)
    }

    pub async fn list(
        &self,
        user: Option<&str>,
        status: Option<Status>,
        page: u64,
        per_page: u64,
    ) -> Result<Page<OrderView>> {
        let (rows, total) = store::list(
            &self.inner.db,
            user,
            status.map(Status::as_str),
            page,
            per_page,
        )
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(view(row, &store::lines(&self.inner.db, &row.id).await?)?);
        }
        Ok(Page {
            items,
            page,
            per_page,
            total,
        })
    }

    /// Moves the order and writes `event` with it; false when another
    /// runner moved it first.
    async fn advance(
        &self,
        row: &OrderRow,
        to: (Status, &str),
        change: Change,
        event: Option<&'static str>,
    ) -> Result<Option<OrderRow>> {
        let txn = db::begin_write(&self.inner.db).await?;
        let moved = store::advance(
            &txn,
            &row.id,
            (&row.status, &row.step),
            (to.0.as_str(), to.1),
            change,
        )
        .await?;
        if !moved {
            return Ok(None);
        }
        let after = store::find(&txn, &row.id)
            .await?
            .ok_or(OrderError::NotFound)?;
        if let Some(kind) = event {
            let lines = store::lines(&txn, &row.id).await?;
            self.inner
                .outbox
                .enqueue(&txn, &events::order(kind, &after, &lines)?)
                .await?;
        }
        txn.commit().await?;
        if event.is_some() {
            self.inner.outbox.wake();
        }
        Ok(Some(after))
    }

    /// Checks out `items` (the basket's when `None`) for `user`, running
    /// the saga to its end: the order comes back confirmed or failed.
    pub async fn checkout(&self, user: &str, checkout: &Checkout) -> Result<OrderView> {
        let started = Instant::now();
        let items = match &checkout.items {
            Some(items) => items.clone(),
            None => self.basket(user).await?,
        };
        if items.is_empty() {
            return Err(invalid("items", "the basket is empty"));
        }
        let offers = self.prices(&items).await?;
        let currency = offers
            .values()
            .next()
            .map(|o| o.1.currency)
            .ok_or_else(|| invalid("items", "no product found"))?;
        let mut total = Money::new(0, currency);
        let id = Uuid::now_v7().to_string();
        let mut lines = vec![];
        for (product, quantity) in &items {
            let Some((sku, price, name)) = offers.get(product).map(|o| (&o.0, o.1, &o.2)) else {
                return Err(invalid("items", format!("no product has the id {product}")));
            };
            if price.currency != currency {
                return Err(invalid(
                    "items",
                    "the products are priced in different currencies",
                ));
            }
            total = price
                .checked_mul(*quantity)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| invalid("items", "the total is too large"))?;
            lines.push(LineRow {
                order_id: id.clone(),
                product_id: product.to_string(),
                sku: sku.clone(),
                name: name.clone(),
                unit_minor: price.minor,
                quantity: *quantity,
            });
        }
        let now = Utc::now();
        let row = OrderRow {
            id: id.clone(),
            user_id: user.to_owned(),
            status: Status::Pending.as_str().into(),
            step: "priced".into(),
            currency: currency.code().into(),
            total_minor: total.minor,
            reservation_id: None,
            payment_id: None,
            failure_reason: None,
            created_at: now,
            updated_at: now,
            from_basket: checkout.items.is_none(),
        };
        let txn = db::begin_write(&self.inner.db).await?;
        store::insert(&txn, row.clone(), lines.clone()).await?;
        self.inner
            .outbox
            .enqueue(&txn, &events::order(events::ORDER_CREATED, &row, &lines)?)
            .await?;
        txn.commit().await?;
        self.inner.outbox.wake();
        metrics::counter!("orders_created_total").increment(1);
        let done = self.run(row, Some(&checkout.card_number)).await?;
        if done.from_basket && done.status == Status::Confirmed.as_str() {
            self.settle_basket(&done, &lines).await;
        }
        metrics::histogram!("order_processing_duration_seconds", "status" => done.status.clone())
            .record(started.elapsed().as_secs_f64());
        view(&done, &lines)
    }

    /// The basket's lines, asked of the basket service.
    async fn basket(&self, user: &str) -> Result<Vec<(Uuid, i64)>> {
        let request = basket::BasketRequest {
            user_id: user.to_owned(),
        };
        let held = self
            .inner
            .peers
            .basket
            .call("GetBasket", true, |channel| {
                let request = request.clone();
                async move {
                    basket::baskets_client::BasketsClient::new(channel)
                        .get_basket(request)
                        .await
                }
            })
            .await?;
        Ok(held
            .items
            .iter()
            .filter_map(|i| Some((Uuid::parse_str(&i.product_id).ok()?, i.quantity)))
            .collect())
    }

    /// Takes a confirmed order's lines out of the basket before the
    /// checkout answers, so that the customer's next checkout, however
    /// soon, cannot buy them again (`order.confirmed` would do it only
    /// once delivered). A basket away is left to the event.
    async fn settle_basket(&self, order: &OrderRow, lines: &[LineRow]) {
        let request = basket::SettleOrderRequest {
            user_id: order.user_id.clone(),
            order_id: order.id.clone(),
            lines: lines
                .iter()
                .map(|line| basket::OrderLine {
                    product_id: line.product_id.clone(),
                    quantity: line.quantity,
                })
                .collect(),
        };
        let settled = self
            .inner
            .peers
            .basket
            // One try: the order is confirmed and paid, and the event
            // settles the basket if this does not.
            .call("SettleOrder", false, |channel| {
                let request = request.clone();
                async move {
                    basket::baskets_client::BasketsClient::new(channel)
                        .settle_order(request)
                        .await
                }
            })
            .await;
        if let Err(e) = settled {
            tracing::warn!(order_id = %order.id, error = %e, "basket not settled at checkout; order.confirmed will settle it");
        }
    }

    /// The catalog's current (SKU, price, name) of each product.
    async fn prices(
        &self,
        items: &[(Uuid, i64)],
    ) -> Result<HashMap<Uuid, (String, Money, String)>> {
        let request = catalog::GetProductsRequest {
            ids: items.iter().map(|(id, _)| id.to_string()).collect(),
        };
        let answer = self
            .inner
            .peers
            .catalog
            .call("GetProducts", true, |channel| {
                let request = request.clone();
                async move {
                    catalog::catalog_client::CatalogClient::new(channel)
                        .get_products(request)
                        .await
                }
            })
            .await?;
        Ok(answer
            .products
            .into_iter()
            .filter_map(|p| {
                let price = Money::try_from(p.price.as_ref()?).ok()?;
                Some((Uuid::parse_str(&p.id).ok()?, (p.sku, price, p.name)))
            })
            .collect())
    }

    fn inventory(
        &self,
        channel: Authorized,
    ) -> inventory::inventory_client::InventoryClient<Authorized> {
        inventory::inventory_client::InventoryClient::new(channel)
    }

    fn payment(&self, channel: Authorized) -> payment::payments_client::PaymentsClient<Authorized> {
        payment::payments_client::PaymentsClient::new(channel)
    }

    /// Lets the order's reservation go; a missing one is fine.
    /// `Release` or `Commit` of the order's reservation.
    async fn reservation(
        &self,
        method: &'static str,
        row: &OrderRow,
    ) -> Result<inventory::Reservation, PeerError> {
        let request = inventory::ReservationRequest {
            reservation_id: row.id.clone(),
        };
        self.inner
            .peers
            .inventory
            .call(method, true, |channel| {
                let request = request.clone();
                let mut client = self.inventory(channel);
                async move {
                    match method {
                        "Commit" => client.commit(request).await,
                        _ => client.release(request).await,
                    }
                }
            })
            .await
    }

    /// Lets the order's reservation go; a missing one is fine.
    async fn release(&self, row: &OrderRow) {
        if let Err(e) = self.reservation("Release", row).await
            && refused(&e) != Some(tonic::Code::NotFound)
        {
            tracing::warn!(order_id = %row.id, error = %e, "reservation not released; it expires");
        }
    }

    async fn fail(&self, row: &OrderRow, reason: String) -> Result<OrderRow> {
        let failed = self
            .advance(
                row,
                (Status::Failed, row.step.as_str()),
                Change {
                    failure_reason: Some(reason.chars().take(200).collect()),
                    ..Change::default()
                },
                Some(events::ORDER_FAILED),
            )
            .await?;
        match failed {
            Some(row) => Ok(row),
            None => self.load(&row.id).await,
        }
    }

    /// Drives a pending order from its step to confirmed or failed. `card`
    /// is known only to the request that started the checkout: a resumed
    /// order that has not paid yet is compensated.
    pub async fn run(&self, mut row: OrderRow, card: Option<&str>) -> Result<OrderRow> {
        while row.status == Status::Pending.as_str() {
            let moved = match row.step.as_str() {
                "priced" => self.reserve(&row).await?,
                "reserved" => match card {
                    Some(card) => self.pay(&row, card).await?,
                    None => self.abandon(&row).await?,
                },
                ABANDONING => self.abandon(&row).await?,
                "paying" => self.process(&row).await?,
                "paid" => self.confirm(&row).await?,
                other => return Err(OrderError::Corrupt(format!("step {other}"))),
            };
            row = match moved {
                Some(next) => next,
                // Another runner moved it: carry on from where it is.
                None => self.load(&row.id).await?,
            };
        }
        Ok(row)
    }

    /// Undoes a checkout left before it recorded a payment, its card gone
    /// with its request. The order is claimed first (step `abandoning`),
    /// so that a runner still paying for it cannot record a payment that
    /// this one gives back; then a payment made and not recorded (a crash
    /// after payment made it) is voided or refunded, or the order waits
    /// for the next run; the stock is released and the order failed.
    async fn abandon(&self, row: &OrderRow) -> Result<Option<OrderRow>> {
        let claimed = if row.step == ABANDONING {
            row.clone()
        } else {
            match self
                .advance(row, (Status::Pending, ABANDONING), Change::default(), None)
                .await?
            {
                Some(claimed) => claimed,
                // Another runner moved it on: carry on from there.
                None => return Ok(None),
            }
        };
        self.void_unrecorded_payments(&claimed).await?;
        self.release(&claimed).await;
        Ok(Some(
            self.fail(&claimed, "interrupted before payment".into())
                .await?,
        ))
    }

    async fn reserve(&self, row: &OrderRow) -> Result<Option<OrderRow>> {
        let lines = store::lines(&self.inner.db, &row.id).await?;
        let request = inventory::ReserveRequest {
            reservation_id: row.id.clone(),
            lines: lines
                .iter()
                .map(|l| inventory::Line {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                })
                .collect(),
            ttl_secs: self.inner.reservation_ttl_secs,
            reference: format!("order {}", row.id),
        };
        let reserved = self
            .inner
            .peers
            .inventory
            .call("Reserve", true, |channel| {
                let request = request.clone();
                let mut client = self.inventory(channel);
                async move { client.reserve(request).await }
            })
            .await;
        match reserved {
            Ok(_) => {
                self.advance(
                    row,
                    (Status::Pending, "reserved"),
                    Change {
                        reservation_id: Some(row.id.clone()),
                        ..Change::default()
                    },
                    None,
                )
                .await
            }
            Err(e) => {
                if refused(&e).is_none() {
                    // The answer may have been lost after it reserved.
                    self.release(row).await;
                }
                let reason = match refused(&e) {
                    Some(tonic::Code::AlreadyExists | tonic::Code::NotFound) => {
                        format!("out of stock: {}", message(&e))
                    }
                    _ => format!("stock not reserved: {}", message(&e)),
                };
                Ok(Some(self.fail(row, reason).await?))
            }
        }
    }

    async fn pay(&self, row: &OrderRow, card: &str) -> Result<Option<OrderRow>> {
        let request = payment::CreatePaymentRequest {
            order_id: row.id.clone(),
            user_id: row.user_id.clone(),
            amount: Some(money(row.total_minor, &row.currency)?.into()),
            method: "card".into(),
            card_number: card.to_owned(),
            idempotency_key: format!("order-{}", row.id),
        };
        let created = self
            .inner
            .peers
            .payment
            .call("CreatePayment", true, |channel| {
                let request = request.clone();
                let mut client = self.payment(channel);
                async move { client.create_payment(request).await }
            })
            .await;
        match created {
            Ok(payment) => {
                self.advance(
                    row,
                    (Status::Pending, "paying"),
                    Change {
                        payment_id: Some(payment.id),
                        ..Change::default()
                    },
                    None,
                )
                .await
            }
            Err(e) => {
                self.release(row).await;
                Ok(Some(
                    self.fail(row, format!("payment not taken: {}", message(&e)))
                        .await?,
                ))
            }
        }
    }

    /// Cancels every payment made for `row` not yet captured, and refunds
    /// one its payer captured since (over REST): the order never recorded
    /// them, so nothing else would.
    async fn void_unrecorded_payments(&self, row: &OrderRow) -> Result<()> {
        let request = payment::OrderPaymentsRequest {
            order_id: row.id.clone(),
        };
        let made = self
            .inner
            .peers
            .payment
            .call("ListOrderPayments", true, |channel| {
                let request = request.clone();
                let mut client = self.payment(channel);
                async move { client.list_order_payments(request).await }
            })
            .await
            .map_err(unsettled)?;
        for payment in made.payments {
            match payment.status.as_str() {
                "pending" | "authorized" => {
                    tracing::info!(order_id = %row.id, payment_id = %payment.id, "voiding a payment the order never recorded");
                    self.payment_call("CancelPayment", &payment.id)
                        .await
                        .map_err(unsettled)?;
                }
                "captured" | "partially_refunded" => {
                    tracing::info!(order_id = %row.id, payment_id = %payment.id, "refunding a payment the order never recorded");
                    self.refund_call(&payment.id).await.map_err(unsettled)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn payment_call(
        &self,
        method: &'static str,
        id: &str,
    ) -> Result<payment::Payment, PeerError> {
        let request = payment::PaymentRequest { id: id.to_owned() };
        self.inner
            .peers
            .payment
            .call(method, method == "GetPayment", |channel| {
                let request = request.clone();
                let mut client = self.payment(channel);
                async move {
                    match method {
                        "ProcessPayment" => client.process_payment(request).await,
                        "CancelPayment" => client.cancel_payment(request).await,
                        _ => client.get_payment(request).await,
                    }
                }
            })
            .await
    }

    /// Takes the payment. Whether it was taken must be known before the
    /// order is failed: a payment that did not answer (killed, cut off,
    /// slower than the deadline) may be taken still, so the order is left
    /// pending, and the resumer asks again; one that answered pending or
    /// authorized is cancelled, and the order fails only once it is.
    async fn process(&self, row: &OrderRow) -> Result<Option<OrderRow>> {
        let payment_id = row.payment_id.clone().unwrap_or_default();
        let processed = match self.payment_call("ProcessPayment", &payment_id).await {
            Ok(p) => Ok(p),
            // Processed already (a repeat after a crash), or the answer was
            // lost: ask how it stands.
            Err(_) => self.payment_call("GetPayment", &payment_id).await,
        };
        let payment = processed.map_err(unsettled)?;
        match payment.status.as_str() {
            "captured" => self.paid(row, &payment_id).await,
            "pending" | "authorized" => {
                match self.payment_call("CancelPayment", &payment_id).await {
                    Ok(_) => {
                        self.release(row).await;
                        Ok(Some(self.fail(row, "payment not processed".into()).await?))
                    }
                    // Taken meanwhile (the cancel found it captured), or
                    // payment away: as it stands now, or on the next run.
                    Err(e) => match self.payment_call("GetPayment", &payment_id).await {
                        Ok(now) if now.status == "captured" => self.paid(row, &payment_id).await,
                        _ => Err(unsettled(e)),
                    },
                }
            }
            _ => {
                self.release(row).await;
                let reason = Some(payment.failure_reason)
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "refused".into());
                Ok(Some(
                    self.fail(row, format!("payment failed: {reason}")).await?,
                ))
            }
        }
    }

    /// The payment is taken: the order moves on to be confirmed, or, if it
    /// was failed meanwhile, the money goes back.
    async fn paid(&self, row: &OrderRow, payment_id: &str) -> Result<Option<OrderRow>> {
        let paid = self
            .advance(row, (Status::Pending, "paid"), Change::default(), None)
            .await?;
        // Another runner moved it: on, or to failed. Only a failed order
        // gives the money back; one moved on is paid by this payment.
        if paid.is_none() && self.load(&row.id).await?.status == Status::Failed.as_str() {
            self.refund(payment_id).await;
        }
        Ok(paid)
    }

    /// Refunds all that is left of a payment.
    async fn refund_call(&self, payment_id: &str) -> Result<payment::Payment, PeerError> {
        let request = payment::RefundPaymentRequest {
            id: payment_id.to_owned(),
            amount: None,
        };
        self.inner
            .peers
            .payment
            .call("RefundPayment", false, |channel| {
                let request = request.clone();
                let mut client = self.payment(channel);
                async move { client.refund_payment(request).await }
            })
            .await
    }

    /// Refunds all that is left of a payment, or finds it refunded (by an
    /// earlier run whose answer was lost).
    async fn give_back(&self, payment_id: &str) -> Result<(), PeerError> {
        let Err(e) = self.refund_call(payment_id).await else {
            return Ok(());
        };
        match self.payment_call("GetPayment", payment_id).await {
            Ok(p) if p.status == "refunded" => Ok(()),
            _ => Err(e),
        }
    }

    async fn refund(&self, payment_id: &str) {
        if let Err(e) = self.refund_call(payment_id).await {
            tracing::error!(payment_id, error = %e, "refund failed; the payment needs an operator");
        }
    }

    async fn confirm(&self, row: &OrderRow) -> Result<Option<OrderRow>> {
        let committed = self.reservation("Commit", row).await;
        match committed {
            Ok(_) => {
                self.advance(
                    row,
                    (Status::Confirmed, "done"),
                    Change::default(),
                    Some(events::ORDER_CONFIRMED),
                )
                .await
            }
            Err(e) if refused(&e).is_some() => {
                // The reservation expired before it could be committed:
                // the money goes back before the order fails; a refund
                // not made yet leaves it paid, for the resumer.
                self.give_back(row.payment_id.as_deref().unwrap_or_default())
                    .await
                    .map_err(unsettled)?;
                Ok(Some(
                    self.fail(row, format!("stock not committed: {}", message(&e)))
                        .await?,
                ))
            }
            // Inventory away: the order stays paid and is resumed.
            Err(e) => Err(e.into()),
        }
    }

    /// Runs again every checkout left unfinished for longer than `grace`
    /// (a crash, a peer away), and finishes every cancellation cut off as
    /// long; returns how many it settled.
    pub async fn resume(&self, grace: Duration) -> Result<usize> {
        let cutoff = Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        let mut settled = 0;
        for row in store::unfinished(&self.inner.db, 100).await? {
            if row.updated_at > cutoff {
                continue;
            }
            let id = row.id.clone();
            let outcome = if row.step == CANCELLING {
                self.finish_cancel(&row).await
            } else {
                self.run(row, None).await
            };
            match outcome {
                Ok(_) => settled += 1,
                Err(e) => tracing::warn!(order_id = %id, error = %e, "checkout not resumed yet"),
            }
        }
        Ok(settled)
    }

    /// Cancels a confirmed order not yet shipped: the payment is refunded,
    /// and `order.cancelled` puts the stock back. The intent is written
    /// first (step `cancelling`), so that a cancellation cut off after the
    /// refund (ordering killed, payment's answer lost) is finished by the
    /// resumer instead of leaving a confirmed order with its money back.
    pub async fn cancel(&self, id: Uuid, user: Option<&str>) -> Result<OrderView> {
        let row = self.load(&id.to_string()).await?;
        if user.is_some_and(|u| u != row.user_id) {
            // Another user's order answers as a missing one: ids cannot be probed.
            return Err(OrderError::NotFound);
        }
        let status =
            Status::parse(&row.status).ok_or_else(|| OrderError::Corrupt(row.status.clone()))?;
        if !status.cancellable() {
            return Err(OrderError::State(format!(
                "a {} order cannot be cancelled",
                row.status
            )));
        }
        let row = if row.step == CANCELLING {
            row
        } else {
            self.advance(&row, (status, CANCELLING), Change::default(), None)
                .await?
                .ok_or_else(|| {
                    OrderError::State("the order changed while it was cancelled".into())
                })?
        };
        let cancelled = self.finish_cancel(&row).await?;
        view(
            &cancelled,
            &store::lines(&self.inner.db, &cancelled.id).await?,
        )
    }

    /// Refunds the payment of an order being cancelled, then cancels it.
    async fn finish_cancel(&self, row: &OrderRow) -> Result<OrderRow> {
        self.give_back(row.payment_id.as_deref().unwrap_or_default())
            .await
            .map_err(unsettled)?;
        match self
            .advance(
                row,
                (Status::Cancelled, "done"),
                Change::default(),
                Some(events::ORDER_CANCELLED),
            )
            .await?
        {
            Some(cancelled) => Ok(cancelled),
            // Another runner finished it first.
            None => self.load(&row.id).await,
        }
    }

    /// An admin moves a confirmed order along: processing → shipped →
    /// delivered.
    pub async fn fulfil(&self, id: Uuid, next: Status) -> Result<OrderView> {
        let row = self.load(&id.to_string()).await?;
        let status =
            Status::parse(&row.status).ok_or_else(|| OrderError::Corrupt(row.status.clone()))?;
        if row.step == CANCELLING {
            return Err(OrderError::State("the order is being cancelled".into()));
        }
        if !status.fulfils_to(next) {
            return Err(OrderError::State(format!(
                "a {} order cannot become {}",
                row.status,
                next.as_str()
            )));
        }
        // Every step has its event, so that a customer's open page hears
        // each one.
        let event = match next {
            Status::Processing => Some(events::ORDER_PROCESSING),
            Status::Shipped => Some(events::ORDER_SHIPPED),
            Status::Delivered => Some(events::ORDER_DELIVERED),
            _ => None,
        };
        let moved = self
            .advance(&row, (next, "done"), Change::default(), event)
            .await?
            .ok_or_else(|| OrderError::State("the order changed meanwhile".into()))?;
        view(&moved, &store::lines(&self.inner.db, &moved.id).await?)
    }

    pub async fn count_logged(&self) {
        if let Err(e) = self.count().await {
            tracing::warn!(error = %e, "orders not counted");
        }
    }

    /// Sets `orders_by_status` from the store: every status, at zero
    /// where no order has it any more.
    pub async fn count(&self) -> Result<()> {
        let counted = store::count_by_status(&self.inner.db).await?;
        for status in Status::ALL.map(Status::as_str) {
            let n = counted
                .iter()
                .find(|(s, _)| s.as_str() == status)
                .map_or(0, |&(_, n)| n);
            metrics::gauge!("orders_by_status", "status" => status).set(n as f64);
        }
        Ok(())
    }
}
