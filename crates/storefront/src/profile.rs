//! A signed-in shopper's own account page: their name, email and phone as
//! identity holds them, the name and phone changed by a form.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::account::{Ask, as_shopper, check_csrf, shown};
use crate::pages::AppState;
use crate::shelves::Missing;

/// The page's context: the account as identity holds it, the form as
/// typed (or as held), each field's message and the refusal's words.
fn context(user: Value, form: Value, errors: Value, error: Option<String>, saved: bool) -> Value {
    json!({ "user": user, "form": form, "errors": errors, "error": error, "saved": saved })
}

fn no_errors() -> Value {
    json!({ "name": null, "phone": null })
}

/// The account of the signed-in shopper, read again.
async fn read(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
) -> Result<(crate::api::Answer, String), Response> {
    as_shopper(state, headers, client, "/account", Ask::get(), |_| {
        "/api/v1/users/me".to_owned()
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    saved: Option<String>,
}

pub async fn account(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<AccountQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let saved = query.is_ok_and(|Query(q)| q.saved.is_some());
    let read = read(&state, &headers, client).await;
    shown(&state, &headers, read, StatusCode::OK, "account.html", |user| {
        let form = json!({ "name": user["name"], "phone": user["phone"].as_str().unwrap_or_default() });
        context(user, form, no_errors(), None, saved)
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct AccountForm {
    name: Option<String>,
    phone: Option<String>,
    csrf: Option<String>,
}

pub async fn save(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<AccountForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(refused) = check_csrf(&state, &headers, form.csrf.as_deref()).await {
        return refused;
    }
    let (name, phone) = (
        form.name.unwrap_or_default(),
        form.phone.unwrap_or_default(),
    );
    // An empty phone takes it off the account.
    let saved = as_shopper(
        &state,
        &headers,
        client,
        "/account",
        Ask {
            method: Method::PUT,
            body: Some(json!({ "name": name, "phone": phone })),
            idempotency_key: None,
        },
        |me| format!("/api/v1/users/{me}"),
    )
    .await;
    let refusal = match saved {
        Ok((answer, _)) if answer.status.is_success() => {
            // The header greets the shopper by the name they now have.
            if let (Some((_, session)), Some(held)) =
                (state.sessions.of(&headers), answer.body["name"].as_str())
            {
                held.clone_into(&mut session.lock().await.name);
            }
            return Redirect::to("/account?saved=1").into_response();
        }
        Ok((answer, _)) => answer,
        Err(response) => return response,
    };
    let errors = json!({ "name": refusal.field("name"), "phone": refusal.field("phone") });
    if !refusal.status.is_client_error() {
        return state
            .problem(&headers, Missing::Unavailable("accounts service"))
            .await;
    }
    let status = refusal.status;
    let read = read(&state, &headers, client).await;
    shown(&state, &headers, read, status, "account.html", |user| {
        let form = json!({ "name": name, "phone": phone });
        let error = match errors["name"].is_null() && errors["phone"].is_null() {
            true => refusal.message(),
            false => "Nothing was saved: please correct the marked fields.".to_owned(),
        };
        context(user, form, errors, Some(error), false)
    })
    .await
}
