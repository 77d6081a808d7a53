//! Live order status over WebSocket: a buyer's open sockets get their
//! order and payment events as they happen, through the gateway or at
//! notification's own port, and nothing of anyone else's; bad tokens and
//! bad frames are turned away without disturbing other sockets; replicas
//! share messages through Redis.

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use tokio_util::sync::CancellationToken;

use super::*;

const CARD: &str = "4242424242424242";

pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `ws://…/ws` of an `http://…` base.
pub(super) fn ws_url(base: &str) -> String {
    format!("{}/ws", base.replacen("http://", "ws://", 1))
}

/// A handshake to `url` offering the token as a browser does.
fn offering(url: &str, token: Option<&str>) -> tungstenite::handshake::client::Request {
    let mut request = url.into_client_request().unwrap();
    let protocols = match token {
        Some(token) => format!("emporium.v1, bearer.{token}"),
        None => "emporium.v1".to_owned(),
    };
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    request
}

/// An open socket at `url` for the holder of `token`.
pub(super) async fn open(url: &str, token: &str) -> Socket {
    let (socket, response) = tokio_tungstenite::connect_async(offering(url, Some(token)))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["sec-websocket-protocol"], "emporium.v1");
    socket
}

/// The next text message, parsed; pings are answered on the way. Panics
/// on a close or after `within`.
pub(super) async fn next_message(socket: &mut Socket, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a frame");
        match frame {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Messages until the first one of `kind` about `order_id`, that one
/// included.
pub(super) async fn messages_until(socket: &mut Socket, kind: &str, order_id: &str) -> Vec<Value> {
    let mut seen = vec![];
    loop {
        let message = next_message(socket, Duration::from_secs(15)).await;
        let done = message["type"] == kind && message["data"]["order_id"] == order_id;
        seen.push(message);
        if done {
            return seen;
        }
    }
}

/// The close code and reason the server ends the socket with (within
/// `within`), skipping whatever comes before.
async fn close_of(socket: &mut Socket, within: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("closed in time");
        match frame {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.as_str().to_owned());
            }
            Some(Ok(Message::Close(None))) => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("no close frame: {e}"),
            None => panic!("ended without a close frame"),
        }
    }
}

/// Status, content type and body of a refused handshake.
async fn refusal(request: tungstenite::handshake::client::Request) -> (u16, String, Value) {
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => panic!("upgraded"),
        Err(tungstenite::Error::Http(response)) => {
            let kind = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response
                .body()
                .as_deref()
                .map(|b| serde_json::from_slice(b).unwrap())
                .unwrap_or(Value::Null);
            (response.status().as_u16(), kind, body)
        }
        Err(other) => panic!("{other:?}"),
    }
}

fn customer(shop: &TestShop, name: &str, ttl: Duration) -> String {
    shop.issuer.mint(name, Role::Customer, ttl).unwrap()
}

/// A token of `name` that expired two minutes ago, signed by the shop's key.
fn expired(shop: &TestShop, name: &str) -> String {
    use base64::Engine;
    let fresh = customer(shop, name, Duration::from_secs(300));
    let payload = fresh.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let mut claims: Value = serde_json::from_slice(&bytes).unwrap();
    let now = chrono_now();
    claims["iat"] = json!(now - 600);
    claims["exp"] = json!(now - 120);
    shop.issuer.sign(&claims).unwrap()
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The id of the `index`th demo product.
async fn product(shop: &TestShop, index: usize) -> String {
    let page = shop.get("/api/v1/products?per_page=30&sort=name").await.1;
    page["items"][index]["id"].as_str().unwrap().to_owned()
}

/// A confirmed order of one unit of the `index`th demo product; its id.
async fn checkout(shop: &TestShop, token: &str, index: usize) -> String {
    let product_id = product(shop, index).await;
    let (status, order) = shop
        .send(
            reqwest::Method::POST,
            "/api/v1/orders",
            Some(token),
            Some(json!({ "items": [{ "product_id": product_id, "quantity": 1 }], "card_number": CARD })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "confirmed", "{order}");
    order["id"].as_str().unwrap().to_owned()
}

fn of_type<'a>(messages: &'a [Value], kind: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["type"] == kind).collect()
}

