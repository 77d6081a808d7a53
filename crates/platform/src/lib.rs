//! The runtime every Emporium service stands on; no business rule lives here.

pub mod auth;
pub mod bus;
pub mod cache;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod faults;
pub mod files;
pub mod grpc;
pub mod http;
pub mod idempotency;
pub mod money;
pub mod objects;
pub mod openapi;
pub mod ratelimit;
pub mod service;
pub mod shutdown;
pub mod sku;
pub mod telemetry;
pub mod tls;

pub use error::{ErrorCode, FieldError, Problem};
pub use service::{Runtime, Started};

/// Installs the one rustls crypto backend of the process (aws-lc-rs).
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
