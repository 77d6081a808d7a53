//! The staff's operations page: each service's readiness and traffic, and
//! the shop's checkouts, backlog and faults, as the sampler last saw them.
//! Complete as served; the script swaps in `?fragment=1` every few seconds.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::staff_only;
use crate::ops::Ops;
use crate::pages::AppState;
use crate::shelves::Missing;

/// The operations page, and its figures alone for the script.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/admin/ops", axum::routing::get(ops))
}

pub const TEMPLATES: &[(&str, &str)] = crate::views::templates!["admin/ops.html"];

#[derive(Debug, Default, Deserialize)]
pub struct OpsQuery {
    fragment: Option<String>,
}

pub async fn ops(
    State(state): State<AppState>,
    ops: Option<Extension<Arc<Ops>>>,
    headers: HeaderMap,
    query: Result<Query<OpsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(refused) = staff_only(&state, &headers).await {
        return refused;
    }
    if state.sessions.of(&headers).is_none() {
        return Redirect::to("/signin?next=/admin/ops").into_response();
    }
    let Some(Extension(ops)) = ops else {
        return state
            .problem(&headers, Missing::Unavailable("operations sampler"))
            .await;
    };
    let fragment = query.is_ok_and(|Query(q)| q.fragment.is_some());
    let mut context = json!({
        "area": "/admin/ops",
        "fragment": fragment,
        "every_ms": ops.pace().every.as_millis() as u64,
        "ops": ops.view(),
    });
    if fragment {
        // The fragment has no header to list the categories in.
        context["categories"] = json!([]);
    }
    let mut page = state
        .render(&headers, StatusCode::OK, "admin/ops.html", context)
        .await;
    page.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    page
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::{Pace, Watched};

    fn context(fragment: bool) -> serde_json::Value {
        let pace = Pace {
            every: std::time::Duration::from_secs(5),
            window: std::time::Duration::from_secs(600),
        };
        let watched = vec![Watched::Remote {
            name: "search".into(),
            base: "http://127.0.0.1:9".into(),
        }];
        let ops = Ops::new(pace, watched).unwrap();
        json!({
            "area": "/admin/ops", "fragment": fragment, "every_ms": 5000, "ops": ops.view(),
            "categories": [], "query": { "q": "", "category": "" }, "me": { "name": "Ada", "admin": true }, "csrf": "x",
        })
    }

    #[test]
    fn the_page_renders_whole_or_as_the_figures_alone() {
        let views = crate::views::Views::new().unwrap();
        let page = views.render("admin/ops.html", context(false)).unwrap();
        assert!(page.starts_with("<!doctype html>"), "{page}");
        assert!(page.contains("<title>Operations · Admin · Emporium</title>"));
        assert!(page.contains("<h1 id=\"ops-title\">Operations</h1>"));
        assert!(page.contains("aria-current=\"page\">Operations</a>"));
        assert!(page.contains("<script src=\"/static/app."));
        assert!(page.contains("The first sample is being taken"));
        let fragment = views.render("admin/ops.html", context(true)).unwrap();
        let fragment = fragment.trim();
        assert!(fragment.starts_with("<section id=\"ops\""), "{fragment}");
        assert!(fragment.ends_with("</section>"), "{fragment}");
        assert!(!fragment.contains("<title>") && !fragment.contains("<script"));
    }
}
