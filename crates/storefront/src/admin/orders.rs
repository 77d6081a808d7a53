//! The staff's orders, filtered by status and moved along their workflow.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::staff_only;
use crate::account::{Ask, as_shopper, check_csrf, shown};
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
}

pub async fn orders(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<OrdersQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(refused) = staff_only(&state, &headers).await {
        return refused;
    }
    let status = query
        .ok()
        .and_then(|Query(q)| q.status)
        .filter(|s| STATUSES.contains(&s.as_str()))
        .unwrap_or_default();
    let read = as_shopper(
        &state,
        &headers,
        client,
        "/admin/orders",
        Ask::get(),
        |_| format!("/api/v1/orders?per_page=100&status={status}"),
    )
    .await;
    shown(&state, &headers, read, StatusCode::OK, "admin/orders.html", |orders| {
        json!({ "area": "/admin/orders", "orders": orders, "status": status, "statuses": STATUSES, "moves": MOVES })
    })
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
    if let Err(refused) = check_csrf(&state, &headers, form.csrf.as_deref()).await {
        return refused;
    }
    if let Some(refused) = staff_only(&state, &headers).await {
        return refused;
    }
    if uuid::Uuid::parse_str(&id).is_err() {
        return state.problem(&headers, Missing::NotFound).await;
    }
    let Some(status) = form.status.filter(|s| MOVES.contains(&s.as_str())) else {
        return state
            .problem(
                &headers,
                Missing::Refused("Choose a step from the list.".into()),
            )
            .await;
    };
    let moved = as_shopper(
        &state,
        &headers,
        client,
        "/admin/orders",
        Ask {
            method: Method::PUT,
            body: Some(json!({ "status": status })),
            idempotency_key: None,
        },
        |_| format!("/api/v1/orders/{id}"),
    )
    .await;
    match moved {
        Ok((answer, _)) if answer.status.is_success() => {
            Redirect::to("/admin/orders").into_response()
        }
        Ok((answer, _)) if answer.status == StatusCode::NOT_FOUND => {
            state.problem(&headers, Missing::NotFound).await
        }
        Ok((answer, _)) => {
            state
                .problem(&headers, Missing::Refused(answer.message()))
                .await
        }
        Err(response) => response,
    }
}
