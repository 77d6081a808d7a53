//! REST routes: parse, authorize, call one use case, map the result.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use emporium_platform::auth::{Admin, Caller, Verifier};
use emporium_platform::error::FieldError;
use emporium_platform::http::{Json, Page, Path, Query, page_params};
use emporium_platform::{ErrorCode, Problem};
use serde::{Deserialize, Serialize};

use crate::dispatch::Dispatcher;
use crate::domain::{
    Channel, Directory, Draft, MANUAL, MAX_KIND, Status, email_address, phone_number,
};
use crate::store::{Filter, MAX_SUBJECT, Record, Store};

/// The longest text an admin may send.
pub const MAX_BODY: usize = 10_000;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub verifier: Verifier,
    pub directory: Directory,
    pub dispatcher: Dispatcher,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/notifications", get(list))
        .route("/api/v1/notifications/send", post(send))
        .route("/api/v1/notifications/{id}", get(one))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .with_state(state)
}

/// A message as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationView {
    pub id: String,
    pub user_id: Option<String>,
    pub channel: String,
    pub recipient: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub event_id: Option<String>,
    /// When the next attempt is due, while `queued`.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Record> for NotificationView {
    fn from(r: Record) -> Self {
        let queued = r.status == Status::Queued.as_str();
        Self {
            id: r.id,
            user_id: r.user_id,
            channel: r.channel,
            recipient: r.recipient,
            kind: r.kind,
            subject: r.subject,
            body_text: r.body_text,
            body_html: r.body_html,
            status: r.status,
            attempts: r.attempts,
            error: r.error,
            event_id: r.event_id,
            next_attempt_at: queued.then_some(r.next_attempt_at),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// What an admin sends: to a user (by id) or an address, on a channel.
#[derive(Debug, Default, Deserialize)]
pub struct SendInput {
    user_id: Option<String>,
    to: Option<String>,
    channel: Option<String>,
    subject: Option<String>,
    body: Option<String>,
}

fn field(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// A checked [`SendInput`]: the channel, who it goes to, and the text.
struct Sending {
    channel: Channel,
    user_id: Option<uuid::Uuid>,
    to: Option<String>,
    subject: String,
    body: String,
}

fn checked(input: SendInput) -> Result<Sending, Problem> {
    let mut errors = Vec::new();
    let channel = match input.channel.as_deref() {
        None => Some(Channel::Email),
        Some(raw) => Channel::parse(raw)
            .map_err(|m| errors.push(field("channel", m)))
            .ok(),
    };
    let user_id = input.user_id.as_deref().and_then(|raw| {
        uuid::Uuid::parse_str(raw)
            .map_err(|_| errors.push(field("user_id", "must be a user id (UUID)")))
            .ok()
    });
    let to = match (&input.to, channel) {
        (Some(raw), Some(Channel::Email)) => email_address(raw)
            .map_err(|m| errors.push(field("to", m)))
            .ok(),
        (Some(raw), Some(Channel::Sms)) => phone_number(raw)
            .map_err(|m| errors.push(field("to", m)))
            .ok(),
        _ => None,
    };
    match (&input.user_id, &input.to) {
        (None, None) => errors.push(field("to", "one of `user_id` and `to` is required")),
        (Some(_), Some(_)) => errors.push(field("to", "give `user_id` or `to`, not both")),
        _ => {}
    }
    let subject = input.subject.unwrap_or_default().trim().to_owned();
    if channel == Some(Channel::Email) && subject.is_empty() {
        errors.push(field("subject", "is required for an email"));
    }
    if subject.chars().count() > MAX_SUBJECT || subject.contains(['\r', '\n']) {
        errors.push(field(
            "subject",
            format!("must be one line of at most {MAX_SUBJECT} characters"),
        ));
    }
    let body = input.body.unwrap_or_default();
    if body.trim().is_empty() {
        errors.push(field("body", "is required"));
    } else if body.chars().count() > MAX_BODY {
        errors.push(field(
            "body",
            format!("must have at most {MAX_BODY} characters"),
        ));
    }
    match channel {
        Some(channel) if errors.is_empty() => Ok(Sending {
            channel,
            user_id,
            to,
            subject,
            body,
        }),
        _ => Err(Problem::invalid(errors)),
    }
}

async fn send(
    State(state): State<AppState>,
    Admin(_): Admin,
    Json(input): Json<SendInput>,
) -> Result<Response, Problem> {
    let sending = checked(input)?;
    let (user_id, recipient) = match (sending.user_id, sending.to) {
        (Some(id), _) => {
            let user = state
                .directory
                .lookup(&id.to_string())
                .await?
                .ok_or_else(|| Problem::invalid(vec![field("user_id", "no user has this id")]))?;
            let address = match sending.channel {
                Channel::Email => user.email.clone(),
                Channel::Sms => user.phone.clone().ok_or_else(|| {
                    Problem::invalid(vec![field("user_id", "this user has no phone number")])
                })?,
            };
            (Some(user.user_id), address)
        }
        (None, Some(to)) => (None, to),
        (None, None) => return Err(Problem::invalid(vec![field("to", "is required")])),
    };
    let draft = Draft {
        user_id,
        channel: sending.channel,
        recipient,
        kind: MANUAL.to_owned(),
        subject: sending.subject,
        text: sending.body,
        html: None,
        event_id: None,
        error: None,
    };
    let record = Store::insert(state.store.db(), &draft).await?;
    state.dispatcher.wake();
    let location = format!("/api/v1/notifications/{}", record.id);
    let mut response = (StatusCode::ACCEPTED, Json(NotificationView::from(record))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Parameters as text, so that each bad one gets its own message.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    user_id: Option<String>,
    page: Option<String>,
    per_page: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<NotificationView>>, Problem> {
    let (page, per_page) = page_params(params.page.as_deref(), params.per_page.as_deref())?;
    let status = params
        .status
        .as_deref()
        .map(Status::parse)
        .transpose()
        .map_err(|m| Problem::bad_parameter("status", m))?;
    let kind = params
        .kind
        .filter(|k| !k.is_empty())
        .map(|k| {
            if k.len() <= MAX_KIND {
                Ok(k)
            } else {
                Err(Problem::bad_parameter(
                    "type",
                    format!("must have at most {MAX_KIND} characters"),
                ))
            }
        })
        .transpose()?;
    let user_id = match (claims.is_admin(), params.user_id) {
        (true, user) => user.filter(|u| !u.is_empty()),
        (false, None) => Some(claims.sub.clone()),
        (false, Some(user)) if user == claims.sub => Some(user),
        (false, Some(_)) => {
            return Err(Problem::new(
                ErrorCode::Forbidden,
                "only an admin lists another user's messages",
            ));
        }
    };
    if user_id.as_ref().is_some_and(|u| u.len() > 64) {
        return Err(Problem::bad_parameter(
            "user_id",
            "must have at most 64 characters",
        ));
    }
    let filter = Filter {
        user_id,
        status,
        kind,
    };
    let (items, total) = state.store.list(&filter, page, per_page).await?;
    Ok(Json(Page {
        items: items.into_iter().map(NotificationView::from).collect(),
        page,
        per_page,
        total,
    }))
}

async fn one(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(id): Path<String>,
) -> Result<Json<NotificationView>, Problem> {
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| Problem::bad_parameter("id", "must be a notification id (UUID)"))?;
    let record = state
        .store
        .get(&id.to_string())
        .await?
        .filter(|r| claims.is_admin() || r.user_id.as_deref() == Some(claims.sub.as_str()))
        .ok_or_else(|| Problem::not_found("no notification has this id"))?;
    Ok(Json(record.into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn input(json: serde_json::Value) -> SendInput {
        serde_json::from_value(json).unwrap()
    }

    fn fields(problem: Problem) -> Vec<String> {
        problem.errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_message_needs_one_recipient_a_subject_for_email_and_a_body() {
        let ok = checked(input(
            serde_json::json!({ "to": "ann@example.org", "subject": "Hi", "body": "Hello" }),
        ))
        .unwrap();
        assert_eq!(
            (ok.channel, ok.to.as_deref()),
            (Channel::Email, Some("ann@example.org"))
        );
        let sms = checked(input(
            serde_json::json!({ "to": "+4915112345678", "channel": "sms", "body": "Hello" }),
        ))
        .unwrap();
        assert_eq!(sms.channel, Channel::Sms);

        for (json, field) in [
            (serde_json::json!({ "subject": "Hi", "body": "x" }), "to"),
            (
                serde_json::json!({ "to": "a@example.org", "user_id": "0193a4b2-0000-7000-8000-000000000002", "subject": "Hi", "body": "x" }),
                "to",
            ),
            (
                serde_json::json!({ "to": "nobody", "subject": "Hi", "body": "x" }),
                "to",
            ),
            (
                serde_json::json!({ "to": "a@example.org", "channel": "sms", "body": "x" }),
                "to",
            ),
            (
                serde_json::json!({ "to": "a@example.org", "channel": "fax", "body": "x" }),
                "channel",
            ),
            (
                serde_json::json!({ "user_id": "7", "subject": "Hi", "body": "x" }),
                "user_id",
            ),
            (
                serde_json::json!({ "to": "a@example.org", "body": "x" }),
                "subject",
            ),
            (
                serde_json::json!({ "to": "a@example.org", "subject": "a\r\nBcc: b@example.org", "body": "x" }),
                "subject",
            ),
            (
                serde_json::json!({ "to": "a@example.org", "subject": "Hi", "body": " " }),
                "body",
            ),
            (
                serde_json::json!({ "to": "a@example.org", "subject": "Hi", "body": "x".repeat(MAX_BODY + 1) }),
                "body",
            ),
        ] {
            let problem = checked(input(json.clone())).err().unwrap();
            assert_eq!(problem.code, ErrorCode::Unprocessable, "{json}");
            assert!(fields(problem).contains(&field.to_owned()), "{json}");
        }
    }
}
