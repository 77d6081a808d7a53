//! Recommendation's store contract, run on SQLite always and on PostgreSQL
//! and MariaDB when their URLs are set: co-purchases rank first, deleted
//! and out-of-stock products never show, each event counts once; and bad
//! input on every face.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use emporium_platform::bus::{Envelope, Handler};
use emporium_proto::recommendation::v1 as pb;
use emporium_proto::recommendation::v1::recommendations_server::Recommendations;
use emporium_recommendation::Recommender;
use emporium_recommendation::domain::Limit;
use emporium_recommendation::events::Consumer;
use emporium_recommendation::grpc::RecommendationsGrpc;
use emporium_recommendation::http::{AppState, RecommendationList, router};
use emporium_testkit::{Backend, TestDatabase, Tokens, on_every_backend};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Fixture {
    recommender: Recommender,
    consumer: Consumer,
    _guard: TestDatabase,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let guard = TestDatabase::fresh(backend).await?;
    let db = emporium_platform::db::connect(&guard.url)
        .await
        .expect("connect");
    emporium_platform::db::migrate::<emporium_recommendation::migrations::Migrator>(&db)
        .await
        .expect("migrate");
    let recommender = Recommender::new(db);
    Some(Fixture {
        consumer: Consumer {
            recommender: recommender.clone(),
        },
        recommender,
        _guard: guard,
    })
}

/// A product id the way the catalog makes them, named by one letter.
fn id(letter: char) -> String {
    format!("00000000-0000-7000-8000-0000000000{:02x}", letter as u32)
}

fn order(user: &str, letters: &str) -> Envelope {
    let lines: Vec<Value> = letters
        .chars()
        .map(|l| json!({ "product_id": id(l), "sku": format!("SKU-{l}"), "quantity": 1, "unit_minor": 100 }))
        .collect();
    Envelope::new(
        "order.confirmed",
        "emporium.ordering",
        "orders/test",
        json!({ "order_id": uuid::Uuid::now_v7().to_string(), "user_id": user, "status": "confirmed", "lines": lines }),
    )
}

fn product(kind: &str, letter: char, category: &str) -> Envelope {
    Envelope::new(
        kind,
        "emporium.catalog",
        format!("products/{}", id(letter)),
        json!({ "id": id(letter), "sku": format!("SKU-{letter}"), "category": category }),
    )
}

fn stock(letter: char, warehouse: &str, available: i64) -> Envelope {
    Envelope::new(
        "stock.updated",
        "emporium.inventory",
        format!("stock/SKU-{letter}/{warehouse}"),
        json!({ "sku": format!("SKU-{letter}"), "warehouse": warehouse, "on_hand": available, "reserved": 0, "available": available, "threshold": 5 }),
    )
}

impl Fixture {
    async fn deliver(&self, envelope: &Envelope) {
        self.consumer.handle(envelope).await.unwrap();
    }

    /// Products in `category`, each with stock in one warehouse.
    async fn shelve(&self, letters: &str, category: &str) {
        for l in letters.chars() {
            self.deliver(&product("product.created", l, category)).await;
            self.deliver(&stock(l, "east", 10)).await;
        }
    }

    async fn also_bought(&self, letter: char, limit: i64) -> Vec<(String, i64)> {
        let asked = emporium_recommendation::domain::ProductId::parse(&id(letter)).unwrap();
        self.recommender
            .for_product(&asked, Limit::new(limit).unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.product_id, r.score))
            .collect()
    }

    async fn for_user(&self, user: &str) -> Vec<String> {
        self.recommender
            .for_user(user, Limit::new(50).unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.product_id)
            .collect()
    }
}

async fn contract_products_bought_together_rank_first(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.shelve("abcd", "books").await;
    f.shelve("e", "games").await;
    for _ in 0..3 {
        f.deliver(&order("u1", "ab")).await;
    }
    f.deliver(&order("u2", "ac")).await;
    f.deliver(&order("u3", "d")).await;
    f.deliver(&order("u3", "e")).await;
    let ranked = f.also_bought('a', 10).await;
    // B three times with A, C once, then D as the category's best seller;
    // E sells as well but in another category; A itself never.
    assert_eq!(
        ranked,
        vec![(id('b'), 3), (id('c'), 1), (id('d'), 1)],
        "{ranked:?}"
    );
    assert_eq!(f.also_bought('a', 1).await, vec![(id('b'), 3)]);
    // The pair is kept both ways.
    assert_eq!(f.also_bought('b', 1).await, vec![(id('a'), 3)]);
}

