use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_model"
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
                    .table("products")
                    .if_not_exists()
                    .col(text("id", 36).primary_key())
                    .col(text("sku", 64))
                    .col(text("category", 64))
                    .col(ColumnDef::new("deleted").boolean().not_null())
                    .col(timestamp("changed_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("products_by_category")
                    .table("products")
                    .col("category")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("products_by_sku")
                    .table("products")
                    .col("sku")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("stock")
                    .if_not_exists()
                    .col(text("sku", 64))
                    .col(text("warehouse", 32))
                    .col(count("available"))
                    .col(timestamp("changed_at"))
                    .primary_key(Index::create().col("sku").col("warehouse"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("pairs")
                    .if_not_exists()
                    .col(text("product_id", 36))
                    .col(text("other_id", 36))
                    .col(count("together"))
                    .primary_key(Index::create().col("product_id").col("other_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sales")
                    .if_not_exists()
                    .col(text("product_id", 36).primary_key())
                    .col(count("orders"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sales_by_orders")
                    .table("sales")
                    .col("orders")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("purchases")
                    .if_not_exists()
                    .col(text("user_id", 64))
                    .col(text("product_id", 36))
                    .col(count("orders"))
                    .primary_key(Index::create().col("user_id").col("product_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["purchases", "sales", "pairs", "stock", "products"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
