//! Live order status: `GET /ws` upgrades a signed-in user's connection to
//! a WebSocket that receives their order and payment events as they
//! happen, and nothing of anyone else's.
//!
//! The token comes in the subprotocols (`emporium.v1, bearer.<token>`, the
//! server echoes `emporium.v1`) or in `?access_token=`; without a valid one
//! the handshake is refused with a 401 problem before any upgrade. Once
//! open, the socket lives as long as its token: a client extends it with a
//! text frame `{"type":"authenticate","token":"<fresh token>"}`, answered
//! by `{"type":"authenticated","expires_at":<unix seconds>}`.
//!
//! How the server closes a socket, so that clients know what to do:
//!
//! | code | when | what a client does |
//! |---|---|---|
//! | 1001 | the service is stopping | reconnect |
//! | 1003 | a binary frame | send text |
//! | 1007 | a text frame that is not the renewal above | fix the client |
//! | 1009 | a frame over 64 KiB | fix the client |
//! | 1013 | the client read too slowly and messages were dropped | reconnect, refetch |
//! | 4000 | no answer to pings for two heartbeats | reconnect |
//! | 4001 | the token expired, or a renewal's token is not valid | reconnect with a fresh token |
//! | 4003 | a renewal's token is another user's | reconnect as that user |
//!
//! Replicas share messages through Redis pub/sub: `push` publishes on one
//! channel, every process subscribes and hands each message to its own
//! sockets of that user. Pub/sub keeps nothing: a message published while a
//! replica's subscription is down does not reach that replica's sockets,
//! whose clients refetch the order when they reconnect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use emporium_platform::Problem;
use emporium_platform::auth::{SOCKET_PROTOCOL, Verifier, presented_authorization};
use emporium_platform::config::Secret;
use emporium_platform::http::Check;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The Redis channel every replica publishes on and listens to.
pub const CHANNEL: &str = "emporium:notification:live";

/// The largest frame (and message) a client may send: a renewal is a few
/// hundred bytes.
pub const MAX_FRAME: usize = 64 * 1024;

/// What a socket reads into at first; it grows for a larger frame. Small,
/// since most sockets only ever read pongs.
const READ_BUFFER: usize = 4 * 1024;

/// The longest a publish may hold up the consumer that pushes.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a closing socket waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Close codes beyond RFC 6455's (see the module's table).
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const SILENT: u16 = 4000;
    pub const UNAUTHENTICATED: u16 = 4001;
    pub const FORBIDDEN: u16 = 4003;
}

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
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    settings: SocketSettings,
    shutdown: CancellationToken,
    sockets: Arc<Registry>,
    fanout: Option<Fanout>,
}

/// The Redis half: a connection to publish on, and the task that listens.
struct Fanout {
    publisher: redis::aio::ConnectionManager,
    subscribed: Arc<AtomicBool>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for HubInner {
    fn drop(&mut self) {
        if let Some(fanout) = &self.fanout {
            fanout.listener.abort();
        }
    }
}

/// What travels on the channel: whose message, and the message.
#[derive(Serialize, Deserialize)]
struct Published {
    user_id: String,
    message: serde_json::Value,
}

impl Hub {
    /// A hub for this process; with `redis_url`, subscribed to the channel
    /// before it returns, so that a push anywhere reaches its sockets from
    /// then on. An unreachable Redis stops start-up.
    pub async fn start(
        redis_url: Option<&Secret>,
        settings: SocketSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let sockets = Arc::new(Registry::default());
        let fanout = match redis_url {
            None => None,
            Some(url) => {
                let what = "notification.redis_url";
                let publisher = emporium_platform::cache::redis_connection(url, what).await?;
                let client = redis::Client::open(url.expose()).map_err(|e| {
                    anyhow::anyhow!("configuration: {what} url `{}`: {e}", url.masked())
                })?;
                let pubsub = subscribe(&client).await.map_err(|e| {
                    anyhow::anyhow!("cannot subscribe to {what} {}: {e}", url.masked())
                })?;
                let subscribed = Arc::new(AtomicBool::new(true));
                let listener = tokio::spawn(listen(
                    client,
                    pubsub,
                    sockets.clone(),
                    subscribed.clone(),
                    shutdown.clone(),
                ));
                Some(Fanout {
                    publisher,
                    subscribed,
                    listener,
                })
            }
        };
        Ok(Self {
            inner: Arc::new(HubInner {
                settings,
                shutdown,
                sockets,
                fanout,
            }),
        })
    }

