use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_from_basket"
    }
}

/// Whether an order checked out the customer's basket (and so empties
/// those lines of it once confirmed) or items named in the request.
/// Orders made before it checked out baskets or items alike; they are
/// taken as baskets, as they were then.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("orders")
                    .add_column(
                        ColumnDef::new("from_basket")
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .to_owned(),
            )
            .await
    }
}
