use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000001_stock"
    }
}

fn text(name: &'static str, len: u32) -> ColumnDef {
    ColumnDef::new(name).string_len(len).not_null().to_owned()
}

fn count(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let timestamp = |name| emporium_platform::db::timestamp_column(name, backend);
        manager
            .create_table(
                Table::create()
                    .table("stock")
                    .if_not_exists()
                    .col(text("sku", 64))
                    .col(text("warehouse", 32))
                    .col(count("on_hand"))
                    .col(count("reserved"))
                    .col(count("threshold"))
                    .col(timestamp("updated_at"))
                    .primary_key(Index::create().col("sku").col("warehouse"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("reservations")
                    .if_not_exists()
                    .col(text("id", 36).primary_key())
                    .col(text("status", 16))
                    .col(text("reference", 400))
                    .col(timestamp("expires_at"))
                    .col(timestamp("created_at"))
                    .col(timestamp("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("reservations_by_status_expiry")
                    .table("reservations")
                    .col("status")
                    .col("expires_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("reservation_lines")
                    .if_not_exists()
                    .col(text("reservation_id", 36))
                    .col(text("sku", 64))
                    .col(text("warehouse", 32))
                    .col(count("quantity"))
                    .primary_key(
                        Index::create()
                            .col("reservation_id")
                            .col("sku")
                            .col("warehouse"),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("reservation_lines_reservation")
                            .from("reservation_lines", "reservation_id")
                            .to("reservations", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("movements")
                    .if_not_exists()
                    .col(text("id", 36).primary_key())
                    .col(text("sku", 64))
                    .col(text("warehouse", 32))
                    .col(text("kind", 16))
                    .col(count("on_hand_delta"))
                    .col(count("reserved_delta"))
                    .col(count("on_hand_after"))
                    .col(count("reserved_after"))
                    .col(ColumnDef::new("reservation_id").string_len(36).null())
                    .col(text("actor", 64))
                    .col(text("reason", 400))
                    .col(timestamp("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("movements_by_sku")
                    .table("movements")
                    .col("sku")
                    .col("id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["movements", "reservation_lines", "reservations", "stock"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
