//! The gRPC face of the same use cases, for services inside the shop.

use emporium_platform::Problem;
use emporium_platform::auth::Verifier;
use emporium_proto::identity::v1 as pb;
use tonic::{Request, Response, Status};

use crate::accounts::Identity;
use crate::domain::{User, role_name};
use crate::http::user_id;

pub struct IdentityGrpc {
    pub identity: Identity,
    pub verifier: Verifier,
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

    /// The caller must present a token: its own account, or any as admin.
    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let claims = self.verifier.authenticate(header).await?;
        let id = user_id(&request.get_ref().id)?;
        let user = self
            .identity
            .user(&claims, id)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(to_pb(user)))
    }
}
