//! Money as every service carries it: integer minor units of an ISO 4217
//! currency, never a float; `{"amount": "19.99", "currency": "USD"}` in
//! JSON, `emporium.common.v1.Money` in gRPC. Rules about which amounts a
//! service accepts (a positive price, a refund no larger than the capture)
//! stay in that service.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use emporium_proto::common::v1 as pb;

/// ISO 4217 currencies the shop sells in, with their minor-unit digits.
const CURRENCIES: &[(&str, u32)] = &[
    ("AUD", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("INR", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("MXN", 2),
    ("NOK", 2),
    ("PLN", 2),
    ("SEK", 2),
    ("USD", 2),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    digits: u32,
}

impl Currency {
    pub fn parse(code: &str) -> Result<Self, String> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(code, digits)| Currency {
                code,
                digits: *digits,
            })
            .ok_or_else(|| {
                let shown: String = code.chars().take(16).collect();
                format!("`{shown}` is not a supported ISO 4217 currency")
            })
    }
    pub fn code(self) -> &'static str {
        self.code
    }
    pub fn digits(self) -> u32 {
        self.digits
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// An amount in integer minor units of one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

/// Money as JSON carries it: `{"amount": "19.99", "currency": "USD"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyJson {
    pub amount: String,
    pub currency: String,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// A non-negative decimal amount with no more decimals than the
    /// currency has.
    pub fn parse(amount: &str, currency: &str) -> Result<Self, String> {
        let currency = Currency::parse(currency)?;
        Ok(Money {
            minor: parse_minor(amount, currency)?,
            currency,
        })
    }

    pub fn from_minor(minor: i64, currency: &str) -> Result<Self, String> {
        Ok(Money {
            minor,
            currency: Currency::parse(currency)?,
        })
    }

    /// The amount as a decimal string: `19.99`, `1500` (JPY).
    /// The amount in the currency's units (12.50, not 1250), for metrics:
    /// exact to the cent up to 2^53 minor units.
    pub fn units(self) -> f64 {
        self.minor as f64 / 10f64.powi(self.currency.digits as i32)
    }

    pub fn amount(self) -> String {
        format_minor(self.minor, self.currency.digits)
    }

    pub fn to_json(self) -> MoneyJson {
        MoneyJson {
            amount: self.amount(),
            currency: self.currency.code.into(),
        }
    }

    /// `None` when the currencies differ or the sum overflows.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        (self.currency == other.currency).then_some(())?;
        Some(Money {
            minor: self.minor.checked_add(other.minor)?,
            currency: self.currency,
        })
    }

    pub fn checked_mul(self, factor: i64) -> Option<Money> {
        Some(Money {
            minor: self.minor.checked_mul(factor)?,
            currency: self.currency,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount(), self.currency.code)
    }
}

impl From<Money> for pb::Money {
    fn from(money: Money) -> Self {
        pb::Money {
            amount_minor: money.minor,
            currency: money.currency.code.to_owned(),
        }
    }
}

impl TryFrom<&pb::Money> for Money {
    type Error = String;
    fn try_from(money: &pb::Money) -> Result<Self, String> {
        Money::from_minor(money.amount_minor, &money.currency)
    }
}

/// A non-negative decimal string in minor units of `currency`.
pub fn parse_minor(amount: &str, currency: Currency) -> Result<i64, String> {
    let trimmed = amount.trim();
    if trimmed.is_empty()
        || trimmed.len() > 32
        || !trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Err("must be a decimal string such as \"19.99\"".into());
    }
    let value = Decimal::from_str(trimmed)
        .map_err(|_| "must be a decimal string such as \"19.99\"".to_string())?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err("must not be negative".into());
    }
    if value.scale() > currency.digits && value.normalize().scale() > currency.digits {
        return Err(format!(
            "{} takes at most {} decimals",
            currency.code, currency.digits
        ));
    }
    let scaled = value * Decimal::from(10i64.pow(currency.digits));
    i64::try_from(scaled.trunc()).map_err(|_| "is too large".to_string())
}

pub fn format_minor(minor: i64, digits: u32) -> String {
    if digits == 0 {
        return minor.to_string();
    }
    let scale = 10u64.pow(digits);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = digits as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_parse_to_minor_units() {
        assert_eq!(Money::parse("19.99", "USD").unwrap().minor, 1999);
        assert_eq!(Money::parse("19.9", "EUR").unwrap().minor, 1990);
        assert_eq!(Money::parse("0", "USD").unwrap().minor, 0);
        assert_eq!(Money::parse("1500", "JPY").unwrap().minor, 1500);
        assert_eq!(Money::parse("19.990", "USD").unwrap().minor, 1999);
        for (amount, currency) in [
            ("-1", "USD"),
            ("0.001", "USD"),
            ("1.5", "JPY"),
            ("1e5", "USD"),
            ("", "USD"),
            ("99999999999999999999999999999", "USD"),
            ("10", "usd"),
        ] {
            assert!(
                Money::parse(amount, currency).is_err(),
                "{amount} {currency}"
            );
        }
    }

    #[test]
    fn sums_keep_to_one_currency() {
        let usd = |m| Money::from_minor(m, "USD").unwrap();
        assert_eq!(usd(150).checked_add(usd(250)), Some(usd(400)));
        assert_eq!(
            usd(1).checked_add(Money::from_minor(1, "EUR").unwrap()),
            None
        );
        assert_eq!(usd(i64::MAX).checked_add(usd(1)), None);
        assert_eq!(usd(250).checked_mul(3), Some(usd(750)));
        assert_eq!(usd(i64::MAX).checked_mul(2), None);
    }

    #[test]
    fn money_round_trips_through_grpc() {
        let money = Money::parse("12.50", "EUR").unwrap();
        let wire = pb::Money::from(money);
        assert_eq!((wire.amount_minor, wire.currency.as_str()), (1250, "EUR"));
        assert_eq!(Money::try_from(&wire).unwrap(), money);
        assert!(
            Money::try_from(&pb::Money {
                amount_minor: 1,
                currency: "XXX".into()
            })
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_is_identity(minor in 0i64..=i64::MAX / 100, jpy in any::<bool>()) {
            let currency = Currency::parse(if jpy { "JPY" } else { "USD" }).unwrap();
            let text = format_minor(minor, currency.digits());
            prop_assert_eq!(parse_minor(&text, currency).unwrap(), minor);
        }
    }
}
