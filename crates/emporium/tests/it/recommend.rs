//! Recommendations through the shop's gateway: learnt from the seeded past
//! orders' events, gone with a deleted product, refused on bad input.

use std::time::Duration;

use emporium_platform::auth::Role;
use emporium_proto::recommendation::v1::GetRecommendationsRequest;
use emporium_proto::recommendation::v1::recommendations_client::RecommendationsClient;
use reqwest::{Method, StatusCode};

use crate::{TestShop, ids_of};

/// (id, reason, score) of each recommendation for `product`.
async fn also_bought(shop: &TestShop, product: &str) -> Vec<(String, String, i64)> {
    let path = format!("/api/v1/recommendations?product_id={product}");
    let (status, body) = shop.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["product_id"].as_str().unwrap().to_owned(),
                i["reason"].as_str().unwrap().to_owned(),
                i["score"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeded_orders_teach_also_bought_through_the_gateway() {
    let shop = TestShop::start().await;
    // The seeded past orders are of the three cheapest products: the
    // second and third in every one, the first in one.
    let (_, page) = shop.get("/api/v1/products?per_page=3&sort=price").await;
    let ids = ids_of(&page);
    let [first, second, third] = [&ids[0], &ids[1], &ids[2]];

    // Once the three orders' events are in, the third ranks first.
    let together = |id: &str, n: i64| (id.to_owned(), "also_bought".to_owned(), n);
    let ranked = emporium_testkit::eventually(Duration::from_secs(10), || async {
        let list = also_bought(&shop, second).await;
        (list.first() == Some(&together(third, 3))).then_some(list)
    })
    .await
    .expect("the orders' events reach recommendation");
    assert_eq!(ranked[1], together(first, 1));
    assert!(ranked.iter().all(|(id, ..)| id != second));
    assert_eq!(also_bought(&shop, third).await[0], together(second, 3));
    // Equal scores come by id.
    let mut expected = [together(second, 1), together(third, 1)];
    expected.sort();
    assert_eq!(also_bought(&shop, first).await[..2], expected);

    // The demo customer owns the seeded orders: "for you" holds none of
    // what they bought (here every product sold), and a new customer gets
    // the best sellers.
    let demo = shop
        .issuer
        .mint(
            emporium_platform::demo::CUSTOMER_ID,
            Role::Customer,
            Duration::from_secs(300),
        )
        .unwrap();
    let (status, _, mine) = shop
        .call(Method::GET, "/api/v1/recommendations/me", Some(&demo), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let mine: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["product_id"].as_str().unwrap())
        .collect();
    assert!(
        mine.iter().all(|id| !ids.iter().any(|b| b == id)),
        "{mine:?}"
    );
    let newcomer = shop.token(Role::Customer);
    let (_, _, best) = shop
        .call(
            Method::GET,
            "/api/v1/recommendations/me",
            Some(&newcomer),
            None,
        )
        .await;
    // The second and third are each in three orders, the first in one.
    let best: Vec<&str> = best["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["product_id"].as_str().unwrap())
        .collect();
    assert_eq!(best.len(), 3, "{best:?}");
    assert_eq!(best[2], first.as_str());

    // The storefront asks over gRPC with its service token.
    let mut grpc = RecommendationsClient::new(shop.grpc_as("storefront", "recommendation"));
    let answer = grpc
        .get_recommendations(GetRecommendationsRequest {
            product_id: second.clone(),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.items.len(), 1);
    assert_eq!(&answer.items[0].product_id, third);

    // Bad input is a problem, a signed-out "for you" a 401.
    for path in [
        "/api/v1/recommendations".to_owned(),
        "/api/v1/recommendations?product_id=nope".to_owned(),
        format!("/api/v1/recommendations?product_id={second}&limit=0"),
        format!("/api/v1/recommendations?product_id={second}&limit=51"),
    ] {
        let (status, kind, body) = shop.call(Method::GET, &path, None, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(kind, "application/problem+json");
    }
    let (status, kind, _) = shop
        .call(Method::GET, "/api/v1/recommendations/me", None, None)
        .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::UNAUTHORIZED, "application/problem+json")
    );

    // Deleted, the third product leaves the second's recommendations.
    let admin = shop.token(Role::Admin);
    let (status, _, _) = shop
        .call(
            Method::DELETE,
            &format!("/api/v1/products/{third}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    emporium_testkit::eventually(Duration::from_secs(10), || async {
        let list = also_bought(&shop, second).await;
        list.iter().all(|(id, ..)| id != third).then_some(())
    })
    .await
    .expect("the deletion reaches recommendation");
    let (status, _) = shop
        .get(&format!("/api/v1/recommendations?product_id={third}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The merged document and the metrics hold recommendation.
    let (_, doc) = shop.get("/api/v1/openapi.json").await;
    for path in ["/api/v1/recommendations", "/api/v1/recommendations/me"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    let metrics = shop.metrics().await;
    for name in [
        "recommendation_pairs",
        "recommendation_products",
        "http_requests_total{",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    shop.stop().await;
}

/// The seeded orders belong to a shopper who can sign in with the password
/// `up` printed once, and see them, and their messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shopper_signs_in_and_finds_the_seeded_orders() {
    let shop = TestShop::start().await;
    let line = shop
        .notices
        .iter()
        .flat_map(|n| n.lines())
        .find(|l| l.trim_start().starts_with("shopper"))
        .expect("the shopper's line")
        .to_owned();
    let mut words = line.split_whitespace().skip(1);
    let email = words.next().unwrap();
    assert_eq!(email, emporium_platform::demo::CUSTOMER_EMAIL);
    assert_eq!(words.next(), Some("/"));
    let password = words.next().unwrap();
    let session = crate::login(&shop, email, password).await;
    assert_eq!(
        session["user"]["id"],
        emporium_platform::demo::CUSTOMER_ID,
        "{session}"
    );
    let token = session["access_token"].as_str().unwrap();
    let (status, _, orders) = shop
        .call(Method::GET, "/api/v1/orders", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{orders}");
    assert_eq!(orders["total"], 3, "{orders}");
    // Their order mails reached the mailbox under their own name.
    let mail = emporium_testkit::eventually(Duration::from_secs(10), || async {
        let (_, _, mine) = shop
            .call(
                Method::GET,
                "/api/v1/notifications?type=order.confirmed",
                Some(token),
                None,
            )
            .await;
        (mine["total"] == 3).then_some(mine)
    })
    .await;
    assert!(mail.is_some(), "three confirmations for the three orders");
    shop.stop().await;
}
