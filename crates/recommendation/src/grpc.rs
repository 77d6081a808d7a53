//! The gRPC face of the same use cases, for the storefront's pages.

use emporium_platform::Problem;
use emporium_platform::grpc::{Admission, Callers};
use emporium_proto::recommendation::v1 as pb;
use tonic::{Request, Response, Status};

use crate::domain::{Limit, ProductId, Recommendation};
use crate::recommend::Recommender;

/// The storefront shows recommendations on product and account pages.
const READERS: &[&str] = &["storefront"];

pub const ADMISSION: Admission = &[(
    "/emporium.recommendation.v1.Recommendations/GetRecommendations",
    Callers::Services(READERS),
)];

pub struct RecommendationsGrpc {
    pub recommender: Recommender,
}

fn to_pb(r: Recommendation) -> pb::Recommendation {
    pb::Recommendation {
        product_id: r.product_id,
        sku: r.sku,
        category: r.category,
        score: r.score,
        reason: r.reason.as_str().to_owned(),
    }
}

#[tonic::async_trait]
impl pb::recommendations_server::Recommendations for RecommendationsGrpc {
    async fn get_recommendations(
        &self,
        request: Request<pb::GetRecommendationsRequest>,
    ) -> Result<Response<pb::GetRecommendationsResponse>, Status> {
        let ask = request.into_inner();
        let limit = match ask.limit {
            0 => Limit::parse(None),
            n => Limit::new(i64::from(n)),
        }
        .map_err(|m| Status::invalid_argument(format!("limit {m}")))?;
        let user = ask.user_id.trim();
        let list = match (ask.product_id.is_empty(), user.is_empty()) {
            (false, true) => {
                let product = ProductId::parse(&ask.product_id)
                    .map_err(|m| Status::invalid_argument(format!("product_id {m}")))?;
                self.recommender.for_product(&product, limit).await
            }
            (true, false) if user.len() <= 64 => self.recommender.for_user(user, limit).await,
            (true, false) => {
                return Err(Status::invalid_argument(
                    "user_id must be at most 64 characters",
                ));
            }
            _ => {
                return Err(Status::invalid_argument(
                    "exactly one of product_id and user_id is required",
                ));
            }
        }
        .map_err(Problem::from)?;
        Ok(Response::new(pb::GetRecommendationsResponse {
            items: list.into_iter().map(to_pb).collect(),
        }))
    }
}
