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

/// A key/value cache with expiry, and fencing for cache-aside: a reader that
/// took a [`Cache::fence`] before reading the database stores its copy with
/// [`Cache::set_fenced`], which does nothing if a writer called
/// [`Cache::invalidate`] in between. Without the fence, a reader that read
/// the old row just before a write committed would put it back in the cache
/// just after the writer removed it, and serve it until it expires.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()>;
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// The key's current generation.
    async fn fence(&self, key: &str) -> anyhow::Result<u64>;
    /// Stores `value` only if the key is still at generation `fence`.
    async fn set_fenced(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        fence: u64,
    ) -> anyhow::Result<bool>;
    /// Removes the value and moves the key to a new generation.
    async fn invalidate(&self, key: &str) -> anyhow::Result<()>;
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
        let manager = redis_connection(url, "cache").await?;
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

/// A Redis connection that reconnects by itself, with short timeouts;
/// `what` names the setting in errors.
pub async fn redis_connection(
    url: &Secret,
    what: &str,
) -> anyhow::Result<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url.expose())
        .map_err(|e| anyhow::anyhow!("configuration: {what} url `{}`: {e}", url.masked()))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {what} {}: {e}", url.masked()))
}

/// Cache-aside with the fence: the cached copy of `key` when there is
/// one, else `load`'s answer, stored unless a writer invalidated the key
/// while it was read. A failing cache is logged and read around; `metric`
/// counts hits and misses by `result`.
pub async fn read_through<T, E, F, Fut>(
    cache: &dyn Cache,
    key: &str,
    ttl: Duration,
    metric: &'static str,
    load: F,
) -> Result<T, E>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    match cache.get(key).await {
        Ok(Some(bytes)) => match serde_json::from_slice::<T>(&bytes) {
            Ok(value) => {
                metrics::counter!(metric, "result" => "hit").increment(1);
                return Ok(value);
            }
            Err(e) => tracing::warn!(error = %e, key, "cached copy unreadable; reading the store"),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, key, "cache read failed; reading the store"),
    }
    metrics::counter!(metric, "result" => "miss").increment(1);
    // Taken before the store is read: a write that commits after it makes
    // this copy too old to cache.
    let fence = cache.fence(key).await.ok();
    let value = load().await?;
    if let Some(fence) = fence {
        match serde_json::to_vec(&value) {
            Ok(bytes) => {
                if let Err(e) = cache.set_fenced(key, &bytes, ttl, fence).await {
                    tracing::warn!(error = %e, key, "cache write failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, key, "value not cacheable"),
        }
    }
    Ok(value)
}

/// [`read_through`] for several keys at once: the cached copies, then one
/// `load` of the indexes (into `keys`) that missed, which answers a value or
/// `None` (nothing there) for each, in that order. Values found are stored
/// under the same fence rule.
pub async fn read_through_many<T, E, F, Fut>(
    cache: &dyn Cache,
    keys: &[String],
    ttl: Duration,
    metric: &'static str,
    load: F,
) -> Result<Vec<Option<T>>, E>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnOnce(Vec<usize>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Option<T>>, E>>,
{
    let mut values: Vec<Option<T>> = Vec::with_capacity(keys.len());
    let mut missed = Vec::new();
    let mut fences = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let cached = match cache.get(key).await {
            Ok(Some(bytes)) => serde_json::from_slice::<T>(&bytes)
                .map_err(|e| tracing::warn!(error = %e, key, "cached copy unreadable; reading the store"))
                .ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, key, "cache read failed; reading the store");
                None
            }
        };
        let result = if cached.is_some() { "hit" } else { "miss" };
        metrics::counter!(metric, "result" => result).increment(1);
        if cached.is_none() {
            missed.push(i);
            fences.push(cache.fence(key).await.ok());
        }
        values.push(cached);
    }
    if missed.is_empty() {
        return Ok(values);
    }
    let loaded = load(missed.clone()).await?;
    for ((i, fence), value) in missed.into_iter().zip(fences).zip(loaded) {
        if let (Some(fence), Some(found)) = (fence, &value) {
            match serde_json::to_vec(found) {
                Ok(bytes) => {
                    if let Err(e) = cache.set_fenced(&keys[i], &bytes, ttl, fence).await {
                        tracing::warn!(error = %e, key = %keys[i], "cache write failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, key = %keys[i], "value not cacheable"),
            }
        }
        values[i] = value;
    }
    Ok(values)
}

/// Drops `key` after a write committed; a failure only leaves the copy to
/// expire with its ttl.
pub async fn invalidate_logged(cache: &dyn Cache, key: &str) {
    if let Err(e) = cache.invalidate(key).await {
        tracing::warn!(error = %e, key, "cache invalidation failed; entry expires with its ttl");
    }
}

pub fn check(cache: SharedCache) -> Check {
    Check::new("cache", move || {
        let cache = cache.clone();
        async move { cache.check().await }
    })
    .degradable()
}

/// How long a key's generation is remembered after its last invalidation;
/// far longer than any read takes.
const GENERATION_TTL_SECS: u64 = 24 * 3600;

pub struct RedisCache {
    manager: redis::aio::ConnectionManager,
    prefix: String,
}

impl RedisCache {
    fn value_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
    fn generation_key(&self, key: &str) -> String {
        format!("{}{key}#generation", self.prefix)
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        let mut conn = self.manager.clone();
        let value: Option<Vec<u8>> = conn.get(self.value_key(key)).await?;
        Ok(value.map(Bytes::from))
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        let mut conn = self.manager.clone();
        let () = conn
            .set_ex(self.value_key(key), value, ttl.as_secs().max(1))
            .await?;
        Ok(())
    }
    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let mut conn = self.manager.clone();
        let _: i64 = conn.del(self.value_key(key)).await?;
        Ok(())
    }
    async fn fence(&self, key: &str) -> anyhow::Result<u64> {
        let mut conn = self.manager.clone();
        let generation: Option<u64> = conn.get(self.generation_key(key)).await?;
        Ok(generation.unwrap_or(0))
    }
    async fn set_fenced(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        fence: u64,
    ) -> anyhow::Result<bool> {
        // Compare and set in one step on the server.
        let script = redis::Script::new(
            r"if tonumber(redis.call('GET', KEYS[2]) or '0') == tonumber(ARGV[3]) then
                redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
                return 1
              end
              return 0",
        );
        let mut conn = self.manager.clone();
        let stored: i64 = script
            .key(self.value_key(key))
            .key(self.generation_key(key))
            .arg(value)
            .arg(ttl.as_secs().max(1))
            .arg(fence)
            .invoke_async(&mut conn)
            .await?;
        Ok(stored == 1)
    }
    async fn invalidate(&self, key: &str) -> anyhow::Result<()> {
        let mut conn = self.manager.clone();
        let generation = self.generation_key(key);
        let () = redis::pipe()
            .atomic()
            .incr(&generation, 1)
            .ignore()
            .expire(&generation, GENERATION_TTL_SECS as i64)
            .ignore()
            .del(self.value_key(key))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
    async fn check(&self) -> Result<(), String> {
        ping(&self.manager).await
    }
}

/// Readiness of a Redis connection: one PING.
pub async fn ping(manager: &redis::aio::ConnectionManager) -> Result<(), String> {
    let mut conn = manager.clone();
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A value and when it stops being served.
type Entry = (Instant, Bytes);

#[derive(Default)]
struct MemoryState {
    entries: HashMap<String, Entry>,
    generations: HashMap<String, u64>,
}

/// A bounded map with expiry, for one process.
pub struct MemoryCache {
    state: Mutex<MemoryState>,
    capacity: usize,
}

impl MemoryCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(MemoryState::default()),
            capacity,
        }
    }

    fn state(&self) -> anyhow::Result<std::sync::MutexGuard<'_, MemoryState>> {
        self.state
            .lock()
            .map_err(|_| anyhow::anyhow!("cache lock poisoned"))
    }
}

