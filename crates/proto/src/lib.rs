//! The internal gRPC contracts and their generated code.

/// Every service's descriptors, for gRPC reflection.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// Messages every service shares (money).
pub mod common {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.common.v1");
    }
}

pub mod catalog {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.catalog.v1");
    }
}

pub mod identity {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.identity.v1");

        impl std::fmt::Debug for IssueServiceTokenRequest {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("IssueServiceTokenRequest")
                    .field("service", &self.service)
                    .field("secret", &"[redacted]")
                    .field("audience", &self.audience)
                    .finish()
            }
        }

        impl std::fmt::Debug for ServiceToken {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("ServiceToken")
                    .field("token", &"[redacted]")
                    .field("expires_at", &self.expires_at)
                    .finish()
            }
        }

        impl std::fmt::Debug for ValidateTokenRequest {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("ValidateTokenRequest")
                    .field("token", &"[redacted]")
                    .finish()
            }
        }
    }
}

pub mod inventory {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.inventory.v1");
    }
}

pub mod basket {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.basket.v1");
    }
}

pub mod payment {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.payment.v1");

        impl std::fmt::Debug for CreatePaymentRequest {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let last4 = self
                    .card_number
                    .get(self.card_number.len().saturating_sub(4)..)
                    .unwrap_or_default();
                f.debug_struct("CreatePaymentRequest")
                    .field("order_id", &self.order_id)
                    .field("user_id", &self.user_id)
                    .field("amount", &self.amount)
                    .field("method", &self.method)
                    .field("card_number", &format_args!("****{last4}"))
                    .field("idempotency_key", &self.idempotency_key)
                    .finish()
            }
        }
    }
}

pub mod recommendation {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.recommendation.v1");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_holding_a_card_a_secret_or_a_token_print_redacted() {
        let payment = super::payment::v1::CreatePaymentRequest {
            card_number: "4242424242424242".into(),
            ..Default::default()
        };
        let shown = format!("{payment:?}");
        assert!(
            !shown.contains("424242424242") && shown.contains("****4242"),
            "{shown}"
        );
        let ask = super::identity::v1::IssueServiceTokenRequest {
            service: "ordering".into(),
            secret: "hunter2-secret".into(),
            audience: "payment".into(),
        };
        assert!(!format!("{ask:?}").contains("hunter2"));
        let token = super::identity::v1::ServiceToken {
            token: "eyJ.secret.sig".into(),
            expires_at: 1,
        };
        assert!(!format!("{token:?}").contains("eyJ"));
        let validate = super::identity::v1::ValidateTokenRequest {
            token: "eyJ.secret.sig".into(),
        };
        assert!(!format!("{validate:?}").contains("eyJ"));
    }
}
