//! REST routes: parse, authorize, call one use case, map the result. Every
//! POST honours `Idempotency-Key`.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emporium_platform::auth::{Admin, Caller, Claims, Verifier};
use emporium_platform::http::{Json, Path, Query, page_params, parse_value};
use emporium_platform::idempotency::{self, SharedIdempotency};
use emporium_platform::money::Money;
use emporium_platform::{ErrorCode, FieldError, Problem};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{PaymentDraft, PaymentInput, Status};
use crate::payments::{BehaviourInput, PaymentError, Payments, view};
use crate::provider::{MockBehaviour, MockProvider};
use crate::store::{Filter, PaymentRow};

#[derive(Clone)]
pub struct AppState {
    pub payments: Payments,
    pub verifier: Verifier,
    pub keys: SharedIdempotency,
    pub key_ttl: std::time::Duration,
    /// The mock processor, when it is the one in use.
    pub mock: Option<MockProvider>,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/payments", post(create).get(list))
        .route(
            "/api/v1/payments/provider",
            get(behaviour).put(set_behaviour),
        )
        .route("/api/v1/payments/order/{order_id}", get(of_order))
        .route("/api/v1/payments/{id}", get(read))
        .route("/api/v1/payments/{id}/process", post(process))
        .route("/api/v1/payments/{id}/cancel", post(cancel))
        .route("/api/v1/payments/{id}/refund", post(refund))
        .route("/api/v1/users/{id}/payments", get(of_user))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .with_state(state)
}

fn forbidden() -> Problem {
    Problem::new(ErrorCode::Forbidden, "this is another user's payment")
}

fn payment_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::bad_parameter("id", "must be a UUID"))
}

/// The payment, if the caller may see it: its payer or an admin. Another
/// user's payment answers as a missing one, so that ids cannot be probed.
async fn owned(state: &AppState, claims: &Claims, raw: &str) -> Result<PaymentRow, Problem> {
    let row = state.payments.get(payment_id(raw)?).await?;
    if row.user_id != claims.sub && !claims.is_admin() {
        return Err(PaymentError::NotFound.into());
    }
    Ok(row)
}

fn json<T: serde::Serialize>(
    status: StatusCode,
    value: T,
) -> Result<(StatusCode, serde_json::Value), Problem> {
    serde_json::to_value(value)
        .map(|v| (status, v))
        .map_err(Problem::internal)
}

/// Runs a POST once per `Idempotency-Key` of the caller.
async fn once<F, Fut>(
    state: &AppState,
    claims: &Claims,
    headers: &HeaderMap,
    (method, uri, body): (&Method, &Uri, &serde_json::Value),
    work: F,
) -> Result<Response, Problem>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, serde_json::Value), Problem>>,
{
    let key = idempotency::key(headers)?;
    let fingerprint =
        idempotency::fingerprint(method.as_str(), uri.path(), body.to_string().as_bytes());
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

/// A payment named by REST is an admin's (decision 0020): a customer's
/// payments are made by ordering's checkout, for the order's total, since
/// nothing here can tell whose order an `order_id` is.
async fn create(
    State(state): State<AppState>,
    Admin(claims): Admin,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, Problem> {
    let input: PaymentInput = parse_value(body.clone())?;
    let draft = PaymentDraft::parse(&input).map_err(Problem::invalid)?;
    let payer = draft.user_id.clone().unwrap_or_else(|| claims.sub.clone());
    let work = || async {
        json(
            StatusCode::CREATED,
            state.payments.create(&draft, &payer).await?,
        )
    };
    once(&state, &claims, &headers, (&method, &uri, &body), work).await
}

/// A POST whose body is optional: an empty one reads as `{}`.
fn optional_body(body: &axum::body::Bytes) -> Result<serde_json::Value, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("malformed JSON: {e}")))
}

/// The steps a payer (or an admin) takes on a payment.
#[derive(Clone, Copy)]
enum Step {
    Process,
    Cancel,
}

async fn step(
    state: AppState,
    claims: Claims,
    raw: String,
    (headers, method, uri): (HeaderMap, Method, Uri),
    step: Step,
) -> Result<Response, Problem> {
    let row = owned(&state, &claims, &raw).await?;
    let id = payment_id(&row.id)?;
    let work = || async {
        let view = match step {
            Step::Process => state.payments.process(id).await?,
            Step::Cancel => state.payments.cancel(id).await?,
        };
        json(StatusCode::OK, view)
    };
    let request = (&method, &uri, &serde_json::Value::Null);
    once(&state, &claims, &headers, request, work).await
}