impl MemoryState {
    fn insert(&mut self, capacity: usize, key: &str, value: &[u8], ttl: Duration) {
        if self.entries.len() >= capacity {
            let now = Instant::now();
            self.entries.retain(|_, (expires, _)| *expires > now);
            if self.entries.len() >= capacity {
                // Still full of live entries: start again rather than grow.
                self.entries.clear();
            }
        }
        self.entries.insert(
            key.to_owned(),
            (Instant::now() + ttl, Bytes::copy_from_slice(value)),
        );
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        let state = self.state()?;
        Ok(state
            .entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, v)| v.clone()))
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        self.state()?.insert(self.capacity, key, value, ttl);
        Ok(())
    }
    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.state()?.entries.remove(key);
        Ok(())
    }
    async fn fence(&self, key: &str) -> anyhow::Result<u64> {
        Ok(self.state()?.generations.get(key).copied().unwrap_or(0))
    }
    async fn set_fenced(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        fence: u64,
    ) -> anyhow::Result<bool> {
        let mut state = self.state()?;
        if state.generations.get(key).copied().unwrap_or(0) != fence {
            return Ok(false);
        }
        state.insert(self.capacity, key, value, ttl);
        Ok(true)
    }
    async fn invalidate(&self, key: &str) -> anyhow::Result<()> {
        let mut state = self.state()?;
        state.entries.remove(key);
        *state.generations.entry(key.to_owned()).or_insert(0) += 1;
        Ok(())
    }
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
}
