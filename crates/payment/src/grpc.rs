//! The gRPC face of the same use cases, for ordering's checkout.

use emporium_platform::Problem;
use emporium_platform::grpc::{Admission, Callers};
use emporium_platform::idempotency::{Claim, Recorded, SharedIdempotency};
use emporium_platform::money::Money;
use emporium_proto::payment::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{PaymentDraft, PaymentInput};
use crate::payments::{PaymentView, Payments};

/// Money moves for the checkout only; an order's payment is read by the
/// services that show it.
const CHECKOUT: &[&str] = &["ordering"];

pub const ADMISSION: Admission = &[
    (
        "/emporium.payment.v1.Payments/CreatePayment",
        Callers::Services(CHECKOUT),
    ),
    (
        "/emporium.payment.v1.Payments/ProcessPayment",
        Callers::Services(CHECKOUT),
    ),
    (
        "/emporium.payment.v1.Payments/CancelPayment",
        Callers::Services(CHECKOUT),
    ),
    (
        "/emporium.payment.v1.Payments/RefundPayment",
        Callers::Services(CHECKOUT),
    ),
    (
        "/emporium.payment.v1.Payments/GetPayment",
        Callers::Services(READERS),
    ),
    (
        "/emporium.payment.v1.Payments/ListOrderPayments",
        Callers::Services(READERS),
    ),
];

/// Services that show or settle an order's payments.
const READERS: &[&str] = &["ordering", "notification", "storefront"];

pub struct PaymentGrpc {
    pub payments: Payments,
    pub keys: SharedIdempotency,
    pub key_ttl: std::time::Duration,
}

fn to_pb(view: PaymentView) -> Result<pb::Payment, Status> {
    let money = |m: &emporium_platform::money::MoneyJson| {
        Money::parse(&m.amount, &m.currency)
            .map(Into::into)
            .map_err(Status::internal)
    };
    Ok(pb::Payment {
        amount: Some(money(&view.amount)?),
        refunded: Some(money(&view.refunded)?),
        id: view.id,
        order_id: view.order_id,
        user_id: view.user_id,
        status: view.status,
        method: view.method,
        provider: view.provider,
        provider_id: view.provider_id.unwrap_or_default(),
        failure_reason: view.failure_reason.unwrap_or_default(),
        processed_at: view
            .processed_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        expires_at: view.expires_at.to_rfc3339(),
        created_at: view.created_at.to_rfc3339(),
    })
}

fn answer(
    outcome: Result<PaymentView, crate::payments::PaymentError>,
) -> Result<Response<pb::Payment>, Status> {
    Ok(Response::new(to_pb(outcome.map_err(Problem::from)?)?))
}

fn id(raw: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(raw).map_err(|_| Status::invalid_argument("id must be a UUID"))
}

impl PaymentGrpc {
    /// Creates once per idempotency key: a repeat answers the first payment.
    async fn create_once(
        &self,
        draft: PaymentDraft,
        payer: String,
        key: &str,
    ) -> Result<PaymentView, Status> {
        let fingerprint = emporium_platform::idempotency::fingerprint(
            "grpc",
            "CreatePayment",
            format!(
                "{}|{}|{}|{}",
                draft.order_id, payer, draft.amount, draft.card
            )
            .as_bytes(),
        );
        let scoped = format!("grpc:{key}");
        let started = std::time::Instant::now();
        loop {
            let claim = self
                .keys
                .claim(&scoped, &fingerprint, self.key_ttl)
                .await
                .map_err(|e| Status::unavailable(format!("idempotency store: {e}")))?;
            match claim {
                Claim::New => break,
                Claim::Replay(recorded) => {
                    return serde_json::from_str(&recorded.body)
                        .map_err(|e| Status::internal(e.to_string()));
                }
                Claim::Mismatch => {
                    return Err(Status::invalid_argument(
                        "this idempotency_key was used for another payment",
                    ));
                }
                Claim::InFlight if started.elapsed() < std::time::Duration::from_secs(10) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Claim::InFlight => {
                    return Err(Status::aborted("the first request is still running"));
                }
            }
        }
        match self.payments.create(&draft, &payer).await {
            Ok(view) => {
                let body =
                    serde_json::to_string(&view).map_err(|e| Status::internal(e.to_string()))?;
                let recorded = Recorded { status: 201, body };
                if let Err(e) = self.keys.complete(&scoped, &recorded, self.key_ttl).await {
                    tracing::warn!(error = %e, "idempotency key not settled");
                }
                Ok(view)
            }
            Err(e) => {
                let _ = self.keys.release(&scoped).await;
                Err(Problem::from(e).into())
            }
        }
    }
}

#[tonic::async_trait]
impl pb::payments_server::Payments for PaymentGrpc {
    async fn create_payment(
        &self,
        request: Request<pb::CreatePaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let message = request.into_inner();
        let amount = message
            .amount
            .as_ref()
            .map(Money::try_from)
            .transpose()
            .map_err(Status::invalid_argument)?;
        let input = PaymentInput {
            order_id: Some(message.order_id),
            user_id: Some(message.user_id.clone()),
            amount: amount.map(Money::to_json),
            method: (!message.method.is_empty()).then_some(message.method),
            card_number: Some(message.card_number),
            metadata: None,
        };
        let draft = PaymentDraft::parse(&input).map_err(|e| Status::from(Problem::invalid(e)))?;
        let view = if message.idempotency_key.is_empty() {
            self.payments
                .create(&draft, &message.user_id)
                .await
                .map_err(Problem::from)?
        } else {
            self.create_once(draft, message.user_id, &message.idempotency_key)
                .await?
        };
        Ok(Response::new(to_pb(view)?))
    }

    async fn process_payment(
        &self,
        request: Request<pb::PaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let id = id(&request.get_ref().id)?;
        answer(self.payments.process(id).await)
    }

    async fn cancel_payment(
        &self,
        request: Request<pb::PaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let id = id(&request.get_ref().id)?;
        answer(self.payments.cancel(id).await)
    }

    async fn refund_payment(
        &self,
        request: Request<pb::RefundPaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let message = request.into_inner();
        let amount = message
            .amount
            .as_ref()
            .map(Money::try_from)
            .transpose()
            .map_err(Status::invalid_argument)?;
        answer(self.payments.refund(id(&message.id)?, amount).await)
    }

    async fn list_order_payments(
        &self,
        request: Request<pb::OrderPaymentsRequest>,
    ) -> Result<Response<pb::OrderPayments>, Status> {
        let order_id = id(&request.get_ref().order_id)?;
        let filter = crate::store::Filter {
            order_id: Some(order_id.to_string()),
            ..crate::store::Filter::default()
        };
        // An order has one payment, a few after declines: a page holds them.
        let page = self
            .payments
            .list(&filter, 1, 100)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(pb::OrderPayments {
            payments: page
                .items
                .into_iter()
                .map(to_pb)
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::PaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let row = self
            .payments
            .get(id(&request.get_ref().id)?)
            .await
            .map_err(Problem::from)?;
        let view = crate::payments::view(&row).map_err(Problem::from)?;
        Ok(Response::new(to_pb(view)?))
    }
}
