//! The demo catalog `emporium up` starts with: categories, products and a
//! generated picture for each.

use bytes::Bytes;

use emporium_platform::money::MoneyJson;

use crate::domain::{CategoryInput, ProductDraft, ProductInput};
use crate::products::{Catalog, CatalogError};

const CATEGORIES: &[(&str, &str)] = &[
    ("kitchen", "Kitchen"),
    ("books", "Books"),
    ("outdoor", "Outdoor"),
    ("electronics", "Electronics"),
    ("apparel", "Apparel"),
    ("home", "Home"),
];

/// (sku, name, description, price, category)
const PRODUCTS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "KIT-001",
        "Enamel Coffee Mug",
        "A chip-resistant enamel mug that keeps coffee hot on the trail or the desk.",
        "14.00",
        "kitchen",
    ),
    (
        "KIT-002",
        "Cast Iron Skillet",
        "Pre-seasoned ten inch skillet for searing, baking and frying.",
        "39.50",
        "kitchen",
    ),
    (
        "KIT-003",
        "Pour Over Coffee Dripper",
        "Ceramic dripper for a clean, bright cup of coffee.",
        "24.00",
        "kitchen",
    ),
    (
        "KIT-004",
        "Chef Knife",
        "Eight inch stainless steel chef knife with a full tang.",
        "89.00",
        "kitchen",
    ),
    (
        "KIT-005",
        "Bamboo Cutting Board",
        "Durable bamboo board that is gentle on knife edges.",
        "22.50",
        "kitchen",
    ),
    (
        "KIT-006",
        "Glass Tea Kettle",
        "Borosilicate kettle with a removable loose leaf tea infuser.",
        "31.00",
        "kitchen",
    ),
    (
        "KIT-007",
        "Spice Grinder",
        "Electric grinder for coffee beans and whole spices.",
        "27.99",
        "kitchen",
    ),
    (
        "BOK-001",
        "Designing Data Systems",
        "A practical guide to reliable, scalable and maintainable data systems.",
        "45.00",
        "books",
    ),
    (
        "BOK-002",
        "The Rust Handbook",
        "Ownership, lifetimes and fearless concurrency explained with examples.",
        "39.00",
        "books",
    ),
    (
        "BOK-003",
        "Microservice Patterns",
        "Sagas, outboxes and event sourcing for distributed commerce.",
        "42.00",
        "books",
    ),
    (
        "BOK-004",
        "Field Guide to Birds",
        "Illustrated guide to the birds of forests, coasts and cities.",
        "19.95",
        "books",
    ),
    (
        "BOK-005",
        "Slow Cooking",
        "One hundred recipes for the weekend and the cast iron pot.",
        "28.00",
        "books",
    ),
    (
        "BOK-006",
        "Night Sky Atlas",
        "Star charts and planet tables for the amateur astronomer.",
        "33.00",
        "books",
    ),
    (
        "OUT-001",
        "Trail Running Shoes",
        "Lightweight shoes with a grippy outsole for muddy trails.",
        "129.00",
        "outdoor",
    ),
    (
        "OUT-002",
        "Two Person Tent",
        "Freestanding backpacking tent with a full rain fly.",
        "249.00",
        "outdoor",
    ),
    (
        "OUT-003",
        "Insulated Water Bottle",
        "Keeps water cold for a day and coffee hot for twelve hours.",
        "29.00",
        "outdoor",
    ),
    (
        "OUT-004",
        "Headlamp",
        "Rechargeable 400 lumen headlamp with a red night mode.",
        "34.99",
        "outdoor",
    ),
    (
        "OUT-005",
        "Down Sleeping Bag",
        "Warm and packable sleeping bag rated to minus five degrees.",
        "199.00",
        "outdoor",
    ),
    (
        "OUT-006",
        "Trekking Poles",
        "Collapsible carbon trekking poles with cork grips.",
        "79.00",
        "outdoor",
    ),
    (
        "OUT-007",
        "Camping Stove",
        "Compact gas stove that boils a litre of water in three minutes.",
        "54.00",
        "outdoor",
    ),
    (
        "ELE-001",
        "Wireless Headphones",
        "Noise cancelling over ear headphones with thirty hour battery.",
        "199.99",
        "electronics",
    ),
    (
        "ELE-002",
        "Mechanical Keyboard",
        "Tenkeyless keyboard with hot swappable tactile switches.",
        "119.00",
        "electronics",
    ),
    (
        "ELE-003",
        "USB-C Charger",
        "Sixty five watt gallium nitride charger with two ports.",
        "45.00",
        "electronics",
    ),
    (
        "ELE-004",
        "Portable Speaker",
        "Waterproof bluetooth speaker with deep bass.",
        "69.00",
        "electronics",
    ),
    (
        "ELE-005",
        "E-Reader",
        "Glare free six inch display and weeks of battery life.",
        "129.99",
        "electronics",
    ),
    (
        "ELE-006",
        "Smart Watch",
        "Fitness tracking, heart rate and sleep monitoring on the wrist.",
        "249.00",
        "electronics",
    ),
    (
        "ELE-007",
        "Wireless Mouse",
        "Ergonomic mouse with silent clicks and a rechargeable battery.",
        "39.00",
        "electronics",
    ),
    (
        "APP-001",
        "Merino Wool Sweater",
        "Soft merino crew neck sweater for cool evenings.",
        "95.00",
        "apparel",
    ),
    (
        "APP-002",
        "Rain Jacket",
        "Breathable waterproof shell with taped seams.",
        "149.00",
        "apparel",
    ),
    (
        "APP-003",
        "Organic Cotton T-Shirt",
        "Classic fit t-shirt made from organic cotton.",
        "25.00",
        "apparel",
    ),
    (
        "APP-004",
        "Wool Hiking Socks",
        "Cushioned merino socks for long days on the trail.",
        "18.00",
        "apparel",
    ),
    (
        "APP-005",
        "Canvas Backpack",
        "Twenty litre canvas backpack with a padded laptop sleeve.",
        "75.00",
        "apparel",
    ),
    (
        "APP-006",
        "Leather Belt",
        "Full grain leather belt with a brass buckle.",
        "49.00",
        "apparel",
    ),
    (
        "HOM-001",
        "Linen Bed Sheets",
        "Stone washed linen sheet set for a queen bed.",
        "159.00",
        "home",
    ),
    (
        "HOM-002",
        "Ceramic Table Lamp",
        "Hand glazed ceramic lamp with a linen shade.",
        "89.00",
        "home",
    ),
    (
        "HOM-003",
        "Scented Candle",
        "Soy wax candle with notes of cedar and vanilla.",
        "22.00",
        "home",
    ),
    (
        "HOM-004",
        "Wool Throw Blanket",
        "Warm wool throw woven in a herringbone pattern.",
        "85.00",
        "home",
    ),
    (
        "HOM-005",
        "Indoor Plant Pot",
        "Terracotta pot with a drainage saucer.",
        "16.50",
        "home",
    ),
    (
        "HOM-006",
        "Wall Clock",
        "Minimal oak wall clock with a silent sweep movement.",
        "45.00",
        "home",
    ),
    (
        "HOM-007",
        "Cotton Bath Towels",
        "Set of two thick and absorbent cotton bath towels.",
        "39.00",
        "home",
    ),
];

