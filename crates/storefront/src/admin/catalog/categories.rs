//! The categories products sit on: listed with their product counts, and
//! created. The catalog neither renames nor deletes a category, so the
//! page offers neither.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{DoneQuery, done, reads, refused, send, unmarked};
use crate::admin::staff_call;
use crate::pages::AppState;

const BOXES: &[(&str, &str)] = &[("slug", "slug"), ("name", "name")];

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/categories", get(categories).post(create))
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct CategoryForm {
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing)]
    csrf: Option<String>,
}

/// The list and the form, with what was typed and said of it.
async fn page(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    form: &CategoryForm,
    said: (Value, Option<String>, StatusCode),
    done: Option<&'static str>,
) -> Response {
    let back = "/admin/categories";
    let [list] = match reads(state, headers, client, back, ["/api/v1/categories".into()]).await {
        Ok(bodies) => bodies,
        Err(response) => return response,
    };
    let (errors, error, status) = said;
    state
        .render(
            headers,
            status,
            "admin/categories.html",
            json!({
                "area": "/admin/categories", "all_categories": list["items"],
                "form": form, "errors": errors, "error": error, "done": done,
            }),
        )
        .await
}

async fn categories(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let done = done(query.ok().and_then(|Query(q)| q.done).as_deref());
    let said = (unmarked(BOXES), None, StatusCode::OK);
    page(
        &state,
        &headers,
        client,
        &CategoryForm::default(),
        said,
        done,
    )
    .await
}

async fn create(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<CategoryForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let made = staff_call(
        &state,
        &headers,
        client,
        "/admin/categories",
        form.csrf.as_deref(),
        send(
            Method::POST,
            Some(json!({ "slug": form.slug.trim(), "name": form.name })),
        ),
        "/api/v1/categories".into(),
    )
    .await;
    match made {
        Ok(answer) if answer.status.is_success() => {
            Redirect::to("/admin/categories?done=category").into_response()
        }
        Ok(answer) => {
            let (errors, error, status) = refused(&answer, BOXES, "slug");
            page(
                &state,
                &headers,
                client,
                &form,
                (errors, Some(error), status),
                None,
            )
            .await
        }
        Err(response) => response,
    }
}
