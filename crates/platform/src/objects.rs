//! Object storage by URL: a local directory, S3 (MinIO, or any S3 API), or
//! memory.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;

use crate::config::Secret;
use crate::http::Check;

pub type SharedObjects = Arc<dyn ObjectStore>;

/// `file:///dir`, `memory://`, or
/// `s3://[ACCESS_KEY:SECRET_KEY@]bucket[/prefix][?option=value&…]`.
///
/// For S3 the usual `AWS_*` variables are read first (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT`, `AWS_REGION`, `AWS_ALLOW_HTTP`,
/// …), then the URL's: credentials in its user info (masked wherever the
/// setting is printed, as a database password is), and in its query any
/// other option of object_store's S3 store by name (`endpoint`, `region`,
/// `virtual_hosted_style_request`, `allow_http`, …). An `http://`
/// endpoint in the URL allows plain HTTP to it (MinIO inside a private
/// network); requests are path-style unless
/// `virtual_hosted_style_request=true`. A prefix keeps every object under
/// it, for a bucket shared with other uses.
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
        let shown = Secret::new(url).masked();
        let (builder, prefix) = s3_builder(AmazonS3Builder::from_env(), url)
            .map_err(|why| anyhow::anyhow!("configuration: objects url `{shown}`: {why}"))?;
        let store = builder
            .build()
            .map_err(|e| anyhow::anyhow!("configuration: objects url `{shown}`: {e}"))?;
        return Ok(match prefix {
            Some(prefix) => Arc::new(PrefixStore::new(store, prefix)),
            None => Arc::new(store),
        });
    }
    anyhow::bail!("configuration: objects url `{url}` must be file://, s3:// or memory://")
}

/// Readiness of the object store: a listing under a prefix nothing is
/// stored at (one request, an empty answer). Fails when the store is away,
/// refuses the credentials or has no such bucket. Degradable: a service
/// whose images cannot be stored still serves everything else.
pub fn check(objects: SharedObjects) -> Check {
    Check::new("objects", move || {
        let objects = objects.clone();
        async move { answers(objects.as_ref()).await }
    })
    .degradable()
}

async fn answers(objects: &dyn ObjectStore) -> Result<(), String> {
    use futures::StreamExt;
    let probe = object_store::path::Path::from("readiness-probe");
    match objects.list(Some(&probe)).next().await {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e.to_string()),
    }
}

/// Options that are secrets: in the user info, where they are masked, not
/// in the query, where they would be printed.
const SECRET_OPTIONS: &[AmazonS3ConfigKey] = &[
    AmazonS3ConfigKey::AccessKeyId,
    AmazonS3ConfigKey::SecretAccessKey,
    AmazonS3ConfigKey::Token,
];

/// `builder` with the bucket, credentials and options of an `s3://` URL,
/// and the URL's path as a prefix, if any.
fn s3_builder(
    builder: AmazonS3Builder,
    url: &str,
) -> Result<(AmazonS3Builder, Option<String>), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let bucket = parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or("names no bucket")?;
    let mut builder = builder.with_bucket_name(bucket);
    if !parsed.username().is_empty() {
        let secret = parsed
            .password()
            .ok_or("has an access key without its secret key (`s3://KEY:SECRET@bucket`)")?;
        builder = builder
            .with_access_key_id(decoded(parsed.username())?)
            .with_secret_access_key(decoded(secret)?);
    }
    for (name, value) in parsed.query_pairs() {
        let key: AmazonS3ConfigKey = name
            .parse()
            .map_err(|_| format!("`{name}` is not an option of the S3 store"))?;
        if SECRET_OPTIONS.contains(&key) {
            return Err(format!(
                "`{name}` is a credential: give it as `s3://KEY:SECRET@bucket` or in AWS_* variables"
            ));
        }
        if key == AmazonS3ConfigKey::Endpoint && value.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        builder = builder.with_config(key, value);
    }
    let prefix = parsed.path().trim_matches('/');
    Ok((builder, (!prefix.is_empty()).then(|| prefix.to_owned())))
}

/// A percent-encoded part of the user info, decoded (`+` stays `+`).
fn decoded(part: &str) -> Result<String, String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = part
                .get(at + 1..at + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a bad %-escape in its user info")?;
            out.push(hex);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "has user info that is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn options(url: &str) -> Result<(AmazonS3Builder, Option<String>), String> {
        s3_builder(AmazonS3Builder::new(), url)
    }

    #[test]
    fn an_s3_url_carries_bucket_credentials_endpoint_and_prefix() {
        let (builder, prefix) = options(
            "s3://minio:se%2Fc+ret@shop-images/catalog/?endpoint=http://minio:9000&region=eu-west-3",
        )
        .unwrap();
        let get = |key| builder.get_config_value(&key);
        assert_eq!(
            get(AmazonS3ConfigKey::Bucket).as_deref(),
            Some("shop-images")
        );
        assert_eq!(
            get(AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("minio")
        );
        assert_eq!(
            get(AmazonS3ConfigKey::SecretAccessKey).as_deref(),
            Some("se/c+ret")
        );
        assert_eq!(
            get(AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://minio:9000")
        );
        assert_eq!(get(AmazonS3ConfigKey::Region).as_deref(), Some("eu-west-3"));
        assert_eq!(
            get("allow_http".parse().unwrap()).as_deref(),
            Some("true"),
            "an http endpoint written in the URL is allowed"
        );
        assert_eq!(
            get(AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(),
            Some("false"),
            "path-style requests, as MinIO takes them"
        );
        assert_eq!(prefix.as_deref(), Some("catalog"));
        assert!(builder.build().is_ok());
    }

    #[test]
    fn credentials_stay_out_of_the_query_and_unknown_options_are_refused() {
        for (url, why) in [
            ("s3://b?secret_access_key=x", "credential"),
            ("s3://b?aws_access_key_id=x", "credential"),
            ("s3://b?endpiont=http://x", "not an option"),
            ("s3://key@b", "without its secret"),
            ("s3://", "no bucket"),
        ] {
            let refused = options(url).err().unwrap_or_default();
            assert!(refused.contains(why), "{url}: {refused}");
        }
    }

    #[test]
    fn a_refused_url_is_shown_without_its_secret() {
        let refused = from_url("s3://key:hunter2@b?nonsense=1")
            .err()
            .unwrap()
            .to_string();
        assert!(!refused.contains("hunter2"), "{refused}");
        assert!(refused.contains("nonsense"), "{refused}");
    }

    #[tokio::test]
    async fn a_directory_or_memory_store_answers_its_readiness_probe() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("objects").display());
        for store in [from_url(&url).unwrap(), from_url("memory://").unwrap()] {
            assert_eq!(answers(store.as_ref()).await, Ok(()));
        }
    }

    #[tokio::test]
    async fn an_s3_store_that_does_not_answer_fails_its_readiness_probe() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let store = from_url(&format!("s3://k:s@b?endpoint={endpoint}&region=us-east-1")).unwrap();
        // The client retries a refused connection; readiness gives every
        // check 2 s, and so does this test.
        let probed = tokio::time::timeout(Duration::from_secs(2), answers(store.as_ref())).await;
        assert!(!matches!(probed, Ok(Ok(()))), "{probed:?}");
    }
}
