//! Where baskets are kept: Redis in production, SQL (SQLite) in `emporium
//! up`. Both keep one record per user with a version, and both write only
//! if the version is still the one read (compare-and-set), so that two
//! concurrent changes never overwrite each other.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use emporium_platform::Problem;
use emporium_platform::config::Secret;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
};

use crate::domain::Stored;

/// A stored basket and the version it was read at (0: none yet).
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned {
    pub basket: Option<Stored>,
    pub version: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("stored basket unreadable: {0}")]
    Corrupt(String),
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Redis(e) => {
                tracing::warn!(error = %e, "redis failed");
                Problem::unavailable("redis")
            }
            StoreError::Db(e) => Problem::from(e),
            StoreError::Corrupt(_) => Problem::internal(err),
        }
    }
}

#[async_trait]
pub trait BasketStore: Send + Sync + 'static {
    async fn load(&self, owner: &str) -> Result<Versioned, StoreError>;
    /// Writes `basket` if the stored version is still `expected`; false
    /// when another change got there first.
    async fn save(&self, owner: &str, basket: &Stored, expected: u64) -> Result<bool, StoreError>;
    /// Empties the basket and moves it to a new version, so that a change
    /// computed from what was there before cannot land. The SQL store does
    /// it in `txn` (the one that records the event); Redis does it at
    /// once, and doing it twice is harmless.
    async fn delete(&self, owner: &str, txn: &DatabaseTransaction) -> Result<(), StoreError>;
    /// Readiness: the store answers.
    async fn check(&self) -> Result<(), String>;
}

fn encode(basket: &Stored) -> Result<String, StoreError> {
    serde_json::to_string(basket).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode(raw: &str) -> Result<Stored, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// One hash per basket (`v`: version, `body`: JSON) that expires when left
/// alone for the configured time.
pub struct RedisStore {
    manager: redis::aio::ConnectionManager,
    prefix: String,
    ttl: Duration,
}

/// Sets the body and the next version only if the version is the one read.
const SAVE: &str = r"
local current = redis.call('HGET', KEYS[1], 'v') or '0'
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'body', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// Drops the body and moves to the next version (the key keeps its expiry).
const EMPTY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], 'body')
return redis.call('HINCRBY', KEYS[1], 'v', 1)
";

impl RedisStore {
    pub async fn connect(url: &Secret, prefix: &str, ttl: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            manager: emporium_platform::cache::redis_connection(url, "basket.redis_url").await?,
            prefix: format!("{prefix}:"),
            ttl,
        })
    }
    fn key(&self, owner: &str) -> String {
        format!("{}{owner}", self.prefix)
    }
}

#[async_trait]
impl BasketStore for RedisStore {
    async fn load(&self, owner: &str) -> Result<Versioned, StoreError> {
        let mut conn = self.manager.clone();
        let (version, body): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(self.key(owner))
            .arg("v")
            .arg("body")
            .query_async(&mut conn)
            .await?;
        Ok(Versioned {
            basket: body.as_deref().map(decode).transpose()?,
            version: version.unwrap_or(0),
        })
    }

    async fn save(&self, owner: &str, basket: &Stored, expected: u64) -> Result<bool, StoreError> {
        let mut conn = self.manager.clone();
        let saved: i32 = redis::Script::new(SAVE)
            .key(self.key(owner))
            .arg(expected)
            .arg(expected + 1)
            .arg(encode(basket)?)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(saved == 1)
    }

    async fn delete(&self, owner: &str, _txn: &DatabaseTransaction) -> Result<(), StoreError> {
        let mut conn = self.manager.clone();
        let _: i64 = redis::Script::new(EMPTY)
            .key(self.key(owner))
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn check(&self) -> Result<(), String> {
        emporium_platform::cache::ping(&self.manager).await
    }
}

pub mod row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "baskets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub owner: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub version: i64,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One row per basket in the service's own database. An expired or emptied
/// row reads as no basket but keeps its version, so the next write still
/// compares.
pub struct SqlStore {
    db: sea_orm::DatabaseConnection,
    ttl: Duration,
}

impl SqlStore {
    pub fn new(db: sea_orm::DatabaseConnection, ttl: Duration) -> Self {
        Self { db, ttl }
    }
    fn expiry(&self) -> chrono::DateTime<Utc> {
        Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(30))
    }
}

#[async_trait]
impl BasketStore for SqlStore {
    async fn load(&self, owner: &str) -> Result<Versioned, StoreError> {
        let Some(found) = row::Entity::find_by_id(owner.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(Versioned {
                basket: None,
                version: 0,
            });
        };
        let live = found.expires_at > Utc::now() && !found.body.is_empty();
        Ok(Versioned {
            basket: live.then(|| decode(&found.body)).transpose()?,
            version: found.version as u64,
        })
    }

    async fn save(&self, owner: &str, basket: &Stored, expected: u64) -> Result<bool, StoreError> {
        let body = encode(basket)?;
        if expected == 0 {
            let inserted = row::Entity::insert(row::ActiveModel {
                owner: Set(owner.to_owned()),
                body: Set(body),
                version: Set(1),
                expires_at: Set(self.expiry()),
            })
            .exec_without_returning(&self.db)
            .await;
            return match inserted {
                Ok(_) => Ok(true),
                Err(e)
                    if matches!(
                        e.sql_err(),
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                    ) =>
                {
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            };
        }
        let updated = row::Entity::update_many()
            .col_expr(row::Column::Body, Expr::value(body))
            .col_expr(row::Column::Version, Expr::col(row::Column::Version).add(1))
            .col_expr(row::Column::ExpiresAt, Expr::value(self.expiry()))
            .filter(row::Column::Owner.eq(owner))
            .filter(row::Column::Version.eq(expected as i64))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    async fn delete(&self, owner: &str, txn: &DatabaseTransaction) -> Result<(), StoreError> {
        row::Entity::update_many()
            .col_expr(row::Column::Body, Expr::value(""))
            .col_expr(row::Column::Version, Expr::col(row::Column::Version).add(1))
            .filter(row::Column::Owner.eq(owner))
            .exec(txn)
            .await?;
        Ok(())
    }

    async fn check(&self) -> Result<(), String> {
        emporium_platform::db::ping(&self.db).await
    }
}
