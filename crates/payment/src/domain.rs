//! A payment and its rules, pure and without I/O: the state machine, the
//! card check and the refund bound.

use emporium_platform::FieldError;
use emporium_platform::money::{Money, MoneyJson};
use serde::Deserialize;

/// The largest amount one payment may take, in minor units.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Authorized,
    Captured,
    PartiallyRefunded,
    Refunded,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Authorized => "authorized",
            Status::Captured => "captured",
            Status::PartiallyRefunded => "partially_refunded",
            Status::Refunded => "refunded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Status::Pending,
            Status::Authorized,
            Status::Captured,
            Status::PartiallyRefunded,
            Status::Refunded,
            Status::Failed,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// What may happen to a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Authorize,
    Capture,
    Fail,
    Cancel,
    /// A refund of `amount` minor units of `captured`, `refunded` of which
    /// were refunded before.
    Refund {
        amount: i64,
        captured: i64,
        refunded: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The action is not allowed from this state (409).
    Transition { from: Status, action: &'static str },
    /// A refund beyond what is left (422).
    TooMuch { left: i64 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Transition { from, action } => {
                write!(f, "a {} payment cannot be {action}", from.as_str())
            }
            Refusal::TooMuch { left } => write!(f, "at most {left} minor units are left to refund"),
        }
    }
}

/// The state after `action`, or why not: pending → authorized → captured →
/// partially refunded or refunded; pending or authorized → failed or
/// cancelled. Nothing else.
pub fn transition(from: Status, action: Action) -> Result<Status, Refusal> {
    use Status::*;
    let name = match action {
        Action::Authorize => "authorized",
        Action::Capture => "captured",
        Action::Fail => "failed",
        Action::Cancel => "cancelled",
        Action::Refund { .. } => "refunded",
    };
    let refused = Refusal::Transition { from, action: name };
    match (from, action) {
        (Pending, Action::Authorize) => Ok(Authorized),
        (Authorized, Action::Capture) => Ok(Captured),
        (Pending | Authorized, Action::Fail) => Ok(Failed),
        (Pending | Authorized, Action::Cancel) => Ok(Cancelled),
        (
            Captured | PartiallyRefunded,
            Action::Refund {
                amount,
                captured,
                refunded,
            },
        ) => {
            let left = captured - refunded;
            if amount < 1 || amount > left {
                return Err(Refusal::TooMuch { left });
            }
            Ok(if amount == left {
                Refunded
            } else {
                PartiallyRefunded
            })
        }
        _ => Err(refused),
    }
}

/// A card number as the mock processor takes it: 12 to 19 digits (spaces
/// and dashes ignored) that pass the Luhn check. Only its last four digits
/// and the processor's token are kept.
pub fn card_digits(raw: &str) -> Result<String, String> {
    let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if !(12..=19).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err("must be 12 to 19 digits".into());
    }
    let sum: u32 = digits
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap_or(0);
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    if !sum.is_multiple_of(10) {
        return Err("is not a valid card number".into());
    }
    Ok(digits)
}

