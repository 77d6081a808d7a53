//! The signing keys: kept in identity's database, sealed with a
//! key-encryption key, so that every replica signs with the same key,
//! rotated on a schedule, and published (as JWKS) until the last token a
//! retired key signed has expired.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use emporium_platform::auth::{Issuer, Verifier};
use emporium_platform::config::AuthSettings;
use emporium_platform::config::Secret;
use sea_orm::DatabaseConnection;

use crate::store::{self, KeyRow};

/// The key that signs now and the key set that verifies.
struct Ring {
    signing: Arc<Issuer>,
    jwks: String,
}

/// How a sealed key is stored: `aes256gcm:<kek id>:<base64 of nonce and
/// ciphertext>`. A row without the prefix is plain base64 from before
/// sealing (base64 has no `:`).
const SEALED: &str = "aes256gcm";

/// One key-encryption key and the id its ciphertexts carry (the first
/// bytes of its SHA-256, which say which key to open with and nothing of
/// the key).
struct Kek {
    id: String,
    key: LessSafeKey,
}

/// The key-encryption keys (AES-256-GCM): the first seals, every one opens,
/// so that an operator rolls the key by putting a new one first, waiting
/// for every replica to reseal, then dropping the old one. Without any,
/// keys are stored plain: development only, since identity refuses to start
/// on a production database that way.
#[derive(Clone, Default)]
pub struct Sealer {
    keks: Arc<[Kek]>,
}

impl Sealer {
    /// From keys written as base64 of 32 random bytes.
    pub fn new(keys: &[Secret]) -> anyhow::Result<Self> {
        let keks = keys
            .iter()
            .enumerate()
            .map(|(n, raw)| {
                let bytes = STANDARD
                    .decode(raw.expose().trim())
                    .ok()
                    .filter(|b| b.len() == 32)
                    .ok_or_else(|| {
                        anyhow::anyhow!("key-encryption key {} is not base64 of 32 bytes", n + 1)
                    })?;
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
                let id = digest.as_ref()[..4]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let key = UnboundKey::new(&AES_256_GCM, &bytes)
                    .map_err(|_| anyhow::anyhow!("key-encryption key {} is unusable", n + 1))?;
                Ok(Kek {
                    id,
                    key: LessSafeKey::new(key),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { keks: keks.into() })
    }

    /// A fresh key-encryption key, as [`Sealer::new`] reads it.
    pub fn generate_key() -> anyhow::Result<String> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
        Ok(STANDARD.encode(bytes))
    }

    pub fn is_empty(&self) -> bool {
        self.keks.is_empty()
    }

    /// The stored form of `pkcs8`, bound to its `kid` (a sealed key moved
    /// to another row does not open).
    fn seal(&self, kid: &str, pkcs8: &[u8]) -> anyhow::Result<String> {
        let Some(kek) = self.keks.first() else {
            return Ok(STANDARD.encode(pkcs8));
        };
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let mut sealed = pkcs8.to_vec();
        kek.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("signing key {kid} could not be sealed"))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(format!("{SEALED}:{}:{}", kek.id, STANDARD.encode(stored)))
    }

    /// The key stored in a row, and whether the row should be sealed anew
    /// (stored plain, or under a key that no longer comes first).
    fn open(&self, kid: &str, stored: &str) -> anyhow::Result<(Vec<u8>, bool)> {
        let Some(rest) = stored
            .strip_prefix(SEALED)
            .and_then(|r| r.strip_prefix(':'))
        else {
            let pkcs8 = STANDARD
                .decode(stored)
                .map_err(|e| anyhow::anyhow!("signing key {kid} is not base64: {e}"))?;
            return Ok((pkcs8, !self.is_empty()));
        };
        let (id, sealed) = rest
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("signing key {kid} is sealed in an unknown form"))?;
        let (position, kek) = self
            .keks
            .iter()
            .enumerate()
            .find(|(_, k)| k.id == id)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "signing key {kid} is sealed with key-encryption key {id}, which is not configured"
                )
            })?;
        let sealed = STANDARD
            .decode(sealed)
            .map_err(|e| anyhow::anyhow!("signing key {kid} is not base64: {e}"))?;
        if sealed.len() < NONCE_LEN {
            anyhow::bail!("signing key {kid} is truncated");
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow::anyhow!("signing key {kid} has a bad nonce"))?;
        let mut buffer = ciphertext.to_vec();
        let pkcs8 = kek
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer)
            .map_err(|_| anyhow::anyhow!("signing key {kid} does not open with key {id}"))?;
        Ok((pkcs8.to_vec(), position > 0))
    }
}

