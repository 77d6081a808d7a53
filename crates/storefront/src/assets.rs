//! The stylesheet and icon, built into the binary and served under names
//! that carry a digest of their content, so that browsers keep them for a
//! year and a new build is fetched at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub struct Asset {
    /// `app.3f2a9c1d0b.css`.
    pub name: String,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

fn asset(stem: &str, extension: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let hex: String = digest.as_ref()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Asset {
        name: format!("{stem}.{hex}.{extension}"),
        content_type,
        body,
    }
}

pub static STYLESHEET: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "app",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    )
});

pub static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "app",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    )
});

pub static ICON: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "icon",
        "svg",
        "image/svg+xml",
        include_bytes!("../assets/icon.svg"),
    )
});

/// `/static/<name>`: an asset by its digested name, kept for a year.
pub async fn serve(Path(name): Path<String>) -> Response {
    for asset in [&*STYLESHEET, &*SCRIPT, &*ICON] {
        if asset.name == name {
            let mut response = asset.body.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            return response;
        }
    }
    (StatusCode::NOT_FOUND, "no such file").into_response()
}
