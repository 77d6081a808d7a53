//! The events recommendation learns from; it publishes none.

use std::sync::Arc;

use async_trait::async_trait;
use emporium_platform::bus::{self, Envelope, Handler};
use serde::Deserialize;

use crate::domain::ProductId;
use crate::recommend::{Lesson, Recommender};

/// The durable queue recommendation consumes from.
pub const QUEUE: &str = "recommendation";
pub const CONSUMES: &[bus::Interest<'static>] = &[
    bus::Interest::new("order.confirmed", "emporium.ordering"),
    bus::Interest::new("product.created", "emporium.catalog"),
    bus::Interest::new("product.updated", "emporium.catalog"),
    bus::Interest::new("product.deleted", "emporium.catalog"),
    bus::Interest::new("stock.updated", "emporium.inventory"),
];

#[derive(Deserialize)]
struct OrderLine {
    product_id: String,
}

/// What recommendation reads of `order.confirmed`.
#[derive(Deserialize)]
struct OrderConfirmed {
    user_id: String,
    lines: Vec<OrderLine>,
}

/// What recommendation reads of `product.created|updated|deleted`; a
/// deletion carries no category.
#[derive(Deserialize)]
struct ProductChanged {
    id: String,
    sku: String,
    #[serde(default)]
    category: String,
}

/// What recommendation reads of `stock.updated`.
#[derive(Deserialize)]
struct StockUpdated {
    sku: String,
    warehouse: String,
    available: i64,
}

/// Acts on each event once, through the inbox: the claim and the effects
/// commit together.
pub struct Consumer {
    pub recommender: Recommender,
}

impl Consumer {
    pub fn shared(recommender: Recommender) -> Arc<dyn Handler> {
        Arc::new(Self { recommender })
    }
}

fn read<T: serde::de::DeserializeOwned>(envelope: &Envelope) -> Option<T> {
    let read = serde_json::from_value(envelope.data.clone()).ok();
    if read.is_none() {
        tracing::warn!(event_id = %envelope.id, kind = %envelope.kind, "event data unreadable; dropped");
    }
    read
}

#[async_trait]
impl Handler for Consumer {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let Some(txn) = bus::claim(self.recommender.db(), QUEUE, envelope).await? else {
            return Ok(());
        };
        let lesson = match envelope.kind.as_str() {
            "order.confirmed" => read::<OrderConfirmed>(envelope).map(|order| Lesson::Order {
                user_id: order.user_id,
                products: order
                    .lines
                    .iter()
                    .filter_map(|l| ProductId::parse(&l.product_id).ok())
                    .collect(),
            }),
            kind @ ("product.created" | "product.updated" | "product.deleted") => {
                read::<ProductChanged>(envelope).and_then(|p| {
                    Some(Lesson::Product {
                        id: ProductId::parse(&p.id).ok()?,
                        sku: p.sku,
                        category: p.category,
                        deleted: kind == "product.deleted",
                        at: envelope.time,
                    })
                })
            }
            "stock.updated" => read::<StockUpdated>(envelope).map(|s| Lesson::Stock {
                sku: s.sku,
                warehouse: s.warehouse,
                available: s.available,
                at: envelope.time,
            }),
            _ => None,
        };
        let recommender = &self.recommender;
        match lesson {
            Some(lesson) if lesson.fits() => recommender.learn(&txn, lesson).await?,
            Some(_) => {
                tracing::warn!(event_id = %envelope.id, kind = %envelope.kind, "event data too wide; dropped");
            }
            None => {}
        }
        txn.commit().await?;
        if let Err(e) = recommender.refresh_gauges().await {
            tracing::warn!(error = %e, "model size gauges not set");
        }
        Ok(())
    }
}
