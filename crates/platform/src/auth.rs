//! Access tokens: verification against published keys (JWKS) for every
//! service, and the signing half for whoever issues them.

use std::collections::HashMap;
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<Role>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

/// What a service's token says: which service calls (`svc`) and which
/// one it may call (`aud`). A user's token has no `svc` and a service's no
/// `roles`, so neither passes for the other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClaims {
    /// `service:<svc>`.
    pub sub: String,
    pub svc: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Shared, so that a request's lookup copies a pointer, not a key.
type Keys = HashMap<String, Arc<DecodingKey>>;

/// Checks signature, expiry, issuer and audience of access tokens against
/// two key sets: the configured one (`auth.jwks_file`) and the published
/// one, fetched from `auth.jwks_url` or handed over by an identity service
/// in the same process.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    configured: Keys,
    published: RwLock<Keys>,
    jwks_url: Option<String>,
    issuer: String,
    audience: String,
    refetch_after: Duration,
    /// No fetch before this instant.
    next_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Tokens whose signature was checked, with their claims: a token is
    /// presented many times in its life (a service's on every call to one
    /// peer, a customer's on every page), and its Ed25519 check costs more
    /// than the rest of a cached read.
    verified: std::sync::Mutex<HashMap<String, Verified>>,
}

/// A token checked once: still trusted while its key is and until it
/// expires, for the audience it was checked for.
struct Verified {
    kid: String,
    audience: String,
    expires: i64,
    claims: serde_json::Value,
}

/// Verified tokens kept at most; the set starts again when full.
const VERIFIED_KEPT: usize = 4096;
/// Seconds a token is still accepted after its `exp` (clock skew).
const LEEWAY_SECS: u64 = 5;

