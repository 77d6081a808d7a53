//! WebSockets through the gateway: the handshake reaches the service (in
//! this process or on a replica) with the caller admitted by the route's
//! policy, the token taken from the subprotocols or the query, and frames
//! flow both ways once it is joined.

use std::net::SocketAddr;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;

/// A service that echoes every text frame, prefixed with the caller the
/// gateway named; it speaks `emporium.v1` when offered.
fn echo_service() -> axum::Router {
    async fn upgrade(headers: HeaderMap, ws: WebSocketUpgrade) -> axum::response::Response {
        let user = headers
            .get("x-emporium-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nobody")
            .to_owned();
        ws.protocols([emporium_platform::auth::SOCKET_PROTOCOL])
            .on_upgrade(move |socket| echo(socket, user))
    }
    async fn echo(mut socket: WebSocket, user: String) {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message
                && socket
                    .send(Message::Text(format!("{user}: {text}").into()))
                    .await
                    .is_err()
            {
                return;
            }
        }
    }
    axum::Router::new().route("/api/v1/users/me", axum::routing::get(upgrade))
}

/// A gateway whose every service is `echo`: in its process, or on one
/// replica over HTTP. Its address and the runtime to stop.
async fn gateway_before_echo(
    in_process: bool,
    tokens: &emporium_testkit::Tokens,
    dir: &std::path::Path,
) -> (SocketAddr, emporium_platform::Runtime) {
    let mut settings = shop_settings(dir);
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, tokens.issuer.jwks()).unwrap();
    settings.auth.jwks_file = Some(jwks);
    // Every service the gateway routes to.
    let services: Vec<&'static str> = emporium::names()
        .into_iter()
        .filter(|name| *name != "gateway")
        .collect();
    let mut local = vec![];
    if in_process {
        for name in services.iter().copied() {
            local.push(emporium_platform::Started {
                name,
                http_addr: ([127, 0, 0, 1], 9).into(),
                grpc_addr: None,
                router: echo_service(),
                grpc_router: None,
                checks: vec![],
            });
        }
    } else {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, echo_service()).await });
        settings.update_section::<emporium_gateway::GatewaySettings>(|g| {
            for name in services.iter().copied() {
                g.upstreams
                    .insert(name.into(), vec![format!("http://{addr}")]);
            }
        });
    }
    let runtime = emporium_platform::Runtime::new(settings).await.unwrap();
    let started = (emporium_gateway::definition().start)(runtime.clone(), local.into())
        .await
        .unwrap();
    (started.http_addr, runtime)
}

/// A handshake to `path` offering `protocols`.
fn handshake(
    addr: SocketAddr,
    path: &str,
    protocols: Option<&str>,
) -> tungstenite::handshake::client::Request {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(protocols) = protocols {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
    }
    request
}

async fn sockets_pass_through_the_gateway(in_process: bool) {
    let tokens = emporium_testkit::Tokens::new();
    let dir = tempfile::tempdir().unwrap();
    let (gateway, runtime) = gateway_before_echo(in_process, &tokens, dir.path()).await;
    let ada = tokens.user("ada", Role::Customer);

    // The token in the subprotocols, as a browser sends it.
    let offered = format!("emporium.v1, bearer.{ada}");
    let (mut socket, response) =
        tokio_tungstenite::connect_async(handshake(gateway, "/api/v1/users/me", Some(&offered)))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["sec-websocket-protocol"], "emporium.v1");
    for text in ["hello", "again"] {
        socket
            .send(tungstenite::Message::Text(text.into()))
            .await
            .unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), format!("ada: {text}"));
    }
    socket.close(None).await.unwrap();

    // Or in the query.
    let path = format!("/api/v1/users/me?access_token={ada}");
    let (mut socket, _) = tokio_tungstenite::connect_async(handshake(gateway, &path, None))
        .await
        .unwrap();
    socket
        .send(tungstenite::Message::Text("query".into()))
        .await
        .unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "ada: query");

    // No token, or a forged one: refused before the service is asked.
    let forged = tokens_elsewhere().user("ada", Role::Customer);
    for protocols in [None, Some(format!("emporium.v1, bearer.{forged}"))] {
        let refused = tokio_tungstenite::connect_async(handshake(
            gateway,
            "/api/v1/users/me",
            protocols.as_deref(),
        ))
        .await
        .unwrap_err();
        match refused {
            tungstenite::Error::Http(response) => assert_eq!(response.status(), 401),
            other => panic!("{other:?}"),
        }
    }
    runtime.stop(Duration::from_secs(2)).await;
}

fn tokens_elsewhere() -> emporium_testkit::Tokens {
    emporium_testkit::Tokens::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_pass_through_the_gateway_to_a_replica() {
    sockets_pass_through_the_gateway(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_pass_through_the_gateway_to_a_service_in_its_process() {
    sockets_pass_through_the_gateway(true).await;
}
