//! Live order status: `GET /ws` upgrades a signed-in user's connection to
//! a WebSocket that receives their order and payment events as they
//! happen, and nothing of anyone else's.

use std::time::Duration;

use emporium_platform::auth::Verifier;
use emporium_platform::config::Secret;
use emporium_platform::http::Check;
use tokio_util::sync::CancellationToken;

/// How sockets are kept.
#[derive(Clone, Copy, Debug)]
pub struct SocketSettings {
    /// Messages held for one slow socket before it is dropped.
    pub buffer: usize,
    /// The interval between pings on an idle socket.
    pub heartbeat: Duration,
}

/// The sockets of this process, and the fan-out that reaches the sockets
/// of every other replica.
#[derive(Clone)]
pub struct Hub {}

impl Hub {
    pub async fn start(
        _redis_url: Option<&Secret>,
        _settings: SocketSettings,
        _shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        Ok(Self {})
    }

    /// Sends `message` to every open socket of `user_id`, on every replica.
    pub async fn push(&self, _user_id: &str, _message: &serde_json::Value) {}

    /// Readiness of the fan-out, when it needs Redis.
    pub fn check(&self) -> Option<Check> {
        None
    }
}

pub fn router(_hub: Hub, _verifier: Verifier) -> axum::Router {
    axum::Router::new()
}
