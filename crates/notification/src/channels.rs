//! Where messages go: email over SMTP or into a mailbox directory, SMS into
//! a recording sink (no SMS provider is reachable from here). Each is a
//! [`Channel`], so a provider's API is one more implementation.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use emporium_platform::config::Secret;
use lettre::message::{Mailbox as Address, MultiPart, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// One message on its way out.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The record's id: the email's `Message-ID`, so that a mail program
    /// shows a message sent twice (after a crash mid-send) once.
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

#[async_trait]
pub trait Channel: Send + Sync {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError>;
}

/// The email `message` is, from `sender`.
pub fn email(sender: &Address, message: &Outgoing) -> Result<Message, SendError> {
    let to: Address = message
        .recipient
        .parse()
        .map_err(|e| SendError(format!("recipient: {e}")))?;
    let builder = Message::builder()
        .from(sender.clone())
        .to(to)
        .subject(&message.subject)
        .message_id(Some(format!("<{}@emporium>", message.id)));
    match &message.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            message.text.clone(),
            html.clone(),
        )),
        None => builder
            .header(ContentType::TEXT_PLAIN)
            .body(message.text.clone()),
    }
    .map_err(|e| SendError(format!("message: {e}")))
}

fn sender(raw: &str) -> anyhow::Result<Address> {
    raw.parse()
        .map_err(|e| anyhow::anyhow!("configuration: notification.sender `{raw}`: {e}"))
}

/// Email through an SMTP server.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    sender: Address,
}

impl Smtp {
    /// `smtp://host:port` (STARTTLS when the server offers it, required
    /// with `?tls=required`), or `smtps://host:port`; credentials as
    /// `user:password@`.
    pub fn from_url(url: &Secret, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| {
                anyhow::anyhow!(
                    "configuration: notification.smtp_url `{}`: {e}",
                    url.masked()
                )
            })?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        Ok(Self {
            transport,
            sender: sender(from)?,
        })
    }
}

#[async_trait]
impl Channel for Smtp {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
        let email = email(&self.sender, message)?;
        let started = std::time::Instant::now();
        let sent = self.transport.send(email).await;
        metrics::histogram!("email_send_duration_seconds").record(started.elapsed().as_secs_f64());
        sent.map(|_| ())
            .map_err(|e| SendError(format!("smtp: {e}")))
    }
}

/// Email as one `.eml` file a message in a directory, readable by any mail
/// program: the default of `emporium up`, where no mail server runs.
pub struct Mailbox {
    dir: PathBuf,
    sender: Address,
}

impl Mailbox {
    pub fn open(dir: &Path, from: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "configuration: notification.mailbox_dir `{}`: {e}",
                dir.display()
            )
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            sender: sender(from)?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Channel for Mailbox {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
        let email = email(&self.sender, message)?;
        let path = self.dir.join(format!("{}.eml", message.id));
        let started = std::time::Instant::now();
        let bytes = email.formatted();
        let written = tokio::task::spawn_blocking(move || {
            emporium_platform::files::write_private(&path, &bytes)
        })
        .await
        .map_err(|e| SendError(format!("mailbox: {e}")))?;
        metrics::histogram!("email_send_duration_seconds").record(started.elapsed().as_secs_f64());
        written.map_err(|e| SendError(format!("mailbox: {e}")))
    }
}

/// SMS, kept in memory and counted: what a provider would have been asked.
#[derive(Default)]
pub struct SmsSink {
    sent: Mutex<Vec<(String, String)>>,
}

impl SmsSink {
    /// Every (number, text) it was asked to send, oldest first.
    pub fn sent(&self) -> Vec<(String, String)> {
        match self.sent.lock() {
            Ok(sent) => sent.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[async_trait]
impl Channel for SmsSink {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
        let mut sent = match self.sent.lock() {
            Ok(sent) => sent,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The last thousand: a sink, not a store.
        if sent.len() >= 1_000 {
            sent.remove(0);
        }
        sent.push((message.recipient.clone(), message.text.clone()));
        tracing::info!(notification_id = %message.id, "sms recorded");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_mailbox_writes_one_private_eml_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox = Mailbox::open(&dir.path().join("mail"), "Shop <shop@example.org>").unwrap();
        let message = Outgoing {
            id: "0193a4b2-0000-7000-8000-000000000009".into(),
            recipient: "ann@example.org".into(),
            subject: "Order confirmed".into(),
            text: "Thanks".into(),
            html: Some("<p>Thanks</p>".into()),
        };
        mailbox.send(&message).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(mailbox.dir()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let path = files[0].as_ref().unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("To: ann@example.org"), "{text}");
        assert!(text.contains("Subject: Order confirmed"), "{text}");
        assert!(
            text.contains("Message-ID: <0193a4b2-0000-7000-8000-000000000009@emporium>"),
            "{text}"
        );
        assert!(text.contains("multipart/alternative"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
    }

    #[test]
    fn a_bad_sender_or_url_is_refused_naming_its_setting() {
        let dir = tempfile::tempdir().unwrap();
        let error = Mailbox::open(dir.path(), "not an address").err().unwrap();
        assert!(error.to_string().contains("notification.sender"), "{error}");
        let error = Smtp::from_url(&Secret::new("ftp://user:hunter2@mail"), "shop@example.org")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("notification.smtp_url"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