async fn contract_a_deleted_or_sold_out_product_disappears(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.shelve("abc", "books").await;
    f.deliver(&stock('c', "west", 4)).await;
    for _ in 0..2 {
        f.deliver(&order("u1", "abc")).await;
    }
    assert_eq!(
        f.also_bought('a', 10).await,
        vec![(id('b'), 2), (id('c'), 2)]
    );
    f.deliver(&product("product.deleted", 'b', "")).await;
    assert_eq!(f.also_bought('a', 10).await, vec![(id('c'), 2)]);
    // Stock counts over every warehouse: one emptied is not enough.
    f.deliver(&stock('c', "east", 0)).await;
    assert_eq!(f.also_bought('a', 10).await, vec![(id('c'), 2)]);
    f.deliver(&stock('c', "west", 0)).await;
    assert_eq!(f.also_bought('a', 10).await, vec![]);
    // A change older than the deletion does not bring the product back.
    let mut stale = product("product.updated", 'b', "books");
    stale.time -= chrono::Duration::hours(1);
    f.deliver(&stale).await;
    assert_eq!(f.also_bought('a', 10).await, vec![]);
    // Restocked, C is back; asking for a deleted product is a 404.
    f.deliver(&stock('c', "west", 1)).await;
    assert_eq!(f.also_bought('a', 10).await, vec![(id('c'), 2)]);
    let deleted = emporium_recommendation::domain::ProductId::parse(&id('b')).unwrap();
    assert!(
        f.recommender
            .for_product(&deleted, Limit::new(5).unwrap())
            .await
            .is_err()
    );
}

async fn contract_the_same_event_delivered_twice_counts_once(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.shelve("ab", "books").await;
    let confirmed = order("u1", "ab");
    f.deliver(&confirmed).await;
    f.deliver(&confirmed).await;
    assert_eq!(f.also_bought('a', 10).await, vec![(id('b'), 1)]);
    // Data wider than what the catalog, inventory or ordering make is
    // dropped, not retried for ever, and changes nothing.
    let mut wide = product("product.updated", 'b', "books");
    wide.data["sku"] = json!("X".repeat(65));
    let mut far = stock('b', "east", 10);
    far.data["warehouse"] = json!("w".repeat(33));
    let mut stranger = order(&"u".repeat(65), "ab");
    stranger.data["lines"][0]["product_id"] = json!(id('c'));
    for envelope in [wide, far, stranger] {
        f.deliver(&envelope).await;
    }
    assert_eq!(f.also_bought('a', 10).await, vec![(id('b'), 1)]);
    assert_eq!(f.also_bought('b', 10).await, vec![(id('a'), 1)]);
    // A stock change older than the one kept (a late delivery) is ignored.
    let mut late = stock('b', "east", 10);
    late.time -= chrono::Duration::minutes(1);
    f.deliver(&stock('b', "east", 0)).await;
    f.deliver(&late).await;
    assert_eq!(f.also_bought('a', 10).await, vec![]);
}

async fn contract_a_customer_gets_what_others_bought_with_theirs(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.shelve("abcd", "books").await;
    f.deliver(&order("u1", "a")).await;
    for _ in 0..2 {
        f.deliver(&order("u2", "ab")).await;
    }
    f.deliver(&order("u3", "ac")).await;
    f.deliver(&order("u4", "d")).await;
    let mine = f.for_user("u1").await;
    assert_eq!(mine, vec![id('b'), id('c'), id('d')], "{mine:?}");
    // A new customer gets the best sellers, most bought first.
    assert_eq!(
        f.for_user("newcomer").await,
        vec![id('a'), id('b'), id('c'), id('d')]
    );
    // Nothing already bought, however well it sells.
    assert!(!f.for_user("u2").await.contains(&id('a')));
}

on_every_backend!(
    contract_products_bought_together_rank_first,
    contract_a_deleted_or_sold_out_product_disappears,
    contract_the_same_event_delivered_twice_counts_once,
    contract_a_customer_gets_what_others_bought_with_theirs,
);

