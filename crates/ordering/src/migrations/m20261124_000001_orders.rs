use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000001_orders"
    }
}

fn text(name: &'static str, len: u32) -> ColumnDef {
    ColumnDef::new(name).string_len(len).not_null().to_owned()
}

fn optional(name: &'static str, len: u32) -> ColumnDef {
    ColumnDef::new(name).string_len(len).null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let timestamp = |name| emporium_platform::db::timestamp_column(name, backend);
        manager
            .create_table(
                Table::create()
                    .table("orders")
                    .if_not_exists()
                    .col(text("id", 36).primary_key())
                    .col(text("user_id", 64))
                    .col(text("status", 16))
                    .col(text("step", 16))
                    .col(text("currency", 3))
                    .col(ColumnDef::new("total_minor").big_integer().not_null())
                    .col(optional("reservation_id", 36))
                    .col(optional("payment_id", 36))
                    .col(optional("failure_reason", 200))
                    .col(timestamp("created_at"))
                    .col(timestamp("updated_at"))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("orders_by_user", ["user_id", "created_at"]),
            ("orders_by_status", ["status", "created_at"]),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table("orders")
                        .col(columns[0])
                        .col(columns[1])
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("order_lines")
                    .if_not_exists()
                    .col(text("order_id", 36))
                    .col(text("product_id", 36))
                    .col(text("sku", 64))
                    .col(text("name", 400))
                    .col(ColumnDef::new("unit_minor").big_integer().not_null())
                    .col(ColumnDef::new("quantity").big_integer().not_null())
                    .primary_key(Index::create().col("order_id").col("product_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["order_lines", "orders"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
