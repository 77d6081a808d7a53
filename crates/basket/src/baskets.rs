//! Use cases: read a basket checked against the catalog, change it without
//! losing a concurrent change, and empty it with its event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use emporium_platform::bus::{Envelope, Outbox};
use emporium_platform::db::{self, Db};
use emporium_platform::grpc::{Peer, PeerError};
use emporium_platform::money::{Money, MoneyJson};
use emporium_platform::sku::Sku;
use emporium_platform::{FieldError, Problem};
use emporium_proto::catalog::v1 as catalog;
use sea_orm::{DatabaseTransaction, DbErr};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Addition, Basket, BasketError, Check, Line, Offer, Owner, Stored};
use crate::events;
use crate::store::{BasketStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BasketsError {
    #[error("{0}")]
    Rule(BasketError),
    #[error("no product has this id")]
    UnknownProduct,
    #[error("the basket changed too often at once; try again")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("cannot encode the event: {0}")]
    Encode(serde_json::Error),
}

impl From<BasketError> for BasketsError {
    fn from(e: BasketError) -> Self {
        BasketsError::Rule(e)
    }
}

impl From<BasketsError> for Problem {
    fn from(err: BasketsError) -> Self {
        match err {
            BasketsError::Rule(rule) => match rule {
                BasketError::NotInBasket => Problem::not_found(rule.to_string()),
                BasketError::Currency { .. } => Problem::conflict(rule.to_string()),
                BasketError::TooMany { .. } | BasketError::TooManyLines | BasketError::Overflow => {
                    Problem::invalid(vec![FieldError {
                        field: "quantity".into(),
                        message: rule.to_string(),
                    }])
                }
            },
            BasketsError::UnknownProduct => Problem::not_found(err.to_string()),
            BasketsError::Busy => Problem::conflict(err.to_string()),
            BasketsError::Store(e) => Problem::from(e),
            BasketsError::Peer(e) => Problem::from(e),
            BasketsError::Db(e) => Problem::from(e),
            BasketsError::Encode(_) => Problem::internal(err),
        }
    }
}

pub type Result<T, E = BasketsError> = std::result::Result<T, E>;

/// A line as clients see it, with how it compares with the catalog now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemView {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub unit_price: MoneyJson,
    pub quantity: i64,
    pub subtotal: MoneyJson,
    /// `current`, `price_changed`, `unavailable` (gone from the catalog) or
    /// `unchecked` (the catalog could not be asked).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_price: Option<MoneyJson>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BasketView {
    pub user_id: String,
    pub items: Vec<ItemView>,
    /// The sum at the prices held; absent for an empty basket.
    pub total: Option<MoneyJson>,
    pub item_count: i64,
    /// Whether the lines were compared with the catalog just now.
    pub checked: bool,
    pub updated_at: Option<chrono::DateTime<Utc>>,
}

pub fn view(owner: &Owner, basket: &Basket, checks: &HashMap<Uuid, Check>) -> BasketView {
    let items = basket
        .lines
        .iter()
        .map(|line| {
            let check = checks.get(&line.product_id).unwrap_or(&Check::Unchecked);
            let (status, current_price) = match check {
                Check::Current => ("current", None),
                Check::PriceChanged(price) => ("price_changed", Some(price.to_json())),
                Check::Unavailable => ("unavailable", None),
                Check::Unchecked => ("unchecked", None),
            };
            ItemView {
                product_id: line.product_id.to_string(),
                sku: line.sku.as_str().into(),
                name: line.name.clone(),
                unit_price: line.unit_price.to_json(),
                quantity: line.quantity,
                subtotal: line.subtotal().unwrap_or(line.unit_price).to_json(),
                status: status.into(),
                current_price,
            }
        })
        .collect();
    BasketView {
        user_id: owner.as_str().into(),
        items,
        total: basket.total().map(Money::to_json),
        item_count: basket.lines.iter().map(|l| l.quantity).sum(),
        checked: !basket.lines.is_empty()
            && basket.lines.iter().all(|l| {
                checks
                    .get(&l.product_id)
                    .is_some_and(|c| *c != Check::Unchecked)
            }),
        updated_at: basket.updated_at,
    }
}

