use axum::Router;

use crate::pages::AppState;

/// This area's templates, under `templates/admin/`.
pub const TEMPLATES: &[(&str, &str)] = crate::views::templates![];

pub fn routes() -> Router<AppState> {
    Router::new()
}
