//! Products, categories and money: parsed once at the boundary, pure rules.

use std::fmt;
use std::str::FromStr;

use emporium_platform::FieldError;
use emporium_platform::money::{Money, MoneyJson, format_minor};
use serde::{Deserialize, Serialize};

/// The largest price accepted, in minor units (one hundred million in a
/// two-decimal currency).
pub const MAX_PRICE_MINOR: i64 = 10_000_000_000;

/// A product's price: positive, at most [`MAX_PRICE_MINOR`], with no more
/// decimals than the currency has.
pub fn parse_price(amount: &str, currency: &str) -> Result<Money, String> {
    let money = Money::parse(amount, currency)?;
    if money.minor <= 0 {
        return Err("must be greater than zero".into());
    }
    if money.minor > MAX_PRICE_MINOR {
        return Err(format!(
            "must be at most {}",
            format_minor(MAX_PRICE_MINOR, money.currency.digits())
        ));
    }
    Ok(money)
}

/// A product's id: a UUID, parsed before any lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProductId(uuid::Uuid);

impl ProductId {
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }
    pub fn parse(raw: &str) -> Result<Self, String> {
        uuid::Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| "must be a UUID".to_owned())
    }
}

impl Default for ProductId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A product as the catalog knows it; each edge (REST, gRPC, events) maps
/// it to its own shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub sku: Sku,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub category: CategorySlug,
    /// Stored image names (`<uuid>.<ext>`), oldest first.
    pub images: Vec<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

pub use emporium_platform::sku::Sku;

/// A category key: 1 to 64 of `a-z 0-9 -`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct CategorySlug(String);

impl CategorySlug {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let slug = raw.trim();
        if slug.is_empty() || slug.len() > 64 {
            return Err("must be 1 to 64 characters".into());
        }
        if !slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err("may hold only lower-case letters, digits and '-'".into());
        }
        Ok(CategorySlug(slug.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Trimmed text of bounded length, without control characters.
fn text(raw: &str, min: usize, max: usize, multiline: bool) -> Result<String, String> {
    let value = raw.trim();
    let chars = value.chars().count();
    if chars < min {
        return Err(if min == 1 {
            "must not be empty".into()
        } else {
            format!("must be at least {min} characters")
        });
    }
    if chars > max {
        return Err(format!("must be at most {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r')))
    {
        return Err("must not contain control characters".into());
    }
    Ok(value.to_owned())
}

/// What a client sends to create or replace a product.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: MoneyJson,
    pub category: String,
}

/// A product's fields, every one checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductDraft {
    pub sku: Sku,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub category: CategorySlug,
}

impl ProductDraft {
    /// Checks every field and reports all that fail at once.
    pub fn parse(input: &ProductInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut field = |name: &str, outcome: Result<(), String>| {
            if let Err(message) = outcome {
                errors.push(FieldError {
                    field: name.into(),
                    message,
                });
            }
        };
        let sku = Sku::parse(&input.sku);
        field("sku", sku.as_ref().map(|_| ()).map_err(Clone::clone));
        let name = text(&input.name, 1, 200, false);
        field("name", name.as_ref().map(|_| ()).map_err(Clone::clone));
        let description = text(&input.description, 0, 5000, true);
        field(
            "description",
            description.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let price = parse_price(&input.price.amount, &input.price.currency);
        let price_field =
            if emporium_platform::money::Currency::parse(&input.price.currency).is_err() {
                "price.currency"
            } else {
                "price.amount"
            };
        field(
            price_field,
            price.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let category = CategorySlug::parse(&input.category);
        field(
            "category",
            category.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        match (sku, name, description, price, category) {
            (Ok(sku), Ok(name), Ok(description), Ok(price), Ok(category)) if errors.is_empty() => {
                Ok(ProductDraft {
                    sku,
                    name,
                    description,
                    price,
                    category,
                })
            }
            _ => Err(errors),
        }
    }
}

/// A category as created by an admin.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryInput {
    pub slug: String,
    pub name: String,
}

impl CategoryInput {
    pub fn parse(&self) -> Result<(CategorySlug, String), Vec<FieldError>> {
        let slug = CategorySlug::parse(&self.slug);
        let name = text(&self.name, 1, 100, false);
        match (slug, name) {
            (Ok(slug), Ok(name)) => Ok((slug, name)),
            (slug, name) => {
                let mut errors = vec![];
                if let Err(message) = slug {
                    errors.push(FieldError {
                        field: "slug".into(),
                        message,
                    });
                }
                if let Err(message) = name {
                    errors.push(FieldError {
                        field: "name".into(),
                        message,
                    });
                }
                Err(errors)
            }
        }
    }
}

/// Image formats accepted for upload, recognised by their first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageFormat {
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageFormat::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(ImageFormat::Gif)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageFormat::Webp)
        } else {
            None
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Gif => "gif",
            ImageFormat::Webp => "webp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Webp => "image/webp",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name.rsplit_once('.')?.1 {
            "png" => Some(ImageFormat::Png),
            "jpg" => Some(ImageFormat::Jpeg),
            "gif" => Some(ImageFormat::Gif),
            "webp" => Some(ImageFormat::Webp),
            _ => None,
        }
    }
}

/// A stored image's name: `<uuid>.<ext>`, never a path.
pub fn valid_image_name(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((stem, _)) => {
            uuid::Uuid::parse_str(stem).is_ok() && ImageFormat::from_name(name).is_some()
        }
        None => false,
    }
}

