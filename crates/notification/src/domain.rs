//! What a message is, who receives it and how an event becomes messages.

use emporium_platform::bus::Envelope;
use emporium_platform::grpc::{Peer, PeerError};
use emporium_proto::identity::v1 as identity;
use serde_json::{Value, json};

use crate::templates::{Rendered, Templates};

/// How a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Sms];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == raw)
            .ok_or_else(|| "must be `email` or `sms`".to_owned())
    }
}

/// Where a message stands: `queued` until sent or out of attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Queued,
    Sent,
    Failed,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Queued, Status::Sent, Status::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| "must be `queued`, `sent` or `failed`".to_owned())
    }
}

/// The type of a message an admin writes by hand.
pub const MANUAL: &str = "manual";

/// The longest type: an event type or `manual`.
pub const MAX_KIND: usize = 64;

/// A message to be recorded and sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    /// The user it is for, when it is for one; whose list it appears in.
    pub user_id: Option<String>,
    pub channel: Channel,
    /// An email address or a phone number.
    pub recipient: String,
    /// The event type it answers, or `manual`.
    pub kind: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub event_id: Option<String>,
    /// Why it cannot be sent, known when it is made (a template that did
    /// not render): recorded `failed` at once.
    pub error: Option<String>,
}

/// An email address as a mail server takes it, at most 254 characters.
pub fn email_address(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 254 {
        return Err("must be an email address of at most 254 characters".to_owned());
    }
    raw.parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|_| "must be an email address".to_owned())
}

/// A phone number in E.164: `+` and 8 to 15 digits, written with or
/// without spaces, dashes, dots and parentheses (as identity keeps them).
/// A national number (no `+`) is refused: its country is unknown.
pub fn phone_number(raw: &str) -> Result<String, String> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !" -.()".contains(*c))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or("");
    let fits = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if fits {
        Ok(format!("+{digits}"))
    } else {
        Err("must be a phone number in E.164 form: + and 8 to 15 digits".to_owned())
    }
}

/// The staff addresses of the settings, each checked.
pub fn staff_addresses(raw: &[String]) -> anyhow::Result<Vec<String>> {
    raw.iter()
        .map(|a| {
            email_address(a)
                .map_err(|m| anyhow::anyhow!("configuration: notification.staff_emails: `{a}` {m}"))
        })
        .collect()
}

/// Who a user is, as far as messages go.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipient {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
}

/// Asks identity who a user is, with notification's service token, so that
/// a changed address is used from the next message on.
#[derive(Clone)]
pub struct Directory {
    identity: Peer,
}

impl Directory {
    pub fn new(identity: Peer) -> Self {
        Self { identity }
    }

