use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000001_refund_pending"
    }
}

/// The refund asked of the processor and not yet recorded as made: its id
/// (the processor's idempotency key) and amount. A refund cut off between
/// the processor and the record is asked again under the same id, so that
/// the record never says refunded where the processor gave nothing back,
/// nor the processor gives back twice. Payments made before it have none.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column a statement: SQLite alters one at a time.
        for column in [
            ColumnDef::new("refund_pending_id")
                .string_len(36)
                .null()
                .to_owned(),
            ColumnDef::new("refund_pending_minor")
                .big_integer()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table("payments")
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
