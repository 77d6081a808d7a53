//! The gRPC face of the same use cases, for services inside the shop.

use std::collections::BTreeMap;
use std::time::Duration;

use emporium_platform::Problem;
use emporium_platform::config::Secret;
use emporium_platform::grpc::{Admission, Callers};
use emporium_proto::identity::v1 as pb;
use tonic::{Request, Response, Status};

use crate::accounts::Identity;
use crate::domain::{User, role_name};
use crate::http::user_id;

/// Services that may ask whether a user's token is still good, and read
/// accounts (for an order's email, say).
const USER_READERS: &[&str] = &["gateway", "storefront", "ordering", "notification"];

pub const ADMISSION: Admission = &[
    (
        "/emporium.identity.v1.Identity/ValidateToken",
        Callers::Services(USER_READERS),
    ),
    (
        "/emporium.identity.v1.Identity/GetUser",
        Callers::Services(USER_READERS),
    ),
    (
        "/emporium.identity.v1.Identity/IssueServiceToken",
        Callers::Anyone,
    ),
];

pub struct IdentityGrpc {
    pub identity: Identity,
    /// Every service's secret (`auth.service_secrets`).
    pub service_secrets: BTreeMap<String, Secret>,
    pub service_token_ttl: Duration,
}

/// Whether `offered` is `service`'s secret. Digests are compared, so the
/// time taken says nothing about how much of the secret was right.
fn secret_matches(expected: &Secret, offered: &str) -> bool {
    use aws_lc_rs::digest::{SHA256, digest};
    !expected.expose().is_empty()
        && digest(&SHA256, expected.expose().as_bytes()).as_ref()
            == digest(&SHA256, offered.as_bytes()).as_ref()
}

/// A service name: lower-case letters and dashes, as the binary names them.
fn service_name(raw: &str, field: &str) -> Result<(), Status> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{field} must be 1 to 64 lower-case letters or dashes"
        )))
    }
}

fn to_pb(user: User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        email: user.email.as_str().to_owned(),
        name: user.name,
        phone: user.phone.unwrap_or_default(),
        role: role_name(user.role).to_owned(),
        created_at: user.created_at.to_rfc3339(),
        updated_at: user.updated_at.to_rfc3339(),
    }
}

#[tonic::async_trait]
impl pb::identity_server::Identity for IdentityGrpc {
    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let token = &request.get_ref().token;
        if token.is_empty() || token.len() > 8192 {
            return Err(Status::invalid_argument("token must be 1 to 8192 bytes"));
        }
        let (claims, user) = self.identity.validate(token).await.map_err(Problem::from)?;
        Ok(Response::new(pb::ValidateTokenResponse {
            user_id: claims.sub,
            roles: claims
                .roles
                .into_iter()
                .map(|r| role_name(r).to_owned())
                .collect(),
            expires_at: claims.exp,
            email: user.email.as_str().to_owned(),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let id = user_id(&request.get_ref().id)?;
        let user = self
            .identity
            .user_for_service(id)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(to_pb(user)))
    }

    async fn issue_service_token(
        &self,
        request: Request<pb::IssueServiceTokenRequest>,
    ) -> Result<Response<pb::ServiceToken>, Status> {
        let message = request.into_inner();
        service_name(&message.service, "service")?;
        service_name(&message.audience, "audience")?;
        let known = self.service_secrets.get(&message.service);
        if !known.is_some_and(|secret| secret_matches(secret, &message.secret)) {
            metrics::counter!("service_tokens_refused_total").increment(1);
            tracing::warn!(service = %message.service, "service token refused: wrong secret");
            return Err(Status::unauthenticated("unknown service or wrong secret"));
        }
        let token = self
            .identity
            .keys()
            .signing()
            .mint_service(&message.service, &message.audience, self.service_token_ttl)
            .map_err(|e| Status::from(Problem::internal(e)))?;
        metrics::counter!("service_tokens_issued_total", "service" => message.service.clone())
            .increment(1);
        Ok(Response::new(pb::ServiceToken {
            token,
            expires_at: chrono::Utc::now().timestamp() + self.service_token_ttl.as_secs() as i64,
        }))
    }
}
