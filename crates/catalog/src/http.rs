//! REST routes: parse, authorize, call one use case, map the result.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use emporium_platform::auth::{Admin, Verifier};
use emporium_platform::http::{Json, Page, Path, Query, page_params};
use emporium_platform::money::{Currency, MoneyJson, parse_minor};
use emporium_platform::{ErrorCode, Problem};
use serde::{Deserialize, Serialize};

use crate::domain::{
    CategoryInput, CategorySlug, Product, ProductDraft, ProductId, ProductInput, Sort,
};
use crate::products::{Catalog, Category};
use crate::store::ListQuery;

/// A product as REST clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductView {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: MoneyJson,
    pub category: String,
    pub images: Vec<ImageView>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageView {
    pub name: String,
    pub url: String,
}

impl From<Product> for ProductView {
    fn from(product: Product) -> Self {
        let id = product.id.to_string();
        ProductView {
            images: product
                .images
                .into_iter()
                .map(|name| ImageView {
                    url: format!("/api/v1/products/{id}/images/{name}"),
                    name,
                })
                .collect(),
            id,
            sku: product.sku.as_str().to_owned(),
            name: product.name,
            description: product.description,
            price: product.price.to_json(),
            category: product.category.as_str().to_owned(),
            created_at: product.created_at,
            updated_at: product.updated_at,
        }
    }
}

#[derive(Serialize)]
struct CategoryView {
    slug: String,
    name: String,
    product_count: u64,
}

impl From<Category> for CategoryView {
    fn from(c: Category) -> Self {
        CategoryView {
            slug: c.slug,
            name: c.name,
            product_count: c.product_count,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub catalog: Catalog,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState, image_limit: usize) -> Router {
    Router::new()
        .route("/api/v1/products", get(list_products).post(create_product))
        .route(
            "/api/v1/products/{id}",
            get(get_product).put(update_product).delete(delete_product),
        )
        .route(
            "/api/v1/products/{id}/images",
            axum::routing::post(upload_image).layer(DefaultBodyLimit::max(image_limit)),
        )
        .route("/api/v1/products/{id}/images/{name}", get(download_image))
        .route(
            "/api/v1/categories",
            get(list_categories).post(create_category),
        )
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .with_state(state)
}

/// List parameters as text, so that each bad one gets its own message.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    pub(crate) page: Option<String>,
    pub(crate) per_page: Option<String>,
    pub(crate) category: Option<String>,
    pub(crate) q: Option<String>,
    pub(crate) min_price: Option<String>,
    pub(crate) max_price: Option<String>,
    pub(crate) currency: Option<String>,
    pub(crate) sort: Option<String>,
}

fn bad(field: &str, message: impl Into<String>) -> Problem {
    Problem::bad_parameter(field, message)
}

impl ListParams {
    pub fn parse(mut self) -> Result<ListQuery, Problem> {
        // An empty parameter is an absent one, as an HTML form sends it.
        for value in [&mut self.min_price, &mut self.max_price, &mut self.currency] {
            if value.as_deref() == Some("") {
                *value = None;
            }
        }
        let (page, per_page) = page_params(self.page.as_deref(), self.per_page.as_deref())?;
        let category = match self.category.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                CategorySlug::parse(c)
                    .map_err(|m| bad("category", m))?
                    .as_str()
                    .to_owned(),
            ),
        };
        let q = match self.q {
            Some(q) if q.chars().count() > 200 => {
                return Err(bad("q", "must be at most 200 characters"));
            }
            Some(q) if !q.trim().is_empty() => Some(q),
            _ => None,
        };
        let priced = self.min_price.is_some() || self.max_price.is_some();
        let currency = match (self.currency.as_deref(), priced) {
            (Some(c), _) => Some(Currency::parse(c).map_err(|m| bad("currency", m))?),
            (None, true) => Some(Currency::parse("USD").map_err(|m| bad("currency", m))?),
            (None, false) => None,
        };
        let bound = |field: &str, value: Option<&str>| -> Result<Option<i64>, Problem> {
            match (value, currency) {
                (Some(v), Some(c)) => parse_minor(v, c).map(Some).map_err(|m| bad(field, m)),
                _ => Ok(None),
            }
        };
        let min_price = bound("min_price", self.min_price.as_deref())?;
        let max_price = bound("max_price", self.max_price.as_deref())?;
        if let (Some(min), Some(max)) = (min_price, max_price)
            && min > max
        {
            return Err(bad("min_price", "must not exceed max_price"));
        }
        let sort = match self.sort.as_deref() {
            None | Some("") => Sort::Newest,
            Some(s) => s.parse().map_err(|m: String| bad("sort", m))?,
        };
        Ok(ListQuery {
            category,
            q,
            min_price,
            max_price,
            currency: currency.map(|c| c.code().to_owned()),
            sort,
            page,
            per_page,
        })
    }
}

