//! An order's rules, pure and without I/O: its states, who moves them, and
//! what a checkout asks for.

use emporium_platform::FieldError;
use serde::Deserialize;
use uuid::Uuid;

/// The most lines one order may have, and units of one product.
pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: i64 = 99;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The checkout is running.
    Pending,
    Confirmed,
    Processing,
    Shipped,
    Delivered,
    /// The checkout did not go through; what it did was undone.
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Confirmed,
        Status::Processing,
        Status::Shipped,
        Status::Delivered,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Confirmed => "confirmed",
            Status::Processing => "processing",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|s| s.as_str() == raw)
    }
    /// The next state an admin may set: confirmed → processing → shipped →
    /// delivered.
    pub fn fulfils_to(self, next: Status) -> bool {
        matches!(
            (self, next),
            (Status::Confirmed, Status::Processing)
                | (Status::Processing, Status::Shipped)
                | (Status::Shipped, Status::Delivered)
        )
    }
    /// Whether the customer (or an admin) may still cancel.
    pub fn cancellable(self) -> bool {
        matches!(self, Status::Confirmed | Status::Processing)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ItemInput {
    pub product_id: Option<String>,
    pub quantity: Option<i64>,
}

/// A checkout as it comes; `Debug` redacts the card.
#[derive(Clone, Default, Deserialize)]
pub struct CheckoutInput {
    /// The lines to buy; the caller's basket when absent.
    pub items: Option<Vec<ItemInput>>,
    pub card_number: Option<String>,
}

/// A checked checkout request. Its `Debug` shows the card's last four
/// digits only: a checkout may end up in a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Checkout {
    /// Product and quantity, merged by product; `None`: the basket.
    pub items: Option<Vec<(Uuid, i64)>>,
    pub card_number: String,
}

/// `****1234`: what may be shown of a card number.
fn last_four(card: &str) -> String {
    let digits: Vec<char> = card.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("****{tail}")
}

impl std::fmt::Debug for CheckoutInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutInput")
            .field("items", &self.items)
            .field("card_number", &self.card_number.as_deref().map(last_four))
            .finish()
    }
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("items", &self.items)
            .field("card_number", &last_four(&self.card_number))
            .finish()
    }
}

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

impl Checkout {
    pub fn parse(input: &CheckoutInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = vec![];
        let card_number = input.card_number.clone().unwrap_or_default();
        let digits = card_number.chars().filter(char::is_ascii_digit).count();
        if !(12..=19).contains(&digits) || card_number.len() > 32 {
            errors.push(field("card_number", "is required: 12 to 19 digits"));
        }
        let items = match &input.items {
            None => None,
            Some(items) if items.is_empty() || items.len() > MAX_LINES => {
                errors.push(field("items", format!("must hold 1 to {MAX_LINES} lines")));
                None
            }
            Some(items) => {
                let mut merged: Vec<(Uuid, i64)> = vec![];
                for (i, item) in items.iter().enumerate() {
                    let id = item
                        .product_id
                        .as_deref()
                        .and_then(|raw| Uuid::parse_str(raw).ok());
                    if id.is_none() {
                        errors.push(field(&format!("items[{i}].product_id"), "must be a UUID"));
                    }
                    let quantity = item.quantity.unwrap_or(1);
                    if !(1..=MAX_QUANTITY).contains(&quantity) {
                        errors.push(field(
                            &format!("items[{i}].quantity"),
                            format!("must be from 1 to {MAX_QUANTITY}"),
                        ));
                    }
                    if let Some(id) = id {
                        match merged.iter_mut().find(|(p, _)| *p == id) {
                            Some((_, q)) => *q = (*q + quantity).min(MAX_QUANTITY + 1),
                            None => merged.push((id, quantity)),
                        }
                    }
                }
                if merged.iter().any(|(_, q)| *q > MAX_QUANTITY) {
                    errors.push(field(
                        "items",
                        format!("at most {MAX_QUANTITY} of one product"),
                    ));
                }
                Some(merged)
            }
        };
        if errors.is_empty() {
            Ok(Self { items, card_number })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fulfilment_moves_one_way_and_cancelling_stops_at_shipping() {
        use Status::*;
        assert!(Confirmed.fulfils_to(Processing));
        assert!(Processing.fulfils_to(Shipped));
        assert!(Shipped.fulfils_to(Delivered));
        assert!(!Confirmed.fulfils_to(Shipped));
        assert!(!Delivered.fulfils_to(Shipped));
        assert!(!Pending.fulfils_to(Confirmed));
        assert!(Confirmed.cancellable() && Processing.cancellable());
        assert!(!Shipped.cancellable() && !Pending.cancellable() && !Failed.cancellable());
        for s in [
            Pending, Confirmed, Processing, Shipped, Delivered, Failed, Cancelled,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn checkout_debug_redacts_the_card_number() {
        let input = CheckoutInput {
            items: None,
            card_number: Some("4242 4242 4242 4242".into()),
        };
        let checkout = Checkout::parse(&input).unwrap();
        let printed = format!("{checkout:?} {checkout:#?} {input:?}");
        assert!(!printed.contains("4242 4242 4242 4242"), "{printed}");
        assert!(!printed.contains("424242424242"), "{printed}");
        assert!(printed.contains("****4242"), "{printed}");
    }

    #[test]
    fn a_checkout_merges_lines_and_names_every_bad_field() {
        let id = Uuid::now_v7().to_string();
        let ok = Checkout::parse(&CheckoutInput {
            items: Some(vec![
                ItemInput {
                    product_id: Some(id.clone()),
                    quantity: Some(2),
                },
                ItemInput {
                    product_id: Some(id.clone()),
                    quantity: None,
                },
            ]),
            card_number: Some("4242 4242 4242 4242".into()),
        })
        .unwrap();
        assert_eq!(ok.items.unwrap()[0].1, 3);
        let bad = Checkout::parse(&CheckoutInput {
            items: Some(vec![ItemInput {
                product_id: Some("x".into()),
                quantity: Some(0),
            }]),
            card_number: None,
        })
        .unwrap_err();
        let fields: Vec<_> = bad.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["card_number", "items[0].product_id", "items[0].quantity"]
        );
        assert!(
            Checkout::parse(&CheckoutInput {
                items: Some(vec![]),
                card_number: Some("4242424242424242".into())
            })
            .is_err()
        );
    }
}
