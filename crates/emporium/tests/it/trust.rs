//! Trust between services: every gRPC method admits only the services it
//! names, each with its own short-lived token for that callee; health and
//! reflection answer anyone and list what their port serves.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use emporium_platform::auth::ServiceClaims;
use emporium_platform::grpc::{Admission, Callers};
use prost::Message;

use super::*;

/// Each gRPC face of the shop: the service, the one gRPC service its port
/// serves, and who may call what.
fn faces() -> [(&'static str, &'static str, Admission); 6] {
    [
        (
            "identity",
            "emporium.identity.v1.Identity",
            emporium_identity::grpc::ADMISSION,
        ),
        (
            "catalog",
            "emporium.catalog.v1.Catalog",
            emporium_catalog::grpc::ADMISSION,
        ),
        (
            "inventory",
            "emporium.inventory.v1.Inventory",
            emporium_inventory::grpc::ADMISSION,
        ),
        (
            "basket",
            "emporium.basket.v1.Baskets",
            emporium_basket::grpc::ADMISSION,
        ),
        (
            "payment",
            "emporium.payment.v1.Payments",
            emporium_payment::grpc::ADMISSION,
        ),
        (
            "recommendation",
            "emporium.recommendation.v1.Recommendations",
            emporium_recommendation::grpc::ADMISSION,
        ),
    ]
}

/// Calls `path` with an empty message and `authorization`, if any, as a
/// client that knows nothing of the method would; the code it gets.
async fn code_of(addr: SocketAddr, path: &str, authorization: Option<String>) -> tonic::Code {
    answer_of(addr, path, authorization).await.0
}