impl Verifier {
    /// Keys from `auth.jwks_file` and `auth.jwks_url`.
    pub async fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        if let Some(url) = &settings.jwks_url {
            check_jwks_url(url, settings.trusted_network)?;
        }
        let configured = match &settings.jwks_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("configuration: auth.jwks_file {}: {e}", path.display())
                })?;
                parse_jwks(&text).map_err(|e| {
                    anyhow::anyhow!("configuration: auth.jwks_file {}: {e}", path.display())
                })?
            }
            None => Keys::new(),
        };
        let verifier = Self::new(settings, configured);
        if verifier.inner.jwks_url.is_some()
            && let Err(e) = verifier.refresh().await
        {
            // Identity may start after us; keys are fetched again on demand.
            tracing::warn!(error = %e, "jwks not reachable yet");
        }
        Ok(verifier)
    }

    /// Trusts exactly the keys of `jwks`.
    pub fn from_jwks(settings: &AuthSettings, jwks: &str) -> anyhow::Result<Self> {
        Ok(Self::new(
            &AuthSettings {
                jwks_url: None,
                ..settings.clone()
            },
            parse_jwks(jwks)?,
        ))
    }

    fn new(settings: &AuthSettings, configured: Keys) -> Self {
        Self {
            inner: Arc::new(VerifierInner {
                configured,
                published: RwLock::new(Keys::new()),
                jwks_url: settings.jwks_url.clone(),
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
                refetch_after: Duration::from_secs(settings.jwks_refetch_secs),
                next_fetch: tokio::sync::Mutex::new(None),
                verified: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Replaces the published key set: what identity publishes now.
    pub fn publish(&self, jwks: &str) -> anyhow::Result<()> {
        let keys = parse_jwks(jwks)?;
        *self
            .inner
            .published
            .write()
            .map_err(|_| anyhow::anyhow!("key lock poisoned"))? = keys;
        Ok(())
    }

    /// Fetches the published set, at most once per `jwks_refetch_secs`
    /// whatever the tokens presented: a made-up `kid` costs no fetch. After
    /// a failed fetch (identity still starting) the next may come a second
    /// later, not a whole interval.
    async fn refresh(&self) -> anyhow::Result<()> {
        const AFTER_FAILURE: Duration = Duration::from_secs(1);
        let Some(url) = &self.inner.jwks_url else {
            return Ok(());
        };
        let mut next = self.inner.next_fetch.lock().await;
        if next.is_some_and(|at| Instant::now() < at) {
            return Ok(());
        }
        metrics::counter!("jwks_fetches_total").increment(1);
        let fetched = async {
            let text = reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()?
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            self.publish(&text)
        }
        .await;
        let wait = if fetched.is_ok() {
            self.inner.refetch_after
        } else {
            AFTER_FAILURE.min(self.inner.refetch_after)
        };
        *next = Some(Instant::now() + wait);
        fetched
    }

    fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.inner
            .published
            .read()
            .ok()
            .and_then(|keys| keys.get(kid).cloned())
            .or_else(|| self.inner.configured.get(kid).cloned())
    }

    /// A user's access token: signed by a published key, issued here, for
    /// this shop's audience, not expired.
    pub async fn verify(&self, token: &str) -> Result<Claims, Problem> {
        let audience = self.inner.audience.clone();
        self.decode(token, &audience).await
    }

    /// A service's token for `audience` (the service verifying it): the
    /// same keys and checks as a user's, and the claims of a service.
    pub async fn verify_service(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<ServiceClaims, Problem> {
        self.decode(token, audience).await
    }

    async fn decode<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<T, Problem> {
        let unauthenticated =
            |detail: &str| Problem::new(ErrorCode::Unauthenticated, detail.to_owned());
        if let Some(claims) = self.recall(token, audience) {
            return serde_json::from_value(claims)
                .map_err(|_| unauthenticated("the token is not valid"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthenticated("the token is malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(unauthenticated("the token is not signed with EdDSA"));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthenticated("the token names no key"))?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                if let Err(e) = self.refresh().await {
                    tracing::warn!(error = %e, "jwks fetch failed");
                }
                self.key(&kid)
                    .ok_or_else(|| unauthenticated("the token is signed by an unknown key"))?
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.leeway = LEEWAY_SECS;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    unauthenticated("the token has expired")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    unauthenticated("the token is meant for another audience")
                }
                _ => unauthenticated("the token is not valid"),
            })?;
        let typed = serde_json::from_value(claims.clone())
            .map_err(|_| unauthenticated("the token is not valid"))?;
        self.remember(token, kid, audience, claims);
        Ok(typed)
    }

    /// The claims of `token` if it was verified for `audience`, its key is
    /// still trusted and it has not expired.
    fn recall(&self, token: &str, audience: &str) -> Option<serde_json::Value> {
        let verified = self.inner.verified.lock().ok()?;
        let entry = verified.get(token)?;
        let now = chrono::Utc::now().timestamp();
        let fresh = entry.expires.saturating_add_unsigned(LEEWAY_SECS) >= now;
        (entry.audience == audience && fresh && self.key(&entry.kid).is_some())
            .then(|| entry.claims.clone())
    }

    fn remember(&self, token: &str, kid: String, audience: &str, claims: serde_json::Value) {
        let Some(expires) = claims.get("exp").and_then(serde_json::Value::as_i64) else {
            return;
        };
        if let Ok(mut verified) = self.inner.verified.lock() {
            if verified.len() >= VERIFIED_KEPT {
                verified.clear();
            }
            verified.insert(
                token.to_owned(),
                Verified {
                    kid,
                    audience: audience.to_owned(),
                    expires,
                    claims,
                },
            );
        }
    }
}

/// Keys decide whom every service believes, so they come over TLS unless
/// from this machine or over a network the deployment declares private.
fn check_jwks_url(raw: &str, trusted_network: bool) -> anyhow::Result<()> {
    let url = url::Url::parse(raw)
        .map_err(|e| anyhow::anyhow!("configuration: auth.jwks_url `{raw}`: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback || trusted_network => Ok(()),
        "http" => anyhow::bail!(
            "configuration: auth.jwks_url `{raw}` must be https:// (or set auth.trusted_network on a private network)"
        ),
        other => {
            anyhow::bail!("configuration: auth.jwks_url `{raw}`: scheme `{other}` is not http(s)")
        }
    }
}

fn parse_jwks(text: &str) -> anyhow::Result<Keys> {
    let set: JwkSet = serde_json::from_str(text)?;
    let mut keys = Keys::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        keys.insert(kid.clone(), Arc::new(DecodingKey::from_jwk(jwk)?));
    }
    if keys.is_empty() {
        anyhow::bail!("no usable key with a kid");
    }
    Ok(keys)
}

/// The subprotocol a socket client offers beside its token, which the
/// server echoes (a browser drops a socket whose server chose none).
pub const SOCKET_PROTOCOL: &str = "emporium.v1";

/// The prefix of the subprotocol that carries a socket's access token
/// (`Sec-WebSocket-Protocol: emporium.v1, bearer.<token>`): browsers cannot
/// set `Authorization` on a WebSocket.
pub const SOCKET_BEARER_PREFIX: &str = "bearer.";

/// The `Authorization` value a request presents: its header, or for a
/// WebSocket handshake the token in its subprotocols or its
/// `access_token` query parameter.
pub fn presented_authorization(
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(value.to_owned());
    }
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return None;
    }
    let from_protocol = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            p.trim()
                .strip_prefix(SOCKET_BEARER_PREFIX)
                .map(str::to_owned)
        });
    let from_query = || {
        url::form_urlencoded::parse(uri.query()?.as_bytes())
            .find(|(key, _)| key == "access_token")
            .map(|(_, value)| value.into_owned())
    };
    from_protocol
        .or_else(from_query)
        .map(|token| format!("Bearer {token}"))
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
        if !claims.is_admin() {
            return Err(Problem::new(
                ErrorCode::Forbidden,
                "this action needs the admin role",
            ));
        }
        Ok(claims)
    }
}

