//! Stock per SKU and warehouse: on hand, reserved and available, the rows
//! low on stock picked out, an adjustment per row (a signed number of
//! units and why), and a SKU's movements on its own page.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{done, page_number, query_of, reads, refused, send, unmarked};
use crate::account::check_csrf;
use crate::admin::{pages, staff_call};
use crate::pages::AppState;
use crate::shelves::Missing;
use crate::views::encode;

const ROWS_PER_PAGE: u64 = 25;
const MOVEMENTS_PER_PAGE: u64 = 50;

/// Reasons offered as the admin types one; the inventory takes any short
/// line of text.
const REASONS: &[&str] = &[
    "Delivery received",
    "Returned by a customer",
    "Stock count correction",
    "Damaged",
    "Lost",
];

/// The adjustment form's boxes and the inventory's names of their fields.
const BOXES: &[(&str, &str)] = &[
    ("sku", "sku"),
    ("warehouse", "warehouse"),
    ("delta", "delta"),
    ("reason", "reason"),
    ("threshold", "threshold"),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/inventory", get(inventory).post(adjust))
        .route("/admin/inventory/{sku}", get(stock))
}

#[derive(Debug, Default, Deserialize)]
pub struct InventoryQuery {
    #[serde(default)]
    sku: String,
    #[serde(default)]
    warehouse: String,
    #[serde(default)]
    low: String,
    page: Option<String>,
    done: Option<String>,
}

impl InventoryQuery {
    /// The filter as a query, `key=value&` each: the same for the API and
    /// for this page's links.
    fn filter(&self) -> String {
        let low = if self.low == "true" { "true" } else { "" };
        query_of(&[
            ("sku", self.sku.trim()),
            ("warehouse", self.warehouse.trim()),
            ("low", low),
        ])
    }
}

/// An adjustment as typed.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AdjustForm {
    #[serde(default)]
    sku: String,
    #[serde(default)]
    warehouse: String,
    #[serde(default)]
    delta: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    threshold: String,
    /// Sent by a row's own form: its refusal is shown on that row.
    #[serde(default)]
    row: String,
    #[serde(default, skip_serializing)]
    csrf: Option<String>,
}

/// A refused adjustment: what was typed and what was said of it.
struct Failed<'a> {
    form: &'a AdjustForm,
    errors: Value,
    error: String,
    status: StatusCode,
}

async fn page(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    query: &InventoryQuery,
    failed: Option<Failed<'_>>,
) -> Response {
    let filter = query.filter();
    let page = page_number(query.page.as_deref());
    let back = format!("/admin/inventory?{filter}page={page}");
    let paths = [
        format!("/api/v1/inventory?{filter}per_page={ROWS_PER_PAGE}&page={page}"),
        "/api/v1/inventory/alerts?per_page=8".to_owned(),
    ];
    let [list, alerts] = match reads(state, headers, client, &back, paths).await {
        Ok(bodies) => bodies,
        Err(response) => return response,
    };
    let mut warehouses: Vec<&str> = list["items"]
        .as_array()
        .into_iter()
        .chain(alerts["items"].as_array())
        .flatten()
        .filter_map(|row| row["warehouse"].as_str())
        .collect();
    warehouses.sort_unstable();
    warehouses.dedup();
    // A row's own form shows its refusal on its row; the form for any SKU
    // and warehouse, above its boxes.
    let (status, row_failed, stock_form, stock_errors, stock_error) = match failed {
        Some(f) if f.form.row == "1" => {
            let said: Vec<String> = BOXES
                .iter()
                .filter_map(|&(name, _)| {
                    let message = f.errors[name].as_str()?;
                    Some(format!("{}: {message}", label(name)))
                })
                .collect();
            let row = json!({ "form": f.form, "error": f.error, "said": said });
            (
                f.status,
                row,
                json!(AdjustForm::default()),
                unmarked(BOXES),
                None,
            )
        }
        Some(f) => (
            f.status,
            Value::Null,
            json!(f.form),
            f.errors,
            Some(f.error),
        ),
        None => (
            StatusCode::OK,
            Value::Null,
            json!(AdjustForm::default()),
            unmarked(BOXES),
            None,
        ),
    };
    state
        .render(
            headers,
            status,
            "admin/inventory.html",
            json!({
                "area": "/admin/inventory", "stock": list, "alerts": alerts,
                "search": { "sku": query.sku, "warehouse": query.warehouse, "low": query.low == "true" },
                "page": page, "pages": pages(&list),
                "page_link": format!("/admin/inventory?{}page=", filter.replace('&', "&amp;")),
                "action": back, "row_failed": row_failed, "stock_form": stock_form,
                "stock_errors": stock_errors, "stock_error": stock_error, "done": done(query.done.as_deref()), "reasons": REASONS, "warehouses": warehouses,
            }),
        )
        .await
}