/// A product id must be a UUID; anything else is a 400 before any lookup.
pub fn product_id(raw: &str) -> Result<ProductId, Problem> {
    ProductId::parse(raw).map_err(|m| bad("id", m))
}

async fn list_products(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let query = params.parse()?;
    let page: Page<ProductView> = state.catalog.list(&query).await?.map(ProductView::from);
    Ok(Json(page).into_response())
}

async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = product_id(&id)?;
    let product = state.catalog.get(id).await?;
    Ok(Json(ProductView::from(product)).into_response())
}

async fn create_product(
    State(state): State<AppState>,
    _admin: Admin,
    Json(input): Json<ProductInput>,
) -> Result<Response, Problem> {
    let draft = ProductDraft::parse(&input).map_err(Problem::invalid)?;
    let view = ProductView::from(state.catalog.create(&draft).await?);
    let location = HeaderValue::from_str(&format!("/api/v1/products/{}", view.id))
        .map_err(Problem::internal)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

async fn update_product(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(input): Json<ProductInput>,
) -> Result<Response, Problem> {
    let id = product_id(&id)?;
    let draft = ProductDraft::parse(&input).map_err(Problem::invalid)?;
    let product = state.catalog.update(id, &draft).await?;
    Ok(Json(ProductView::from(product)).into_response())
}

async fn delete_product(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = product_id(&id)?;
    state.catalog.delete(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn upload_image(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = product_id(&id)?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            ErrorCode::PayloadTooLarge,
            "the image is larger than this endpoint accepts",
        ),
        _ => Problem::bad_request("the body could not be read"),
    })?;
    if body.is_empty() {
        return Err(Problem::bad_request(
            "the body is empty: send the image bytes",
        ));
    }
    let product = state.catalog.add_image(id, body).await?;
    Ok((StatusCode::CREATED, Json(ProductView::from(product))).into_response())
}

async fn download_image(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let id = product_id(&id)?;
    let (bytes, mime) = state.catalog.image(id, &name).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn list_categories(State(state): State<AppState>) -> Result<Response, Problem> {
    let items: Vec<CategoryView> = state
        .catalog
        .categories()
        .await?
        .into_iter()
        .map(CategoryView::from)
        .collect();
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

async fn create_category(
    State(state): State<AppState>,
    _admin: Admin,
    Json(input): Json<CategoryInput>,
) -> Result<Response, Problem> {
    let category = state.catalog.create_category(&input).await?;
    Ok((StatusCode::CREATED, Json(CategoryView::from(category))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(
        page: Option<String>,
        per_page: Option<String>,
        min: Option<String>,
        q: Option<String>,
        sort: Option<String>,
    ) -> ListParams {
        ListParams {
            page,
            per_page,
            min_price: min,
            q,
            sort,
            ..ListParams::default()
        }
    }

    #[test]
    fn list_parameters_are_checked() {
        let ok = params(
            Some("2".into()),
            Some("100".into()),
            Some("9.99".into()),
            Some("mug".into()),
            Some("-price".into()),
        )
        .parse()
        .unwrap();
        assert_eq!(
            (ok.page, ok.per_page, ok.min_price, ok.currency.as_deref()),
            (2, 100, Some(999), Some("USD"))
        );
        assert!(
            params(None, Some("101".into()), None, None, None)
                .parse()
                .is_err()
        );
        assert!(
            params(Some("0".into()), None, None, None, None)
                .parse()
                .is_err()
        );
        assert!(
            params(None, None, Some("-1".into()), None, None)
                .parse()
                .is_err()
        );
        assert!(
            params(None, None, None, None, Some("price; drop".into()))
                .parse()
                .is_err()
        );
        let empty = ListParams {
            min_price: Some(String::new()),
            max_price: Some(String::new()),
            currency: Some(String::new()),
            category: Some(String::new()),
            ..ListParams::default()
        }
        .parse()
        .unwrap();
        assert_eq!(
            (
                empty.min_price,
                empty.max_price,
                empty.currency,
                empty.category
            ),
            (None, None, None, None),
            "empty means absent"
        );
    }

    proptest! {
        #[test]
        fn any_list_parameters_parse_or_are_refused_without_panicking(
            page in proptest::option::of(".{0,24}"),
            per_page in proptest::option::of(".{0,24}"),
            min in proptest::option::of(".{0,40}"),
            q in proptest::option::of(".{0,300}"),
            sort in proptest::option::of(".{0,12}"),
        ) {
            if let Ok(query) = params(page, per_page, min, q, sort).parse() {
                prop_assert!(query.page >= 1 && (1..=emporium_platform::http::MAX_PER_PAGE).contains(&query.per_page));
            }
        }
    }
}