/// Search words: letters and digits, lower-cased, at most eight of them.
pub fn search_terms(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().chars().take(64).collect())
        .take(8)
        .collect()
}

/// How a product list is ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Newest,
    Oldest,
    NameAsc,
    NameDesc,
    PriceAsc,
    PriceDesc,
}

impl FromStr for Sort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "-created_at" | "newest" => Sort::Newest,
            "created_at" | "oldest" => Sort::Oldest,
            "name" => Sort::NameAsc,
            "-name" => Sort::NameDesc,
            "price" => Sort::PriceAsc,
            "-price" => Sort::PriceDesc,
            _ => {
                return Err(
                    "must be one of name, -name, price, -price, created_at, -created_at".into(),
                );
            }
        })
    }
}

impl fmt::Display for Sort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sort::Newest => "-created_at",
            Sort::Oldest => "created_at",
            Sort::NameAsc => "name",
            Sort::NameDesc => "-name",
            Sort::PriceAsc => "price",
            Sort::PriceDesc => "-price",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(amount: &str, currency: &str) -> ProductInput {
        ProductInput {
            sku: "abc-1".into(),
            name: "Mug".into(),
            description: String::new(),
            price: MoneyJson {
                amount: amount.into(),
                currency: currency.into(),
            },
            category: "kitchen".into(),
        }
    }

    #[test]
    fn prices_parse_to_minor_units() {
        assert_eq!(parse_price("19.99", "USD").unwrap().minor, 1999);
        assert_eq!(parse_price("19.9", "EUR").unwrap().minor, 1990);
        assert_eq!(parse_price("20", "USD").unwrap().minor, 2000);
        assert_eq!(parse_price("1500", "JPY").unwrap().minor, 1500);
        assert_eq!(parse_price("19.990", "USD").unwrap().minor, 1999);
    }

    #[test]
    fn bad_prices_are_refused() {
        for (amount, currency) in [
            ("-1", "USD"),
            ("0", "USD"),
            ("0.001", "USD"),
            ("1.5", "JPY"),
            ("1e5", "USD"),
            ("abc", "USD"),
            ("", "USD"),
            ("100000000.01", "USD"),
            ("99999999999999999999999999999", "USD"),
            ("10", "XXX"),
            ("10", "usd"),
            ("NaN", "USD"),
        ] {
            assert!(
                parse_price(amount, currency).is_err(),
                "{amount} {currency}"
            );
        }
    }

    #[test]
    fn a_draft_reports_every_bad_field() {
        let mut bad = input("-5", "USD");
        bad.sku = "no spaces allowed".into();
        bad.name = "   ".into();
        let errors = ProductDraft::parse(&bad).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["sku", "name", "price.amount"]);
        let errors = ProductDraft::parse(&input("1", "ABC")).unwrap_err();
        assert_eq!(errors[0].field, "price.currency");
    }

    #[test]
    fn a_good_draft_is_normalised() {
        let draft = ProductDraft::parse(&input("3.50", "USD")).unwrap();
        assert_eq!(draft.sku.as_str(), "ABC-1");
        assert_eq!(
            draft.price.to_json(),
            MoneyJson {
                amount: "3.50".into(),
                currency: "USD".into()
            }
        );
    }

    #[test]
    fn images_are_recognised_by_content_not_name() {
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\nrest"),
            Some(ImageFormat::Png)
        );
        assert_eq!(ImageFormat::sniff(b"<svg onload=alert(1)>"), None);
        assert!(valid_image_name("0190b7d2-4a6e-7c4b-9e59-6f1b5b0f3a11.png"));
        assert!(!valid_image_name("../../etc/passwd"));
        assert!(!valid_image_name("x.png"));
    }

    #[test]
    fn search_terms_drop_punctuation() {
        assert_eq!(
            search_terms("'; DROP TABLE products; --"),
            ["drop", "table", "products"]
        );
        assert_eq!(search_terms("Café  crème"), ["café", "crème"]);
        assert!(search_terms("!!!").is_empty());
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_a_price_is_identity(minor in 1i64..=MAX_PRICE_MINOR) {
            let text = format_minor(minor, 2);
            prop_assert_eq!(parse_price(&text, "USD").unwrap().minor, minor);
        }

        #[test]
        fn any_string_parses_or_is_refused_without_panicking(amount in ".{0,40}", currency in ".{0,5}") {
            let _ = parse_price(&amount, &currency);
            let _ = Sku::parse(&amount);
            let _ = search_terms(&amount);
        }
    }
}
