//! Persistence of stock rows, reservations and the movement ledger,
//! written once for SQLite, PostgreSQL and MariaDB.
//!
//! Every change to a stock row happens under its row lock (`FOR UPDATE`;
//! on SQLite the writer holds the database lock from `BEGIN IMMEDIATE`)
//! and is written as a compare-and-set on the values read, so a change
//! computed from stale values can never land.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};

pub mod stock {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stock")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sku: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub warehouse: String,
        pub on_hand: i64,
        pub reserved: i64,
        pub threshold: i64,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod reservation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub status: String,
        pub reference: String,
        pub expires_at: DateTimeUtc,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod line {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservation_lines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reservation_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sku: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub warehouse: String,
        pub quantity: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod movement {
    use sea_orm::entity::prelude::*;

    /// One change of one stock row; the rows of a SKU and warehouse add up
    /// to its current on-hand and reserved counts.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "movements")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub sku: String,
        pub warehouse: String,
        pub kind: String,
        pub on_hand_delta: i64,
        pub reserved_delta: i64,
        pub on_hand_after: i64,
        pub reserved_after: i64,
        pub reservation_id: Option<String>,
        pub actor: String,
        pub reason: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub type StockRow = stock::Model;
pub type ReservationRow = reservation::Model;
pub type LineRow = line::Model;
pub type MovementRow = movement::Model;

/// `select` with the row lock the backend has; SQLite's writer already
/// holds the database.
async fn locked<E, C>(conn: &C, select: Select<E>) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    match conn.get_database_backend() {
        DbBackend::Sqlite => select.all(conn).await,
        _ => select.lock_exclusive().all(conn).await,
    }
}

/// The rows of `skus`, locked, in (SKU, warehouse) order: the one order in
/// which every writer takes them.
pub async fn lock_skus<C: ConnectionTrait>(
    conn: &C,
    skus: &[&str],
) -> Result<Vec<StockRow>, DbErr> {
    let select = stock::Entity::find()
        .filter(stock::Column::Sku.is_in(skus.iter().copied()))
        .order_by_asc(stock::Column::Sku)
        .order_by_asc(stock::Column::Warehouse);
    locked(conn, select).await
}

pub async fn lock_row<C: ConnectionTrait>(
    conn: &C,
    sku: &str,
    warehouse: &str,
) -> Result<Option<StockRow>, DbErr> {
    let select = stock::Entity::find()
        .filter(stock::Column::Sku.eq(sku))
        .filter(stock::Column::Warehouse.eq(warehouse));
    Ok(locked(conn, select).await?.into_iter().next())
}

/// Adds a row at zero; false when it exists.
pub async fn insert_row<C: ConnectionTrait>(
    conn: &C,
    sku: &str,
    warehouse: &str,
    threshold: i64,
) -> Result<bool, DbErr> {
    let row = stock::ActiveModel {
        sku: Set(sku.to_owned()),
        warehouse: Set(warehouse.to_owned()),
        on_hand: Set(0),
        reserved: Set(0),
        threshold: Set(threshold),
        updated_at: Set(Utc::now()),
    };
    let result = stock::Entity::insert(row)
        .on_conflict_do_nothing_on([stock::Column::Sku, stock::Column::Warehouse])
        .exec_without_returning(conn)
        .await;
    match result {
        Ok(sea_orm::TryInsertResult::Inserted(n)) => Ok(n > 0),
        Ok(_) | Err(DbErr::RecordNotInserted) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets the counts of a row read as `before`, only if it still holds
/// them; false when it moved in between (which the row lock prevents).
pub async fn set_counts<C: ConnectionTrait>(
    conn: &C,
    before: &StockRow,
    on_hand: i64,
    reserved: i64,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = stock::Entity::update_many()
        .col_expr(stock::Column::OnHand, Expr::value(on_hand))
        .col_expr(stock::Column::Reserved, Expr::value(reserved))
        .col_expr(stock::Column::UpdatedAt, Expr::value(at))
        .filter(stock::Column::Sku.eq(&before.sku))
        .filter(stock::Column::Warehouse.eq(&before.warehouse))
        .filter(stock::Column::OnHand.eq(before.on_hand))
        .filter(stock::Column::Reserved.eq(before.reserved))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn set_threshold<C: ConnectionTrait>(
    conn: &C,
    sku: &str,
    warehouse: &str,
    threshold: i64,
) -> Result<(), DbErr> {
    stock::Entity::update_many()
        .col_expr(stock::Column::Threshold, Expr::value(threshold))
        .filter(stock::Column::Sku.eq(sku))
        .filter(stock::Column::Warehouse.eq(warehouse))
        .exec(conn)
        .await
        .map(|_| ())
}

pub async fn insert_movement<C: ConnectionTrait>(conn: &C, row: MovementRow) -> Result<(), DbErr> {
    movement::Entity::insert(movement::ActiveModel {
        id: Set(row.id),
        sku: Set(row.sku),
        warehouse: Set(row.warehouse),
        kind: Set(row.kind),
        on_hand_delta: Set(row.on_hand_delta),
        reserved_delta: Set(row.reserved_delta),
        on_hand_after: Set(row.on_hand_after),
        reserved_after: Set(row.reserved_after),
        reservation_id: Set(row.reservation_id),
        actor: Set(row.actor),
        reason: Set(row.reason),
        created_at: Set(row.created_at),
    })
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}

pub async fn insert_reservation<C: ConnectionTrait>(
    conn: &C,
    row: ReservationRow,
    lines: Vec<LineRow>,
) -> Result<(), DbErr> {
    reservation::Entity::insert(reservation::ActiveModel {
        id: Set(row.id),
        status: Set(row.status),
        reference: Set(row.reference),
        expires_at: Set(row.expires_at),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
    })
    .exec_without_returning(conn)
    .await?;
    line::Entity::insert_many(lines.into_iter().map(|l| line::ActiveModel {
        reservation_id: Set(l.reservation_id),
        sku: Set(l.sku),
        warehouse: Set(l.warehouse),
        quantity: Set(l.quantity),
    }))
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}

pub async fn find_reservation<C: ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<Option<(ReservationRow, Vec<LineRow>)>, DbErr> {
    let Some(row) = reservation::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some((row, lines(conn, id).await?)))
}

/// The reservation, row-locked, with its lines in lock order.
pub async fn lock_reservation<C: ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<Option<(ReservationRow, Vec<LineRow>)>, DbErr> {
    let select = reservation::Entity::find().filter(reservation::Column::Id.eq(id));
    let Some(row) = locked(conn, select).await?.into_iter().next() else {
        return Ok(None);
    };
    Ok(Some((row, lines(conn, id).await?)))
}

async fn lines<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Vec<LineRow>, DbErr> {
    line::Entity::find()
        .filter(line::Column::ReservationId.eq(id))
        .order_by_asc(line::Column::Sku)
        .order_by_asc(line::Column::Warehouse)
        .all(conn)
        .await
}

/// Moves a reservation from `from` to `to`; false when it was not in `from`.
pub async fn set_status<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    from: &str,
    to: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = reservation::Entity::update_many()
        .col_expr(reservation::Column::Status, Expr::value(to))
        .col_expr(reservation::Column::UpdatedAt, Expr::value(at))
        .filter(reservation::Column::Id.eq(id))
        .filter(reservation::Column::Status.eq(from))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Ids of active reservations that expired before `now`, oldest first.
pub async fn expired<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<String>, DbErr> {
    Ok(reservation::Entity::find()
        .filter(reservation::Column::Status.eq("active"))
        .filter(reservation::Column::ExpiresAt.lte(now))
        .order_by_asc(reservation::Column::ExpiresAt)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect())
}

/// What a stock list is narrowed to.
#[derive(Clone, Debug, Default)]
pub struct StockFilter {
    pub sku: Option<String>,
    pub warehouse: Option<String>,
    /// Only rows whose available units are below their threshold.
    pub low: bool,
}

fn low_condition() -> Condition {
    Condition::all().add(
        Expr::col(stock::Column::OnHand)
            .sub(Expr::col(stock::Column::Reserved))
            .lt(Expr::col(stock::Column::Threshold)),
    )
}

pub async fn list_stock<C: ConnectionTrait>(
    conn: &C,
    filter: &StockFilter,
    page: u64,
    per_page: u64,
) -> Result<(Vec<StockRow>, u64), DbErr> {
    let mut select = stock::Entity::find();
    if let Some(sku) = &filter.sku {
        select = select.filter(stock::Column::Sku.eq(sku));
    }
    if let Some(warehouse) = &filter.warehouse {
        select = select.filter(stock::Column::Warehouse.eq(warehouse));
    }
    if filter.low {
        select = select.filter(low_condition());
    }
    let select = select
        .order_by_asc(stock::Column::Sku)
        .order_by_asc(stock::Column::Warehouse);
    emporium_platform::db::paged(conn, select, page, per_page).await
}

pub async fn rows_of<C: ConnectionTrait>(conn: &C, skus: &[&str]) -> Result<Vec<StockRow>, DbErr> {
    stock::Entity::find()
        .filter(stock::Column::Sku.is_in(skus.iter().copied()))
        .order_by_asc(stock::Column::Sku)
        .order_by_asc(stock::Column::Warehouse)
        .all(conn)
        .await
}

pub async fn count_low<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    stock::Entity::find()
        .filter(low_condition())
        .count(conn)
        .await
}

pub async fn count_movements<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    movement::Entity::find().count(conn).await
}

pub async fn all_rows<C: ConnectionTrait>(conn: &C, limit: u64) -> Result<Vec<StockRow>, DbErr> {
    stock::Entity::find()
        .order_by_asc(stock::Column::Sku)
        .order_by_asc(stock::Column::Warehouse)
        .limit(limit)
        .all(conn)
        .await
}

/// A page of a SKU's ledger, newest first.
pub async fn movements<C: ConnectionTrait>(
    conn: &C,
    sku: &str,
    warehouse: Option<&str>,
    page: u64,
    per_page: u64,
) -> Result<(Vec<MovementRow>, u64), DbErr> {
    let mut select = movement::Entity::find().filter(movement::Column::Sku.eq(sku));
    if let Some(warehouse) = warehouse {
        select = select.filter(movement::Column::Warehouse.eq(warehouse));
    }
    let select = select.order_by_desc(movement::Column::Id);
    emporium_platform::db::paged(conn, select, page, per_page).await
}
