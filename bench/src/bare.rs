//! The ceilings the shop's reads are measured against, served from the
//! bench's own process: a fixed body (hyper alone), and the catalog's list
//! and search as bare axum + sqlx handlers running the very statements the
//! catalog runs, on the catalog's own database.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sea_orm::sqlx::{self, Row};

/// hyper answering `body` (as JSON) to every request.
pub async fn fixed_body(body: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let body = body.clone();
                    async move {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

// The statements as the catalog's store (SeaORM) builds them for
// `GET /api/v1/products?per_page=20` and `?q=...`: a count, then the page,
// newest first. Copied verbatim from the statements the catalog prepared
// (SQLite: a uprobe on `sqlite3_prepare_v3`; PostgreSQL: `log_statement =
// 'all'`); copy them again when the catalog's query changes.
macro_rules! product_columns {
    () => {
        r#""products"."id", "products"."sku", "products"."name", "products"."description", "products"."price_minor", "products"."currency", "products"."category", "products"."images", "products"."created_at", "products"."updated_at""#
    };
}

const SQLITE_COUNT: &str = concat!(
    r#"SELECT COUNT(*) AS num_items FROM (SELECT "#,
    product_columns!(),
    r#" FROM "products") AS "sub_query""#
);
const SQLITE_PAGE: &str = concat!(
    "SELECT ",
    product_columns!(),
    r#" FROM "products" ORDER BY "products"."created_at" DESC, "products"."id" DESC LIMIT ? OFFSET ?"#
);
const SQLITE_SEARCH_COUNT: &str = concat!(
    r#"SELECT COUNT(*) AS num_items FROM (SELECT "#,
    product_columns!(),
    r#" FROM "products" WHERE id IN (SELECT id FROM products_fts WHERE products_fts MATCH ?)) AS "sub_query""#
);
const SQLITE_SEARCH_PAGE: &str = concat!(
    "SELECT ",
    product_columns!(),
    r#" FROM "products" WHERE id IN (SELECT id FROM products_fts WHERE products_fts MATCH ?) ORDER BY "products"."created_at" DESC, "products"."id" DESC LIMIT ? OFFSET ?"#
);
const POSTGRES_COUNT: &str = SQLITE_COUNT;
const POSTGRES_PAGE: &str = concat!(
    "SELECT ",
    product_columns!(),
    r#" FROM "products" ORDER BY "products"."created_at" DESC, "products"."id" DESC LIMIT $1 OFFSET $2"#
);
const POSTGRES_SEARCH_COUNT: &str = concat!(
    r#"SELECT COUNT(*) AS num_items FROM (SELECT "#,
    product_columns!(),
    r#" FROM "products" WHERE to_tsvector('simple', name || ' ' || description) @@ to_tsquery('simple', $1)) AS "sub_query""#
);
const POSTGRES_SEARCH_PAGE: &str = concat!(
    "SELECT ",
    product_columns!(),
    r#" FROM "products" WHERE to_tsvector('simple', name || ' ' || description) @@ to_tsquery('simple', $1) ORDER BY "products"."created_at" DESC, "products"."id" DESC LIMIT $2 OFFSET $3"#
);

/// The catalog's database, by its backend.
#[derive(Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

#[derive(serde::Deserialize)]
struct ListQuery {
    q: Option<String>,
    per_page: Option<i64>,
}

/// The bare list and search, serving until [`CatalogReads::close`].
pub struct CatalogReads {
    pub addr: SocketAddr,
    pool: Pool,
    server: tokio::task::JoinHandle<()>,
}

impl CatalogReads {
    /// Stops serving and closes the pool, so that its connections do not
    /// count against the server's limit in what comes after.
    pub async fn close(self) {
        self.server.abort();
        match self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// The list and search of `GET /api/v1/products` on the catalog database
/// at `url` (`sqlite://…` or `postgres://…`), with a pool as large as the
/// shop's: the same statements, the rows rendered as the catalog renders
/// them, nothing else (no token, limits, tracing or metrics).
pub async fn catalog_reads(url: &str) -> anyhow::Result<CatalogReads> {
    let pool = if url.starts_with("sqlite:") {
        Pool::Sqlite(
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(8)
                .connect(url)
                .await
                .with_context(|| format!("cannot open {url}"))?,
        )
    } else {
        Pool::Postgres(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .connect(url)
                .await
                .context("cannot connect to the catalog's PostgreSQL database")?,
        )
    };
    let app = axum::Router::new()
        .route("/api/v1/products", axum::routing::get(list))
        .with_state(pool.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(CatalogReads { addr, pool, server })
}

async fn list(State(pool): State<Pool>, Query(query): Query<ListQuery>) -> Response {
    match page(&pool, &query).await {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The catalog's search terms: words of letters and digits, lowercased.
fn terms(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().chars().take(64).collect())
        .take(8)
        .collect()
}

/// The count, then the page: with the search term bound first when there
/// is one, as the catalog binds them.
macro_rules! count_and_page {
    ($pool:expr, $matching:expr, $per_page:expr, ($count:expr, $page:expr), ($search_count:expr, $search_page:expr)) => {{
        let (count, page) = match $matching {
            Some(_) => (sqlx::query_scalar($search_count), sqlx::query($search_page)),
            None => (sqlx::query_scalar($count), sqlx::query($page)),
        };
        let (count, page) = match $matching {
            Some(m) => (count.bind(m.clone()), page.bind(m)),
            None => (count, page),
        };
        let total: i64 = count.fetch_one($pool).await?;
        let rows = page.bind($per_page).bind(0_i64).fetch_all($pool).await?;
        (
            total,
            rows.iter().map(product).collect::<Result<Vec<_>, _>>()?,
        )
    }};
}

async fn page(pool: &Pool, query: &ListQuery) -> Result<serde_json::Value, sqlx::Error> {
    let per_page = query.per_page.unwrap_or(20).clamp(1, 100);
    let terms = query.q.as_deref().map(terms).unwrap_or_default();
    // The term as each engine's query language writes "starts with".
    let matching = |each: fn(&String) -> String, and: &str| {
        query
            .q
            .as_ref()
            .map(|_| terms.iter().map(each).collect::<Vec<_>>().join(and))
    };
    let (total, rows) = match pool {
        Pool::Sqlite(pool) => count_and_page!(
            pool,
            matching(|t| format!("\"{t}\"*"), " "),
            per_page,
            (SQLITE_COUNT, SQLITE_PAGE),
            (SQLITE_SEARCH_COUNT, SQLITE_SEARCH_PAGE)
        ),
        Pool::Postgres(pool) => count_and_page!(
            pool,
            matching(|t| format!("{t}:*"), " & "),
            per_page,
            (POSTGRES_COUNT, POSTGRES_PAGE),
            (POSTGRES_SEARCH_COUNT, POSTGRES_SEARCH_PAGE)
        ),
    };
    Ok(serde_json::json!({
        "items": rows, "page": 1, "per_page": per_page, "total": total,
    }))
}

/// A row as the catalog renders a product.
fn product<R: Row>(row: &R) -> Result<serde_json::Value, sqlx::Error>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> chrono::DateTime<chrono::Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let id: String = row.try_get("id")?;
    let images: String = row.try_get("images")?;
    let names: Vec<String> = serde_json::from_str(&images).unwrap_or_default();
    let minor: i64 = row.try_get("price_minor")?;
    let created: chrono::DateTime<chrono::Utc> = row.try_get("created_at")?;
    let updated: chrono::DateTime<chrono::Utc> = row.try_get("updated_at")?;
    Ok(serde_json::json!({
        "id": id,
        "sku": row.try_get::<String, _>("sku")?,
        "name": row.try_get::<String, _>("name")?,
        "description": row.try_get::<String, _>("description")?,
        "price": {
            "amount": format!("{}.{:02}", minor / 100, minor % 100),
            "currency": row.try_get::<String, _>("currency")?,
        },
        "category": row.try_get::<String, _>("category")?,
        "images": names.iter().map(|name| serde_json::json!({
            "name": name, "url": format!("/api/v1/products/{id}/images/{name}"),
        })).collect::<Vec<_>>(),
        "created_at": created,
        "updated_at": updated,
    }))
}
