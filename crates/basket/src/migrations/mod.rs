//! The basket's schema, written once for every backend: the outbox and
//! inbox always, and the baskets table used when Redis is not configured.
//! Never edit a migration that has landed; add one.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261124_000001_baskets;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(emporium_platform::bus::OutboxMigration),
            Box::new(m20261124_000001_baskets::Migration),
        ]
    }
}
