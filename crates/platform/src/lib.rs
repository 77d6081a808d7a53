//! The runtime every Emporium service stands on; no business rule lives here.

pub mod auth;
pub mod bus;
pub mod cache;
pub mod config;
pub mod db;
pub mod error;
pub mod grpc;
pub mod http;
pub mod objects;
pub mod shutdown;
pub mod telemetry;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{ErrorCode, FieldError, Problem};

/// What the binary hands every service it starts: settings, the shared
/// event transport, the token verifier, and the process's shutdown.
#[derive(Clone)]
pub struct Runtime {
    pub settings: Arc<config::Settings>,
    pub transport: bus::SharedTransport,
    pub verifier: auth::Verifier,
    pub shutdown: CancellationToken,
    /// Every long-lived task; the binary waits for them after shutdown.
    pub tasks: TaskTracker,
}

/// Installs the one rustls crypto backend of the process (aws-lc-rs).
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
