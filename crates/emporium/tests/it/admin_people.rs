//! The staff's pages about people and money: payments and refunds, users
//! (roles, disable), notifications sent, the mock processor's fault
//! settings; and a shopper's own profile.

use fantoccini::Locator;
use reqwest::Method;

use super::browser::Chromium;
use super::storefront::{Browser, admin_browser, sign_in, signed_in};
use super::*;

const PASSWORD: &str = "a long passphrase";
const FORGED: &str = "did not come from this shop";

/// A customer registered through the API: their email, id and token.
async fn customer(shop: &TestShop, name: &str) -> (String, String, String) {
    let email = format!(
        "{}-{}@example.org",
        name.to_lowercase(),
        uuid::Uuid::now_v7().simple()
    );
    let (status, _) = shop
        .send(
            Method::POST,
            "/api/v1/users/register",
            None,
            Some(json!({ "email": email, "password": PASSWORD, "name": name })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let session = login(shop, &email, PASSWORD).await;
    let id = session["user"]["id"].as_str().unwrap().to_owned();
    let token = session["access_token"].as_str().unwrap().to_owned();
    (email, id, token)
}

/// A customer's checkout of one product with the card that is accepted:
/// its payment, as the payment API holds it.
async fn captured_payment(shop: &TestShop) -> Value {
    let (_, me, token) = customer(shop, "Payer").await;
    let (_, page) = shop.get("/api/v1/products?per_page=1&sort=-price").await;
    let product = page["items"][0]["id"].as_str().unwrap();
    let (status, added) = shop
        .send(
            Method::POST,
            &format!("/api/v1/baskets/{me}/items"),
            Some(&token),
            Some(json!({ "product_id": product, "quantity": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    let (status, order) = shop
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(&token),
            Some(json!({ "card_number": "4242424242424242" })),
        )
        .await;
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::CREATED, Some("confirmed")),
        "{order}"
    );
    let admin = shop.token(Role::Admin);
    let path = format!("/api/v1/payments/order/{}", order["id"].as_str().unwrap());
    let (_, payments) = shop.send(Method::GET, &path, Some(&admin), None).await;
    let payment = payments["items"][0].clone();
    assert_eq!(payment["status"], "captured", "{payments}");
    payment
}

/// What the payment API holds of a payment now.
async fn payment(shop: &TestShop, id: &str) -> Value {
    let admin = shop.token(Role::Admin);
    let path = format!("/api/v1/payments/{id}");
    shop.send(Method::GET, &path, Some(&admin), None).await.1
}

/// What identity holds of a user now.
async fn user(shop: &TestShop, id: &str) -> Value {
    let admin = shop.token(Role::Admin);
    let path = format!("/api/v1/users/{id}");
    shop.send(Method::GET, &path, Some(&admin), None).await.1
}

/// The value of field `name` in the part of `page` after `marker` (one
/// row's form).
fn field_after(page: &str, marker: &str, name: &str) -> String {
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {page}"));
    Browser::field(&page[start..], name)
}

/// A payment's refund form as the list's filter `captured` sends it.
fn refund_form<'a>(
    csrf: &'a str,
    key: &'a str,
    amount: &'a str,
    currency: &'a str,
) -> [(&'static str, &'a str); 6] {
    [
        ("csrf", csrf),
        ("key", key),
        ("amount", amount),
        ("currency", currency),
        ("status", "captured"),
        ("page", "1"),
    ]
}

/// A user's row form.
fn user_form<'a>(csrf: &'a str, role: &'a str, active: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("csrf", csrf),
        ("role", role),
        ("active", active),
        ("email", ""),
        ("page", "1"),
    ]
}

