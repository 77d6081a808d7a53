//! Persistence of what recommendation learns from events: product facts,
//! stock per SKU and warehouse, co-purchase pairs, sales and each
//! customer's purchases, written once for SQLite, PostgreSQL and MariaDB.
//!
//! Counts grow by upserts that add in the database (`together + 1`), never
//! by a value read first, so two deliveries handled at once cannot lose
//! one; the inbox claim in the same transaction makes each event count once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::domain::{Fact, ProductId};

pub mod product {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub sku: String,
        pub category: String,
        pub deleted: bool,
        /// When the catalog made the change this row holds.
        pub changed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod stock {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stock")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sku: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub warehouse: String,
        pub available: i64,
        /// When inventory made the change this row holds.
        pub changed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod pair {
    use sea_orm::entity::prelude::*;

    /// How many confirmed orders held both products; kept both ways.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "pairs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub other_id: String,
        pub together: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sale {
    use sea_orm::entity::prelude::*;

    /// How many confirmed orders held the product.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sales")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: String,
        pub orders: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod purchase {
    use sea_orm::entity::prelude::*;

    /// How many of a customer's confirmed orders held the product.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "purchases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: String,
        pub orders: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The most candidates one question reads; a product page needs a handful.
const CANDIDATES: u64 = 500;

/// Inserts `row`, or on a row with the same key does what `conflict` says.
async fn upsert<C, A>(conn: &C, row: A, conflict: OnConflict) -> Result<(), DbErr>
where
    C: ConnectionTrait,
    A: ActiveModelTrait + Send,
{
    <A::Entity as EntityTrait>::insert(row)
        .on_conflict(conflict)
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}

/// On the same `keys`, adds 1 to `counter` in the database.
fn add_one<E: EntityTrait>(
    keys: impl IntoIterator<Item = E::Column>,
    counter: E::Column,
) -> OnConflict {
    OnConflict::columns(keys)
        .value(counter, Expr::col((E::default(), counter)).add(1))
        .to_owned()
}

/// Keeps a product's facts unless the row already holds a later change
/// (events of one product may arrive out of order).
pub async fn put_product<C: ConnectionTrait>(
    conn: &C,
    id: &ProductId,
    sku: &str,
    category: &str,
    deleted: bool,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let known = product::Entity::find_by_id(id.as_str()).one(conn).await?;
    if known.as_ref().is_some_and(|row| row.changed_at > at) {
        return Ok(());
    }
    // A deletion names no category: the one known stays.
    let category = match known {
        Some(row) if deleted => row.category,
        _ => category.to_owned(),
    };
    let row = product::ActiveModel {
        id: Set(id.as_str().to_owned()),
        sku: Set(sku.to_owned()),
        category: Set(category),
        deleted: Set(deleted),
        changed_at: Set(at),
    };
    use product::Column as P;
    let columns = [P::Sku, P::Category, P::Deleted, P::ChangedAt];
    let conflict = OnConflict::column(P::Id).update_columns(columns).to_owned();
    upsert(conn, row, conflict).await
}

/// Keeps what inventory says is available of a SKU in a warehouse, unless
/// the row already holds a later change.
pub async fn put_stock<C: ConnectionTrait>(
    conn: &C,
    sku: &str,
    warehouse: &str,
    available: i64,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let known = stock::Entity::find_by_id((sku.to_owned(), warehouse.to_owned()))
        .one(conn)
        .await?;
    if known.is_some_and(|row| row.changed_at > at) {
        return Ok(());
    }
    let row = stock::ActiveModel {
        sku: Set(sku.to_owned()),
        warehouse: Set(warehouse.to_owned()),
        available: Set(available),
        changed_at: Set(at),
    };
    use stock::Column as S;
    let conflict = OnConflict::columns([S::Sku, S::Warehouse])
        .update_columns([S::Available, S::ChangedAt])
        .to_owned();
    upsert(conn, row, conflict).await
}

/// Counts one confirmed order of `user_id` holding `products` (distinct)
/// and the pairs among them.
pub async fn count_order<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    products: &[ProductId],
    pairs: &[(ProductId, ProductId)],
) -> Result<(), DbErr> {
    for id in products {
        let sold = sale::ActiveModel {
            product_id: Set(id.as_str().to_owned()),
            orders: Set(1),
        };
        let conflict = add_one::<sale::Entity>([sale::Column::ProductId], sale::Column::Orders);
        upsert(conn, sold, conflict).await?;
        let bought = purchase::ActiveModel {
            user_id: Set(user_id.to_owned()),
            product_id: Set(id.as_str().to_owned()),
            orders: Set(1),
        };
        let keys = [purchase::Column::UserId, purchase::Column::ProductId];
        let conflict = add_one::<purchase::Entity>(keys, purchase::Column::Orders);
        upsert(conn, bought, conflict).await?;
    }
    for (a, b) in pairs {
        let together = pair::ActiveModel {
            product_id: Set(a.as_str().to_owned()),
            other_id: Set(b.as_str().to_owned()),
            together: Set(1),
        };
        let keys = [pair::Column::ProductId, pair::Column::OtherId];
        let conflict = add_one::<pair::Entity>(keys, pair::Column::Together);
        upsert(conn, together, conflict).await?;
    }
    Ok(())
}

/// Products bought together with any of `ids`, with how often, summed.
pub async fn bought_with<C: ConnectionTrait>(
    conn: &C,
    ids: &[String],
) -> Result<Vec<(String, i64)>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = pair::Entity::find()
        .filter(pair::Column::ProductId.is_in(ids.iter().map(String::as_str)))
        .order_by_desc(pair::Column::Together)
        .order_by_asc(pair::Column::OtherId)
        .limit(CANDIDATES)
        .all(conn)
        .await?;
    let mut summed: HashMap<String, i64> = HashMap::new();
    for row in rows {
        *summed.entry(row.other_id).or_default() += row.together;
    }
    Ok(summed.into_iter().collect())
}

/// The most bought products (of `category` when given), with how many
/// orders held each; a product of the category never sold counts 0.
pub async fn best_sellers<C: ConnectionTrait>(
    conn: &C,
    category: Option<&str>,
) -> Result<Vec<(String, i64)>, DbErr> {
    let Some(category) = category else {
        let rows = sale::Entity::find()
            .order_by_desc(sale::Column::Orders)
            .order_by_asc(sale::Column::ProductId)
            .limit(CANDIDATES)
            .all(conn)
            .await?;
        return Ok(rows.into_iter().map(|r| (r.product_id, r.orders)).collect());
    };
    let ids: Vec<String> = product::Entity::find()
        .filter(product::Column::Category.eq(category))
        .filter(product::Column::Deleted.eq(false))
        .order_by_asc(product::Column::Id)
        .limit(CANDIDATES)
        .all(conn)
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sold: HashMap<String, i64> = sale::Entity::find()
        .filter(sale::Column::ProductId.is_in(ids.iter().map(String::as_str)))
        .all(conn)
        .await?
        .into_iter()
        .map(|r| (r.product_id, r.orders))
        .collect();
    Ok(ids
        .into_iter()
        .map(|id| {
            let n = sold.get(&id).copied().unwrap_or(0);
            (id, n)
        })
        .collect())
}

/// What is known of each of `ids`, with its stock summed over warehouses.
pub async fn facts<C: ConnectionTrait>(
    conn: &C,
    ids: &[&str],
) -> Result<HashMap<String, Fact>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let products = product::Entity::find()
        .filter(product::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await?;
    let skus: Vec<&str> = products.iter().map(|p| p.sku.as_str()).collect();
    let mut available: HashMap<String, i64> = HashMap::new();
    if !skus.is_empty() {
        for row in stock::Entity::find()
            .filter(stock::Column::Sku.is_in(skus))
            .all(conn)
            .await?
        {
            *available.entry(row.sku).or_default() += Ord::max(row.available, 0);
        }
    }
    Ok(products
        .into_iter()
        .map(|p| {
            let fact = Fact {
                available: available.get(&p.sku).copied(),
                sku: p.sku,
                category: p.category,
                deleted: p.deleted,
            };
            (p.id, fact)
        })
        .collect())
}

pub async fn find_product<C: ConnectionTrait>(
    conn: &C,
    id: &ProductId,
) -> Result<Option<product::Model>, DbErr> {
    product::Entity::find_by_id(id.as_str()).one(conn).await
}

/// Every product the customer's confirmed orders held.
pub async fn purchased<C: ConnectionTrait>(conn: &C, user_id: &str) -> Result<Vec<String>, DbErr> {
    Ok(purchase::Entity::find()
        .filter(purchase::Column::UserId.eq(user_id))
        .order_by_desc(purchase::Column::Orders)
        .order_by_asc(purchase::Column::ProductId)
        .limit(CANDIDATES)
        .all(conn)
        .await?
        .into_iter()
        .map(|p| p.product_id)
        .collect())
}

/// The model's size: distinct pairs (each kept both ways) and products
/// not deleted.
pub async fn sizes<C: ConnectionTrait>(conn: &C) -> Result<(u64, u64), DbErr> {
    let pairs = pair::Entity::find().count(conn).await? / 2;
    let products = product::Entity::find()
        .filter(product::Column::Deleted.eq(false))
        .count(conn)
        .await?;
    Ok((pairs, products))
}