async fn inventory(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<InventoryQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    page(&state, &headers, client, &query, None).await
}

/// A box's name as its label says it.
fn label(name: &str) -> &str {
    match name {
        "sku" => "SKU",
        "warehouse" => "Warehouse",
        "delta" => "Units",
        "reason" => "Reason",
        "threshold" => "Low below",
        other => other,
    }
}

/// A whole number as typed (`+5`, `-3`), or none when the box is empty;
/// the words for a box that holds something else.
fn whole(raw: &str) -> Result<Option<i64>, &'static str> {
    match raw.trim() {
        "" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| "must be a whole number, like 12 or -3"),
    }
}

async fn adjust(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<InventoryQuery>, QueryRejection>,
    form: Result<Form<AdjustForm>, FormRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let back = format!(
        "/admin/inventory?{}page={}",
        query.filter(),
        page_number(query.page.as_deref())
    );
    let (delta, threshold) = (whole(&form.delta), whole(&form.threshold));
    let mut body = json!({
        "sku": form.sku.trim(), "warehouse": form.warehouse.trim(),
        "reason": form.reason, "delta": delta.ok().flatten(),
    });
    if let Ok(Some(threshold)) = threshold {
        body["threshold"] = json!(threshold);
    }
    // A box that is not a number is refused here and the inventory is not
    // asked; the page's reads check that an admin asks.
    if delta.is_err() || threshold.is_err() {
        if let Err(refused) = check_csrf(&state, &headers, form.csrf.as_deref()).await {
            return refused;
        }
        let mut errors = unmarked(BOXES);
        errors["delta"] = json!(delta.err());
        errors["threshold"] = json!(threshold.err());
        let failed = Failed {
            form: &form,
            errors,
            error: "Nothing was changed: please see the marked boxes.".into(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
        };
        return page(&state, &headers, client, &query, Some(failed)).await;
    }
    let called = staff_call(
        &state,
        &headers,
        client,
        &back,
        form.csrf.as_deref(),
        send(Method::POST, Some(body)),
        "/api/v1/inventory/adjust".into(),
    )
    .await;
    let failed = match called {
        Ok(answer) if answer.status.is_success() => {
            return Redirect::to(&format!("{back}&done=adjusted")).into_response();
        }
        Ok(answer) => {
            let (errors, error, status) = refused(&answer, BOXES, "delta");
            Failed {
                form: &form,
                errors,
                error,
                status,
            }
        }
        Err(response) => return response,
    };
    page(&state, &headers, client, &query, Some(failed)).await
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    page: Option<String>,
}

async fn stock(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(sku): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let page = page_number(query.ok().and_then(|Query(q)| q.page).as_deref());
    let sku_path = encode(&sku);
    let back = format!("/admin/inventory/{sku_path}?page={page}");
    let paths = [
        format!("/api/v1/inventory/{sku_path}"),
        format!("/api/v1/inventory/{sku_path}/movements?per_page={MOVEMENTS_PER_PAGE}&page={page}"),
    ];
    let [levels, movements] = match reads(&state, &headers, client, &back, paths).await {
        Ok(bodies) => bodies,
        Err(response) => return response,
    };
    if levels["sku"].is_null() {
        return state.problem(&headers, Missing::NotFound).await;
    }
    state
        .render(
            &headers,
            StatusCode::OK,
            "admin/stock.html",
            json!({
                "area": "/admin/inventory", "levels": levels, "movements": movements,
                "page": page, "pages": pages(&movements),
                "page_link": format!("/admin/inventory/{sku_path}?page="),
            }),
        )
        .await
}
