//! Payment's schema, written once for every backend. Never edit a
//! migration that has landed; add one.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261124_000001_payments;
mod m20261203_000001_mock_processor_ledger;
mod m20261204_000001_refund_pending;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(emporium_platform::bus::OutboxMigration),
            Box::new(emporium_platform::idempotency::IdempotencyMigration),
            Box::new(m20261124_000001_payments::Migration),
            Box::new(m20261203_000001_mock_processor_ledger::Migration),
            Box::new(m20261204_000001_refund_pending::Migration),
        ]
    }
}
