//! `Idempotency-Key` for POSTs: the first complete answer to a key is kept
//! and given again to every repeat of the same request; the same key with
//! another request is refused; a repeat that arrives while the first is
//! still running waits for its answer. Keys live in Redis in production and
//! in the service's SQL database in `emporium up`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use crate::Problem;
use crate::config::Secret;

pub const HEADER: &str = "idempotency-key";

/// A kept answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub status: u16,
    pub body: String,
}

/// What a key holds when a request claims it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's now: run it, then `complete` or `release`.
    New,
    /// The same request was answered already.
    Replay(Recorded),
    /// The same request is running.
    InFlight,
    /// The key was used for another request.
    Mismatch,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` (already scoped to the caller) for the request whose
    /// digest is `fingerprint`.
    async fn claim(&self, key: &str, fingerprint: &str, ttl: Duration) -> anyhow::Result<Claim>;
    /// Keeps the answer of the request that claimed `key`.
    async fn complete(&self, key: &str, answer: &Recorded, ttl: Duration) -> anyhow::Result<()>;
    /// Frees `key` after a failure worth retrying (a 5xx).
    async fn release(&self, key: &str) -> anyhow::Result<()>;
    async fn check(&self) -> Result<(), String>;
}

pub type SharedIdempotency = Arc<dyn IdempotencyStore>;

/// The store `redis_url` names, else the SQL one on `db`.
pub async fn from_settings(
    redis_url: Option<&Secret>,
    prefix: &str,
    db: &DatabaseConnection,
) -> anyhow::Result<SharedIdempotency> {
    Ok(match redis_url {
        Some(url) if !url.expose().is_empty() => Arc::new(RedisKeys {
            manager: crate::cache::redis_connection(url, "idempotency redis_url").await?,
            prefix: format!("{prefix}:idempotency:"),
        }),
        _ => Arc::new(SqlKeys { db: db.clone() }),
    })
}

/// A readiness check: the key store is required (a payment without its
/// key could be taken twice).
pub fn check(store: SharedIdempotency, name: &'static str) -> crate::http::Check {
    crate::http::Check::new(name, move || {
        let store = store.clone();
        async move { store.check().await }
    })
}

/// The digest of a request: method, path and body. Stores never keep it as
/// it is: [`keyed`] turns it into a keyed digest first.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [method.as_bytes(), b" ", path.as_bytes(), b"\n", body] {
        context.update(part);
    }
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A store that keeps an HMAC-SHA256 of each fingerprint, under a key of
/// the service's, instead of the fingerprint itself. A body may hold a
/// card number, and card numbers are few enough to be guessed one by one
/// against a bare digest kept beside their last four digits; without the
/// key a kept digest tells nothing (decision 0019).
pub fn keyed(inner: SharedIdempotency, key: &Secret) -> SharedIdempotency {
    Arc::new(Keyed {
        inner,
        key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.expose().as_bytes()),
    })
}

struct Keyed {
    inner: SharedIdempotency,
    key: aws_lc_rs::hmac::Key,
}

impl Keyed {
    fn digest(&self, fingerprint: &str) -> String {
        aws_lc_rs::hmac::sign(&self.key, fingerprint.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[async_trait]
impl IdempotencyStore for Keyed {
    async fn claim(&self, key: &str, fingerprint: &str, ttl: Duration) -> anyhow::Result<Claim> {
        self.inner.claim(key, &self.digest(fingerprint), ttl).await
    }
    async fn complete(&self, key: &str, answer: &Recorded, ttl: Duration) -> anyhow::Result<()> {
        self.inner.complete(key, answer, ttl).await
    }
    async fn release(&self, key: &str) -> anyhow::Result<()> {
        self.inner.release(key).await
    }
    async fn check(&self) -> Result<(), String> {
        self.inner.check().await
    }
}

/// The key of [`keyed`]: `configured` when set, else the one kept in
/// `<data_dir>/<service>-fingerprint.key`, made there (readable by its
/// owner only) the first time. Replicas that share a key store must be
/// configured with one key: each data dir makes its own.
pub fn fingerprint_key(
    configured: Option<&Secret>,
    data_dir: &std::path::Path,
    service: &str,
) -> anyhow::Result<Secret> {
    if let Some(key) = configured.filter(|k| !k.expose().is_empty()) {
        return Ok(key.clone());
    }
    let path = data_dir.join(format!("{service}-fingerprint.key"));
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim())),
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for the fingerprint key"))?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(data_dir)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, key.as_bytes())?;
            tracing::info!(path = %path.display(), "fingerprint key made");
            Ok(Secret::new(key))
        }
        // Another process of this data dir made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fingerprint_key(None, data_dir, service)
        }
        Err(e) => Err(anyhow::anyhow!("cannot write {}: {e}", path.display())),
    }
}

/// The caller's key from the headers: `None` when absent; refused when it
/// is empty, longer than 255 characters or not visible ASCII.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Problem::bad_parameter(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// Runs `work` once per `(scope, key)`: with no key it just runs; with one,
/// a repeat gets the first answer (marked `Idempotent-Replayed: true`).
pub async fn once<F, Fut>(
    store: &dyn IdempotencyStore,
    scope: &str,
    key: Option<String>,
    fingerprint: &str,
    ttl: Duration,
    work: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, serde_json::Value), Problem>>,
{
    let Some(key) = key else {
        return answer(work().await);
    };
    let key = format!("{scope}:{key}");
    let waited = Instant::now();
    loop {
        match store.claim(&key, fingerprint, ttl).await {
            Err(e) => {
                tracing::warn!(error = %e, "idempotency store unavailable");
                return Problem::unavailable("idempotency store").into_response();
            }
            Ok(Claim::Mismatch) => {
                return Problem::new(
                    crate::ErrorCode::Unprocessable,
                    "this Idempotency-Key was used for another request",
                )
                .into_response();
            }
            Ok(Claim::Replay(recorded)) => return replay(recorded),
            Ok(Claim::InFlight) if waited.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Claim::InFlight) => {
                return Problem::conflict("a request with this Idempotency-Key is still running")
                    .into_response();
            }
            Ok(Claim::New) => break,
        }
    }
    let outcome = work().await;
    let response = answer(outcome);
    let status = response.status();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let kept = if status.is_server_error() {
        store.release(&key).await
    } else {
        let recorded = Recorded {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        store.complete(&key, &recorded, ttl).await
    };
    if let Err(e) = kept {
        tracing::warn!(error = %e, "idempotency key not settled; it expires with its ttl");
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

fn answer(outcome: Result<(StatusCode, serde_json::Value), Problem>) -> Response {
    match outcome {
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(problem) => problem.into_response(),
    }
}

fn replay(recorded: Recorded) -> Response {
    let status = StatusCode::from_u16(recorded.status).unwrap_or(StatusCode::OK);
    let kind = if status.is_success() {
        "application/json"
    } else {
        crate::error::PROBLEM_JSON
    };
    let mut response = (status, recorded.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(kind),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Keys in Redis: one hash per key (`fp`, `body`, `status`), expiring.
pub struct RedisKeys {
    manager: redis::aio::ConnectionManager,
    prefix: String,
}

/// Takes a free key, or says what it holds: 1 new; 2 and the answer; 3 in
/// flight; 4 another request.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1}
end
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return {4} end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {3} end
return {2, status, redis.call('HGET', KEYS[1], 'body')}
";

#[async_trait]
impl IdempotencyStore for RedisKeys {
    async fn claim(&self, key: &str, fingerprint: &str, ttl: Duration) -> anyhow::Result<Claim> {
        let mut conn = self.manager.clone();
        let reply: Vec<redis::Value> = redis::Script::new(CLAIM)
            .key(format!("{}{key}", self.prefix))
            .arg(fingerprint)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        let text = |v: Option<&redis::Value>| -> String {
            match v {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(redis::Value::Int(i)) => i.to_string(),
                _ => String::new(),
            }
        };
        Ok(match reply.first() {
            Some(redis::Value::Int(1)) => Claim::New,
            Some(redis::Value::Int(2)) => Claim::Replay(Recorded {
                status: text(reply.get(1)).parse().unwrap_or(200),
                body: text(reply.get(2)),
            }),
            Some(redis::Value::Int(3)) => Claim::InFlight,
            _ => Claim::Mismatch,
        })
    }

    async fn complete(&self, key: &str, answer: &Recorded, ttl: Duration) -> anyhow::Result<()> {
        let mut conn = self.manager.clone();
        let key = format!("{}{key}", self.prefix);
        redis::pipe()
            .atomic()
            .hset(&key, "status", answer.status)
            .ignore()
            .hset(&key, "body", &answer.body)
            .ignore()
            .pexpire(&key, ttl.as_millis() as i64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn release(&self, key: &str) -> anyhow::Result<()> {
        let mut conn = self.manager.clone();
        redis::cmd("DEL")
            .arg(format!("{}{key}", self.prefix))
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    async fn check(&self) -> Result<(), String> {
        crate::cache::ping(&self.manager).await
    }
}

pub mod key_row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub fingerprint: String,
        /// 0 while the first request runs.
        pub status: i32,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Keys in the service's own database (the `idempotency_keys` table of
/// [`IdempotencyMigration`]).
pub struct SqlKeys {
    db: DatabaseConnection,
}

impl SqlKeys {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl IdempotencyStore for SqlKeys {
    async fn claim(&self, key: &str, fingerprint: &str, ttl: Duration) -> anyhow::Result<Claim> {
        let now = Utc::now();
        // An expired key is free again.
        key_row::Entity::delete_many()
            .filter(key_row::Column::Key.eq(key))
            .filter(key_row::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        let inserted = key_row::Entity::insert(key_row::ActiveModel {
            key: Set(key.to_owned()),
            fingerprint: Set(fingerprint.to_owned()),
            status: Set(0),
            body: Set(String::new()),
            expires_at: Set(now + chrono::Duration::from_std(ttl)?),
        })
        .exec_without_returning(&self.db)
        .await;
        match inserted {
            Ok(_) => return Ok(Claim::New),
            Err(e)
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(row) = key_row::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(Claim::InFlight);
        };
        Ok(if row.fingerprint != fingerprint {
            Claim::Mismatch
        } else if row.status == 0 {
            Claim::InFlight
        } else {
            Claim::Replay(Recorded {
                status: row.status as u16,
                body: row.body,
            })
        })
    }

    async fn complete(&self, key: &str, answer: &Recorded, ttl: Duration) -> anyhow::Result<()> {
        key_row::Entity::update_many()
            .col_expr(
                key_row::Column::Status,
                Expr::value(i32::from(answer.status)),
            )
            .col_expr(key_row::Column::Body, Expr::value(answer.body.clone()))
            .col_expr(
                key_row::Column::ExpiresAt,
                Expr::value(Utc::now() + chrono::Duration::from_std(ttl)?),
            )
            .filter(key_row::Column::Key.eq(key))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn release(&self, key: &str) -> anyhow::Result<()> {
        key_row::Entity::delete_many()
            .filter(key_row::Column::Key.eq(key))
            .filter(key_row::Column::Status.eq(0))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn check(&self) -> Result<(), String> {
        crate::db::ping(&self.db).await
    }
}

/// The `idempotency_keys` table, for services that keep keys in SQL.
pub struct IdempotencyMigration;

impl sea_orm_migration::MigrationName for IdempotencyMigration {
    fn name(&self) -> &str {
        "m20261124_000000_idempotency_keys"
    }
}

#[async_trait]
impl sea_orm_migration::MigrationTrait for IdempotencyMigration {
    async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::*;
        let backend = manager.get_database_backend();
        manager
            .create_table(
                Table::create()
                    .table("idempotency_keys")
                    .if_not_exists()
                    .col(
                        ColumnDef::new("key")
                            .string_len(400)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("fingerprint").string_len(64).not_null())
                    .col(ColumnDef::new("status").integer().not_null())
                    .col(ColumnDef::new("body").text().not_null())
                    .col(crate::db::timestamp_column("expires_at", backend))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::*;
        manager
            .drop_table(
                Table::drop()
                    .table("idempotency_keys")
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use super::*;

    /// Remembers the fingerprints it is handed.
    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    #[async_trait]
    impl IdempotencyStore for Seen {
        async fn claim(&self, _: &str, fingerprint: &str, _: Duration) -> anyhow::Result<Claim> {
            self.0.lock().unwrap().push(fingerprint.to_owned());
            Ok(Claim::New)
        }
        async fn complete(&self, _: &str, _: &Recorded, _: Duration) -> anyhow::Result<()> {
            Ok(())
        }
        async fn release(&self, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
        async fn check(&self) -> Result<(), String> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn idempotency_fingerprints_are_kept_keyed_not_as_a_bare_digest_of_the_card() {
        let body = br#"{"card_number":"4242424242424242"}"#;
        let bare = fingerprint("POST", "/api/v1/payments", body);
        let seen = Arc::new(Seen::default());
        let mut kept = vec![];
        for key in ["one key", "one key", "another key"] {
            seen.0.lock().unwrap().clear();
            let store = keyed(seen.clone(), &Secret::new(key));
            store
                .claim("ada:k-1", &bare, Duration::from_secs(60))
                .await
                .unwrap();
            kept.push(seen.0.lock().unwrap()[0].clone());
        }
        assert!(kept.iter().all(|k| k != &bare && k.len() == 64), "{kept:?}");
        assert_eq!(kept[0], kept[1], "one key digests a request alike");
        assert_ne!(kept[0], kept[2], "another key digests it otherwise");
    }

    #[test]
    fn a_fingerprint_key_is_made_once_per_data_dir_for_its_owner_only() {
        let dir = std::env::temp_dir().join(format!("fingerprint-{}", uuid::Uuid::now_v7()));
        let made = fingerprint_key(None, &dir, "payment").unwrap();
        assert_eq!(made.expose().len(), 64);
        let again = fingerprint_key(None, &dir, "payment").unwrap();
        assert_eq!(made.expose(), again.expose());
        let other = fingerprint_key(None, &dir, "ordering").unwrap();
        assert_ne!(made.expose(), other.expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("payment-fingerprint.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let configured = Secret::new("from the settings");
        assert_eq!(
            fingerprint_key(Some(&configured), &dir, "payment")
                .unwrap()
                .expose(),
            "from the settings"
        );
        assert!(!format!("{made:?}").contains(made.expose()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
