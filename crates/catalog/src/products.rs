//! Use cases: reading, searching and changing products and categories,
//! each change written with its event in one transaction.

use std::time::Duration;

use bytes::Bytes;
use emporium_platform::bus::{Envelope, Outbox};
use emporium_platform::cache::SharedCache;
use emporium_platform::objects::SharedObjects;
use emporium_platform::{ErrorCode, FieldError, Problem};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, SqlErr};
use serde::{Deserialize, Serialize};

use crate::domain::{CategoryInput, ImageFormat, Money, MoneyJson, ProductDraft, valid_image_name};
use crate::events;
use crate::store::{self, ListQuery, ProductRow};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("product not found")]
    NotFound,
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("a product with SKU {0} exists already")]
    DuplicateSku(String),
    #[error("category {0} exists already")]
    DuplicateCategory(String),
    #[error("image is not PNG, JPEG, GIF or WebP")]
    UnsupportedImage,
    #[error("image is larger than {0} bytes")]
    ImageTooLarge(usize),
    #[error("image not found")]
    ImageNotFound,
    #[error(transparent)]
    Store(#[from] DbErr),
    #[error("object store: {0}")]
    Objects(String),
}

impl From<CatalogError> for Problem {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::NotFound => Problem::not_found("no product has this id"),
            CatalogError::ImageNotFound => {
                Problem::not_found("this product has no image of that name")
            }
            CatalogError::Invalid(errors) => Problem::invalid(errors),
            e @ (CatalogError::DuplicateSku(_) | CatalogError::DuplicateCategory(_)) => {
                Problem::conflict(e.to_string())
            }
            e @ CatalogError::UnsupportedImage => {
                Problem::new(ErrorCode::UnsupportedMediaType, e.to_string())
            }
            e @ CatalogError::ImageTooLarge(_) => {
                Problem::new(ErrorCode::PayloadTooLarge, e.to_string())
            }
            CatalogError::Store(e) => Problem::from(e),
            CatalogError::Objects(e) => Problem::internal(e),
        }
    }
}

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// A product as clients see it.
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