/// A request for a new payment as it comes; `Debug` redacts the card.
#[derive(Clone, Default, Deserialize)]
pub struct PaymentInput {
    pub order_id: Option<String>,
    pub user_id: Option<String>,
    pub amount: Option<MoneyJson>,
    pub method: Option<String>,
    pub card_number: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

impl std::fmt::Debug for PaymentInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentInput")
            .field("order_id", &self.order_id)
            .field("user_id", &self.user_id)
            .field("amount", &self.amount)
            .field("method", &self.method)
            .field("card_number", &self.card_number.as_deref().map(last_four))
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// A checked request for a new payment. Its `Debug` shows the card's last
/// four digits only: a draft may end up in a log line.
#[derive(Clone, PartialEq)]
pub struct PaymentDraft {
    pub order_id: String,
    /// Who pays: the caller, or the user an admin names.
    pub user_id: Option<String>,
    pub amount: Money,
    pub method: String,
    pub card: String,
    pub metadata: serde_json::Value,
}

impl std::fmt::Debug for PaymentDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentDraft")
            .field("order_id", &self.order_id)
            .field("user_id", &self.user_id)
            .field("amount", &self.amount)
            .field("method", &self.method)
            .field("card", &last_four(&self.card))
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// `****1234`: what may be shown of a card number.
fn last_four(card: &str) -> String {
    let digits: Vec<char> = card.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("****{tail}")
}

fn reference(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

impl PaymentDraft {
    pub fn parse(input: &PaymentInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = vec![];
        let order_id = input.order_id.clone().unwrap_or_default();
        if !reference(&order_id) {
            errors.push(field(
                "order_id",
                "is required: 1 to 64 of letters, digits, '-' and '_'",
            ));
        }
        if let Some(user) = &input.user_id
            && !reference(user)
        {
            errors.push(field(
                "user_id",
                "must be 1 to 64 of letters, digits, '-' and '_'",
            ));
        }
        let amount = match &input.amount {
            None => {
                errors.push(field("amount", "is required"));
                None
            }
            Some(json) => match Money::parse(&json.amount, &json.currency) {
                Ok(m) if (1..=MAX_AMOUNT_MINOR).contains(&m.minor) => Some(m),
                Ok(_) => {
                    errors.push(field(
                        "amount",
                        "must be more than zero and at most 10000000000.00",
                    ));
                    None
                }
                Err(e) => {
                    errors.push(field("amount", e));
                    None
                }
            },
        };
        let method = input.method.clone().unwrap_or_else(|| "card".into());
        if method != "card" {
            errors.push(field("method", "only `card` is supported"));
        }
        let card = match input.card_number.as_deref().map(card_digits) {
            None => {
                errors.push(field("card_number", "is required"));
                None
            }
            Some(Err(e)) => {
                errors.push(field("card_number", e));
                None
            }
            Some(Ok(d)) => Some(d),
        };
        let metadata = input
            .metadata
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        let fits = metadata
            .as_object()
            .is_some_and(|m| m.len() <= 20 && metadata.to_string().len() <= 2048);
        if !fits {
            errors.push(field(
                "metadata",
                "must be an object of at most 20 keys and 2048 bytes",
            ));
        }
        match (amount, card) {
            (Some(amount), Some(card)) if errors.is_empty() => Ok(Self {
                order_id,
                user_id: input.user_id.clone(),
                amount,
                method,
                card,
                metadata,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn draft_input() -> PaymentInput {
        PaymentInput {
            order_id: Some("order-1".into()),
            amount: Some(MoneyJson {
                amount: "1.00".into(),
                currency: "USD".into(),
            }),
            card_number: Some("4242 4242 4242 4242".into()),
            ..PaymentInput::default()
        }
    }

    #[test]
    fn payment_draft_debug_redacts_the_card_number() {
        let draft = PaymentDraft::parse(&draft_input()).unwrap();
        let printed = format!("{draft:?} {draft:#?} {:?}", draft_input());
        assert!(!printed.contains("424242424242"), "{printed}");
        assert!(printed.contains("****4242"), "{printed}");
    }

    #[test]
    fn only_the_drawn_transitions_are_allowed() {
        use Status::*;
        let all = [
            Pending,
            Authorized,
            Captured,
            PartiallyRefunded,
            Refunded,
            Failed,
            Cancelled,
        ];
        let refund = Action::Refund {
            amount: 5,
            captured: 10,
            refunded: 0,
        };
        for from in all {
            for action in [
                Action::Authorize,
                Action::Capture,
                Action::Fail,
                Action::Cancel,
                refund,
            ] {
                let allowed = matches!(
                    (from, action),
                    (Pending, Action::Authorize)
                        | (Authorized, Action::Capture)
                        | (Pending | Authorized, Action::Fail | Action::Cancel)
                        | (Captured | PartiallyRefunded, Action::Refund { .. })
                );
                assert_eq!(
                    transition(from, action).is_ok(),
                    allowed,
                    "{from:?} {action:?}"
                );
            }
            assert_eq!(Status::parse(from.as_str()), Some(from));
        }
    }

    #[test]
    fn refunds_never_exceed_the_capture() {
        let refund = |amount, refunded| Action::Refund {
            amount,
            captured: 100,
            refunded,
        };
        assert_eq!(
            transition(Status::Captured, refund(40, 0)),
            Ok(Status::PartiallyRefunded)
        );
        assert_eq!(
            transition(Status::PartiallyRefunded, refund(60, 40)),
            Ok(Status::Refunded)
        );
        assert_eq!(
            transition(Status::PartiallyRefunded, refund(61, 40)),
            Err(Refusal::TooMuch { left: 60 })
        );
        assert!(transition(Status::Captured, refund(0, 0)).is_err());
    }

    #[test]
    fn cards_pass_luhn_and_requests_name_every_bad_field() {
        assert_eq!(
            card_digits("4242 4242 4242 4242").unwrap(),
            "4242424242424242"
        );
        assert!(card_digits("4242424242424241").is_err());
        assert!(card_digits("42").is_err());
        let bad = PaymentDraft::parse(&PaymentInput {
            order_id: Some("o 1".into()),
            amount: Some(MoneyJson {
                amount: "0".into(),
                currency: "USD".into(),
            }),
            method: Some("cash".into()),
            card_number: Some("1234".into()),
            metadata: Some(serde_json::json!([1])),
            ..PaymentInput::default()
        })
        .unwrap_err();
        let fields: Vec<_> = bad.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["order_id", "amount", "method", "card_number", "metadata"]
        );
    }
}
