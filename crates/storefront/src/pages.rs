//! The pages: each asks the shelves, renders a template, and answers HTML,
//! also when something is missing (a page that says so, never JSON or a
//! blank page).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use emporium_proto::catalog::v1::ListProductsRequest;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::shelves::{Availability, Category, Missing, Shelves};
use crate::views::Views;

#[derive(Clone)]
pub struct AppState {
    pub shelves: Shelves,
    pub views: Arc<Views>,
    pub api: crate::api::Api,
    pub sessions: Arc<crate::sessions::Sessions>,
}

pub fn router(state: AppState) -> Router {
    use crate::account;
    use axum::routing::post;
    Router::new()
        .route("/", get(home))
        .route("/products", get(products))
        .route("/products/{id}", get(product))
        .route("/static/{name}", get(crate::assets::serve))
        .route("/signin", get(account::signin_page).post(account::signin))
        .route("/register", get(account::register_page).post(account::register))
        .route("/signout", post(account::signout))
        .route("/basket", get(account::basket))
        .route("/basket/items", post(account::add_to_basket))
        .route("/basket/items/{product_id}", post(account::change_line))
        .route("/checkout", get(account::checkout_page).post(account::checkout))
        .route("/orders", get(account::orders))
        .route("/orders/{id}", get(account::order))
        .route("/account", get(crate::profile::account).post(crate::profile::save))
        .merge(crate::admin::routes())
        .route(
            "/openapi.json",
            // Pages, not API: nothing for the shop's API document.
            get(|| async {
                axum::Json(json!({ "openapi": "3.1.0", "info": { "title": "Emporium storefront", "version": "1" }, "paths": {} }))
            }),
        )
        .fallback(not_found)
        .with_state(state)
}

/// What the search form sent, as text, kept to fill the form again.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub min_price: String,
    #[serde(default)]
    pub max_price: String,
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub page: String,
}

const SORTS: &[(&str, &str)] = &[
    ("newest", "Newest"),
    ("price", "Price, low to high"),
    ("-price", "Price, high to low"),
    ("name", "Name"),
];

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

impl AppState {
    /// `template` with `context` and what every page shows: the categories,
    /// who is signed in, the forms' CSRF token (set as a cookie when the
    /// request had none).
    pub async fn render(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        template: &str,
        mut context: serde_json::Value,
    ) -> Response {
        let categories = match context.get("categories") {
            Some(_) => None,
            None => Some(self.categories().await),
        };
        let me = match self.sessions.of(headers) {
            Some((_, session)) => {
                let held = session.lock().await;
                json!({ "name": held.name, "admin": held.admin })
            }
            None => serde_json::Value::Null,
        };
        let (csrf, fresh) = crate::sessions::csrf(headers);
        if let Some(map) = context.as_object_mut() {
            if let Some(categories) = categories {
                map.insert("categories".into(), json!(categories));
            }
            map.entry("query")
                .or_insert_with(|| json!(ListQuery::default()));
            map.insert("me".into(), me);
            map.insert("csrf".into(), json!(csrf));
        }
        let mut response = match self.views.render(template, context) {
            Ok(body) => html(status, body),
            Err(e) => {
                tracing::error!(template, error = %e, "page did not render");
                html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Emporium</title><p>This page could not be shown. Please try again.</p>".into(),
                )
            }
        };
        if fresh {
            response.headers_mut().append(
                header::SET_COOKIE,
                crate::sessions::set_cookie(
                    crate::sessions::CSRF_COOKIE,
                    &csrf,
                    std::time::Duration::from_secs(7 * 24 * 3600),
                ),
            );
        }
        response
    }

    /// The page that says why there is nothing to show.
    pub async fn problem(&self, headers: &HeaderMap, missing: Missing) -> Response {
        let (status, title, message) = match missing {
            Missing::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found".to_owned(),
                "There is no such page or product. It may have been taken off the shelves."
                    .to_owned(),
            ),
            Missing::Unavailable(service) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Back in a moment".to_owned(),
                format!(
                    "The shop's {service} is not answering right now. Please try again in a moment."
                ),
            ),
            Missing::Refused(why) => (StatusCode::BAD_REQUEST, "That did not work".to_owned(), why),
        };
        self.render(
            headers,
            status,
            "problem.html",
            json!({ "title": title, "message": message }),
        )
        .await
    }

    /// The categories for the header; none when the catalog is away (the
    /// page says what else is missing).
    async fn categories(&self) -> Vec<Category> {
        self.shelves.categories().await.unwrap_or_default()
    }
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let categories = match state.shelves.categories().await {
        Ok(c) => c,
        Err(missing) => return state.problem(&headers, missing).await,
    };
    let ask = ListProductsRequest {
        per_page: 8,
        ..ListProductsRequest::default()
    };
    match state.shelves.list(ask).await {
        Ok(shelf) => state
            .render(
                &headers,
                StatusCode::OK,
                "home.html",
                json!({ "categories": categories, "featured": shelf.items, "total": shelf.total }),
            )
            .await,
        Err(missing) => state.problem(&headers, missing).await,
    }
}

