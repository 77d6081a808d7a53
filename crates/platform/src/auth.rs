//! Access tokens: verification against published keys (JWKS) for every
//! service, and the signing half for whoever issues them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthSettings;
use crate::error::{ErrorCode, Problem};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Checks signature, expiry and issuer of access tokens.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    keys: RwLock<HashMap<String, DecodingKey>>,
    jwks_url: Option<String>,
    issuer: String,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Verifier {
    /// Keys from `auth.jwks_file` or `auth.jwks_url`; with neither, every
    /// token is refused.
    pub async fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        let verifier = Self::empty(&settings.issuer, settings.jwks_url.clone());
        if let Some(path) = &settings.jwks_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("configuration: auth.jwks_file {}: {e}", path.display())
            })?;
            verifier.load_jwks(&text).map_err(|e| {
                anyhow::anyhow!("configuration: auth.jwks_file {}: {e}", path.display())
            })?;
        }
        if verifier.inner.jwks_url.is_some()
            && let Err(e) = verifier.refresh().await
        {
            // Identity may start after us; keys are fetched again on demand.
            tracing::warn!(error = %e, "jwks not reachable yet");
        }
        Ok(verifier)
    }

    pub fn from_jwks(issuer: &str, jwks: &str) -> anyhow::Result<Self> {
        let verifier = Self::empty(issuer, None);
        verifier.load_jwks(jwks)?;
        Ok(verifier)
    }

    fn empty(issuer: &str, jwks_url: Option<String>) -> Self {
        Self {
            inner: Arc::new(VerifierInner {
                keys: RwLock::new(HashMap::new()),
                jwks_url,
                issuer: issuer.to_owned(),
                last_fetch: tokio::sync::Mutex::new(None),
            }),
        }
    }

    fn load_jwks(&self, text: &str) -> anyhow::Result<()> {
        let set: JwkSet = serde_json::from_str(text)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            keys.insert(kid.clone(), DecodingKey::from_jwk(jwk)?);
        }
        if keys.is_empty() {
            anyhow::bail!("no usable key with a kid");
        }
        *self
            .inner
            .keys
            .write()
            .map_err(|_| anyhow::anyhow!("key lock poisoned"))? = keys;
        Ok(())
    }

    async fn refresh(&self) -> anyhow::Result<()> {
        let Some(url) = &self.inner.jwks_url else {
            return Ok(());
        };
        let mut last = self.inner.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?;
        let text = client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        self.load_jwks(&text)
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, Problem> {
        let unauthenticated =
            |detail: &str| Problem::new(ErrorCode::Unauthenticated, detail.to_owned());
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthenticated("the token is malformed"))?;
        let kid = header
            .kid
            .ok_or_else(|| unauthenticated("the token names no key"))?;
        if !self.has_key(&kid) {
            let _ = self.refresh().await;
        }
        let key = self
            .inner
            .keys
            .read()
            .ok()
            .and_then(|keys| keys.get(&kid).cloned())
            .ok_or_else(|| unauthenticated("the token is signed by an unknown key"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    unauthenticated("the token has expired")
                }
                _ => unauthenticated("the token is not valid"),
            })
    }

    fn has_key(&self, kid: &str) -> bool {
        self.inner
            .keys
            .read()
            .map(|k| k.contains_key(kid))
            .unwrap_or(false)
    }
}

/// The authenticated caller; 401 without a valid bearer token.
#[derive(Clone, Debug)]
pub struct Caller(pub Claims);

impl<S> FromRequestParts<S> for Caller
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Verifier::from_ref(state)
            .authenticate(header)
            .await
            .map(Caller)
    }
}

/// An authenticated administrator; 401 without a token, 403 for other roles.
#[derive(Clone, Debug)]
pub struct Admin(pub Claims);

impl<S> FromRequestParts<S> for Admin
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Verifier::from_ref(state)
            .authorize_admin(header)
            .await
            .map(Admin)
    }
}

