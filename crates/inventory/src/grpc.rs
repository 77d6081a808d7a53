//! The gRPC face of the same use cases, for ordering's checkout.

use emporium_platform::Problem;
use emporium_platform::grpc::{Admission, Callers, CallingService};
use emporium_proto::inventory::v1 as pb;
use tonic::{Request, Response, Status};

use crate::domain::{LineInput, Reservation, ReserveInput, ReserveRequest};
use crate::http::{reservation_id, sku_param};
use crate::stock::{Actor, Inventory, Settle};

/// Only the checkout moves stock; readers see it.
const CHECKOUT: &[&str] = &["ordering"];
const READERS: &[&str] = &["ordering", "basket", "storefront", "recommendation"];

pub const ADMISSION: Admission = &[
    (
        "/emporium.inventory.v1.Inventory/Reserve",
        Callers::Services(CHECKOUT),
    ),
    (
        "/emporium.inventory.v1.Inventory/Release",
        Callers::Services(CHECKOUT),
    ),
    (
        "/emporium.inventory.v1.Inventory/Commit",
        Callers::Services(CHECKOUT),
    ),
    (
        "/emporium.inventory.v1.Inventory/GetStock",
        Callers::Services(READERS),
    ),
];

pub struct InventoryGrpc {
    pub inventory: Inventory,
}

fn to_pb(r: Reservation) -> pb::Reservation {
    pb::Reservation {
        id: r.id.to_string(),
        status: r.status.as_str().into(),
        allocations: r
            .allocations
            .into_iter()
            .map(|a| pb::Allocation {
                sku: a.sku.as_str().into(),
                warehouse: a.warehouse.as_str().into(),
                quantity: a.quantity,
            })
            .collect(),
        expires_at: r.expires_at.to_rfc3339(),
        reference: r.reference,
    }
}

impl InventoryGrpc {
    /// Who is calling, for the ledger: the service the gRPC gate admitted.
    fn caller<T>(request: &Request<T>) -> Result<String, Status> {
        request
            .extensions()
            .get::<CallingService>()
            .map(|caller| format!("service:{}", caller.0))
            .ok_or_else(|| Status::unauthenticated("a service token is required"))
    }

    async fn settle(
        &self,
        request: Request<pb::ReservationRequest>,
        how: Settle,
        why: &str,
    ) -> Result<Response<pb::Reservation>, Status> {
        let who = Self::caller(&request)?;
        let id = reservation_id(&request.get_ref().reservation_id)?;
        let reservation = self
            .inventory
            .settle(id, how, &Actor::new(who, why))
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(to_pb(reservation)))
    }
}

#[tonic::async_trait]
impl pb::inventory_server::Inventory for InventoryGrpc {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let who = Self::caller(&request)?;
        let message = request.into_inner();
        let input = ReserveInput {
            reservation_id: Some(message.reservation_id),
            lines: Some(
                message
                    .lines
                    .into_iter()
                    .map(|l| LineInput {
                        sku: Some(l.sku),
                        quantity: Some(l.quantity),
                    })
                    .collect(),
            ),
            ttl_secs: (message.ttl_secs != 0).then_some(message.ttl_secs),
            reference: Some(message.reference),
        };
        let request = ReserveRequest::parse(&input).map_err(Problem::invalid)?;
        let actor = Actor::new(who, format!("reserved for {}", request.reference));
        let reservation = self
            .inventory
            .reserve(&request, &actor)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(to_pb(reservation)))
    }

    async fn release(
        &self,
        request: Request<pb::ReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        self.settle(request, Settle::Release, "released on request")
            .await
    }

    async fn commit(
        &self,
        request: Request<pb::ReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        self.settle(request, Settle::Commit, "its order was confirmed")
            .await
    }

    async fn get_stock(
        &self,
        request: Request<pb::GetStockRequest>,
    ) -> Result<Response<pb::GetStockResponse>, Status> {
        let raw = &request.get_ref().skus;
        if raw.len() > 500 {
            return Err(Status::invalid_argument("at most 500 skus per call"));
        }
        let skus = raw
            .iter()
            .map(|s| sku_param(s))
            .collect::<Result<Vec<_>, _>>()?;
        let levels = self
            .inventory
            .levels(&skus)
            .await
            .map_err(Problem::from)?
            .into_iter()
            .map(|l| pb::StockLevel {
                sku: l.sku,
                warehouse: l.warehouse,
                on_hand: l.on_hand,
                reserved: l.reserved,
                available: l.available,
            })
            .collect();
        Ok(Response::new(pb::GetStockResponse { levels }))
    }
}
