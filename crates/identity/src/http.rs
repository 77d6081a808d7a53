//! REST routes: parse, authorize, call one use case, map the result.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emporium_platform::auth::{Admin, Caller, Verifier};
use emporium_platform::http::{ClientAddr, Json, Path, Query, page_params};
use emporium_platform::{FieldError, Problem};
use serde::{Deserialize, Serialize};

use crate::accounts::{Identity, Session};
use crate::domain::{
    PASSWORD_MAX, ProfileChange, ProfileInput, Registration, RegistrationInput, User, UserId,
    role_name,
};

/// A user as REST clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub role: String,
    pub active: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.as_str().to_owned(),
            name: user.name,
            phone: user.phone,
            role: role_name(user.role).to_owned(),
            active: user.active,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// What sign-in and refresh answer.
#[derive(Serialize)]
struct TokenView {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    refresh_expires_in: u64,
    user: UserView,
}

impl From<Session> for TokenView {
    fn from(session: Session) -> Self {
        Self {
            access_token: session.access_token,
            token_type: "Bearer",
            expires_in: session.expires_in,
            refresh_token: session.refresh_token,
            refresh_expires_in: session.refresh_expires_in,
            user: session.user.into(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub identity: Identity,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/users/register", post(register))
        .route("/api/v1/users/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/users/me", get(me))
        .route("/api/v1/users/{id}", get(get_user).put(update_user))
        .route("/api/v1/users", get(list_users))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .with_state(state)
}

fn missing(field: &str) -> FieldError {
    FieldError {
        field: field.into(),
        message: "is required".into(),
    }
}

pub fn user_id(raw: &str) -> Result<UserId, Problem> {
    UserId::parse(raw).map_err(|message| Problem::bad_parameter("id", message))
}

async fn register(
    State(state): State<AppState>,
    Json(input): Json<RegistrationInput>,
) -> Result<Response, Problem> {
    let registration = Registration::parse(&input).map_err(Problem::invalid)?;
    let user = state
        .identity
        .register_without_telling(&registration)
        .await?;
    let location = format!("/api/v1/users/{}", user.id);
    let mut response = (StatusCode::CREATED, Json(UserView::from(user))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct LoginInput {
    email: Option<String>,
    password: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(input): Json<LoginInput>,
) -> Result<Response, Problem> {
    let mut errors = vec![];
    if input.email.as_deref().is_none_or(str::is_empty) {
        errors.push(missing("email"));
    }
    match input.password.as_deref() {
        None | Some("") => errors.push(missing("password")),
        Some(p) if p.chars().count() > PASSWORD_MAX => errors.push(FieldError {
            field: "password".into(),
            message: format!("must have at most {PASSWORD_MAX} characters"),
        }),
        Some(_) => {}
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let (email, password) = (
        input.email.unwrap_or_default(),
        input.password.unwrap_or_default(),
    );
    let session = state.identity.login(&email, &password, client).await?;
    Ok(no_store(Json(TokenView::from(session)).into_response()))
}

#[derive(Deserialize)]
struct RefreshInput {
    refresh_token: Option<String>,
}

fn refresh_token(input: RefreshInput) -> Result<String, Problem> {
    input
        .refresh_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Problem::invalid(vec![missing("refresh_token")]))
}

async fn refresh(
    State(state): State<AppState>,
    Json(input): Json<RefreshInput>,
) -> Result<Response, Problem> {
    let session = state.identity.refresh(&refresh_token(input)?).await?;
    Ok(no_store(Json(TokenView::from(session)).into_response()))
}

async fn logout(
    State(state): State<AppState>,
    Json(input): Json<RefreshInput>,
) -> Result<Response, Problem> {
    state.identity.logout(&refresh_token(input)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Token answers must not be kept by caches (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn me(State(state): State<AppState>, Caller(claims): Caller) -> Result<Response, Problem> {
    let id = UserId::parse(&claims.sub).map_err(|_| Problem::not_found("no user has this id"))?;
    let user = state.identity.user(&claims, id).await?;
    Ok(Json(UserView::from(user)).into_response())
}

async fn get_user(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let user = state.identity.user(&claims, user_id(&id)?).await?;
    Ok(Json(UserView::from(user)).into_response())
}

async fn update_user(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(id): Path<String>,
    Json(input): Json<ProfileInput>,
) -> Result<Response, Problem> {
    let id = user_id(&id)?;
    let change = ProfileChange::parse(&input).map_err(Problem::invalid)?;
    let user = state.identity.update(&claims, id, &change).await?;
    Ok(Json(UserView::from(user)).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    page: Option<String>,
    per_page: Option<String>,
    email: Option<String>,
}

async fn list_users(
    State(state): State<AppState>,
    Admin(_): Admin,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let (page, per_page) = page_params(params.page.as_deref(), params.per_page.as_deref())?;
    if params.email.as_ref().is_some_and(|e| e.len() > 254) {
        return Err(Problem::bad_parameter(
            "email",
            "is longer than 254 characters",
        ));
    }
    let email = params.email.as_deref().filter(|e| !e.trim().is_empty());
    let users = state.identity.list(email, page, per_page).await?;
    Ok(Json(users.map(UserView::from)).into_response())
}

async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        state.identity.keys().jwks(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}
