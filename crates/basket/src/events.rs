//! The event the basket publishes, and the one it acts on.

use std::sync::Arc;

use async_trait::async_trait;
use emporium_platform::bus::{self, Envelope, Handler};
use serde::{Deserialize, Serialize};

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
}

/// Empties the basket of a confirmed order, once per event: the inbox
/// claim, the event and the emptying commit together (decision 0007).
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
        let Some(txn) = bus::claim(self.baskets.db(), QUEUE, envelope).await? else {
            return Ok(());
        };
        let confirmed: Option<OrderConfirmed> = serde_json::from_value(envelope.data.clone()).ok();
        match confirmed.and_then(|c| Owner::parse(&c.user_id).ok().map(|o| (o, c.order_id))) {
            Some((owner, order_id)) => {
                self.baskets
                    .clear_within(&txn, &owner, "order.confirmed", order_id.as_deref())
                    .await?;
            }
            None => {
                tracing::warn!(event_id = %envelope.id, "order.confirmed without a user; dropped")
            }
        }
        txn.commit().await?;
        self.baskets.wake();
        Ok(())
    }
}