/// Fills an empty catalog; does nothing to one that has products.
pub async fn seed_demo(catalog: &Catalog) -> Result<usize, CatalogError> {
    if !catalog.is_empty().await? {
        return Ok(0);
    }
    for (slug, name) in CATEGORIES {
        let input = CategoryInput {
            slug: (*slug).into(),
            name: (*name).into(),
        };
        match catalog.create_category(&input).await {
            Ok(_) | Err(CatalogError::DuplicateCategory(_)) => {}
            Err(e) => return Err(e),
        }
    }
    for (index, (sku, name, description, price, category)) in PRODUCTS.iter().enumerate() {
        let input = ProductInput {
            sku: (*sku).into(),
            name: (*name).into(),
            description: (*description).into(),
            price: MoneyJson {
                amount: (*price).into(),
                currency: "USD".into(),
            },
            category: (*category).into(),
        };
        let draft = ProductDraft::parse(&input).map_err(CatalogError::Invalid)?;
        let product = catalog.create(&draft).await?;
        catalog.add_image(product.id, picture(index)).await?;
    }
    Ok(PRODUCTS.len())
}

/// A 96×96 gradient PNG in a colour of its own.
pub fn picture(seed: usize) -> Bytes {
    const SIZE: usize = 96;
    let hue = (seed * 47 % 360) as f32;
    let (r, g, b) = hsv(hue, 0.55, 0.9);
    let mut raw = Vec::with_capacity(SIZE * (SIZE * 3 + 1));
    for y in 0..SIZE {
        raw.push(0);
        for x in 0..SIZE {
            let shade = 0.55 + 0.45 * (1.0 - ((x + y) as f32 / (2 * SIZE) as f32));
            raw.extend([(r * shade) as u8, (g * shade) as u8, (b * shade) as u8]);
        }
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend((SIZE as u32).to_be_bytes());
    header.extend((SIZE as u32).to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    Bytes::from(png)
}

fn hsv(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 / 60 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    ((r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend(kind);
    out.extend(data);
    let crc = crc32(&out[start..]);
    out.extend(crc.to_be_bytes());
}

/// zlib framing around uncompressed deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend(*block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend(((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc_matches_the_png_reference_value() {
        // CRC of the IEND chunk type, fixed by the PNG specification.
        assert_eq!(super::crc32(b"IEND"), 0xAE42_6082);
        assert!(crate::domain::ImageFormat::sniff(&super::picture(3)).is_some());
    }
}
