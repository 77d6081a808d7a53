//! REST routes: parse, authorize, call one use case, map the result.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use emporium_platform::Problem;
use emporium_platform::auth::{Caller, Claims, Verifier};
use emporium_platform::http::{Json, Path};
use serde::Deserialize;
use uuid::Uuid;

use crate::baskets::Baskets;
use crate::domain::{AddInput, Addition, Owner, QuantityInput, parse_quantity, product_id};

#[derive(Clone)]
pub struct AppState {
    pub baskets: Baskets,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/baskets", post(create))
        .route("/api/v1/baskets/{user_id}", get(read).delete(delete_basket))
        .route(
            "/api/v1/baskets/{user_id}/items",
            post(add).delete(clear_items),
        )
        .route(
            "/api/v1/baskets/{user_id}/items/{product_id}",
            put(set_quantity).delete(remove),
        )
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .with_state(state)
}

/// The basket of `raw`, if the caller may reach it: its owner or an admin.
pub fn owner(claims: &Claims, raw: &str) -> Result<Owner, Problem> {
    let owner = Owner::parse(raw).map_err(|m| Problem::bad_parameter("user_id", m))?;
    if owner.as_str() != claims.sub && !claims.is_admin() {
        return Err(Problem::new(
            emporium_platform::ErrorCode::Forbidden,
            "this is another user's basket",
        ));
    }
    Ok(owner)
}

fn product(raw: &str) -> Result<Uuid, Problem> {
    product_id(raw).map_err(|m| Problem::bad_parameter("product_id", m))
}

async fn read(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(user_id): Path<String>,
) -> Result<Response, Problem> {
    let owner = owner(&claims, &user_id)?;
    Ok(Json(state.baskets.view(&owner).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct CreateInput {
    user_id: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Json(input): Json<CreateInput>,
) -> Result<Response, Problem> {
    let raw = input.user_id.unwrap_or_else(|| claims.sub.clone());
    let owner = owner(&claims, &raw).map_err(|mut p| {
        if let Some(e) = p.errors.first_mut() {
            e.field = "user_id".into();
        }
        p
    })?;
    let (made, view) = state.baskets.create(&owner).await?;
    let status = if made {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

async fn delete_basket(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(user_id): Path<String>,
) -> Result<Response, Problem> {
    let owner = owner(&claims, &user_id)?;
    state.baskets.clear(&owner, "cleared").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn clear_items(
    state: State<AppState>,
    caller: Caller,
    path: Path<String>,
) -> Result<Response, Problem> {
    delete_basket(state, caller, path).await
}

async fn add(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(user_id): Path<String>,
    Json(input): Json<AddInput>,
) -> Result<Response, Problem> {
    let owner = owner(&claims, &user_id)?;
    let addition = Addition::parse(&input).map_err(Problem::invalid)?;
    Ok(Json(state.baskets.add(&owner, &addition).await?).into_response())
}

async fn set_quantity(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path((user_id, product_id)): Path<(String, String)>,
    Json(input): Json<QuantityInput>,
) -> Result<Response, Problem> {
    let owner = owner(&claims, &user_id)?;
    let product_id = product(&product_id)?;
    let quantity = parse_quantity(&input).map_err(Problem::invalid)?;
    let view = state
        .baskets
        .set_quantity(&owner, product_id, quantity)
        .await?;
    Ok(Json(view).into_response())
}

async fn remove(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path((user_id, product_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let owner = owner(&claims, &user_id)?;
    let product_id = product(&product_id)?;
    Ok(Json(state.baskets.set_quantity(&owner, product_id, 0).await?).into_response())
}
