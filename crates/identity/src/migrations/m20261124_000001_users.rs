use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000001_users"
    }
}

fn id(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let timestamp = |name| emporium_platform::db::timestamp_column(name, backend);
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .if_not_exists()
                    .col(id("id").primary_key())
                    .col(
                        ColumnDef::new("email")
                            .string_len(254)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new("password_hash").string_len(255).not_null())
                    .col(ColumnDef::new("name").string_len(400).not_null())
                    .col(ColumnDef::new("phone").string_len(32).null())
                    .col(ColumnDef::new("role").string_len(16).not_null())
                    .col(ColumnDef::new("active").boolean().not_null())
                    .col(timestamp("created_at"))
                    .col(timestamp("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_by_created")
                    .table("users")
                    .col("created_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("refresh_tokens")
                    .if_not_exists()
                    .col(id("id").primary_key())
                    .col(id("family_id"))
                    .col(id("user_id"))
                    .col(
                        ColumnDef::new("token_hash")
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(timestamp("created_at"))
                    .col(timestamp("expires_at"))
                    .col(timestamp("used_at").null())
                    .col(timestamp("revoked_at").null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("refresh_tokens_user")
                            .from("refresh_tokens", "user_id")
                            .to("users", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("refresh_tokens_by_family", "family_id"),
            ("refresh_tokens_by_user", "user_id"),
            ("refresh_tokens_by_expiry", "expires_at"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table("refresh_tokens")
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("signing_keys")
                    .if_not_exists()
                    .col(
                        ColumnDef::new("kid")
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("private_key").text().not_null())
                    .col(timestamp("created_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["refresh_tokens", "signing_keys", "users"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