/// Posts a form that must go through: where it sends the browser next.
async fn done(browser: &mut Browser, path: &str, form: &[(&str, &str)]) -> String {
    let (status, to, page) = browser.post(path, form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{path}: {page}");
    to
}

/// A page that opens (200) and, with its stylesheet, stays under 60 KB.
async fn opened(browser: &mut Browser, path: &str) -> String {
    let (status, _, page) = browser.get(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {page}");
    let start = page.find("/static/app.").expect("the stylesheet's link");
    let sheet = page[start..].split('"').next().unwrap().to_owned();
    let (status, _, css) = browser.get(&sheet).await;
    assert_eq!(status, StatusCode::OK);
    let weight = page.len() + css.len();
    eprintln!("{path} and its stylesheet: {weight} bytes");
    assert!(weight < 60 * 1024, "{path}: {weight} bytes");
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_refunds_a_checkout_in_parts_and_sets_the_processors_faults() {
    let shop = TestShop::start().await;
    let paid = captured_payment(&shop).await;
    let id = paid["id"].as_str().unwrap().to_owned();
    let (amount, currency) = (
        paid["amount"]["amount"].as_str().unwrap().to_owned(),
        paid["amount"]["currency"].as_str().unwrap().to_owned(),
    );
    let (mut browser, csrf) = admin_browser(&shop).await;

    // The list: the payment by its last characters, the whole id in a
    // title, its refund form filled with all that is left.
    let list = opened(&mut browser, "/admin/payments?status=captured").await;
    assert!(
        list.contains(&format!("title=\"{id}\">{}<", &id[id.len() - 8..])),
        "{list}"
    );
    let row = format!("data-payment=\"{id}\"");
    assert_eq!(field_after(&list, &row, "amount"), amount);
    let refund = format!("/admin/payments/{id}/refund");
    // A forged token, more than was captured, and words for an amount:
    // each refused with a message, what was typed kept, nothing refunded.
    // Each rendering of a form has its own key: the API answers a key's
    // second use with its first answer.
    let mut key = field_after(&list, &row, "key");
    let (status, _, page) = browser
        .post(&refund, &refund_form("forged", &key, "1.00", &currency))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains(FORGED), "{page}");
    for (typed, says) in [
        ("99999.00", "minor units are left to refund"),
        ("lots", "must be a decimal string"),
        ("-1", "must not be negative"),
    ] {
        let (status, _, page) = browser
            .post(&refund, &refund_form(&csrf, &key, typed, &currency))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{typed}: {page}");
        assert!(page.contains("was refused"), "{typed}: {page}");
        assert!(page.contains(says), "{typed}: {page}");
        assert_eq!(field_after(&page, &row, "amount"), typed, "kept");
        assert!(page.contains("Nothing was refunded"), "{page}");
        let fresh = field_after(&page, &row, "key");
        assert_ne!(fresh, key);
        key = fresh;
    }
    let held = payment(&shop, &id).await;
    assert_eq!(
        (held["status"].as_str(), held["refunded"]["amount"].as_str()),
        (Some("captured"), Some("0.00"))
    );

    // A part, then the rest as the form offers it.
    let to = done(
        &mut browser,
        &refund,
        &refund_form(&csrf, &key, "1.00", &currency),
    )
    .await;
    assert_eq!(to, "/admin/payments?status=captured&page=1");
    let held = payment(&shop, &id).await;
    assert_eq!(
        (held["status"].as_str(), held["refunded"]["amount"].as_str()),
        (Some("partially_refunded"), Some("1.00"))
    );
    let (_, _, list) = browser
        .get("/admin/payments?status=partially_refunded")
        .await;
    let rest = field_after(&list, &row, "amount");
    let key = field_after(&list, &row, "key");
    assert_ne!(rest, amount, "what is left: {list}");
    done(
        &mut browser,
        &refund,
        &refund_form(&csrf, &key, &rest, &currency),
    )
    .await;
    let held = payment(&shop, &id).await;
    assert_eq!(held["status"], "refunded", "{held}");
    assert_eq!(held["refunded"]["amount"].as_str(), Some(amount.as_str()));

    // A refunded payment offers no form; a second refund is refused in
    // the API's words and changes nothing.
    let (_, _, list) = browser.get("/admin/payments?status=refunded").await;
    assert!(list.contains(&id), "{list}");
    assert!(!list.contains(&row), "no refund form: {list}");
    let (status, _, page) = browser
        .post(&refund, &refund_form(&csrf, "another-key", "", &currency))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{page}");
    assert!(
        page.contains("a refunded payment cannot be refunded"),
        "{page}"
    );
    assert_eq!(payment(&shop, &id).await, held);

    // The processor: its settings shown, changed, read back.
    let admin = shop.token(Role::Admin);
    let provider = || shop.send(Method::GET, "/api/v1/payments/provider", Some(&admin), None);
    let page = opened(&mut browser, "/admin/processor").await;
    assert!(page.contains("name=\"failure_rate\" value=\"0"), "{page}");
    let form = [
        ("csrf", csrf.as_str()),
        ("failure_rate", "0.25"),
        ("latency_ms", "40"),
    ];
    let to = done(&mut browser, "/admin/processor", &form).await;
    assert_eq!(to, "/admin/processor?saved=1");
    let set = json!({ "failure_rate": 0.25, "latency_ms": 40 });
    assert_eq!(provider().await.1, set);
    let (_, _, page) = browser.get("/admin/processor?saved=1").await;
    assert!(page.contains("Saved"), "{page}");
    assert!(page.contains("value=\"0.25\""), "{page}");
    assert!(page.contains("value=\"40\""), "{page}");
    for (rate, latency, says, status) in [
        (
            "2",
            "20000",
            "must be from 0 to 1",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "0.5",
            "20000",
            "must be at most 10000",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "often",
            "10",
            "must be a number from 0 to 1",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "NaN",
            "-5",
            "whole number of milliseconds",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (got, _, page) = browser
            .post(
                "/admin/processor",
                &[
                    ("csrf", &csrf),
                    ("failure_rate", rate),
                    ("latency_ms", latency),
                ],
            )
            .await;
        assert_eq!(got, status, "{rate} {latency}: {page}");
        assert!(page.contains(says), "{rate} {latency}: {page}");
        assert!(page.contains(&format!("value=\"{rate}\"")), "kept: {page}");
        assert!(
            page.contains(&format!("value=\"{latency}\"")),
            "kept: {page}"
        );
        assert!(page.contains("aria-invalid=\"true\""), "{page}");
    }
    let (status, _, page) = browser
        .post(
            "/admin/processor",
            &[
                ("csrf", "forged"),
                ("failure_rate", "1"),
                ("latency_ms", "0"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains(FORGED), "{page}");
    assert_eq!(provider().await.1, set, "nothing changed");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_promotes_one_customer_and_disables_another_but_not_themself() {
    let shop = TestShop::start().await;
    let (ann_email, ann, _) = customer(&shop, "Ann").await;
    let (bob_email, bob, _) = customer(&shop, "Bob").await;
    let (admin_email, _) = crate::demo_admin(&shop);
    let admin = shop.token(Role::Admin);
    let found = format!("/api/v1/users?email={}", admin_email.replace('@', "%40"));
    let own = shop.send(Method::GET, &found, Some(&admin), None).await.1["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut browser, csrf) = admin_browser(&shop).await;

    let list = opened(&mut browser, "/admin/users").await;
    for email in [&ann_email, &bob_email, &admin_email] {
        assert!(list.contains(email.as_str()), "{email}: {list}");
    }
    assert!(list.contains("You cannot disable yourself"), "{list}");
    assert!(list.contains("This is you"), "{list}");
    assert!(
        !list.contains(&format!("data-user=\"{own}\"")),
        "no form for oneself"
    );
    assert!(list.contains(&format!("title=\"{ann}\">{}", &ann[ann.len() - 8..])));
    let (_, _, only_ann) = browser
        .get(&format!(
            "/admin/users?email={}",
            ann_email.replace('@', "%40")
        ))
        .await;
    assert!(only_ann.contains(&ann_email) && !only_ann.contains(&bob_email));

    // Refused: a forged token, values not on the lists, the admin's own
    // role or access; nothing changes.
    for (id, role, active, token, status, says) in [
        (
            &bob,
            "customer",
            "false",
            "forged",
            StatusCode::BAD_REQUEST,
            FORGED,
        ),
        (
            &bob,
            "king",
            "true",
            csrf.as_str(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a role",
        ),
        (
            &bob,
            "admin",
            "maybe",
            csrf.as_str(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a role",
        ),
        (
            &own,
            "admin",
            "false",
            csrf.as_str(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "You cannot disable yourself",
        ),
        (
            &own,
            "customer",
            "true",
            csrf.as_str(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "drop your own admin role",
        ),
    ] {
        let (got, _, page) = browser
            .post(
                &format!("/admin/users/{id}"),
                &user_form(token, role, active),
            )
            .await;
        assert_eq!(got, status, "{id} {role} {active}: {page}");
        assert!(page.contains(says), "{id} {role} {active}: {page}");
    }
    for (id, role) in [(&bob, "customer"), (&own, "admin")] {
        let held = user(&shop, id).await;
        assert_eq!(
            (held["role"].as_str(), held["active"].as_bool()),
            (Some(role), Some(true)),
            "{held}"
        );
    }

    // Ann becomes an admin, Bob is disabled; their names stay.
    let to = done(
        &mut browser,
        &format!("/admin/users/{ann}"),
        &user_form(&csrf, "admin", "true"),
    )
    .await;
    assert_eq!(to, "/admin/users?email=&page=1");
    done(
        &mut browser,
        &format!("/admin/users/{bob}"),
        &user_form(&csrf, "customer", "false"),
    )
    .await;
    let (ann_held, bob_held) = (user(&shop, &ann).await, user(&shop, &bob).await);
    assert_eq!(
        (ann_held["role"].as_str(), ann_held["name"].as_str()),
        (Some("admin"), Some("Ann"))
    );
    assert_eq!(
        (bob_held["active"].as_bool(), bob_held["name"].as_str()),
        (Some(false), Some("Bob"))
    );
    let (_, _, list) = browser.get("/admin/users").await;
    assert!(list.contains("disabled"), "{list}");

    // Bob cannot sign in on the storefront; Ann now reaches the staff's pages.
    let (mut bob_browser, _, status, page) = sign_in(&shop, &bob_email, PASSWORD).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("The email or password is wrong"), "{page}");
    let (status, _, _) = bob_browser.get("/account").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "not signed in");
    let (mut ann_browser, _) = signed_in(&shop, &ann_email, PASSWORD).await;
    let (status, _, page) = ann_browser.get("/admin/users").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_lists_the_messages_sent_and_opens_one() {
    let shop = TestShop::start().await;
    let (email, id, _) = customer(&shop, "Mila").await;
    let admin = shop.token(Role::Admin);
    let theirs = format!("/api/v1/notifications?user_id={id}");
    let welcome = emporium_testkit::eventually(Duration::from_secs(10), || async {
        let (_, page) = shop.send(Method::GET, &theirs, Some(&admin), None).await;
        let first = page["items"][0].clone();
        (first["status"] == "sent").then_some(first)
    })
    .await
    .expect("the welcome is sent");
    let message = welcome["id"].as_str().unwrap().to_owned();
    let (mut browser, _) = admin_browser(&shop).await;

    let list = opened(&mut browser, "/admin/notifications").await;
    assert!(list.contains("Welcome to Emporium, Mila"), "{list}");
    assert!(list.contains(&email), "{list}");
    let link = format!("href=\"/admin/notifications/{message}\"");
    assert!(list.contains(&link), "{list}");
    let (_, _, sent) = browser.get("/admin/notifications?status=sent").await;
    assert!(sent.contains(&link), "{sent}");
    let (_, _, failed) = browser.get("/admin/notifications?status=failed").await;
    assert!(!failed.contains(&link), "{failed}");
    let (status, _, any) = browser
        .get("/admin/notifications?status=%3Cscript%3E&page=x")
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a filter not on the list shows all: {any}"
    );
    assert!(any.contains(&link));

    let page = opened(&mut browser, &format!("/admin/notifications/{message}")).await;
    let body = welcome["body_text"].as_str().unwrap();
    let first_line = body.lines().find(|l| !l.trim().is_empty()).unwrap();
    assert!(page.contains(first_line.trim()), "{first_line}: {page}");
    assert!(page.contains(&format!(
        "title=\"{message}\">{}<",
        &message[message.len() - 8..]
    )));
    assert!(page.contains("sent"), "{page}");
    let (status, _, _) = browser.get("/admin/notifications/not-an-id").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_edits_their_profile_and_a_bad_phone_is_refused_keeping_what_was_typed() {
    let shop = TestShop::start().await;
    let (email, id, _) = customer(&shop, "Ada").await;
    let (status, location, _) = Browser::at(&shop.base).get("/account").await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/signin?next=%2Faccount")
    );
    let (mut browser, csrf) = signed_in(&shop, &email, PASSWORD).await;
    let page = opened(&mut browser, "/account").await;
    assert!(page.contains(&email), "{page}");
    assert!(page.contains("name=\"name\" value=\"Ada\""), "{page}");
    assert!(page.contains("href=\"/orders\""), "{page}");
    assert!(page.contains("href=\"/account\""), "the header links here");

    let form = [
        ("csrf", csrf.as_str()),
        ("name", "Ada Lovelace"),
        ("phone", "+44 20 7946 0958"),
    ];
    let to = done(&mut browser, "/account", &form).await;
    assert_eq!(to, "/account?saved=1");
    let held = user(&shop, &id).await;
    assert_eq!(
        (
            held["name"].as_str(),
            held["phone"].as_str(),
            held["email"].as_str()
        ),
        (
            Some("Ada Lovelace"),
            Some("+44 20 7946 0958"),
            Some(email.as_str())
        )
    );
    let (_, _, page) = browser.get("/account?saved=1").await;
    assert!(page.contains("Saved"), "{page}");
    assert!(
        page.contains("Sign out Ada Lovelace"),
        "the header has the new name"
    );

    for (name, phone, token, status, says) in [
        (
            "Ada",
            "call me maybe",
            csrf.as_str(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "is not a phone number",
        ),
        (
            "Ada",
            "12",
            csrf.as_str(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "is not a phone number",
        ),
        (
            "",
            "+44 20 7946 0000",
            csrf.as_str(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Name is required",
        ),
        (
            "Ada",
            "+44 20 7946 0000",
            "forged",
            StatusCode::BAD_REQUEST,
            FORGED,
        ),
    ] {
        let (got, _, page) = browser
            .post(
                "/account",
                &[("csrf", token), ("name", name), ("phone", phone)],
            )
            .await;
        assert_eq!(got, status, "{name} {phone}: {page}");
        assert!(page.contains(says), "{name} {phone}: {page}");
        if token != "forged" {
            assert!(
                page.contains(&format!("name=\"name\" value=\"{name}\"")),
                "kept: {page}"
            );
            assert!(
                page.contains(&format!("name=\"phone\" value=\"{phone}\"")),
                "kept: {page}"
            );
            assert!(page.contains("aria-invalid=\"true\""), "{page}");
        }
    }
    assert_eq!(user(&shop, &id).await, held, "nothing changed");

    // An empty phone takes it off.
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "Ada Lovelace"),
        ("phone", ""),
    ];
    done(&mut browser, "/account", &form).await;
    assert_eq!(user(&shop, &id).await["phone"], Value::Null);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_gets_403_on_every_staff_page_and_form_and_changes_nothing() {
    let shop = TestShop::start().await;
    let admin = shop.token(Role::Admin);
    let (_, _, captured) = shop
        .call(
            Method::GET,
            "/api/v1/payments?status=captured&per_page=1",
            Some(&admin),
            None,
        )
        .await;
    let paid = captured["items"][0]["id"].as_str().unwrap().to_owned();
    let (email, me, _) = customer(&shop, "Eve").await;
    let (_, other, _) = customer(&shop, "Olga").await;
    let (sent, _) = shop
        .send(
            Method::GET,
            "/api/v1/notifications?per_page=1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(sent, StatusCode::OK);
    let message = uuid::Uuid::now_v7().to_string();
    let before = (
        payment(&shop, &paid).await,
        user(&shop, &other).await,
        user(&shop, &me).await,
        shop.send(Method::GET, "/api/v1/payments/provider", Some(&admin), None)
            .await
            .1,
    );

    // A visitor is sent to sign in first.
    let mut visitor = Browser::at(&shop.base);
    for path in [
        "/admin/payments",
        "/admin/users",
        "/admin/notifications",
        "/admin/processor",
    ] {
        let (status, location, _) = visitor.get(path).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert!(location.starts_with("/signin?next="), "{path}: {location}");
    }

    let (mut browser, csrf) = signed_in(&shop, &email, PASSWORD).await;
    for path in [
        "/admin/payments".to_owned(),
        "/admin/payments?status=captured".to_owned(),
        "/admin/users".to_owned(),
        "/admin/notifications".to_owned(),
        format!("/admin/notifications/{message}"),
        "/admin/processor".to_owned(),
    ] {
        let (status, _, page) = browser.get(&path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {page}");
        assert!(page.contains("Sign in with an admin account"), "{path}");
    }
    let forms: [(String, Vec<(&str, &str)>); 4] = [
        (
            format!("/admin/payments/{paid}/refund"),
            vec![("amount", "1.00"), ("currency", "USD"), ("key", "k1")],
        ),
        (
            format!("/admin/users/{other}"),
            vec![("role", "customer"), ("active", "false")],
        ),
        (
            format!("/admin/users/{me}"),
            vec![("role", "admin"), ("active", "true")],
        ),
        (
            "/admin/processor".to_owned(),
            vec![("failure_rate", "1"), ("latency_ms", "5000")],
        ),
    ];
    for (path, fields) in &forms {
        for (token, status) in [
            (csrf.as_str(), StatusCode::FORBIDDEN),
            ("forged", StatusCode::BAD_REQUEST),
        ] {
            let mut sent = fields.clone();
            sent.push(("csrf", token));
            let (got, _, page) = browser.post(path, &sent).await;
            assert_eq!(got, status, "{path} with {token}: {page}");
        }
    }
    // The admin's own forms with a forged token.
    let (mut staff, _) = admin_browser(&shop).await;
    for (path, fields) in &forms {
        let mut sent = fields.clone();
        sent.push(("csrf", "forged"));
        let (got, _, page) = staff.post(path, &sent).await;
        assert_eq!(got, StatusCode::BAD_REQUEST, "{path}: {page}");
        assert!(page.contains(FORGED), "{path}: {page}");
    }
    let after = (
        payment(&shop, &paid).await,
        user(&shop, &other).await,
        user(&shop, &me).await,
        shop.send(Method::GET, "/api/v1/payments/provider", Some(&admin), None)
            .await
            .1,
    );
    assert_eq!(after, before, "nothing changed");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_walks_payments_users_notifications_the_processor_and_their_account_in_chromium() {
    let Some(driver) = emporium_testkit::server_url("EMPORIUM_TEST_CHROMEDRIVER") else {
        return;
    };
    let shots = super::browser::shots("admin");
    let shop = TestShop::start().await;
    let paid = captured_payment(&shop).await;
    let id = paid["id"].as_str().unwrap().to_owned();
    let (_, zoe, _) = customer(&shop, "Zoe").await;
    let (email, password) = crate::demo_admin(&shop);
    let browser = Chromium::start(&driver, &shots).await;
    let base = shop.base.clone();
    let go = |path: &str| format!("{base}{path}");

    browser
        .client
        .goto(&go("/signin?next=/admin/payments"))
        .await
        .unwrap();
    browser.fill("input[name=email]", &email).await;
    browser.fill("input[name=password]", &password).await;
    browser.submit("form.stack button").await;
    assert!(browser.text("h1").await.contains("Payments"));
    browser.shoot("21-payments").await;
    browser
        .shoot_at("22-payments-rows", "table.lines tbody")
        .await;

    // A refund of more than was paid: the words, the amount kept.
    let form = format!("form[data-payment='{id}']");
    browser
        .fill(&format!("{form} input[name=amount]"), "99999")
        .await;
    browser.submit(&format!("{form} button")).await;
    assert!(browser.text("[role=alert]").await.contains("was refused"));
    browser.shoot("23-payments-refused").await;
    browser
        .fill(&format!("{form} input[name=amount]"), "1.50")
        .await;
    browser.submit(&format!("{form} button")).await;
    assert!(browser.page().await.contains("1.50 refunded"));
    assert_eq!(payment(&shop, &id).await["refunded"]["amount"], "1.50");

    // Users: Zoe disabled.
    browser.client.goto(&go("/admin/users")).await.unwrap();
    let row = format!("form[data-user='{zoe}']");
    browser
        .client
        .find(Locator::Css(&format!("{row} select[name=active]")))
        .await
        .unwrap()
        .select_by_value("false")
        .await
        .unwrap();
    browser.submit(&format!("{row} button")).await;
    assert_eq!(user(&shop, &zoe).await["active"], false);
    browser.shoot_at("24-users", "table.lines tbody").await;

    // Notifications and one message.
    browser
        .client
        .goto(&go("/admin/notifications"))
        .await
        .unwrap();
    assert!(browser.page().await.contains("Welcome to Emporium"));
    browser.shoot("25-notifications").await;
    browser
        .shoot_at("26-notifications-rows", "table.lines tbody")
        .await;
    browser.click("table.messages a").await;
    let opened = emporium_testkit::eventually(Duration::from_secs(5), || async {
        browser
            .page()
            .await
            .contains("pre class=\"body\"")
            .then_some(())
    })
    .await;
    assert!(opened.is_some(), "the message opens");
    browser.shoot("27-notification").await;

    // The processor: a value out of range, then a good one.
    browser.client.goto(&go("/admin/processor")).await.unwrap();
    browser.fill("input[name=latency_ms]", "20000").await;
    browser
        .client
        .execute(
            "document.querySelector('form.stack').noValidate = true;",
            vec![],
        )
        .await
        .unwrap();
    browser.submit("form.stack button").await;
    assert!(browser.page().await.contains("must be at most 10000"));
    browser.shoot("28-processor-refused").await;
    browser.fill("input[name=failure_rate]", "0.1").await;
    browser.fill("input[name=latency_ms]", "25").await;
    browser.submit("form.stack button").await;
    assert!(browser.text("[role=status]").await.contains("Saved"));
    browser.shoot("29-processor").await;

    // The admin's own account: a phone that is not one.
    browser.client.goto(&go("/account")).await.unwrap();
    browser.shoot("30-account").await;
    browser.fill("input[name=phone]", "call me").await;
    browser.submit("form.stack button").await;
    assert!(
        browser
            .text(".field-error")
            .await
            .contains("is not a phone number")
    );
    browser.shoot("31-account-refused").await;
    browser.stop().await;
    shop.stop().await;
}
