//! Stock and reservations: the rules, pure and without I/O.

use std::collections::BTreeMap;

use emporium_platform::FieldError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The most units one line, one adjustment or one stock row may hold.
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// The most lines one reservation may have.
pub const MAX_LINES: usize = 100;
/// The longest a reservation may be held.
pub const MAX_TTL_SECS: i64 = 24 * 3600;

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

pub use emporium_platform::sku::Sku;

/// A warehouse code: 1 to 32 of `a-z 0-9 -`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Warehouse(String);

impl Warehouse {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let code = raw.trim();
        if code.is_empty() || code.len() > 32 {
            return Err("must be 1 to 32 characters".into());
        }
        if !code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err("may hold only a-z, 0-9 and '-'".into());
        }
        Ok(Warehouse(code.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One SKU in one warehouse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockLevel {
    pub sku: Sku,
    pub warehouse: Warehouse,
    pub on_hand: i64,
    pub reserved: i64,
    /// Below this many available units the row is low on stock.
    pub threshold: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl StockLevel {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
    pub fn is_low(&self) -> bool {
        self.available() < self.threshold
    }
}

/// A reservation's life: it is held until it is committed (the order was
/// confirmed), released (the order did not go ahead) or expired; a
/// committed one is restocked when its order is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Committed,
    Released,
    Expired,
    Restocked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Committed => "committed",
            Status::Released => "released",
            Status::Expired => "expired",
            Status::Restocked => "restocked",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "active" => Status::Active,
            "committed" => Status::Committed,
            "released" => Status::Released,
            "expired" => Status::Expired,
            "restocked" => Status::Restocked,
            _ => return None,
        })
    }
}