impl ProductView {
    fn from_row(row: ProductRow) -> Result<Self> {
        let price = Money::from_minor(row.price_minor, &row.currency)
            .map_err(|e| CatalogError::Store(DbErr::Custom(format!("stored currency: {e}"))))?;
        let names: Vec<String> = serde_json::from_str(&row.images).unwrap_or_default();
        let images = names
            .into_iter()
            .map(|name| ImageView {
                url: format!("/api/v1/products/{}/images/{name}", row.id),
                name,
            })
            .collect();
        Ok(ProductView {
            price: price.to_json(),
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            category: row.category,
            images,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    pub fn price_minor(&self) -> i64 {
        Money::parse_price(&self.price.amount, &self.price.currency)
            .map(|m| m.minor)
            .unwrap_or(0)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CategoryView {
    pub slug: String,
    pub name: String,
    pub product_count: u64,
}

/// The catalog's use cases over its stores.
#[derive(Clone)]
pub struct Catalog {
    pub(crate) db: DatabaseConnection,
    cache: SharedCache,
    objects: SharedObjects,
    outbox: Outbox,
    cache_ttl: Duration,
    image_limit: usize,
}

fn cache_key(id: &str) -> String {
    format!("product:{id}")
}

fn duplicate(err: DbErr, conflict: CatalogError) -> CatalogError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => conflict,
        _ => CatalogError::Store(err),
    }
}

fn unknown_category(slug: &str) -> CatalogError {
    CatalogError::Invalid(vec![FieldError {
        field: "category".into(),
        message: format!("no category `{slug}` exists"),
    }])
}

impl Catalog {
    pub fn new(
        db: DatabaseConnection,
        cache: SharedCache,
        objects: SharedObjects,
        outbox: Outbox,
        cache_ttl: Duration,
        image_limit: usize,
    ) -> Self {
        Self {
            db,
            cache,
            objects,
            outbox,
            cache_ttl,
            image_limit,
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn list(&self, query: &ListQuery) -> Result<Page<ProductView>> {
        let (rows, total) = store::list_products(&self.db, query).await?;
        let items = rows
            .into_iter()
            .map(ProductView::from_row)
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            page: query.page,
            per_page: query.per_page,
            total,
        })
    }

    pub async fn get(&self, id: &str) -> Result<ProductView> {
        let json = self.get_json(id).await?;
        serde_json::from_slice(&json)
            .map_err(|e| CatalogError::Store(DbErr::Custom(format!("cached product: {e}"))))
    }

    /// The product as its JSON document. Cache-aside: the cache first (its
    /// bytes are served as they are), the database on a miss.
    #[tracing::instrument(skip_all, fields(product_id = %id))]
    pub async fn get_json(&self, id: &str) -> Result<Bytes> {
        let key = cache_key(id);
        match self.cache.get(&key).await {
            Ok(Some(bytes)) => {
                metrics::counter!("catalog_cache_requests_total", "result" => "hit").increment(1);
                return Ok(bytes);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cache read failed; reading the database"),
        }
        metrics::counter!("catalog_cache_requests_total", "result" => "miss").increment(1);
        // Taken before the database read: a write that commits after it
        // makes this copy too old to cache.
        let fence = self.cache.fence(&key).await.ok();
        let row = store::find_product(&self.db, id)
            .await?
            .ok_or(CatalogError::NotFound)?;
        let view = ProductView::from_row(row)?;
        let bytes = serde_json::to_vec(&view)
            .map_err(|e| CatalogError::Store(DbErr::Custom(e.to_string())))?;
        if let Some(fence) = fence
            && let Err(e) = self
                .cache
                .set_fenced(&key, &bytes, self.cache_ttl, fence)
                .await
        {
            tracing::warn!(error = %e, "cache write failed");
        }
        Ok(Bytes::from(bytes))
    }

    /// The products that exist among `ids`, in the order asked, and the ids
    /// that name none.
    pub async fn get_many(&self, ids: &[String]) -> Result<(Vec<ProductView>, Vec<String>)> {
        let rows = store::find_products(&self.db, ids).await?;
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match rows.iter().find(|r| &r.id == id) {
                Some(row) => found.push(ProductView::from_row(row.clone())?),
                None => missing.push(id.clone()),
            }
        }
        Ok((found, missing))
    }

    #[tracing::instrument(skip_all, fields(sku = %draft.sku.as_str()))]
    pub async fn create(&self, draft: &ProductDraft) -> Result<ProductView> {
        let id = uuid::Uuid::now_v7().to_string();
        let txn = emporium_platform::db::begin_write(&self.db).await?;
        if !store::category_exists(&txn, draft.category.as_str()).await? {
            return Err(unknown_category(draft.category.as_str()));
        }
        let row = store::insert_product(&txn, &id, draft)
            .await
            .map_err(|e| duplicate(e, CatalogError::DuplicateSku(draft.sku.as_str().into())))?;
        let view = ProductView::from_row(row)?;
        self.commit_with_event(
            txn,
            &view.id,
            events::product(events::PRODUCT_CREATED, &view),
        )
        .await?;
        tracing::info!(product_id = %view.id, "product created");
        Ok(view)
    }

    #[tracing::instrument(skip_all, fields(product_id = %id))]
    pub async fn update(&self, id: &str, draft: &ProductDraft) -> Result<ProductView> {
        let txn = emporium_platform::db::begin_write(&self.db).await?;
        store::lock_product(&txn, id)
            .await?
            .ok_or(CatalogError::NotFound)?;
        if !store::category_exists(&txn, draft.category.as_str()).await? {
            return Err(unknown_category(draft.category.as_str()));
        }
        let row = store::update_product(&txn, id, draft)
            .await
            .map_err(|e| duplicate(e, CatalogError::DuplicateSku(draft.sku.as_str().into())))?
            .ok_or(CatalogError::NotFound)?;
        let view = ProductView::from_row(row)?;
        self.commit_with_event(txn, id, events::product(events::PRODUCT_UPDATED, &view))
            .await?;
        Ok(view)
    }

    #[tracing::instrument(skip_all, fields(product_id = %id))]
    pub async fn delete(&self, id: &str) -> Result<()> {
        let txn = emporium_platform::db::begin_write(&self.db).await?;
        let row = store::lock_product(&txn, id)
            .await?
            .ok_or(CatalogError::NotFound)?;
        store::delete_product(&txn, id).await?;
        self.commit_with_event(txn, id, events::deleted(id, &row.sku))
            .await?;
        let names: Vec<String> = serde_json::from_str(&row.images).unwrap_or_default();
        for name in names {
            if let Err(e) = self.objects.delete(&image_path(id, &name)).await {
                tracing::warn!(error = %e, image = %name, "could not remove the image of a deleted product");
            }
        }
        Ok(())
    }

    /// Stores the image, then records it on the product with its event.
    #[tracing::instrument(skip_all, fields(product_id = %id, bytes = body.len()))]
    pub async fn add_image(&self, id: &str, body: Bytes) -> Result<ProductView> {
        if body.len() > self.image_limit {
            return Err(CatalogError::ImageTooLarge(self.image_limit));
        }
        let format = ImageFormat::sniff(&body).ok_or(CatalogError::UnsupportedImage)?;
        if store::find_product(&self.db, id).await?.is_none() {
            return Err(CatalogError::NotFound);
        }
        let name = format!("{}.{}", uuid::Uuid::now_v7(), format.extension());
        let path = image_path(id, &name);
        self.objects
            .put(&path, body.into())
            .await
            .map_err(|e| CatalogError::Objects(e.to_string()))?;
        let recorded = async {
            let txn = emporium_platform::db::begin_write(&self.db).await?;
            let row = store::lock_product(&txn, id)
                .await?
                .ok_or(CatalogError::NotFound)?;
            let mut names: Vec<String> = serde_json::from_str(&row.images).unwrap_or_default();
            names.push(name.clone());
            store::set_images(&txn, id, &names).await?;
            let row = store::find_product(&txn, id)
                .await?
                .ok_or(CatalogError::NotFound)?;
            let view = ProductView::from_row(row)?;
            self.commit_with_event(txn, id, events::product(events::PRODUCT_UPDATED, &view))
                .await?;
            Ok::<_, CatalogError>(view)
        }
        .await;
        if recorded.is_err() {
            // Nothing points at the stored bytes: remove them.
            let _ = self.objects.delete(&path).await;
        }
        recorded
    }

    pub async fn image(&self, id: &str, name: &str) -> Result<(Bytes, &'static str)> {
        let format = ImageFormat::from_name(name)
            .filter(|_| valid_image_name(name))
            .ok_or(CatalogError::ImageNotFound)?;
        match self.objects.get(&image_path(id, name)).await {
            Ok(result) => {
                let bytes = result
                    .bytes()
                    .await
                    .map_err(|e| CatalogError::Objects(e.to_string()))?;
                Ok((bytes, format.mime()))
            }
            Err(object_store::Error::NotFound { .. }) => Err(CatalogError::ImageNotFound),
            Err(e) => Err(CatalogError::Objects(e.to_string())),
        }
    }

    pub async fn categories(&self) -> Result<Vec<CategoryView>> {
        Ok(store::list_categories(&self.db)
            .await?
            .into_iter()
            .map(|(c, product_count)| CategoryView {
                slug: c.slug,
                name: c.name,
                product_count,
            })
            .collect())
    }

    pub async fn create_category(&self, input: &CategoryInput) -> Result<CategoryView> {
        let (slug, name) = input.parse().map_err(CatalogError::Invalid)?;
        let row = store::insert_category(&self.db, slug.as_str(), &name)
            .await
            .map_err(|e| duplicate(e, CatalogError::DuplicateCategory(slug.as_str().into())))?;
        Ok(CategoryView {
            slug: row.slug,
            name: row.name,
            product_count: 0,
        })
    }

    /// Records the change's event in its transaction and commits both; then
    /// drops the cached copy and wakes the relay.
    async fn commit_with_event(
        &self,
        txn: DatabaseTransaction,
        id: &str,
        event: Envelope,
    ) -> Result<()> {
        self.outbox.enqueue(&txn, &event).await?;
        txn.commit().await?;
        self.forget(id).await;
        self.outbox.wake();
        Ok(())
    }

    async fn forget(&self, id: &str) {
        if let Err(e) = self.cache.invalidate(&cache_key(id)).await {
            tracing::warn!(error = %e, product_id = %id, "cache invalidation failed; entry expires with its ttl");
        }
    }
}

fn image_path(id: &str, name: &str) -> ObjectPath {
    ObjectPath::from(format!("products/{id}/{name}"))
}
