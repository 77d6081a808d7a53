//! The staff's catalog pages: products (create, edit, delete, images),
//! categories, and inventory per warehouse with low-stock alerts and
//! adjustments with a reason.
