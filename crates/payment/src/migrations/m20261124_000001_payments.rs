use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000001_payments"
    }
}

fn text(name: &'static str, len: u32) -> ColumnDef {
    ColumnDef::new(name).string_len(len).not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let timestamp = |name| emporium_platform::db::timestamp_column(name, backend);
        let mut processed_at = timestamp("processed_at");
        processed_at.null();
        manager
            .create_table(
                Table::create()
                    .table("payments")
                    .if_not_exists()
                    .col(text("id", 36).primary_key())
                    .col(text("order_id", 64))
                    .col(text("user_id", 64))
                    .col(ColumnDef::new("amount_minor").big_integer().not_null())
                    .col(text("currency", 3))
                    .col(ColumnDef::new("refunded_minor").big_integer().not_null())
                    .col(text("status", 24))
                    .col(text("method", 16))
                    .col(text("provider", 16))
                    .col(ColumnDef::new("provider_id").string_len(64).null())
                    .col(text("card_last4", 4))
                    .col(text("card_token", 64))
                    .col(ColumnDef::new("metadata").text().not_null())
                    .col(ColumnDef::new("failure_reason").string_len(100).null())
                    .col(processed_at)
                    .col(timestamp("expires_at"))
                    .col(timestamp("created_at"))
                    .col(timestamp("updated_at"))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("payments_by_user", "user_id"),
            ("payments_by_order", "order_id"),
            ("payments_by_created", "created_at"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table("payments")
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("payments").if_exists().to_owned())
            .await
    }
}
