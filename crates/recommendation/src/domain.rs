//! Recommendation's rules, pure: what an asked id and limit are, which
//! pairs an order teaches, and how candidates become a ranked list.

use std::collections::{BTreeSet, HashMap, HashSet};

use uuid::Uuid;

/// How many recommendations one answer holds when the caller does not say.
pub const DEFAULT_LIMIT: u32 = 10;
/// The most one answer holds.
pub const MAX_LIMIT: u32 = 50;

/// A product id as the catalog makes them: a UUID, kept in its hyphenated
/// lowercase form so that every table compares it alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductId(String);

impl ProductId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        Uuid::parse_str(raw.trim())
            .map(|id| Self(id.hyphenated().to_string()))
            .map_err(|_| "must be a product id (a UUID)".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many recommendations to answer: from 1 to [`MAX_LIMIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(u32);

impl Limit {
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        // An empty `limit=` is not a number: the document says integer.
        match raw.map(str::trim) {
            None => Ok(Self(DEFAULT_LIMIT)),
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| format!("must be a whole number from 1 to {MAX_LIMIT}"))
                .and_then(Self::new),
        }
    }

    pub fn new(n: i64) -> Result<Self, String> {
        u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .map(Self)
            .ok_or_else(|| format!("must be from 1 to {MAX_LIMIT}"))
    }

    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// The distinct products of one order, each with every other, in both
/// directions: a product bought twice in one order counts once.
pub fn pairs_of(products: &[ProductId]) -> Vec<(ProductId, ProductId)> {
    let distinct: BTreeSet<&ProductId> = products.iter().collect();
    let mut pairs = Vec::new();
    for a in &distinct {
        for b in &distinct {
            if a != b {
                pairs.push(((*a).clone(), (*b).clone()));
            }
        }
    }
    pairs
}

/// What the service knows of a product from the catalog and inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    pub sku: String,
    pub category: String,
    pub deleted: bool,
    /// Units available over every warehouse, as inventory last said;
    /// `None` when it has said nothing of the SKU.
    pub available: Option<i64>,
}

impl Fact {
    /// Only a product that exists and that inventory says it can sell.
    fn offerable(&self) -> bool {
        !self.deleted && self.available.is_some_and(|n| n > 0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    AlsoBought,
    BestSeller,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AlsoBought => "also_bought",
            Reason::BestSeller => "best_seller",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub product_id: String,
    pub sku: String,
    pub category: String,
    pub score: i64,
    pub reason: Reason,
}

/// Ranks "also bought" candidates by how often they were bought together
/// (then by id, so that equal scores answer alike every time), fills what
/// is left with best sellers, and leaves out every excluded product (the
/// asked one, the caller's own purchases) and every one that is deleted,
/// unknown or out of stock.
pub fn rank(
    also_bought: &[(String, i64)],
    best_sellers: &[(String, i64)],
    facts: &HashMap<String, Fact>,
    exclude: &HashSet<String>,
    limit: Limit,
) -> Vec<Recommendation> {
    let mut also: Vec<&(String, i64)> = also_bought.iter().filter(|(_, n)| *n > 0).collect();
    also.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut best: Vec<&(String, i64)> = best_sellers.iter().collect();
    best.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut chosen = Vec::new();
    let mut seen = HashSet::new();
    let ordered = also
        .into_iter()
        .map(|c| (c, Reason::AlsoBought))
        .chain(best.into_iter().map(|c| (c, Reason::BestSeller)));
    for ((id, score), reason) in ordered {
        if chosen.len() == limit.get() {
            break;
        }
        if exclude.contains(id) || !seen.insert(id.as_str()) {
            continue;
        }
        let Some(fact) = facts.get(id).filter(|f| f.offerable()) else {
            continue;
        };
        chosen.push(Recommendation {
            product_id: id.clone(),
            sku: fact.sku.clone(),
            category: fact.category.clone(),
            score: *score,
            reason,
        });
    }
    chosen
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    fn fact(available: i64, deleted: bool) -> Fact {
        Fact {
            sku: "SKU".into(),
            category: "books".into(),
            deleted,
            available: Some(available),
        }
    }

    #[test]
    fn ids_and_limits_are_parsed_at_the_boundary() {
        let id = ProductId::parse("0190F1A2-0000-7000-8000-000000000001").unwrap();
        assert_eq!(id.as_str(), "0190f1a2-0000-7000-8000-000000000001");
        assert!(ProductId::parse("not-a-uuid").is_err());
        assert!(ProductId::parse("").is_err());
        assert_eq!(Limit::parse(None).unwrap().get(), 10);
        assert_eq!(Limit::parse(Some("50")).unwrap().get(), 50);
        for bad in ["", "0", "51", "-1", "ten", "1.5", "99999999999999999999"] {
            assert!(Limit::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_order_teaches_each_distinct_pair_both_ways() {
        let a = ProductId::parse("00000000-0000-7000-8000-00000000000a").unwrap();
        let b = ProductId::parse("00000000-0000-7000-8000-00000000000b").unwrap();
        let pairs = pairs_of(&[a.clone(), b.clone(), a.clone()]);
        assert_eq!(pairs, vec![(a.clone(), b.clone()), (b, a.clone())]);
        assert!(pairs_of(&[a]).is_empty());
    }

    #[test]
    fn ranking_prefers_co_purchases_then_best_sellers_and_skips_what_cannot_be_sold() {
        let facts: HashMap<String, Fact> = [
            ("b".to_owned(), fact(3, false)),
            ("c".to_owned(), fact(0, false)),
            ("d".to_owned(), fact(5, true)),
            ("e".to_owned(), fact(1, false)),
            ("f".to_owned(), fact(9, false)),
        ]
        .into();
        let also = [
            ("c".to_owned(), 9),
            ("b".to_owned(), 4),
            ("d".to_owned(), 8),
        ];
        let best = [
            ("f".to_owned(), 2),
            ("e".to_owned(), 7),
            ("b".to_owned(), 1),
        ];
        let exclude: HashSet<String> = ["a".to_owned()].into();
        let ranked = rank(&also, &best, &facts, &exclude, Limit::new(3).unwrap());
        let ids: Vec<(&str, Reason)> = ranked
            .iter()
            .map(|r| (r.product_id.as_str(), r.reason))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("b", Reason::AlsoBought),
                ("e", Reason::BestSeller),
                ("f", Reason::BestSeller)
            ]
        );
    }

    proptest! {
        #[test]
        fn a_ranking_never_holds_an_excluded_unsellable_or_repeated_product(
            also in proptest::collection::vec((0u8..12, 0i64..20), 0..30),
            best in proptest::collection::vec((0u8..12, 0i64..20), 0..30),
            stock in proptest::collection::vec((-2i64..4, any::<bool>()), 12),
            excluded in proptest::collection::hash_set(0u8..12, 0..4),
            limit in 1i64..=50,
        ) {
            let name = |n: u8| format!("p{n}");
            let facts: HashMap<String, Fact> = stock
                .iter()
                .enumerate()
                .map(|(i, (available, deleted))| (name(i as u8), fact(*available, *deleted)))
                .collect();
            let also: Vec<(String, i64)> = also.into_iter().map(|(p, n)| (name(p), n)).collect();
            let best: Vec<(String, i64)> = best.into_iter().map(|(p, n)| (name(p), n)).collect();
            let exclude: HashSet<String> = excluded.into_iter().map(name).collect();
            let ranked = rank(&also, &best, &facts, &exclude, Limit::new(limit).unwrap());
            prop_assert!(ranked.len() <= limit as usize);
            let mut seen = HashSet::new();
            for r in &ranked {
                prop_assert!(!exclude.contains(&r.product_id));
                prop_assert!(seen.insert(r.product_id.clone()));
                let f = &facts[&r.product_id];
                prop_assert!(!f.deleted && f.available.unwrap_or(0) > 0);
            }
            let scores: Vec<i64> = ranked
                .iter()
                .filter(|r| r.reason == Reason::AlsoBought)
                .map(|r| r.score)
                .collect();
            prop_assert!(scores.windows(2).all(|w| w[0] >= w[1]));
        }
    }
}
