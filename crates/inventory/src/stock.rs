//! Use cases: read stock, adjust it, and hold it for orders with
//! reservations that are committed, released, expired or restocked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use emporium_platform::bus::{Envelope, Outbox};
use emporium_platform::cache::{SharedCache, invalidate_logged, read_through};
use emporium_platform::db::{self, Conflict, Db};
use emporium_platform::http::Page;
use emporium_platform::{FieldError, Problem};
use sea_orm::{DatabaseTransaction, DbErr};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    Adjustment, Allocation, MAX_QUANTITY, Movement, Reservation, ReserveRequest, Sku, Status,
    StockLevel, Warehouse, allocate,
};
use crate::events;
use crate::store::{self, LineRow, MovementRow, ReservationRow, StockFilter, StockRow};

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("no stock is kept for SKU {0}")]
    UnknownSku(String),
    #[error("no reservation has this id")]
    NoSuchReservation,
    #[error("not enough stock of {sku}: {wanted} wanted, {available} available")]
    Insufficient {
        sku: String,
        wanted: i64,
        available: i64,
    },
    #[error("the reservation expired")]
    Expired,
    #[error("the reservation is {0}")]
    State(&'static str),
    #[error("this reservation id was used for other lines")]
    IdReused,
    #[error("{0}")]
    Refused(String),
    #[error("a stock row changed under its lock")]
    Raced,
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
}

impl Conflict for InventoryError {
    fn is_conflict(&self) -> bool {
        matches!(self, InventoryError::Db(e) if e.is_conflict())
            || matches!(self, InventoryError::Raced)
    }
}

impl From<InventoryError> for Problem {
    fn from(err: InventoryError) -> Self {
        match err {
            InventoryError::UnknownSku(_) | InventoryError::NoSuchReservation => {
                Problem::not_found(err.to_string())
            }
            InventoryError::Insufficient { ref sku, .. } => {
                let mut problem = Problem::conflict(err.to_string());
                problem.errors = vec![FieldError {
                    field: sku.clone(),
                    message: "not enough stock".into(),
                }];
                problem
            }
            InventoryError::Expired
            | InventoryError::State(_)
            | InventoryError::IdReused
            | InventoryError::Refused(_) => Problem::conflict(err.to_string()),
            InventoryError::Db(e) => Problem::from(e),
            InventoryError::Raced | InventoryError::Encode { .. } => Problem::internal(err),
        }
    }
}

pub type Result<T, E = InventoryError> = std::result::Result<T, E>;

/// What inventory is told at start.
#[derive(Clone, Debug)]
pub struct Policy {
    /// How long a reservation is held when the caller does not say.
    pub reservation_ttl: Duration,
    /// Where a new SKU gets its rows (at zero).
    pub warehouses: Vec<Warehouse>,
    /// The low-stock threshold of a new row.
    pub threshold: i64,
    pub cache_ttl: Duration,
}

/// The stock of one SKU: each warehouse and the sum, as the cache keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkuStock {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub warehouses: Vec<LevelView>,
}

/// One stock row as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelView {
    pub sku: String,
    pub warehouse: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub threshold: i64,
    pub low: bool,
    pub updated_at: chrono::DateTime<Utc>,
}

impl From<&StockRow> for LevelView {
    fn from(row: &StockRow) -> Self {
        let available = row.on_hand - row.reserved;
        Self {
            sku: row.sku.clone(),
            warehouse: row.warehouse.clone(),
            on_hand: row.on_hand,
            reserved: row.reserved,
            available,
            threshold: row.threshold,
            low: available < row.threshold,
            updated_at: row.updated_at,
        }
    }
}

/// Who changed stock, and why, for the ledger.
#[derive(Clone, Debug)]
pub struct Actor {
    pub who: String,
    pub why: String,
}

impl Actor {
    pub fn new(who: impl Into<String>, why: impl Into<String>) -> Self {
        let clip = |s: String, n: usize| s.chars().take(n).collect::<String>();
        Self {
            who: clip(who.into(), 64),
            why: clip(why.into(), 400),
        }
    }
}