/// Signs access tokens with one Ed25519 key.
pub struct Issuer {
    kid: String,
    issuer: String,
    audience: String,
    encoding: EncodingKey,
    public: Vec<u8>,
}

impl Issuer {
    /// A fresh key pair; the PKCS#8 document is returned for keeping.
    pub fn generate(settings: &AuthSettings) -> anyhow::Result<(Self, Vec<u8>)> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate a signing key"))?;
        let pkcs8 = pkcs8.as_ref().to_vec();
        Ok((Self::from_pkcs8(settings, &pkcs8)?, pkcs8))
    }

    pub fn from_pkcs8(settings: &AuthSettings, pkcs8: &[u8]) -> anyhow::Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| anyhow::anyhow!("the signing key is not Ed25519 PKCS#8"))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = URL_SAFE_NO_PAD
            .encode(&aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public).as_ref()[..12]);
        Ok(Self {
            kid,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            encoding: EncodingKey::from_ed_der(pkcs8),
            public,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as one JWK.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(&self.public),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    /// A JWKS document of this key alone.
    pub fn jwks(&self) -> String {
        serde_json::json!({ "keys": [self.jwk()] }).to_string()
    }

    pub fn mint(&self, subject: &str, role: Role, ttl: Duration) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        self.sign(&Claims {
            sub: subject.to_owned(),
            roles: vec![role],
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
            jti: uuid::Uuid::now_v7().to_string(),
        })
    }

    /// A token with which service `caller` may call service `audience`.
    pub fn mint_service(
        &self,
        caller: &str,
        audience: &str,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        self.sign(&ServiceClaims {
            sub: format!("service:{caller}"),
            svc: caller.to_owned(),
            iss: self.issuer.clone(),
            aud: audience.to_owned(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
            jti: uuid::Uuid::now_v7().to_string(),
        })
    }

    /// Signs `claims` as they are.
    pub fn sign(&self, claims: &impl Serialize) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// A verifier that trusts this issuer's key.
    pub fn verifier(&self) -> anyhow::Result<Verifier> {
        Verifier::from_jwks(
            &AuthSettings {
                issuer: self.issuer.clone(),
                audience: self.audience.clone(),
                ..AuthSettings::default()
            },
            &self.jwks(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    fn issuer() -> Issuer {
        Issuer::generate(&AuthSettings::default()).unwrap().0
    }

    fn claims(issuer: &Issuer, exp_offset: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: "u".into(),
            roles: vec![Role::Customer],
            iss: issuer.issuer.clone(),
            aud: issuer.audience.clone(),
            iat: now - 120,
            exp: now + exp_offset,
            jti: "j".into(),
        }
    }

    #[tokio::test]
    async fn tokens_verify_only_with_the_right_key_issuer_audience_and_time() {
        let issuer = issuer();
        let verifier = issuer.verifier().unwrap();
        let token = issuer
            .mint("u1", Role::Admin, Duration::from_secs(60))
            .unwrap();
        let verified = verifier.verify(&token).await.unwrap();
        assert_eq!(verified.sub, "u1");
        assert!(verified.is_admin());
        assert_eq!(verified.aud, "emporium");

        let other = self::issuer();
        let forged = other
            .mint("u1", Role::Admin, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            verifier.verify(&forged).await.unwrap_err().detail,
            "the token is signed by an unknown key"
        );

        let mut elsewhere = claims(&issuer, 60);
        elsewhere.aud = "another-shop".into();
        assert_eq!(
            verifier
                .verify(&issuer.sign(&elsewhere).unwrap())
                .await
                .unwrap_err()
                .detail,
            "the token is meant for another audience"
        );
        let mut foreign = claims(&issuer, 60);
        foreign.iss = "elsewhere".into();
        assert!(
            verifier
                .verify(&issuer.sign(&foreign).unwrap())
                .await
                .is_err()
        );

        let mut tampered = token.clone();
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        assert!(verifier.verify(&tampered).await.is_err());
        assert!(verifier.verify("not-a-token").await.is_err());

        // An HMAC token naming the right kid is refused before any key use.
        let hs = jsonwebtoken::encode(
            &Header {
                kid: Some(issuer.kid.clone()),
                ..Header::new(Algorithm::HS256)
            },
            &claims(&issuer, 60),
            &EncodingKey::from_secret(&issuer.public),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&hs).await.unwrap_err().detail,
            "the token is not signed with EdDSA"
        );
    }

    #[tokio::test]
    async fn jwks_is_fetched_over_https_unless_from_loopback_or_a_trusted_network() {
        let settings = |url: &str, trusted_network: bool| AuthSettings {
            jwks_url: Some(url.into()),
            jwks_refetch_secs: 3600,
            trusted_network,
            ..AuthSettings::default()
        };
        let err = Verifier::from_settings(&settings("http://identity:8004/jwks", false))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("must be https://"), "{err}");
        assert!(
            Verifier::from_settings(&settings("ftp://identity/jwks", true))
                .await
                .is_err()
        );
        for ok in [
            settings("http://127.0.0.1:9/jwks", false),
            settings("http://[::1]:9/jwks", false),
            settings("http://localhost:9/jwks", false),
            settings("http://identity:8004/jwks", true),
            settings("https://identity.example:8004/jwks", false),
        ] {
            let url = ok.jwks_url.clone().unwrap();
            assert!(Verifier::from_settings(&ok).await.is_ok(), "{url}");
        }
    }

    #[tokio::test]
    async fn service_tokens_and_user_tokens_never_pass_for_each_other() {
        let issuer = issuer();
        let verifier = issuer.verifier().unwrap();
        let service = issuer
            .mint_service("ordering", "payment", Duration::from_secs(60))
            .unwrap();
        let claims = verifier.verify_service(&service, "payment").await.unwrap();
        assert_eq!(
            (claims.svc.as_str(), claims.aud.as_str()),
            ("ordering", "payment")
        );
        assert_eq!(
            verifier
                .verify_service(&service, "inventory")
                .await
                .unwrap_err()
                .detail,
            "the token is meant for another audience"
        );
        assert!(verifier.verify(&service).await.is_err(), "not a user");
        let user = issuer
            .mint("u1", Role::Admin, Duration::from_secs(60))
            .unwrap();
        assert!(
            verifier.verify_service(&user, "emporium").await.is_err(),
            "not a service"
        );
        let mut expired = claims.clone();
        expired.exp = chrono::Utc::now().timestamp() - 60;
        assert_eq!(
            verifier
                .verify_service(&issuer.sign(&expired).unwrap(), "payment")
                .await
                .unwrap_err()
                .detail,
            "the token has expired"
        );
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let issuer = issuer();
        let verifier = issuer.verifier().unwrap();
        let token = issuer.sign(&claims(&issuer, -60)).unwrap();
        assert_eq!(
            verifier.verify(&token).await.unwrap_err().detail,
            "the token has expired"
        );
    }

    #[tokio::test]
    async fn published_keys_replace_the_previous_set() {
        let (old, new) = (issuer(), issuer());
        let verifier = Verifier::new(&AuthSettings::default(), Keys::new());
        verifier.publish(&old.jwks()).unwrap();
        let old_token = old
            .mint("u", Role::Customer, Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify(&old_token).await.is_ok());
        verifier.publish(&new.jwks()).unwrap();
        assert!(verifier.verify(&old_token).await.is_err(), "withdrawn key");
        let new_token = new
            .mint("u", Role::Customer, Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify(&new_token).await.is_ok());
        assert!(verifier.publish("{\"keys\": []}").is_err());
    }

    /// A key server for `issuer` (answering 503 until `up` is set), and a
    /// verifier that fetches from it at most hourly; the server counts its
    /// fetches.
    async fn fetching_verifier(
        issuer: &Issuer,
        up: bool,
    ) -> (Verifier, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let up = Arc::new(AtomicBool::new(up));
        let (counter, serving, jwks) = (fetches.clone(), up.clone(), issuer.jwks());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = if serving.load(Ordering::SeqCst) {
                    Ok(jwks.clone())
                } else {
                    Err(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                };
                async move { answer }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let verifier = Verifier::from_settings(&AuthSettings {
            jwks_url: Some(format!("http://{addr}/jwks")),
            jwks_refetch_secs: 3600,
            ..AuthSettings::default()
        })
        .await
        .unwrap();
        (verifier, fetches, up)
    }

    #[tokio::test]
    async fn keys_published_after_a_failed_fetch_are_found_a_second_later() {
        let issuer = issuer();
        let (verifier, _, up) = fetching_verifier(&issuer, false).await;
        let token = issuer
            .mint("u", Role::Customer, Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify(&token).await.is_err(), "identity is not up");
        up.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(
            verifier.verify(&token).await.is_ok(),
            "a failed fetch holds back the next for a second, not an hour"
        );
    }

    #[tokio::test]
    async fn made_up_key_ids_fetch_the_key_set_once_per_interval() {
        let issuer = issuer();
        let (verifier, fetches, _) = fetching_verifier(&issuer, true).await;
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "fetched at start");
        let good = issuer
            .mint("u", Role::Customer, Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify(&good).await.is_ok());
        let attacker = self::issuer();
        for n in 0..50 {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(format!("made-up-{n}"));
            let token =
                jsonwebtoken::encode(&header, &claims(&issuer, 60), &attacker.encoding).unwrap();
            assert!(verifier.verify(&token).await.is_err());
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "unknown kids within the interval fetch nothing"
        );
    }
}
