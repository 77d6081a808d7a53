//! The staff's catalog pages: products (create, edit, delete, images),
//! categories, and inventory per warehouse with low-stock alerts and
//! adjustments with a reason.

use super::browser::Chromium;
use super::storefront::{Browser, admin_browser};
use super::*;

/// A real PNG of `width` by `height` pixels shading from `rgb`: signature,
/// header, one stored (uncompressed) zlib block of scanlines, end.
fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffff_u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    0xedb8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let tagged = [kind.as_slice(), data].concat();
        out.extend(&tagged);
        out.extend(crc32(&tagged).to_be_bytes());
    }
    let mut scanlines = vec![];
    for y in 0..height {
        scanlines.push(0);
        for x in 0..width {
            let shade = ((x + y) * 255 / (width + height)) as u8;
            scanlines.extend(rgb.map(|c| c.saturating_add(shade / 2)));
        }
    }
    let stored = u16::try_from(scanlines.len()).expect("one stored block");
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend(stored.to_le_bytes());
    zlib.extend((!stored).to_le_bytes());
    zlib.extend(&scanlines);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &scanlines {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    zlib.extend(((b << 16) | a).to_be_bytes());
    let mut header = vec![];
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A browser signed in as a new customer, and its form token.
async fn customer_browser(shop: &TestShop) -> (Browser, String) {
    let mut browser = Browser::at(&shop.base);
    let (_, _, page) = browser.get("/register").await;
    let csrf = Browser::field(&page, "csrf");
    let email = format!("shopper-{}@example.org", uuid::Uuid::now_v7().simple());
    let (status, _, _) = browser
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("email", &email),
                ("name", "Shopper"),
                ("password", "a long passphrase"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    (browser, csrf)
}

/// Posts the image form as a browser does: multipart, the token first.
async fn upload(
    browser: &mut Browser,
    path: &str,
    csrf: &str,
    bytes: &[u8],
    kind: &str,
) -> (StatusCode, String, String) {
    let boundary = "emporium-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"lantern.png\"\r\nContent-Type: {kind}\r\n\r\n"
    )
    .into_bytes();
    body.extend(bytes);
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let response = browser
        .http
        .post(format!("{}{path}", browser.base))
        .header("cookie", browser.cookie_header())
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    browser.answer(response).await
}

/// A form of owned pairs, posted.
async fn post_owned(
    browser: &mut Browser,
    path: &str,
    form: &[(String, String)],
) -> (StatusCode, String, String) {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    browser.post(path, &pairs).await
}

/// A page and its stylesheet, in bytes: what a first visit loads.
async fn first_load(shop: &TestShop, page: &str) -> usize {
    let start = page.find("href=\"/static/app.").unwrap() + "href=\"".len();
    let sheet = page[start..].split('"').next().unwrap();
    let css = shop.http.get(shop.url(sheet)).send().await.unwrap();
    page.len() + css.text().await.unwrap().len()
}

fn product_form<'a>(
    csrf: &'a str,
    sku: &'a str,
    name: &'a str,
    amount: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("sku", sku),
        ("name", name),
        ("description", "A lantern for long evenings."),
        ("amount", amount),
        ("currency", "USD"),
        ("category", "outdoor"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_edits_pictures_and_deletes_a_product_in_plain_forms() {
    let shop = TestShop::start().await;
    let (mut browser, csrf) = admin_browser(&shop).await;
    let total = shop.total().await;

    let (status, _, list) = browser.get("/admin/products?q=towel").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(list.contains("Cotton Bath Towels"), "{list}");
    assert!(!list.contains("Ceramic"), "only what matches: {list}");
    let (status, _, list) = browser.get("/admin/products").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("Page 1 of 2"), "paged: {list}");
    let bytes = first_load(&shop, &list).await;
    assert!(
        bytes < 60 * 1024,
        "products list and stylesheet: {bytes} bytes"
    );

    // Refused values: the catalog's words beside the boxes, what was typed
    // kept, nothing made.
    let (status, _, new) = browser.get("/admin/products/new").await;
    assert_eq!(status, StatusCode::OK);
    assert!(new.contains("<option value=\"outdoor\""), "{new}");
    let (status, _, refused) = browser
        .post(
            "/admin/products",
            &product_form(&csrf, "bad sku!", "  ", "-5"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    for says in [
        "SKU: may hold only letters",
        "Name: must not be empty",
        "Price: must not be negative",
    ] {
        assert!(refused.contains(says), "{says}: {refused}");
    }
    assert!(refused.contains("value=\"bad sku!\""), "{refused}");
    assert!(refused.contains("value=\"-5\""), "{refused}");
    assert!(refused.contains("aria-invalid=\"true\""), "{refused}");
    assert_eq!(shop.total().await, total);

    // Made, then read back from the catalog.
    let (status, to, _) = browser
        .post(
            "/admin/products",
            &product_form(&csrf, "lamp-77", "Admin Lantern", "25.5"),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let id = to
        .strip_prefix("/admin/products/")
        .and_then(|rest| rest.strip_suffix("?done=created"))
        .unwrap_or_else(|| panic!("{to}"))
        .to_owned();
    let api = format!("/api/v1/products/{id}");
    let (_, made) = shop.get(&api).await;
    assert_eq!(
        (
            made["sku"].as_str(),
            made["name"].as_str(),
            made["price"]["amount"].as_str(),
            made["category"].as_str()
        ),
        (
            Some("LAMP-77"),
            Some("Admin Lantern"),
            Some("25.50"),
            Some("outdoor")
        )
    );
    let (status, _, edit) = browser.get(&to).await;
    assert_eq!(status, StatusCode::OK);
    assert!(edit.contains("Created."), "{edit}");
    assert!(edit.contains("value=\"Admin Lantern\""), "{edit}");
    let bytes = first_load(&shop, &edit).await;
    assert!(
        bytes < 60 * 1024,
        "product form and stylesheet: {bytes} bytes"
    );

    // A second product with its SKU: the conflict beside the SKU box.
    let (status, _, twice) = browser
        .post(
            "/admin/products",
            &product_form(&csrf, "LAMP-77", "Another", "3"),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{twice}");
    assert!(
        twice.contains("SKU: a product with SKU LAMP-77 exists already"),
        "{twice}"
    );
    assert!(twice.contains("value=\"Another\""), "{twice}");
    assert_eq!(shop.total().await, total + 1);

    // Edited; a bad price changes nothing and keeps what was typed.
    let page = format!("/admin/products/{id}");
    let (status, to, _) = browser
        .post(
            &page,
            &product_form(&csrf, "lamp-77", "Storm Lantern", "27"),
        )
        .await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, format!("{page}?done=saved").as_str())
    );
    let (_, saved) = shop.get(&api).await;
    assert_eq!(
        (saved["name"].as_str(), saved["price"]["amount"].as_str()),
        (Some("Storm Lantern"), Some("27.00"))
    );
    let (status, _, refused) = browser
        .post(&page, &product_form(&csrf, "lamp-77", "Renamed", "abc"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.contains("Price: "), "{refused}");
    assert!(refused.contains("value=\"abc\"") && refused.contains("value=\"Renamed\""));
    assert_eq!(shop.get(&api).await.1, saved, "nothing changed");

    // A picture, then something that is not one.
    let picture = png(64, 48, [180, 83, 9]);
    let pictures = format!("{page}/images");
    let (status, to, body) = upload(&mut browser, &pictures, &csrf, &picture, "image/png").await;
    assert_eq!(
        (status, to.as_str()),
        (
            StatusCode::SEE_OTHER,
            format!("{page}?done=uploaded").as_str()
        ),
        "{body}"
    );
    let (_, pictured) = shop.get(&api).await;
    let url = pictured["images"][0]["url"].as_str().unwrap().to_owned();
    let stored = shop.http.get(shop.url(&url)).send().await.unwrap();
    assert_eq!(stored.headers()["content-type"], "image/png");
    assert_eq!(stored.bytes().await.unwrap(), picture);
    let (status, _, refused) = upload(
        &mut browser,
        &pictures,
        &csrf,
        b"GIF? no, words",
        "text/plain",
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{refused}");
    assert!(
        refused.contains("image is not PNG, JPEG, GIF or WebP"),
        "{refused}"
    );
    let (status, _, refused) = upload(&mut browser, &pictures, &csrf, b"", "image/png").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains("Choose a picture"), "{refused}");
    assert_eq!(
        shop.get(&api).await.1["images"].as_array().unwrap().len(),
        1
    );
    let (_, _, edit) = browser.get(&page).await;
    assert!(edit.contains(&format!("src=\"{url}\"")), "{edit}");
    // The shopper's page shows it.
    let (status, _, shown) = Browser::at(&shop.base)
        .get(&format!("/products/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(shown.contains(&format!("src=\"{url}\"")), "{shown}");
    assert!(shown.contains("Storm Lantern"), "{shown}");

    // Deleted after a confirmation; a forged token first changes nothing.
    let confirm = format!("{page}/delete");
    let (status, _, asked) = browser.get(&confirm).await;
    assert_eq!(status, StatusCode::OK);
    assert!(asked.contains("Delete Storm Lantern?"), "{asked}");
    let (status, _, forged) = browser.post(&confirm, &[("csrf", "forged")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(forged.contains("did not come from this shop"), "{forged}");
    assert_eq!(shop.get(&api).await.0, StatusCode::OK);
    let (status, to, _) = browser.post(&confirm, &[("csrf", &csrf)]).await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/admin/products?done=deleted")
    );
    assert_eq!(shop.get(&api).await.0, StatusCode::NOT_FOUND);
    assert_eq!(shop.total().await, total);
    let (status, _, gone) = browser.get(&page).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    let (status, _, _) = browser.get("/admin/products/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    shop.stop().await;
}

/// One stock row as the inventory has it.
async fn row_of(shop: &TestShop, sku: &str, warehouse: &str) -> Value {
    let (status, stock) = shop.get(&format!("/api/v1/inventory/{sku}")).await;
    assert_eq!(status, StatusCode::OK, "{stock}");
    stock["warehouses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["warehouse"] == warehouse)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_a_category_and_adjusts_stock_with_a_reason() {
    let shop = TestShop::start().await;
    let (mut browser, csrf) = admin_browser(&shop).await;

    // A category: refused words first, then made.
    let (status, _, page) = browser.get("/admin/categories").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Books"), "{page}");
    let (_, before) = shop.get("/api/v1/categories").await;
    let (status, _, refused) = browser
        .post(
            "/admin/categories",
            &[
                ("csrf", &csrf),
                ("slug", "Garden Tools"),
                ("name", "Garden tools"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused.contains("Slug: may hold only lower-case letters"),
        "{refused}"
    );
    assert!(refused.contains("value=\"Garden Tools\""), "{refused}");
    assert_eq!(shop.get("/api/v1/categories").await.1, before);
    let (status, to, _) = browser
        .post(
            "/admin/categories",
            &[
                ("csrf", &csrf),
                ("slug", "garden-tools"),
                ("name", "Garden tools"),
            ],
        )
        .await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/admin/categories?done=category")
    );
    let (_, after) = shop.get("/api/v1/categories").await;
    assert!(
        after["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["slug"] == "garden-tools"
                && c["name"] == "Garden tools"
                && c["product_count"] == 0),
        "{after}"
    );
    let (status, _, twice) = browser
        .post(
            "/admin/categories",
            &[("csrf", &csrf), ("slug", "garden-tools"), ("name", "Again")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{twice}");
    assert!(
        twice.contains("Slug: category garden-tools exists already"),
        "{twice}"
    );

    // The inventory: rows, the low ones picked out, small enough.
    let admin = shop.token(Role::Admin);
    let (_, alerts) = shop
        .send(
            reqwest::Method::GET,
            "/api/v1/inventory/alerts",
            Some(&admin),
            None,
        )
        .await;
    let low = alerts["items"][0].clone();
    let (status, _, page) = browser.get("/admin/inventory").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&format!("Low on stock: {} row", alerts["total"])),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "{}</a> in {}:",
            low["sku"].as_str().unwrap(),
            low["warehouse"].as_str().unwrap()
        )),
        "{page}"
    );
    assert!(page.contains("class=\"low\""), "{page}");
    let bytes = first_load(&shop, &page).await;
    assert!(
        bytes < 60 * 1024,
        "inventory page and stylesheet: {bytes} bytes"
    );

    // Five units in with a reason, read back from the inventory.
    let (_, rows) = shop
        .send(
            reqwest::Method::GET,
            "/api/v1/inventory?per_page=1",
            Some(&admin),
            None,
        )
        .await;
    let sku = rows["items"][0]["sku"].as_str().unwrap().to_owned();
    let warehouse = rows["items"][0]["warehouse"].as_str().unwrap().to_owned();
    let was = row_of(&shop, &sku, &warehouse).await;
    let form = [
        ("csrf", csrf.as_str()),
        ("row", "1"),
        ("sku", sku.as_str()),
        ("warehouse", warehouse.as_str()),
        ("delta", "5"),
        ("reason", "Delivery received"),
    ];
    let (status, to, _) = browser.post("/admin/inventory?page=1", &form).await;
    assert_eq!(
        (status, to.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/admin/inventory?page=1&done=adjusted"
        )
    );
    let now = row_of(&shop, &sku, &warehouse).await;
    assert_eq!(
        now["on_hand"].as_i64().unwrap(),
        was["on_hand"].as_i64().unwrap() + 5
    );

    // Below zero, no reason, not a number: refused with words, nothing changed.
    let under = format!("-{}", now["on_hand"].as_i64().unwrap() + 1);
    for (delta, reason, status, says) in [
        (
            under.as_str(),
            "Stock count correction",
            StatusCode::CONFLICT,
            "would have -1 on hand",
        ),
        (
            "-1",
            "",
            StatusCode::UNPROCESSABLE_ENTITY,
            "Reason: is required",
        ),
        (
            "lots",
            "Damaged",
            StatusCode::UNPROCESSABLE_ENTITY,
            "Units: must be a whole number",
        ),
        (
            "0",
            "Damaged",
            StatusCode::UNPROCESSABLE_ENTITY,
            "Units: must be from",
        ),
    ] {
        let form = [
            ("csrf", csrf.as_str()),
            ("row", "1"),
            ("sku", sku.as_str()),
            ("warehouse", warehouse.as_str()),
            ("delta", delta),
            ("reason", reason),
        ];
        let (got, _, page) = browser.post("/admin/inventory?page=1", &form).await;
        assert_eq!(got, status, "{delta} {reason}: {page}");
        assert!(page.contains(says), "{delta} {reason}: {page}");
        assert!(
            page.contains("id=\"row-error\""),
            "shown on its row: {page}"
        );
        assert!(page.contains(&format!("value=\"{delta}\"")), "kept: {page}");
        assert_eq!(
            row_of(&shop, &sku, &warehouse).await,
            now,
            "{delta} {reason}"
        );
    }

    // A SKU's first units in a warehouse, low from the start.
    let fresh = [
        ("csrf", csrf.as_str()),
        ("sku", "new-77"),
        ("warehouse", warehouse.as_str()),
        ("delta", "3"),
        ("reason", "Delivery received"),
        ("threshold", "10"),
    ];
    let (status, _, _) = browser.post("/admin/inventory", &fresh).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let stocked = row_of(&shop, "NEW-77", &warehouse).await;
    assert_eq!(
        (stocked["available"].as_i64(), stocked["low"].as_bool()),
        (Some(3), Some(true))
    );
    let (_, _, page) = browser.get("/admin/inventory?low=true").await;
    assert!(
        page.contains("data-row=\"NEW-77@"),
        "among the low rows: {page}"
    );
    assert_eq!(
        page.matches("<tr class=\"low\">").count(),
        page.matches("data-row=").count(),
        "only low rows: {page}"
    );

    // The SKU's own page: its rows and its movements with their reasons.
    let (status, _, moves) = browser.get(&format!("/admin/inventory/{sku}")).await;
    assert_eq!(status, StatusCode::OK, "{moves}");
    assert!(moves.contains(&format!("Stock of {sku}")), "{moves}");
    assert!(moves.contains("Delivery received"), "{moves}");
    assert!(moves.contains("+5 →"), "{moves}");
    let (status, _, _) = browser.get("/admin/inventory/NO-SUCH-SKU").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_a_visitor_and_a_forged_token_change_nothing_in_the_catalog_pages() {
    let shop = TestShop::start().await;
    let admin = shop.token(Role::Admin);
    let (_, one) = shop.get("/api/v1/products?per_page=1").await;
    let id = one["items"][0]["id"].as_str().unwrap().to_owned();
    let sku = one["items"][0]["sku"].as_str().unwrap().to_owned();
    let api = format!("/api/v1/products/{id}");
    let held = || async {
        let (_, stock) = shop
            .send(
                reqwest::Method::GET,
                "/api/v1/inventory?per_page=100",
                Some(&admin),
                None,
            )
            .await;
        (
            shop.total().await,
            shop.get(&api).await.1,
            shop.get("/api/v1/categories").await.1,
            stock,
        )
    };
    let before = held().await;
    let page = format!("/admin/products/{id}");
    let pages = [
        "/admin/products".to_owned(),
        "/admin/products/new".to_owned(),
        page.clone(),
        format!("{page}/delete"),
        "/admin/categories".to_owned(),
        "/admin/inventory".to_owned(),
        format!("/admin/inventory/{sku}"),
    ];
    let forms = |csrf: &str| -> Vec<(String, Vec<(String, String)>)> {
        let own = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        vec![
            (
                "/admin/products".into(),
                own(&product_form(csrf, "x-1", "X", "1")),
            ),
            (
                page.clone(),
                own(&product_form(csrf, &sku, "Taken over", "1")),
            ),
            (format!("{page}/delete"), own(&[("csrf", csrf)])),
            (
                "/admin/categories".into(),
                own(&[("csrf", csrf), ("slug", "taken"), ("name", "Taken")]),
            ),
            (
                "/admin/inventory".into(),
                own(&[
                    ("csrf", csrf),
                    ("sku", &sku),
                    ("warehouse", "main"),
                    ("delta", "-1"),
                    ("reason", "Lost"),
                ]),
            ),
        ]
    };
    let picture = png(8, 8, [0, 0, 0]);

    // A customer: the 403 page on every page and form.
    let (mut customer, csrf) = customer_browser(&shop).await;
    for path in &pages {
        let (status, _, body) = customer.get(path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(body.contains("Sign in with an admin account"), "{path}");
    }
    for (path, form) in forms(&csrf) {
        let (status, _, body) = post_owned(&mut customer, &path, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (status, _, _) = upload(
        &mut customer,
        &format!("{page}/images"),
        &csrf,
        &picture,
        "image/png",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A visitor: sent to sign in, and back here after.
    let mut visitor = Browser::at(&shop.base);
    let (_, _, signin) = visitor.get("/signin").await;
    let token = Browser::field(&signin, "csrf");
    for path in &pages {
        let (status, to, _) = visitor.get(path).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert!(to.starts_with("/signin?next=%2Fadmin%2F"), "{path}: {to}");
    }
    for (path, form) in forms(&token) {
        let (status, to, _) = post_owned(&mut visitor, &path, &form).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert!(to.starts_with("/signin?next="), "{path}: {to}");
    }
    let (status, to, _) = upload(
        &mut visitor,
        &format!("{page}/images"),
        &token,
        &picture,
        "image/png",
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/signin?next="), "{to}");

    // An admin's browser with a forged token: refused, with words.
    let (mut staff, _) = admin_browser(&shop).await;
    for (path, form) in forms("forged") {
        let (status, _, body) = post_owned(&mut staff, &path, &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body.contains("did not come from this shop"), "{path}");
    }
    let (status, _, _) = upload(
        &mut staff,
        &format!("{page}/images"),
        "forged",
        &picture,
        "image/png",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(held().await, before, "nothing changed");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_walks_products_an_edit_and_the_inventory_in_chromium() {
    let Some(driver) = emporium_testkit::server_url("EMPORIUM_TEST_CHROMEDRIVER") else {
        return;
    };
    let shots = super::browser::shots("admin");
    let shop = TestShop::start().await;
    let browser = Chromium::start(&driver, &shots).await;
    let go = |path: &str| format!("{}{path}", shop.base);
    let (email, password) = crate::demo_admin(&shop);

    browser
        .client
        .goto(&go("/signin?next=/admin/products"))
        .await
        .unwrap();
    browser.fill("input[name=email]", &email).await;
    browser.fill("input[name=password]", &password).await;
    browser.submit("form.stack button").await;
    assert!(browser.text("h1").await.contains("Products"));
    browser.shoot("01-products").await;

    // The first product's form: renamed and given a picture.
    browser.click("table.lines tbody tr th a").await;
    let name = browser
        .client
        .find(fantoccini::Locator::Css("input[name=name]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    let id = browser
        .client
        .current_url()
        .await
        .unwrap()
        .path()
        .trim_start_matches("/admin/products/")
        .to_owned();
    browser
        .fill("input[name=name]", &format!("{name} (renamed)"))
        .await;
    browser.submit("form.stack button").await;
    assert_eq!(browser.text("[role=status]").await, "Saved.");
    let (_, saved) = shop.get(&format!("/api/v1/products/{id}")).await;
    assert_eq!(saved["name"].as_str().unwrap(), format!("{name} (renamed)"));
    let file = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
    std::fs::write(file.path(), png(96, 72, [21, 128, 61])).unwrap();
    browser
        .client
        .find(fantoccini::Locator::Css("input[type=file]"))
        .await
        .unwrap()
        .send_keys(&file.path().display().to_string())
        .await
        .unwrap();
    browser.submit("form[enctype] button").await;
    assert_eq!(
        browser.text("[role=status]").await,
        "The picture was added."
    );
    let (_, pictured) = shop.get(&format!("/api/v1/products/{id}")).await;
    assert_eq!(
        pictured["images"].as_array().unwrap().len(),
        saved["images"].as_array().unwrap().len() + 1
    );
    browser.shoot("02-product-edit").await;

    // A refused edit keeps what was typed.
    browser.fill("input[name=amount]", "0").await;
    browser.submit("form.stack button").await;
    assert!(
        browser
            .text(".field-error")
            .await
            .contains("Price: must be greater than zero")
    );
    browser.in_view(".field-error").await;
    browser.shoot("03-product-refused").await;

    // The inventory: adjust the first row, then try to go below zero.
    browser.client.goto(&go("/admin/inventory")).await.unwrap();
    browser.shoot("04-inventory").await;
    let form = browser
        .client
        .find(fantoccini::Locator::Css("form.adjust"))
        .await
        .unwrap();
    let row = form.attr("data-row").await.unwrap().unwrap();
    let (sku, warehouse) = row.split_once('@').unwrap();
    let was = row_of(&shop, sku, warehouse).await;
    browser.fill("form.adjust input[name=delta]", "4").await;
    browser
        .fill("form.adjust input[name=reason]", "Delivery received")
        .await;
    browser.submit("form.adjust button").await;
    assert_eq!(
        browser.text("[role=status]").await,
        "The stock was adjusted."
    );
    let now = row_of(&shop, sku, warehouse).await;
    assert_eq!(
        now["on_hand"].as_i64().unwrap(),
        was["on_hand"].as_i64().unwrap() + 4
    );
    let under = format!("-{}", now["on_hand"].as_i64().unwrap() + 10);
    let selector = format!("form.adjust[data-row='{row}']");
    browser
        .fill(&format!("{selector} input[name=delta]"), &under)
        .await;
    browser
        .fill(
            &format!("{selector} input[name=reason]"),
            "Stock count correction",
        )
        .await;
    browser.submit(&format!("{selector} button")).await;
    assert!(browser.text("#row-error").await.contains("would have"));
    assert_eq!(row_of(&shop, sku, warehouse).await, now);
    browser.in_view("#row-error").await;
    browser.shoot("05-inventory-refused").await;

    browser
        .client
        .goto(&go(&format!("/admin/inventory/{sku}")))
        .await
        .unwrap();
    assert!(browser.page().await.contains("Delivery received"));
    browser.shoot("06-stock").await;
    browser.client.goto(&go("/admin/categories")).await.unwrap();
    browser.shoot("07-categories").await;
    browser
        .client
        .goto(&go(&format!("/admin/products/{id}/delete")))
        .await
        .unwrap();
    browser.shoot("08-delete").await;
    browser
        .client
        .goto(&go("/admin/products/new"))
        .await
        .unwrap();
    browser.shoot("09-product-new").await;
    browser.stop().await;
    shop.stop().await;
}
