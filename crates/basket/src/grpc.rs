//! The gRPC face of the same use cases, for the services of a checkout.

use emporium_platform::Problem;
use emporium_platform::auth::Verifier;
use emporium_platform::money::Money;
use emporium_proto::basket::v1 as pb;
use tonic::{Request, Response, Status};

use crate::baskets::Baskets;
use crate::domain::{Basket, Owner};

pub struct BasketGrpc {
    pub baskets: Baskets,
    pub verifier: Verifier,
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
    /// The basket named by the request; a token, when sent, must be its
    /// owner's or an admin's.
    async fn owner(&self, request: &Request<pb::BasketRequest>) -> Result<Owner, Status> {
        let raw = &request.get_ref().user_id;
        match request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            Some(header) => {
                let claims = self.verifier.authenticate(Some(header)).await?;
                Ok(crate::http::owner(&claims, raw)?)
            }
            None => Owner::parse(raw).map_err(|m| Status::invalid_argument(format!("user_id {m}"))),
        }
    }
}

#[tonic::async_trait]
impl pb::baskets_server::Baskets for BasketGrpc {
    async fn get_basket(
        &self,
        request: Request<pb::BasketRequest>,
    ) -> Result<Response<pb::Basket>, Status> {
        let owner = self.owner(&request).await?;
        let basket = self.baskets.held(&owner).await.map_err(Problem::from)?;
        Ok(Response::new(to_pb(&owner, basket)))
    }

    async fn clear_basket(
        &self,
        request: Request<pb::BasketRequest>,
    ) -> Result<Response<pb::ClearBasketResponse>, Status> {
        let owner = self.owner(&request).await?;
        self.baskets
            .clear(&owner, "cleared")
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(pb::ClearBasketResponse {}))
    }
}