/// Where the keys live and how long they serve.
struct Keeper {
    db: DatabaseConnection,
    sealer: Sealer,
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
        sealer: Sealer,
        auth: AuthSettings,
        rotate_after: Duration,
        access_ttl: Duration,
        verifier: Option<Verifier>,
    ) -> anyhow::Result<Self> {
        let keeper = Keeper {
            db,
            sealer,
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
        // the key that replaced it is younger than `publish_for`. Every
        // row, published or retired, is sealed anew when it is plain or
        // under a key that no longer comes first.
        for (n, row) in rows.iter().enumerate() {
            let publish = n == 0 || rows[n - 1].created_at >= horizon;
            let (pkcs8, reseal) = match self.sealer.open(&row.kid, &row.private_key) {
                Ok(opened) => opened,
                Err(e) if !publish => {
                    tracing::warn!(kid = %row.kid, error = %e, "retired signing key not readable");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if reseal {
                store::reseal_key(&self.db, &row.kid, self.sealer.seal(&row.kid, &pkcs8)?).await?;
                tracing::info!(kid = %row.kid, "signing key sealed under the current key-encryption key");
            }
            if publish {
                published.push(Issuer::from_pkcs8(&self.auth, &pkcs8)?);
            }
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
                private_key: self.sealer.seal(issuer.kid(), &pkcs8)?,
                created_at: Utc::now(),
            },
        )
        .await?;
        tracing::info!(kid = issuer.kid(), "signing key made");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sealer(keys: &[&str]) -> Sealer {
        let keys: Vec<Secret> = keys.iter().map(|k| Secret::new(*k)).collect();
        Sealer::new(&keys).unwrap()
    }

    #[test]
    fn sealed_keys_open_only_with_their_key_and_their_kid() {
        let (old, new) = (
            Sealer::generate_key().unwrap(),
            Sealer::generate_key().unwrap(),
        );
        let secret = b"pkcs8 of an ed25519 key";
        let stored = sealer(&[&old]).seal("kid-1", secret).unwrap();
        assert!(stored.starts_with("aes256gcm:"), "{stored}");
        assert!(!stored.contains(&STANDARD.encode(secret)));
        assert_eq!(
            sealer(&[&old]).open("kid-1", &stored).unwrap(),
            (secret.to_vec(), false)
        );
        assert!(
            sealer(&[&old]).open("kid-2", &stored).is_err(),
            "bound to its kid"
        );
        assert!(sealer(&[&new]).open("kid-1", &stored).is_err());
        assert!(Sealer::default().open("kid-1", &stored).is_err());
        // Rolled: the old key still opens and asks for sealing anew.
        assert_eq!(
            sealer(&[&new, &old]).open("kid-1", &stored).unwrap(),
            (secret.to_vec(), true)
        );
        // Stored before sealing existed: read, and sealed when a key is set.
        let plain = STANDARD.encode(secret);
        assert_eq!(
            sealer(&[&new]).open("kid-1", &plain).unwrap(),
            (secret.to_vec(), true)
        );
        assert_eq!(
            Sealer::default().open("kid-1", &plain).unwrap(),
            (secret.to_vec(), false)
        );
        for bad in ["short", "c2hvcnQ="] {
            assert!(Sealer::new(&[Secret::new(bad)]).is_err(), "{bad}");
        }
    }
}