/// Words for a price in major units as a shopper types it: `12`, `12.5`.
fn price_words(raw: &str) -> String {
    raw.trim().to_owned()
}

async fn products(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let categories = state.categories().await;
    let Ok(Query(query)) = query else {
        return state
            .problem(
                &headers,
                Missing::Refused("The search could not be read; please use the form.".into()),
            )
            .await;
    };
    let page = match query.page.trim() {
        "" => 1,
        raw => match raw.parse::<u32>() {
            Ok(n) if (1..=100_000).contains(&n) => n,
            _ => {
                return state
                    .problem(
                        &headers,
                        Missing::Refused("The page number must be a whole number from 1.".into()),
                    )
                    .await;
            }
        },
    };
    let sort = match query.sort.as_str() {
        "" | "newest" => "",
        other => other,
    };
    let ask = ListProductsRequest {
        category: query.category.trim().to_owned(),
        q: query.q.clone(),
        min_price: price_words(&query.min_price),
        max_price: price_words(&query.max_price),
        currency: String::new(),
        sort: sort.to_owned(),
        page,
        per_page: 24,
    };
    let heading = match (
        categories.iter().find(|c| c.slug == query.category),
        query.q.trim(),
    ) {
        (_, q) if !q.is_empty() => format!("Results for “{q}”"),
        (Some(c), _) => c.name.clone(),
        _ => "All products".to_owned(),
    };
    // The link of another page keeps every other choice: percent-encoded
    // values and `&amp;`, ready for an attribute as it is.
    let mut link = String::from("/products?");
    for (key, value) in [
        ("q", &query.q),
        ("category", &query.category),
        ("min_price", &query.min_price),
        ("max_price", &query.max_price),
        ("sort", &query.sort),
    ] {
        if !value.is_empty() {
            link.push_str(key);
            link.push('=');
            link.push_str(&crate::views::encode(value));
            link.push_str("&amp;");
        }
    }
    link.push_str("page=");
    let (status, shelf, problem) = match state.shelves.list(ask).await {
        Ok(shelf) => (StatusCode::OK, Some(shelf), None),
        Err(Missing::Refused(why)) => (StatusCode::BAD_REQUEST, None, Some(explain(&why))),
        Err(Missing::NotFound) => (StatusCode::OK, None, None),
        Err(missing @ Missing::Unavailable(_)) => return state.problem(&headers, missing).await,
    };
    let pages = shelf.as_ref().map_or(1, |s| s.pages());
    state
        .render(
            &headers,
            status,
            "products.html",
            json!({
                "heading": heading, "categories": categories, "query": query, "sorts": SORTS,
                "shelf": shelf, "pages": pages, "page_link": link, "problem": problem,
            }),
        )
        .await
}

/// A catalog refusal in a shopper's words: which box to fix.
fn explain(why: &str) -> String {
    // The catalog names the parameter in backticks.
    let field = why.split('`').nth(1).unwrap_or("");
    match field {
        "min_price" | "max_price" => {
            "Prices are amounts like 12 or 12.50, the lowest no higher than the highest.".into()
        }
        "category" => "There is no such category.".into(),
        "q" => "The search may be at most 200 characters.".into(),
        "sort" => "Please choose an order from the list.".into(),
        _ => format!("The search could not be run: {why}"),
    }
}

async fn product(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if uuid::Uuid::parse_str(&id).is_err() {
        return state.problem(&headers, Missing::NotFound).await;
    }
    let card = match state.shelves.product(&id).await {
        Ok(card) => card,
        Err(missing) => return state.problem(&headers, missing).await,
    };
    let (availability, also) = tokio::join!(
        state.shelves.availability(&card.sku),
        state.shelves.also_bought(&card.id)
    );
    let (kind, text) = match availability {
        Availability::InStock => ("in_stock", "In stock".to_owned()),
        Availability::Few(n) => ("few", format!("Only {n} left")),
        Availability::OutOfStock => ("out_of_stock", "Out of stock".to_owned()),
        Availability::Unknown => ("unknown", "Stock unknown right now".to_owned()),
    };
    state
        .render(
            &headers,
            StatusCode::OK,
            "product.html",
            json!({ "product": card, "stock": { "kind": kind, "text": text }, "also": also }),
        )
        .await
}

async fn not_found(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.problem(&headers, Missing::NotFound).await
}
