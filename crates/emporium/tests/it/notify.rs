//! Messages in the whole shop, through the gateway: a welcome on
//! registration, one confirmation a checkout, a word at each later step,
//! each in the `up` mailbox as an `.eml` file and in the customer's own
//! list; an event delivered twice mails once.

use std::path::Path;

use reqwest::Method;

use super::*;

const CARD: &str = "4242424242424242";

/// (recipient, subject) of every `.eml` file in `dir`.
fn mailbox(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let header = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            (header(&text, "To: "), header(&text, "Subject: "))
        })
        .collect()
}

/// The subjects mailed to `to`, once at least `n` have come.
async fn mailed(dir: &Path, to: &str, n: usize) -> Vec<String> {
    let found = emporium_testkit::eventually(Duration::from_secs(10), || async {
        let mine: Vec<String> = mailbox(dir)
            .into_iter()
            .filter(|(r, _)| r == to)
            .map(|(_, s)| s)
            .collect();
        (mine.len() >= n).then_some(mine)
    })
    .await;
    found.unwrap_or_else(|| panic!("{n} messages to {to}: {:?}", mailbox(dir)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_is_mailed_once_at_each_step_of_an_order() {
    let shop = TestShop::start().await;
    let inbox = shop._dir.path().join("mailbox");
    let email = "mila@example.org";
    let (status, _, _) = shop
        .call(
            Method::POST,
            "/api/v1/users/register",
            None,
            Some(json!({ "email": email, "password": "a long passphrase", "name": "Mila", "phone": "+49 151 1234 5678" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let session = login(&shop, email, "a long passphrase").await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let me = session["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        mailed(&inbox, email, 1).await,
        ["Welcome to Emporium, Mila"]
    );

    let (_, page) = shop.get("/api/v1/products?per_page=1").await;
    let product = page["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, _, added) = shop
        .call(
            Method::POST,
            &format!("/api/v1/baskets/{me}/items"),
            Some(&token),
            Some(json!({ "product_id": product, "quantity": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    let (status, _, order) = shop
        .call(
            Method::POST,
            "/api/v1/orders",
            Some(&token),
            Some(json!({ "card_number": CARD })),
        )
        .await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::CREATED, Some("confirmed")),
        "{order}"
    );
    let id = order["id"].as_str().unwrap().to_owned();
    let confirmed = format!("Order {id} is confirmed");
    let subjects = mailed(&inbox, email, 2).await;
    assert!(subjects.contains(&confirmed), "{subjects:?}");

    let admin = shop.token(Role::Admin);
    for step in ["processing", "shipped", "delivered"] {
        let (status, _, moved) = shop
            .call(
                Method::PUT,
                &format!("/api/v1/orders/{id}"),
                Some(&admin),
                Some(json!({ "status": step })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{moved}");
    }
    mailed(&inbox, email, 4).await;
    // A moment more: nothing else may come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut subjects: Vec<String> = mailbox(&inbox)
        .into_iter()
        .filter(|(r, _)| r == email)
        .map(|(_, s)| s)
        .collect();
    subjects.sort();
    let mut expected = vec![
        confirmed.clone(),
        format!("Order {id} is on its way"),
        format!("Order {id} was delivered"),
        "Welcome to Emporium, Mila".to_owned(),
    ];
    expected.sort();
    assert_eq!(
        subjects, expected,
        "one message a step; none for `processing`"
    );

    // Her list holds those four and, since she gave a phone number, an SMS
    // when it shipped and one when it came; all sent. Nobody else's list
    // holds them.
    let (status, _, mine) = shop
        .call(
            Method::GET,
            "/api/v1/notifications?per_page=50",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["total"], 6, "{mine}");
    let items = mine["items"].as_array().unwrap();
    let mut texts: Vec<(&str, &str)> = items
        .iter()
        .filter(|n| n["channel"] == "sms")
        .map(|n| {
            (
                n["type"].as_str().unwrap(),
                n["recipient"].as_str().unwrap(),
            )
        })
        .collect();
    texts.sort_unstable();
    assert_eq!(
        texts,
        [
            ("order.delivered", "+4915112345678"),
            ("order.shipped", "+4915112345678")
        ]
    );
    assert!(
        items
            .iter()
            .all(|n| n["status"] == "sent" && n["user_id"] == me.as_str() && n["attempts"] == 1),
        "{mine}"
    );
    let confirmation = items
        .iter()
        .find(|n| n["type"] == "order.confirmed")
        .unwrap();
    assert!(confirmation["body_text"].as_str().unwrap().contains(&id));
    let (status, _, one) = shop
        .call(
            Method::GET,
            &format!(
                "/api/v1/notifications/{}",
                confirmation["id"].as_str().unwrap()
            ),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, one["subject"].as_str()),
        (StatusCode::OK, Some(confirmed.as_str()))
    );
    let stranger = shop.token(Role::Customer);
    let (_, _, theirs) = shop
        .call(Method::GET, "/api/v1/notifications", Some(&stranger), None)
        .await;
    assert_eq!(theirs["total"], 0, "{theirs}");
    let (status, _, _) = shop
        .call(
            Method::GET,
            &format!(
                "/api/v1/notifications/{}",
                confirmation["id"].as_str().unwrap()
            ),
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, filtered) = shop
        .call(
            Method::GET,
            &format!("/api/v1/notifications?type=order.shipped&user_id={me}"),
            Some(&admin),
            None,
        )
        .await;
    // By email and by SMS.
    assert_eq!(filtered["total"], 2, "{filtered}");

    let sent = super::commerce::metric_sum(
        &shop.metrics().await,
        "notifications_sent_total{",
        &["type=\"order.confirmed\"", "status=\"sent\""],
    );
    assert!(sent >= 1.0, "notifications_sent_total: {sent}");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_twice_mails_once_and_an_admin_writes_to_anyone() {
    let shop = TestShop::start().await;
    let inbox = shop._dir.path().join("mailbox");
    let transport = shop.shop.as_ref().unwrap().runtime.transport.clone();
    let registered = emporium_platform::bus::Envelope::new(
        "user.registered",
        "emporium.identity",
        "users/0193a4b2-0000-7000-8000-0000000000b1",
        json!({ "id": "0193a4b2-0000-7000-8000-0000000000b1", "email": "twice@example.org", "name": "Twice", "role": "customer", "created_at": "2026-12-02T10:00:00Z" }),
    );
    for _ in 0..3 {
        transport.publish(&registered).await.unwrap();
    }
    mailed(&inbox, "twice@example.org", 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        mailed(&inbox, "twice@example.org", 1).await.len(),
        1,
        "one welcome for one event"
    );

    let admin = shop.token(Role::Admin);
    let (status, _, queued) = shop
        .call(
            Method::POST,
            "/api/v1/notifications/send",
            Some(&admin),
            Some(json!({ "to": "supplier@example.org", "subject": "Restock KIT-002", "body": "Twenty more, please." })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(
        mailed(&inbox, "supplier@example.org", 1).await,
        ["Restock KIT-002"]
    );
    let path = format!("/api/v1/notifications/{}", queued["id"].as_str().unwrap());
    let sent = emporium_testkit::eventually(Duration::from_secs(5), || async {
        let (_, _, record) = shop.call(Method::GET, &path, Some(&admin), None).await;
        (record["status"] == "sent").then_some(record)
    })
    .await;
    assert!(sent.is_some(), "the admin's message is recorded sent");

    // Bad input through the gateway: a problem, and nothing queued.
    let customer = shop.token(Role::Customer);
    for (token, body, expected) in [
        (
            None,
            json!({ "to": "a@example.org", "subject": "x", "body": "y" }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(&customer),
            json!({ "to": "a@example.org", "subject": "x", "body": "y" }),
            StatusCode::FORBIDDEN,
        ),
        (
            Some(&admin),
            json!({ "to": "a@example.org", "subject": "x", "body": "" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(&admin),
            json!({ "user_id": uuid::Uuid::now_v7().to_string(), "subject": "x", "body": "y" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, kind, problem) = shop
            .call(
                Method::POST,
                "/api/v1/notifications/send",
                token.map(String::as_str),
                Some(body),
            )
            .await;
        assert_eq!(status, expected, "{problem}");
        assert_eq!(kind, "application/problem+json");
    }
    let (_, _, all) = shop
        .call(
            Method::GET,
            "/api/v1/notifications?type=manual",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(all["total"], 1, "{all}");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_mail_server_leaves_the_message_failed_in_the_api_and_staff_hear_of_low_stock() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(dir.path());
    let smtp = emporium_testkit::refusing_smtp("554 5.7.1 relaying denied for this shop").await;
    settings.update_section::<emporium_notification::NotificationSettings>(|n| {
        n.smtp_url = Some(emporium_platform::config::Secret::new(format!(
            "smtp://{smtp}"
        )));
        n.retry_base_ms = 50;
        n.max_attempts = 3;
    });
    let shop = TestShop::start_with(settings, dir).await;
    let admin = shop.token(Role::Admin);
    let (status, _, queued) = shop
        .call(
            Method::POST,
            "/api/v1/notifications/send",
            Some(&admin),
            Some(json!({ "to": "ops@example.org", "subject": "Hello", "body": "Anyone there?" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let path = format!("/api/v1/notifications/{}", queued["id"].as_str().unwrap());
    let failed = emporium_testkit::eventually(Duration::from_secs(15), || async {
        let (_, _, record) = shop.call(Method::GET, &path, Some(&admin), None).await;
        (record["status"] == "failed").then_some(record)
    })
    .await
    .expect("the record ends failed");
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("relaying denied"),
        "{failed}"
    );

    // The demo stock holds SKUs below their threshold: their `stock.low`
    // went to the shop's admin, the one staff member `up` knows, and
    // failed here like every other message.
    let (_, _, low) = shop
        .call(
            Method::GET,
            "/api/v1/notifications?type=stock.low&per_page=100",
            Some(&admin),
            None,
        )
        .await;
    let items = low["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{low}");
    assert!(
        items.iter().all(
            |n| n["recipient"] == emporium_identity::DEMO_ADMIN_EMAIL && n["user_id"].is_null()
        ),
        "{low}"
    );
    shop.stop().await;
}
