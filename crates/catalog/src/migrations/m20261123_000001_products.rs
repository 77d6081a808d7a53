use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000001_products"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("categories")
                    .if_not_exists()
                    .col(
                        ColumnDef::new("slug")
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("name").string_len(100).not_null())
                    .col(
                        ColumnDef::new("created_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("products")
                    .if_not_exists()
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("sku").string_len(64).not_null().unique_key())
                    .col(ColumnDef::new("name").string_len(200).not_null())
                    .col(ColumnDef::new("description").text().not_null())
                    .col(ColumnDef::new("price_minor").big_integer().not_null())
                    .col(ColumnDef::new("currency").string_len(3).not_null())
                    .col(ColumnDef::new("category").string_len(64).not_null())
                    .col(ColumnDef::new("images").text().not_null())
                    .col(
                        ColumnDef::new("created_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new("updated_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("products_category")
                            .from("products", "category")
                            .to("categories", "slug"),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("products_by_category", "category"),
            ("products_by_price", "price_minor"),
            ("products_by_created", "created_at"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table("products")
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        // Full-text search is each backend's own feature.
        let db = manager.get_connection();
        let statements: &[&str] = match manager.get_database_backend() {
            DbBackend::Postgres => &[
                "CREATE INDEX products_search ON products USING GIN (to_tsvector('simple', name || ' ' || description))",
            ],
            DbBackend::MySql => {
                &["CREATE FULLTEXT INDEX products_search ON products (name, description)"]
            }
            _ => &[
                "CREATE VIRTUAL TABLE products_fts USING fts5(id UNINDEXED, name, description, tokenize = 'unicode61 remove_diacritics 2')",
                "CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN \
                 INSERT INTO products_fts (id, name, description) VALUES (new.id, new.name, new.description); END",
                "CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description ON products BEGIN \
                 DELETE FROM products_fts WHERE id = old.id; \
                 INSERT INTO products_fts (id, name, description) VALUES (new.id, new.name, new.description); END",
                "CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN \
                 DELETE FROM products_fts WHERE id = old.id; END",
            ],
        };
        for statement in statements {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            manager
                .get_connection()
                .execute_unprepared("DROP TABLE IF EXISTS products_fts")
                .await?;
        }
        manager
            .drop_table(Table::drop().table("products").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("categories").to_owned())
            .await
    }
}
