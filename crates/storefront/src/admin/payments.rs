//! The staff's payments, listed by status and refunded whole or in part;
//! and the mock card processor's fault settings.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use emporium_platform::money::Money;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::people::{one_of, page_number, refused_with};
use super::{back_to, pages, staff_call, staff_page};
use crate::account::Ask;
use crate::pages::AppState;
use crate::shelves::Missing;

/// This area's templates, under `templates/admin/`.
pub const TEMPLATES: &[(&str, &str)] =
    crate::views::templates!["admin/payments.html", "admin/processor.html"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/payments", get(payments))
        .route("/admin/payments/{id}/refund", post(refund))
        .route("/admin/processor", get(processor).post(set_processor))
}

const STATUSES: &[&str] = &[
    "pending",
    "authorized",
    "captured",
    "partially_refunded",
    "refunded",
    "failed",
    "cancelled",
];
/// The statuses a refund may start from.
const REFUNDABLE: &[&str] = &["captured", "partially_refunded"];
const PER_PAGE: u64 = 25;

#[derive(Debug, Default, Deserialize)]
pub struct PaymentsQuery {
    status: Option<String>,
    page: Option<String>,
}

/// Which payments the list shows.
struct Listing {
    status: String,
    page: u64,
}

impl Listing {
    fn of(status: Option<&str>, page: Option<&str>) -> Self {
        Self {
            status: one_of(status, STATUSES),
            page: page_number(page),
        }
    }

    fn link(&self) -> String {
        format!("/admin/payments?status={}&page={}", self.status, self.page)
    }
}

/// A refund the API refused: of which payment, what was typed, its words.
#[derive(Debug, Serialize)]
struct Refused {
    id: String,
    amount: String,
    message: String,
    /// What is left of it to refund, when the list shows it.
    left: Option<String>,
    currency: Option<String>,
}

/// What is left to refund of `payment`, as an amount to type (`12.50`);
/// nothing when it cannot be refunded.
fn left_to_refund(payment: &Value) -> Option<String> {
    if !REFUNDABLE.contains(&payment["status"].as_str()?) {
        return None;
    }
    let currency = payment["amount"]["currency"].as_str()?;
    let minor = |money: &Value| {
        Money::parse(money["amount"].as_str()?, currency)
            .ok()
            .map(|m| m.minor)
    };
    let left = minor(&payment["amount"])? - minor(&payment["refunded"])?;
    let left = Money::from_minor(left, currency)
        .ok()
        .filter(|_| left > 0)?;
    Some(left.amount())
}

async fn payments_page(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    listing: &Listing,
    refused: Option<Refused>,
) -> Response {
    let (status, page) = (&listing.status, listing.page);
    staff_page(
        state,
        headers,
        client,
        "/admin/payments",
        format!("/api/v1/payments?per_page={PER_PAGE}&page={page}&status={status}"),
        "admin/payments.html",
        |mut payments| {
            let mut refused = json!(refused);
            if let Some(items) = payments["items"].as_array_mut() {
                for payment in items {
                    payment["left"] = json!(left_to_refund(payment));
                    // Each form its own key: a second press of "Refund"
                    // is the same refund.
                    payment["key"] = json!(crate::sessions::random_token());
                    if refused["id"] == payment["id"] {
                        refused["left"] = payment["left"].clone();
                        refused["currency"] = payment["amount"]["currency"].clone();
                    }
                }
            }
            json!({
                "area": "/admin/payments", "page": page, "pages": pages(&payments),
                "page_link": format!("/admin/payments?status={status}&amp;page="),
                "payments": payments, "status": status, "statuses": STATUSES,
                "refused": refused,
            })
        },
    )
    .await
}

pub async fn payments(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<PaymentsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let listing = Listing::of(query.status.as_deref(), query.page.as_deref());
    payments_page(&state, &headers, client, &listing, None).await
}

#[derive(Debug, Default, Deserialize)]
pub struct RefundForm {
    amount: Option<String>,
    currency: Option<String>,
    key: Option<String>,
    status: Option<String>,
    page: Option<String>,
    csrf: Option<String>,
}

