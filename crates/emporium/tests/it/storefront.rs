//! The shop's pages through the gateway, as a browser without JavaScript
//! reads them: HTML, small, and a page with a message for every bad input.

use super::*;

/// Status, content type and body of a page.
async fn page(shop: &TestShop, path: &str) -> (StatusCode, String, String) {
    let response = shop.http.get(shop.url(path)).send().await.unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, kind, response.text().await.unwrap())
}

/// The `href`s of `page` that start with `prefix`.
fn links<'a>(page: &'a str, prefix: &str) -> Vec<&'a str> {
    page.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_browses_searches_and_opens_a_product_in_plain_html() {
    let shop = TestShop::start().await;
    let (status, kind, home) = page(&shop, "/").await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "text/html; charset=utf-8")
    );
    assert!(home.contains("Shop by category"), "{home}");
    let products = links(&home, "/products/");
    assert_eq!(products.len(), 8, "eight new products on the home page");
    let categories = links(&home, "/products?category=");
    assert!(categories.len() >= 6, "{categories:?}");

    // The stylesheet and icon carry their digest and are kept for a year.
    let sheet = links(&home, "/static/app.")[0].to_owned();
    let response = shop.http.get(shop.url(&sheet)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/css; charset=utf-8"
    );
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let css = response.text().await.unwrap();
    assert!(
        home.len() + css.len() < 60 * 1024,
        "home and its stylesheet: {} bytes",
        home.len() + css.len()
    );

    // Search, a category, a price band and a sort, each a plain GET form.
    let (status, _, found) = page(&shop, "/products?q=towel").await;
    assert_eq!(status, StatusCode::OK);
    assert!(found.contains("Results for “towel”"), "{found}");
    assert!(found.contains("Cotton Bath Towels"), "{found}");
    let (_, _, kitchen) = page(&shop, "/products?category=kitchen&sort=price&max_price=30").await;
    let api: Value = shop
        .get("/api/v1/products?category=kitchen&sort=price&max_price=30&per_page=100")
        .await
        .1;
    let expected = api["total"].as_u64().unwrap();
    assert!(expected > 0);
    assert_eq!(links(&kitchen, "/products/").len() as u64, expected.min(24));
    let first = api["items"][0]["name"].as_str().unwrap();
    let second = api["items"][1]["name"].as_str().unwrap();
    let (a, b) = (kitchen.find(first).unwrap(), kitchen.find(second).unwrap());
    assert!(a < b, "sorted by price as the API sorts");
    // More than a page: the next page's link keeps the choices.
    let (_, _, all) = page(&shop, "/products?sort=name").await;
    let next = links(&all, "/products?sort=name&amp;page=2");
    assert_eq!(next.len(), 1, "{all}");
    let (status, _, second_page) = page(&shop, &next[0].replace("&amp;", "&")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(second_page.contains("Page 2 of 2"), "{second_page}");

    // A product: price, stock in words and what others bought with it.
    let (_, cheap) = shop.get("/api/v1/products?per_page=3&sort=price").await;
    let id = cheap["items"][1]["id"].as_str().unwrap();
    let sku = cheap["items"][1]["sku"].as_str().unwrap();
    let available = shop.get(&format!("/api/v1/inventory/{sku}")).await.1["available"]
        .as_i64()
        .unwrap();
    let (status, _, product) = page(&shop, &format!("/products/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(product.contains(cheap["items"][1]["name"].as_str().unwrap()));
    let words = match available {
        0 => "Out of stock".to_owned(),
        n if n < 5 => format!("Only {n} left"),
        _ => "In stock".to_owned(),
    };
    assert!(product.contains(&words), "{words}: {product}");
    let also = emporium_testkit::eventually(Duration::from_secs(10), || async {
        let (_, _, product) = page(&shop, &format!("/products/{id}")).await;
        product.contains("Customers also bought").then_some(product)
    })
    .await;
    assert!(also.is_some(), "the seeded orders give it neighbours");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_a_page_answers_a_page_with_a_message() {
    let shop = TestShop::start().await;
    let long = "x".repeat(201);
    for (path, expected, says) in [
        (
            "/products?min_price=abc",
            StatusCode::BAD_REQUEST,
            "Prices are amounts",
        ),
        (
            "/products?min_price=50&max_price=10",
            StatusCode::BAD_REQUEST,
            "Prices are amounts",
        ),
        ("/products?page=0", StatusCode::BAD_REQUEST, "page number"),
        ("/products?page=%FF", StatusCode::BAD_REQUEST, "page number"),
        (
            "/products?sort=%3Cscript%3E",
            StatusCode::BAD_REQUEST,
            "choose an order",
        ),
        (
            &format!("/products?q={long}"),
            StatusCode::BAD_REQUEST,
            "200 characters",
        ),
        (
            "/products?category=no%20such",
            StatusCode::BAD_REQUEST,
            "no such category",
        ),
        (
            "/products/not-a-uuid",
            StatusCode::NOT_FOUND,
            "no such page or product",
        ),
        (
            "/products/01a237ae-8def-77dd-b466-fb30a9b5b037",
            StatusCode::NOT_FOUND,
            "no such page or product",
        ),
        ("/static/app.css", StatusCode::NOT_FOUND, "no such file"),
    ] {
        let (status, _, body) = page(&shop, path).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
        assert!(!body.contains("<script>"), "{path}: escaped");
    }
    // What was typed stays in the form, escaped.
    let (_, _, typed) = page(&shop, "/products?q=%22%3E%3Cb%3Elamp&min_price=abc").await;
    assert!(
        typed.contains("value=\"&quot;&gt;&lt;b&gt;lamp\""),
        "{typed}"
    );
    shop.stop().await;
}

/// A browser without JavaScript: it keeps cookies, posts forms and does
/// not follow redirects by itself, so each step's answer is seen.
pub(super) struct Browser {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Browser {
    fn new(shop: &TestShop) -> Self {
        Self::at(&shop.base)
    }

    /// A browser of the shop at `base`.
    pub(super) fn at(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: Default::default(),
        }
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub(super) fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Status, `Location` and body.
    pub(super) async fn get(&mut self, path: &str) -> (StatusCode, String, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.answer(response).await
    }

    pub(super) async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        self.answer(response).await
    }

    pub(super) async fn answer(
        &mut self,
        response: reqwest::Response,
    ) -> (StatusCode, String, String) {
        self.keep(&response);
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, location, response.text().await.unwrap())
    }

    /// The value of the hidden field `name` in `page`.
    pub(super) fn field(page: &str, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = page
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {page}"))
            + marker.len();
        page[start..].split('"').next().unwrap().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_registers_fills_a_basket_and_pays_without_javascript() {
    let shop = TestShop::start().await;
    let mut browser = Browser::new(&shop);
    let email = format!("page-{}@example.org", uuid::Uuid::now_v7().simple());

    // Register: the form's token, then the post signs her in.
    let (status, _, form) = browser.get("/register").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = Browser::field(&form, "csrf");
    let (status, _, refused) = browser
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("email", &email),
                ("name", "Page"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused.contains("aria-invalid=\"true\""),
        "the password box is marked: {refused}"
    );
    assert!(
        refused.contains(&format!("value=\"{email}\"")),
        "what was typed stays"
    );
    let (status, to, _) = browser
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("email", &email),
                ("name", "Page"),
                ("password", "a long passphrase"),
            ],
        )
        .await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/"));
    let (_, _, home) = browser.get("/").await;
    assert!(home.contains("Sign out Page"), "signed in");

    // Two products into the basket, then a quantity changed.
    let (_, cheap) = shop.get("/api/v1/products?per_page=2&sort=-price").await;
    let first = cheap["items"][0]["id"].as_str().unwrap().to_owned();
    let second = cheap["items"][1]["id"].as_str().unwrap().to_owned();
    for product in [&first, &second] {
        let (status, _, page) = browser.get(&format!("/products/{product}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Add to basket"), "{page}");
        let (status, to, _) = browser
            .post(
                "/basket/items",
                &[("csrf", &csrf), ("product_id", product), ("quantity", "1")],
            )
            .await;
        assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/basket"));
    }
    let (status, to, _) = browser
        .post(
            &format!("/basket/items/{first}"),
            &[("csrf", &csrf), ("quantity", "2")],
        )
        .await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/basket"));
    let (_, _, basket) = browser.get("/basket").await;
    assert!(basket.contains("value=\"2\""), "{basket}");

    // A declined card: a message, and the basket as it was.
    let (_, _, checkout) = browser.get("/checkout").await;
    assert!(
        checkout.contains("4000 0000 0000 0002"),
        "the test cards are named"
    );
    let key = Browser::field(&checkout, "key");
    let (status, _, declined) = browser
        .post(
            "/checkout",
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("card_number", "4000 0000 0000 0002"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{declined}");
    assert!(declined.contains("did not go through"), "{declined}");
    assert!(declined.contains("Nothing was charged"), "{declined}");
    let (_, _, kept) = browser.get("/basket").await;
    assert!(
        kept.contains(&first) && kept.contains(&second),
        "the basket is kept"
    );

    // A good card: the order page, confirmed.
    let key = Browser::field(&declined, "key");
    let (status, to, _) = browser
        .post(
            "/checkout",
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("card_number", "4242 4242 4242 4242"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/orders/"), "{to}");
    let (status, _, order) = browser.get(&to).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        order.contains("id=\"status\" aria-live=\"polite\">confirmed"),
        "{order}"
    );
    let (_, _, history) = browser.get("/orders").await;
    assert!(history.contains(&to), "{history}");

    // Another shopper cannot open it; a stranger is sent to sign in.
    let mut stranger = Browser::new(&shop);
    let (status, location, _) = stranger.get(&to).await;
    assert_eq!(
        (status, location),
        (
            StatusCode::SEE_OTHER,
            format!("/signin?next={}", to.replace('/', "%2F"))
        )
    );
    let (_, _, signin) = stranger.get("/signin").await;
    let other_csrf = Browser::field(&signin, "csrf");
    let (status, _, _) = stranger
        .post(
            "/register",
            &[
                ("csrf", &other_csrf),
                ("email", &format!("x{email}")),
                ("name", "Other"),
                ("password", "a long passphrase"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, theirs) = stranger.get(&to).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{theirs}");

    // Signing out ends the session: the basket asks for a sign-in again.
    let (status, to, _) = browser.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/"));
    let (status, location, _) = browser.get("/basket").await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/signin?next=%2Fbasket")
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_refuse_a_forged_token_and_bad_values_and_change_nothing() {
    let shop = TestShop::start().await;
    let mut browser = Browser::new(&shop);
    let (_, _, form) = browser.get("/register").await;
    let csrf = Browser::field(&form, "csrf");
    let email = format!("forms-{}@example.org", uuid::Uuid::now_v7().simple());
    let (status, _, _) = browser
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("email", &email),
                ("name", "Forms"),
                ("password", "a long passphrase"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, one) = shop.get("/api/v1/products?per_page=1").await;
    let product = one["items"][0]["id"].as_str().unwrap().to_owned();
    let huge = "9".repeat(100_000);
    for (path, form, says) in [
        (
            "/basket/items",
            vec![("csrf", "forged"), ("product_id", product.as_str())],
            "did not come from this shop",
        ),
        (
            "/basket/items",
            vec![("product_id", product.as_str())],
            "did not come from this shop",
        ),
        (
            "/signout",
            vec![("csrf", "forged")],
            "did not come from this shop",
        ),
        (
            "/checkout",
            vec![("csrf", "forged"), ("card_number", "4242424242424242")],
            "did not come from this shop",
        ),
        (
            "/basket/items",
            vec![
                ("csrf", csrf.as_str()),
                ("product_id", product.as_str()),
                ("quantity", "1000"),
            ],
            "whole number from 1 to 99",
        ),
        (
            "/basket/items",
            vec![
                ("csrf", csrf.as_str()),
                ("product_id", product.as_str()),
                ("quantity", huge.as_str()),
            ],
            "whole number from 1 to 99",
        ),
        (
            "/basket/items",
            vec![
                ("csrf", csrf.as_str()),
                ("product_id", "not-a-product"),
                ("quantity", "1"),
            ],
            "product_id",
        ),
    ] {
        let (status, _, page) = browser.post(path, &form).await;
        assert!(status.is_client_error(), "{path} {form:?}: {status}");
        assert!(page.contains(says), "{path} {form:?}: {page}");
    }
    // The staff's pages turn a customer away.
    let (status, _, staff) = browser.get("/admin/orders").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{staff}");
    assert!(staff.contains("Sign in with an admin account"), "{staff}");
    let order = uuid::Uuid::now_v7().to_string();
    let (status, _, _) = browser
        .post(
            &format!("/admin/orders/{order}"),
            &[("csrf", csrf.as_str()), ("status", "shipped")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Nothing reached the basket, and the session still stands.
    let (status, _, basket) = browser.get("/basket").await;
    assert_eq!(status, StatusCode::OK);
    assert!(basket.contains("Your basket is empty"), "{basket}");
    // A sign-in's `next` stays on this site.
    let (_, _, signin) = Browser::new(&shop).get("/signin?next=//evil.example").await;
    assert!(signin.contains("name=\"next\" value=\"/\""), "{signin}");
    let (status, _, wrong) = Browser::new(&shop)
        .post(
            "/signin",
            &[
                ("csrf", "x"),
                ("email", &email),
                ("password", "a long passphrase"),
            ],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "no cookie, no sign-in: {wrong}"
    );
    let mut fresh = Browser::new(&shop);
    let (_, _, page) = fresh.get("/signin").await;
    let token = Browser::field(&page, "csrf");
    let (status, _, wrong) = fresh
        .post(
            "/signin",
            &[
                ("csrf", &token),
                ("email", &email),
                ("password", "not the passphrase"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.contains("The email or password is wrong"), "{wrong}");
    assert!(
        wrong.contains(&format!("value=\"{email}\"")),
        "the email stays"
    );
    shop.stop().await;
}

/// A browser that tried to sign in on the storefront's own form: it, its
/// forms' token, and the answer's status and page.
pub(super) async fn sign_in(
    shop: &TestShop,
    email: &str,
    password: &str,
) -> (Browser, String, StatusCode, String) {
    sign_in_at(&shop.base, email, password).await
}

/// As [`sign_in`], on the shop at `base`.
pub(super) async fn sign_in_at(
    base: &str,
    email: &str,
    password: &str,
) -> (Browser, String, StatusCode, String) {
    let mut browser = Browser::at(base);
    let (_, _, form) = browser.get("/signin").await;
    let csrf = Browser::field(&form, "csrf");
    let fields = [
        ("csrf", csrf.as_str()),
        ("email", email),
        ("password", password),
    ];
    let (status, _, page) = browser.post("/signin", &fields).await;
    (browser, csrf, status, page)
}

/// A browser signed in on the storefront's own form, and its forms' token.
pub(super) async fn signed_in(shop: &TestShop, email: &str, password: &str) -> (Browser, String) {
    let (browser, csrf, status, page) = sign_in(shop, email, password).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{email}: {page}");
    (browser, csrf)
}

/// A browser signed in as the shop's generated admin, and its forms' token.
pub(super) async fn admin_browser(shop: &TestShop) -> (Browser, String) {
    let (email, password) = crate::demo_admin(shop);
    signed_in(shop, &email, &password).await
}
