//! Fault flags (decision 0032): faults a person switches on in a running
//! shop to watch it degrade, then off to watch it recover. They hold for
//! the whole process, as a real fault would (every service `up` runs sees
//! the same slow store); each is off by default, visible as
//! `fault_flag_active{flag}`, and refused outside `up` and the tests
//! unless `faults.allowed` is set.
//!
//! The parts they act in read them here: the mock card processor (declines,
//! timeouts, latency), [`crate::grpc::Peer`] (latency and errors as the
//! caller sees them), the outbox relay (publishes that fail), the consumers
//! (events delivered twice) and [`crate::db::begin_write`] (a slow store).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::auth::{Admin, Verifier};
use crate::http::Json;
use crate::{ErrorCode, FieldError, Problem};

/// The flags, each off at zero. Ratios are shares of calls (0 to 1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultFlags {
    /// Card authorizations the mock processor declines (`card_declined`).
    pub payment_decline_ratio: f64,
    /// Calls to the mock processor that never answer (the caller's
    /// processor timeout ends them).
    pub processor_timeout_ratio: f64,
    /// Added to every call to the mock processor.
    pub processor_latency_ms: u64,
    /// Added to every gRPC call a service makes to a peer in `peers`; at
    /// or past the call's deadline, the call ends `DEADLINE_EXCEEDED`.
    pub peer_latency_ms: u64,
    /// gRPC calls to a peer in `peers` that fail `UNAVAILABLE` before they
    /// reach it.
    pub peer_error_ratio: f64,
    /// The peers the two above apply to (`payment`, `inventory`...);
    /// empty: every peer.
    pub peers: Vec<String>,
    /// Events a consumer is handed a second time once it has handled
    /// them (its inbox must make the second a no-op).
    pub duplicate_delivery_ratio: f64,
    /// Publishes from the outbox relay that fail (the event stays unsent
    /// and goes out on a later pass).
    pub publish_failure_ratio: f64,
    /// Added before every write transaction begins.
    pub store_latency_ms: u64,
}

/// The flags, as `fault_flag_active{flag}` labels them: each at zero from
/// the start.
pub const FLAG_LABELS: &[&[(&str, &str)]] = &[
    &[("flag", "payment_decline_ratio")],
    &[("flag", "processor_timeout_ratio")],
    &[("flag", "processor_latency_ms")],
    &[("flag", "peer_latency_ms")],
    &[("flag", "peer_error_ratio")],
    &[("flag", "duplicate_delivery_ratio")],
    &[("flag", "publish_failure_ratio")],
    &[("flag", "store_latency_ms")],
];

/// The highest latency a flag may add, in milliseconds.
pub const MAX_LATENCY_MS: u64 = 30_000;

impl FaultFlags {
    /// Each flag's name and whether it is on.
    pub fn states(&self) -> [(&'static str, bool); 8] {
        [
            ("payment_decline_ratio", self.payment_decline_ratio > 0.0),
            (
                "processor_timeout_ratio",
                self.processor_timeout_ratio > 0.0,
            ),
            ("processor_latency_ms", self.processor_latency_ms > 0),
            ("peer_latency_ms", self.peer_latency_ms > 0),
            ("peer_error_ratio", self.peer_error_ratio > 0.0),
            (
                "duplicate_delivery_ratio",
                self.duplicate_delivery_ratio > 0.0,
            ),
            ("publish_failure_ratio", self.publish_failure_ratio > 0.0),
            ("store_latency_ms", self.store_latency_ms > 0),
        ]
    }

    pub fn any(&self) -> bool {
        self.states().iter().any(|(_, on)| *on)
    }

    /// Every value out of its range, by field.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = vec![];
        for (field, ratio) in [
            ("payment_decline_ratio", self.payment_decline_ratio),
            ("processor_timeout_ratio", self.processor_timeout_ratio),
            ("peer_error_ratio", self.peer_error_ratio),
            ("duplicate_delivery_ratio", self.duplicate_delivery_ratio),
            ("publish_failure_ratio", self.publish_failure_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                errors.push(FieldError {
                    field: field.into(),
                    message: "must be from 0 to 1".into(),
                });
            }
        }
        for (field, ms) in [
            ("processor_latency_ms", self.processor_latency_ms),
            ("peer_latency_ms", self.peer_latency_ms),
            ("store_latency_ms", self.store_latency_ms),
        ] {
            if ms > MAX_LATENCY_MS {
                errors.push(FieldError {
                    field: field.into(),
                    message: format!("must be at most {MAX_LATENCY_MS}"),
                });
            }
        }
        if self.peers.len() > 16
            || self
                .peers
                .iter()
                .any(|p| p.is_empty() || p.len() > 32 || !p.bytes().all(|b| b.is_ascii_lowercase()))
        {
            errors.push(FieldError {
                field: "peers".into(),
                message: "at most 16 service names, lowercase letters only".into(),
            });
        }
        errors
    }

