use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_notifications"
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
        manager
            .create_table(
                Table::create()
                    .table("notifications")
                    .if_not_exists()
                    .col(text("id", 36).primary_key())
                    .col(ColumnDef::new("user_id").string_len(64).null())
                    .col(text("channel", 8))
                    .col(text("recipient", 254))
                    .col(text("kind", 64))
                    .col(text("subject", 300))
                    .col(ColumnDef::new("body_text").text().not_null())
                    .col(ColumnDef::new("body_html").text().null())
                    .col(text("status", 8))
                    .col(ColumnDef::new("attempts").integer().not_null())
                    .col(ColumnDef::new("error").text().null())
                    .col(ColumnDef::new("event_id").string_len(36).null())
                    .col(ColumnDef::new("version").big_integer().not_null())
                    .col(timestamp("next_attempt_at"))
                    .col(timestamp("created_at"))
                    .col(timestamp("updated_at"))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("notifications_due", &["status", "next_attempt_at"][..]),
            ("notifications_by_user", &["user_id", "created_at"][..]),
            ("notifications_by_time", &["created_at"][..]),
            ("notifications_by_event", &["event_id"][..]),
        ] {
            let mut index = Index::create();
            index.name(name).table("notifications");
            for column in columns {
                index.col(*column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }
}
