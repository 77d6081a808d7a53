//! The basket store contract, on SQLite always and on PostgreSQL, MariaDB
//! and Redis when their URLs are set: compare-and-set writes, emptying that
//! moves the version on, and 50 concurrent writers that lose nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use emporium_basket::domain::{Stored, StoredLine};
use emporium_basket::store::{BasketStore, RedisStore, SqlStore};
use emporium_platform::config::Secret;
use emporium_platform::money::MoneyJson;
use emporium_testkit::{Backend, TestDatabase, on_every_backend};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

struct Fixture {
    store: Arc<dyn BasketStore>,
    db: DatabaseConnection,
    _guard: TestDatabase,
}

/// A fresh migrated database, or `None` (and a printed skip) when the
/// backend's server is not configured.
async fn database(backend: Backend) -> Option<(DatabaseConnection, TestDatabase)> {
    let guard = TestDatabase::fresh(backend).await?;
    let db = emporium_platform::db::connect(&guard.url).await.unwrap();
    emporium_platform::db::migrate::<emporium_basket::migrations::Migrator>(&db)
        .await
        .unwrap();
    Some((db, guard))
}

async fn sql(backend: Backend) -> Option<Fixture> {
    let (db, guard) = database(backend).await?;
    Some(Fixture {
        store: Arc::new(SqlStore::new(db.clone(), Duration::from_secs(3600))),
        db,
        _guard: guard,
    })
}

async fn redis() -> Option<Fixture> {
    let url = emporium_testkit::server_url(emporium_testkit::REDIS)?;
    let (db, guard) = database(Backend::Sqlite).await?;
    let prefix = format!("test-basket-{}", Uuid::now_v7().simple());
    let store = RedisStore::connect(&Secret::new(url), &prefix, Duration::from_secs(3600))
        .await
        .unwrap();
    Some(Fixture {
        store: Arc::new(store),
        db,
        _guard: guard,
    })
}

fn line(n: u128, quantity: i64) -> StoredLine {
    StoredLine {
        product_id: Uuid::from_u128(n),
        sku: format!("SKU-{n}"),
        name: format!("Product {n}"),
        unit_price: MoneyJson {
            amount: "2.50".into(),
            currency: "USD".into(),
        },
        quantity,
    }
}

fn basket(lines: Vec<StoredLine>) -> Stored {
    Stored {
        lines,
        updated_at: Some(chrono::Utc::now()),
        settled: Vec::new(),
    }
}

async fn writes_compare_and_set(f: Fixture) {
    let store = f.store.as_ref();
    let empty = store.load("ada").await.unwrap();
    assert_eq!((empty.basket.clone(), empty.version), (None, 0));
    assert!(
        store
            .save("ada", &basket(vec![line(1, 1)]), 0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .save("ada", &basket(vec![line(2, 1)]), 0)
            .await
            .unwrap(),
        "a second first write loses"
    );
    let read = store.load("ada").await.unwrap();
    assert_eq!(read.version, 1);
    assert_eq!(read.basket.unwrap().lines, vec![line(1, 1)]);
    assert!(
        store
            .save("ada", &basket(vec![line(1, 2)]), 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .save("ada", &basket(vec![line(1, 9)]), 1)
            .await
            .unwrap()
    );
    // Emptying moves the version on: a change computed before it fails.
    let txn = emporium_platform::db::begin_write(&f.db).await.unwrap();
    store.delete("ada", &txn).await.unwrap();
    txn.commit().await.unwrap();
    let after = store.load("ada").await.unwrap();
    assert_eq!(after.basket, None);
    assert_eq!(after.version, 3);
    assert!(
        !store
            .save("ada", &basket(vec![line(1, 3)]), 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .save("ada", &basket(vec![line(5, 1)]), 3)
            .await
            .unwrap()
    );
    // Another user's basket is another record.
    assert_eq!(store.load("bob").await.unwrap().version, 0);
    assert!(store.check().await.is_ok());
}

/// 50 writers each add one unit by read, change, compare-and-set, again
/// until it lands: the basket ends with all 50.
async fn concurrent_writers_lose_nothing(f: Fixture) {
    let writers = (0..50u128).map(|i| {
        let store = f.store.clone();
        tokio::spawn(async move {
            loop {
                let read = store.load("ada").await.unwrap();
                let mut lines = read.basket.map(|b| b.lines).unwrap_or_default();
                let product = Uuid::from_u128(i % 5);
                match lines.iter_mut().find(|l| l.product_id == product) {
                    Some(l) => l.quantity += 1,
                    None => lines.push(line(i % 5, 1)),
                }
                if store
                    .save("ada", &basket(lines), read.version)
                    .await
                    .unwrap()
                {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.unwrap();
    }
    let read = f.store.load("ada").await.unwrap();
    let lines = read.basket.unwrap().lines;
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l.quantity == 10), "{lines:?}");
    assert_eq!(read.version, 50);
}

async fn sql_writes_compare_and_set(backend: Backend) {
    if let Some(f) = sql(backend).await {
        writes_compare_and_set(f).await;
    }
}

async fn sql_concurrent_writers_lose_nothing(backend: Backend) {
    if let Some(f) = sql(backend).await {
        concurrent_writers_lose_nothing(f).await;
    }
}

on_every_backend!(
    sql_writes_compare_and_set,
    sql_concurrent_writers_lose_nothing
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_writes_compare_and_set() {
    if let Some(f) = redis().await {
        writes_compare_and_set(f).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_concurrent_writers_lose_nothing() {
    if let Some(f) = redis().await {
        concurrent_writers_lose_nothing(f).await;
    }
}
