use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000001_mock_processor_ledger"
    }
}

fn minor(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

/// The mock processor's own record, in payment's store but not payment's:
/// what it authorized, captured, voided and refunded, by payment id (its
/// idempotency key), so that a restart forgets nothing a real processor
/// would remember.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let timestamp = |name| emporium_platform::db::timestamp_column(name, backend);
        let nullable = |name| {
            let mut column = timestamp(name);
            column.null();
            column
        };
        manager
            .create_table(
                Table::create()
                    .table("mock_processor_payments")
                    .if_not_exists()
                    .col(
                        ColumnDef::new("payment_id")
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("authorization_id").string_len(64).null())
                    .col(minor("amount_minor"))
                    .col(ColumnDef::new("currency").string_len(3).not_null())
                    .col(minor("captured_minor"))
                    .col(minor("refunded_minor"))
                    .col(nullable("authorized_at"))
                    .col(nullable("captured_at"))
                    .col(nullable("voided_at"))
                    .col(timestamp("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("mock_processor_refunds")
                    .if_not_exists()
                    .col(
                        ColumnDef::new("refund_id")
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("payment_id").string_len(36).not_null())
                    .col(ColumnDef::new("amount_minor").big_integer().not_null())
                    .col(timestamp("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("mock_processor_refunds_by_payment")
                    .table("mock_processor_refunds")
                    .col("payment_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["mock_processor_refunds", "mock_processor_payments"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
