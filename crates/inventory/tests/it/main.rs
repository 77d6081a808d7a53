//! Inventory's store contract, run on SQLite always and on PostgreSQL and
//! MariaDB when their URLs are set: reservations under real concurrency
//! never oversell, all-or-nothing lines, expiry, idempotent settlements,
//! the ledger, and the events it acts on once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use emporium_inventory::Inventory;
use emporium_inventory::domain::{
    AdjustInput, Adjustment, LineInput, ReserveInput, ReserveRequest, Status,
};
use emporium_inventory::events::Consumer;
use emporium_inventory::stock::{Actor, InventoryError, Policy, Settle};
use emporium_inventory::store::StockFilter;
use emporium_platform::bus::{Envelope, Outbox};
use emporium_platform::cache::MemoryCache;
use emporium_testkit::{Backend, TestDatabase, on_every_backend};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use uuid::Uuid;

struct Fixture {
    inventory: Inventory,
    db: DatabaseConnection,
    _guard: TestDatabase,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let guard = TestDatabase::fresh(backend).await?;
    let db = emporium_platform::db::connect(&guard.url)
        .await
        .expect("connect");
    emporium_platform::db::migrate::<emporium_inventory::migrations::Migrator>(&db)
        .await
        .expect("migrate");
    let policy = Policy {
        reservation_ttl: Duration::from_secs(600),
        warehouses: vec![
            emporium_inventory::domain::Warehouse::parse("east").unwrap(),
            emporium_inventory::domain::Warehouse::parse("west").unwrap(),
        ],
        threshold: 5,
        cache_ttl: Duration::from_secs(30),
    };
    let inventory = Inventory::new(
        db.clone(),
        Outbox::new(),
        Arc::new(MemoryCache::new(100)),
        policy,
    );
    Some(Fixture {
        inventory,
        db,
        _guard: guard,
    })
}

fn actor() -> Actor {
    Actor::new("tester", "a test")
}

impl Fixture {
    async fn stock(&self, sku: &str, warehouse: &str, units: i64) {
        let adjustment = Adjustment::parse(&AdjustInput {
            sku: Some(sku.into()),
            warehouse: Some(warehouse.into()),
            delta: Some(units),
            reason: Some("received".into()),
            threshold: None,
        })
        .unwrap();
        self.inventory.adjust(&adjustment, &actor()).await.unwrap();
    }

    async fn reserve(
        &self,
        id: Option<Uuid>,
        lines: &[(&str, i64)],
        ttl_secs: Option<i64>,
    ) -> Result<emporium_inventory::domain::Reservation, InventoryError> {
        let request = ReserveRequest::parse(&ReserveInput {
            reservation_id: id.map(|i| i.to_string()),
            lines: Some(
                lines
                    .iter()
                    .map(|(sku, q)| LineInput {
                        sku: Some((*sku).into()),
                        quantity: Some(*q),
                    })
                    .collect(),
            ),
            ttl_secs,
            reference: Some("test".into()),
        })
        .unwrap();
        self.inventory.reserve(&request, &actor()).await
    }