/// A name no other test uses, so that no other test's events reach it.
fn someone(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_reaches_each_of_the_buyers_sockets_once_and_no_one_elses() {
    let shop = TestShop::start().await;
    let gateway = ws_url(&shop.base);
    let (ada, bob) = (someone("ada"), someone("bob"));
    let ada_token = customer(&shop, &ada, Duration::from_secs(300));
    let bob_token = customer(&shop, &bob, Duration::from_secs(300));
    // One socket offers the token as a browser does, one in the query.
    let mut first = open(&gateway, &ada_token).await;
    let (mut second, _) =
        tokio_tungstenite::connect_async(format!("{gateway}?access_token={ada_token}"))
            .await
            .unwrap();
    let mut bobs = open(&gateway, &bob_token).await;
    let gauge = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("websocket_connections_current "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        gauge(&shop.metrics().await) >= 3.0,
        "the gauge counts the open sockets"
    );

    let order_id = checkout(&shop, &ada_token, 1).await;
    for socket in [&mut first, &mut second] {
        let seen = messages_until(socket, "order.confirmed", &order_id).await;
        let confirmed = seen.last().unwrap();
        assert_eq!(confirmed["subject"], format!("orders/{order_id}"));
        assert_eq!(confirmed["data"]["user_id"], ada.as_str());
        assert_eq!(confirmed["data"]["status"], "confirmed");
        for field in ["id", "time"] {
            assert!(confirmed[field].is_string(), "{field}: {confirmed}");
        }
        assert!(
            seen.iter().all(|m| m["data"]["user_id"] == ada.as_str()),
            "{seen:?}"
        );
    }

    // Shipped by an admin: on the open socket within a second.
    let admin = shop.token(Role::Admin);
    let path = format!("/api/v1/orders/{order_id}");
    let (status, body) = shop
        .send(
            reqwest::Method::PUT,
            &path,
            Some(&admin),
            Some(json!({ "status": "processing" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let asked = tokio::time::Instant::now();
    let (status, body) = shop
        .send(
            reqwest::Method::PUT,
            &path,
            Some(&admin),
            Some(json!({ "status": "shipped" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for socket in [&mut first, &mut second] {
        let seen = messages_until(socket, "order.shipped", &order_id).await;
        let took = asked.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "shipped reached the socket in {took:?}"
        );
        // Everything since the confirmation: no second confirmation.
        assert!(of_type(&seen, "order.confirmed").is_empty(), "{seen:?}");
        assert_eq!(of_type(&seen, "order.processing").len(), 1, "{seen:?}");
    }

    // Bob's socket got none of Ada's: the first messages it sees are of
    // his own order.
    let bobs_order = checkout(&shop, &bob_token, 2).await;
    let seen = messages_until(&mut bobs, "order.confirmed", &bobs_order).await;
    assert!(
        seen.iter().all(|m| m["data"]["user_id"] == bob.as_str()),
        "{seen:?}"
    );
    assert_eq!(of_type(&seen, "order.confirmed").len(), 1);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_without_a_valid_token_is_refused_with_401_before_the_upgrade() {
    let shop = TestShop::start().await;
    let gateway = ws_url(&shop.base);
    let notification = ws_url(&shop.shop.as_ref().unwrap().url("notification").unwrap());
    let forged = emporium_testkit::issuer()
        .mint("ada", Role::Customer, Duration::from_secs(300))
        .unwrap();
    let stale = expired(&shop, "ada");
    // The gateway turns them away, and so does notification itself.
    for url in [&gateway, &notification] {
        for (token, says) in [
            (None, "required"),
            (Some("garbage"), "malformed"),
            (Some(forged.as_str()), "unknown key"),
            (Some(stale.as_str()), "expired"),
        ] {
            let (status, kind, problem) = refusal(offering(url, token)).await;
            assert_eq!(status, 401, "{url} {token:?}");
            assert_eq!(kind, "application/problem+json");
            assert_eq!(problem["status"], 401);
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains(says), "{url}: {detail}");
            if let Some(token) = token {
                assert!(!problem.to_string().contains(token), "no token echoed");
            }
        }
        let query = format!("{url}?access_token={stale}");
        let (status, _, _) = refusal(query.into_client_request().unwrap()).await;
        assert_eq!(status, 401);
    }
    // A plain GET with a good token is not a handshake.
    let ada = customer(&shop, "ada", Duration::from_secs(300));
    let base = shop.shop.as_ref().unwrap().url("notification").unwrap();
    let response = shop
        .http
        .get(format!("{base}/ws"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_that_socket_and_other_sockets_keep_receiving() {
    let shop = TestShop::start().await;
    let gateway = ws_url(&shop.base);
    let (ada, bob) = (someone("ada"), someone("bob"));
    let ada_token = customer(&shop, &ada, Duration::from_secs(300));
    let bob_token = customer(&shop, &bob, Duration::from_secs(300));
    let mut bobs = open(&gateway, &bob_token).await;

    for (frame, code) in [
        (Message::Text("hello".into()), 1007),
        (
            Message::Text(r#"{"type":"subscribe","channel":"everything"}"#.into()),
            1007,
        ),
        (Message::Text(r#"{"type":"authenticate"}"#.into()), 1007),
        (Message::Binary(vec![0u8, 1, 2].into()), 1003),
    ] {
        let mut socket = open(&gateway, &ada_token).await;
        socket.send(frame.clone()).await.unwrap();
        let (got, reason) = close_of(&mut socket, Duration::from_secs(5)).await;
        assert_eq!(got, code, "{frame:?}: {reason}");
        assert!(!reason.is_empty());
    }

    // Ten megabytes in one frame: refused by its header, never read whole.
    let mut socket = open(&gateway, &ada_token).await;
    let huge = Message::Text("x".repeat(10 * 1024 * 1024).into());
    // The server may close before the client has written it all.
    let _ = socket.send(huge).await;
    let (got, reason) = close_of(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(got, 1009, "{reason}");

    // Bob's socket, open all along, still gets his events.
    let order_id = checkout(&shop, &bob_token, 3).await;
    let seen = messages_until(&mut bobs, "order.confirmed", &order_id).await;
    assert!(seen.iter().all(|m| m["data"]["user_id"] == bob.as_str()));
    // And new sockets still open.
    let mut again = open(&gateway, &ada_token).await;
    let order_id = checkout(&shop, &ada_token, 4).await;
    messages_until(&mut again, "order.confirmed", &order_id).await;
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_closes_its_socket_with_4001_unless_renewed() {
    let shop = TestShop::start().await;
    let gateway = ws_url(&shop.base);
    let ada = someone("ada");
    let short = customer(&shop, &ada, Duration::from_secs(2));
    let mut lapsing = open(&gateway, &short).await;
    let mut renewed = open(&gateway, &short).await;
    let fresh = customer(&shop, &ada, Duration::from_secs(300));
    renewed
        .send(Message::Text(
            json!({ "type": "authenticate", "token": fresh })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let answer = next_message(&mut renewed, Duration::from_secs(5)).await;
    assert_eq!(answer["type"], "authenticated", "{answer}");
    assert!(answer["expires_at"].as_i64().unwrap() >= chrono_now() + 290);

    let (code, reason) = close_of(&mut lapsing, Duration::from_secs(10)).await;
    assert_eq!(code, 4001, "{reason}");
    assert!(
        reason.contains("expired") && reason.contains("fresh token"),
        "{reason}"
    );

    // The renewed one outlived the first token and still receives.
    let order_id = checkout(&shop, &fresh, 5).await;
    messages_until(&mut renewed, "order.confirmed", &order_id).await;

    // A renewal with someone else's token, or a bad one, ends the socket.
    for (token, code) in [
        (
            customer(&shop, &someone("eve"), Duration::from_secs(300)),
            4003,
        ),
        (expired(&shop, &ada), 4001),
        ("garbage".to_owned(), 4001),
    ] {
        let mut socket = open(&gateway, &fresh).await;
        socket
            .send(Message::Text(
                json!({ "type": "authenticate", "token": token })
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
        let (got, reason) = close_of(&mut socket, Duration::from_secs(5)).await;
        assert_eq!(got, code, "{reason}");
    }
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_shop_closes_open_sockets_with_1001() {
    let shop = TestShop::start().await;
    let ada = customer(&shop, &someone("ada"), Duration::from_secs(300));
    let mut socket = open(&ws_url(&shop.base), &ada).await;
    let closed = tokio::spawn(async move { close_of(&mut socket, Duration::from_secs(10)).await });
    shop.stop().await;
    let (code, reason) = closed.await.unwrap();
    assert_eq!(code, 1001, "{reason}");
}

/// Notification's socket routes alone on a port of their own, with a hub
/// on `redis` (or in-process): what one replica serves.
async fn replica(
    redis: Option<&str>,
    tokens: &emporium_testkit::Tokens,
    settings: emporium_notification::live::SocketSettings,
    stop: &CancellationToken,
) -> (String, emporium_notification::live::Hub) {
    use emporium_notification::live;
    let url = redis.map(|u| emporium_platform::config::Secret::new(u.to_owned()));
    let hub = live::Hub::start(url.as_ref(), settings, stop.clone())
        .await
        .unwrap();
    let routes = live::router(hub.clone(), tokens.issuer.verifier().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stopped = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, routes)
            .with_graceful_shutdown(stopped.cancelled_owned())
            .await
    });
    (format!("ws://{addr}/ws"), hub)
}

fn socket_settings() -> emporium_notification::live::SocketSettings {
    emporium_notification::live::SocketSettings {
        buffer: 16,
        heartbeat: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_notification_replicas_on_one_redis_deliver_a_push_once_on_either() {
    let Some(redis) = emporium_testkit::server_url(emporium_testkit::REDIS) else {
        return;
    };
    let tokens = emporium_testkit::Tokens::new();
    let stop = CancellationToken::new();
    let (one_url, one) = replica(Some(&redis), &tokens, socket_settings(), &stop).await;
    let (two_url, two) = replica(Some(&redis), &tokens, socket_settings(), &stop).await;
    let ada = someone("ada");
    let token = tokens.user(&ada, Role::Customer);
    let mut on_one = open(&one_url, &token).await;
    let mut on_two = open(&two_url, &token).await;
    let bob = someone("bob");
    let mut strangers = open(&two_url, &tokens.user(&bob, Role::Customer)).await;
    // The upgrade is answered before the socket joins its hub.
    let joined = emporium_testkit::eventually(Duration::from_secs(5), || async {
        (one.open_sockets() == 1 && two.open_sockets() == 2).then_some(())
    })
    .await;
    assert!(joined.is_some());

    for (n, from) in [&one, &two].into_iter().enumerate() {
        let message =
            json!({ "id": format!("e{n}"), "type": "order.confirmed", "data": { "user_id": ada } });
        from.push(&ada, &message).await;
        for socket in [&mut on_one, &mut on_two] {
            // In order, so a duplicate of the one before would show here.
            assert_eq!(next_message(socket, Duration::from_secs(5)).await, message);
        }
    }
    // The other user's socket got none of Ada's: the first message it
    // sees is the one then pushed to him.
    let marker = json!({ "id": "for-bob" });
    one.push(&bob, &marker).await;
    assert_eq!(
        next_message(&mut strangers, Duration::from_secs(5)).await,
        marker
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_after_two_heartbeats_and_a_listening_one_is_not() {
    let tokens = emporium_testkit::Tokens::new();
    let stop = CancellationToken::new();
    let (url, hub) = replica(None, &tokens, socket_settings(), &stop).await;
    let ada = someone("ada");
    let token = tokens.user(&ada, Role::Customer);
    let mut silent = open(&url, &token).await;
    let mut listening = open(&url, &token).await;
    // The listening client reads (and so answers pings) for three
    // heartbeats while the silent one reads nothing.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(3200);
    while let Ok(frame) = tokio::time::timeout_at(until, listening.next()).await {
        match frame.unwrap().unwrap() {
            Message::Ping(_) => pings += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(pings >= 2, "a ping every heartbeat, got {pings}");
    let (code, reason) = close_of(&mut silent, Duration::from_secs(5)).await;
    assert_eq!(code, 4000, "{reason}");
    hub.push(&ada, &json!({ "id": "still-here" })).await;
    assert_eq!(
        next_message(&mut listening, Duration::from_secs(5)).await["id"],
        "still-here"
    );
    assert_eq!(hub.open_sockets(), 1);
    stop.cancel();
}

/// The gateway in a runtime of its own, every upstream at `base` (only
/// `/ws` is asked for here); its address and the runtime to stop.
async fn gateway_before(
    base: &str,
    tokens: &emporium_testkit::Tokens,
    dir: &std::path::Path,
) -> (std::net::SocketAddr, emporium_platform::Runtime) {
    let mut settings = shop_settings(dir);
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, tokens.issuer.jwks()).unwrap();
    settings.auth.jwks_file = Some(jwks);
    settings.update_section::<emporium_gateway::GatewaySettings>(|g| {
        for name in emporium::names().into_iter().filter(|n| *n != "gateway") {
            g.upstreams.insert(name.into(), vec![base.to_owned()]);
        }
    });
    let runtime = emporium_platform::Runtime::new(settings).await.unwrap();
    let local: Vec<emporium_platform::Started> = vec![];
    let started = (emporium_gateway::definition().start)(runtime.clone(), local.into())
        .await
        .unwrap();
    (started.http_addr, runtime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_joins_sockets_to_a_notification_replica() {
    let tokens = emporium_testkit::Tokens::new();
    let stop = CancellationToken::new();
    let (replica_url, hub) = replica(None, &tokens, socket_settings(), &stop).await;
    let base = replica_url
        .replacen("ws://", "http://", 1)
        .trim_end_matches("/ws")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (gateway, runtime) = gateway_before(&base, &tokens, dir.path()).await;
    let gateway = format!("ws://{gateway}/ws");
    let ada = someone("ada");
    let token = tokens.user(&ada, Role::Customer);

    let mut socket = open(&gateway, &token).await;
    let joined = emporium_testkit::eventually(Duration::from_secs(5), || async {
        (hub.open_sockets() == 1).then_some(())
    })
    .await;
    assert!(joined.is_some());
    let message = json!({ "id": "e1", "type": "order.shipped", "data": { "user_id": ada } });
    hub.push(&ada, &message).await;
    assert_eq!(
        next_message(&mut socket, Duration::from_secs(5)).await,
        message
    );

    // The replica's refusals and close codes come back through the join.
    let (status, kind, _) = refusal(offering(&gateway, None)).await;
    assert_eq!((status, kind.as_str()), (401, "application/problem+json"));
    let mut bad = open(&gateway, &token).await;
    bad.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(close_of(&mut bad, Duration::from_secs(5)).await.0, 1007);
    let mut huge = open(&gateway, &token).await;
    let _ = huge
        .send(Message::Text("x".repeat(10 * 1024 * 1024).into()))
        .await;
    assert_eq!(close_of(&mut huge, Duration::from_secs(10)).await.0, 1009);
    hub.push(&ada, &json!({ "id": "e2" })).await;
    assert_eq!(
        next_message(&mut socket, Duration::from_secs(5)).await["id"],
        "e2"
    );
    runtime.stop(Duration::from_secs(2)).await;
    stop.cancel();
}
