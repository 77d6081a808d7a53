//! REST routes: parse, authorize, call one use case, map the result.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::routing::get;
use emporium_platform::Problem;
use emporium_platform::auth::{Caller, Verifier};
use emporium_platform::http::{Json, Query};
use serde::{Deserialize, Serialize};

use crate::domain::{Limit, ProductId, Recommendation};
use crate::recommend::Recommender;

#[derive(Clone)]
pub struct AppState {
    pub recommender: Recommender,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/recommendations", get(for_product))
        .route("/api/v1/recommendations/me", get(for_me))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .with_state(state)
}

/// A recommended product as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecommendationView {
    pub product_id: String,
    pub sku: String,
    pub category: String,
    pub score: i64,
    /// `also_bought` or `best_seller`.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecommendationList {
    pub items: Vec<RecommendationView>,
}

impl From<Vec<Recommendation>> for RecommendationList {
    fn from(list: Vec<Recommendation>) -> Self {
        Self {
            items: list
                .into_iter()
                .map(|r| RecommendationView {
                    product_id: r.product_id,
                    sku: r.sku,
                    category: r.category,
                    score: r.score,
                    reason: r.reason.as_str().to_owned(),
                })
                .collect(),
        }
    }
}

/// Parameters as text, so that each bad one gets its own message.
#[derive(Debug, Default, Deserialize)]
pub struct ProductParams {
    product_id: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct MeParams {
    limit: Option<String>,
}

pub fn product_param(raw: Option<&str>) -> Result<ProductId, Problem> {
    let raw = raw.ok_or_else(|| Problem::bad_parameter("product_id", "is required"))?;
    ProductId::parse(raw).map_err(|m| Problem::bad_parameter("product_id", m))
}

pub fn limit_param(raw: Option<&str>) -> Result<Limit, Problem> {
    Limit::parse(raw).map_err(|m| Problem::bad_parameter("limit", m))
}

async fn for_product(
    State(state): State<AppState>,
    Query(params): Query<ProductParams>,
) -> Result<Json<RecommendationList>, Problem> {
    let product = product_param(params.product_id.as_deref())?;
    let limit = limit_param(params.limit.as_deref())?;
    let list = state.recommender.for_product(&product, limit).await?;
    Ok(Json(list.into()))
}

async fn for_me(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Query(params): Query<MeParams>,
) -> Result<Json<RecommendationList>, Problem> {
    let limit = limit_param(params.limit.as_deref())?;
    let list = state.recommender.for_user(&claims.sub, limit).await?;
    Ok(Json(list.into()))
}
