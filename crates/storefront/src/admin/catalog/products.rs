//! Products: a searchable, paged list; a form to create one and to edit
//! it, with its pictures and its stock in a line; deletion after a
//! confirmation page.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{DoneQuery, done, page_number, query_of, reads, refused, send, unmarked};
use crate::account::{Ask, as_shopper};
use crate::admin::{back_to, pages, staff_call, staff_only};
use crate::api::Answer;
use crate::pages::AppState;
use crate::shelves::Missing;
use crate::views::encode;

const PRODUCTS_PER_PAGE: u64 = 25;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/products", get(products).post(create))
        .route("/admin/products/new", get(new_product))
        .route("/admin/products/{id}", get(product).post(update))
        .route(
            "/admin/products/{id}/delete",
            get(confirm_delete).post(delete),
        )
}

/// The product form's boxes and the catalog's names of their fields.
const PRODUCT_BOXES: &[(&str, &str)] = &[
    ("sku", "sku"),
    ("name", "name"),
    ("description", "description"),
    ("amount", "price.amount"),
    ("currency", "price.currency"),
    ("category", "category"),
];

/// The product form as typed.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ProductForm {
    #[serde(default)]
    sku: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    category: String,
    #[serde(default, skip_serializing)]
    csrf: Option<String>,
}

impl ProductForm {
    /// The boxes filled from the catalog's product (`Null`: a new one).
    fn of(product: &Value) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Self {
            sku: text(&product["sku"]),
            name: text(&product["name"]),
            description: text(&product["description"]),
            amount: text(&product["price"]["amount"]),
            currency: product["price"]["currency"]
                .as_str()
                .unwrap_or("USD")
                .to_owned(),
            category: text(&product["category"]),
            csrf: None,
        }
    }

    /// The catalog's `ProductInput`.
    fn input(&self) -> Value {
        json!({
            "sku": self.sku, "name": self.name, "description": self.description,
            "price": { "amount": self.amount.trim(), "currency": self.currency.trim() },
            "category": self.category,
        })
    }
}

/// What the product page says besides the product.
pub(super) struct Said {
    errors: Value,
    error: Option<String>,
    upload_error: Option<String>,
    done: Option<&'static str>,
    status: StatusCode,
}

impl Said {
    fn nothing(done: Option<&'static str>) -> Self {
        Self {
            errors: unmarked(PRODUCT_BOXES),
            error: None,
            upload_error: None,
            done,
            status: StatusCode::OK,
        }
    }

    fn refusal(answer: &Answer) -> Self {
        let (errors, error, status) = refused(answer, PRODUCT_BOXES, "sku");
        Self {
            errors,
            error: Some(error),
            upload_error: None,
            done: None,
            status,
        }
    }

