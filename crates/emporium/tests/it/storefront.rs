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
