//! The staff's operations page: each service's readiness and traffic and
//! the shop's checkouts, backlog and faults, read from the process's own
//! metrics and checks, refreshed live by the page's script.

use emporium_storefront::StorefrontSettings;

use super::browser::Chromium;
use super::storefront::{Browser, admin_browser, sign_in_at};
use super::*;

const CARD: &str = "4242424242424242";

/// The shop, sampled every second, and watching `targets` of other
/// processes besides its own services.
async fn sampled_shop(targets: &[(&str, String)]) -> TestShop {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shop_settings(dir.path());
    settings.update_section::<StorefrontSettings>(|s| {
        s.ops_sample_ms = 1_000;
        for (name, url) in targets {
            s.ops_targets.insert((*name).to_owned(), url.clone());
        }
    });
    TestShop::start_with(settings, dir).await
}

/// An address where nothing listens: bound, then let go.
fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Product reads, a miss (404) and one paid checkout by `shopper` (a
/// customer's token), through the API at `base`.
async fn some_traffic(base: &str, shopper: &str) -> Value {
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(format!("{base}{path}")).send();
        async move {
            let response = request.await.unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for _ in 0..5 {
        assert_eq!(get("/api/v1/products?per_page=5").await.0, StatusCode::OK);
    }
    let missing = format!("/api/v1/products/{}", uuid::Uuid::now_v7());
    assert_eq!(get(&missing).await.0, StatusCode::NOT_FOUND);
    let (_, page) = get("/api/v1/products?per_page=1").await;
    let product = page["items"][0]["id"].as_str().unwrap();
    let response = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(shopper)
        .json(&json!({ "items": [{ "product_id": product }], "card_number": CARD }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let order: Value = response.json().await.unwrap();
    assert_eq!(
        (status, order["status"].as_str()),
        (StatusCode::CREATED, Some("confirmed")),
        "{order}"
    );
    order
}

/// The text of a service's row's cell under `label` (`Requests/s`).
fn cell(page: &str, service: &str, label: &str) -> String {
    let start = page
        .find(&format!("<tr id=\"service-{service}\""))
        .unwrap_or_else(|| panic!("no row for {service}: {page}"));
    let row = &page[start..start + page[start..].find("</tr>").unwrap()];
    let at = row
        .find(&format!("data-label=\"{label}\""))
        .unwrap_or_else(|| panic!("no {label} in {row}"));
    let text = &row[at..];
    let text = &text[text.find('>').unwrap() + 1..text.find("</td>").unwrap()];
    text.trim().to_owned()
}

/// The text of the shop's figure `id`.
fn fact(page: &str, id: &str) -> String {
    fact_of(page, &format!("<dd id=\"{id}\""), "</dd>")
}

/// The text of the element that opens with `open` and ends at `close`.
fn fact_of(page: &str, open: &str, close: &str) -> String {
    let start = page
        .find(open)
        .unwrap_or_else(|| panic!("no {open}: {page}"));
    let element = &page[start..start + page[start..].find(close).unwrap()];
    let text = &element[element.find('>').unwrap() + 1..];
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The operations page once `ready` holds of it (samples come every
/// second), asked again until then.
pub(super) async fn page_when(browser: &mut Browser, ready: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..240 {
        let (status, _, page) = browser.get("/admin/ops").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        if ready(&page) {
            return page;
        }
        last = page;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the figures never showed: {last}");
}

/// The page once a sample taken after this call shows: what happened
/// before the call is in its figures.
async fn fresh_page(browser: &mut Browser) -> String {
    let (_, _, page) = browser.get("/admin/ops").await;
    let when = |page: &str| fact_of(page, "<p class=\"muted\" id=\"ops-when\"", "</p>");
    let first = when(&page);
    page_when(browser, |page| {
        when(page) != first && page.contains("Over the last ")
    })
    .await
}

/// How many checkouts the window holds.
fn checkouts(page: &str) -> u64 {
    let said = fact(page, "checkouts");
    said.split(' ').next().unwrap().parse().unwrap()
}

/// The page's bytes with its stylesheet and script.
async fn first_load(browser: &mut Browser, page: &str) -> usize {
    let mut bytes = page.len();
    for (at, _) in page.match_indices("\"/static/app.") {
        let asset = page[at + 1..].split('"').next().unwrap().to_owned();
        let (status, _, body) = browser.get(&asset).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        bytes += body.len();
    }
    bytes
}

/// The figures are the process's: its metrics registry counts every shop
/// it runs, so this shop runs in a process of its own, where one checkout
/// is exactly one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_page_shows_each_service_ready_with_its_traffic_and_the_checkouts() {
    let up = crate::UpProcess::start(&[("EMPORIUM__STOREFRONT__OPS_SAMPLE_MS", "1000")]).await;
    let (email, password) = up.credentials("admin sign-in");
    let (mut browser, _, status, signed) = sign_in_at(&up.base, &email, &password).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{signed}");
    // The demo's past orders were checkouts too, made as the shop started.
    let before = checkouts(&fresh_page(&mut browser).await);
    let shopper = up.token("customer", "ops-shopper").await;
    let order = some_traffic(&up.base, &shopper).await;
    let admin = up.token("admin", "ops-admin").await;
    let held: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/orders/{}",
            up.base,
            order["id"].as_str().unwrap()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(held["status"], "confirmed", "{held}");
    let page = page_when(&mut browser, |page| checkouts(page) == before + 1).await;
    assert!(page.contains("<h1 id=\"ops-title\">Operations</h1>"));
    assert!(
        page.contains("aria-current=\"page\">Operations</a>"),
        "in the menu"
    );
    assert!(
        page.contains("Over the last "),
        "the window is named: {page}"
    );
    assert!(page.contains("last sample at "), "{page}");

    // Every service of the process, each ready.
    let names = emporium::names();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert_eq!(
            cell(&page, name, "Readiness"),
            "<span class=\"readiness ready\">Ready</span>",
            "{name}"
        );
    }
    assert!(!page.contains("Not ready"), "{page}");

    // Traffic where it went; a 404 is no server error.
    for name in ["gateway", "catalog"] {
        let rate: f64 = cell(&page, name, "Requests/s").parse().unwrap();
        assert!(rate > 0.0, "{name}: {rate}");
        assert_eq!(cell(&page, name, "Errors"), "0%", "{name}");
        assert!(
            cell(&page, name, "p50 latency").ends_with(" ms"),
            "{name}: {page}"
        );
        assert_ne!(cell(&page, name, "p99 latency"), "no traffic", "{name}");
    }
    let checkouts = fact(&page, "checkouts");
    assert!(checkouts.contains("100% succeeded"), "{checkouts}");
    assert!(!checkouts.contains("failed"), "{checkouts}");
    assert_eq!(fact(&page, "dead-letters"), "0 in the window, 0 in all");
    assert_eq!(fact(&page, "circuits"), "none");
    assert!(fact(&page, "low-stock").contains("at or below their threshold"));
    assert!(fact(&page, "backlog").contains("not yet published"));
    assert!(!page.contains("NaN"));

    let bytes = first_load(&mut browser, &page).await;
    eprintln!("/admin/ops with its stylesheet and script: {bytes} bytes");
    assert!(bytes < 60 * 1024, "{bytes} bytes");

    // The figures alone, as the script asks for them.
    let (status, _, fragment) = browser.get("/admin/ops?fragment=1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        fragment.trim_start().starts_with("<section id=\"ops\""),
        "{fragment}"
    );
    assert!(!fragment.contains("<html") && fragment.contains("service-gateway"));

    // A customer is turned away, the figures too; a visitor signs in first.
    let (email, password) = up.credentials("shopper ");
    let (mut customer, _, status, _) = sign_in_at(&up.base, &email, &password).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    for path in ["/admin/ops", "/admin/ops?fragment=1"] {
        let (status, _, refused) = customer.get(path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            refused.contains("Sign in with an admin account"),
            "{refused}"
        );
        assert!(!refused.contains("service-gateway"), "{refused}");
    }
    let (status, to, _) = Browser::at(&up.base).get("/admin/ops").await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/signin?next=/admin/ops")
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_not_ready_is_shown_with_the_reason() {
    let refusing = refusing_url();
    let shop = sampled_shop(&[("search", refusing.clone())]).await;
    let (mut browser, _) = admin_browser(&shop).await;
    let page = page_when(&mut browser, |page| page.contains("last sample at ")).await;
    assert_eq!(
        cell(&page, "search", "Readiness"),
        format!(
            "<span class=\"readiness not-ready\">Not ready</span> <span class=\"why\">{refusing}/ready: the connection was refused or failed</span>"
        )
    );
    assert!(page.contains("<tr id=\"service-search\" class=\"not-ready\">"));
    assert_eq!(cell(&page, "search", "Requests/s"), "no traffic");
    // The others are not taken down with it.
    assert!(cell(&page, "gateway", "Readiness").contains(">Ready<"));
    assert_eq!(page.matches("class=\"not-ready\"").count(), 1, "{page}");
    shop.stop().await;
}

/// The text of `selector` now: the script replaces the figures under the
/// driver's feet, so no element is held between two reads.
async fn live_text(browser: &Chromium, selector: &str) -> String {
    let text = browser
        .client
        .execute(
            "return document.querySelector(arguments[0]).innerText;",
            vec![json!(selector)],
        )
        .await
        .unwrap();
    text.as_str().unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_page_refreshes_itself_in_chromium() {
    let Some(driver) = emporium_testkit::server_url("EMPORIUM_TEST_CHROMEDRIVER") else {
        return;
    };
    let shots = super::browser::shots("admin");
    let shop = sampled_shop(&[("search", refusing_url())]).await;
    some_traffic(&shop.base, &shop.token(Role::Customer)).await;
    let browser = Chromium::start(&driver, &shots).await;
    let (email, password) = crate::demo_admin(&shop);
    browser
        .client
        .goto(&format!("{}/signin?next=/admin/ops", shop.base))
        .await
        .unwrap();
    browser.fill("input[name=email]", &email).await;
    browser.fill("input[name=password]", &password).await;
    browser.submit("form.stack button").await;
    assert_eq!(browser.text("h1").await, "Operations");

    // The same page, never reloaded, shows later samples as they come.
    browser
        .client
        .execute("window.__opened = true;", vec![])
        .await
        .unwrap();
    let first = live_text(&browser, "#ops-when").await;
    let mut later = first.clone();
    for _ in 0..100 {
        later = live_text(&browser, "#ops-when").await;
        if later != first && later.starts_with("Over the last") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(later, first, "the figures were refreshed");
    let same_page = browser
        .client
        .execute("return window.__opened === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "by the script, not a reload");
    assert!(
        live_text(&browser, "#service-search")
            .await
            .contains("Not ready")
    );
    browser.shoot("41-ops").await;
    browser.shoot_at("42-ops-shop", "#shop").await;
    browser.stop().await;
    shop.stop().await;
}
