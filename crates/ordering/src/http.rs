//! REST routes: parse, authorize, call one use case, map the result.
//! `POST /orders` honours `Idempotency-Key`.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use emporium_platform::Problem;
use emporium_platform::auth::{Admin, Caller, Verifier};
use emporium_platform::http::{Json, Path, Query, page_params, parse_value};
use emporium_platform::idempotency::{self, SharedIdempotency};
use serde::Deserialize;
use uuid::Uuid;

use crate::checkout::Orders;
use crate::domain::{Checkout, CheckoutInput, Status};

#[derive(Clone)]
pub struct AppState {
    pub orders: Orders,
    pub verifier: Verifier,
    pub keys: SharedIdempotency,
    pub key_ttl: std::time::Duration,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/orders", get(list).post(create))
        .route("/api/v1/orders/{id}", get(read).put(update).delete(cancel))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .with_state(state)
}

fn order_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::bad_parameter("id", "must be a UUID"))
}

async fn create(
    State(state): State<AppState>,
    Caller(claims): Caller,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, Problem> {
    let input: CheckoutInput = parse_value(body.clone())?;
    let checkout = Checkout::parse(&input).map_err(Problem::invalid)?;
    let key = idempotency::key(&headers)?;
    let fingerprint =
        idempotency::fingerprint("POST", "/api/v1/orders", body.to_string().as_bytes());
    let user = claims.sub.clone();
    let work = || async {
        let order = state.orders.checkout(&user, &checkout).await?;
        serde_json::to_value(order)
            .map(|v| (StatusCode::CREATED, v))
            .map_err(Problem::internal)
    };
    Ok(idempotency::once(
        state.keys.as_ref(),
        &claims.sub,
        key,
        &fingerprint,
        state.key_ttl,
        work,
    )
    .await)
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    page: Option<String>,
    per_page: Option<String>,
    status: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let (page, per_page) = page_params(params.page.as_deref(), params.per_page.as_deref())?;
    let status = match params.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(
            Status::parse(raw)
                .ok_or_else(|| Problem::bad_parameter("status", "is not an order status"))?,
        ),
    };
    let user = (!claims.is_admin()).then_some(claims.sub.as_str());
    Ok(Json(state.orders.list(user, status, page, per_page).await?).into_response())
}

async fn read(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let user = (!claims.is_admin()).then_some(claims.sub.as_str());
    Ok(Json(state.orders.get(order_id(&id)?, user).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct StatusInput {
    status: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
    Json(input): Json<StatusInput>,
) -> Result<Response, Problem> {
    let id = order_id(&id)?;
    let next = input
        .status
        .as_deref()
        .and_then(Status::parse)
        .filter(|s| matches!(s, Status::Processing | Status::Shipped | Status::Delivered))
        .ok_or_else(|| {
            Problem::invalid(vec![emporium_platform::FieldError {
                field: "status".into(),
                message: "must be processing, shipped or delivered".into(),
            }])
        })?;
    Ok(Json(state.orders.fulfil(id, next).await?).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let user = (!claims.is_admin()).then_some(claims.sub.as_str());
    Ok(Json(state.orders.cancel(order_id(&id)?, user).await?).into_response())
}
