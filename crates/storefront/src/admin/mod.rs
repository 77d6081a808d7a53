//! The staff's pages, for a signed-in admin only (a customer gets a 403
//! page). Each area is a module with its own routes; the gateway passes
//! everything under `/admin` to the storefront.

pub mod catalog;
pub mod ops;
pub mod orders;
pub mod payments;
pub mod people;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::account::{Ask, as_shopper, check_csrf, shown};
use crate::api::Answer;
use crate::pages::AppState;
use crate::shelves::Missing;

/// Every page of the admin area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/orders", get(orders::orders))
        .route("/admin/orders/{id}", post(orders::move_order))
        .merge(catalog::routes())
        .merge(people::routes())
        .merge(payments::routes())
        .merge(ops::routes())
}

/// The areas, in the order the admin's menu shows them.
pub const AREAS: &[(&str, &str, &str)] = &[
    (
        "/admin/orders",
        "Orders",
        "Filter by status; process, ship, deliver or cancel.",
    ),
    (
        "/admin/products",
        "Products",
        "Create, edit, delete; upload images.",
    ),
    (
        "/admin/categories",
        "Categories",
        "The shelves products sit on.",
    ),
    (
        "/admin/inventory",
        "Inventory",
        "Stock per warehouse, low-stock alerts, adjustments with a reason.",
    ),
    ("/admin/payments", "Payments", "Captured payments; refunds."),
    ("/admin/users", "Users", "Roles; disable an account."),
    (
        "/admin/notifications",
        "Notifications",
        "Messages sent, queued and failed.",
    ),
    (
        "/admin/processor",
        "Card processor",
        "The mock processor's fault settings.",
    ),
    (
        "/admin/ops",
        "Operations",
        "Each service's readiness and traffic; checkouts, backlog, faults.",
    ),
];

/// The page that turns away someone who is not an admin; `None` lets the
/// request on (a visitor who is not signed in is sent to the sign-in page by
/// `as_shopper`).
pub(crate) async fn staff_only(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let admin = match state.sessions.of(headers) {
        Some((_, session)) => session.lock().await.admin,
        None => return None,
    };
    if admin {
        return None;
    }
    let mut page = state
        .render(
            headers,
            StatusCode::FORBIDDEN,
            "problem.html",
            json!({ "title": "For the shop's staff", "message": "This page is for the shop's admins. Sign in with an admin account to see it." }),
        )
        .await;
    *page.status_mut() = StatusCode::FORBIDDEN;
    Some(page)
}

/// A staff page that shows one read of the API: `path` asked with the
/// admin's token, its body given to `context` and rendered into `template`
/// (which sets `"area"`); a page saying why not otherwise.
pub(crate) async fn staff_page(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    back: &str,
    path: String,
    template: &str,
    context: impl FnOnce(Value) -> Value,
) -> Response {
    if let Some(refused) = staff_only(state, headers).await {
        return refused;
    }
    let read = as_shopper(state, headers, client, back, Ask::get(), |_| path).await;
    shown(state, headers, read, StatusCode::OK, template, context).await
}

/// A staff form's call: its CSRF token and the admin's role checked, then
/// `ask` sent to `path` with the admin's token. The answer, whatever its
/// status, or the page to answer with instead.
pub(crate) async fn staff_call(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    back: &str,
    csrf: Option<&str>,
    ask: Ask<'_>,
    path: String,
) -> Result<Answer, Response> {
    check_csrf(state, headers, csrf).await?;
    if let Some(refused) = staff_only(state, headers).await {
        return Err(refused);
    }
    as_shopper(state, headers, client, back, ask, |_| path)
        .await
        .map(|(answer, _)| answer)
}

/// The usual end of a staff form: back to `to` when the call succeeded; a
/// page with the API's words (or "not found") when it did not.
pub(crate) async fn back_to(
    state: &AppState,
    headers: &HeaderMap,
    called: Result<Answer, Response>,
    to: &str,
) -> Response {
    match called {
        Ok(answer) if answer.status.is_success() => Redirect::to(to).into_response(),
        Ok(answer) if answer.status == StatusCode::NOT_FOUND => {
            state.problem(headers, Missing::NotFound).await
        }
        Ok(answer) => {
            state
                .problem(headers, Missing::Refused(answer.message()))
                .await
        }
        Err(response) => response,
    }
}

/// The number of pages of an API's list (`total`, `per_page`), at least 1.
pub(crate) fn pages(list: &Value) -> u64 {
    let total = list["total"].as_u64().unwrap_or(0);
    let per_page = list["per_page"].as_u64().unwrap_or(1).max(1);
    total.div_ceil(per_page).max(1)
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = staff_only(&state, &headers).await {
        return refused;
    }
    if state.sessions.of(&headers).is_none() {
        return Redirect::to("/signin?next=/admin").into_response();
    }
    state
        .render(
            &headers,
            StatusCode::OK,
            "admin/index.html",
            json!({ "area": "" }),
        )
        .await
}