    /// The user, or `None` when identity knows no such user.
    pub async fn lookup(&self, user_id: &str) -> Result<Option<Recipient>, PeerError> {
        let request = identity::GetUserRequest {
            id: user_id.to_owned(),
        };
        let answer = self
            .identity
            .call("GetUser", true, |channel| {
                let request = request.clone();
                async move {
                    identity::identity_client::IdentityClient::new(channel)
                        .get_user(request)
                        .await
                }
            })
            .await;
        match answer {
            Ok(user) => Ok(Some(Recipient {
                user_id: user.id,
                name: user.name,
                email: user.email,
                phone: phone_number(&user.phone).ok(),
            })),
            Err(PeerError::Refused { status, .. })
                if matches!(
                    status.code(),
                    tonic::Code::NotFound | tonic::Code::InvalidArgument
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Who an event is for, read from its data.
#[derive(Clone, Debug, PartialEq)]
pub enum Audience {
    /// A user identity knows by id; their messages need a lookup.
    User(String),
    /// A user described by the event itself (`user.registered`).
    Described(Recipient),
    /// The shop's staff.
    Staff,
    Nobody,
}

/// The user an event of `kind` concerns, and whether it is pushed to
/// their sockets.
pub fn audience(envelope: &Envelope) -> Audience {
    let data = &envelope.data;
    let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
    match envelope.kind.as_str() {
        "user.registered" => match (text("id"), text("email")) {
            (Some(user_id), Some(email)) => Audience::Described(Recipient {
                user_id,
                name: text("name").unwrap_or_default(),
                email,
                phone: None,
            }),
            _ => Audience::Nobody,
        },
        "stock.low" => Audience::Staff,
        kind if kind.starts_with("order.") || kind.starts_with("payment.") => {
            match text("user_id").filter(|u| !u.is_empty() && u.len() <= 64) {
                Some(user) => Audience::User(user),
                None => Audience::Nobody,
            }
        }
        _ => Audience::Nobody,
    }
}

/// Whether an event of `kind` goes to its user's open sockets.
pub fn is_pushed(kind: &str) -> bool {
    kind.starts_with("order.") || kind.starts_with("payment.")
}

/// What a socket receives for an event.
pub fn socket_message(envelope: &Envelope) -> Value {
    json!({
        "id": envelope.id,
        "type": envelope.kind,
        "time": envelope.time,
        "subject": envelope.subject,
        "data": envelope.data,
    })
}

/// Turns events into drafts with the templates.
pub struct Composer {
    pub templates: Templates,
    pub shop_url: String,
    pub staff: Vec<String>,
}

impl Composer {
    /// The messages `envelope` makes for `recipients` (the staff for
    /// `stock.low`, else at most one user): one per channel the event has a
    /// template for and the recipient an address on.
    pub fn compose(&self, envelope: &Envelope, audience: &Resolved) -> Vec<Draft> {
        let kind = envelope.kind.as_str();
        let mut drafts = Vec::new();
        let targets: Vec<(Option<&Recipient>, Channel, String)> = match audience {
            Resolved::User(user) => {
                let mut targets = vec![(Some(user), Channel::Email, user.email.clone())];
                if let Some(phone) = &user.phone {
                    targets.push((Some(user), Channel::Sms, phone.clone()));
                }
                targets
            }
            Resolved::Staff => self
                .staff
                .iter()
                .map(|a| (None, Channel::Email, a.clone()))
                .collect(),
            Resolved::Nobody => Vec::new(),
        };
        for (user, channel, address) in targets {
            if !self.templates.has(channel, kind) {
                continue;
            }
            let context = self.context(envelope, user, &address);
            let (rendered, error) = match self.templates.render(channel, kind, &context) {
                Ok(rendered) => (rendered, None),
                Err(e) => {
                    tracing::error!(event_id = %envelope.id, kind, error = %e, "template did not render");
                    (Rendered::default(), Some(format!("template: {e}")))
                }
            };
            drafts.push(Draft {
                user_id: user.map(|u| u.user_id.clone()),
                channel,
                recipient: address,
                kind: kind.to_owned(),
                subject: rendered.subject,
                text: rendered.text,
                html: rendered.html,
                event_id: Some(envelope.id.to_string()),
                error,
            });
        }
        drafts
    }

    fn context(&self, envelope: &Envelope, user: Option<&Recipient>, address: &str) -> Value {
        let subject = envelope.kind.split('.').next().unwrap_or("event");
        let mut context = json!({
            "shop": { "name": "Emporium", "url": self.shop_url.trim_end_matches('/') },
            "recipient": {
                "name": user.map(|u| u.name.as_str()).unwrap_or("team"),
                "address": address,
            },
            "event": { "id": envelope.id, "type": envelope.kind, "time": envelope.time },
        });
        if let Some(map) = context.as_object_mut() {
            map.insert(subject.to_owned(), envelope.data.clone());
        }
        context
    }
}

/// An [`Audience`] after the lookup.
pub enum Resolved {
    User(Recipient),
    Staff,
    Nobody,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_and_numbers_are_checked() {
        assert_eq!(
            email_address(" ann@example.org ").unwrap(),
            "ann@example.org"
        );
        for bad in ["", "ann", "ann@", "@example.org", "a b@example.org"] {
            assert!(email_address(bad).is_err(), "{bad:?} passed");
        }
        assert!(email_address(&format!("{}@example.org", "a".repeat(250))).is_err());
        assert_eq!(phone_number("+4915112345678").unwrap(), "+4915112345678");
        assert_eq!(
            phone_number("+49 (151) 1234-5678").unwrap(),
            "+4915112345678"
        );
        for bad in [
            "",
            "4915112345678",
            "+0151123456",
            "+12",
            "+1234567890123456",
            "+49 151",
        ] {
            assert!(phone_number(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn each_event_names_its_audience() {
        let event = |kind: &str, data: Value| Envelope::new(kind, "emporium.test", "x", data);
        assert_eq!(
            audience(&event("order.shipped", json!({ "user_id": "u1" }))),
            Audience::User("u1".into())
        );
        assert_eq!(
            audience(&event("payment.refunded", json!({ "user_id": "" }))),
            Audience::Nobody
        );
        assert_eq!(
            audience(&event("stock.low", json!({ "sku": "A" }))),
            Audience::Staff
        );
        assert!(matches!(
            audience(&event("user.registered", json!({ "id": "u2", "email": "b@example.org", "name": "B" }))),
            Audience::Described(Recipient { ref user_id, .. }) if user_id == "u2"
        ));
        assert_eq!(
            audience(&event("product.created", json!({}))),
            Audience::Nobody
        );
        assert!(is_pushed("order.processing") && is_pushed("payment.completed"));
        assert!(!is_pushed("stock.low") && !is_pushed("user.registered"));
    }
}
