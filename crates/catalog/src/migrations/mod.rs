//! The catalog's schema, written once for every backend. Never edit a
//! migration that has landed; add one.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261123_000001_products;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(emporium_platform::bus::OutboxMigration),
            Box::new(m20261123_000001_products::Migration),
        ]
    }
}
