//! The staff's pages about people: users (role, whether they may sign in)
//! and the messages the shop sent them.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::{back_to, pages, staff_call, staff_page};
use crate::account::Ask;
use crate::pages::AppState;
use crate::shelves::Missing;

/// This area's templates, under `templates/admin/`.
pub const TEMPLATES: &[(&str, &str)] = crate::views::templates![
    "admin/users.html",
    "admin/notifications.html",
    "admin/notification.html",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(users))
        .route("/admin/users/{id}", post(change_user))
        .route("/admin/notifications", get(notifications))
        .route("/admin/notifications/{id}", get(notification))
}

/// Rows of a staff list page.
const PER_PAGE: u64 = 25;
const ROLES: &[&str] = &["customer", "admin"];
const MESSAGE_STATUSES: &[&str] = &["queued", "sent", "failed"];
const ONESELF: &str = "You cannot disable yourself or drop your own admin role. Ask another admin.";

/// A list's page number as asked: a whole number from 1 (the first when
/// it is anything else), no further than the APIs page.
pub(crate) fn page_number(raw: Option<&str>) -> u64 {
    raw.and_then(|p| p.trim().parse::<u64>().ok())
        .filter(|p| (1..=1_000_000).contains(p))
        .unwrap_or(1)
}

/// `raw` when it is one of `allowed`, else nothing (every one).
pub(crate) fn one_of(raw: Option<&str>, allowed: &[&str]) -> String {
    raw.filter(|s| allowed.contains(s))
        .unwrap_or_default()
        .to_owned()
}

/// A page rendered for a refused form: the form's answer's status (a
/// 4xx or 5xx) in place of the 200 of a read that went well.
pub(crate) fn refused_with(mut page: Response, status: StatusCode) -> Response {
    if page.status() == StatusCode::OK {
        *page.status_mut() = if status.is_success() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            status
        };
    }
    page
}

/// The signed-in user's id, `""` for a visitor.
async fn own_id(state: &AppState, headers: &HeaderMap) -> String {
    match state.sessions.of(headers) {
        Some((_, session)) => session.lock().await.user_id.clone(),
        None => String::new(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct UsersQuery {
    email: Option<String>,
    page: Option<String>,
}

/// Which users the list shows: an email fragment and a page.
struct Listing {
    email: String,
    page: u64,
}

impl Listing {
    fn of(email: Option<String>, page: Option<&str>) -> Self {
        let email: String = email.unwrap_or_default().trim().chars().take(254).collect();
        Self {
            email,
            page: page_number(page),
        }
    }

    fn link(&self) -> String {
        format!(
            "/admin/users?email={}&page={}",
            crate::views::encode(&self.email),
            self.page
        )
    }
}

async fn users_page(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    listing: &Listing,
    error: Option<String>,
) -> Response {
    let me = own_id(state, headers).await;
    let email = crate::views::encode(&listing.email);
    let page = listing.page;
    staff_page(
        state,
        headers,
        client,
        "/admin/users",
        format!("/api/v1/users?per_page={PER_PAGE}&page={page}&email={email}"),
        "admin/users.html",
        |users| {
            json!({
                "area": "/admin/users", "page": page, "pages": pages(&users),
                "page_link": format!("/admin/users?email={email}&amp;page="),
                "users": users, "email": listing.email, "own_id": me, "roles": ROLES,
                "error": error, "oneself": ONESELF,
            })
        },
    )
    .await
}

pub async fn users(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<UsersQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let listing = Listing::of(query.email, query.page.as_deref());
    users_page(&state, &headers, client, &listing, None).await
}

#[derive(Debug, Default, Deserialize)]
pub struct UserForm {
    role: Option<String>,
    active: Option<String>,
    email: Option<String>,
    page: Option<String>,
    csrf: Option<String>,
}

pub async fn change_user(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<UserForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if uuid::Uuid::parse_str(&id).is_err() {
        return state.problem(&headers, Missing::NotFound).await;
    }
    let listing = Listing::of(form.email, form.page.as_deref());
    // The user as identity holds them: a change of role or access sends
    // their name and phone back as they are.
    let read = staff_call(
        &state,
        &headers,
        client,
        "/admin/users",
        form.csrf.as_deref(),
        Ask::get(),
        format!("/api/v1/users/{id}"),
    )
    .await;
    let user = match read {
        Ok(answer) if answer.status.is_success() => answer.body,
        other => return back_to(&state, &headers, other, &listing.link()).await,
    };
    let role = form.role.filter(|r| ROLES.contains(&r.as_str()));
    let active = match form.active.as_deref() {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let (Some(role), Some(active)) = (role, active) else {
        let why = "Choose a role and whether the account may sign in from the lists.";
        let page = users_page(&state, &headers, client, &listing, Some(why.into())).await;
        return refused_with(page, StatusCode::UNPROCESSABLE_ENTITY);
    };
    if id == own_id(&state, &headers).await && (role != "admin" || !active) {
        let page = users_page(&state, &headers, client, &listing, Some(ONESELF.into())).await;
        return refused_with(page, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let changed = staff_call(
        &state,
        &headers,
        client,
        "/admin/users",
        form.csrf.as_deref(),
        Ask {
            method: Method::PUT,
            body: Some(json!({
                "name": user["name"], "phone": user["phone"], "role": role, "active": active,
            })),
            idempotency_key: None,
        },
        format!("/api/v1/users/{id}"),
    )
    .await;
    match changed {
        Ok(answer) if answer.status.is_client_error() && answer.status != StatusCode::NOT_FOUND => {
            let page = users_page(&state, &headers, client, &listing, Some(answer.message())).await;
            refused_with(page, answer.status)
        }
        other => back_to(&state, &headers, other, &listing.link()).await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct MessagesQuery {
    status: Option<String>,
    page: Option<String>,
}

pub async fn notifications(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<MessagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let status = one_of(query.status.as_deref(), MESSAGE_STATUSES);
    let page = page_number(query.page.as_deref());
    // The API takes no empty status: every status is no status at all.
    let only = match status.as_str() {
        "" => String::new(),
        s => format!("&status={s}"),
    };
    staff_page(
        &state,
        &headers,
        client,
        "/admin/notifications",
        format!("/api/v1/notifications?per_page={PER_PAGE}&page={page}{only}"),
        "admin/notifications.html",
        |messages| {
            json!({
                "area": "/admin/notifications", "page": page, "pages": pages(&messages),
                "page_link": format!("/admin/notifications?status={status}&amp;page="),
                "messages": messages, "status": status, "statuses": MESSAGE_STATUSES,
            })
        },
    )
    .await
}

pub async fn notification(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if uuid::Uuid::parse_str(&id).is_err() {
        return state.problem(&headers, Missing::NotFound).await;
    }
    staff_page(
        &state,
        &headers,
        client,
        &format!("/admin/notifications/{id}"),
        format!("/api/v1/notifications/{id}"),
        "admin/notification.html",
        |message| json!({ "area": "/admin/notifications", "message": message }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_asked_only_for_pages_and_statuses_the_api_takes() {
        assert_eq!(page_number(Some("3")), 3);
        for odd in [None, Some("0"), Some("-1"), Some("x"), Some("1000001")] {
            assert_eq!(page_number(odd), 1, "{odd:?}");
        }
        assert_eq!(one_of(Some("sent"), MESSAGE_STATUSES), "sent");
        assert_eq!(one_of(Some("<b>"), MESSAGE_STATUSES), "");
        assert_eq!(one_of(None, MESSAGE_STATUSES), "");
    }
}