impl Verifier {
    /// The claims of the bearer token in an `Authorization` value (HTTP
    /// header or gRPC metadata); 401 when absent or invalid.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Claims, Problem> {
        let value = authorization.ok_or_else(|| {
            Problem::new(ErrorCode::Unauthenticated, "a bearer token is required")
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                Problem::new(
                    ErrorCode::Unauthenticated,
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        self.verify(token.trim()).await
    }

    /// As [`Verifier::authenticate`], and 403 unless the caller is an admin.
    pub async fn authorize_admin(&self, authorization: Option<&str>) -> Result<Claims, Problem> {
        let claims = self.authenticate(authorization).await?;
        if claims.role != Role::Admin {
            return Err(Problem::new(
                ErrorCode::Forbidden,
                "this action needs the admin role",
            ));
        }
        Ok(claims)
    }
}

/// Signs access tokens with an Ed25519 key and publishes its JWKS.
pub struct Issuer {
    kid: String,
    issuer: String,
    encoding: EncodingKey,
    public: Vec<u8>,
}

impl Issuer {
    pub fn generate(issuer: &str) -> anyhow::Result<Self> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate a signing key"))?;
        Self::from_pkcs8(issuer, pkcs8.as_ref())
    }

    pub fn from_pkcs8(issuer: &str, pkcs8: &[u8]) -> anyhow::Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| anyhow::anyhow!("the signing key is not Ed25519 PKCS#8"))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = URL_SAFE_NO_PAD
            .encode(&aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public).as_ref()[..12]);
        Ok(Self {
            kid,
            issuer: issuer.to_owned(),
            encoding: EncodingKey::from_ed_der(pkcs8),
            public,
        })
    }

    /// Loads the key kept in `dir`, or makes and keeps one; writes the
    /// matching `jwks.json` beside it. Returns the issuer and the JWKS path.
    pub fn load_or_create(issuer: &str, dir: &Path) -> anyhow::Result<(Self, std::path::PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let key_path = dir.join("signing-key.pk8");
        let issuer = match std::fs::read(&key_path) {
            Ok(bytes) => Self::from_pkcs8(issuer, &bytes)?,
            Err(_) => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
                    .map_err(|_| anyhow::anyhow!("cannot generate a signing key"))?;
                std::fs::write(&key_path, pkcs8.as_ref())?;
                Self::from_pkcs8(issuer, pkcs8.as_ref())?
            }
        };
        let jwks_path = dir.join("jwks.json");
        std::fs::write(&jwks_path, issuer.jwks())?;
        Ok((issuer, jwks_path))
    }

    pub fn jwks(&self) -> String {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(&self.public),
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
        .to_string()
    }

    pub fn mint(&self, subject: &str, role: Role, ttl: Duration) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            iss: self.issuer.clone(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// A verifier that trusts this issuer's key.
    pub fn verifier(&self) -> anyhow::Result<Verifier> {
        Verifier::from_jwks(&self.issuer, &self.jwks())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_verify_only_with_the_right_key_issuer_and_time() {
        let issuer = Issuer::generate("emporium").unwrap();
        let verifier = issuer.verifier().unwrap();
        let token = issuer
            .mint("u1", Role::Admin, Duration::from_secs(60))
            .unwrap();
        let claims = verifier.verify(&token).await.unwrap();
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.role, Role::Admin);

        let other = Issuer::generate("emporium").unwrap();
        let forged = other
            .mint("u1", Role::Admin, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            verifier.verify(&forged).await.unwrap_err().code,
            ErrorCode::Unauthenticated
        );

        let wrong_iss = Issuer::from_pkcs8("elsewhere", &[]).err();
        assert!(wrong_iss.is_some());

        let mut tampered = token.clone();
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        assert!(verifier.verify(&tampered).await.is_err());
        assert!(verifier.verify("not-a-token").await.is_err());
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let issuer = Issuer::generate("emporium").unwrap();
        let verifier = issuer.verifier().unwrap();
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: "u".into(),
            role: Role::Customer,
            iss: "emporium".into(),
            iat: now - 120,
            exp: now - 60,
            jti: "j".into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(issuer.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &issuer.encoding).unwrap();
        assert_eq!(
            verifier.verify(&token).await.unwrap_err().detail,
            "the token has expired"
        );
    }
}