/// What a settlement does to an active reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Release,
    Commit,
    Expire,
    /// Its order was cancelled: release it while active, restock it once
    /// committed.
    Cancel,
}

fn level(row: &StockRow) -> Result<StockLevel> {
    let bad = |m: String| InventoryError::Db(DbErr::Custom(format!("stored stock row: {m}")));
    Ok(StockLevel {
        sku: Sku::parse(&row.sku).map_err(bad)?,
        warehouse: Warehouse::parse(&row.warehouse).map_err(bad)?,
        on_hand: row.on_hand,
        reserved: row.reserved,
        threshold: row.threshold,
        updated_at: row.updated_at,
    })
}

fn reservation(row: ReservationRow, lines: Vec<LineRow>) -> Result<Reservation> {
    let bad = |m: String| InventoryError::Db(DbErr::Custom(format!("stored reservation: {m}")));
    let allocations = lines
        .into_iter()
        .map(|l| {
            Ok(Allocation {
                sku: Sku::parse(&l.sku).map_err(bad)?,
                warehouse: Warehouse::parse(&l.warehouse).map_err(bad)?,
                quantity: l.quantity,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Reservation {
        id: Uuid::parse_str(&row.id).map_err(|e| bad(e.to_string()))?,
        status: Status::parse(&row.status).ok_or_else(|| bad(row.status.clone()))?,
        reference: row.reference,
        allocations,
        expires_at: row.expires_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn cache_key(sku: &str) -> String {
    format!("stock:{sku}")
}

/// The changes of one transaction, published and reflected once it commits.
#[derive(Default)]
struct Effects {
    events: Vec<Envelope>,
    touched: BTreeMap<(String, String), StockRow>,
}

#[derive(Clone)]
pub struct Inventory {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    outbox: Outbox,
    cache: SharedCache,
    policy: Policy,
}

impl Inventory {
    pub fn new(db: Db, outbox: Outbox, cache: SharedCache, policy: Policy) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                outbox,
                cache,
                policy,
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// A page of stock rows in (SKU, warehouse) order.
    pub async fn list(
        &self,
        filter: &StockFilter,
        page: u64,
        per_page: u64,
    ) -> Result<Page<LevelView>> {
        let (rows, total) = store::list_stock(&self.inner.db, filter, page, per_page).await?;
        Ok(Page {
            items: rows.iter().map(LevelView::from).collect(),
            page,
            per_page,
            total,
        })
    }

    /// One SKU's stock, from the cache when it holds it. Never used to
    /// decide a reservation: those read the locked rows.
    pub async fn sku(&self, sku: &Sku) -> Result<SkuStock> {
        read_through(
            self.inner.cache.as_ref(),
            &cache_key(sku.as_str()),
            self.inner.policy.cache_ttl,
            "inventory_cache_requests_total",
            || async {
                let rows = store::rows_of(&self.inner.db, &[sku.as_str()]).await?;
                if rows.is_empty() {
                    return Err(InventoryError::UnknownSku(sku.as_str().to_owned()));
                }
                let warehouses: Vec<LevelView> = rows.iter().map(LevelView::from).collect();
                Ok(SkuStock {
                    sku: sku.as_str().to_owned(),
                    on_hand: warehouses.iter().map(|w| w.on_hand).sum(),
                    reserved: warehouses.iter().map(|w| w.reserved).sum(),
                    available: warehouses.iter().map(|w| w.available).sum(),
                    warehouses,
                })
            },
        )
        .await
    }

    /// The rows of `skus` as stored now (for gRPC `GetStock`).
    pub async fn levels(&self, skus: &[Sku]) -> Result<Vec<LevelView>> {
        let keys: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        Ok(store::rows_of(&self.inner.db, &keys)
            .await?
            .iter()
            .map(LevelView::from)
            .collect())
    }

    pub async fn movements(
        &self,
        sku: &Sku,
        warehouse: Option<&Warehouse>,
        page: u64,
        per_page: u64,
    ) -> Result<Page<MovementRow>> {
        let (items, total) = store::movements(
            &self.inner.db,
            sku.as_str(),
            warehouse.map(Warehouse::as_str),
            page,
            per_page,
        )
        .await?;
        if total == 0
            && store::rows_of(&self.inner.db, &[sku.as_str()])
                .await?
                .is_empty()
        {
            return Err(InventoryError::UnknownSku(sku.as_str().to_owned()));
        }
        Ok(Page {
            items,
            page,
            per_page,
            total,
        })
    }

    pub async fn reservation(&self, id: Uuid) -> Result<Reservation> {
        let (row, lines) = store::find_reservation(&self.inner.db, &id.to_string())
            .await?
            .ok_or(InventoryError::NoSuchReservation)?;
        reservation(row, lines)
    }

    /// Changes the units on hand of one row (made at zero when it is new
    /// and the change adds); never below what is reserved.
    pub async fn adjust(&self, adjustment: &Adjustment, actor: &Actor) -> Result<LevelView> {
        let started = Instant::now();
        let outcome = db::retry_conflicts(|| self.try_adjust(adjustment, actor)).await;
        observe("adjust", started);
        outcome
    }

    async fn try_adjust(&self, adjustment: &Adjustment, actor: &Actor) -> Result<LevelView> {
        let (sku, warehouse) = (adjustment.sku.as_str(), adjustment.warehouse.as_str());
        let txn = db::begin_write(&self.inner.db).await?;
        let mut row = match store::lock_row(&txn, sku, warehouse).await? {
            Some(row) => row,
            None if adjustment.delta > 0 => {
                let threshold = adjustment.threshold.unwrap_or(self.inner.policy.threshold);
                store::insert_row(&txn, sku, warehouse, threshold).await?;
                store::lock_row(&txn, sku, warehouse)
                    .await?
                    .ok_or(InventoryError::Raced)?
            }
            None => return Err(InventoryError::UnknownSku(format!("{sku} in {warehouse}"))),
        };
        if let Some(threshold) = adjustment.threshold {
            store::set_threshold(&txn, sku, warehouse, threshold).await?;
            row.threshold = threshold;
        }
        let mut effects = Effects::default();
        let after = apply(
            &txn,
            &row,
            Movement::Adjust,
            adjustment.delta,
            None,
            actor,
            &mut effects,
        )
        .await?;
        self.commit(txn, effects).await?;
        Ok(LevelView::from(&after))
    }

    /// Holds every line or none, under the reservation's id: the same id
    /// again answers the first reservation.
    pub async fn reserve(&self, request: &ReserveRequest, actor: &Actor) -> Result<Reservation> {
        let started = Instant::now();
        let mut outcome = db::retry_conflicts(|| self.try_reserve(request, actor)).await;
        if matches!(&outcome, Err(InventoryError::Db(e)) if is_duplicate(e)) {
            // Another request made this reservation while this one ran.
            outcome = self
                .replay(request)
                .await
                .and_then(|r| r.ok_or(InventoryError::Refused("reservation vanished".into())));
        }
        observe("reserve", started);
        let label = match &outcome {
            Ok(_) => "reserved",
            Err(InventoryError::Insufficient { .. }) => "insufficient",
            Err(_) => "refused",
        };
        metrics::counter!("inventory_reservations_total", "outcome" => label).increment(1);
        outcome
    }

    async fn replay(&self, request: &ReserveRequest) -> Result<Option<Reservation>> {
        let Some((row, lines)) =
            store::find_reservation(&self.inner.db, &request.id.to_string()).await?
        else {
            return Ok(None);
        };
        let found = reservation(row, lines)?;
        if found.wanted() != request.lines {
            return Err(InventoryError::IdReused);
        }
        Ok(Some(found))
    }

    async fn try_reserve(&self, request: &ReserveRequest, actor: &Actor) -> Result<Reservation> {
        if let Some(found) = self.replay(request).await? {
            return Ok(found);
        }
        let txn = db::begin_write(&self.inner.db).await?;
        let skus: Vec<&str> = request.lines.keys().map(Sku::as_str).collect();
        let rows = store::lock_skus(&txn, &skus).await?;
        let mut plan: Vec<(&StockRow, i64)> = vec![];
        for (sku, wanted) in &request.lines {
            let of_sku: Vec<&StockRow> = rows.iter().filter(|r| r.sku == sku.as_str()).collect();
            if of_sku.is_empty() {
                return Err(InventoryError::UnknownSku(sku.as_str().to_owned()));
            }
            let levels = of_sku
                .iter()
                .map(|r| level(r))
                .collect::<Result<Vec<_>>>()?;
            let Some(split) = allocate(*wanted, &levels) else {
                return Err(InventoryError::Insufficient {
                    sku: sku.as_str().to_owned(),
                    wanted: *wanted,
                    available: levels.iter().map(StockLevel::available).sum(),
                });
            };
            for (warehouse, quantity) in split {
                let row = of_sku
                    .iter()
                    .find(|r| r.warehouse == warehouse.as_str())
                    .ok_or(InventoryError::Raced)?;
                plan.push((row, quantity));
            }
        }
        plan.sort_by(|a, b| (&a.0.sku, &a.0.warehouse).cmp(&(&b.0.sku, &b.0.warehouse)));
        let now = Utc::now();
        let ttl = request
            .ttl_secs
            .map(|s| Duration::from_secs(s.unsigned_abs()))
            .unwrap_or(self.inner.policy.reservation_ttl);
        let id = request.id.to_string();
        let header = ReservationRow {
            id: id.clone(),
            status: Status::Active.as_str().into(),
            reference: request.reference.clone(),
            expires_at: now
                + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(15)),
            created_at: now,
            updated_at: now,
        };
        let lines: Vec<LineRow> = plan
            .iter()
            .map(|(row, quantity)| LineRow {
                reservation_id: id.clone(),
                sku: row.sku.clone(),
                warehouse: row.warehouse.clone(),
                quantity: *quantity,
            })
            .collect();
        store::insert_reservation(&txn, header.clone(), lines.clone()).await?;
        let mut effects = Effects::default();
        for (row, quantity) in &plan {
            apply(
                &txn,
                row,
                Movement::Reserve,
                *quantity,
                Some(&id),
                actor,
                &mut effects,
            )
            .await?;
        }
        self.commit(txn, effects).await?;
        reservation(header, lines)
    }

    /// Releases, commits, expires or cancels a reservation; repeating a
    /// settlement answers the reservation as it is.
    pub async fn settle(&self, id: Uuid, how: Settle, actor: &Actor) -> Result<Reservation> {
        let started = Instant::now();
        let outcome = db::retry_conflicts(|| async {
            let txn = db::begin_write(&self.inner.db).await?;
            let (settled, effects) = settle_in(&txn, id, how, actor).await?;
            self.commit(txn, effects).await?;
            settled
        })
        .await;
        observe(
            match how {
                Settle::Release => "release",
                Settle::Commit => "commit",
                Settle::Expire => "expire",
                Settle::Cancel => "cancel",
            },
            started,
        );
        outcome
    }

    /// Settles within a transaction the caller commits (an inbox claim);
    /// the caller then calls [`Inventory::after_commit`] with the effects.
    pub(crate) async fn settle_within(
        &self,
        txn: &DatabaseTransaction,
        id: Uuid,
        how: Settle,
        actor: &Actor,
    ) -> Result<Pending> {
        let (_, effects) = settle_in(txn, id, how, actor).await?;
        self.write_events(txn, &effects).await?;
        Ok(Pending(effects))
    }

    /// Adds zeroed rows for a new SKU in every configured warehouse.
    pub(crate) async fn add_sku_within(&self, txn: &DatabaseTransaction, sku: &Sku) -> Result<()> {
        for warehouse in &self.inner.policy.warehouses {
            store::insert_row(
                txn,
                sku.as_str(),
                warehouse.as_str(),
                self.inner.policy.threshold,
            )
            .await?;
        }
        Ok(())
    }

    /// Releases what expired, at most `limit` reservations; returns how many.
    pub async fn sweep(&self, limit: u64) -> Result<usize> {
        let due = store::expired(&self.inner.db, Utc::now(), limit).await?;
        let mut released = 0;
        for id in due {
            let Ok(id) = Uuid::parse_str(&id) else {
                continue;
            };
            let actor = Actor::new("system", "the reservation expired");
            match self.settle(id, Settle::Expire, &actor).await {
                Ok(r) if r.status == Status::Expired => released += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, reservation_id = %id, "expired reservation not released")
                }
            }
        }
        if released > 0 {
            metrics::counter!("inventory_reservations_expired_total").increment(released as u64);
        }
        Ok(released)
    }

    /// Sets the stock gauges from the store: every row's level and the
    /// number of rows below their threshold.
    pub async fn refresh_gauges(&self) -> Result<()> {
        for row in store::all_rows(&self.inner.db, 10_000).await? {
            gauge(&row);
        }
        self.count_low().await
    }

    /// Sets `inventory_low_stock_items`.
    pub async fn count_low(&self) -> Result<()> {
        metrics::gauge!("inventory_low_stock_items")
            .set(store::count_low(&self.inner.db).await? as f64);
        Ok(())
    }

    /// Whether no stock has ever moved (rows made at zero for new
    /// products do not count).
    pub async fn never_moved(&self) -> Result<bool> {
        Ok(store::count_movements(&self.inner.db).await? == 0)
    }

    async fn write_events(&self, txn: &DatabaseTransaction, effects: &Effects) -> Result<()> {
        for event in &effects.events {
            self.inner.outbox.enqueue(txn, event).await?;
        }
        Ok(())
    }

    async fn commit(&self, txn: db::WriteTransaction, effects: Effects) -> Result<()> {
        self.write_events(&txn, &effects).await?;
        txn.commit().await?;
        self.after_commit(Pending(effects)).await;
        Ok(())
    }

    /// Drops cached copies of what changed, updates the rows' gauges and
    /// wakes the relay (the low-stock count is the sweeper's, off the
    /// request path).
    pub(crate) async fn after_commit(&self, Pending(effects): Pending) {
        let mut skus: Vec<&str> = effects.touched.keys().map(|(s, _)| s.as_str()).collect();
        skus.dedup();
        for sku in skus {
            invalidate_logged(self.inner.cache.as_ref(), &cache_key(sku)).await;
        }
        for row in effects.touched.values() {
            gauge(row);
        }
        if !effects.events.is_empty() {
            self.inner.outbox.wake();
        }
    }
}

/// Effects of a transaction its caller commits.
pub(crate) struct Pending(Effects);

fn is_duplicate(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

fn observe(operation: &'static str, started: Instant) {
    metrics::histogram!("inventory_operations_duration_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
}

fn gauge(row: &StockRow) {
    metrics::gauge!("inventory_stock_level", "sku" => row.sku.clone(), "warehouse" => row.warehouse.clone())
        .set((row.on_hand - row.reserved) as f64);
}

/// Moves one locked row by `movement` and writes it to the ledger; refuses
/// a change that would reserve more than is on hand or go below zero.
async fn apply(
    txn: &DatabaseTransaction,
    before: &StockRow,
    movement: Movement,
    quantity: i64,
    reservation_id: Option<&str>,
    actor: &Actor,
    effects: &mut Effects,
) -> Result<StockRow> {
    let key = (before.sku.clone(), before.warehouse.clone());
    // A row touched earlier in this transaction has moved since it was read.
    let before = effects.touched.get(&key).unwrap_or(before).clone();
    let (on_hand_delta, reserved_delta) = movement.deltas(quantity);
    let on_hand = before.on_hand + on_hand_delta;
    let reserved = before.reserved + reserved_delta;
    if reserved < 0 || on_hand < reserved || on_hand > MAX_QUANTITY {
        return Err(match movement {
            Movement::Adjust => InventoryError::Refused(format!(
                "{} in {} would have {on_hand} on hand with {reserved} reserved",
                before.sku, before.warehouse
            )),
            _ => InventoryError::Insufficient {
                sku: before.sku.clone(),
                wanted: quantity,
                available: before.on_hand - before.reserved,
            },
        });
    }
    let now = Utc::now();
    if !store::set_counts(txn, &before, on_hand, reserved, now).await? {
        return Err(InventoryError::Raced);
    }
    store::insert_movement(
        txn,
        MovementRow {
            id: Uuid::now_v7().to_string(),
            sku: before.sku.clone(),
            warehouse: before.warehouse.clone(),
            kind: movement.as_str().into(),
            on_hand_delta,
            reserved_delta,
            on_hand_after: on_hand,
            reserved_after: reserved,
            reservation_id: reservation_id.map(str::to_owned),
            actor: actor.who.clone(),
            reason: actor.why.clone(),
            created_at: now,
        },
    )
    .await?;
    let after = StockRow {
        on_hand,
        reserved,
        updated_at: now,
        ..before.clone()
    };
    if on_hand_delta != 0 {
        effects.events.push(events::stock_updated(&after)?);
    }
    let was_low = before.on_hand - before.reserved < before.threshold;
    if !was_low && on_hand - reserved < after.threshold {
        effects.events.push(events::stock_low(&after)?);
    }
    effects.touched.insert(key, after.clone());
    Ok(after)
}

/// The settlement inside `txn`. A commit of an expired reservation
/// expires it (the returned effects) and answers [`InventoryError::Expired`].
async fn settle_in(
    txn: &DatabaseTransaction,
    id: Uuid,
    how: Settle,
    actor: &Actor,
) -> Result<(Result<Reservation>, Effects)> {
    let key = id.to_string();
    let (row, lines) = store::lock_reservation(txn, &key)
        .await?
        .ok_or(InventoryError::NoSuchReservation)?;
    let current = reservation(row.clone(), lines.clone())?;
    let now = Utc::now();
    let (movement, to) = match (how, current.status) {
        (Settle::Commit, Status::Active) if row.expires_at <= now => {
            (Movement::Expire, Status::Expired)
        }
        (Settle::Commit, Status::Active) => (Movement::Commit, Status::Committed),
        (Settle::Expire, Status::Active) => (Movement::Expire, Status::Expired),
        (Settle::Release | Settle::Cancel, Status::Active) => (Movement::Release, Status::Released),
        (Settle::Cancel, Status::Committed) => (Movement::Restock, Status::Restocked),
        (Settle::Commit, Status::Committed)
        | (Settle::Release, Status::Released | Status::Expired)
        | (Settle::Expire, _)
        | (Settle::Cancel, Status::Released | Status::Expired | Status::Restocked) => {
            return Ok((Ok(current), Effects::default()));
        }
        (Settle::Commit, Status::Expired) => return Err(InventoryError::Expired),
        (_, status) => return Err(InventoryError::State(status.as_str())),
    };
    let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
    let rows = store::lock_skus(txn, &skus).await?;
    let mut effects = Effects::default();
    for line in &lines {
        let row = rows
            .iter()
            .find(|r| r.sku == line.sku && r.warehouse == line.warehouse)
            .ok_or(InventoryError::Raced)?;
        apply(
            txn,
            row,
            movement,
            line.quantity,
            Some(&key),
            actor,
            &mut effects,
        )
        .await?;
    }
    if !store::set_status(txn, &key, current.status.as_str(), to.as_str(), now).await? {
        return Err(InventoryError::Raced);
    }
    let settled = Reservation {
        status: to,
        updated_at: now,
        ..current
    };
    if how == Settle::Commit && to == Status::Expired {
        return Ok((Err(InventoryError::Expired), effects));
    }
    Ok((Ok(settled), effects))
}
