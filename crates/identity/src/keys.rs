//! The signing keys: kept in identity's database so that every replica
//! signs with the same key, rotated on a schedule, and published (as JWKS)
//! until the last token a retired key signed has expired.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use emporium_platform::auth::{Issuer, Verifier};
use emporium_platform::config::AuthSettings;
use sea_orm::DatabaseConnection;

use crate::store::{self, KeyRow};

/// The key that signs now and the key set that verifies.
struct Ring {
    signing: Arc<Issuer>,
    jwks: String,
}

/// Where the keys live and how long they serve.
struct Keeper {
    db: DatabaseConnection,
    auth: AuthSettings,
    rotate_after: Duration,
    /// How long a retired key stays published: the access token lifetime
    /// and a margin for clock skew.
    publish_for: Duration,
}

#[derive(Clone)]
pub struct KeyRing {
    keeper: Arc<Keeper>,
    /// Where the set is handed over in this process (the shared verifier).
    verifier: Option<Verifier>,
    ring: Arc<RwLock<Arc<Ring>>>,
}

impl KeyRing {
    /// Loads the stored keys, making the first one (or a new one when the
    /// newest is due for rotation).
    pub async fn load(
        db: DatabaseConnection,
        auth: AuthSettings,
        rotate_after: Duration,
        access_ttl: Duration,
        verifier: Option<Verifier>,
    ) -> anyhow::Result<Self> {
        let keeper = Keeper {
            db,
            auth,
            rotate_after,
            publish_for: access_ttl + Duration::from_secs(60),
        };
        let ring = keeper.read().await?;
        if let Some(verifier) = &verifier {
            verifier.publish(&ring.jwks)?;
        }
        Ok(Self {
            keeper: Arc::new(keeper),
            verifier,
            ring: Arc::new(RwLock::new(Arc::new(ring))),
        })
    }

    /// The issuer of the key that signs now.
    pub fn signing(&self) -> Arc<Issuer> {
        self.current().signing.clone()
    }

    /// The published key set, as JSON.
    pub fn jwks(&self) -> String {
        self.current().jwks.clone()
    }

    fn current(&self) -> Arc<Ring> {
        match self.ring.read() {
            Ok(ring) => ring.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the keys again (another replica may have rotated), rotating
    /// first when the newest key is older than `rotate_after`.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let ring = self.keeper.read().await?;
        if let Some(verifier) = &self.verifier {
            verifier.publish(&ring.jwks)?;
        }
        let ring = Arc::new(ring);
        match self.ring.write() {
            Ok(mut slot) => *slot = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
        Ok(())
    }

    /// Makes a new signing key now, whatever the schedule, and reloads.
    pub async fn rotate(&self) -> anyhow::Result<()> {
        self.keeper.rotate().await?;
        self.reload().await
    }
}

impl Keeper {
    async fn read(&self) -> anyhow::Result<Ring> {
        let mut rows = store::keys(&self.db).await?;
        let due = rows.first().is_none_or(|newest| {
            (Utc::now() - newest.created_at)
                .to_std()
                .unwrap_or_default()
                >= self.rotate_after
        });
        if due {
            self.rotate().await?;
            rows = store::keys(&self.db).await?;
        }
        let horizon = Utc::now() - chrono::Duration::from_std(self.publish_for)?;
        let mut published = Vec::new();
        // Newest first: the first signs; each older one is published while
        // the key that replaced it is younger than `publish_for`.
        for (n, row) in rows.iter().enumerate() {
            if n > 0 && rows[n - 1].created_at < horizon {
                break;
            }
            let pkcs8 = STANDARD
                .decode(&row.private_key)
                .map_err(|e| anyhow::anyhow!("signing key {} is not base64: {e}", row.kid))?;
            published.push(Issuer::from_pkcs8(&self.auth, &pkcs8)?);
        }
        let jwks = serde_json::json!({
            "keys": published.iter().map(Issuer::jwk).collect::<Vec<_>>()
        })
        .to_string();
        let signing = published
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no signing key after rotation"))?;
        Ok(Ring {
            signing: Arc::new(signing),
            jwks,
        })
    }

    /// Makes a new signing key. Two replicas rotating at once make two
    /// keys; the newer signs everywhere after the next reload and the
    /// other stays published, so no token is left without its key.
    async fn rotate(&self) -> anyhow::Result<()> {
        let (issuer, pkcs8) = Issuer::generate(&self.auth)?;
        store::insert_key(
            &self.db,
            KeyRow {
                kid: issuer.kid().to_owned(),
                private_key: STANDARD.encode(&pkcs8),
                created_at: Utc::now(),
            },
        )
        .await?;
        tracing::info!(kid = issuer.kid(), "signing key made");
        Ok(())
    }
}
