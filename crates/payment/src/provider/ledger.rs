//! The mock processor's ledger, kept in payment's store: each payment's
//! authorization, capture, void and refunds, keyed by payment id (and
//! refund id), each move a conditional statement, so that a call asked
//! twice, by two processes or after a restart, moves money once.

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, SqlErr,
};
use uuid::Uuid;

use emporium_platform::db::{self, Db};
use emporium_platform::money::Money;

pub mod payment {
    use sea_orm::entity::prelude::*;

    /// What the processor holds of one payment.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mock_processor_payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub payment_id: String,
        /// `None` for a void that came before any authorization.
        pub authorization_id: Option<String>,
        pub amount_minor: i64,
        pub currency: String,
        pub captured_minor: i64,
        pub refunded_minor: i64,
        pub authorized_at: Option<DateTimeUtc>,
        pub captured_at: Option<DateTimeUtc>,
        pub voided_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refund {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mock_processor_refunds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub refund_id: String,
        pub payment_id: String,
        pub amount_minor: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub type LedgerRow = payment::Model;

impl LedgerRow {
    /// Authorized, and neither captured nor voided: money held on a card.
    pub fn open(&self) -> bool {
        self.authorization_id.is_some() && self.captured_at.is_none() && self.voided_at.is_none()
    }
}

/// What a move did: `Ok(true)` moved money, `Ok(false)` was a repeat of a
/// move done before, `Err(reason)` the processor refuses it.
pub type Moved = Result<bool, &'static str>;

fn duplicate(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

async fn find<C: ConnectionTrait>(conn: &C, payment: Uuid) -> Result<Option<LedgerRow>, DbErr> {
    payment::Entity::find_by_id(payment.to_string())
        .one(conn)
        .await
}

fn fresh(payment: Uuid) -> payment::ActiveModel {
    payment::ActiveModel {
        payment_id: Set(payment.to_string()),
        authorization_id: Set(None),
        amount_minor: Set(0),
        currency: Set(String::new()),
        captured_minor: Set(0),
        refunded_minor: Set(0),
        authorized_at: Set(None),
        captured_at: Set(None),
        voided_at: Set(None),
        updated_at: Set(Utc::now()),
    }
}

/// Holds `amount` for `payment`; its authorization id, and whether this
/// call made it (a repeat answers the first one's).
pub async fn authorize(db: &Db, payment: Uuid, amount: Money) -> Result<(String, bool), DbErr> {
    let id = format!("auth_{}", Uuid::now_v7().simple());
    let now = Utc::now();
    let row = payment::ActiveModel {
        authorization_id: Set(Some(id.clone())),
        amount_minor: Set(amount.minor),
        currency: Set(amount.currency.code().into()),
        authorized_at: Set(Some(now)),
        ..fresh(payment)
    };
    match payment::Entity::insert(row)
        .exec_without_returning(db)
        .await
    {
        Ok(_) => return Ok((id, true)),
        Err(e) if duplicate(&e) => {}
        Err(e) => return Err(e),
    }
    // Known already: authorized before, or voided before it was (a void
    // for an authorization whose answer was lost); the latter takes this
    // one, born void.
    let filled = payment::Entity::update_many()
        .col_expr(payment::Column::AuthorizationId, Expr::value(id.clone()))
        .col_expr(payment::Column::AmountMinor, Expr::value(amount.minor))
        .col_expr(
            payment::Column::Currency,
            Expr::value(amount.currency.code()),
        )
        .col_expr(payment::Column::AuthorizedAt, Expr::value(now))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::PaymentId.eq(payment.to_string()))
        .filter(payment::Column::AuthorizationId.is_null())
        .exec(db)
        .await?;
    if filled.rows_affected == 1 {
        return Ok((id, true));
    }
    let known = find(db, payment)
        .await?
        .and_then(|r| r.authorization_id)
        .ok_or_else(|| DbErr::RecordNotFound(format!("authorization of {payment}")))?;
    Ok((known, false))
}

/// Takes the money `authorization` holds for `payment`.
pub async fn capture(db: &Db, payment: Uuid, authorization: &str) -> Result<(Moved, i64), DbErr> {
    let now = Utc::now();
    let taken = payment::Entity::update_many()
        .col_expr(
            payment::Column::CapturedMinor,
            Expr::col(payment::Column::AmountMinor),
        )
        .col_expr(payment::Column::CapturedAt, Expr::value(now))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::PaymentId.eq(payment.to_string()))
        .filter(payment::Column::AuthorizationId.eq(authorization))
        .filter(payment::Column::CapturedAt.is_null())
        .filter(payment::Column::VoidedAt.is_null())
        .exec(db)
        .await?;
    let row = find(db, payment).await?;
    let amount = row.as_ref().map_or(0, |r| r.amount_minor);
    if taken.rows_affected == 1 {
        return Ok((Ok(true), amount));
    }
    let moved = match row {
        None
        | Some(LedgerRow {
            authorization_id: None,
            ..
        }) => Err("no_authorization"),
        Some(r)
            if r.authorization_id.as_deref() != Some(authorization) || r.voided_at.is_some() =>
        {
            Err("authorization_not_capturable")
        }
        Some(_) => Ok(false),
    };
    Ok((moved, amount))
}

/// Lets go of `payment`'s authorization; a payment never authorized is
/// voided ahead, so that an authorization still on its way is born void.
pub async fn void(db: &Db, payment: Uuid) -> Result<Moved, DbErr> {
    for _ in 0..2 {
        let now = Utc::now();
        let voided = payment::Entity::update_many()
            .col_expr(payment::Column::VoidedAt, Expr::value(now))
            .col_expr(payment::Column::UpdatedAt, Expr::value(now))
            .filter(payment::Column::PaymentId.eq(payment.to_string()))
            .filter(payment::Column::CapturedAt.is_null())
            .filter(payment::Column::VoidedAt.is_null())
            .exec(db)
            .await?;
        if voided.rows_affected == 1 {
            return Ok(Ok(true));
        }
        match find(db, payment).await? {
            Some(r) if r.captured_at.is_some() => return Ok(Err("already_captured")),
            Some(_) => return Ok(Ok(false)),
            None => {}
        }
        let ahead = payment::ActiveModel {
            voided_at: Set(Some(now)),
            ..fresh(payment)
        };
        match payment::Entity::insert(ahead)
            .exec_without_returning(db)
            .await
        {
            Ok(_) => return Ok(Ok(true)),
            // Another call wrote it first: settle against that row.
            Err(e) if duplicate(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Err(DbErr::Custom(format!("void of {payment} kept racing")))
}

/// Gives back `amount` of `payment`'s capture as refund `refund`; never
/// more than was captured.
pub async fn refund(db: &Db, payment: Uuid, refund: Uuid, amount: Money) -> Result<Moved, DbErr> {
    let txn = db::begin_write(db).await?;
    let row = refund::ActiveModel {
        refund_id: Set(refund.to_string()),
        payment_id: Set(payment.to_string()),
        amount_minor: Set(amount.minor),
        created_at: Set(Utc::now()),
    };
    match refund::Entity::insert(row)
        .exec_without_returning(&txn)
        .await
    {
        Ok(_) => {}
        Err(e) if duplicate(&e) => {
            txn.rollback().await?;
            return Ok(Ok(false));
        }
        Err(e) => return Err(e),
    }
    let bounded = payment::Entity::update_many()
        .col_expr(
            payment::Column::RefundedMinor,
            Expr::col(payment::Column::RefundedMinor).add(amount.minor),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(payment::Column::PaymentId.eq(payment.to_string()))
        .filter(payment::Column::CapturedAt.is_not_null())
        .filter(payment::Column::Currency.eq(amount.currency.code()))
        .filter(
            Expr::col(payment::Column::CapturedMinor)
                .sub(Expr::col(payment::Column::RefundedMinor))
                .gte(amount.minor),
        )
        .exec(&txn)
        .await?;
    if bounded.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(Err("refund_exceeds_capture"));
    }
    txn.commit().await?;
    Ok(Ok(true))
}

/// Every payment the processor knows, for tests and reconciliation.
pub async fn rows<C: ConnectionTrait>(conn: &C) -> Result<Vec<LedgerRow>, DbErr> {
    payment::Entity::find().all(conn).await
}
