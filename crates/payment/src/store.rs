//! Persistence of payments, written once for SQLite, PostgreSQL and
//! MariaDB. Every change of state is a compare-and-set on the state read.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    UpdateMany,
};

pub mod payment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub order_id: String,
        pub user_id: String,
        pub amount_minor: i64,
        pub currency: String,
        pub refunded_minor: i64,
        pub status: String,
        pub method: String,
        pub provider: String,
        pub provider_id: Option<String>,
        pub card_last4: String,
        /// The processor's token for the card; its number is never kept.
        pub card_token: String,
        #[sea_orm(column_type = "Text")]
        pub metadata: String,
        pub failure_reason: Option<String>,
        pub processed_at: Option<DateTimeUtc>,
        pub expires_at: DateTimeUtc,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// The refund asked of the processor and not yet recorded: its
        /// id, the processor's idempotency key.
        pub refund_pending_id: Option<String>,
        pub refund_pending_minor: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub type PaymentRow = payment::Model;

pub async fn insert<C: ConnectionTrait>(conn: &C, row: PaymentRow) -> Result<(), DbErr> {
    payment::Entity::insert(payment::ActiveModel {
        id: Set(row.id),
        order_id: Set(row.order_id),
        user_id: Set(row.user_id),
        amount_minor: Set(row.amount_minor),
        currency: Set(row.currency),
        refunded_minor: Set(row.refunded_minor),
        status: Set(row.status),
        method: Set(row.method),
        provider: Set(row.provider),
        provider_id: Set(row.provider_id),
        card_last4: Set(row.card_last4),
        card_token: Set(row.card_token),
        metadata: Set(row.metadata),
        failure_reason: Set(row.failure_reason),
        processed_at: Set(row.processed_at),
        expires_at: Set(row.expires_at),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
        refund_pending_id: Set(row.refund_pending_id),
        refund_pending_minor: Set(row.refund_pending_minor),
    })
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}

pub async fn find<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<PaymentRow>, DbErr> {
    payment::Entity::find_by_id(id.to_owned()).one(conn).await
}

/// What a change of state also sets.
#[derive(Clone, Debug, Default)]
pub struct Change {
    pub provider_id: Option<String>,
    pub failure_reason: Option<String>,
    pub processed_at: Option<DateTime<Utc>>,
    /// The refunded total, compared with `refunded_was`.
    pub refunded: Option<(i64, i64)>,
    /// The pending refund this change records as made, and clears.
    pub refund_made: Option<String>,
}

/// Moves payment `id` from `from` to `to` with `change`; false when it was
/// no longer in `from` (or its refunded total moved).
pub async fn advance<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    from: &str,
    to: &str,
    change: Change,
) -> Result<bool, DbErr> {
    let mut update = payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(to))
        .col_expr(payment::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(payment::Column::Id.eq(id))
        .filter(payment::Column::Status.eq(from));
    if let Some(provider_id) = change.provider_id {
        update = update.col_expr(payment::Column::ProviderId, Expr::value(provider_id));
    }
    if let Some(reason) = change.failure_reason {
        update = update.col_expr(payment::Column::FailureReason, Expr::value(reason));
    }
    if let Some(at) = change.processed_at {
        update = update.col_expr(payment::Column::ProcessedAt, Expr::value(at));
    }
    if let Some((now, was)) = change.refunded {
        update = update
            .col_expr(payment::Column::RefundedMinor, Expr::value(now))
            .filter(payment::Column::RefundedMinor.eq(was));
    }
    if let Some(refund) = change.refund_made {
        update = clear_refund(update).filter(payment::Column::RefundPendingId.eq(refund));
    }
    Ok(update.exec(conn).await?.rows_affected == 1)
}

fn clear_refund(update: UpdateMany<payment::Entity>) -> UpdateMany<payment::Entity> {
    update
        .col_expr(
            payment::Column::RefundPendingId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            payment::Column::RefundPendingMinor,
            Expr::value(Option::<i64>::None),
        )
}

/// Writes refund `refund` of `amount` as asked of the processor, on a
/// payment still in `status` with `refunded_was` refunded and no other
/// refund under way; false when it moved.
pub async fn begin_refund<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    status: &str,
    refunded_was: i64,
    refund: &str,
    amount: i64,
) -> Result<bool, DbErr> {
    let update = payment::Entity::update_many()
        .col_expr(payment::Column::RefundPendingId, Expr::value(refund))
        .col_expr(payment::Column::RefundPendingMinor, Expr::value(amount))
        .col_expr(payment::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(payment::Column::Id.eq(id))
        .filter(payment::Column::Status.eq(status))
        .filter(payment::Column::RefundedMinor.eq(refunded_was))
        .filter(payment::Column::RefundPendingId.is_null());
    Ok(update.exec(conn).await?.rows_affected == 1)
}

/// Payments with a refund pending since before `cutoff`.
pub async fn pending_refunds<C: ConnectionTrait>(
    conn: &C,
    cutoff: DateTime<Utc>,
) -> Result<Vec<PaymentRow>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::RefundPendingId.is_not_null())
        .filter(payment::Column::UpdatedAt.lt(cutoff))
        .order_by_asc(payment::Column::UpdatedAt)
        .all(conn)
        .await
}

/// Drops pending refund `refund`, which the processor refused.
pub async fn drop_refund<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    refund: &str,
) -> Result<(), DbErr> {
    clear_refund(payment::Entity::update_many())
        .col_expr(payment::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(payment::Column::Id.eq(id))
        .filter(payment::Column::RefundPendingId.eq(refund))
        .exec(conn)
        .await
        .map(|_| ())
}

/// What a list is narrowed to.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub user_id: Option<String>,
    pub order_id: Option<String>,
    pub status: Option<String>,
}

/// A page of payments, newest first.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &Filter,
    page: u64,
    per_page: u64,
) -> Result<(Vec<PaymentRow>, u64), DbErr> {
    let mut select = payment::Entity::find();
    if let Some(user) = &filter.user_id {
        select = select.filter(payment::Column::UserId.eq(user));
    }
    if let Some(order) = &filter.order_id {
        select = select.filter(payment::Column::OrderId.eq(order));
    }
    if let Some(status) = &filter.status {
        select = select.filter(payment::Column::Status.eq(status));
    }
    let select = select
        .order_by_desc(payment::Column::CreatedAt)
        .order_by_desc(payment::Column::Id);
    emporium_platform::db::paged(conn, select, page, per_page).await
}
