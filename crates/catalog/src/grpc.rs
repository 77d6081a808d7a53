//! The gRPC face of the same use cases.

use emporium_platform::Problem;
use emporium_platform::auth::Verifier;
use emporium_platform::grpc::{Admission, Callers};
use emporium_platform::money::Money;
use emporium_proto::catalog::v1 as pb;
use tonic::{Request, Response, Status};

use crate::domain::{Product, ProductDraft, ProductId, ProductInput};
use crate::http::product_id;
use crate::products::Catalog;

/// Services that read products.
const READERS: &[&str] = &[
    "basket",
    "ordering",
    "inventory",
    "storefront",
    "recommendation",
];
/// Writes come from the storefront's admin pages, with the admin's own
/// token beside the storefront's (`user-authorization`).
const WRITERS: &[&str] = &["storefront"];

pub const ADMISSION: Admission = &[
    (
        "/emporium.catalog.v1.Catalog/GetProduct",
        Callers::Services(READERS),
    ),
    (
        "/emporium.catalog.v1.Catalog/GetProducts",
        Callers::Services(READERS),
    ),
    (
        "/emporium.catalog.v1.Catalog/CreateProduct",
        Callers::Services(WRITERS),
    ),
    (
        "/emporium.catalog.v1.Catalog/UpdateProduct",
        Callers::Services(WRITERS),
    ),
    (
        "/emporium.catalog.v1.Catalog/DeleteProduct",
        Callers::Services(WRITERS),
    ),
    // The storefront's shelves: lists and search.
    (
        "/emporium.catalog.v1.Catalog/ListProducts",
        Callers::Services(WRITERS),
    ),
    (
        "/emporium.catalog.v1.Catalog/ListCategories",
        Callers::Services(WRITERS),
    ),
];

pub struct CatalogGrpc {
    pub catalog: Catalog,
    pub verifier: Verifier,
}

fn to_pb(product: Product) -> pb::Product {
    pb::Product {
        id: product.id.to_string(),
        sku: product.sku.as_str().to_owned(),
        name: product.name,
        description: product.description,
        price: Some(product.price.into()),
        category: product.category.as_str().to_owned(),
        images: product.images,
        created_at: product.created_at.to_rfc3339(),
        updated_at: product.updated_at.to_rfc3339(),
    }
}

fn draft(fields: Option<pb::ProductFields>) -> Result<ProductDraft, Status> {
    let fields = fields.ok_or_else(|| Status::invalid_argument("fields are required"))?;
    let price = fields
        .price
        .ok_or_else(|| Status::invalid_argument("fields.price is required"))?;
    let price = Money::try_from(&price).map_err(Status::invalid_argument)?;
    let input = ProductInput {
        sku: fields.sku,
        name: fields.name,
        description: fields.description,
        price: price.to_json(),
        category: fields.category,
    };
    ProductDraft::parse(&input).map_err(|errors| Status::from(Problem::invalid(errors)))
}

impl CatalogGrpc {
    /// The user on whose behalf an admitted service writes must be an admin:
    /// the service's own token (`authorization`) says who calls, the user's
    /// (`user-authorization`) for whom.
    async fn require_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let header = request
            .metadata()
            .get("user-authorization")
            .and_then(|v| v.to_str().ok());
        self.verifier.authorize_admin(header).await?;
        Ok(())
    }
}

fn id(raw: &str) -> Result<ProductId, Status> {
    product_id(raw).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::catalog_server::Catalog for CatalogGrpc {
    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let id = id(&request.get_ref().id)?;
        let product = self.catalog.get(id).await.map_err(Problem::from)?;
        Ok(Response::new(to_pb(product)))
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
            missing: missing.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        self.require_admin(&request).await?;
        let draft = draft(request.into_inner().fields)?;
        let product = self.catalog.create(&draft).await.map_err(Problem::from)?;
        Ok(Response::new(to_pb(product)))
    }

    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        self.require_admin(&request).await?;
        let request = request.into_inner();
        let id = id(&request.id)?;
        let draft = draft(request.fields)?;
        let product = self
            .catalog
            .update(id, &draft)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(to_pb(product)))
    }

    async fn delete_product(
        &self,
        request: Request<pb::DeleteProductRequest>,
    ) -> Result<Response<pb::DeleteProductResponse>, Status> {
        self.require_admin(&request).await?;
        let id = id(&request.get_ref().id)?;
        self.catalog.delete(id).await.map_err(Problem::from)?;
        Ok(Response::new(pb::DeleteProductResponse {}))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let ask = request.into_inner();
        let text = |value: String| (!value.is_empty()).then_some(value);
        let number = |value: u32| (value > 0).then(|| value.to_string());
        let query = crate::http::ListParams {
            page: number(ask.page),
            per_page: number(ask.per_page),
            category: text(ask.category),
            q: text(ask.q),
            min_price: text(ask.min_price),
            max_price: text(ask.max_price),
            currency: text(ask.currency),
            sort: text(ask.sort),
        }
        .parse()?;
        let page = self.catalog.list(&query).await.map_err(Problem::from)?;
        Ok(Response::new(pb::ListProductsResponse {
            items: page.items.into_iter().map(to_pb).collect(),
            page: page.page,
            per_page: page.per_page,
            total: page.total,
        }))
    }

    async fn list_categories(
        &self,
        _request: Request<pb::ListCategoriesRequest>,
    ) -> Result<Response<pb::ListCategoriesResponse>, Status> {
        let categories = self.catalog.categories().await.map_err(Problem::from)?;
        Ok(Response::new(pb::ListCategoriesResponse {
            categories: categories
                .into_iter()
                .map(|c| pb::Category {
                    slug: c.slug,
                    name: c.name,
                    product_count: c.product_count,
                })
                .collect(),
        }))
    }
}