    /// Sends `message` to every open socket of `user_id`, on every replica.
    /// When Redis refuses the publish, this replica's sockets still get it.
    pub async fn push(&self, user_id: &str, message: &serde_json::Value) {
        let Some(fanout) = &self.inner.fanout else {
            self.inner.sockets.deliver(user_id, message);
            return;
        };
        let published = Published {
            user_id: user_id.to_owned(),
            message: message.clone(),
        };
        let payload = match serde_json::to_string(&published) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(error = %e, "socket message not serialisable");
                return;
            }
        };
        let mut connection = fanout.publisher.clone();
        let publish = redis::cmd("PUBLISH").arg(CHANNEL).arg(payload).clone();
        let sent = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            // The connection reconnects after the call that found it broken
            // fails: one more try goes out on the new one.
            match publish.query_async::<i64>(&mut connection).await {
                Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                    publish.query_async::<i64>(&mut connection).await
                }
                other => other,
            }
        })
        .await;
        let failure = match sent {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        tracing::warn!(error = %failure, "socket message not published; delivered on this replica only");
        self.inner.sockets.deliver(user_id, message);
    }

    /// Readiness of the fan-out, when it needs Redis. Degradable: without
    /// it this replica still serves its own sockets, and taking it out of
    /// rotation would not bring other replicas' messages back.
    pub fn check(&self) -> Option<Check> {
        let fanout = self.inner.fanout.as_ref()?;
        let publisher = fanout.publisher.clone();
        let subscribed = fanout.subscribed.clone();
        Some(
            Check::new("redis", move || {
                let publisher = publisher.clone();
                let subscribed = subscribed.load(Ordering::SeqCst);
                async move {
                    if !subscribed {
                        return Err("the socket fan-out is not subscribed".to_owned());
                    }
                    // As in `push`: the first call after a lost
                    // connection fails and reconnects.
                    match emporium_platform::cache::ping(&publisher).await {
                        Ok(()) => Ok(()),
                        Err(_) => emporium_platform::cache::ping(&publisher).await,
                    }
                }
            })
            .degradable(),
        )
    }

    /// Open sockets in this process.
    pub fn open_sockets(&self) -> usize {
        self.inner.sockets.len()
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = tokio::time::timeout(Duration::from_secs(3), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connection timed out")))??;
    pubsub.subscribe(CHANNEL).await?;
    Ok(pubsub)
}

/// Hands every published message to this process's sockets; when the
/// subscription is lost, subscribes again (backing off to 5 s) until the
/// service stops.
async fn listen(
    client: redis::Client,
    first: redis::aio::PubSub,
    sockets: Arc<Registry>,
    subscribed: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut pubsub = Some(first);
    let mut backoff = Duration::from_millis(100);
    loop {
        let current = match pubsub.take() {
            Some(current) => current,
            None => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                match subscribe(&client).await {
                    Ok(current) => {
                        tracing::info!("socket fan-out subscribed again");
                        current
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "socket fan-out cannot subscribe; retrying");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
        };
        subscribed.store(true, Ordering::SeqCst);
        backoff = Duration::from_millis(100);
        let mut messages = current.into_on_message();
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = messages.next() => message,
            };
            let Some(message) = message else { break };
            let published = message
                .get_payload::<String>()
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    serde_json::from_str::<Published>(&text).map_err(|e| e.to_string())
                });
            match published {
                Ok(p) => sockets.deliver(&p.user_id, &p.message),
                Err(e) => tracing::warn!(error = %e, "unreadable message on the socket channel"),
            }
        }
        subscribed.store(false, Ordering::SeqCst);
        tracing::warn!("socket fan-out lost its subscription; subscribing again");
    }
}

