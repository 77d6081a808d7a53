//! Persistence of products and categories, written once for SQLite,
//! PostgreSQL and MariaDB; search is the one place the backends differ.

use chrono::Utc;
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use crate::domain::{ProductDraft, Sort, search_terms};

pub mod product {
    use sea_orm::entity::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Also the cached copy of a product (serialised as JSON).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
    #[sea_orm(table_name = "products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub sku: String,
        pub name: String,
        #[sea_orm(column_type = "Text")]
        pub description: String,
        pub price_minor: i64,
        pub currency: String,
        pub category: String,
        /// JSON array of image names.
        #[sea_orm(column_type = "Text")]
        pub images: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod category {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "categories")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub slug: String,
        pub name: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub type ProductRow = product::Model;
pub type CategoryRow = category::Model;

/// A product list request, already parsed.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub category: Option<String>,
    pub q: Option<String>,
    /// Inclusive bounds in minor units of `currency`.
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub currency: Option<String>,
    pub sort: Sort,
    pub page: u64,
    pub per_page: u64,
}

pub async fn insert_product<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    draft: &ProductDraft,
) -> Result<ProductRow, DbErr> {
    let now = Utc::now();
    let row = product::ActiveModel {
        id: Set(id.to_owned()),
        sku: Set(draft.sku.as_str().to_owned()),
        name: Set(draft.name.clone()),
        description: Set(draft.description.clone()),
        price_minor: Set(draft.price.minor),
        currency: Set(draft.price.currency.code().to_owned()),
        category: Set(draft.category.as_str().to_owned()),
        images: Set("[]".to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    product::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    find_product(conn, id)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(id.to_owned()))
}

/// Replaces the fields of a product; `None` when it does not exist.
pub async fn update_product<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    draft: &ProductDraft,
) -> Result<Option<ProductRow>, DbErr> {
    let result = product::Entity::update_many()
        .col_expr(product::Column::Sku, Expr::value(draft.sku.as_str()))
        .col_expr(product::Column::Name, Expr::value(draft.name.as_str()))
        .col_expr(
            product::Column::Description,
            Expr::value(draft.description.as_str()),
        )
        .col_expr(product::Column::PriceMinor, Expr::value(draft.price.minor))
        .col_expr(
            product::Column::Currency,
            Expr::value(draft.price.currency.code()),
        )
        .col_expr(
            product::Column::Category,
            Expr::value(draft.category.as_str()),
        )
        .col_expr(product::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(product::Column::Id.eq(id))
        .exec(conn)
        .await?;
    if result.rows_affected == 0 {
        return Ok(None);
    }
    find_product(conn, id).await
}

pub async fn set_images<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    images_json: &str,
) -> Result<bool, DbErr> {
    let result = product::Entity::update_many()
        .col_expr(product::Column::Images, Expr::value(images_json))
        .col_expr(product::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(product::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(result.rows_affected > 0)
}

pub async fn delete_product<C: ConnectionTrait>(conn: &C, id: &str) -> Result<bool, DbErr> {
    Ok(product::Entity::delete_by_id(id.to_owned())
        .exec(conn)
        .await?
        .rows_affected
        > 0)
}

pub async fn find_product<C: ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<Option<ProductRow>, DbErr> {
    product::Entity::find_by_id(id.to_owned()).one(conn).await
}

/// Takes the product's row lock where the backend has one, so that
/// concurrent writers to one product queue up.
pub async fn lock_product<C: ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<Option<ProductRow>, DbErr> {
    let query = product::Entity::find_by_id(id.to_owned());
    match conn.get_database_backend() {
        DbBackend::Sqlite => query.one(conn).await,
        _ => query.lock_exclusive().one(conn).await,
    }
}

pub async fn find_products<C: ConnectionTrait>(
    conn: &C,
    ids: &[String],
) -> Result<Vec<ProductRow>, DbErr> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    product::Entity::find()
        .filter(product::Column::Id.is_in(ids.iter().cloned()))
        .all(conn)
        .await
}

/// One page of products and the total that match.
pub async fn list_products<C: ConnectionTrait>(
    conn: &C,
    query: &ListQuery,
) -> Result<(Vec<ProductRow>, u64), DbErr> {
    let mut select = product::Entity::find();
    if let Some(category) = &query.category {
        select = select.filter(product::Column::Category.eq(category.as_str()));
    }
    if let Some(currency) = &query.currency {
        select = select.filter(product::Column::Currency.eq(currency.as_str()));
    }
    if let Some(min) = query.min_price {
        select = select.filter(product::Column::PriceMinor.gte(min));
    }
    if let Some(max) = query.max_price {
        select = select.filter(product::Column::PriceMinor.lte(max));
    }
    if let Some(q) = &query.q {
        select = select.filter(search_condition(conn.get_database_backend(), q));
    }
    let total = select.clone().count(conn).await?;
    let select = match query.sort {
        Sort::Newest => select
            .order_by_desc(product::Column::CreatedAt)
            .order_by_desc(product::Column::Id),
        Sort::Oldest => select
            .order_by_asc(product::Column::CreatedAt)
            .order_by_asc(product::Column::Id),
        Sort::NameAsc => select
            .order_by_asc(product::Column::Name)
            .order_by_asc(product::Column::Id),
        Sort::NameDesc => select
            .order_by_desc(product::Column::Name)
            .order_by_desc(product::Column::Id),
        Sort::PriceAsc => select
            .order_by_asc(product::Column::PriceMinor)
            .order_by_asc(product::Column::Id),
        Sort::PriceDesc => select
            .order_by_desc(product::Column::PriceMinor)
            .order_by_desc(product::Column::Id),
    };
    let offset = (query.page.saturating_sub(1)).saturating_mul(query.per_page);
    let rows = select
        .offset(offset)
        .limit(query.per_page)
        .all(conn)
        .await?;
    Ok((rows, total))
}

/// Every word of `q` must start a word of the name or description.
// Each backend has its own full-text engine; this is the one place that knows.
fn search_condition(backend: DbBackend, q: &str) -> Condition {
    let terms = search_terms(q);
    if terms.is_empty() {
        return Condition::all().add(Expr::cust("1 = 0"));
    }
    match backend {
        DbBackend::Postgres => {
            let query = terms
                .iter()
                .map(|t| format!("{t}:*"))
                .collect::<Vec<_>>()
                .join(" & ");
            Condition::all().add(Expr::cust_with_values(
                "to_tsvector('simple', name || ' ' || description) @@ to_tsquery('simple', $1)",
                [query],
            ))
        }
        DbBackend::MySql => {
            // InnoDB's FULLTEXT index leaves out words shorter than
            // innodb_ft_min_token_size (3): those are matched at a word start
            // with a regular expression instead.
            let (long, short): (Vec<&String>, Vec<&String>) =
                terms.iter().partition(|t| t.chars().count() >= 3);
            let mut condition = Condition::all();
            if !long.is_empty() {
                let query = long
                    .iter()
                    .map(|t| format!("+{t}*"))
                    .collect::<Vec<_>>()
                    .join(" ");
                condition = condition.add(Expr::cust_with_values(
                    "MATCH(name, description) AGAINST (? IN BOOLEAN MODE)",
                    [query],
                ));
            }
            for term in short {
                // Terms are letters and digits only: nothing to escape.
                let pattern = format!("(^|[^[:alnum:]]){term}");
                condition = condition.add(Expr::cust_with_values(
                    "CONCAT(name, ' ', description) REGEXP ?",
                    [pattern],
                ));
            }
            condition
        }
        _ => {
            let query = terms
                .iter()
                .map(|t| format!("\"{t}\"*"))
                .collect::<Vec<_>>()
                .join(" ");
            Condition::all().add(Expr::cust_with_values(
                "id IN (SELECT id FROM products_fts WHERE products_fts MATCH ?)",
                [query],
            ))
        }
    }
}

pub async fn insert_category<C: ConnectionTrait>(
    conn: &C,
    slug: &str,
    name: &str,
) -> Result<CategoryRow, DbErr> {
    let row = category::ActiveModel {
        slug: Set(slug.to_owned()),
        name: Set(name.to_owned()),
        created_at: Set(Utc::now()),
    };
    category::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    category::Entity::find_by_id(slug.to_owned())
        .one(conn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(slug.to_owned()))
}

pub async fn category_exists<C: ConnectionTrait>(conn: &C, slug: &str) -> Result<bool, DbErr> {
    Ok(category::Entity::find_by_id(slug.to_owned())
        .one(conn)
        .await?
        .is_some())
}

/// Categories by name, each with how many products it holds.
pub async fn list_categories<C: ConnectionTrait>(
    conn: &C,
) -> Result<Vec<(CategoryRow, u64)>, DbErr> {
    let categories = category::Entity::find()
        .order_by_asc(category::Column::Name)
        .all(conn)
        .await?;
    let counts: Vec<(String, i64)> = product::Entity::find()
        .select_only()
        .column(product::Column::Category)
        .column_as(product::Column::Id.count(), "count")
        .group_by(product::Column::Category)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(categories
        .into_iter()
        .map(|c| {
            let count = counts
                .iter()
                .find(|(slug, _)| *slug == c.slug)
                .map(|(_, n)| *n as u64)
                .unwrap_or(0);
            (c, count)
        })
        .collect())
}

pub async fn count_products<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    product::Entity::find().count(conn).await
}