    fn applies_to(&self, peer: &str) -> bool {
        self.peers.is_empty() || self.peers.iter().any(|p| p == peer)
    }
}

/// `[faults]`: whether flags may be switched on in this process, and those
/// on from the start.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    /// Allows fault flags in `serve`; `up` and the tests always allow them.
    pub allowed: bool,
    /// The flags on from the start (`EMPORIUM__FAULTS__FLAGS__STORE_LATENCY_MS=50`).
    pub flags: FaultFlags,
}

/// The process's flags.
pub struct Faults {
    allowed: AtomicBool,
    /// Whether any flag is on: the parts that read the flags on every
    /// call read this first.
    on: AtomicBool,
    flags: RwLock<FaultFlags>,
}

static PROCESS: LazyLock<Faults> = LazyLock::new(Faults::new);

/// The flags of this process.
pub fn process() -> &'static Faults {
    &PROCESS
}

impl Faults {
    fn new() -> Self {
        Self {
            allowed: AtomicBool::new(false),
            on: AtomicBool::new(false),
            flags: RwLock::new(FaultFlags::default()),
        }
    }

    /// Takes the settings at start: `allowed_here` for `up` and the tests.
    /// Flags named in settings that do not allow them stop the start.
    pub fn configure(&self, settings: &FaultSettings, allowed_here: bool) -> anyhow::Result<()> {
        let allowed = allowed_here || settings.allowed;
        self.allowed.store(allowed, Ordering::SeqCst);
        if settings.flags.any() && !allowed {
            anyhow::bail!(
                "configuration: faults.flags are set but fault flags are refused here; set faults.allowed = true to allow them"
            );
        }
        self.set(settings.flags.clone())
            .map_err(|p| {
                let fields: Vec<String> = p
                    .errors
                    .iter()
                    .map(|e| format!("{} {}", e.field, e.message))
                    .collect();
                anyhow::anyhow!("configuration: faults.flags: {}", fields.join("; "))
            })
            .map(drop)
    }

    pub fn allowed(&self) -> bool {
        self.allowed.load(Ordering::SeqCst)
    }

    pub fn current(&self) -> FaultFlags {
        self.flags
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets every flag at once; refused when a value is out of range, or
    /// a flag would be switched on where they are not allowed.
    pub fn set(&self, flags: FaultFlags) -> Result<FaultFlags, Problem> {
        let errors = flags.check();
        if !errors.is_empty() {
            return Err(Problem::invalid(errors));
        }
        if flags.any() && !self.allowed() {
            return Err(Problem::new(
                ErrorCode::Forbidden,
                "fault flags are refused in this process; set faults.allowed = true to allow them",
            ));
        }
        let mut held = self
            .flags
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (flag, on) in flags.states() {
            metrics::gauge!("fault_flag_active", "flag" => flag).set(if on { 1.0 } else { 0.0 });
        }
        if flags != *held && (flags.any() || held.any()) {
            tracing::warn!(flags = ?flags, "fault flags changed");
        }
        self.on.store(flags.any(), Ordering::SeqCst);
        *held = flags.clone();
        Ok(flags)
    }

    fn read<T>(&self, f: impl FnOnce(&FaultFlags) -> T) -> Option<T> {
        if !self.on.load(Ordering::Relaxed) {
            return None;
        }
        Some(f(&self
            .flags
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)))
    }

    /// Whether the mock processor declines this authorization.
    pub fn declines_payment(&self) -> bool {
        self.read(|f| draw(f.payment_decline_ratio))
            .unwrap_or(false)
    }

