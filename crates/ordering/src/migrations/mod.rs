//! Ordering's schema, written once for every backend. Never edit a
//! migration that has landed; add one.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261124_000001_orders;
mod m20261202_000001_from_basket;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(emporium_platform::bus::OutboxMigration),
            Box::new(emporium_platform::idempotency::IdempotencyMigration),
            Box::new(m20261124_000001_orders::Migration),
            Box::new(m20261202_000001_from_basket::Migration),
        ]
    }
}
