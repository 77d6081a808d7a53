//! A basket and its rules, pure and without I/O: one currency, bounded
//! lines and quantities, totals in integer minor units.

use emporium_platform::FieldError;
use emporium_platform::money::{Currency, Money, MoneyJson};
use emporium_platform::sku::Sku;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The most units of one product in a basket.
pub const MAX_QUANTITY: i64 = 99;
/// The most different products in a basket.
pub const MAX_LINES: usize = 50;

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

/// Whose basket: the subject of their token (1 to 64 of `A-Z a-z 0-9 - _`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > 64 {
            return Err("must be 1 to 64 characters".into());
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err("may hold only letters, digits, '-' and '_'".into());
        }
        Ok(Owner(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product as the catalog describes it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub product_id: Uuid,
    pub sku: Sku,
    pub name: String,
    pub price: Money,
}

/// One line, with the product as it was seen when it was last added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub product_id: Uuid,
    pub sku: Sku,
    pub name: String,
    pub unit_price: Money,
    pub quantity: i64,
}

impl Line {
    pub fn subtotal(&self) -> Option<Money> {
        self.unit_price.checked_mul(self.quantity)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BasketError {
    /// The product is priced in another currency than the basket holds.
    Currency {
        basket: String,
        product: String,
    },
    TooManyLines,
    TooMany {
        product_id: Uuid,
    },
    NotInBasket,
    /// The total does not fit in 64 bits of minor units.
    Overflow,
}

impl std::fmt::Display for BasketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BasketError::Currency { basket, product } => write!(
                f,
                "the basket is in {basket}; this product is priced in {product}"
            ),
            BasketError::TooManyLines => {
                write!(f, "a basket holds at most {MAX_LINES} different products")
            }
            BasketError::TooMany { product_id } => write!(
                f,
                "a basket holds at most {MAX_QUANTITY} of one product ({product_id})"
            ),
            BasketError::NotInBasket => write!(f, "the product is not in the basket"),
            BasketError::Overflow => write!(f, "the total is too large"),
        }
    }
}

/// A user's basket: lines in the order they were first added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Basket {
    pub lines: Vec<Line>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The last orders whose lines were taken out, newest last: an order's
    /// lines come out once, however often its event is delivered.
    pub settled: Vec<String>,
}

/// How many settled orders a basket remembers.
pub const SETTLED_KEPT: usize = 20;

impl Basket {
    pub fn currency(&self) -> Option<Currency> {
        self.lines.first().map(|l| l.unit_price.currency)
    }

    /// Takes out what order `order_id` bought (product, quantity), once:
    /// a line drops by the quantity ordered and goes when none is left, so
    /// that what the customer added after checking out stays. False when
    /// the order was taken out before.
    pub fn settle(&mut self, order_id: &str, bought: &[(Uuid, i64)]) -> bool {
        if self.settled.iter().any(|o| o == order_id) {
            return false;
        }
        for (product, quantity) in bought {
            if let Some(line) = self.lines.iter_mut().find(|l| l.product_id == *product) {
                line.quantity -= quantity;
            }
        }
        self.lines.retain(|l| l.quantity > 0);
        self.settled.push(order_id.to_owned());
        if self.settled.len() > SETTLED_KEPT {
            self.settled.remove(0);
        }
        true
    }

    /// Adds `quantity` of `offer`, at its current price.
    pub fn add(&mut self, offer: &Offer, quantity: i64) -> Result<(), BasketError> {
        if let Some(currency) = self.currency()
            && currency != offer.price.currency
            && !(self.lines.len() == 1 && self.lines[0].product_id == offer.product_id)
        {
            return Err(BasketError::Currency {
                basket: currency.code().into(),
                product: offer.price.currency.code().into(),
            });
        }
        match self
            .lines
            .iter_mut()
            .find(|l| l.product_id == offer.product_id)
        {
            Some(line) => {
                let quantity = line.quantity + quantity;
                if quantity > MAX_QUANTITY {
                    return Err(BasketError::TooMany {
                        product_id: offer.product_id,
                    });
                }
                *line = Line {
                    product_id: offer.product_id,
                    sku: offer.sku.clone(),
                    name: offer.name.clone(),
                    unit_price: offer.price,
                    quantity,
                };
            }
            None => {
                if self.lines.len() >= MAX_LINES {
                    return Err(BasketError::TooManyLines);
                }
                if quantity > MAX_QUANTITY {
                    return Err(BasketError::TooMany {
                        product_id: offer.product_id,
                    });
                }
                self.lines.push(Line {
                    product_id: offer.product_id,
                    sku: offer.sku.clone(),
                    name: offer.name.clone(),
                    unit_price: offer.price,
                    quantity,
                });
            }
        }
        self.total().ok_or(BasketError::Overflow).map(|_| ())
    }