/// As [`code_of`], with the status message.
async fn answer_of(
    addr: SocketAddr,
    path: &str,
    authorization: Option<String>,
) -> (tonic::Code, String) {
    let channel =
        emporium_platform::grpc::channel(&format!("http://{addr}"), Duration::from_secs(5))
            .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(());
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    let path: tonic::codegen::http::uri::PathAndQuery = path.parse().unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.unary(request, path, codec).await {
        Ok(_) => (tonic::Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

/// The issue's finding, method by method on `emporium up`: no credential, a
/// customer's or an admin's own access token, a service token for another
/// callee or out of date, and a service the method does not admit, are all
/// refused before the method runs; the callers it names get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_calls_need_a_token_of_a_service_the_method_admits() {
    let shop = TestShop::start().await;
    let running = shop.shop.as_ref().unwrap();
    let issuer = &shop.issuer;
    let ttl = Duration::from_secs(60);
    let customer = shop.token(Role::Customer);
    let admin = shop.token(Role::Admin);
    let mut checked = 0;
    for (service, _, admission) in faces() {
        let addr = running.get(service).unwrap().grpc_addr.unwrap();
        for (method, callers) in admission {
            let Callers::Services(admitted) = *callers else {
                continue;
            };
            let refusals = [
                ("no credential", None, tonic::Code::Unauthenticated),
                (
                    "a customer's token",
                    bearer(&customer),
                    tonic::Code::Unauthenticated,
                ),
                (
                    "an admin's token",
                    bearer(&admin),
                    tonic::Code::Unauthenticated,
                ),
                (
                    "a token for another service",
                    bearer(&issuer.mint_service(admitted[0], "elsewhere", ttl).unwrap()),
                    tonic::Code::Unauthenticated,
                ),
                (
                    "an expired token",
                    bearer(
                        &issuer
                            .sign(&ServiceClaims {
                                sub: format!("service:{}", admitted[0]),
                                svc: admitted[0].into(),
                                iss: "emporium".into(),
                                aud: service.into(),
                                iat: 0,
                                exp: chrono_now() - 60,
                                jti: "old".into(),
                            })
                            .unwrap(),
                    ),
                    tonic::Code::Unauthenticated,
                ),
                (
                    "a service it does not admit",
                    bearer(&issuer.mint_service("intruder", service, ttl).unwrap()),
                    tonic::Code::PermissionDenied,
                ),
            ];
            for (what, authorization, expected) in refusals {
                assert_eq!(
                    code_of(addr, method, authorization).await,
                    expected,
                    "{method} with {what}"
                );
                checked += 1;
            }
            for caller in admitted {
                let token = issuer.mint_service(caller, service, ttl).unwrap();
                let (code, message) = answer_of(addr, method, bearer(&token)).await;
                // Past the gate; the catalog's writes then ask for the
                // admin on whose behalf the storefront writes.
                let past_the_gate = match code {
                    tonic::Code::PermissionDenied => false,
                    tonic::Code::Unauthenticated => message == "a bearer token is required",
                    _ => true,
                };
                assert!(
                    past_the_gate,
                    "{method} refused {caller}: {code:?} {message}"
                );
            }
        }
    }
    assert!(
        checked >= 6 * 15,
        "every guarded method was tried: {checked}"
    );
    shop.stop().await;
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Money moves only for the checkout: the basket may not refund a payment
/// nor release stock, a customer's own token moves nothing, and ordering
/// may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_ordering_may_refund_a_payment_or_release_stock() {
    let shop = TestShop::start().await;
    let running = shop.shop.as_ref().unwrap();
    let ttl = Duration::from_secs(60);
    let payment = running.get("payment").unwrap().grpc_addr.unwrap();
    let inventory = running.get("inventory").unwrap().grpc_addr.unwrap();
    let refund = "/emporium.payment.v1.Payments/RefundPayment";
    let release = "/emporium.inventory.v1.Inventory/Release";
    let customer = shop.token(Role::Customer);
    for (addr, method, callee) in [
        (payment, refund, "payment"),
        (inventory, release, "inventory"),
    ] {
        let basket = shop.issuer.mint_service("basket", callee, ttl).unwrap();
        assert_eq!(
            code_of(addr, method, bearer(&basket)).await,
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            code_of(addr, method, bearer(&customer)).await,
            tonic::Code::Unauthenticated
        );
        let ordering = shop.issuer.mint_service("ordering", callee, ttl).unwrap();
        assert_eq!(
            code_of(addr, method, bearer(&ordering)).await,
            tonic::Code::InvalidArgument,
            "admitted, and the empty request is refused for itself"
        );
    }
    shop.stop().await;
}

/// No method of a served gRPC service is left out of its admission list
/// (a method missing there would admit no one, silently).
#[test]
fn every_grpc_method_says_which_callers_it_admits() {
    let set = prost_types::FileDescriptorSet::decode(emporium_proto::DESCRIPTOR_SET).unwrap();
    let mut methods = 0;
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            let Some((_, _, admission)) =
                faces().into_iter().find(|(_, served, _)| *served == full)
            else {
                panic!("{full} is served by no face");
            };
            for method in &service.method {
                let path = format!("/{full}/{}", method.name());
                assert!(
                    admission.iter().any(|(m, _)| *m == path),
                    "{path} names no callers"
                );
                methods += 1;
            }
        }
    }
    let listed: usize = faces().iter().map(|(_, _, a)| a.len()).sum();
    assert_eq!(methods, listed, "an admission lists a method nobody serves");
}

/// The services reflection lists on `$channel`, over reflection `$version`
/// (`v1` or `v1alpha`: the same messages, in two generated modules).
macro_rules! listed_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match answers.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(list)) => list
                .service
                .into_iter()
                .map(|s| s.name)
                .collect::<BTreeSet<String>>(),
            other => panic!("{other:?}"),
        }
    }};
}

/// Services listed by reflection at `addr`, over v1 or v1alpha.
async fn reflected(addr: SocketAddr, v1: bool) -> BTreeSet<String> {
    let channel =
        emporium_platform::grpc::channel(&format!("http://{addr}"), Duration::from_secs(5))
            .unwrap();
    if v1 {
        listed_services!(v1, channel)
    } else {
        listed_services!(v1alpha, channel)
    }
}

