//! The inbox: a consumer records each event id with its effects, so that
//! a repeated delivery acts once.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait};

use super::{Envelope, inbox_row};

/// Starts the consumer's transaction for `envelope`, or `None` when this
/// consumer has processed it already. Commit the transaction with the
/// effects of the event.
pub async fn claim(
    db: &DatabaseConnection,
    consumer: &str,
    envelope: &Envelope,
) -> Result<Option<crate::db::WriteTransaction>, DbErr> {
    let txn = crate::db::begin_write(db).await?;
    let row = inbox_row::ActiveModel {
        consumer: Set(consumer.to_owned()),
        event_id: Set(envelope.id.to_string()),
        processed_at: Set(Utc::now()),
    };
    match inbox_row::Entity::insert(row)
        .exec_without_returning(&txn)
        .await
    {
        Ok(_) => Ok(Some(txn)),
        Err(e)
            if matches!(
                e.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) =>
        {
            txn.rollback().await?;
            tracing::debug!(consumer, event_id = %envelope.id, "repeated event dropped");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
