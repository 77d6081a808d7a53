//! The use cases: learning from events and answering "also bought" and
//! "for you", shared by the REST and gRPC faces.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use emporium_platform::Problem;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use crate::domain::{self, Limit, ProductId, Recommendation};
use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    #[error("no such product")]
    NoSuchProduct,
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<RecommendError> for Problem {
    fn from(err: RecommendError) -> Self {
        match err {
            RecommendError::NoSuchProduct => Problem::not_found(err.to_string()),
            RecommendError::Db(e) => Problem::from(e),
        }
    }
}

pub type Result<T, E = RecommendError> = std::result::Result<T, E>;

/// What one event teaches; `at` is when its source made the change, so
/// that a late delivery never overwrites a newer fact.
#[derive(Clone, Debug)]
pub enum Lesson {
    /// A confirmed order: whose, and the products it held.
    Order {
        user_id: String,
        products: Vec<ProductId>,
    },
    Product {
        id: ProductId,
        sku: String,
        category: String,
        deleted: bool,
        at: DateTime<Utc>,
    },
    /// Units available of a SKU in one warehouse.
    Stock {
        sku: String,
        warehouse: String,
        available: i64,
        at: DateTime<Utc>,
    },
}

/// The widest values the tables hold (what the catalog, inventory and
/// ordering make themselves).
const USER_ID_MAX: usize = 64;
const SKU_MAX: usize = 64;
const CATEGORY_MAX: usize = 64;
const WAREHOUSE_MAX: usize = 32;

impl Lesson {
    /// Whether every value fits its column: one that does not could never
    /// be written, and retrying its event would not change that.
    pub fn fits(&self) -> bool {
        let within = |value: &str, max: usize| value.chars().count() <= max;
        match self {
            Lesson::Order { user_id, .. } => within(user_id, USER_ID_MAX),
            Lesson::Product { sku, category, .. } => {
                within(sku, SKU_MAX) && within(category, CATEGORY_MAX)
            }
            Lesson::Stock { sku, warehouse, .. } => {
                within(sku, SKU_MAX) && within(warehouse, WAREHOUSE_MAX)
            }
        }
    }
}

#[derive(Clone)]
pub struct Recommender {
    db: DatabaseConnection,
}

impl Recommender {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// "Also bought" with `product`: ranked by how often bought together,
    /// then the best sellers of its category; 404 for a product the
    /// catalog never announced or has deleted.
    #[tracing::instrument(skip_all, fields(service = crate::NAME, product_id = %product.as_str()))]
    pub async fn for_product(
        &self,
        product: &ProductId,
        limit: Limit,
    ) -> Result<Vec<Recommendation>> {
        let known = store::find_product(&self.db, product)
            .await?
            .filter(|p| !p.deleted)
            .ok_or(RecommendError::NoSuchProduct)?;
        let asked = vec![product.as_str().to_owned()];
        let also = store::bought_with(&self.db, &asked).await?;
        let best = store::best_sellers(&self.db, Some(&known.category)).await?;
        self.ranked(&also, &best, asked.into_iter().collect(), limit)
            .await
    }

    /// For a signed-in customer: what others bought with what they bought,
    /// then the shop's best sellers (all a new customer gets); never a
    /// product they bought already.
    #[tracing::instrument(skip_all, fields(service = crate::NAME))]
    pub async fn for_user(&self, user_id: &str, limit: Limit) -> Result<Vec<Recommendation>> {
        let bought = store::purchased(&self.db, user_id).await?;
        let also = store::bought_with(&self.db, &bought).await?;
        let best = store::best_sellers(&self.db, None).await?;
        self.ranked(&also, &best, bought.into_iter().collect(), limit)
            .await
    }

    async fn ranked(
        &self,
        also: &[(String, i64)],
        best: &[(String, i64)],
        exclude: HashSet<String>,
        limit: Limit,
    ) -> Result<Vec<Recommendation>> {
        let ids: Vec<&str> = also
            .iter()
            .chain(best)
            .map(|(id, _)| id.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let facts = store::facts(&self.db, &ids).await?;
        Ok(domain::rank(also, best, &facts, &exclude, limit))
    }

    /// Keeps what one event taught, within the inbox's transaction.
    pub async fn learn<C: ConnectionTrait>(&self, conn: &C, lesson: Lesson) -> Result<()> {
        match lesson {
            Lesson::Order { user_id, products } => {
                let mut products = products;
                products.sort();
                products.dedup();
                let pairs = domain::pairs_of(&products);
                store::count_order(conn, &user_id, &products, &pairs).await?;
            }
            Lesson::Product {
                id,
                sku,
                category,
                deleted,
                at,
            } => store::put_product(conn, &id, &sku, &category, deleted, at).await?,
            Lesson::Stock {
                sku,
                warehouse,
                available,
                at,
            } => store::put_stock(conn, &sku, &warehouse, available, at).await?,
        }
        Ok(())
    }

    /// Sets `recommendation_pairs` and `recommendation_products`.
    pub async fn refresh_gauges(&self) -> Result<()> {
        let (pairs, products) = store::sizes(&self.db).await?;
        metrics::gauge!("recommendation_pairs").set(pairs as f64);
        metrics::gauge!("recommendation_products").set(products as f64);
        Ok(())
    }
}