async fn app() -> (axum::Router, Tokens, Fixture) {
    let f = fixture(Backend::Sqlite).await.unwrap();
    f.shelve("ab", "books").await;
    f.deliver(&order("customer-1", "ab")).await;
    let tokens = Tokens::new();
    let router = router(AppState {
        recommender: f.recommender.clone(),
        verifier: tokens.issuer.verifier().unwrap(),
    });
    (router, tokens, f)
}

async fn get(router: &axum::Router, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(status.is_client_error(), problem, "{uri}: {status} {body}");
    (status, body)
}

#[tokio::test]
async fn bad_input_on_every_endpoint_is_a_problem_and_the_service_keeps_answering() {
    let (router, tokens, f) = app().await;
    let a = id('a');
    let unknown = id('z');
    for uri in [
        "/api/v1/recommendations".to_owned(),
        "/api/v1/recommendations?product_id=".to_owned(),
        "/api/v1/recommendations?product_id=not-a-uuid".to_owned(),
        "/api/v1/recommendations?product_id=%00".to_owned(),
        format!("/api/v1/recommendations?product_id={a}&limit="),
        format!("/api/v1/recommendations?product_id={a}&limit=0"),
        format!("/api/v1/recommendations?product_id={a}&limit=51"),
        format!("/api/v1/recommendations?product_id={a}&limit=-1"),
        format!("/api/v1/recommendations?product_id={a}&limit=ten"),
        format!("/api/v1/recommendations?product_id={a}&limit=99999999999999999999"),
    ] {
        let (status, body) = get(&router, &uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
    let (status, _) = get(
        &router,
        &format!("/api/v1/recommendations?product_id={unknown}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let customer = tokens.customer();
    for uri in [
        "/api/v1/recommendations/me?limit=",
        "/api/v1/recommendations/me?limit=0",
        "/api/v1/recommendations/me?limit=51",
        "/api/v1/recommendations/me?limit=x",
    ] {
        let (status, body) = get(&router, uri, Some(&customer)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
    for token in [None, Some("not-a-token")] {
        let (status, _) = get(&router, "/api/v1/recommendations/me", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A token signed by another key is refused like none.
    let forged = Tokens::new().customer();
    let (status, _) = get(&router, "/api/v1/recommendations/me", Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // And it still answers good questions.
    let (status, body) = get(
        &router,
        &format!("/api/v1/recommendations?product_id={a}&limit=5"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let list: RecommendationList = serde_json::from_value(body).unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        (
            list.items[0].product_id.as_str(),
            list.items[0].reason.as_str()
        ),
        (id('b').as_str(), "also_bought")
    );
    let (status, body) = get(&router, "/api/v1/recommendations/me", Some(&customer)).await;
    assert_eq!(
        (status, body["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );

    let grpc = RecommendationsGrpc {
        recommender: f.recommender.clone(),
    };
    for ask in [
        pb::GetRecommendationsRequest::default(),
        pb::GetRecommendationsRequest {
            product_id: "nope".into(),
            ..Default::default()
        },
        pb::GetRecommendationsRequest {
            product_id: a.clone(),
            user_id: "u1".into(),
            ..Default::default()
        },
        pb::GetRecommendationsRequest {
            product_id: a.clone(),
            limit: 51,
            ..Default::default()
        },
        pb::GetRecommendationsRequest {
            user_id: "u".repeat(65),
            ..Default::default()
        },
    ] {
        let status = grpc
            .get_recommendations(tonic::Request::new(ask.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{ask:?}");
    }
    let answer = grpc
        .get_recommendations(tonic::Request::new(pb::GetRecommendationsRequest {
            product_id: a,
            limit: 3,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.items.len(), 1);
    assert_eq!(answer.items[0].product_id, id('b'));
}

#[tokio::test]
async fn the_openapi_document_names_every_answer_of_the_routes() {
    let doc = emporium_recommendation::openapi::document();
    for (path, codes) in [
        ("/api/v1/recommendations", &["200", "400", "404"][..]),
        ("/api/v1/recommendations/me", &["200", "400", "401"][..]),
    ] {
        let responses = &doc["paths"][path]["get"]["responses"];
        for code in codes {
            assert!(responses.get(code).is_some(), "{path} {code}");
        }
    }
}
