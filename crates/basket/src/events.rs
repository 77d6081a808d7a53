//! The event the basket publishes, and the one it acts on.

use std::sync::Arc;

use async_trait::async_trait;
use emporium_platform::bus::{self, Envelope, Handler};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::baskets::Baskets;
use crate::domain::Owner;

pub const SOURCE: &str = "emporium.basket";
pub const BASKET_CLEARED: &str = "basket.cleared";
/// The durable queue the basket consumes from.
pub const QUEUE: &str = "basket";
pub const CONSUMES: &[bus::Interest<'static>] =
    &[bus::Interest::new("order.confirmed", "emporium.ordering")];

/// The `data` of `basket.cleared`.
#[derive(Serialize)]
struct ClearedPayload<'a> {
    user_id: &'a str,
    /// `cleared` (the customer emptied it) or `order.confirmed`.
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<&'a str>,
}

pub fn cleared(
    owner: &Owner,
    reason: &str,
    order_id: Option<&str>,
) -> Result<Envelope, serde_json::Error> {
    let data = serde_json::to_value(ClearedPayload {
        user_id: owner.as_str(),
        reason,
        order_id,
    })?;
    Ok(Envelope::new(
        BASKET_CLEARED,
        SOURCE,
        format!("baskets/{}", owner.as_str()),
        data,
    ))
}

/// What the basket reads of `order.confirmed`.
#[derive(Deserialize)]
struct OrderConfirmed {
    user_id: String,
    #[serde(default)]
    order_id: Option<String>,
    /// Whether the basket was checked out; an event from before the field
    /// existed was, as every order was then.
    #[serde(default = "checked_out_the_basket")]
    basket: bool,
    #[serde(default)]
    lines: Vec<OrderLine>,
}

fn checked_out_the_basket() -> bool {
    true
}

#[derive(Deserialize)]
struct OrderLine {
    product_id: Uuid,
    quantity: i64,
}

/// Takes a confirmed order's lines out of the basket it checked out, once
/// per event (decision 0007), and leaves what came after: the basket
/// remembers which orders it gave up, and the inbox claim and
/// `basket.cleared` commit together. An order of items named in the
/// request (a "buy now") leaves the basket alone.
pub struct Consumer {
    pub baskets: Baskets,
}

impl Consumer {
    pub fn shared(baskets: Baskets) -> Arc<dyn Handler> {
        Arc::new(Self { baskets })
    }
}

#[async_trait]
impl Handler for Consumer {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let confirmed: Option<OrderConfirmed> = serde_json::from_value(envelope.data.clone()).ok();
        let target = confirmed.and_then(|c| Some((Owner::parse(&c.user_id).ok()?, c)));
        // Before the claim, since the store may not share its transaction
        // (Redis); taking the lines out twice is a no-op.
        let emptied = match &target {
            Some((owner, c)) if c.basket => match &c.order_id {
                Some(order_id) => {
                    let bought: Vec<(Uuid, i64)> =
                        c.lines.iter().map(|l| (l.product_id, l.quantity)).collect();
                    Some(self.baskets.settle(owner, order_id, &bought).await?)
                }
                None => None,
            },
            _ => Some(false),
        };
        let Some(txn) = bus::claim(self.baskets.db(), QUEUE, envelope).await? else {
            return Ok(());
        };
        match (&target, emptied) {
            (Some((owner, c)), Some(true)) => {
                self.baskets
                    .announce_cleared(&txn, owner, "order.confirmed", c.order_id.as_deref())
                    .await?;
            }
            // An event without an order id: the whole basket, as before.
            (Some((owner, _)), None) => {
                self.baskets
                    .clear_within(&txn, owner, "order.confirmed", None)
                    .await?;
            }
            (Some(_), Some(false)) => {}
            (None, _) => {
                tracing::warn!(event_id = %envelope.id, "order.confirmed without a user; dropped")
            }
        }
        txn.commit().await?;
        self.baskets.wake();
        Ok(())
    }
}