/// The open sockets of this process by user: the sending half of each
/// socket's bounded buffer.
#[derive(Default)]
struct Registry {
    by_user: Mutex<HashMap<String, Vec<Entry>>>,
    next_id: AtomicU64,
}

struct Entry {
    id: u64,
    sender: mpsc::Sender<Utf8Bytes>,
    /// Cancelled when the buffer overflowed: the socket closes with 1013.
    overflowed: CancellationToken,
}

/// A socket's place in the registry, given up when dropped.
struct Registration {
    registry: Arc<Registry>,
    user_id: String,
    id: u64,
    overflowed: CancellationToken,
    receiver: mpsc::Receiver<Utf8Bytes>,
}

impl Registry {
    fn register(self: &Arc<Self>, user_id: &str, buffer: usize) -> Registration {
        let (sender, receiver) = mpsc::channel(buffer.max(1));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let overflowed = CancellationToken::new();
        self.lock()
            .entry(user_id.to_owned())
            .or_default()
            .push(Entry {
                id,
                sender,
                overflowed: overflowed.clone(),
            });
        metrics::gauge!("websocket_connections_current").increment(1.0);
        Registration {
            registry: self.clone(),
            user_id: user_id.to_owned(),
            id,
            overflowed,
            receiver,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        // A panic elsewhere while holding the lock leaves a map that is
        // still whole: every change to it is one insert or remove.
        self.by_user.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `message` on each socket of `user_id`; a socket whose buffer
    /// is full is dropped from the registry and told to close.
    fn deliver(&self, user_id: &str, message: &serde_json::Value) {
        let mut by_user = self.lock();
        let Some(entries) = by_user.get_mut(user_id) else {
            return;
        };
        let text = Utf8Bytes::from(message.to_string());
        entries.retain(|entry| match entry.sender.try_send(text.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(socket = entry.id, "socket too slow; closing it");
                metrics::counter!("websocket_dropped_total", "reason" => "slow").increment(1);
                entry.overflowed.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if entries.is_empty() {
            by_user.remove(user_id);
        }
    }

    fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut by_user = self.registry.lock();
        if let Some(entries) = by_user.get_mut(&self.user_id) {
            entries.retain(|e| e.id != self.id);
            if entries.is_empty() {
                by_user.remove(&self.user_id);
            }
        }
        metrics::gauge!("websocket_connections_current").decrement(1.0);
    }
}

#[derive(Clone)]
struct LiveState {
    hub: Hub,
    verifier: Verifier,
}

pub fn router(hub: Hub, verifier: Verifier) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .with_state(LiveState { hub, verifier })
}

/// Refuses the handshake with a 401 unless it carries a valid access
/// token; upgrades it otherwise.
async fn upgrade(
    State(state): State<LiveState>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let presented = presented_authorization(&headers, &uri);
    let claims = match state.verifier.authenticate(presented.as_deref()).await {
        Ok(claims) => claims,
        Err(problem) => return problem.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return Problem::bad_request(format!(
                "this route takes a WebSocket handshake: {rejection}"
            ))
            .into_response();
        }
    };
    let LiveState { hub, verifier } = state;
    ws.protocols([SOCKET_PROTOCOL])
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let session = Session {
                user_id: claims.sub,
                expires_at: claims.exp,
                verifier,
            };
            serve(socket, &hub, session).await;
        })
}

/// Who a socket belongs to and until when.
struct Session {
    user_id: String,
    /// Unix seconds.
    expires_at: i64,
    verifier: Verifier,
}

/// The instant `unix` seconds falls on.
fn instant_of(unix: i64) -> Instant {
    let left = unix - chrono::Utc::now().timestamp();
    Instant::now() + Duration::from_secs(left.max(0) as u64)
}

/// Why the server ends a socket.
struct Closing {
    code: u16,
    reason: &'static str,
}

const fn closing(code: u16, reason: &'static str) -> Option<Closing> {
    Some(Closing { code, reason })
}

/// The frame a client sends to extend its socket.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Renewal {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

