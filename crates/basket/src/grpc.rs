//! The gRPC face of the same use cases, for the services of a checkout.

use emporium_platform::Problem;
use emporium_platform::grpc::{Admission, Callers};
use emporium_platform::money::Money;
use emporium_proto::basket::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::baskets::Baskets;
use crate::domain::{Basket, Owner};

/// The checkout reads and empties a basket; the storefront reads one.
pub const ADMISSION: Admission = &[
    (
        "/emporium.basket.v1.Baskets/GetBasket",
        Callers::Services(&["ordering", "storefront"]),
    ),
    (
        "/emporium.basket.v1.Baskets/ClearBasket",
        Callers::Services(&["ordering"]),
    ),
    (
        "/emporium.basket.v1.Baskets/SettleOrder",
        Callers::Services(&["ordering"]),
    ),
];

pub struct BasketGrpc {
    pub baskets: Baskets,
}

fn to_pb(owner: &Owner, basket: Basket) -> pb::Basket {
    pb::Basket {
        user_id: owner.as_str().into(),
        total: basket.total().map(Into::into),
        updated_at: basket
            .updated_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        items: basket
            .lines
            .into_iter()
            .map(|line| pb::Item {
                product_id: line.product_id.to_string(),
                sku: line.sku.as_str().into(),
                subtotal: line.subtotal().map(Money::into),
                name: line.name,
                unit_price: Some(line.unit_price.into()),
                quantity: line.quantity,
            })
            .collect(),
    }
}

impl BasketGrpc {
    /// The basket named by the request: the gRPC gate has admitted the
    /// calling service, which acts for that user.
    fn owner(user_id: &str) -> Result<Owner, Status> {
        Owner::parse(user_id).map_err(|m| Status::invalid_argument(format!("user_id {m}")))
    }
}

#[tonic::async_trait]
impl pb::baskets_server::Baskets for BasketGrpc {
    async fn get_basket(
        &self,
        request: Request<pb::BasketRequest>,
    ) -> Result<Response<pb::Basket>, Status> {
        let owner = Self::owner(&request.get_ref().user_id)?;
        let basket = self.baskets.held(&owner).await.map_err(Problem::from)?;
        Ok(Response::new(to_pb(&owner, basket)))
    }

    async fn clear_basket(
        &self,
        request: Request<pb::BasketRequest>,
    ) -> Result<Response<pb::ClearBasketResponse>, Status> {
        let owner = Self::owner(&request.get_ref().user_id)?;
        self.baskets
            .clear(&owner, "cleared")
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(pb::ClearBasketResponse {}))
    }

    async fn settle_order(
        &self,
        request: Request<pb::SettleOrderRequest>,
    ) -> Result<Response<pb::SettleOrderResponse>, Status> {
        let request = request.into_inner();
        let owner = Self::owner(&request.user_id)?;
        if request.order_id.is_empty() || request.order_id.len() > 64 {
            return Err(Status::invalid_argument(
                "order_id must be 1 to 64 characters",
            ));
        }
        let bought = request
            .lines
            .iter()
            .map(|line| {
                let product = Uuid::parse_str(&line.product_id).map_err(|_| {
                    Status::invalid_argument(format!(
                        "product_id {:?} is not a UUID",
                        line.product_id
                    ))
                })?;
                if line.quantity < 1 {
                    return Err(Status::invalid_argument("a quantity is at least 1"));
                }
                Ok((product, line.quantity))
            })
            .collect::<Result<Vec<_>, Status>>()?;
        self.baskets
            .settle(&owner, &request.order_id, &bought)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(pb::SettleOrderResponse {}))
    }
}
