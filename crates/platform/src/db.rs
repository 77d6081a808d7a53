//! Relational stores chosen by URL at run time: SQLite, PostgreSQL, MariaDB.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;

use crate::config::Secret;
use crate::http::Check;

pub use sea_orm::DatabaseConnection as Db;

/// Opens a pool for `url`; for SQLite the file and its folder are created.
pub async fn connect(url: &Secret) -> anyhow::Result<DatabaseConnection> {
    let raw = url.expose();
    let scheme = raw.split(':').next().unwrap_or_default();
    if !matches!(
        scheme,
        "sqlite" | "postgres" | "postgresql" | "mysql" | "mariadb"
    ) {
        anyhow::bail!(
            "configuration: database url `{}` must start with sqlite:, postgres: or mysql:",
            url.masked()
        );
    }
    let raw = raw.replacen("mariadb://", "mysql://", 1);
    if scheme == "sqlite"
        && let Some(path) = raw
            .strip_prefix("sqlite://")
            .map(|p| p.split('?').next().unwrap_or(p))
        && !path.is_empty()
        && path != ":memory:"
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let mut options = ConnectOptions::new(raw);
    options
        .max_connections(if scheme == "sqlite" { 8 } else { 16 })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .create_if_missing(true)
        });
    Database::connect(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to database {}: {e}", url.masked()))
}

/// Applies every pending migration.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> anyhow::Result<()> {
    M::up(db, None)
        .await
        .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))
}

/// Readiness probe: one round trip.
pub fn check(db: DatabaseConnection) -> Check {
    Check::new("database", move || {
        let db = db.clone();
        async move { ping(&db).await }
    })
}

/// One round trip to the database.
pub async fn ping(db: &DatabaseConnection) -> Result<(), String> {
    db.execute_unprepared("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Page `page` (from 1) of `select`, `per_page` rows, and how many rows the
/// whole select has. The select carries its own order.
pub async fn paged<E, C>(
    conn: &C,
    select: sea_orm::Select<E>,
    page: u64,
    per_page: u64,
) -> Result<(Vec<E::Model>, u64), sea_orm::DbErr>
where
    E: sea_orm::EntityTrait,
    E::Model: Sync,
    C: ConnectionTrait,
{
    use sea_orm::{PaginatorTrait, QuerySelect};
    let total = select.clone().count(conn).await?;
    let items = select
        .offset((page - 1) * per_page)
        .limit(per_page)
        .all(conn)
        .await?;
    Ok((items, total))
}

pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Postgres => "postgres",
        DbBackend::MySql => "mysql",
        DbBackend::Sqlite => "sqlite",
        _ => "other",
    }
}

/// Starts a transaction that will write. On SQLite it takes the write lock
/// at once (`BEGIN IMMEDIATE`): a deferred transaction that reads and then
/// writes fails with "database is locked" when another writer got there
/// first, instead of waiting its turn. The writers of one SQLite file in
/// this process also wait their turn here, in order, rather than in
/// SQLite's busy handler, which polls the lock with sleeps of 1 to 100 ms.
pub async fn begin_write(db: &DatabaseConnection) -> Result<WriteTransaction, sea_orm::DbErr> {
    crate::faults::process().before_write().await;
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    let (options, turn) = match db.get_database_backend() {
        DbBackend::Sqlite => {
            let turn = match writer_queue(db) {
                Some(queue) => Some(
                    tokio::time::timeout(SQLITE_BUSY_TIMEOUT, queue.lock_owned())
                        .await
                        .map_err(|_| {
                            sea_orm::DbErr::Custom(
                                "database is locked: no turn to write within the busy timeout"
                                    .into(),
                            )
                        })?,
                ),
                None => None,
            };
            let options = TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            };
            (options, turn)
        }
        _ => (TransactionOptions::default(), None),
    };
    Ok(WriteTransaction {
        txn: db.begin_with_options(options).await?,
        _turn: turn,
    })
}

/// How long a SQLite writer waits for the lock (in this process's queue,
/// then in SQLite's busy handler) before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The queue of this process's writers to one SQLite file.
fn writer_queue(db: &DatabaseConnection) -> Option<std::sync::Arc<tokio::sync::Mutex<()>>> {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{Arc, LazyLock, Mutex};
    static QUEUES: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Mutex::default);
    let options = db.get_sqlite_connection_pool().connect_options();
    let file = options.get_filename();
    // Each connection to an in-memory database has a database of its own.
    if file.as_os_str().is_empty() || file.as_os_str() == ":memory:" {
        return None;
    }
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    let mut queues = QUEUES.lock().unwrap_or_else(|p| p.into_inner());
    Some(queues.entry(file).or_default().clone())
}

/// A transaction from [`begin_write`]: a [`sea_orm::DatabaseTransaction`]
/// that also holds this process's turn to write its SQLite file until it
/// commits or rolls back (or is dropped, which rolls back).
pub struct WriteTransaction {
    txn: sea_orm::DatabaseTransaction,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTransaction {
    pub async fn commit(self) -> Result<(), sea_orm::DbErr> {
        self.txn.commit().await
    }

    pub async fn rollback(self) -> Result<(), sea_orm::DbErr> {
        self.txn.rollback().await
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = sea_orm::DatabaseTransaction;

    fn deref(&self) -> &Self::Target {
        &self.txn
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> Result<sea_orm::ExecResult, sea_orm::DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<sea_orm::ExecResult, sea_orm::DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> Result<Option<sea_orm::QueryResult>, sea_orm::DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
        self.txn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}

/// An error the database raises to break a deadlock or a serialization
/// conflict (SQLSTATE 40001, 40P01): the transaction was rolled back and
/// running it again is the expected answer.
pub trait Conflict {
    fn is_conflict(&self) -> bool;
}

impl Conflict for sea_orm::DbErr {
    fn is_conflict(&self) -> bool {
        use sea_orm::{DbErr, RuntimeErr};
        let sqlx = match self {
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
            _ => return false,
        };
        sqlx.as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| code == "40001" || code == "40P01")
    }
}

/// Runs `transaction` again (at most five times, with a short growing
/// pause) while the database aborts it for a conflict with a concurrent
/// one. Each run must start its own transaction.
pub async fn retry_conflicts<T, E, F, Fut>(mut transaction: F) -> Result<T, E>
where
    E: Conflict,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        match transaction().await {
            Err(e) if e.is_conflict() && attempt < ATTEMPTS => {
                metrics::counter!("db_transaction_retries_total").increment(1);
                tokio::time::sleep(Duration::from_millis(
                    u64::from(attempt) * 5 + u64::from(jitter(10)),
                ))
                .await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A random number below `below` (milliseconds of pause), so that writers
/// that collided do not collide again in step.
pub fn jitter(below: u8) -> u8 {
    let mut byte = [0u8];
    let _ = aws_lc_rs::rand::fill(&mut byte);
    byte[0] % below.max(1)
}

/// A non-null timestamp column to the microsecond on every backend:
/// MariaDB's plain `timestamp` keeps whole seconds, which would make two
/// rows written in one second tie.
pub fn timestamp_column(
    name: &'static str,
    backend: DbBackend,
) -> sea_orm_migration::prelude::ColumnDef {
    use sea_orm_migration::prelude::{Alias, ColumnDef};
    let mut column = ColumnDef::new(name);
    match backend {
        DbBackend::MySql => column.custom(Alias::new("timestamp(6)")),
        _ => column.timestamp_with_time_zone(),
    };
    column.not_null().to_owned()
}
