//! The shop in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, from Debian's packages). A shopper registers, searches,
//! fills a basket, changes a quantity, is declined and then pays, and sees
//! "Shipped" arrive on the order page while it is open, when an admin
//! ships it from the admin pages in a second browser; screenshots of
//! each step, at a phone's width and a desktop's, go under the target dir.

use std::process::Stdio;

use fantoccini::{Client, ClientBuilder, Locator};

use super::*;

/// Where the screenshots of `area` go: under the target dir.
pub(super) fn shots(area: &str) -> String {
    format!(
        "{}/screenshots/{area}",
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into())
    )
}

/// `chromedriver` on a free port, and a browser session through it.
pub(super) struct Chromium {
    driver: tokio::process::Child,
    pub(super) client: Client,
    shots: std::path::PathBuf,
}

impl Chromium {
    pub(super) async fn start(driver: &str, shots: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap().keep();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": std::env::var("EMPORIUM_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let mut client = None;
        for _ in 0..50 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let shots = std::path::PathBuf::from(shots);
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            driver,
            client: client.expect("a browser session"),
            shots,
        }
    }

    /// The page at a phone's width and at a desktop's, as PNG files.
    pub(super) async fn shoot(&self, step: &str) {
        for (width, height, name) in [(390, 844, "phone"), (1280, 900, "desktop")] {
            self.client.set_window_size(width, height).await.unwrap();
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(self.shots.join(format!("{step}-{name}.png")), png).unwrap();
        }
    }

    /// Scrolls `selector` to the middle of a phone's screen, the first of
    /// the two widths a shot takes: a table's rows below the fold.
    pub(super) async fn in_view(&self, selector: &str) {
        self.client.set_window_size(390, 844).await.unwrap();
        self.client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView({ block: 'center' });",
                vec![json!(selector)],
            )
            .await
            .unwrap();
    }

    /// The page shot with `selector` in view.
    pub(super) async fn shoot_at(&self, step: &str, selector: &str) {
        self.in_view(selector).await;
        self.shoot(step).await;
    }

    pub(super) async fn fill(&self, selector: &str, text: &str) {
        let field = self.client.find(Locator::Css(selector)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub(super) async fn click(&self, selector: &str) {
        self.client
            .find(Locator::Css(selector))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Clicks `selector`, a form's button, and waits for the page the
    /// form leads to: a click returns before the navigation ends, and the
    /// old page's elements would go stale under the next step.
    pub(super) async fn submit(&self, selector: &str) {
        self.client
            .execute("window.__before_submit = true;", vec![])
            .await
            .unwrap();
        self.click(selector).await;
        for _ in 0..200 {
            let fresh = self
                .client
                .execute(
                    "return window.__before_submit === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await;
            if matches!(fresh, Ok(serde_json::Value::Bool(true))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no new page after submitting {selector}");
    }

    pub(super) async fn text(&self, selector: &str) -> String {
        self.client
            .find(Locator::Css(selector))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub(super) async fn page(&self) -> String {
        self.client.source().await.unwrap()
    }

    pub(super) async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_buys_in_chromium_and_sees_the_order_ship_live() {
    let Some(driver) = emporium_testkit::server_url("EMPORIUM_TEST_CHROMEDRIVER") else {
        return;
    };
    let shots = shots("storefront");
    let shop = TestShop::start().await;
    let browser = Chromium::start(&driver, &shots).await;
    let base = shop.base.clone();
    let go = |path: &str| format!("{base}{path}");

    browser.client.goto(&go("/")).await.unwrap();
    assert!(browser.page().await.contains("Shop by category"));
    browser.shoot("01-home").await;

    // Register.
    browser.client.goto(&go("/register")).await.unwrap();
    let email = format!("chromium-{}@example.org", uuid::Uuid::now_v7().simple());
    browser.fill("input[name=name]", "Chris").await;
    browser.fill("input[name=email]", &email).await;
    browser
        .fill("input[name=password]", "a long passphrase")
        .await;
    browser.shoot("02-register").await;
    browser.submit("form.stack button").await;
    assert!(browser.text("nav.account").await.contains("Sign out Chris"));

    // Search from the header, then narrow to a category.
    browser.fill("#q", "towel").await;
    browser.submit("form.search button").await;
    assert!(browser.page().await.contains("Cotton Bath Towels"));
    browser.shoot("03-search").await;
    browser
        .client
        .goto(&go("/products?category=kitchen&sort=price"))
        .await
        .unwrap();
    let cards = browser
        .client
        .find_all(Locator::Css(".grid .card a"))
        .await
        .unwrap();
    assert!(cards.len() >= 2, "kitchen products");
    let first = cards[0].attr("href").await.unwrap().unwrap();
    let second = cards[1].attr("href").await.unwrap().unwrap();
    browser.shoot("04-category").await;

    // Two products into the basket; the first's quantity to 2.
    for product in [&first, &second] {
        browser.client.goto(&go(product)).await.unwrap();
        browser.submit("form.buy button").await;
    }
    browser.shoot("05-product-added").await;
    assert!(
        browser
            .client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/basket")
    );
    let quantity = browser
        .client
        .find(Locator::Css("table.lines input.qty"))
        .await
        .unwrap();
    quantity.clear().await.unwrap();
    quantity.send_keys("2").await.unwrap();
    browser.submit("table.lines form.row button").await;
    let quantities = browser
        .client
        .find_all(Locator::Css("table.lines input.qty"))
        .await
        .unwrap();
    let mut values = vec![];
    for q in quantities {
        values.push(q.prop("value").await.unwrap().unwrap());
    }
    values.sort();
    assert_eq!(values, ["1", "2"]);
    browser.shoot("06-basket").await;

    // A declined card: a message, the basket kept.
    browser.client.goto(&go("/checkout")).await.unwrap();
    browser
        .fill("input[name=card_number]", "4000 0000 0000 0002")
        .await;
    browser.submit("form.stack button").await;
    assert!(
        browser
            .text("[role=alert]")
            .await
            .contains("the card was declined")
    );
    browser.shoot("07-declined").await;

    // A good card: the order page, confirmed.
    browser
        .fill("input[name=card_number]", "4242 4242 4242 4242")
        .await;
    browser.submit("form.stack button").await;
    let order_url = browser.client.current_url().await.unwrap();
    assert!(order_url.path().starts_with("/orders/"), "{order_url}");
    assert!(
        browser
            .text("#status")
            .await
            .eq_ignore_ascii_case("confirmed")
    );
    browser.shoot("08-confirmed").await;

    // An admin ships it from the admin pages in a second browser; the
    // shopper's open page hears it over its socket.
    let order_id = order_url.path().trim_start_matches("/orders/").to_owned();
    let (admin_email, admin_password) = crate::demo_admin(&shop);
    let staff = Chromium::start(&driver, &shots).await;
    staff
        .client
        .goto(&go("/signin?next=/admin/orders"))
        .await
        .unwrap();
    staff.fill("input[name=email]", &admin_email).await;
    staff.fill("input[name=password]", &admin_password).await;
    staff.submit("form.stack button").await;
    assert!(
        staff.page().await.contains(&order_id[..8]),
        "the order is listed"
    );
    for step in ["processing", "shipped"] {
        let form = format!("form[data-order='{order_id}']");
        staff
            .client
            .find(Locator::Css(&format!("{form} select")))
            .await
            .unwrap()
            .select_by_value(step)
            .await
            .unwrap();
        staff.submit(&format!("{form} button")).await;
    }
    staff.shoot("09-admin-orders").await;
    staff.stop().await;
    let shipped = emporium_testkit::eventually(Duration::from_secs(5), || async {
        let status = browser.text("#status").await;
        let toast = browser.text("#toast").await;
        (status.eq_ignore_ascii_case("shipped") && toast == "Shipped").then_some(())
    })
    .await;
    assert!(shipped.is_some(), "the page shows Shipped without a reload");
    browser.shoot("10-shipped-live").await;

    // Another shopper cannot open it.
    browser.client.goto(&go("/orders")).await.unwrap();
    browser.shoot("11-orders").await;
    browser.submit("nav.account form button").await;
    browser.client.goto(&go("/register")).await.unwrap();
    browser.fill("input[name=name]", "Other").await;
    browser
        .fill("input[name=email]", &format!("x{email}"))
        .await;
    browser
        .fill("input[name=password]", "a long passphrase")
        .await;
    browser.submit("form.stack button").await;
    browser.client.goto(order_url.as_str()).await.unwrap();
    assert!(browser.page().await.contains("no such page or product"));
    browser.stop().await;
    shop.stop().await;
}
