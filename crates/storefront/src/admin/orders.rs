//! The staff's orders, filtered by status and moved along their workflow.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{back_to, pages, staff_call, staff_page};
use crate::account::Ask;
use crate::pages::AppState;
use crate::shelves::Missing;

/// The statuses an admin filters by, and moves an order to.
const STATUSES: &[&str] = &[
    "pending",
    "confirmed",
    "processing",
    "shipped",
    "delivered",
    "cancelled",
    "failed",
];
const MOVES: &[&str] = &["processing", "shipped", "delivered", "cancelled"];

#[derive(Debug, Default, Deserialize)]
pub struct OrdersQuery {
    status: Option<String>,
    page: Option<String>,
}

pub async fn orders(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<OrdersQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let status = query
        .status
        .filter(|s| STATUSES.contains(&s.as_str()))
        .unwrap_or_default();
    let page = query
        .page
        .and_then(|p| p.parse::<u64>().ok())
        .filter(|&p| p >= 1)
        .unwrap_or(1);
    staff_page(
        &state,
        &headers,
        client,
        "/admin/orders",
        format!("/api/v1/orders?per_page=50&page={page}&status={status}"),
        "admin/orders.html",
        |orders| {
            json!({
                "area": "/admin/orders", "page": page, "pages": pages(&orders),
                "page_link": format!("/admin/orders?status={status}&page="),
                "orders": orders, "status": status, "statuses": STATUSES, "moves": MOVES,
            })
        },
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct MoveForm {
    status: Option<String>,
    csrf: Option<String>,
}

pub async fn move_order(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<MoveForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if uuid::Uuid::parse_str(&id).is_err() {
        return state.problem(&headers, Missing::NotFound).await;
    }
    let Some(status) = form.status.clone().filter(|s| MOVES.contains(&s.as_str())) else {
        return state
            .problem(
                &headers,
                Missing::Refused("Choose a step from the list.".into()),
            )
            .await;
    };
    let moved = staff_call(
        &state,
        &headers,
        client,
        "/admin/orders",
        form.csrf.as_deref(),
        Ask {
            method: Method::PUT,
            body: Some(json!({ "status": status })),
            idempotency_key: None,
        },
        format!("/api/v1/orders/{id}"),
    )
    .await;
    back_to(&state, &headers, moved, "/admin/orders").await
}
