//! Rate limits of the routes: a fixed window per key, counted by the
//! platform's [`Limiter`] in this process or in Redis so that every
//! gateway replica counts against one budget.

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
pub use emporium_platform::ratelimit::{Decision, Limiter};
use emporium_platform::{ErrorCode, Problem};

use crate::routes::Group;

/// The rate limits of every route group, and where they are counted.
#[derive(Clone)]
pub(crate) struct Limits {
    pub(crate) limiter: Limiter,
    pub(crate) auth_per_address: u32,
    pub(crate) api_per_address: u32,
    pub(crate) api_per_user: u32,
}

impl Limits {
    pub(crate) async fn by_address(
        &self,
        group: Group,
        client: Option<std::net::IpAddr>,
    ) -> Result<Option<Decision>, Response> {
        let limit = match group {
            Group::Auth => self.auth_per_address,
            Group::Api => self.api_per_address,
        };
        let Some(client) = client.filter(|_| limit > 0) else {
            return Ok(None);
        };
        self.count(
            group,
            "address",
            &format!(
                "{}:address:{}",
                group.name(),
                emporium_platform::ratelimit::address_key(client)
            ),
            limit,
        )
        .await
    }

    pub(crate) async fn by_user(
        &self,
        group: Group,
        user: &str,
    ) -> Result<Option<Decision>, Response> {
        if group != Group::Api || self.api_per_user == 0 {
            return Ok(None);
        }
        self.count(
            group,
            "user",
            &format!("api:user:{user}"),
            self.api_per_user,
        )
        .await
    }

    async fn count(
        &self,
        group: Group,
        by: &'static str,
        key: &str,
        limit: u32,
    ) -> Result<Option<Decision>, Response> {
        let decision = self.limiter.hit(key, limit).await;
        if decision.allowed {
            return Ok(Some(decision));
        }
        metrics::counter!("gateway_rate_limited_total", "group" => group.name(), "by" => by)
            .increment(1);
        let mut problem = Problem::new(
            ErrorCode::TooManyRequests,
            format!("too many requests from this {by}; slow down"),
        );
        problem.retry_after_secs = Some(decision.reset.as_secs_f64().ceil().max(1.0) as u64);
        Err(with_limit_headers(problem.into_response(), Some(decision)))
    }
}

/// The decision with the fewest requests left.
pub(crate) fn tighter(a: Option<Decision>, b: Option<Decision>) -> Option<Decision> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.remaining < a.remaining { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` (seconds), as in the IETF
/// draft on rate-limit headers.
pub(crate) fn with_limit_headers(mut response: Response, decision: Option<Decision>) -> Response {
    if let Some(decision) = decision {
        let headers = response.headers_mut();
        headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
        headers.insert(
            "ratelimit-reset",
            HeaderValue::from(decision.reset.as_secs_f64().ceil() as u64),
        );
    }
    response
}
