//! Events identity publishes, and their payload.

use emporium_platform::bus::Envelope;
use serde::Serialize;

use crate::accounts::IdentityError;
use crate::domain::{User, role_name};

pub const SOURCE: &str = "emporium.identity";
pub const USER_REGISTERED: &str = "user.registered";

/// The `data` of `user.registered`: who joined, for a welcome message.
#[derive(Serialize)]
struct RegisteredPayload<'a> {
    id: String,
    email: &'a str,
    name: &'a str,
    role: &'static str,
    created_at: chrono::DateTime<chrono::Utc>,
}

pub fn registered(user: &User) -> Result<Envelope, IdentityError> {
    let data = serde_json::to_value(RegisteredPayload {
        id: user.id.to_string(),
        email: user.email.as_str(),
        name: &user.name,
        role: role_name(user.role),
        created_at: user.created_at,
    })
    .map_err(|source| IdentityError::Encode {
        what: "the event",
        source,
    })?;
    Ok(Envelope::new(
        USER_REGISTERED,
        SOURCE,
        format!("users/{}", user.id),
        data,
    ))
}