/// Not `Debug`: a token stays out of every log.
impl Renewal {
    fn parse(text: &str) -> Option<Self> {
        // serde reads a struct from an array too; only the object is meant.
        if !text.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str::<Self>(text)
            .ok()
            .filter(|r| r.kind == "authenticate")
    }
}

/// The life of one socket: pushes out, pings on the heartbeat, renewals
/// in, until the client leaves, the token lapses or the service stops.
async fn serve(mut socket: WebSocket, hub: &Hub, mut session: Session) {
    let SocketSettings { buffer, heartbeat } = hub.inner.settings;
    let shutdown = hub.inner.shutdown.clone();
    let mut registration = hub.inner.sockets.register(&session.user_id, buffer);
    let overflowed = registration.overflowed.clone();
    tracing::debug!(user_id = %session.user_id, "socket opened");
    let expiry = tokio::time::sleep_until(instant_of(session.expires_at));
    tokio::pin!(expiry);
    let mut pings = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // A send that cannot finish in two heartbeats means a client that
    // stopped reading: it is dropped rather than waited on.
    let send_limit = heartbeat * 2;
    let ending = loop {
        let outcome = tokio::select! {
            biased;
            _ = shutdown.cancelled() => closing(close::GOING_AWAY, "the service is stopping; reconnect"),
            _ = overflowed.cancelled() => closing(close::TRY_AGAIN_LATER, "too slow: messages were dropped; reconnect and refetch"),
            _ = &mut expiry => closing(close::UNAUTHENTICATED, "the token expired; reconnect or authenticate with a fresh token"),
            _ = pings.tick() => {
                if last_heard.elapsed() >= heartbeat * 2 {
                    closing(close::SILENT, "no answer to pings; reconnect")
                } else if send(&mut socket, Message::Ping(Default::default()), send_limit).await {
                    None
                } else {
                    return;
                }
            }
            queued = registration.receiver.recv() => match queued {
                Some(text) => {
                    if !send(&mut socket, Message::Text(text), send_limit).await {
                        return;
                    }
                    None
                }
                None => closing(close::TRY_AGAIN_LATER, "too slow: messages were dropped; reconnect and refetch"),
            },
            frame = socket.recv() => {
                last_heard = Instant::now();
                match frame {
                    None | Some(Ok(Message::Close(_))) => return,
                    Some(Err(e)) => {
                        if too_big(e) {
                            // The rest of the frame is never read: close
                            // and go without waiting for the answer.
                            let _ = tokio::time::timeout(
                                CLOSE_WAIT,
                                socket.send(close_frame(close::TOO_BIG, "a frame may be at most 64 KiB")),
                            )
                            .await;
                        }
                        return;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                    Some(Ok(Message::Binary(_))) => closing(close::UNSUPPORTED, "only text frames are understood"),
                    Some(Ok(Message::Text(text))) => match Renewal::parse(text.as_str()) {
                        None => closing(close::INVALID, r#"expected {"type":"authenticate","token":"<access token>"}"#),
                        Some(renewal) => match renew(&mut session, renewal).await {
                            Err(refusal) => Some(refusal),
                            Ok(()) => {
                                expiry.as_mut().reset(instant_of(session.expires_at));
                                let answer = serde_json::json!({
                                    "type": "authenticated",
                                    "expires_at": session.expires_at,
                                });
                                if !send(&mut socket, Message::Text(answer.to_string().into()), send_limit).await {
                                    return;
                                }
                                None
                            }
                        },
                    },
                }
            }
        };
        if let Some(closing) = outcome {
            break closing;
        }
    };
    tracing::debug!(user_id = %session.user_id, code = ending.code, reason = ending.reason, "closing socket");
    drop(registration);
    if !send(
        &mut socket,
        close_frame(ending.code, ending.reason),
        CLOSE_WAIT,
    )
    .await
    {
        return;
    }
    // The client answers the close frame; whatever else it still sends is
    // read and dropped.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

/// Extends the session with a renewal's token, which must be valid and
/// the same user's.
async fn renew(session: &mut Session, renewal: Renewal) -> Result<(), Closing> {
    let claims = session
        .verifier
        .verify(renewal.token.trim())
        .await
        .map_err(|_| Closing {
            code: close::UNAUTHENTICATED,
            reason: "the renewal's token is not valid; reconnect with a fresh token",
        })?;
    if claims.sub != session.user_id {
        return Err(Closing {
            code: close::FORBIDDEN,
            reason: "the renewal's token is another user's",
        });
    }
    session.expires_at = session.expires_at.max(claims.exp);
    Ok(())
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Sends one frame within `limit`; false when the socket is gone or stuck.
async fn send(socket: &mut WebSocket, message: Message, limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// Whether a read failed on a frame or message over the size limit.
fn too_big(error: axum::Error) -> bool {
    error
        .into_inner()
        .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn settings(buffer: usize) -> SocketSettings {
        SocketSettings {
            buffer,
            heartbeat: Duration::from_secs(20),
        }
    }

    #[test]
    fn a_message_reaches_every_socket_of_its_user_and_no_one_else() {
        let registry = Arc::new(Registry::default());
        let mut ada = [registry.register("ada", 4), registry.register("ada", 4)];
        let mut bob = registry.register("bob", 4);
        registry.deliver("ada", &json!({ "type": "order.confirmed" }));
        for socket in &mut ada {
            let text = socket.receiver.try_recv().unwrap();
            assert_eq!(text.as_str(), r#"{"type":"order.confirmed"}"#);
            assert!(socket.receiver.try_recv().is_err(), "exactly once");
        }
        assert!(bob.receiver.try_recv().is_err());
        registry.deliver("nobody", &json!({}));
        assert_eq!(registry.len(), 3);
    }

    #[test]
    fn a_full_buffer_drops_that_socket_alone() {
        let registry = Arc::new(Registry::default());
        let slow = registry.register("ada", 2);
        let mut quick = registry.register("ada", 2);
        for n in 0..2 {
            registry.deliver("ada", &json!({ "n": n }));
            assert_eq!(
                quick.receiver.try_recv().unwrap().as_str(),
                format!(r#"{{"n":{n}}}"#)
            );
        }
        assert!(!slow.overflowed.is_cancelled());
        registry.deliver("ada", &json!({ "n": 2 }));
        assert!(slow.overflowed.is_cancelled(), "told to close");
        assert!(!quick.overflowed.is_cancelled());
        assert_eq!(registry.len(), 1, "out of the registry");
        registry.deliver("ada", &json!({ "n": 3 }));
        assert_eq!(quick.receiver.try_recv().unwrap().as_str(), r#"{"n":2}"#);
        assert_eq!(quick.receiver.try_recv().unwrap().as_str(), r#"{"n":3}"#);
        drop(slow);
        drop(quick);
        assert_eq!(registry.len(), 0);
        assert!(registry.lock().is_empty(), "no user left behind");
    }

    #[test]
    fn only_the_renewal_frame_parses() {
        let renewal = Renewal::parse(r#"{"type":"authenticate","token":"abc"}"#).unwrap();
        assert_eq!(renewal.token, "abc");
        for text in [
            "",
            "hello",
            "{}",
            r#"{"type":"authenticate"}"#,
            r#"{"type":"subscribe","token":"abc"}"#,
            r#"{"type":"authenticate","token":"abc","extra":1}"#,
            r#"{"type":"authenticate","token":7}"#,
            r#"["authenticate","abc"]"#,
        ] {
            assert!(Renewal::parse(text).is_none(), "{text}");
        }
    }

    #[test]
    fn an_expiry_in_the_past_is_now() {
        let now = Instant::now();
        assert!(instant_of(0) <= Instant::now());
        let later = instant_of(chrono::Utc::now().timestamp() + 60);
        assert!(later >= now + Duration::from_secs(58), "{:?}", later - now);
    }

    #[tokio::test]
    async fn without_redis_a_push_stays_in_this_process_and_there_is_no_check() {
        let hub = Hub::start(None, settings(4), CancellationToken::new())
            .await
            .unwrap();
        assert!(hub.check().is_none());
        let mut socket = hub.inner.sockets.register("ada", 4);
        hub.push("ada", &json!({ "id": "e1" })).await;
        assert_eq!(
            socket.receiver.recv().await.unwrap().as_str(),
            r#"{"id":"e1"}"#
        );
    }

    fn redis_url() -> Option<Secret> {
        emporium_testkit::server_url(emporium_testkit::REDIS).map(Secret::new)
    }

    /// Two hubs on one Redis (two replicas): a push on either reaches a
    /// socket on the other exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_push_on_one_hub_reaches_the_other_hubs_socket_once() {
        let Some(url) = redis_url() else { return };
        let stop = CancellationToken::new();
        let one = Hub::start(Some(&url), settings(8), stop.clone())
            .await
            .unwrap();
        let two = Hub::start(Some(&url), settings(8), stop.clone())
            .await
            .unwrap();
        let user = format!("user-{}", uuid::Uuid::now_v7());
        let mut there = two.inner.sockets.register(&user, 8);
        let mut here = one.inner.sockets.register(&user, 8);
        one.push(&user, &json!({ "id": "e1" })).await;
        for socket in [&mut there, &mut here] {
            let got = tokio::time::timeout(Duration::from_secs(5), socket.receiver.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.as_str(), r#"{"id":"e1"}"#);
        }
        // A second push shows nothing else arrived in between.
        two.push(&user, &json!({ "id": "e2" })).await;
        for socket in [&mut there, &mut here] {
            let got = tokio::time::timeout(Duration::from_secs(5), socket.receiver.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.as_str(), r#"{"id":"e2"}"#, "e1 came once");
        }
        let check = one.check().unwrap();
        assert!(!check.required, "degradable");
        stop.cancel();
    }

    /// What `/ready` says with the hub's check alone.
    async fn readiness(hub: &Hub) -> serde_json::Value {
        use tower::ServiceExt;
        let routes = emporium_platform::http::operational_routes(
            "notification",
            hub.check().into_iter().collect(),
        );
        let request = axum::http::Request::get("/ready")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = routes.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200, "degradable: still in rotation");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// The subscription comes back after its connection is cut, and the
    /// readiness check says so while it is away.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_subscription_subscribes_again() {
        let Some(url) = redis_url() else { return };
        let parsed = url::Url::parse(url.expose()).unwrap();
        let target =
            tokio::net::lookup_host((parsed.host_str().unwrap(), parsed.port().unwrap_or(6379)))
                .await
                .unwrap()
                .next()
                .unwrap();
        let link = emporium_testkit::Link::to(target).await;
        let mut via_link = parsed.clone();
        via_link.set_host(Some("127.0.0.1")).unwrap();
        via_link.set_port(Some(link.addr.port())).unwrap();
        let stop = CancellationToken::new();
        let cut_off = Hub::start(
            Some(&Secret::new(via_link.to_string())),
            settings(8),
            stop.clone(),
        )
        .await
        .unwrap();
        let direct = Hub::start(Some(&url), settings(8), stop.clone())
            .await
            .unwrap();
        let user = format!("user-{}", uuid::Uuid::now_v7());
        let mut socket = cut_off.inner.sockets.register(&user, 8);
        let subscribed = cut_off.inner.fanout.as_ref().unwrap().subscribed.clone();

        link.cut();
        let lost = emporium_testkit::eventually(Duration::from_secs(5), || {
            let subscribed = subscribed.clone();
            async move { (!subscribed.load(Ordering::SeqCst)).then_some(()) }
        })
        .await;
        assert!(lost.is_some(), "the cut is noticed");
        assert_eq!(readiness(&cut_off).await["checks"]["redis"], "down");

        link.restore();
        let back = emporium_testkit::eventually(Duration::from_secs(10), || {
            let subscribed = subscribed.clone();
            async move { subscribed.load(Ordering::SeqCst).then_some(()) }
        })
        .await;
        assert!(back.is_some(), "subscribed again");
        assert_eq!(readiness(&cut_off).await["checks"]["redis"], "up");
        direct.push(&user, &json!({ "id": "after" })).await;
        let got = tokio::time::timeout(Duration::from_secs(5), socket.receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.as_str(), r#"{"id":"after"}"#);
        stop.cancel();
    }
}