    /// Sets a line's quantity; 0 removes it.
    pub fn set_quantity(&mut self, product_id: Uuid, quantity: i64) -> Result<(), BasketError> {
        let index = self
            .lines
            .iter()
            .position(|l| l.product_id == product_id)
            .ok_or(BasketError::NotInBasket)?;
        if quantity == 0 {
            self.lines.remove(index);
            return Ok(());
        }
        self.lines[index].quantity = quantity;
        self.total().ok_or(BasketError::Overflow).map(|_| ())
    }

    pub fn remove(&mut self, product_id: Uuid) -> Result<(), BasketError> {
        self.set_quantity(product_id, 0)
    }

    /// The sum of the lines at the prices held; `None` for an empty basket
    /// (or one whose sum overflows, which `add` never lets happen).
    pub fn total(&self) -> Option<Money> {
        let mut lines = self.lines.iter();
        let first = lines.next()?.subtotal()?;
        lines.try_fold(first, |sum, line| sum.checked_add(line.subtotal()?))
    }
}

/// How a line compares with the catalog now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Same price as held.
    Current,
    /// The catalog's price differs from the one held.
    PriceChanged(Money),
    /// The product is gone from the catalog.
    Unavailable,
    /// The catalog could not be asked.
    Unchecked,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AddInput {
    pub product_id: Option<String>,
    pub quantity: Option<i64>,
}

/// A checked request to add a product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addition {
    pub product_id: Uuid,
    pub quantity: i64,
}

pub fn product_id(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw.trim()).map_err(|_| "must be a UUID".to_owned())
}

fn quantity(value: Option<i64>, min: i64, errors: &mut Vec<FieldError>) -> i64 {
    match value {
        Some(q) if (min..=MAX_QUANTITY).contains(&q) => q,
        Some(_) => {
            errors.push(field(
                "quantity",
                format!("must be from {min} to {MAX_QUANTITY}"),
            ));
            0
        }
        None => {
            errors.push(field("quantity", "is required"));
            0
        }
    }
}

