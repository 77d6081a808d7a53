//! The staff's pages, for a signed-in admin only (a customer gets a 403
//! page). Each area is a module with its own routes; the gateway passes
//! everything under `/admin` to the storefront.

pub mod catalog;
pub mod orders;
pub mod people;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

use crate::pages::AppState;

/// Every page of the admin area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/orders", get(orders::orders))
        .route("/admin/orders/{id}", post(orders::move_order))
        .merge(catalog::routes())
        .merge(people::routes())
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

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = staff_only(&state, &headers).await {
        return refused;
    }
    if state.sessions.of(&headers).is_none() {
        return axum::response::IntoResponse::into_response(axum::response::Redirect::to(
            "/signin?next=/admin",
        ));
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
