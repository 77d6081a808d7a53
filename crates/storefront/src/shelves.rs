//! What the pages show, asked of the services over their gRPC faces:
//! categories and products of the catalog, stock of inventory, "also
//! bought" of recommendation.

use emporium_platform::grpc::{Peer, PeerError};
use emporium_platform::money::Money;
use emporium_proto::catalog::v1 as catalog;
use emporium_proto::inventory::v1 as inventory;
use emporium_proto::recommendation::v1 as recommendation;
use serde::Serialize;

#[derive(Clone)]
pub struct Shelves {
    pub catalog: Peer,
    pub inventory: Peer,
    pub recommendation: Peer,
    /// The categories every page's header shows, kept a little while.
    pub categories: CategoryCache,
}

/// How long the header's categories are kept before the catalog is asked
/// again: a new category shows within this.
const CATEGORIES_KEPT: std::time::Duration = std::time::Duration::from_secs(30);

/// When the categories were asked, and what they were.
type Kept = Option<(std::time::Instant, Vec<Category>)>;

#[derive(Clone, Default)]
pub struct CategoryCache(std::sync::Arc<std::sync::Mutex<Kept>>);

/// Why a page cannot show what it asked for.
#[derive(Debug)]
pub enum Missing {
    /// A service behind the page is down or slow: its name.
    Unavailable(&'static str),
    /// The request was refused as asked (a bad filter): the service's words.
    Refused(String),
    NotFound,
}

impl From<PeerError> for Missing {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::Unavailable { peer, .. } => Missing::Unavailable(peer),
            PeerError::Refused { status, .. } => match status.code() {
                tonic::Code::NotFound => Missing::NotFound,
                tonic::Code::InvalidArgument => Missing::Refused(status.message().to_owned()),
                _ => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "a page's service refused");
                    Missing::Unavailable("catalog")
                }
            },
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Category {
    pub slug: String,
    pub name: String,
    pub count: u64,
}

/// A product as the pages show it.
#[derive(Clone, Debug, Serialize)]
pub struct Card {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    /// `39.00 USD`.
    pub price: String,
    pub category: String,
    /// The first picture's address, through the gateway.
    pub image: Option<String>,
    pub images: Vec<String>,
}

impl From<catalog::Product> for Card {
    fn from(p: catalog::Product) -> Self {
        let price = p
            .price
            .as_ref()
            .and_then(|m| Money::try_from(m).ok())
            .map(|m| format!("{} {}", m.amount(), m.currency))
            .unwrap_or_default();
        let images: Vec<String> = p
            .images
            .iter()
            .map(|name| format!("/api/v1/products/{}/images/{name}", p.id))
            .collect();
        Card {
            image: images.first().cloned(),
            images,
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            price,
            category: p.category,
        }
    }
}

/// A page of products.
#[derive(Clone, Debug, Serialize)]
pub struct Shelf {
    pub items: Vec<Card>,
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
}

impl Shelf {
    pub fn pages(&self) -> u64 {
        self.total.div_ceil(self.per_page.max(1)).max(1)
    }
}

/// How much of a product can be bought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    InStock,
    /// Fewer than five left: how many.
    Few(i64),
    OutOfStock,
    /// Inventory did not answer.
    Unknown,
}

impl Shelves {
    /// The catalog's categories, asked at most once in `CATEGORIES_KEPT`.
    pub async fn categories(&self) -> Result<Vec<Category>, Missing> {
        let kept = |cache: &CategoryCache| {
            let held = cache.0.lock().unwrap_or_else(|p| p.into_inner());
            held.as_ref()
                .filter(|(at, _)| at.elapsed() < CATEGORIES_KEPT)
                .map(|(_, list)| list.clone())
        };
        if let Some(list) = kept(&self.categories) {
            return Ok(list);
        }
        let answer = self
            .catalog
            .call("ListCategories", true, |channel| async move {
                catalog::catalog_client::CatalogClient::new(channel)
                    .list_categories(catalog::ListCategoriesRequest {})
                    .await
            })
            .await?;
        let list: Vec<Category> = answer
            .categories
            .into_iter()
            .map(|c| Category {
                slug: c.slug,
                name: c.name,
                count: c.product_count,
            })
            .collect();
        *self.categories.0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), list.clone()));
        Ok(list)
    }

    pub async fn list(&self, ask: catalog::ListProductsRequest) -> Result<Shelf, Missing> {
        let answer = self
            .catalog
            .call("ListProducts", true, |channel| {
                let ask = ask.clone();
                async move {
                    catalog::catalog_client::CatalogClient::new(channel)
                        .list_products(ask)
                        .await
                }
            })
            .await?;
        Ok(Shelf {
            items: answer.items.into_iter().map(Card::from).collect(),
            page: answer.page,
            per_page: answer.per_page,
            total: answer.total,
        })
    }

    pub async fn product(&self, id: &str) -> Result<Card, Missing> {
        let request = catalog::GetProductRequest { id: id.to_owned() };
        let product = self
            .catalog
            .call("GetProduct", true, |channel| {
                let request = request.clone();
                async move {
                    catalog::catalog_client::CatalogClient::new(channel)
                        .get_product(request)
                        .await
                }
            })
            .await?;
        Ok(product.into())
    }

    /// Units of `sku` available over every warehouse; `Unknown` when
    /// inventory does not answer, since a page shows a product anyway.
    pub async fn availability(&self, sku: &str) -> Availability {
        let request = inventory::GetStockRequest {
            skus: vec![sku.to_owned()],
        };
        let answer = self
            .inventory
            .call("GetStock", true, |channel| {
                let request = request.clone();
                async move {
                    inventory::inventory_client::InventoryClient::new(channel)
                        .get_stock(request)
                        .await
                }
            })
            .await;
        match answer {
            Ok(stock) => {
                let available: i64 = stock.levels.iter().map(|l| l.available.max(0)).sum();
                match available {
                    0 => Availability::OutOfStock,
                    n if n < 5 => Availability::Few(n),
                    _ => Availability::InStock,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "stock unknown on a product page");
                Availability::Unknown
            }
        }
    }

    /// Products bought with `product_id`, as cards; none when
    /// recommendation or the catalog does not answer.
    pub async fn also_bought(&self, product_id: &str) -> Vec<Card> {
        let request = recommendation::GetRecommendationsRequest {
            product_id: product_id.to_owned(),
            user_id: String::new(),
            limit: 4,
        };
        let answer = self
            .recommendation
            .call("GetRecommendations", true, |channel| {
                let request = request.clone();
                async move {
                    recommendation::recommendations_client::RecommendationsClient::new(channel)
                        .get_recommendations(request)
                        .await
                }
            })
            .await;
        let ids: Vec<String> = match answer {
            Ok(list) => list.items.into_iter().map(|r| r.product_id).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "no recommendations on a product page");
                return Vec::new();
            }
        };
        if ids.is_empty() {
            return Vec::new();
        }
        let request = catalog::GetProductsRequest { ids: ids.clone() };
        let products = self
            .catalog
            .call("GetProducts", true, |channel| {
                let request = request.clone();
                async move {
                    catalog::catalog_client::CatalogClient::new(channel)
                        .get_products(request)
                        .await
                }
            })
            .await;
        match products {
            // In the order recommendation ranked them.
            Ok(found) => ids
                .iter()
                .filter_map(|id| found.products.iter().find(|p| &p.id == id).cloned())
                .map(Card::from)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}
