//! Events the catalog publishes, and their payload.

use emporium_platform::bus::Envelope;
use emporium_platform::money::MoneyJson;
use serde::Serialize;

use crate::domain::Product;
use crate::products::CatalogError;

pub const SOURCE: &str = "emporium.catalog";
pub const PRODUCT_CREATED: &str = "product.created";
pub const PRODUCT_UPDATED: &str = "product.updated";
pub const PRODUCT_DELETED: &str = "product.deleted";

/// The `data` of `product.created` and `product.updated`: the whole product.
#[derive(Serialize)]
struct ProductPayload<'a> {
    id: String,
    sku: &'a str,
    name: &'a str,
    description: &'a str,
    price: MoneyJson,
    /// The price in minor units, for consumers that compute.
    price_minor: i64,
    category: &'a str,
    images: &'a [String],
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

/// The `data` of `product.deleted`.
#[derive(Serialize)]
struct DeletedPayload<'a> {
    id: String,
    sku: &'a str,
}

fn envelope(kind: &str, product: &Product, data: impl Serialize) -> Result<Envelope, CatalogError> {
    let data = serde_json::to_value(data).map_err(|source| CatalogError::Encode {
        what: "the event",
        source,
    })?;
    Ok(Envelope::new(
        kind,
        SOURCE,
        format!("products/{}", product.id),
        data,
    ))
}

/// `product.created` or `product.updated`, carrying the whole product.
pub fn product(kind: &str, product: &Product) -> Result<Envelope, CatalogError> {
    envelope(
        kind,
        product,
        ProductPayload {
            id: product.id.to_string(),
            sku: product.sku.as_str(),
            name: &product.name,
            description: &product.description,
            price: product.price.to_json(),
            price_minor: product.price.minor,
            category: product.category.as_str(),
            images: &product.images,
            created_at: product.created_at,
            updated_at: product.updated_at,
        },
    )
}

pub fn deleted(product: &Product) -> Result<Envelope, CatalogError> {
    envelope(
        PRODUCT_DELETED,
        product,
        DeletedPayload {
            id: product.id.to_string(),
            sku: product.sku.as_str(),
        },
    )
}
