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
                .busy_timeout(Duration::from_secs(10))
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
        async move {
            db.execute_unprepared("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
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
/// first, instead of waiting its turn.
pub async fn begin_write(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    let options = match db.get_database_backend() {
        DbBackend::Sqlite => TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        },
        _ => TransactionOptions::default(),
    };
    db.begin_with_options(options).await
}
