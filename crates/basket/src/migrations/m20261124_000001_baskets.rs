use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000001_baskets"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .create_table(
                Table::create()
                    .table("baskets")
                    .if_not_exists()
                    .col(
                        ColumnDef::new("owner")
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("body").text().not_null())
                    .col(ColumnDef::new("version").big_integer().not_null())
                    .col(emporium_platform::db::timestamp_column(
                        "expires_at",
                        backend,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("baskets").if_exists().to_owned())
            .await
    }
}
