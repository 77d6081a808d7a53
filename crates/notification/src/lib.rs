//! The notification service: turns events into messages (email, SMS) kept
//! as records and sent with retries, and pushes each user's order and
//! payment events to their open WebSockets.

pub mod channels;
pub mod dispatch;
pub mod domain;
pub mod events;
pub mod http;
pub mod live;
pub mod migrations;
pub mod openapi;
pub mod store;
pub mod templates;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use emporium_platform::config::{
    Plain, Production, Secret, Section, SectionDef, Settings, loopback,
};
use emporium_platform::grpc::{Peer, PeerPolicy, ServiceCredentials};
use emporium_platform::ratelimit::Limiter;
use emporium_platform::service::{Definition, Faces};
use emporium_platform::telemetry::{Kind, Metric};
use emporium_platform::{Runtime, Started, bus, db};
use serde::{Deserialize, Serialize};

pub const NAME: &str = "notification";

/// The `[notification]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `sqlite://…`, `postgres://…` or `mysql://…`; embedded SQLite when unset.
    pub database_url: Option<Secret>,
    /// Redis for the per-recipient rate limit and for the fan-out of socket
    /// messages between replicas; this process alone when unset.
    pub redis_url: Option<Secret>,
    /// `smtp://host:port` (STARTTLS when offered), `smtps://…` (TLS), with
    /// `user:password@` when the server asks. When unset, each email is
    /// written as an `.eml` file to `mailbox_dir`.
    pub smtp_url: Option<Secret>,
    /// Where emails land without an SMTP server; `<data_dir>/mailbox` when unset.
    pub mailbox_dir: Option<PathBuf>,
    /// The `From` of every email.
    pub sender: String,
    /// A directory whose files replace the built-in templates of the same
    /// name, read at start.
    pub templates_dir: Option<PathBuf>,
    /// Who hears of stock running low.
    pub staff_emails: Vec<String>,
    /// The shop's public address, for links in messages.
    pub shop_url: String,
    /// Sending attempts before a message is `failed`.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles with each one after.
    pub retry_base_ms: u64,
    /// Messages to one recipient in an hour; the rest wait for the next
    /// hour. 0: no limit.
    pub per_recipient_per_hour: u32,
    /// Messages held for one slow socket before it is dropped.
    pub socket_buffer: usize,
    /// Seconds between pings on an idle socket.
    pub heartbeat_secs: u64,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            http_addr: loopback(8005),
            grpc_addr: loopback(50056),
            database_url: None,
            redis_url: None,
            smtp_url: None,
            mailbox_dir: None,
            sender: "Emporium <shop@emporium.local>".to_owned(),
            templates_dir: None,
            staff_emails: Vec::new(),
            shop_url: "http://127.0.0.1:8080".to_owned(),
            max_attempts: 5,
            retry_base_ms: 1_000,
            per_recipient_per_hour: 30,
            socket_buffer: 64,
            heartbeat_secs: 20,
        }
    }
}

impl Section for NotificationSettings {
    const NAME: &'static str = NAME;
    const LIST_KEYS: &'static [&'static str] = &["staff_emails"];
    const PLAIN: Plain = Plain {
        http_port: true,
        grpc_port: true,
        database: Some(Production::Postgres),
        redis: Some("redis_url"),
        aliases: &[
            ("SMTP_URL", "smtp_url"),
            ("NOTIFICATION_STAFF_EMAILS", "staff_emails"),
        ],
    };
    fn on_free_ports(self) -> Self {
        Self {
            http_addr: loopback(0),
            grpc_addr: loopback(0),
            ..self
        }
    }
}

/// How the binary knows notification. It has no demo data of its own.
pub fn definition() -> Definition {
    Definition {
        metrics: METRICS,
        consumes: Some(emporium_platform::bus::Queue {
            name: events::QUEUE,
            interests: events::CONSUMES,
        }),
        name: NAME,
        section: SectionDef::of::<NotificationSettings>(),
        start: |runtime, local| Box::pin(async move { start(&runtime, &local).await }),
        migrate: |settings| {
            Box::pin(async move {
                let db = migrated(&settings).await?;
                tracing::info!(
                    service = NAME,
                    backend = db::backend_name(&db),
                    "migrations applied"
                );
                Ok(())
            })
        },
        seed: None,
    }
}

async fn migrated(settings: &Settings) -> anyhow::Result<db::Db> {
    let own = settings.section::<NotificationSettings>();
    let db = db::connect(&settings.database_url(NAME, own.database_url.as_ref())).await?;
    db::migrate::<migrations::Migrator>(&db).await?;
    Ok(db)
}

/// The email channel the settings name: SMTP, or the mailbox directory.
fn email_channel(
    settings: &Settings,
    own: &NotificationSettings,
) -> anyhow::Result<std::sync::Arc<dyn channels::Channel>> {
    Ok(match &own.smtp_url {
        Some(url) => std::sync::Arc::new(channels::Smtp::from_url(url, &own.sender)?),
        None => {
            let dir = own
                .mailbox_dir
                .clone()
                .unwrap_or_else(|| settings.data_dir.join("mailbox"));
            std::sync::Arc::new(channels::Mailbox::open(&dir, &own.sender)?)
        }
    })
}

