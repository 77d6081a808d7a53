//! The staff's catalog: products, categories and inventory, a module
//! each, and what their pages share. The catalog's and the inventory's
//! answers decide what is valid: a refused form comes back with their
//! words beside its boxes and what was typed still in them.

mod categories;
mod inventory;
mod pictures;
mod products;

use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::staff_only;
use crate::account::{Ask, as_shopper};
use crate::api::Answer;
use crate::pages::AppState;
use crate::shelves::Missing;
use crate::views::encode;

/// This area's templates, under `templates/admin/`.
pub const TEMPLATES: &[(&str, &str)] = crate::views::templates![
    "admin/fields.html",
    "admin/products.html",
    "admin/product.html",
    "admin/delete.html",
    "admin/categories.html",
    "admin/inventory.html",
    "admin/stock.html",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(products::routes())
        .merge(pictures::routes())
        .merge(categories::routes())
        .merge(inventory::routes())
}

/// What a page says after a form went through: a word from a fixed list,
/// so that no address can make the page say anything else.
fn done(word: Option<&str>) -> Option<&'static str> {
    Some(match word? {
        "created" => "Created. Add its pictures below.",
        "saved" => "Saved.",
        "uploaded" => "The picture was added.",
        "deleted" => "The product was deleted.",
        "category" => "The category was created.",
        "adjusted" => "The stock was adjusted.",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

/// One read of the API for a staff page: the body of a success; the page
/// that says why not otherwise ("not found" for a 404, "back in a moment"
/// when the service behind it is away).
async fn read(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    back: &str,
    path: String,
) -> Result<Value, Response> {
    if let Some(refused) = staff_only(state, headers).await {
        return Err(refused);
    }
    let asked = path.clone();
    let (answer, _) = as_shopper(state, headers, client, back, Ask::get(), |_| asked).await?;
    match answer.status {
        s if s.is_success() => Ok(answer.body),
        StatusCode::NOT_FOUND => Err(state.problem(headers, Missing::NotFound).await),
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            let service = if path.starts_with("/api/v1/inventory") {
                "inventory"
            } else {
                "catalog"
            };
            Err(state.problem(headers, Missing::Unavailable(service)).await)
        }
        _ => Err(state
            .problem(headers, Missing::Refused(answer.message()))
            .await),
    }
}

/// The pages' reads, one after the other: every body, or the first page
/// that says why not.
async fn reads<const N: usize>(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    back: &str,
    paths: [String; N],
) -> Result<[Value; N], Response> {
    let mut bodies = [const { Value::Null }; N];
    for (body, path) in bodies.iter_mut().zip(paths) {
        *body = read(state, headers, client, back, path).await?;
    }
    Ok(bodies)
}

/// A form's call: `body` sent as JSON by `method`.
fn send(method: Method, body: Option<Value>) -> Ask<'static> {
    Ask {
        method,
        body,
        idempotency_key: None,
    }
}

/// What a refused form shows: each box's message (`boxes` pairs the form's
/// name of a box with the API's name of its field; a conflict is said
/// beside `conflict`), one line above the form, and the page's status.
fn refused(answer: &Answer, boxes: &[(&str, &str)], conflict: &str) -> (Value, String, StatusCode) {
    let mut errors = serde_json::Map::new();
    for &(name, field) in boxes {
        let said = answer.field(field).or_else(|| {
            (answer.status == StatusCode::CONFLICT && name == conflict)
                .then(|| answer.body["detail"].as_str().map(str::to_owned))?
        });
        errors.insert(name.to_owned(), json!(said));
    }
    let marked = errors.values().any(|v| !v.is_null());
    let headline = if marked {
        "Nothing was saved: please see the marked boxes.".to_owned()
    } else {
        answer.message()
    };
    let status = if answer.status.is_client_error() || answer.status.is_server_error() {
        answer.status
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (Value::Object(errors), headline, status)
}

/// No message beside any of `boxes`.
fn unmarked(boxes: &[(&str, &str)]) -> Value {
    boxes
        .iter()
        .map(|&(name, _)| (name.to_owned(), Value::Null))
        .collect()
}

/// A page number as typed: 1 when absent or not a number from 1.
fn page_number(raw: Option<&str>) -> u64 {
    raw.and_then(|p| p.trim().parse::<u64>().ok())
        .filter(|&p| (1..=1_000_000).contains(&p))
        .unwrap_or(1)
}

/// `key=value&` for each non-empty value, percent-encoded.
fn query_of(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key}={}&", encode(value)))
        .collect()
}
