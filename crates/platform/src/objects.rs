//! Object storage by URL: a local directory, S3 (MinIO), or memory.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

pub type SharedObjects = Arc<dyn ObjectStore>;

/// `file:///dir`, `s3://bucket` (credentials and endpoint from the usual
/// `AWS_*` variables) or `memory://`.
pub fn from_url(url: &str) -> anyhow::Result<SharedObjects> {
    if url == "memory://" {
        return Ok(Arc::new(InMemory::new()));
    }
    if let Some(dir) = url.strip_prefix("file://") {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create object directory {dir}: {e}"))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| anyhow::anyhow!("configuration: objects url `{url}`: {e}"))?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("s3://") {
        let store = AmazonS3Builder::from_env()
            .with_url(url)
            .build()
            .map_err(|e| anyhow::anyhow!("configuration: objects url `{url}`: {e}"))?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!("configuration: objects url `{url}` must be file://, s3:// or memory://")
}