pub async fn refund(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<RefundForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if uuid::Uuid::parse_str(&id).is_err() {
        return state.problem(&headers, Missing::NotFound).await;
    }
    let listing = Listing::of(form.status.as_deref(), form.page.as_deref());
    let typed = form.amount.unwrap_or_default().trim().to_owned();
    // No amount: all that is left.
    let body = match typed.as_str() {
        "" => json!({}),
        amount => {
            json!({ "amount": { "amount": amount, "currency": form.currency.unwrap_or_default() } })
        }
    };
    let key = form.key.filter(|k| !k.is_empty() && k.len() <= 64);
    let refunded = staff_call(
        &state,
        &headers,
        client,
        "/admin/payments",
        form.csrf.as_deref(),
        Ask {
            method: Method::POST,
            body: Some(body),
            idempotency_key: key.as_deref(),
        },
        format!("/api/v1/payments/{id}/refund"),
    )
    .await;
    match refunded {
        Ok(answer) if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND => {
            let refused = Refused {
                id,
                amount: typed,
                message: answer.message(),
                left: None,
                currency: None,
            };
            let page = payments_page(&state, &headers, client, &listing, Some(refused)).await;
            refused_with(page, answer.status)
        }
        other => back_to(&state, &headers, other, &listing.link()).await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ProcessorQuery {
    saved: Option<String>,
}

/// The processor's settings as the form shows them; when they were
/// refused, each field's message and the refusal's words.
fn processor_context(settings: Value, errors: Value, error: Option<String>, saved: bool) -> Value {
    json!({
        "area": "/admin/processor", "settings": settings, "errors": errors,
        "error": error, "saved": saved,
    })
}

pub async fn processor(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<ProcessorQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let saved = query.is_ok_and(|Query(q)| q.saved.is_some());
    staff_page(
        &state,
        &headers,
        client,
        "/admin/processor",
        "/api/v1/payments/provider".to_owned(),
        "admin/processor.html",
        |settings| {
            let errors = json!({ "failure_rate": null, "latency_ms": null });
            processor_context(settings, errors, None, saved)
        },
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct ProcessorForm {
    failure_rate: Option<String>,
    latency_ms: Option<String>,
    csrf: Option<String>,
}

const RATE_RULE: &str = "must be a number from 0 to 1, such as 0.25";
const FIX_FIELDS: &str = "The settings were not changed: please correct the marked fields.";
const LATENCY_RULE: &str = "must be a whole number of milliseconds from 0 to 10000";

pub async fn set_processor(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<ProcessorForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let call = |ask: Ask<'static>| {
        staff_call(
            &state,
            &headers,
            client,
            "/admin/processor",
            form.csrf.as_deref(),
            ask,
            "/api/v1/payments/provider".to_owned(),
        )
    };
    // The settings as they stand first: the form's token, the admin and
    // the mock processor all checked before a word about what was typed.
    match call(Ask::get()).await {
        Ok(answer) if answer.status.is_success() => {}
        Ok(answer) => {
            return state
                .problem(&headers, Missing::Refused(answer.message()))
                .await;
        }
        Err(response) => return response,
    }
    let typed = json!({
        "failure_rate": form.failure_rate.as_deref().unwrap_or_default().trim(),
        "latency_ms": form.latency_ms.as_deref().unwrap_or_default().trim(),
    });
    let rate = typed["failure_rate"]
        .as_str()
        .and_then(|r| r.parse::<f64>().ok())
        .filter(|r| r.is_finite());
    let latency = typed["latency_ms"]
        .as_str()
        .and_then(|l| l.parse::<u64>().ok());
    let (status, errors, error) = match (rate, latency) {
        (Some(rate), Some(latency)) => {
            let changed = call(Ask {
                method: Method::PUT,
                body: Some(json!({ "failure_rate": rate, "latency_ms": latency })),
                idempotency_key: None,
            })
            .await;
            match changed {
                Ok(answer) if answer.status.is_success() => {
                    return Redirect::to("/admin/processor?saved=1").into_response();
                }
                Ok(answer) if answer.status.is_client_error() => (
                    answer.status,
                    json!({
                        "failure_rate": answer.field("failure_rate"),
                        "latency_ms": answer.field("latency_ms"),
                    }),
                    if answer.field("failure_rate").is_some()
                        || answer.field("latency_ms").is_some()
                    {
                        FIX_FIELDS.to_owned()
                    } else {
                        answer.message()
                    },
                ),
                other => return back_to(&state, &headers, other, "/admin/processor").await,
            }
        }
        (rate, latency) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "failure_rate": rate.is_none().then_some(RATE_RULE),
                "latency_ms": latency.is_none().then_some(LATENCY_RULE),
            }),
            FIX_FIELDS.to_owned(),
        ),
    };
    state
        .render(
            &headers,
            status,
            "admin/processor.html",
            processor_context(typed, errors, Some(error), false),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_captured_payment_offers_what_is_left_to_refund() {
        let payment = |status: &str, refunded: &str| {
            json!({
                "status": status,
                "amount": { "amount": "34.50", "currency": "USD" },
                "refunded": { "amount": refunded, "currency": "USD" },
            })
        };
        assert_eq!(
            left_to_refund(&payment("captured", "0.00")).as_deref(),
            Some("34.50")
        );
        assert_eq!(
            left_to_refund(&payment("partially_refunded", "1.50")).as_deref(),
            Some("33.00")
        );
        for (status, refunded) in [
            ("refunded", "34.50"),
            ("partially_refunded", "34.50"),
            ("pending", "0.00"),
            ("failed", "0.00"),
        ] {
            assert_eq!(left_to_refund(&payment(status, refunded)), None, "{status}");
        }
        assert_eq!(left_to_refund(&json!({ "status": "captured" })), None);
    }
}
