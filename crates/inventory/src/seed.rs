//! Demo stock for the demo catalog: each of its SKUs over two warehouses,
//! a few of them below or just above their threshold.

use crate::domain::{AdjustInput, Adjustment};
use crate::stock::{Actor, Inventory, InventoryError};

/// The demo catalog's SKU families and how many of each it has
/// (`KIT-001` … `KIT-007`, …).
const FAMILIES: &[(&str, usize)] = &[
    ("KIT", 7),
    ("BOK", 6),
    ("OUT", 7),
    ("ELE", 7),
    ("APP", 6),
    ("HOM", 7),
];

/// Units in the first and second warehouse for the `index`-th SKU: most
/// have plenty, every sixth is low (4 in all) and the next one is just
/// above a threshold of 5 (6 in all).
fn units(index: usize) -> (i64, i64) {
    match index % 6 {
        0 => (3, 1),
        1 => (6, 0),
        _ => (10 + (index as i64 * 7) % 40, 5 + (index as i64 * 11) % 30),
    }
}

/// Stocks the demo SKUs when no stock has moved yet; returns how many
/// adjustments it made.
pub async fn seed_demo(inventory: &Inventory) -> Result<usize, InventoryError> {
    if !inventory.never_moved().await? {
        return Ok(0);
    }
    let warehouses = inventory.policy().warehouses.clone();
    let actor = Actor::new("seed", "demo stock");
    let mut made = 0;
    let skus = FAMILIES
        .iter()
        .flat_map(|(family, n)| (1..=*n).map(move |i| format!("{family}-{i:03}")));
    for (index, sku) in skus.enumerate() {
        let (first, second) = units(index);
        for (warehouse, delta) in warehouses.iter().zip([first, second]) {
            if delta == 0 {
                continue;
            }
            let adjustment = Adjustment::parse(&AdjustInput {
                sku: Some(sku.clone()),
                warehouse: Some(warehouse.as_str().into()),
                delta: Some(delta),
                reason: Some("demo stock".into()),
                threshold: None,
            })
            .map_err(|e| InventoryError::Refused(format!("demo stock: {e:?}")))?;
            inventory.adjust(&adjustment, &actor).await?;
            made += 1;
        }
    }
    Ok(made)
}
