//! Persistence of orders and their lines, written once for SQLite,
//! PostgreSQL and MariaDB. The saga's progress is the order's `step`,
//! moved by compare-and-set so that two runners never both move it.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

pub mod order {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub status: String,
        /// How far the checkout got: `priced`, `reserved`, `paying`,
        /// `paid`, `done`; `abandoning` while a checkout left before
        /// paying is undone; `cancelling` while a cancellation runs.
        pub step: String,
        pub currency: String,
        pub total_minor: i64,
        pub reservation_id: Option<String>,
        pub payment_id: Option<String>,
        pub failure_reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// Checked out from the basket (not items named in the request).
        pub from_basket: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod line {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_lines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: String,
        pub sku: String,
        pub name: String,
        pub unit_minor: i64,
        pub quantity: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub type OrderRow = order::Model;
pub type LineRow = line::Model;

pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    row: OrderRow,
    lines: Vec<LineRow>,
) -> Result<(), DbErr> {
    order::Entity::insert(order::ActiveModel {
        id: Set(row.id),
        user_id: Set(row.user_id),
        status: Set(row.status),
        step: Set(row.step),
        currency: Set(row.currency),
        total_minor: Set(row.total_minor),
        reservation_id: Set(row.reservation_id),
        payment_id: Set(row.payment_id),
        failure_reason: Set(row.failure_reason),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
        from_basket: Set(row.from_basket),
    })
    .exec_without_returning(conn)
    .await?;
    line::Entity::insert_many(lines.into_iter().map(|l| line::ActiveModel {
        order_id: Set(l.order_id),
        product_id: Set(l.product_id),
        sku: Set(l.sku),
        name: Set(l.name),
        unit_minor: Set(l.unit_minor),
        quantity: Set(l.quantity),
    }))
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}

pub async fn find<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<OrderRow>, DbErr> {
    order::Entity::find_by_id(id.to_owned()).one(conn).await
}

pub async fn lines<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Vec<LineRow>, DbErr> {
    line::Entity::find()
        .filter(line::Column::OrderId.eq(id))
        .order_by_asc(line::Column::Sku)
        .all(conn)
        .await
}

/// What a move also sets.
#[derive(Clone, Debug, Default)]
pub struct Change {
    pub reservation_id: Option<String>,
    pub payment_id: Option<String>,
    pub failure_reason: Option<String>,
}

/// Moves order `id` from (`status`, `step`) to (`to_status`, `to_step`);
/// false when another runner moved it first.
pub async fn advance<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    (status, step): (&str, &str),
    (to_status, to_step): (&str, &str),
    change: Change,
) -> Result<bool, DbErr> {
    let mut update = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(to_status))
        .col_expr(order::Column::Step, Expr::value(to_step))
        .col_expr(order::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(order::Column::Id.eq(id))
        .filter(order::Column::Status.eq(status))
        .filter(order::Column::Step.eq(step));
    if let Some(v) = change.reservation_id {
        update = update.col_expr(order::Column::ReservationId, Expr::value(v));
    }
    if let Some(v) = change.payment_id {
        update = update.col_expr(order::Column::PaymentId, Expr::value(v));
    }
    if let Some(v) = change.failure_reason {
        update = update.col_expr(order::Column::FailureReason, Expr::value(v));
    }
    Ok(update.exec(conn).await?.rows_affected == 1)
}

/// A page of orders, newest first, of one user and/or in one status.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    user_id: Option<&str>,
    status: Option<&str>,
    page: u64,
    per_page: u64,
) -> Result<(Vec<OrderRow>, u64), DbErr> {
    let mut select = order::Entity::find();
    if let Some(user) = user_id {
        select = select.filter(order::Column::UserId.eq(user));
    }
    if let Some(status) = status {
        select = select.filter(order::Column::Status.eq(status));
    }
    let select = select
        .order_by_desc(order::Column::CreatedAt)
        .order_by_desc(order::Column::Id);
    emporium_platform::db::paged(conn, select, page, per_page).await
}

/// Orders whose checkout, or cancellation, has not finished, oldest
/// first.
pub async fn unfinished<C: ConnectionTrait>(conn: &C, limit: u64) -> Result<Vec<OrderRow>, DbErr> {
    order::Entity::find()
        .filter(
            Condition::any()
                .add(order::Column::Status.eq("pending"))
                .add(order::Column::Step.eq(crate::checkout::CANCELLING)),
        )
        .order_by_asc(order::Column::CreatedAt)
        .limit(limit)
        .all(conn)
        .await
}

/// How many orders are in each status.
pub async fn count_by_status<C: ConnectionTrait>(conn: &C) -> Result<Vec<(String, i64)>, DbErr> {
    order::Entity::find()
        .select_only()
        .column(order::Column::Status)
        .column_as(order::Column::Id.count(), "n")
        .group_by(order::Column::Status)
        .into_tuple::<(String, i64)>()
        .all(conn)
        .await
}
