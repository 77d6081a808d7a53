//! The transactional outbox: events written with the state change, and the
//! relay that publishes them.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    QueryOrder, QuerySelect,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Envelope, SharedTransport, Transport, outbox_row};

/// A service's handle on its outbox: write events in the caller's
/// transaction, then wake the relay.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `envelope` in the same transaction as the state change.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        conn: &C,
        envelope: &Envelope,
    ) -> Result<(), DbErr> {
        let row = outbox_row::ActiveModel {
            id: Set(envelope.id.to_string()),
            event_type: Set(envelope.kind.clone()),
            envelope: Set(
                serde_json::to_string(envelope).map_err(|e| DbErr::Custom(e.to_string()))?
            ),
            created_at: Set(Utc::now()),
            sent_at: Set(None),
            attempts: Set(0),
        };
        outbox_row::Entity::insert(row)
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }

    /// Tells the relay there is work; call after the transaction commits.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes unsent events until `shutdown`, then once more to flush.
    pub async fn relay(
        self,
        service: &'static str,
        db: DatabaseConnection,
        transport: SharedTransport,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut failures: u32 = 0;
        let mut pruned = std::time::Instant::now();
        loop {
            let pause = if failures == 0 {
                interval
            } else {
                (interval * 2u32.pow(failures.min(5))).min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified(), if failures == 0 => {}
                _ = tokio::time::sleep(pause) => {}
            }
            if pruned.elapsed() > Duration::from_secs(3600) {
                pruned = std::time::Instant::now();
                if let Err(e) = prune_sent(&db, chrono::Duration::days(7)).await {
                    tracing::warn!(error = %e, "could not prune the outbox");
                }
            }
            let backlog = metrics::gauge!("outbox_pending_events", "service" => service);
            match relay_pending(&db, transport.as_ref()).await {
                Ok(_) => {
                    failures = 0;
                    backlog.set(0.0);
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "outbox relay could not publish; will retry");
                    if let Ok(pending) = pending_count(&db).await {
                        backlog.set(pending as f64);
                    }
                }
            }
        }
        if let Err(e) = relay_pending(&db, transport.as_ref()).await {
            tracing::warn!(error = %e, "outbox relay could not flush at shutdown; events stay queued");
        }
    }
}

/// Publishes every unsent event in order; returns how many went out.
pub async fn relay_pending(
    db: &DatabaseConnection,
    transport: &dyn Transport,
) -> anyhow::Result<usize> {
    const BATCH: u64 = 100;
    let mut total = 0;
    loop {
        // A read first: finding nothing to send, as most passes do, takes
        // no write lock (on SQLite, the whole database's).
        let unsent = || outbox_row::Entity::find().filter(outbox_row::Column::SentAt.is_null());
        if unsent().one(db).await?.is_none() {
            return Ok(total);
        }
        let txn = crate::db::begin_write(db).await?;
        let mut query = unsent().order_by_asc(outbox_row::Column::Id).limit(BATCH);
        // Replicas share the table: each takes rows the others are not on.
        if db.get_database_backend() != DbBackend::Sqlite {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = query.all(&txn).await?;
        if rows.is_empty() {
            txn.commit().await?;
            return Ok(total);
        }
        let batch = rows.len() as u64;
        for row in rows {
            let envelope: Envelope = match serde_json::from_str(&row.envelope) {
                Ok(envelope) => envelope,
                Err(e) => {
                    tracing::error!(event_id = %row.id, error = %e, "undecodable outbox row skipped");
                    mark_sent(&txn, &row.id).await?;
                    continue;
                }
            };
            // The producer's side, in the trace of the request that wrote
            // the event; consumers continue from this span.
            let span = tracing::info_span!(
                "publish",
                "otel.name" = %format!("{} publish", envelope.kind),
                "otel.kind" = "producer",
                service = %envelope.service(),
                event_type = %envelope.kind,
                event_id = %envelope.id,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            crate::telemetry::join_traceparent(&span, envelope.traceparent.as_deref());
            let mut envelope = envelope;
            if let Some(traceparent) = span.in_scope(crate::telemetry::current_traceparent) {
                envelope.traceparent = Some(traceparent);
            }
            let published = if crate::faults::process().fails_publish() {
                Err(anyhow::anyhow!("fault flag: the publish failed"))
            } else {
                transport.publish(&envelope).instrument(span).await
            };
            if let Err(e) = published {
                let attempts = outbox_row::ActiveModel {
                    id: Set(row.id.clone()),
                    attempts: Set(row.attempts + 1),
                    ..Default::default()
                };
                outbox_row::Entity::update(attempts).exec(&txn).await?;
                txn.commit().await?;
                return Err(e);
            }
            mark_sent(&txn, &row.id).await?;
            metrics::counter!("events_published_total", "type" => envelope.kind.clone(), "transport" => transport.name())
                .increment(1);
            total += 1;
        }
        txn.commit().await?;
        if batch < BATCH {
            return Ok(total);
        }
    }
}

async fn mark_sent(txn: &DatabaseTransaction, id: &str) -> Result<(), DbErr> {
    let sent = outbox_row::ActiveModel {
        id: Set(id.to_owned()),
        sent_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    outbox_row::Entity::update(sent).exec(txn).await?;
    Ok(())
}

/// Forgets events published longer ago than `age`; returns how many.
pub async fn prune_sent(db: &DatabaseConnection, age: chrono::Duration) -> Result<u64, DbErr> {
    let before = Utc::now() - age;
    let result = outbox_row::Entity::delete_many()
        .filter(outbox_row::Column::SentAt.is_not_null())
        .filter(outbox_row::Column::SentAt.lt(before))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Events not yet published.
pub async fn pending_count(db: &DatabaseConnection) -> Result<u64, DbErr> {
    outbox_row::Entity::find()
        .filter(outbox_row::Column::SentAt.is_null())
        .count(db)
        .await
}
