//! Use cases: reading, searching and changing products and categories,
//! each change written with its event in one transaction.

use std::time::Duration;

use bytes::Bytes;
use emporium_platform::bus::{Envelope, Outbox};
use emporium_platform::cache::SharedCache;
use emporium_platform::http::Page;
use emporium_platform::money::Money;
use emporium_platform::objects::SharedObjects;
use emporium_platform::{ErrorCode, FieldError, Problem};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use sea_orm::{DatabaseConnection, DbErr, SqlErr};

use crate::domain::{
    CategoryInput, CategorySlug, ImageFormat, Product, ProductDraft, ProductId, Sku,
    valid_image_name,
};
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
    /// A stored record the catalog cannot read back.
    #[error("stored product {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
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
            e @ (CatalogError::Corrupt { .. }
            | CatalogError::Encode { .. }
            | CatalogError::Objects(_)) => Problem::internal(e),
        }
    }
}

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Reads a stored row back into a product; a value that no longer parses
/// is an error, never a silent default.
pub(crate) fn product_from_row(row: ProductRow) -> Result<Product> {
    let corrupt = |reason: String| CatalogError::Corrupt {
        id: row.id.clone(),
        reason,
    };
    let images: Vec<String> =
        serde_json::from_str(&row.images).map_err(|e| corrupt(format!("images column: {e}")))?;
    if let Some(bad) = images.iter().find(|name| !valid_image_name(name)) {
        return Err(corrupt(format!("image name `{bad}`")));
    }
    Ok(Product {
        id: ProductId::parse(&row.id).map_err(|e| corrupt(format!("id: {e}")))?,
        sku: Sku::parse(&row.sku).map_err(|e| corrupt(format!("sku: {e}")))?,
        price: Money::from_minor(row.price_minor, &row.currency)
            .map_err(|e| corrupt(format!("currency: {e}")))?,
        category: CategorySlug::parse(&row.category)
            .map_err(|e| corrupt(format!("category: {e}")))?,
        images,
        name: row.name,
        description: row.description,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// A category with the number of products in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    pub slug: String,
    pub name: String,
    pub product_count: u64,
}

/// The catalog's use cases over its stores.
#[derive(Clone)]
pub struct Catalog {
    db: DatabaseConnection,
    cache: SharedCache,
    objects: SharedObjects,
    outbox: Outbox,
    cache_ttl: Duration,
    image_limit: usize,
}

fn cache_key(id: ProductId) -> String {
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

    #[tracing::instrument(skip_all, fields(service = crate::NAME))]
    pub async fn list(&self, query: &ListQuery) -> Result<Page<Product>> {
        let (rows, total) = store::list_products(&self.db, query).await?;
        let items = rows
            .into_iter()
            .map(product_from_row)
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            page: query.page,
            per_page: query.per_page,
            total,
        })
    }

    /// Cache-aside: the cached row first, the database on a miss.
    #[tracing::instrument(skip_all, fields(service = crate::NAME, product_id = %id))]
    pub async fn get(&self, id: ProductId) -> Result<Product> {
        let row = emporium_platform::cache::read_through(
            self.cache.as_ref(),
            &cache_key(id),
            self.cache_ttl,
            "catalog_cache_requests_total",
            || async {
                store::find_product(&self.db, &id.to_string())
                    .await?
                    .ok_or(CatalogError::NotFound)
            },
        )
        .await?;
        product_from_row(row)
    }

    /// The products that exist among `ids`, in the order asked, and the ids
    /// that name none: cached copies first (as [`Self::get`] keeps them),
    /// one query for the rest.
    pub async fn get_many(&self, ids: &[ProductId]) -> Result<(Vec<Product>, Vec<ProductId>)> {
        let keys: Vec<String> = ids.iter().map(|id| cache_key(*id)).collect();
        let rows = emporium_platform::cache::read_through_many(
            self.cache.as_ref(),
            &keys,
            self.cache_ttl,
            "catalog_cache_requests_total",
            |missed| async move {
                let wanted: Vec<String> = missed.iter().map(|&i| ids[i].to_string()).collect();
                let rows = store::find_products(&self.db, &wanted).await?;
                Ok::<_, CatalogError>(
                    wanted
                        .iter()
                        .map(|id| rows.iter().find(|r| &r.id == id).cloned())
                        .collect(),
                )
            },
        )
        .await?;
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (id, row) in ids.iter().zip(rows) {
            match row {
                Some(row) => found.push(product_from_row(row)?),
                None => missing.push(*id),
            }
        }
        Ok((found, missing))
    }

    #[tracing::instrument(skip_all, fields(service = crate::NAME, sku = %draft.sku.as_str()))]
    pub async fn create(&self, draft: &ProductDraft) -> Result<Product> {
        let id = ProductId::new();
        let txn = emporium_platform::db::begin_write(&self.db).await?;
        if !store::category_exists(&txn, draft.category.as_str()).await? {
            return Err(unknown_category(draft.category.as_str()));
        }
        let row = store::insert_product(&txn, &id.to_string(), draft)
            .await
            .map_err(|e| duplicate(e, CatalogError::DuplicateSku(draft.sku.as_str().into())))?;
        let product = product_from_row(row)?;
        let event = events::product(events::PRODUCT_CREATED, &product)?;
        self.commit_with_event(txn, id, event).await?;
        tracing::info!(product_id = %id, "product created");
        Ok(product)
    }

    #[tracing::instrument(skip_all, fields(service = crate::NAME, product_id = %id))]
    pub async fn update(&self, id: ProductId, draft: &ProductDraft) -> Result<Product> {
        let key = id.to_string();
        let txn = emporium_platform::db::begin_write(&self.db).await?;
        store::lock_product(&txn, &key)
            .await?
            .ok_or(CatalogError::NotFound)?;
        if !store::category_exists(&txn, draft.category.as_str()).await? {
            return Err(unknown_category(draft.category.as_str()));
        }
        let row = store::update_product(&txn, &key, draft)
            .await
            .map_err(|e| duplicate(e, CatalogError::DuplicateSku(draft.sku.as_str().into())))?
            .ok_or(CatalogError::NotFound)?;
        let product = product_from_row(row)?;
        let event = events::product(events::PRODUCT_UPDATED, &product)?;
        self.commit_with_event(txn, id, event).await?;
        Ok(product)
    }

    #[tracing::instrument(skip_all, fields(service = crate::NAME, product_id = %id))]
    pub async fn delete(&self, id: ProductId) -> Result<()> {
        let key = id.to_string();
        let txn = emporium_platform::db::begin_write(&self.db).await?;
        let row = store::lock_product(&txn, &key)
            .await?
            .ok_or(CatalogError::NotFound)?;
        let product = product_from_row(row)?;
        store::delete_product(&txn, &key).await?;
        let event = events::deleted(&product)?;
        self.commit_with_event(txn, id, event).await?;
        for name in &product.images {
            if let Err(e) = self.objects.delete(&image_path(id, name)).await {
                tracing::warn!(error = %e, image = %name, "could not remove the image of a deleted product");
            }
        }
        Ok(())
    }

    /// Stores the image, then records it on the product with its event.
    #[tracing::instrument(skip_all, fields(service = crate::NAME, product_id = %id, bytes = body.len()))]
    pub async fn add_image(&self, id: ProductId, body: Bytes) -> Result<Product> {
        if body.len() > self.image_limit {
            return Err(CatalogError::ImageTooLarge(self.image_limit));
        }
        let format = ImageFormat::sniff(&body).ok_or(CatalogError::UnsupportedImage)?;
        let key = id.to_string();
        if store::find_product(&self.db, &key).await?.is_none() {
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
            let row = store::lock_product(&txn, &key)
                .await?
                .ok_or(CatalogError::NotFound)?;
            let mut names = product_from_row(row)?.images;
            names.push(name.clone());
            let json = serde_json::to_string(&names).map_err(|source| CatalogError::Encode {
                what: "the image list",
                source,
            })?;
            store::set_images(&txn, &key, &json).await?;
            let row = store::find_product(&txn, &key)
                .await?
                .ok_or(CatalogError::NotFound)?;
            let product = product_from_row(row)?;
            let event = events::product(events::PRODUCT_UPDATED, &product)?;
            self.commit_with_event(txn, id, event).await?;
            Ok::<_, CatalogError>(product)
        }
        .await;
        if recorded.is_err() {
            // Nothing points at the stored bytes: remove them.
            let _ = self.objects.delete(&path).await;
        }
        recorded
    }

    pub async fn image(&self, id: ProductId, name: &str) -> Result<(Bytes, &'static str)> {
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

    pub async fn categories(&self) -> Result<Vec<Category>> {
        Ok(store::list_categories(&self.db)
            .await?
            .into_iter()
            .map(|(c, product_count)| Category {
                slug: c.slug,
                name: c.name,
                product_count,
            })
            .collect())
    }

    pub async fn create_category(&self, input: &CategoryInput) -> Result<Category> {
        let (slug, name) = input.parse().map_err(CatalogError::Invalid)?;
        let row = store::insert_category(&self.db, slug.as_str(), &name)
            .await
            .map_err(|e| duplicate(e, CatalogError::DuplicateCategory(slug.as_str().into())))?;
        Ok(Category {
            slug: row.slug,
            name: row.name,
            product_count: 0,
        })
    }

    /// Whether the catalog has no product yet.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(store::count_products(&self.db).await? == 0)
    }

    /// Records the change's event in its transaction and commits both; then
    /// drops the cached copy and wakes the relay.
    async fn commit_with_event(
        &self,
        txn: emporium_platform::db::WriteTransaction,
        id: ProductId,
        event: Envelope,
    ) -> Result<()> {
        self.outbox.enqueue(&txn, &event).await?;
        txn.commit().await?;
        self.forget(id).await;
        self.outbox.wake();
        Ok(())
    }

    async fn forget(&self, id: ProductId) {
        emporium_platform::cache::invalidate_logged(self.cache.as_ref(), &cache_key(id)).await;
    }
}

fn image_path(id: ProductId, name: &str) -> ObjectPath {
    ObjectPath::from(format!("products/{id}/{name}"))
}
