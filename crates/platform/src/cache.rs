//! The cache behind one trait: Redis for replicas that share it, memory for
//! one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;

use crate::config::Secret;
use crate::http::Check;

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()>;
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    async fn check(&self) -> Result<(), String>;
}

pub type SharedCache = Arc<dyn Cache>;

/// The cache that `url` names, its keys prefixed with `namespace:`.
pub async fn from_url(url: &Secret, namespace: &str) -> anyhow::Result<SharedCache> {
    let raw = url.expose();
    if raw == "memory://" || raw.is_empty() {
        return Ok(Arc::new(MemoryCache::new(50_000)));
    }
    if raw.starts_with("redis://") || raw.starts_with("rediss://") {
        let client = redis::Client::open(raw)
            .map_err(|e| anyhow::anyhow!("configuration: cache url `{}`: {e}", url.masked()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let manager = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to cache {}: {e}", url.masked()))?;
        return Ok(Arc::new(RedisCache {
            manager,
            prefix: format!("{namespace}:"),
        }));
    }
    anyhow::bail!(
        "configuration: cache url `{}` must be memory:// or redis://",
        url.masked()
    )
}

pub fn check(cache: SharedCache) -> Check {
    Check::new("cache", move || {
        let cache = cache.clone();
        async move { cache.check().await }
    })
    .degradable()
}

pub struct RedisCache {
    manager: redis::aio::ConnectionManager,
    prefix: String,
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        let mut conn = self.manager.clone();
        let value: Option<Vec<u8>> = conn.get(format!("{}{key}", self.prefix)).await?;
        Ok(value.map(Bytes::from))
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        let mut conn = self.manager.clone();
        let () = conn
            .set_ex(format!("{}{key}", self.prefix), value, ttl.as_secs().max(1))
            .await?;
        Ok(())
    }
    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let mut conn = self.manager.clone();
        let _: i64 = conn.del(format!("{}{key}", self.prefix)).await?;
        Ok(())
    }
    async fn check(&self) -> Result<(), String> {
        let mut conn = self.manager.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// A value and when it stops being served.
type Entry = (Instant, Bytes);

/// A bounded map with expiry, for one process.
pub struct MemoryCache {
    entries: Mutex<HashMap<String, Entry>>,
    capacity: usize,
}

impl MemoryCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        let entries = self
            .entries
            .lock()
            .map_err(|_| anyhow::anyhow!("cache lock poisoned"))?;
        Ok(entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, v)| v.clone()))
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| anyhow::anyhow!("cache lock poisoned"))?;
        if entries.len() >= self.capacity {
            let now = Instant::now();
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= self.capacity {
                // Still full of live entries: start again rather than grow.
                entries.clear();
            }
        }
        entries.insert(
            key.to_owned(),
            (Instant::now() + ttl, Bytes::copy_from_slice(value)),
        );
        Ok(())
    }
    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.entries
            .lock()
            .map_err(|_| anyhow::anyhow!("cache lock poisoned"))?
            .remove(key);
        Ok(())
    }
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
}
