//! Events payment publishes, and their payload.

use emporium_platform::bus::Envelope;
use emporium_platform::money::Money;
use serde::Serialize;

use crate::store::PaymentRow;

pub const SOURCE: &str = "emporium.payment";
pub const PAYMENT_COMPLETED: &str = "payment.completed";
pub const PAYMENT_FAILED: &str = "payment.failed";
pub const PAYMENT_REFUNDED: &str = "payment.refunded";

/// The `data` of every payment event: the payment after the change.
#[derive(Serialize)]
struct PaymentPayload<'a> {
    id: &'a str,
    order_id: &'a str,
    user_id: &'a str,
    amount: emporium_platform::money::MoneyJson,
    amount_minor: i64,
    refunded_minor: i64,
    status: &'a str,
    method: &'a str,
    failure_reason: Option<&'a str>,
}

pub fn payment(kind: &str, row: &PaymentRow) -> Result<Envelope, serde_json::Error> {
    let amount = Money::from_minor(row.amount_minor, &row.currency)
        .map(Money::to_json)
        .unwrap_or(emporium_platform::money::MoneyJson {
            amount: row.amount_minor.to_string(),
            currency: row.currency.clone(),
        });
    let data = serde_json::to_value(PaymentPayload {
        id: &row.id,
        order_id: &row.order_id,
        user_id: &row.user_id,
        amount,
        amount_minor: row.amount_minor,
        refunded_minor: row.refunded_minor,
        status: &row.status,
        method: &row.method,
        failure_reason: row.failure_reason.as_deref(),
    })?;
    Ok(Envelope::new(
        kind,
        SOURCE,
        format!("payments/{}", row.id),
        data,
    ))
}
