//! Events ordering publishes, and their payload.

use emporium_platform::bus::Envelope;
use serde::Serialize;

use crate::store::{LineRow, OrderRow};

pub const SOURCE: &str = "emporium.ordering";
pub const ORDER_CREATED: &str = "order.created";
pub const ORDER_CONFIRMED: &str = "order.confirmed";
pub const ORDER_FAILED: &str = "order.failed";
pub const ORDER_CANCELLED: &str = "order.cancelled";
pub const ORDER_PROCESSING: &str = "order.processing";
pub const ORDER_SHIPPED: &str = "order.shipped";
pub const ORDER_DELIVERED: &str = "order.delivered";

#[derive(Serialize)]
struct LinePayload<'a> {
    product_id: &'a str,
    sku: &'a str,
    quantity: i64,
    unit_minor: i64,
}

/// The `data` of every order event: the order after the change. The basket
/// reads `user_id`, `basket` and `lines` of `order.confirmed` (to take the
/// ordered lines out of a basket checked out); inventory reads
/// `reservation_id` of `order.cancelled`.
#[derive(Serialize)]
struct OrderPayload<'a> {
    order_id: &'a str,
    user_id: &'a str,
    status: &'a str,
    total_minor: i64,
    currency: &'a str,
    reservation_id: Option<&'a str>,
    payment_id: Option<&'a str>,
    reason: Option<&'a str>,
    /// Whether the customer's basket was checked out (else items named in
    /// the request: a "buy now" that leaves the basket alone).
    basket: bool,
    lines: Vec<LinePayload<'a>>,
}

pub fn order(kind: &str, row: &OrderRow, lines: &[LineRow]) -> Result<Envelope, serde_json::Error> {
    let data = serde_json::to_value(OrderPayload {
        order_id: &row.id,
        user_id: &row.user_id,
        status: &row.status,
        total_minor: row.total_minor,
        currency: &row.currency,
        reservation_id: row.reservation_id.as_deref(),
        payment_id: row.payment_id.as_deref(),
        reason: row.failure_reason.as_deref(),
        basket: row.from_basket,
        lines: lines
            .iter()
            .map(|l| LinePayload {
                product_id: &l.product_id,
                sku: &l.sku,
                quantity: l.quantity,
                unit_minor: l.unit_minor,
            })
            .collect(),
    })?;
    Ok(Envelope::new(
        kind,
        SOURCE,
        format!("orders/{}", row.id),
        data,
    ))
}