impl Addition {
    pub fn parse(input: &AddInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = vec![];
        let id = match input.product_id.as_deref().map(product_id) {
            None => {
                errors.push(field("product_id", "is required"));
                None
            }
            Some(Err(m)) => {
                errors.push(field("product_id", m));
                None
            }
            Some(Ok(id)) => Some(id),
        };
        let quantity = quantity(input.quantity.or(Some(1)), 1, &mut errors);
        match id {
            Some(product_id) if errors.is_empty() => Ok(Self {
                product_id,
                quantity,
            }),
            _ => Err(errors),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct QuantityInput {
    pub quantity: Option<i64>,
}

/// A line's new quantity: 0 removes it.
pub fn parse_quantity(input: &QuantityInput) -> Result<i64, Vec<FieldError>> {
    let mut errors = vec![];
    let q = quantity(input.quantity, 0, &mut errors);
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(errors)
    }
}

/// A basket as it is kept: JSON, the same in Redis and in SQL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub lines: Vec<StoredLine>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settled: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub unit_price: MoneyJson,
    pub quantity: i64,
}

impl From<&Basket> for Stored {
    fn from(basket: &Basket) -> Self {
        Stored {
            lines: basket
                .lines
                .iter()
                .map(|l| StoredLine {
                    product_id: l.product_id,
                    sku: l.sku.as_str().into(),
                    name: l.name.clone(),
                    unit_price: l.unit_price.to_json(),
                    quantity: l.quantity,
                })
                .collect(),
            updated_at: basket.updated_at,
            settled: basket.settled.clone(),
        }
    }
}

impl TryFrom<Stored> for Basket {
    type Error = String;
    fn try_from(stored: Stored) -> Result<Self, String> {
        let lines = stored
            .lines
            .into_iter()
            .map(|l| {
                Ok(Line {
                    product_id: l.product_id,
                    sku: Sku::parse(&l.sku)?,
                    name: l.name,
                    unit_price: Money::parse(&l.unit_price.amount, &l.unit_price.currency)?,
                    quantity: l.quantity,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Basket {
            lines,
            updated_at: stored.updated_at,
            settled: stored.settled,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn offer(n: u128, price: &str, currency: &str) -> Offer {
        Offer {
            product_id: Uuid::from_u128(n),
            sku: Sku::parse(&format!("SKU-{n}")).unwrap(),
            name: format!("Product {n}"),
            price: Money::parse(price, currency).unwrap(),
        }
    }

    #[test]
    fn an_order_takes_out_what_it_bought_once() {
        let mut basket = Basket::default();
        basket.add(&offer(1, "1.00", "USD"), 3).unwrap();
        basket.add(&offer(2, "1.00", "USD"), 1).unwrap();
        let (one, two, three) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert!(basket.settle("o1", &[(one, 2), (two, 1), (three, 5)]));
        let left: Vec<(Uuid, i64)> = basket
            .lines
            .iter()
            .map(|l| (l.product_id, l.quantity))
            .collect();
        assert_eq!(left, [(one, 1)]);
        assert!(!basket.settle("o1", &[(one, 1)]), "once per order");
        assert_eq!(basket.lines.len(), 1);
        for n in 0..SETTLED_KEPT + 5 {
            basket.settle(&format!("x{n}"), &[]);
        }
        assert_eq!(basket.settled.len(), SETTLED_KEPT);
        assert_eq!(basket.settled.last().map(String::as_str), Some("x24"));
        let stored = Stored::from(&basket);
        assert_eq!(
            Basket::try_from(stored).unwrap(),
            basket,
            "kept with the basket"
        );
    }

    #[test]
    fn lines_add_up_in_minor_units_and_the_latest_price_is_held() {
        let mut basket = Basket::default();
        assert_eq!(basket.total(), None);
        basket.add(&offer(1, "19.99", "USD"), 2).unwrap();
        basket.add(&offer(2, "0.01", "USD"), 1).unwrap();
        assert_eq!(basket.total().unwrap().amount(), "39.99");
        basket.add(&offer(1, "20.00", "USD"), 1).unwrap();
        assert_eq!(basket.lines[0].quantity, 3);
        assert_eq!(basket.total().unwrap().amount(), "60.01");
    }

    #[test]
    fn one_currency_and_bounded_quantities() {
        let mut basket = Basket::default();
        basket.add(&offer(1, "1.00", "USD"), 99).unwrap();
        assert_eq!(
            basket.add(&offer(1, "1.00", "USD"), 1),
            Err(BasketError::TooMany {
                product_id: Uuid::from_u128(1)
            })
        );
        assert!(matches!(
            basket.add(&offer(2, "1.00", "EUR"), 1),
            Err(BasketError::Currency { .. })
        ));
        // The only product may change its currency.
        basket.add(&offer(1, "1.00", "EUR"), 0).unwrap();
        assert_eq!(basket.currency().unwrap().code(), "EUR");
        for n in 2..=50 {
            basket.add(&offer(n, "1.00", "EUR"), 1).unwrap();
        }
        assert_eq!(
            basket.add(&offer(51, "1.00", "EUR"), 1),
            Err(BasketError::TooManyLines)
        );
        basket.set_quantity(Uuid::from_u128(2), 0).unwrap();
        assert_eq!(basket.lines.len(), 49);
        assert_eq!(
            basket.remove(Uuid::from_u128(2)),
            Err(BasketError::NotInBasket)
        );
    }

    #[test]
    fn a_total_that_would_overflow_is_refused() {
        let mut basket = Basket::default();
        basket
            .add(&offer(1, "90000000000000000.00", "USD"), 1)
            .unwrap();
        assert_eq!(
            basket.add(&offer(2, "90000000000000000.00", "USD"), 1),
            Err(BasketError::Overflow)
        );
    }

    #[test]
    fn requests_name_every_bad_field() {
        let ok = Addition::parse(&AddInput {
            product_id: Some(Uuid::from_u128(5).to_string()),
            quantity: None,
        })
        .unwrap();
        assert_eq!(ok.quantity, 1);
        let bad = Addition::parse(&AddInput {
            product_id: Some("x".into()),
            quantity: Some(100),
        })
        .unwrap_err();
        let fields: Vec<_> = bad.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["product_id", "quantity"]);
        assert!(parse_quantity(&QuantityInput { quantity: Some(-1) }).is_err());
        assert_eq!(parse_quantity(&QuantityInput { quantity: Some(0) }), Ok(0));
        assert!(Owner::parse("a b").is_err());
        assert!(Owner::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn a_basket_round_trips_through_its_stored_form() {
        let mut basket = Basket::default();
        basket.add(&offer(1, "3.50", "GBP"), 2).unwrap();
        let stored = Stored::from(&basket);
        let json = serde_json::to_string(&stored).unwrap();
        let back: Stored = serde_json::from_str(&json).unwrap();
        assert_eq!(Basket::try_from(back).unwrap(), basket);
    }
}