/// Opens the store, consumes its events, sends what they queue, binds both
/// ports and serves.
pub async fn start(runtime: &Runtime, local: &[Started]) -> anyhow::Result<Started> {
    let settings = &runtime.settings;
    let own = settings.section::<NotificationSettings>();
    let templates = templates::Templates::load(own.templates_dir.as_deref())?;
    let staff = domain::staff_addresses(&own.staff_emails)?;
    let email = email_channel(settings, &own)?;
    let db = migrated(settings).await?;
    let limiter = match &own.redis_url {
        Some(url) => {
            Limiter::from_url(
                url,
                "notification:recipient",
                Duration::from_secs(3600),
                "notification.redis_url",
            )
            .await?
        }
        None => Limiter::memory(Duration::from_secs(3600)),
    };
    let credentials = ServiceCredentials::for_service(settings, local, NAME)?;
    let identity = Peer::of(
        "identity",
        settings,
        local,
        PeerPolicy::default(),
        &credentials,
    )?;
    let directory = domain::Directory::new(identity);
    let hub = live::Hub::start(
        own.redis_url.as_ref(),
        live::SocketSettings {
            buffer: own.socket_buffer.max(1),
            heartbeat: Duration::from_secs(own.heartbeat_secs.max(1)),
        },
        runtime.shutdown.clone(),
    )
    .await?;
    let store = store::Store::new(db.clone());
    let dispatcher = dispatch::Dispatcher::new(
        store.clone(),
        dispatch::Channels {
            email,
            sms: std::sync::Arc::new(channels::SmsSink::default()),
        },
        limiter,
        dispatch::Retry {
            max_attempts: own.max_attempts.max(1),
            base: Duration::from_millis(own.retry_base_ms.max(1)),
        },
        own.per_recipient_per_hour,
    );
    let composer = domain::Composer {
        templates,
        shop_url: own.shop_url.clone(),
        staff,
    };
    let mut checks = vec![db::check(db), bus::check(runtime.transport.clone())];
    checks.extend(hub.check());
    let state = http::AppState {
        store: store.clone(),
        verifier: runtime.verifier.clone(),
        directory: directory.clone(),
        dispatcher: dispatcher.clone(),
    };
    runtime
        .consume(
            NAME,
            events::QUEUE,
            events::CONSUMES,
            std::sync::Arc::new(events::Consumer {
                store: store.clone(),
                directory,
                composer,
                dispatcher: dispatcher.clone(),
                hub: hub.clone(),
            }),
        )
        .await?;
    let shutdown = runtime.shutdown.clone();
    runtime.spawn(NAME, "dispatcher", async move {
        dispatcher.run(shutdown).await;
    });
    let routes = http::router(state).merge(live::router(hub, runtime.verifier.clone()));
    runtime
        .serve_faces(Faces {
            name: NAME,
            http_addr: own.http_addr,
            grpc_addr: own.grpc_addr,
            routes,
            checks,
            grpc: tonic::service::Routes::default(),
            grpc_names: &[],
            admission: &[],
        })
        .await
}

/// This service's metrics (SPEC §9), declared when it starts.
pub const METRICS: &[Metric] = &[
    Metric::new(
        "notifications_sent_total",
        Kind::Counter,
        "Messages settled, by type (the event that asked for them) and status (sent, failed).",
    )
    .zeros(&[]),
    Metric::new(
        "notification_queue_size",
        Kind::Gauge,
        "Messages queued and not yet sent, after the dispatcher's last pass.",
    ),
    Metric::new(
        "websocket_connections_current",
        Kind::Gauge,
        "Live order-status sockets open.",
    ),
    Metric::new(
        "websocket_dropped_total",
        Kind::Counter,
        "Live sockets closed by the server, by reason (slow: the client did not read).",
    )
    .zeros(&[&[("reason", "slow")]]),
    Metric::new(
        "email_send_duration_seconds",
        Kind::Histogram,
        "Time to hand one email to the mail server or the mailbox, in seconds.",
    ),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use emporium_platform::config::{self, Sources};

    use super::*;

    #[test]
    fn the_seeds_variables_configure_notification_alone() {
        let env = [
            ("PORT", "9005"),
            ("GRPC_PORT", "9056"),
            ("DB_HOST", "notify-db"),
            ("REDIS_HOST", "cache"),
            ("SMTP_URL", "smtp://mail:25"),
        ];
        let sources = Sources::from_pairs(&env, Some(NAME));
        let alone = config::load(&sources, &[SectionDef::of::<NotificationSettings>()]).unwrap();
        let own = alone.section::<NotificationSettings>();
        assert_eq!((own.http_addr.port(), own.grpc_addr.port()), (9005, 9056));
        assert_eq!(
            own.database_url.as_ref().map(Secret::expose),
            Some("postgres://postgres@notify-db:5432/notification")
        );
        assert_eq!(
            own.redis_url.as_ref().map(Secret::expose),
            Some("redis://cache:6379/0")
        );
        assert_eq!(
            own.smtp_url.as_ref().map(Secret::expose),
            Some("smtp://mail:25")
        );
    }

    /// Staff addresses from the environment, as a container is given them:
    /// a comma-separated list under either name.
    #[test]
    fn staff_emails_come_from_the_environment_as_a_list() {
        for name in [
            "NOTIFICATION_STAFF_EMAILS",
            "EMPORIUM__NOTIFICATION__STAFF_EMAILS",
        ] {
            let env = [(name, "ops@example.org,stock@example.org")];
            let sources = Sources::from_pairs(&env, Some(NAME));
            let alone =
                config::load(&sources, &[SectionDef::of::<NotificationSettings>()]).unwrap();
            let own = alone.section::<NotificationSettings>();
            assert_eq!(
                own.staff_emails,
                ["ops@example.org", "stock@example.org"],
                "{name}"
            );
        }
    }
}
