//! The stock-keeping unit every service that names a product's stock
//! shares: the catalog, inventory, the basket and ordering.

use serde::Serialize;

/// 1 to 64 of `A-Z 0-9 - _ .`, kept upper-case.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let sku = raw.trim().to_ascii_uppercase();
        if sku.is_empty() || sku.len() > 64 {
            return Err("must be 1 to 64 characters".into());
        }
        if !sku
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err("may hold only letters, digits, '-', '_' and '.'".into());
        }
        Ok(Sku(sku))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Sku;

    #[test]
    fn a_sku_is_trimmed_upper_cased_and_bounded() {
        assert_eq!(
            Sku::parse(" kit-001.b_2 ").map(|s| s.as_str().to_owned()),
            Ok("KIT-001.B_2".into())
        );
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("A B").is_err());
        assert!(Sku::parse(&"A".repeat(65)).is_err());
    }
}