fn offer(product: catalog::Product) -> Option<Offer> {
    Some(Offer {
        product_id: Uuid::parse_str(&product.id).ok()?,
        sku: Sku::parse(&product.sku).ok()?,
        name: product.name,
        price: Money::try_from(product.price.as_ref()?).ok()?,
    })
}

#[derive(Clone)]
pub struct Baskets {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn BasketStore>,
    db: Db,
    outbox: Outbox,
    catalog: Peer,
}

impl Baskets {
    pub fn new(store: Arc<dyn BasketStore>, db: Db, outbox: Outbox, catalog: Peer) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                db,
                outbox,
                catalog,
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The catalog's products among `ids`, in one call; ids it does not
    /// know are left out.
    async fn offers(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Offer>, PeerError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let request = catalog::GetProductsRequest {
            ids: ids.iter().map(ToString::to_string).collect(),
        };
        let answer = self
            .inner
            .catalog
            .call("GetProducts", true, |channel| {
                let request = request.clone();
                async move {
                    catalog::catalog_client::CatalogClient::new(channel)
                        .get_products(request)
                        .await
                }
            })
            .await?;
        Ok(answer
            .products
            .into_iter()
            .filter_map(offer)
            .map(|o| (o.product_id, o))
            .collect())
    }

    /// How each line compares with `offers`.
    fn checks(basket: &Basket, offers: &HashMap<Uuid, Offer>) -> HashMap<Uuid, Check> {
        basket
            .lines
            .iter()
            .map(|line: &Line| {
                let check = match offers.get(&line.product_id) {
                    None => Check::Unavailable,
                    Some(o) if o.price == line.unit_price => Check::Current,
                    Some(o) => Check::PriceChanged(o.price),
                };
                (line.product_id, check)
            })
            .collect()
    }

    /// The basket as held, without asking the catalog.
    pub async fn held(&self, owner: &Owner) -> Result<Basket> {
        let versioned = self.inner.store.load(owner.as_str()).await?;
        match versioned.basket {
            Some(stored) => Basket::try_from(stored).map_err(|e| StoreError::Corrupt(e).into()),
            None => Ok(Basket::default()),
        }
    }

    /// The basket with each line compared with the catalog; when the
    /// catalog cannot answer, as held (lines `unchecked`).
    pub async fn view(&self, owner: &Owner) -> Result<BasketView> {
        let basket = self.held(owner).await?;
        Ok(self.checked_view(owner, &basket).await)
    }

    async fn checked_view(&self, owner: &Owner, basket: &Basket) -> BasketView {
        let ids: Vec<Uuid> = basket.lines.iter().map(|l| l.product_id).collect();
        let checks = match self.offers(&ids).await {
            Ok(offers) => Self::checks(basket, &offers),
            Err(e) => {
                tracing::warn!(error = %e, "basket shown unchecked");
                HashMap::new()
            }
        };
        view(owner, basket, &checks)
    }

    /// Makes an empty basket unless there is one; true when it made it.
    pub async fn create(&self, owner: &Owner) -> Result<(bool, BasketView)> {
        if self
            .inner
            .store
            .load(owner.as_str())
            .await?
            .basket
            .is_some()
        {
            return Ok((false, self.view(owner).await?));
        }
        let mut made = false;
        let basket = self
            .change(owner, |_, existed| {
                made = !existed;
                Ok(())
            })
            .await?;
        Ok((made, self.checked_view(owner, &basket).await))
    }

