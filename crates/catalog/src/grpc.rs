//! The gRPC face of the same use cases.

use emporium_platform::Problem;
use emporium_platform::auth::Verifier;
use emporium_proto::catalog::v1 as pb;
use tonic::{Request, Response, Status};

use crate::domain::{MoneyJson, ProductDraft, ProductInput};
use crate::http::product_id;
use crate::products::{Catalog, ProductView};

pub struct CatalogGrpc {
    pub catalog: Catalog,
    pub verifier: Verifier,
}

fn to_pb(view: ProductView) -> pb::Product {
    let amount_minor = view.price_minor();
    pb::Product {
        id: view.id,
        sku: view.sku,
        name: view.name,
        description: view.description,
        price: Some(pb::Money {
            amount_minor,
            currency: view.price.currency,
        }),
        category: view.category,
        images: view.images.into_iter().map(|i| i.name).collect(),
        created_at: view.created_at.to_rfc3339(),
        updated_at: view.updated_at.to_rfc3339(),
    }
}

fn draft(fields: Option<pb::ProductFields>) -> Result<ProductDraft, Status> {
    let fields = fields.ok_or_else(|| Status::invalid_argument("fields are required"))?;
    let price = fields
        .price
        .ok_or_else(|| Status::invalid_argument("fields.price is required"))?;
    let currency =
        crate::domain::Currency::parse(&price.currency).map_err(Status::invalid_argument)?;
    let input = ProductInput {
        sku: fields.sku,
        name: fields.name,
        description: fields.description,
        price: MoneyJson {
            amount: crate::domain::format_minor(price.amount_minor, currency.digits()),
            currency: price.currency,
        },
        category: fields.category,
    };
    ProductDraft::parse(&input).map_err(|errors| Status::from(Problem::invalid(errors)))
}

impl CatalogGrpc {
    async fn require_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.verifier.authorize_admin(header).await?;
        Ok(())
    }
}

fn id(raw: &str) -> Result<String, Status> {
    product_id(raw).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::catalog_server::Catalog for CatalogGrpc {
    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let id = id(&request.get_ref().id)?;
        let view = self.catalog.get(&id).await.map_err(Problem::from)?;
        Ok(Response::new(to_pb(view)))
    }

    async fn get_products(
        &self,
        request: Request<pb::GetProductsRequest>,
    ) -> Result<Response<pb::GetProductsResponse>, Status> {
        let raw = &request.get_ref().ids;
        if raw.len() > 500 {
            return Err(Status::invalid_argument("at most 500 ids per call"));
        }
        let ids = raw.iter().map(|r| id(r)).collect::<Result<Vec<_>, _>>()?;
        let (found, missing) = self.catalog.get_many(&ids).await.map_err(Problem::from)?;
        Ok(Response::new(pb::GetProductsResponse {
            products: found.into_iter().map(to_pb).collect(),
            missing,
        }))
    }

    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        self.require_admin(&request).await?;
        let draft = draft(request.into_inner().fields)?;
        let view = self.catalog.create(&draft).await.map_err(Problem::from)?;
        Ok(Response::new(to_pb(view)))
    }

    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        self.require_admin(&request).await?;
        let request = request.into_inner();
        let id = id(&request.id)?;
        let draft = draft(request.fields)?;
        let view = self
            .catalog
            .update(&id, &draft)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(to_pb(view)))
    }

    async fn delete_product(
        &self,
        request: Request<pb::DeleteProductRequest>,
    ) -> Result<Response<pb::DeleteProductResponse>, Status> {
        self.require_admin(&request).await?;
        let id = id(&request.get_ref().id)?;
        self.catalog.delete(&id).await.map_err(Problem::from)?;
        Ok(Response::new(pb::DeleteProductResponse {}))
    }
}
