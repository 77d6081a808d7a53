//! Events the catalog publishes.

use emporium_platform::bus::Envelope;

use crate::products::ProductView;

pub const SOURCE: &str = "emporium.catalog";
pub const PRODUCT_CREATED: &str = "product.created";
pub const PRODUCT_UPDATED: &str = "product.updated";
pub const PRODUCT_DELETED: &str = "product.deleted";

/// `product.created` or `product.updated`, carrying the whole product.
pub fn product(kind: &str, view: &ProductView) -> Envelope {
    let data = serde_json::to_value(view).unwrap_or_default();
    Envelope::new(kind, SOURCE, format!("products/{}", view.id), data)
}

pub fn deleted(id: &str, sku: &str) -> Envelope {
    Envelope::new(
        PRODUCT_DELETED,
        SOURCE,
        format!("products/{id}"),
        serde_json::json!({ "id": id, "sku": sku }),
    )
}