    /// (on hand, reserved) summed over the SKU's warehouses.
    async fn totals(&self, sku: &str) -> (i64, i64) {
        let rows = self
            .inventory
            .list(
                &StockFilter {
                    sku: Some(sku.into()),
                    ..StockFilter::default()
                },
                1,
                100,
            )
            .await
            .unwrap()
            .items;
        (
            rows.iter().map(|r| r.on_hand).sum(),
            rows.iter().map(|r| r.reserved).sum(),
        )
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    /// Every row's counts equal the sum of its ledger.
    async fn assert_ledger_adds_up(&self) {
        let rows = self
            .inventory
            .list(&StockFilter::default(), 1, 100)
            .await
            .unwrap()
            .items;
        for row in rows {
            let sql = |column: &str| {
                format!(
                    "SELECT CAST(COALESCE(SUM({column}), 0) AS SIGNED) AS n FROM movements WHERE sku = '{}' AND warehouse = '{}'",
                    row.sku, row.warehouse
                )
            };
            let fix = |s: String| match self.db.get_database_backend() {
                sea_orm::DbBackend::MySql => s,
                _ => s.replace("AS SIGNED", "AS BIGINT"),
            };
            let on_hand = self.scalar(&fix(sql("on_hand_delta"))).await;
            let reserved = self.scalar(&fix(sql("reserved_delta"))).await;
            assert_eq!(
                (on_hand, reserved),
                (row.on_hand, row.reserved),
                "ledger of {} in {}",
                row.sku,
                row.warehouse
            );
        }
    }
}

async fn contract_concurrent_reservations_never_oversell(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    // 50 units in all: A 20 + 10, B 15 + 5.
    f.stock("A-1", "east", 20).await;
    f.stock("A-1", "west", 10).await;
    f.stock("B-2", "east", 15).await;
    f.stock("B-2", "west", 5).await;
    let inventory = f.inventory.clone();
    let attempts = (0..200).map(|i| {
        let inventory = inventory.clone();
        let sku = if i % 2 == 0 { "A-1" } else { "B-2" };
        tokio::spawn(async move {
            let request = ReserveRequest::parse(&ReserveInput {
                lines: Some(vec![LineInput {
                    sku: Some(sku.into()),
                    quantity: Some(1),
                }]),
                ..ReserveInput::default()
            })
            .unwrap();
            inventory.reserve(&request, &actor()).await
        })
    });
    let outcomes = futures::future::join_all(attempts).await;
    let mut won = 0;
    let mut refused = 0;
    for outcome in outcomes {
        match outcome.unwrap() {
            Ok(r) => {
                assert_eq!(r.status, Status::Active);
                won += 1;
            }
            Err(InventoryError::Insufficient { .. }) => refused += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((won, refused), (50, 150));
    assert_eq!(f.totals("A-1").await, (30, 30));
    assert_eq!(f.totals("B-2").await, (20, 20));
    let rows = f
        .inventory
        .list(&StockFilter::default(), 1, 100)
        .await
        .unwrap();
    assert!(rows.items.iter().all(|r| r.available == 0), "{rows:?}");
    assert_eq!(
        f.scalar("SELECT COUNT(*) AS n FROM reservations WHERE status = 'active'")
            .await,
        50
    );
    f.assert_ledger_adds_up().await;
}

async fn contract_a_line_that_cannot_be_met_reserves_nothing(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.stock("A-1", "east", 5).await;
    f.stock("B-2", "west", 1).await;
    let err = f
        .reserve(None, &[("A-1", 2), ("B-2", 2)], None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, InventoryError::Insufficient { sku, wanted: 2, available: 1 } if sku == "B-2"),
        "{err:?}"
    );
    let err = f
        .reserve(None, &[("A-1", 1), ("NOPE", 1)], None)
        .await
        .unwrap_err();
    assert!(matches!(err, InventoryError::UnknownSku(_)), "{err:?}");
    assert_eq!(f.totals("A-1").await, (5, 0));
    assert_eq!(f.totals("B-2").await, (1, 0));
    assert_eq!(f.scalar("SELECT COUNT(*) AS n FROM reservations").await, 0);
    assert_eq!(
        f.scalar("SELECT COUNT(*) AS n FROM movements WHERE kind <> 'adjust'")
            .await,
        0
    );
    // Lines of one SKU are added up; a line too big for one warehouse is
    // split from the most available down.
    f.stock("A-1", "west", 3).await;
    let r = f
        .reserve(None, &[("A-1", 4), ("a-1", 3)], None)
        .await
        .unwrap();
    let split: Vec<_> = r
        .allocations
        .iter()
        .map(|a| (a.warehouse.as_str().to_owned(), a.quantity))
        .collect();
    assert_eq!(split, vec![("east".into(), 5), ("west".into(), 2)]);
}

async fn contract_expired_reservations_are_released_and_cannot_be_committed(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.stock("A-1", "east", 3).await;
    let swept = f.reserve(None, &[("A-1", 2)], Some(1)).await.unwrap();
    let late = f.reserve(None, &[("A-1", 1)], Some(1)).await.unwrap();
    assert_eq!(f.totals("A-1").await, (3, 3));
    assert!(matches!(
        f.reserve(None, &[("A-1", 1)], None).await,
        Err(InventoryError::Insufficient { .. })
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Committing after expiry is refused and releases it, even before the
    // sweeper has come by.
    let err = f
        .inventory
        .settle(late.id, Settle::Commit, &actor())
        .await
        .unwrap_err();
    assert!(matches!(err, InventoryError::Expired), "{err:?}");
    assert_eq!(
        f.inventory.reservation(late.id).await.unwrap().status,
        Status::Expired
    );
    assert_eq!(f.inventory.sweep(100).await.unwrap(), 1);
    assert_eq!(f.inventory.sweep(100).await.unwrap(), 0);
    assert_eq!(
        f.inventory.reservation(swept.id).await.unwrap().status,
        Status::Expired
    );
    assert_eq!(f.totals("A-1").await, (3, 0));
    assert!(matches!(
        f.inventory.settle(swept.id, Settle::Commit, &actor()).await,
        Err(InventoryError::Expired)
    ));
    // The stock is available again.
    f.reserve(None, &[("A-1", 3)], None).await.unwrap();
    f.assert_ledger_adds_up().await;
}

async fn contract_settlements_are_idempotent_by_reservation_id(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.stock("A-1", "east", 10).await;
    let id = Uuid::now_v7();
    let first = f.reserve(Some(id), &[("A-1", 4)], None).await.unwrap();
    let again = f.reserve(Some(id), &[("A-1", 4)], None).await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(first.allocations, again.allocations);
    assert_eq!(f.totals("A-1").await, (10, 4));
    assert!(matches!(
        f.reserve(Some(id), &[("A-1", 5)], None).await,
        Err(InventoryError::IdReused)
    ));
    // The same id from 8 callers at once: one reservation.
    let other = Uuid::now_v7();
    let calls = (0..8).map(|_| {
        let inventory = f.inventory.clone();
        tokio::spawn(async move {
            let request = ReserveRequest::parse(&ReserveInput {
                reservation_id: Some(other.to_string()),
                lines: Some(vec![LineInput {
                    sku: Some("A-1".into()),
                    quantity: Some(2),
                }]),
                ..ReserveInput::default()
            })
            .unwrap();
            inventory.reserve(&request, &actor()).await
        })
    });
    for outcome in futures::future::join_all(calls).await {
        assert_eq!(outcome.unwrap().unwrap().id, other);
    }
    assert_eq!(f.totals("A-1").await, (10, 6));

    let committed = f
        .inventory
        .settle(id, Settle::Commit, &actor())
        .await
        .unwrap();
    assert_eq!(committed.status, Status::Committed);
    let twice = f
        .inventory
        .settle(id, Settle::Commit, &actor())
        .await
        .unwrap();
    assert_eq!(twice.status, Status::Committed);
    assert_eq!(f.totals("A-1").await, (6, 2));
    assert!(matches!(
        f.inventory.settle(id, Settle::Release, &actor()).await,
        Err(InventoryError::State("committed"))
    ));
    // A cancelled order puts committed units back, once.
    for _ in 0..2 {
        let restocked = f
            .inventory
            .settle(id, Settle::Cancel, &actor())
            .await
            .unwrap();
        assert_eq!(restocked.status, Status::Restocked);
    }
    assert_eq!(f.totals("A-1").await, (10, 2));
    for _ in 0..2 {
        let released = f
            .inventory
            .settle(other, Settle::Release, &actor())
            .await
            .unwrap();
        assert_eq!(released.status, Status::Released);
    }
    assert_eq!(f.totals("A-1").await, (10, 0));
    assert!(matches!(
        f.inventory.settle(other, Settle::Commit, &actor()).await,
        Err(InventoryError::State("released"))
    ));
    assert!(matches!(
        f.inventory
            .settle(Uuid::now_v7(), Settle::Release, &actor())
            .await,
        Err(InventoryError::NoSuchReservation)
    ));
    f.assert_ledger_adds_up().await;
    let ledger = f
        .inventory
        .movements(
            &emporium_inventory::domain::Sku::parse("A-1").unwrap(),
            None,
            1,
            100,
        )
        .await
        .unwrap();
    let kinds: Vec<_> = ledger.items.iter().rev().map(|m| m.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "adjust", "reserve", "reserve", "commit", "restock", "release"
        ]
    );
    assert!(ledger.items.iter().all(|m| m.actor == "tester"));
}

async fn contract_adjustments_never_go_below_what_is_reserved(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.stock("A-1", "east", 4).await;
    f.reserve(None, &[("A-1", 3)], None).await.unwrap();
    let remove = |delta| {
        Adjustment::parse(&AdjustInput {
            sku: Some("A-1".into()),
            warehouse: Some("east".into()),
            delta: Some(delta),
            reason: Some("damaged".into()),
            threshold: Some(2),
        })
        .unwrap()
    };
    assert!(matches!(
        f.inventory.adjust(&remove(-2), &actor()).await,
        Err(InventoryError::Refused(_))
    ));
    assert_eq!(f.totals("A-1").await, (4, 3));
    let row = f.inventory.adjust(&remove(-1), &actor()).await.unwrap();
    assert_eq!((row.on_hand, row.reserved, row.available), (3, 3, 0));
    assert!(row.low, "0 available is below a threshold of 2");
    let missing = Adjustment::parse(&AdjustInput {
        sku: Some("Z-9".into()),
        warehouse: Some("east".into()),
        delta: Some(-1),
        reason: Some("x".into()),
        threshold: None,
    })
    .unwrap();
    assert!(matches!(
        f.inventory.adjust(&missing, &actor()).await,
        Err(InventoryError::UnknownSku(_))
    ));
    let alerts = f
        .inventory
        .list(
            &StockFilter {
                low: true,
                ..StockFilter::default()
            },
            1,
            10,
        )
        .await
        .unwrap();
    assert_eq!(alerts.total, 1);
    // The cached answer follows every change.
    let sku = emporium_inventory::domain::Sku::parse("A-1").unwrap();
    assert_eq!(f.inventory.sku(&sku).await.unwrap().available, 0);
    f.stock("A-1", "west", 7).await;
    let cached = f.inventory.sku(&sku).await.unwrap();
    assert_eq!((cached.on_hand, cached.available), (10, 7));
    assert_eq!(cached.warehouses.len(), 2);
    f.assert_ledger_adds_up().await;
}

async fn contract_events_act_once(backend: Backend) {
    use emporium_platform::bus::Handler;
    let Some(f) = fixture(backend).await else {
        return;
    };
    let consumer = Consumer {
        inventory: f.inventory.clone(),
    };
    let created = Envelope::new(
        "product.created",
        "emporium.catalog",
        "products/1",
        serde_json::json!({ "id": "1", "sku": "new-1", "price_minor": 100 }),
    );
    consumer.handle(&created).await.unwrap();
    consumer.handle(&created).await.unwrap();
    let rows = f
        .inventory
        .list(&StockFilter::default(), 1, 10)
        .await
        .unwrap();
    let rows: Vec<_> = rows
        .items
        .iter()
        .map(|r| (r.sku.as_str(), r.warehouse.as_str(), r.on_hand))
        .collect();
    assert_eq!(rows, [("NEW-1", "east", 0), ("NEW-1", "west", 0)]);

    f.stock("NEW-1", "east", 5).await;
    let held = f.reserve(None, &[("NEW-1", 2)], None).await.unwrap();
    let cancelled = Envelope::new(
        "order.cancelled",
        "emporium.ordering",
        "orders/1",
        serde_json::json!({ "order_id": "1", "reservation_id": held.id }),
    );
    consumer.handle(&cancelled).await.unwrap();
    consumer.handle(&cancelled).await.unwrap();
    assert_eq!(
        f.inventory.reservation(held.id).await.unwrap().status,
        Status::Released
    );
    assert_eq!(f.totals("NEW-1").await, (5, 0));
    // A committed reservation is put back, once, even when the event comes
    // again under a new id.
    let sold = f.reserve(None, &[("NEW-1", 2)], None).await.unwrap();
    f.inventory
        .settle(sold.id, Settle::Commit, &actor())
        .await
        .unwrap();
    assert_eq!(f.totals("NEW-1").await, (3, 0));
    for _ in 0..2 {
        let event = Envelope::new(
            "order.cancelled",
            "emporium.ordering",
            "orders/2",
            serde_json::json!({ "order_id": "2", "reservation_id": sold.id }),
        );
        consumer.handle(&event).await.unwrap();
    }
    assert_eq!(f.totals("NEW-1").await, (5, 0));
    // An event about a reservation this service never made is dropped.
    let stranger = Envelope::new(
        "order.cancelled",
        "emporium.ordering",
        "orders/3",
        serde_json::json!({ "reservation_id": Uuid::now_v7() }),
    );
    consumer.handle(&stranger).await.unwrap();
    f.assert_ledger_adds_up().await;
    assert!(
        f.scalar("SELECT COUNT(*) AS n FROM outbox WHERE event_type = 'stock.updated'")
            .await
            >= 3
    );
}

on_every_backend!(
    contract_concurrent_reservations_never_oversell,
    contract_a_line_that_cannot_be_met_reserves_nothing,
    contract_expired_reservations_are_released_and_cannot_be_committed,
    contract_settlements_are_idempotent_by_reservation_id,
    contract_adjustments_never_go_below_what_is_reserved,
    contract_events_act_once,
);