    pub(super) fn upload(error: String, status: StatusCode) -> Self {
        Self {
            upload_error: Some(error),
            status,
            ..Self::nothing(None)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ProductsQuery {
    q: Option<String>,
    category: Option<String>,
    page: Option<String>,
    done: Option<String>,
}

async fn products(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<ProductsQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let q = query.q.unwrap_or_default();
    let category = query.category.unwrap_or_default();
    let page = page_number(query.page.as_deref());
    let filter = query_of(&[("q", &q), ("category", &category)]);
    let back = format!("/admin/products?{filter}page={page}");
    let paths = [
        format!("/api/v1/products?{filter}per_page={PRODUCTS_PER_PAGE}&page={page}"),
        "/api/v1/categories".to_owned(),
    ];
    let [mut list, all] = match reads(&state, &headers, client, &back, paths).await {
        Ok(bodies) => bodies,
        Err(response) => return response,
    };
    // Each product's category by its name.
    if let Some(items) = list["items"].as_array_mut() {
        for item in items {
            let named = all["items"].as_array().and_then(|categories| {
                categories
                    .iter()
                    .find(|c| c["slug"] == item["category"])
                    .map(|c| c["name"].clone())
            });
            item["category_name"] = named.unwrap_or_else(|| item["category"].clone());
        }
    }
    state
        .render(
            &headers,
            StatusCode::OK,
            "admin/products.html",
            json!({
                "area": "/admin/products", "products": list, "all_categories": all["items"],
                "search": { "q": q, "category": category },
                "page": page, "pages": pages(&list),
                "page_link": format!("/admin/products?{}page=", filter.replace('&', "&amp;")),
                "done": done(query.done.as_deref()),
            }),
        )
        .await
}

/// The product form: a new product's (`id` none) or an existing one's
/// with its pictures and stock; the boxes hold `typed`, or the product as
/// the catalog has it.
pub(super) async fn product_page(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    id: Option<&str>,
    typed: Option<ProductForm>,
    said: Said,
) -> Response {
    let back = id.map_or_else(
        || "/admin/products/new".to_owned(),
        |id| format!("/admin/products/{id}"),
    );
    let categories = || "/api/v1/categories".to_owned();
    let read = match id {
        Some(id) => {
            let paths = [format!("/api/v1/products/{id}"), categories()];
            reads(state, headers, client, &back, paths).await
        }
        None => reads(state, headers, client, &back, [categories()])
            .await
            .map(|[all]| [Value::Null, all]),
    };
    let [product, all] = match read {
        Ok(bodies) => bodies,
        Err(response) => return response,
    };
    // Stock in a line; none when the inventory keeps none or is away.
    let stock = match product["sku"].as_str() {
        Some(sku) => {
            let path = format!("/api/v1/inventory/{}", encode(sku));
            match as_shopper(state, headers, client, &back, Ask::get(), |_| path).await {
                Ok((answer, _)) if answer.status.is_success() => answer.body,
                _ => Value::Null,
            }
        }
        None => Value::Null,
    };
    let form = typed.unwrap_or_else(|| ProductForm::of(&product));
    state
        .render(
            headers,
            said.status,
            "admin/product.html",
            json!({
                "area": "/admin/products", "product": product, "stock": stock,
                "all_categories": all["items"], "form": form, "errors": said.errors,
                "error": said.error, "upload_error": said.upload_error, "done": said.done,
            }),
        )
        .await
}

async fn new_product(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    product_page(&state, &headers, client, None, None, Said::nothing(None)).await
}

/// The staff check, then the id: a customer gets the 403 page whatever the
/// address holds.
pub(super) async fn product_id(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(), Response> {
    if let Some(refused) = staff_only(state, headers).await {
        return Err(refused);
    }
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(state.problem(headers, Missing::NotFound).await);
    }
    Ok(())
}

async fn product(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    if let Err(response) = product_id(&state, &headers, &id).await {
        return response;
    }
    let said = Said::nothing(done(query.ok().and_then(|Query(q)| q.done).as_deref()));
    product_page(&state, &headers, client, Some(&id), None, said).await
}

async fn create(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<ProductForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    save(&state, &headers, client, None, form).await
}

async fn update(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ProductForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(response) = product_id(&state, &headers, &id).await {
        return response;
    }
    save(&state, &headers, client, Some(&id), form).await
}

/// A new product made (`id` none) or one replaced with the form's fields;
/// the form again with the catalog's words when it says no.
async fn save(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    id: Option<&str>,
    form: ProductForm,
) -> Response {
    let (back, ask, path) = match id {
        Some(id) => (
            format!("/admin/products/{id}"),
            send(Method::PUT, Some(form.input())),
            format!("/api/v1/products/{id}"),
        ),
        None => (
            "/admin/products/new".to_owned(),
            send(Method::POST, Some(form.input())),
            "/api/v1/products".to_owned(),
        ),
    };
    let saved = staff_call(
        state,
        headers,
        client,
        &back,
        form.csrf.as_deref(),
        ask,
        path,
    )
    .await;
    match saved {
        Ok(answer) if answer.status.is_success() => {
            let id = answer.body["id"].as_str().unwrap_or_default();
            let done = if back.ends_with("/new") {
                "created"
            } else {
                "saved"
            };
            Redirect::to(&format!("/admin/products/{id}?done={done}")).into_response()
        }
        Ok(answer) if answer.status == StatusCode::NOT_FOUND => {
            state.problem(headers, Missing::NotFound).await
        }
        Ok(answer) => {
            let said = Said::refusal(&answer);
            product_page(state, headers, client, id, Some(form), said).await
        }
        Err(response) => response,
    }
}

async fn confirm_delete(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(response) = product_id(&state, &headers, &id).await {
        return response;
    }
    let back = format!("/admin/products/{id}/delete");
    let path = format!("/api/v1/products/{id}");
    match reads(&state, &headers, client, &back, [path]).await {
        Ok([product]) => {
            let context = json!({ "area": "/admin/products", "product": product });
            let page = "admin/delete.html";
            state.render(&headers, StatusCode::OK, page, context).await
        }
        Err(response) => response,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

async fn delete(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(response) = product_id(&state, &headers, &id).await {
        return response;
    }
    let back = format!("/admin/products/{id}/delete");
    let deleted = staff_call(
        &state,
        &headers,
        client,
        &back,
        form.csrf.as_deref(),
        send(Method::DELETE, None),
        format!("/api/v1/products/{id}"),
    )
    .await;
    back_to(&state, &headers, deleted, "/admin/products?done=deleted").await
}