    /// What the mock processor does before a call: waits the added
    /// latency, and never answers a share of calls.
    pub async fn before_processor_call(&self) {
        let Some((latency, hang)) =
            self.read(|f| (f.processor_latency_ms, draw(f.processor_timeout_ratio)))
        else {
            return;
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if hang {
            std::future::pending::<()>().await;
        }
    }

    /// What a call to `peer` meets before it is made, with `deadline` as
    /// its own: the added latency (`DEADLINE_EXCEEDED` at the deadline),
    /// or an `UNAVAILABLE` at the error ratio. After added latency, the
    /// part of the deadline left, which the call must keep to.
    pub async fn before_peer_call(
        &self,
        peer: &str,
        deadline: Duration,
    ) -> Result<Option<Duration>, tonic::Status> {
        let Some(Some((latency, fail))) = self.read(|f| {
            f.applies_to(peer).then(|| {
                (
                    Duration::from_millis(f.peer_latency_ms),
                    draw(f.peer_error_ratio),
                )
            })
        }) else {
            return Ok(None);
        };
        if latency >= deadline {
            tokio::time::sleep(deadline).await;
            return Err(tonic::Status::deadline_exceeded(format!(
                "fault flag: {peer} slower than the deadline"
            )));
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if fail {
            return Err(tonic::Status::unavailable(format!(
                "fault flag: {peer} unavailable"
            )));
        }
        Ok((!latency.is_zero()).then(|| deadline - latency))
    }

    /// Whether this publish fails.
    pub fn fails_publish(&self) -> bool {
        self.read(|f| draw(f.publish_failure_ratio))
            .unwrap_or(false)
    }

    /// Whether this event, once handled, is handed over again.
    pub fn delivers_twice(&self) -> bool {
        self.read(|f| draw(f.duplicate_delivery_ratio))
            .unwrap_or(false)
    }

    /// Waits the slow store's added latency.
    pub async fn before_write(&self) {
        if let Some(ms) = self.read(|f| f.store_latency_ms)
            && ms > 0
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// True with probability `ratio`.
fn draw(ratio: f64) -> bool {
    if ratio <= 0.0 {
        return false;
    }
    let mut bytes = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) < ratio
}

/// `GET` and `PUT /api/v1/admin/faults`, for admins: the flags of the
/// process that serves them.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Verifier: FromRef<S>,
{
    Router::new().route("/api/v1/admin/faults", get(read_flags).put(write_flags))
}

/// The flags as the API shows them.
#[derive(Serialize)]
struct FlagsView {
    allowed: bool,
    active: Vec<&'static str>,
    flags: FaultFlags,
}

fn view(faults: &Faults) -> Response {
    let flags = faults.current();
    Json(FlagsView {
        allowed: faults.allowed(),
        active: flags
            .states()
            .into_iter()
            .filter_map(|(flag, on)| on.then_some(flag))
            .collect(),
        flags,
    })
    .into_response()
}

async fn read_flags(Admin(_): Admin) -> Response {
    view(process())
}

/// Replaces every flag: a field left out is off.
async fn write_flags(Admin(_): Admin, Json(flags): Json<FaultFlags>) -> Result<Response, Problem> {
    process().set(flags)?;
    Ok(view(process()))
}

/// The flags' part of the gateway's OpenAPI document.
pub fn openapi() -> serde_json::Value {
    use crate::openapi::{ok, problem, with_body_problems, with_shared_schemas};
    let bearer = serde_json::json!([{ "bearer": [] }]);
    let ratio = serde_json::json!({ "type": "number", "minimum": 0, "maximum": 1 });
    let latency = serde_json::json!({ "type": "integer", "minimum": 0, "maximum": MAX_LATENCY_MS });
    let flags = serde_json::json!({
        "type": "object", "additionalProperties": false,
        "description": "Every flag; one left out is off. Ratios are shares of calls.",
        "properties": {
            "payment_decline_ratio": ratio, "processor_timeout_ratio": ratio,
            "processor_latency_ms": latency, "peer_latency_ms": latency,
            "peer_error_ratio": ratio,
            "peers": { "type": "array", "maxItems": 16, "items": { "type": "string", "pattern": "^[a-z]{1,32}$" } },
            "duplicate_delivery_ratio": ratio, "publish_failure_ratio": ratio,
            "store_latency_ms": latency
        }
    });
    let view = ok(
        "the flags of the process that answered",
        serde_json::json!({ "$ref": "#/components/schemas/FaultFlagsView" }),
    );
    with_shared_schemas(serde_json::json!({
        "paths": {
            "/api/v1/admin/faults": {
                "get": {
                    "operationId": "getFaultFlags", "tags": ["operations"], "summary": "The fault flags on in the process that serves the gateway (admin)", "security": bearer,
                    "responses": { "200": view, "401": problem("no valid token"), "403": problem("not an admin") }
                },
                "put": {
                    "operationId": "setFaultFlags", "tags": ["operations"], "summary": "Switch fault flags on or off in the process that serves the gateway (admin); refused where they are not allowed", "security": bearer,
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/FaultFlags" } } } },
                    "responses": with_body_problems(serde_json::json!({ "200": view, "401": problem("no valid token"), "403": problem("not an admin, or flags refused in this process") }))
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "FaultFlags": flags,
                "FaultFlagsView": {
                    "type": "object", "required": ["allowed", "active", "flags"],
                    "properties": {
                        "allowed": { "type": "boolean" },
                        "active": { "type": "array", "items": { "type": "string", "enum": FLAG_LABELS.iter().map(|set| set[0].1).collect::<Vec<_>>() } },
                        "flags": { "$ref": "#/components/schemas/FaultFlags" }
                    }
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_is_named_once_and_labelled() {
        let states = FaultFlags::default().states();
        let names: Vec<_> = states.iter().map(|(n, _)| *n).collect();
        let labels: Vec<_> = FLAG_LABELS.iter().map(|set| set[0].1).collect();
        assert_eq!(names, labels);
        assert!(!FaultFlags::default().any());
    }

    #[test]
    fn values_out_of_range_are_refused_by_field() {
        let flags = FaultFlags {
            payment_decline_ratio: 1.5,
            peer_error_ratio: -0.1,
            store_latency_ms: MAX_LATENCY_MS + 1,
            peers: vec!["Payment".into()],
            ..FaultFlags::default()
        };
        let fields: Vec<_> = flags.check().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "payment_decline_ratio",
                "peer_error_ratio",
                "store_latency_ms",
                "peers"
            ]
        );
        let nan = FaultFlags {
            publish_failure_ratio: f64::NAN,
            ..FaultFlags::default()
        };
        assert_eq!(nan.check().len(), 1, "NaN is out of range");
    }

    #[test]
    fn flags_are_refused_where_not_allowed_and_off_is_always_accepted() {
        let faults = Faults::new();
        let on = FaultFlags {
            store_latency_ms: 5,
            ..FaultFlags::default()
        };
        assert!(faults.set(on.clone()).is_err());
        assert!(faults.set(FaultFlags::default()).is_ok());
        let settings = FaultSettings {
            allowed: false,
            flags: on.clone(),
        };
        assert!(faults.configure(&settings, false).is_err());
        assert!(faults.configure(&settings, true).is_ok());
        assert_eq!(faults.current(), on);
        faults.set(FaultFlags::default()).unwrap();
        assert_eq!(faults.read(|f| f.clone()), None, "all off: nothing to read");
    }

    #[tokio::test]
    async fn a_peer_flag_applies_to_the_peers_named_and_the_deadline_holds() {
        let faults = Faults::new();
        faults.allowed.store(true, Ordering::SeqCst);
        faults
            .set(FaultFlags {
                peer_error_ratio: 1.0,
                peers: vec!["payment".into()],
                ..FaultFlags::default()
            })
            .unwrap();
        let deadline = Duration::from_millis(100);
        let failed = faults.before_peer_call("payment", deadline).await;
        assert_eq!(failed.unwrap_err().code(), tonic::Code::Unavailable);
        assert_eq!(
            faults
                .before_peer_call("inventory", deadline)
                .await
                .unwrap(),
            None
        );
        faults
            .set(FaultFlags {
                peer_latency_ms: 30,
                ..FaultFlags::default()
            })
            .unwrap();
        assert_eq!(
            faults
                .before_peer_call("inventory", deadline)
                .await
                .unwrap(),
            Some(Duration::from_millis(70)),
            "the call keeps to what is left of its deadline"
        );
        faults
            .set(FaultFlags {
                peer_latency_ms: 5_000,
                ..FaultFlags::default()
            })
            .unwrap();
        let started = std::time::Instant::now();
        let late = faults.before_peer_call("inventory", deadline).await;
        assert_eq!(late.unwrap_err().code(), tonic::Code::DeadlineExceeded);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn ratios_draw_none_all_or_some() {
        assert!(!(0..1000).any(|_| draw(0.0)));
        assert!((0..1000).all(|_| draw(1.0)));
        let some = (0..10_000).filter(|_| draw(0.3)).count();
        assert!((2_500..3_500).contains(&some), "{some}");
    }
}
