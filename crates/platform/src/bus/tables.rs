//! The outbox and inbox tables, part of every service's migrations.

use async_trait::async_trait;
use sea_orm::DbErr;

pub mod outbox_row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub event_type: String,
        #[sea_orm(column_type = "Text")]
        pub envelope: String,
        pub created_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
        pub attempts: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod inbox_row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub processed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The outbox and inbox tables, part of every service's migrations.
pub struct OutboxMigration;

impl sea_orm_migration::MigrationName for OutboxMigration {
    fn name(&self) -> &str {
        "m20261123_000000_outbox_inbox"
    }
}

#[async_trait]
impl sea_orm_migration::MigrationTrait for OutboxMigration {
    async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::*;
        manager
            .create_table(
                Table::create()
                    .table("outbox")
                    .if_not_exists()
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("event_type").string_len(128).not_null())
                    .col(ColumnDef::new("envelope").text().not_null())
                    .col(
                        ColumnDef::new("created_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new("sent_at").timestamp_with_time_zone().null())
                    .col(ColumnDef::new("attempts").integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_unsent")
                    .table("outbox")
                    .col("sent_at")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("inbox")
                    .if_not_exists()
                    .col(ColumnDef::new("consumer").string_len(64).not_null())
                    .col(ColumnDef::new("event_id").string_len(36).not_null())
                    .col(
                        ColumnDef::new("processed_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col("consumer").col("event_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::*;
        manager
            .drop_table(Table::drop().table("inbox").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("outbox").to_owned())
            .await
    }
}
