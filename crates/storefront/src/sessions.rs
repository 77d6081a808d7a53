//! Who is signed in: a random session id in an HttpOnly, SameSite=Lax
//! cookie, mapped in this process to the shopper's tokens, so that no
//! token reaches the browser's scripts and a refresh happens once however
//! many pages load at the same time (identity ends a refresh family whose
//! old token comes back). And the CSRF token every form carries, checked
//! against its cookie.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine;
use serde_json::{Value, json};

use crate::api::{Api, Call};

pub const SESSION_COOKIE: &str = "emporium_session";
pub const CSRF_COOKIE: &str = "emporium_csrf";
/// Sessions kept before the ones past their refresh token's life go.
const SWEEP_AT: usize = 50_000;

/// A signed-in shopper's tokens.
pub struct Session {
    pub user_id: String,
    pub name: String,
    pub admin: bool,
    access: String,
    access_until: Instant,
    refresh: String,
    refresh_until: Instant,
}

/// Not the tokens.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

pub type Shared = Arc<tokio::sync::Mutex<Session>>;

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Shared>>,
}

/// 32 random bytes, URL-safe.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Equal strings, compared in time that does not depend on where they
/// differ.
pub fn same(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_owned())
        })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, for the whole site.
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Ends a cookie at once.
pub fn clear_cookie(name: &str) -> HeaderValue {
    set_cookie(name, "", Duration::ZERO)
}

fn seconds(value: &Value, key: &str, default: u64) -> Duration {
    Duration::from_secs(value[key].as_u64().unwrap_or(default))
}

impl Session {
    /// From what sign-in and refresh answer.
    fn from_tokens(tokens: &Value) -> Option<Self> {
        let now = Instant::now();
        Some(Self {
            user_id: tokens["user"]["id"].as_str()?.to_owned(),
            name: tokens["user"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            admin: tokens["user"]["role"] == "admin",
            access: tokens["access_token"].as_str()?.to_owned(),
            access_until: now + seconds(tokens, "expires_in", 60),
            refresh: tokens["refresh_token"].as_str()?.to_owned(),
            refresh_until: now + seconds(tokens, "refresh_expires_in", 3600),
        })
    }

    pub fn refresh_token(&self) -> &str {
        &self.refresh
    }

    /// How long the refresh token lasts: the cookie's life.
    pub fn lasts(&self) -> Duration {
        self.refresh_until.saturating_duration_since(Instant::now())
    }
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shared>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session for the tokens sign-in answered: its id and how long it
    /// lasts.
    pub fn open(&self, tokens: &Value) -> Option<(String, Duration)> {
        let session = Session::from_tokens(tokens)?;
        let lasts = session.lasts();
        let id = random_token();
        let mut map = self.map();
        if map.len() >= SWEEP_AT {
            map.retain(|_, s| s.try_lock().map_or(true, |s| s.lasts() > Duration::ZERO));
        }
        map.insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
        Some((id, lasts))
    }

    pub fn get(&self, id: &str) -> Option<Shared> {
        self.map().get(id).cloned()
    }

    /// The session of the request's cookie.
    pub fn of(&self, headers: &HeaderMap) -> Option<(String, Shared)> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let session = self.get(&id)?;
        Some((id, session))
    }

    pub fn end(&self, id: &str) -> Option<Shared> {
        self.map().remove(id)
    }
}

/// Why a session cannot act any more: its refresh was refused.
#[derive(Debug)]
pub struct Ended;

/// A live access token of `session`, refreshed through the gateway when it
/// has under half a minute left; the lock makes one refresh of many
/// concurrent pages.
pub async fn access(
    session: &Shared,
    api: &Api,
    client: std::net::SocketAddr,
) -> Result<(String, String), Result<Ended, crate::shelves::Missing>> {
    let mut held = session.lock().await;
    if held.access_until > Instant::now() + Duration::from_secs(30) {
        return Ok((held.access.clone(), held.user_id.clone()));
    }
    let answer = api
        .call(Call {
            method: Method::POST,
            path: "/api/v1/auth/refresh",
            token: None,
            body: Some(json!({ "refresh_token": held.refresh })),
            raw: None,
            client,
            idempotency_key: None,
        })
        .await
        .map_err(Err)?;
    if !answer.status.is_success() {
        return Err(Ok(Ended));
    }
    let Some(fresh) = Session::from_tokens(&answer.body) else {
        return Err(Ok(Ended));
    };
    *held = fresh;
    Ok((held.access.clone(), held.user_id.clone()))
}

/// The request's CSRF token, or a new one for the response to set.
pub fn csrf(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE) {
        Some(token) if token.len() == 43 => (token, false),
        _ => (random_token(), true),
    }
}

/// Whether a form's `csrf` field matches the request's cookie.
pub fn csrf_holds(headers: &HeaderMap, sent: Option<&str>) -> bool {
    match (cookie(headers, CSRF_COOKIE), sent) {
        (Some(cookie), Some(sent)) => same(&cookie, sent),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cookies_are_read_by_name_and_forms_must_carry_the_cookies_token() {
        let mut headers = HeaderMap::new();
        let token = random_token();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {CSRF_COOKIE}={token}; b=")).unwrap(),
        );
        assert_eq!(cookie(&headers, "a").as_deref(), Some("1"));
        assert_eq!(cookie(&headers, "b"), None);
        assert_eq!(csrf(&headers), (token.clone(), false));
        assert!(csrf_holds(&headers, Some(&token)));
        assert!(!csrf_holds(&headers, Some("forged")));
        assert!(!csrf_holds(&headers, None));
        assert!(!csrf_holds(&HeaderMap::new(), Some(&token)));
        let set = set_cookie(SESSION_COOKIE, "x", Duration::from_secs(60));
        let set = set.to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Max-Age=60")
        );
    }

    #[test]
    fn a_session_prints_no_token() {
        let tokens = json!({ "access_token": "secret-access", "refresh_token": "secret-refresh", "expires_in": 300, "refresh_expires_in": 3600, "user": { "id": "u1", "name": "Ann", "role": "customer" } });
        let session = Session::from_tokens(&tokens).unwrap();
        let printed = format!("{session:?}");
        assert!(!printed.contains("secret"), "{printed}");
        assert!(!session.admin);
    }
}
