//! The card processor behind a trait, and the built-in mock that behaves
//! like one: test card numbers that decline, error or hang, a failure rate
//! and a latency that an admin changes at run time, idempotency by payment
//! id, a ledger that outlives the process (a table of its own in payment's
//! store, `ledger`), and a record of every call it was asked.

pub mod ledger;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use emporium_platform::db::Db;
use emporium_platform::money::Money;
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The card was refused; retrying will not help.
    #[error("declined: {0}")]
    Declined(String),
    /// The processor failed or did not answer in time; nothing was taken.
    #[error("processor unavailable: {0}")]
    Unavailable(String),
}

/// A card processor. Every call carries the payment id as its idempotency
/// key: asking twice for the same payment takes the money once.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// A token for the card, kept instead of its number.
    fn tokenize(&self, digits: &str) -> String;
    /// Holds `amount` on the card; the authorization id.
    async fn authorize(
        &self,
        payment: Uuid,
        amount: Money,
        token: &str,
    ) -> Result<String, ProviderError>;
    async fn capture(&self, payment: Uuid, authorization: &str) -> Result<(), ProviderError>;
    /// Releases an authorization that was not captured.
    async fn void(&self, payment: Uuid, authorization: &str) -> Result<(), ProviderError>;
    /// Gives back `amount` of a capture; `refund` names this refund.
    async fn refund(&self, payment: Uuid, refund: Uuid, amount: Money)
    -> Result<(), ProviderError>;
}

/// What the mock is told to do, changeable at run time. Each setting may
/// be given alone (`EMPORIUM__PAYMENT__MOCK__LATENCY_MS`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockBehaviour {
    /// The share of calls (0 to 1) that fail as if the processor were down.
    pub failure_rate: f64,
    /// Added to every call.
    pub latency_ms: u64,
}

impl Default for MockBehaviour {
    fn default() -> Self {
        Self {
            failure_rate: 0.0,
            latency_ms: 0,
        }
    }
}

/// Test cards: these decline, fail or hang; every other valid number is
/// approved.
pub const DECLINED: &str = "4000000000000002";
pub const INSUFFICIENT_FUNDS: &str = "4000000000009995";
pub const PROCESSOR_ERROR: &str = "4000000000000119";
pub const HANGS: &str = "4000000000000101";

/// One call the mock was asked, for tests and for the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub operation: &'static str,
    pub payment: Uuid,
    pub amount_minor: i64,
    /// Whether the call moved money (a repeat of a done call did not).
    pub effective: bool,
}

/// The mock processor. Its ledger is a table of its own in payment's
/// store, so that what it authorized outlives the process, as a real
/// processor's does; `calls` is this process's record of what it was asked.
#[derive(Clone)]
pub struct MockProvider {
    behaviour: Arc<Mutex<MockBehaviour>>,
    db: Db,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl MockProvider {
    /// The mock, keeping its ledger in `db` (made by payment's migrations).
    pub fn new(behaviour: MockBehaviour, db: Db) -> Self {
        Self {
            behaviour: Arc::new(Mutex::new(behaviour)),
            db,
            calls: Arc::default(),
        }
    }

    pub fn behaviour(&self) -> MockBehaviour {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_behaviour(&self, behaviour: MockBehaviour) {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = behaviour;
    }

    /// Every call this process made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, operation: &'static str, payment: Uuid, amount_minor: i64, effective: bool) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Call {
                operation,
                payment,
                amount_minor,
                effective,
            });
    }

    /// Minor units captured and not refunded, over every payment the
    /// ledger holds.
    pub async fn taken(&self) -> Result<i64, DbErr> {
        Ok(ledger::rows(&self.db)
            .await?
            .iter()
            .map(|r| r.captured_minor - r.refunded_minor)
            .sum())
    }

    /// Latency, then a failure at the configured rate.
    async fn weather(&self) -> Result<(), ProviderError> {
        emporium_platform::faults::process()
            .before_processor_call()
            .await;
        let behaviour = self.behaviour();
        if behaviour.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
        }
        let mut bytes = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        let draw = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
        if draw < behaviour.failure_rate {
            return Err(ProviderError::Unavailable("injected failure".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for MockProvider {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn tokenize(&self, digits: &str) -> String {
        let kind = match digits {
            DECLINED => "declined",
            INSUFFICIENT_FUNDS => "insufficient",
            PROCESSOR_ERROR => "error",
            HANGS => "hang",
            _ => "ok",
        };
        format!("tok_{kind}_{}", &digits[digits.len().saturating_sub(4)..])
    }

    async fn authorize(
        &self,
        payment: Uuid,
        amount: Money,
        token: &str,
    ) -> Result<String, ProviderError> {
        if token.starts_with("tok_hang_") {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        self.weather().await?;
        if emporium_platform::faults::process().declines_payment() {
            return Err(ProviderError::Declined("card_declined".into()));
        }
        match token.split('_').nth(1) {
            Some("declined") => return Err(ProviderError::Declined("card_declined".into())),
            Some("insufficient") => {
                return Err(ProviderError::Declined("insufficient_funds".into()));
            }
            Some("error") => return Err(ProviderError::Unavailable("processing_error".into())),
            _ => {}
        }
        let (id, fresh) = ledger::authorize(&self.db, payment, amount)
            .await
            .map_err(unreachable)?;
        self.record("authorize", payment, amount.minor, fresh);
        Ok(id)
    }

    async fn capture(&self, payment: Uuid, authorization: &str) -> Result<(), ProviderError> {
        self.weather().await?;
        let (moved, amount) = ledger::capture(&self.db, payment, authorization)
            .await
            .map_err(unreachable)?;
        let fresh = moved.map_err(|reason| ProviderError::Declined(reason.into()))?;
        self.record("capture", payment, amount, fresh);
        Ok(())
    }

    async fn void(&self, payment: Uuid, _authorization: &str) -> Result<(), ProviderError> {
        let moved = ledger::void(&self.db, payment).await.map_err(unreachable)?;
        let fresh = moved.map_err(|reason| ProviderError::Declined(reason.into()))?;
        self.record("void", payment, 0, fresh);
        Ok(())
    }

    async fn refund(
        &self,
        payment: Uuid,
        refund: Uuid,
        amount: Money,
    ) -> Result<(), ProviderError> {
        self.weather().await?;
        let moved = ledger::refund(&self.db, payment, refund, amount)
            .await
            .map_err(unreachable)?;
        let fresh = moved.map_err(|reason| ProviderError::Declined(reason.into()))?;
        self.record("refund", payment, amount.minor, fresh);
        Ok(())
    }
}

/// The processor's own store failed: to its caller, the processor did not
/// answer (nothing is known to have moved).
fn unreachable(err: DbErr) -> ProviderError {
    tracing::warn!(error = %err, "mock processor ledger unavailable");
    ProviderError::Unavailable("processor ledger unavailable".into())
}
