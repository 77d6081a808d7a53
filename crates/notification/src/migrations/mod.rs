//! Notification's schema, written once for every backend. Never edit a
//! migration that has landed; add one.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261202_000001_notifications;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            // The inbox that makes each event act once comes with it.
            Box::new(emporium_platform::bus::OutboxMigration),
            Box::new(m20261202_000001_notifications::Migration),
        ]
    }
}
