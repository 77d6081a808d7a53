//! Events inventory publishes, and the ones it acts on.

use std::sync::Arc;

use async_trait::async_trait;
use emporium_platform::bus::{self, Envelope, Handler};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Sku;
use crate::stock::{Actor, Inventory, InventoryError, Settle};
use crate::store::StockRow;

pub const SOURCE: &str = "emporium.inventory";
pub const STOCK_UPDATED: &str = "stock.updated";
pub const STOCK_LOW: &str = "stock.low";
/// The durable queue inventory consumes from.
pub const QUEUE: &str = "inventory";
pub const CONSUMES: &[bus::Interest<'static>] = &[
    bus::Interest::new("product.created", "emporium.catalog"),
    bus::Interest::new("order.cancelled", "emporium.ordering"),
];

/// The `data` of `stock.updated` and `stock.low`: one row after the change.
#[derive(Serialize)]
struct LevelPayload<'a> {
    sku: &'a str,
    warehouse: &'a str,
    on_hand: i64,
    reserved: i64,
    available: i64,
    threshold: i64,
}

fn level(kind: &str, row: &StockRow) -> Result<Envelope, InventoryError> {
    let data = serde_json::to_value(LevelPayload {
        sku: &row.sku,
        warehouse: &row.warehouse,
        on_hand: row.on_hand,
        reserved: row.reserved,
        available: row.on_hand - row.reserved,
        threshold: row.threshold,
    })
    .map_err(|source| InventoryError::Encode {
        what: "the event",
        source,
    })?;
    Ok(Envelope::new(
        kind,
        SOURCE,
        format!("stock/{}/{}", row.sku, row.warehouse),
        data,
    ))
}

pub fn stock_updated(row: &StockRow) -> Result<Envelope, InventoryError> {
    level(STOCK_UPDATED, row)
}

pub fn stock_low(row: &StockRow) -> Result<Envelope, InventoryError> {
    level(STOCK_LOW, row)
}

/// What inventory reads of `product.created`.
#[derive(Deserialize)]
struct ProductCreated {
    sku: String,
}

/// What inventory reads of `order.cancelled`: the order's reservation.
#[derive(Deserialize)]
struct OrderCancelled {
    reservation_id: Option<Uuid>,
    #[serde(default)]
    order_id: Option<String>,
}

/// Acts on each event once, through the inbox: the claim and the effects
/// commit together.
pub struct Consumer {
    pub inventory: Inventory,
}

impl Consumer {
    pub fn shared(inventory: Inventory) -> Arc<dyn Handler> {
        Arc::new(Self { inventory })
    }
}

#[async_trait]
impl Handler for Consumer {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let Some(txn) = bus::claim(self.inventory.db(), QUEUE, envelope).await? else {
            return Ok(());
        };
        let pending = match envelope.kind.as_str() {
            "product.created" => {
                let Ok(ProductCreated { sku }) = serde_json::from_value(envelope.data.clone())
                else {
                    tracing::warn!(event_id = %envelope.id, "product.created without a sku; dropped");
                    txn.commit().await?;
                    return Ok(());
                };
                let Ok(sku) = Sku::parse(&sku) else {
                    tracing::warn!(event_id = %envelope.id, "product.created with a bad sku; dropped");
                    txn.commit().await?;
                    return Ok(());
                };
                self.inventory.add_sku_within(&txn, &sku).await?;
                None
            }
            "order.cancelled" => {
                let cancelled: Option<OrderCancelled> =
                    serde_json::from_value(envelope.data.clone()).ok();
                let Some((id, order)) =
                    cancelled.and_then(|c| c.reservation_id.map(|id| (id, c.order_id)))
                else {
                    txn.commit().await?;
                    return Ok(());
                };
                let actor = Actor::new(
                    "order.cancelled",
                    format!("order {} was cancelled", order.unwrap_or_default()),
                );
                match self
                    .inventory
                    .settle_within(&txn, id, Settle::Cancel, &actor)
                    .await
                {
                    Ok(pending) => Some(pending),
                    Err(InventoryError::NoSuchReservation) => None,
                    Err(e) => return Err(e.into()),
                }
            }
            _ => None,
        };
        txn.commit().await?;
        if let Some(pending) = pending {
            self.inventory.after_commit(pending).await;
        }
        Ok(())
    }
}