async fn process(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
) -> Result<Response, Problem> {
    step(state, claims, id, (headers, method, uri), Step::Process).await
}

async fn cancel(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
) -> Result<Response, Problem> {
    step(state, claims, id, (headers, method, uri), Step::Cancel).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundInput {
    amount: Option<emporium_platform::money::MoneyJson>,
}

async fn refund(
    State(state): State<AppState>,
    Admin(claims): Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let id = payment_id(&id)?;
    let body = optional_body(&body)?;
    let input: RefundInput = parse_value(body.clone())?;
    let amount = input
        .amount
        .map(|a| {
            Money::parse(&a.amount, &a.currency).map_err(|message| {
                Problem::invalid(vec![FieldError {
                    field: "amount".into(),
                    message,
                }])
            })
        })
        .transpose()?;
    let work = || async { json(StatusCode::OK, state.payments.refund(id, amount).await?) };
    once(&state, &claims, &headers, (&method, &uri, &body), work).await
}

async fn read(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let row = owned(&state, &claims, &id).await?;
    Ok(Json(view(&row)?).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    page: Option<String>,
    per_page: Option<String>,
    status: Option<String>,
}

fn filter_status(raw: Option<&str>) -> Result<Option<String>, Problem> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => Status::parse(s)
            .map(|s| Some(s.as_str().to_owned()))
            .ok_or_else(|| Problem::bad_parameter("status", "is not a payment status")),
    }
}

async fn list(
    State(state): State<AppState>,
    Admin(_): Admin,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let (page, per_page) = page_params(params.page.as_deref(), params.per_page.as_deref())?;
    let filter = Filter {
        status: filter_status(params.status.as_deref())?,
        ..Filter::default()
    };
    Ok(Json(state.payments.list(&filter, page, per_page).await?).into_response())
}

fn reference(field: &str, raw: &str) -> Result<String, Problem> {
    let fine = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if fine {
        Ok(raw.to_owned())
    } else {
        Err(Problem::bad_parameter(
            field,
            "must be 1 to 64 of letters, digits, '-' and '_'",
        ))
    }
}

async fn of_user(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(user): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let user = reference("id", &user)?;
    if user != claims.sub && !claims.is_admin() {
        return Err(forbidden());
    }
    let (page, per_page) = page_params(params.page.as_deref(), params.per_page.as_deref())?;
    let filter = Filter {
        user_id: Some(user),
        status: filter_status(params.status.as_deref())?,
        ..Filter::default()
    };
    Ok(Json(state.payments.list(&filter, page, per_page).await?).into_response())
}

async fn of_order(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(order): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let order = reference("order_id", &order)?;
    let (page, per_page) = page_params(params.page.as_deref(), params.per_page.as_deref())?;
    let filter = Filter {
        order_id: Some(order),
        // A customer sees only their own payments of the order.
        user_id: (!claims.is_admin()).then(|| claims.sub.clone()),
        status: filter_status(params.status.as_deref())?,
    };
    Ok(Json(state.payments.list(&filter, page, per_page).await?).into_response())
}

fn mock(state: &AppState) -> Result<&MockProvider, Problem> {
    state
        .mock
        .as_ref()
        .ok_or_else(|| Problem::not_found("the processor in use is not the mock"))
}

async fn behaviour(State(state): State<AppState>, Admin(_): Admin) -> Result<Response, Problem> {
    Ok(Json(mock(&state)?.behaviour()).into_response())
}

async fn set_behaviour(
    State(state): State<AppState>,
    Admin(_): Admin,
    Json(input): Json<BehaviourInput>,
) -> Result<Response, Problem> {
    let mock = mock(&state)?;
    let mut next: MockBehaviour = mock.behaviour();
    let mut errors = vec![];
    if let Some(rate) = input.failure_rate {
        if (0.0..=1.0).contains(&rate) {
            next.failure_rate = rate;
        } else {
            errors.push(FieldError {
                field: "failure_rate".into(),
                message: "must be from 0 to 1".into(),
            });
        }
    }
    if let Some(latency) = input.latency_ms {
        if latency <= 10_000 {
            next.latency_ms = latency;
        } else {
            errors.push(FieldError {
                field: "latency_ms".into(),
                message: "must be at most 10000".into(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    mock.set_behaviour(next);
    Ok(Json(next).into_response())
}
