//! REST routes: parse, authorize, call one use case, map the result.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emporium_platform::Problem;
use emporium_platform::auth::{Admin, Verifier};
use emporium_platform::http::{Json, Path, Query, page_params};
use serde::{Deserialize, Serialize};

use crate::domain::{
    AdjustInput, Adjustment, Reservation, ReserveInput, ReserveRequest, Sku, Warehouse,
};
use crate::stock::{Actor, Inventory, Settle};
use crate::store::{MovementRow, StockFilter};

#[derive(Clone)]
pub struct AppState {
    pub inventory: Inventory,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/inventory", get(list))
        .route("/api/v1/inventory/alerts", get(alerts))
        .route("/api/v1/inventory/adjust", post(adjust))
        .route("/api/v1/inventory/reserve", post(reserve))
        .route("/api/v1/inventory/release", post(release))
        .route("/api/v1/inventory/{sku}", get(sku))
        .route("/api/v1/inventory/{sku}/movements", get(movements))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .with_state(state)
}

/// A reservation as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationView {
    pub id: String,
    pub status: String,
    pub reference: String,
    pub allocations: Vec<AllocationView>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AllocationView {
    pub sku: String,
    pub warehouse: String,
    pub quantity: i64,
}

impl From<Reservation> for ReservationView {
    fn from(r: Reservation) -> Self {
        Self {
            id: r.id.to_string(),
            status: r.status.as_str().into(),
            reference: r.reference,
            allocations: r
                .allocations
                .into_iter()
                .map(|a| AllocationView {
                    sku: a.sku.as_str().into(),
                    warehouse: a.warehouse.as_str().into(),
                    quantity: a.quantity,
                })
                .collect(),
            expires_at: r.expires_at,
            created_at: r.created_at,
        }
    }
}

/// One ledger entry as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MovementView {
    pub id: String,
    pub sku: String,
    pub warehouse: String,
    pub kind: String,
    pub on_hand_delta: i64,
    pub reserved_delta: i64,
    pub on_hand_after: i64,
    pub reserved_after: i64,
    pub reservation_id: Option<String>,
    pub actor: String,
    pub reason: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<MovementRow> for MovementView {
    fn from(m: MovementRow) -> Self {
        Self {
            id: m.id,
            sku: m.sku,
            warehouse: m.warehouse,
            kind: m.kind,
            on_hand_delta: m.on_hand_delta,
            reserved_delta: m.reserved_delta,
            on_hand_after: m.on_hand_after,
            reserved_after: m.reserved_after,
            reservation_id: m.reservation_id,
            actor: m.actor,
            reason: m.reason,
            created_at: m.created_at,
        }
    }
}

pub fn sku_param(raw: &str) -> Result<Sku, Problem> {
    Sku::parse(raw).map_err(|m| Problem::bad_parameter("sku", m))
}

fn warehouse_param(raw: Option<&str>) -> Result<Option<Warehouse>, Problem> {
    raw.filter(|w| !w.is_empty())
        .map(|w| Warehouse::parse(w).map_err(|m| Problem::bad_parameter("warehouse", m)))
        .transpose()
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    page: Option<String>,
    per_page: Option<String>,
    sku: Option<String>,
    warehouse: Option<String>,
    low: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Admin(_): Admin,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let (page, per_page) = page_params(params.page.as_deref(), params.per_page.as_deref())?;
    let sku = params
        .sku
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(sku_param)
        .transpose()?;
    let low = match params.low.as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Problem::bad_parameter("low", "must be true or false")),
    };
    let filter = StockFilter {
        sku: sku.map(|s| s.as_str().to_owned()),
        warehouse: warehouse_param(params.warehouse.as_deref())?.map(|w| w.as_str().to_owned()),
        low,
    };
    Ok(Json(state.inventory.list(&filter, page, per_page).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct PageParams {
    page: Option<String>,
    per_page: Option<String>,
    warehouse: Option<String>,
}

async fn alerts(
    State(state): State<AppState>,
    Admin(_): Admin,
    Query(params): Query<PageParams>,
) -> Result<Response, Problem> {
    let (page, per_page) = page_params(params.page.as_deref(), params.per_page.as_deref())?;
    let filter = StockFilter {
        warehouse: warehouse_param(params.warehouse.as_deref())?.map(|w| w.as_str().to_owned()),
        low: true,
        ..StockFilter::default()
    };
    Ok(Json(state.inventory.list(&filter, page, per_page).await?).into_response())
}

async fn sku(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Response, Problem> {
    let sku = sku_param(&raw)?;
    Ok(Json(state.inventory.sku(&sku).await?).into_response())
}

async fn movements(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(raw): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<Response, Problem> {
    let sku = sku_param(&raw)?;
    let (page, per_page) = page_params(params.page.as_deref(), params.per_page.as_deref())?;
    let warehouse = warehouse_param(params.warehouse.as_deref())?;
    let page = state
        .inventory
        .movements(&sku, warehouse.as_ref(), page, per_page)
        .await?;
    Ok(Json(page.map(MovementView::from)).into_response())
}

async fn adjust(
    State(state): State<AppState>,
    Admin(claims): Admin,
    Json(input): Json<AdjustInput>,
) -> Result<Response, Problem> {
    let adjustment = Adjustment::parse(&input).map_err(Problem::invalid)?;
    let actor = Actor::new(claims.sub, adjustment.reason.clone());
    Ok(Json(state.inventory.adjust(&adjustment, &actor).await?).into_response())
}

async fn reserve(
    State(state): State<AppState>,
    Admin(claims): Admin,
    Json(input): Json<ReserveInput>,
) -> Result<Response, Problem> {
    let request = ReserveRequest::parse(&input).map_err(Problem::invalid)?;
    let actor = Actor::new(claims.sub, format!("reserved for {}", request.reference));
    let reservation = state.inventory.reserve(&request, &actor).await?;
    Ok((
        StatusCode::CREATED,
        Json(ReservationView::from(reservation)),
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
struct ReleaseInput {
    reservation_id: Option<String>,
}

async fn release(
    State(state): State<AppState>,
    Admin(claims): Admin,
    Json(input): Json<ReleaseInput>,
) -> Result<Response, Problem> {
    let id = input
        .reservation_id
        .as_deref()
        .ok_or_else(|| {
            Problem::invalid(vec![emporium_platform::FieldError {
                field: "reservation_id".into(),
                message: "is required".into(),
            }])
        })
        .and_then(reservation_id)?;
    let actor = Actor::new(claims.sub, "released on request");
    let reservation = state.inventory.settle(id, Settle::Release, &actor).await?;
    Ok(Json(ReservationView::from(reservation)).into_response())
}

pub fn reservation_id(raw: &str) -> Result<uuid::Uuid, Problem> {
    uuid::Uuid::parse_str(raw.trim()).map_err(|_| {
        Problem::invalid(vec![emporium_platform::FieldError {
            field: "reservation_id".into(),
            message: "must be a UUID".into(),
        }])
    })
}