/// Units of one SKU taken from one warehouse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allocation {
    pub sku: Sku,
    pub warehouse: Warehouse,
    pub quantity: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub id: Uuid,
    pub status: Status,
    pub reference: String,
    pub allocations: Vec<Allocation>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Reservation {
    /// The quantity asked for each SKU, to compare a repeated request.
    pub fn wanted(&self) -> BTreeMap<Sku, i64> {
        let mut wanted = BTreeMap::new();
        for a in &self.allocations {
            *wanted.entry(a.sku.clone()).or_insert(0) += a.quantity;
        }
        wanted
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LineInput {
    pub sku: Option<String>,
    pub quantity: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReserveInput {
    pub reservation_id: Option<String>,
    pub lines: Option<Vec<LineInput>>,
    pub ttl_secs: Option<i64>,
    pub reference: Option<String>,
}

/// A checked request to reserve: the lines merged by SKU (in SKU order,
/// the order rows are locked in), each quantity from 1 to
/// [`MAX_QUANTITY`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReserveRequest {
    pub id: Uuid,
    pub lines: BTreeMap<Sku, i64>,
    pub ttl_secs: Option<i64>,
    pub reference: String,
}

impl ReserveRequest {
    pub fn parse(input: &ReserveInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = vec![];
        let id = match input.reservation_id.as_deref().map(str::trim) {
            None | Some("") => Uuid::now_v7(),
            Some(raw) => Uuid::parse_str(raw).unwrap_or_else(|_| {
                errors.push(field("reservation_id", "must be a UUID"));
                Uuid::nil()
            }),
        };
        let mut lines = BTreeMap::new();
        match input.lines.as_deref() {
            None | Some([]) => errors.push(field("lines", "at least one line is required")),
            Some(raw) if raw.len() > MAX_LINES => {
                errors.push(field("lines", format!("at most {MAX_LINES} lines")))
            }
            Some(raw) => {
                for (i, line) in raw.iter().enumerate() {
                    let sku = match line.sku.as_deref().map(Sku::parse) {
                        None => {
                            errors.push(field(&format!("lines[{i}].sku"), "is required"));
                            None
                        }
                        Some(Err(m)) => {
                            errors.push(field(&format!("lines[{i}].sku"), m));
                            None
                        }
                        Some(Ok(sku)) => Some(sku),
                    };
                    let quantity = match line.quantity {
                        Some(q) if (1..=MAX_QUANTITY).contains(&q) => Some(q),
                        Some(_) => {
                            errors.push(field(
                                &format!("lines[{i}].quantity"),
                                format!("must be from 1 to {MAX_QUANTITY}"),
                            ));
                            None
                        }
                        None => {
                            errors.push(field(&format!("lines[{i}].quantity"), "is required"));
                            None
                        }
                    };
                    if let (Some(sku), Some(quantity)) = (sku, quantity) {
                        let total: &mut i64 = lines.entry(sku).or_insert(0);
                        *total += quantity;
                        if *total > MAX_QUANTITY {
                            errors.push(field(
                                &format!("lines[{i}].quantity"),
                                format!("the SKU's lines add up to more than {MAX_QUANTITY}"),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(ttl) = input.ttl_secs
            && !(1..=MAX_TTL_SECS).contains(&ttl)
        {
            errors.push(field(
                "ttl_secs",
                format!("must be from 1 to {MAX_TTL_SECS}"),
            ));
        }
        let reference = input.reference.as_deref().unwrap_or("").trim().to_owned();
        if reference.chars().count() > 100 || reference.chars().any(char::is_control) {
            errors.push(field(
                "reference",
                "must be at most 100 characters, without control characters",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            id,
            lines,
            ttl_secs: input.ttl_secs,
            reference,
        })
    }
}

/// Where the units of one SKU come from, by the stated rule: the
/// warehouse with the most available units takes the whole line when it
/// can; otherwise warehouses are drained from the most available down
/// (ties by code). `None` when all of them together cannot cover it.
pub fn allocate(wanted: i64, rows: &[StockLevel]) -> Option<Vec<(Warehouse, i64)>> {
    let mut order: Vec<&StockLevel> = rows.iter().filter(|r| r.available() > 0).collect();
    order.sort_by(|a, b| {
        b.available()
            .cmp(&a.available())
            .then_with(|| a.warehouse.cmp(&b.warehouse))
    });
    let mut left = wanted;
    let mut out = vec![];
    for row in order {
        if left == 0 {
            break;
        }
        let take = left.min(row.available());
        out.push((row.warehouse.clone(), take));
        left -= take;
    }
    (left == 0).then_some(out)
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AdjustInput {
    pub sku: Option<String>,
    pub warehouse: Option<String>,
    pub delta: Option<i64>,
    pub reason: Option<String>,
    pub threshold: Option<i64>,
}

/// A manual change of the units on hand: signed, never zero, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjustment {
    pub sku: Sku,
    pub warehouse: Warehouse,
    pub delta: i64,
    pub reason: String,
    pub threshold: Option<i64>,
}

impl Adjustment {
    pub fn parse(input: &AdjustInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = vec![];
        let sku = match input.sku.as_deref().map(Sku::parse) {
            None => {
                errors.push(field("sku", "is required"));
                None
            }
            Some(Err(m)) => {
                errors.push(field("sku", m));
                None
            }
            Some(Ok(s)) => Some(s),
        };
        let warehouse = match input.warehouse.as_deref().map(Warehouse::parse) {
            None => {
                errors.push(field("warehouse", "is required"));
                None
            }
            Some(Err(m)) => {
                errors.push(field("warehouse", m));
                None
            }
            Some(Ok(w)) => Some(w),
        };
        let delta = input.delta.unwrap_or(0);
        if input.delta.is_none() {
            errors.push(field("delta", "is required"));
        } else if delta == 0 || delta.abs() > MAX_QUANTITY {
            errors.push(field(
                "delta",
                format!("must be from -{MAX_QUANTITY} to {MAX_QUANTITY}, not 0"),
            ));
        }
        let reason = input.reason.as_deref().unwrap_or("").trim().to_owned();
        if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control)
        {
            errors.push(field(
                "reason",
                "is required: 1 to 200 characters, without control characters",
            ));
        }
        if let Some(t) = input.threshold
            && !(0..=MAX_QUANTITY).contains(&t)
        {
            errors.push(field(
                "threshold",
                format!("must be from 0 to {MAX_QUANTITY}"),
            ));
        }
        match (sku, warehouse) {
            (Some(sku), Some(warehouse)) if errors.is_empty() => Ok(Self {
                sku,
                warehouse,
                delta,
                reason,
                threshold: input.threshold,
            }),
            _ => Err(errors),
        }
    }
}

/// Why a row changed, in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Movement {
    /// A manual adjustment of the units on hand.
    Adjust,
    /// Units held for a reservation.
    Reserve,
    /// A reservation let go before it expired.
    Release,
    /// A reservation let go because it expired.
    Expire,
    /// A reservation turned into a deduction from the units on hand.
    Commit,
    /// A committed reservation's units put back (its order was cancelled).
    Restock,
}

impl Movement {
    pub fn as_str(self) -> &'static str {
        match self {
            Movement::Adjust => "adjust",
            Movement::Reserve => "reserve",
            Movement::Release => "release",
            Movement::Expire => "expire",
            Movement::Commit => "commit",
            Movement::Restock => "restock",
        }
    }
    /// What the movement does to (on hand, reserved) for `quantity` units.
    pub fn deltas(self, quantity: i64) -> (i64, i64) {
        match self {
            Movement::Adjust => (quantity, 0),
            Movement::Reserve => (0, quantity),
            Movement::Release | Movement::Expire => (0, -quantity),
            Movement::Commit => (-quantity, -quantity),
            Movement::Restock => (quantity, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn level(warehouse: &str, on_hand: i64, reserved: i64) -> StockLevel {
        StockLevel {
            sku: Sku::parse("A-1").unwrap(),
            warehouse: Warehouse::parse(warehouse).unwrap(),
            on_hand,
            reserved,
            threshold: 0,
            updated_at: chrono::Utc::now(),
        }
    }

    fn w(code: &str) -> Warehouse {
        Warehouse::parse(code).unwrap()
    }

    #[test]
    fn one_warehouse_takes_the_line_when_it_can() {
        let rows = [level("east", 5, 0), level("west", 9, 2)];
        assert_eq!(allocate(6, &rows), Some(vec![(w("west"), 6)]));
        assert_eq!(allocate(5, &rows), Some(vec![(w("west"), 5)]));
    }

    #[test]
    fn a_line_too_big_for_one_is_split_from_the_most_available_down() {
        let rows = [
            level("east", 5, 0),
            level("west", 9, 2),
            level("north", 1, 1),
        ];
        assert_eq!(
            allocate(10, &rows),
            Some(vec![(w("west"), 7), (w("east"), 3)])
        );
        assert_eq!(
            allocate(12, &rows),
            Some(vec![(w("west"), 7), (w("east"), 5)])
        );
        assert_eq!(allocate(13, &rows), None);
        assert_eq!(allocate(1, &[]), None);
    }

    #[test]
    fn ties_go_to_the_first_code() {
        let rows = [level("west", 3, 0), level("east", 3, 0)];
        assert_eq!(allocate(2, &rows), Some(vec![(w("east"), 2)]));
    }

    #[test]
    fn a_reservation_request_merges_lines_and_names_every_bad_field() {
        let input = ReserveInput {
            reservation_id: None,
            lines: Some(vec![
                LineInput {
                    sku: Some("b-2".into()),
                    quantity: Some(2),
                },
                LineInput {
                    sku: Some("A-1".into()),
                    quantity: Some(1),
                },
                LineInput {
                    sku: Some("B-2".into()),
                    quantity: Some(3),
                },
            ]),
            ttl_secs: Some(60),
            reference: Some("order 7".into()),
        };
        let request = ReserveRequest::parse(&input).unwrap();
        let lines: Vec<_> = request
            .lines
            .iter()
            .map(|(s, q)| (s.as_str().to_owned(), *q))
            .collect();
        assert_eq!(lines, vec![("A-1".into(), 1), ("B-2".into(), 5)]);

        let bad = ReserveInput {
            reservation_id: Some("nope".into()),
            lines: Some(vec![
                LineInput {
                    sku: Some("bad sku".into()),
                    quantity: Some(0),
                },
                LineInput::default(),
            ]),
            ttl_secs: Some(0),
            reference: Some("\u{7}".into()),
        };
        let fields: Vec<_> = ReserveRequest::parse(&bad)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "reservation_id",
                "lines[0].sku",
                "lines[0].quantity",
                "lines[1].sku",
                "lines[1].quantity",
                "ttl_secs",
                "reference"
            ]
        );
        assert!(ReserveRequest::parse(&ReserveInput::default()).is_err());
    }

    #[test]
    fn an_adjustment_is_signed_never_zero_and_says_why() {
        let ok = Adjustment::parse(&AdjustInput {
            sku: Some("a-1".into()),
            warehouse: Some("east".into()),
            delta: Some(-3),
            reason: Some(" damaged ".into()),
            threshold: Some(4),
        })
        .unwrap();
        assert_eq!((ok.delta, ok.reason.as_str()), (-3, "damaged"));
        for (delta, reason, warehouse) in [
            (Some(0), Some("x"), "east"),
            (None, Some("x"), "east"),
            (Some(1), Some("  "), "east"),
            (Some(1), Some("x"), "East!"),
            (Some(MAX_QUANTITY + 1), Some("x"), "east"),
        ] {
            assert!(
                Adjustment::parse(&AdjustInput {
                    sku: Some("A".into()),
                    warehouse: Some(warehouse.into()),
                    delta,
                    reason: reason.map(Into::into),
                    threshold: None,
                })
                .is_err(),
                "{delta:?} {reason:?} {warehouse}"
            );
        }
    }

    #[test]
    fn each_movement_moves_the_right_column() {
        assert_eq!(Movement::Reserve.deltas(2), (0, 2));
        assert_eq!(Movement::Commit.deltas(2), (-2, -2));
        assert_eq!(Movement::Expire.deltas(2), (0, -2));
        assert_eq!(Movement::Restock.deltas(2), (2, 0));
        assert_eq!(Movement::Adjust.deltas(-2), (-2, 0));
        for s in ["active", "committed", "released", "expired", "restocked"] {
            assert_eq!(Status::parse(s).unwrap().as_str(), s);
        }
    }
}