/// Each port's reflection lists the one service it serves and health, on
/// both versions clients try; health answers anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_what_each_port_serves_and_health_answers_anyone() {
    let shop = TestShop::start().await;
    let running = shop.shop.as_ref().unwrap();
    for (service, served, _) in faces() {
        let addr = running.get(service).unwrap().grpc_addr.unwrap();
        for v1 in [true, false] {
            let listed: BTreeSet<String> = reflected(addr, v1)
                .await
                .into_iter()
                .filter(|name| !name.starts_with("grpc.reflection."))
                .collect();
            let expected: BTreeSet<String> =
                [served, "grpc.health.v1.Health"].map(String::from).into();
            assert_eq!(listed, expected, "{service}, v1: {v1}");
        }
        let channel =
            emporium_platform::grpc::channel(&format!("http://{addr}"), Duration::from_secs(5))
                .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: served.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            health.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    shop.stop().await;
}

/// Client credentials: identity gives a service that proves its secret a
/// token for the callee it names, and nothing to a wrong secret or a
/// service it does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_issues_service_tokens_only_for_the_right_secret() {
    use emporium_proto::identity::v1::IssueServiceTokenRequest;
    use emporium_proto::identity::v1::identity_client::IdentityClient;
    let shop = TestShop::start().await;
    let running = shop.shop.as_ref().unwrap();
    let secrets = running.runtime.settings.auth.service_secrets.clone();
    let identity = running.get("identity").unwrap().grpc_addr.unwrap();
    let channel =
        emporium_platform::grpc::channel(&format!("http://{identity}"), Duration::from_secs(5))
            .unwrap();
    let mut client = IdentityClient::new(channel);
    let ask = |service: &str, secret: &str, audience: &str| IssueServiceTokenRequest {
        service: service.into(),
        secret: secret.into(),
        audience: audience.into(),
    };
    let ordering = secrets["ordering"].expose().to_owned();
    let basket = secrets["basket"].expose().to_owned();
    for (request, code) in [
        (
            ask("ordering", &basket, "payment"),
            tonic::Code::Unauthenticated,
        ),
        (ask("ordering", "", "payment"), tonic::Code::Unauthenticated),
        (
            ask("intruder", &ordering, "payment"),
            tonic::Code::Unauthenticated,
        ),
        (
            ask("ordering", &ordering, "Pay ment"),
            tonic::Code::InvalidArgument,
        ),
        (ask("", &ordering, "payment"), tonic::Code::InvalidArgument),
    ] {
        let status = client
            .issue_service_token(request.clone())
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{request:?}");
        assert!(!status.message().contains(&ordering), "no secret echoed");
    }
    let issued = client
        .issue_service_token(ask("ordering", &ordering, "payment"))
        .await
        .unwrap()
        .into_inner();
    let claims = running
        .runtime
        .verifier
        .verify_service(&issued.token, "payment")
        .await
        .unwrap();
    assert_eq!(claims.svc, "ordering");
    assert!(issued.expires_at > chrono_now() && issued.expires_at <= chrono_now() + 600);
    let payment = running.get("payment").unwrap().grpc_addr.unwrap();
    assert_eq!(
        code_of(
            payment,
            "/emporium.payment.v1.Payments/GetPayment",
            bearer(&issued.token)
        )
        .await,
        tonic::Code::InvalidArgument,
        "payment admits ordering's token"
    );
    assert_eq!(
        code_of(
            running.get("inventory").unwrap().grpc_addr.unwrap(),
            "/emporium.inventory.v1.Inventory/GetStock",
            bearer(&issued.token)
        )
        .await,
        tonic::Code::Unauthenticated,
        "a token for payment does not open inventory"
    );
    shop.stop().await;
}