    /// Adds a product at the catalog's price now. Fails fast when the
    /// catalog cannot be asked.
    pub async fn add(&self, owner: &Owner, addition: &Addition) -> Result<BasketView> {
        let held = self.held(owner).await?;
        let mut ids: Vec<Uuid> = held.lines.iter().map(|l| l.product_id).collect();
        if !ids.contains(&addition.product_id) {
            ids.push(addition.product_id);
        }
        let offers = self.offers(&ids).await?;
        let product = offers
            .get(&addition.product_id)
            .ok_or(BasketsError::UnknownProduct)?;
        let basket = self
            .change(owner, |basket, _| {
                basket.add(product, addition.quantity)?;
                Ok(())
            })
            .await?;
        metrics::counter!("basket_items_added_total").increment(addition.quantity as u64);
        Ok(view(owner, &basket, &Self::checks(&basket, &offers)))
    }

    /// Sets a line's quantity (0 removes it).
    pub async fn set_quantity(
        &self,
        owner: &Owner,
        product_id: Uuid,
        quantity: i64,
    ) -> Result<BasketView> {
        let basket = self
            .change(owner, |basket, _| {
                basket.set_quantity(product_id, quantity)?;
                Ok(())
            })
            .await?;
        Ok(self.checked_view(owner, &basket).await)
    }

    /// Reads, changes and writes the basket until no concurrent change
    /// came in between. `change` is told whether a basket existed.
    async fn change<F>(&self, owner: &Owner, mut change: F) -> Result<Basket>
    where
        F: FnMut(&mut Basket, bool) -> Result<()>,
    {
        for attempt in 0..200u64 {
            let versioned = self.inner.store.load(owner.as_str()).await?;
            let existed = versioned.basket.is_some();
            let mut basket = match versioned.basket {
                Some(stored) => Basket::try_from(stored).map_err(StoreError::Corrupt)?,
                None => Basket::default(),
            };
            change(&mut basket, existed)?;
            basket.updated_at = Some(Utc::now());
            if self
                .inner
                .store
                .save(owner.as_str(), &Stored::from(&basket), versioned.version)
                .await?
            {
                return Ok(basket);
            }
            metrics::counter!("basket_write_conflicts_total").increment(1);
            let pause = attempt.min(20) + u64::from(db::jitter(4));
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        Err(BasketsError::Busy)
    }

    /// Empties the basket and records `basket.cleared`, answered only once
    /// both are done (decision 0007).
    pub async fn clear(&self, owner: &Owner, reason: &str) -> Result<()> {
        let txn = db::begin_write(&self.inner.db).await?;
        self.clear_within(&txn, owner, reason, None).await?;
        txn.commit().await?;
        self.inner.outbox.wake();
        Ok(())
    }

    /// The event first, then the store, both before `txn` commits: a
    /// failure of either rolls the event back, and doing it again is safe.
    pub(crate) async fn clear_within(
        &self,
        txn: &DatabaseTransaction,
        owner: &Owner,
        reason: &str,
        order_id: Option<&str>,
    ) -> Result<()> {
        self.announce_cleared(txn, owner, reason, order_id).await?;
        self.inner.store.delete(owner.as_str(), txn).await?;
        Ok(())
    }

    /// Records `basket.cleared` in `txn`, and counts it.
    pub(crate) async fn announce_cleared(
        &self,
        txn: &DatabaseTransaction,
        owner: &Owner,
        reason: &str,
        order_id: Option<&str>,
    ) -> Result<()> {
        let event: Envelope =
            events::cleared(owner, reason, order_id).map_err(BasketsError::Encode)?;
        self.inner.outbox.enqueue(txn, &event).await?;
        metrics::counter!("baskets_cleared_total", "reason" => reason.to_owned()).increment(1);
        Ok(())
    }

    /// Takes what order `order_id` bought out of `owner`'s basket, once
    /// however often asked (the basket remembers the order), by the same
    /// compare-and-set as any change: what the customer added meanwhile
    /// stays. Whether the basket is empty afterwards.
    pub async fn settle(
        &self,
        owner: &Owner,
        order_id: &str,
        bought: &[(Uuid, i64)],
    ) -> Result<bool> {
        let basket = self
            .change(owner, |basket, _| {
                basket.settle(order_id, bought);
                Ok(())
            })
            .await?;
        Ok(basket.lines.is_empty())
    }

    pub(crate) fn wake(&self) {
        self.inner.outbox.wake();
    }
}
