//! A product's pictures: the form's file, posted as multipart, passed on
//! to the catalog as the bytes it takes; a refusal shown beside the file
//! box on the product's page.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;

use super::products::{Said, product_id, product_page};
use crate::account::check_csrf;
use crate::api::{Call, Raw};
use crate::pages::AppState;
use crate::shelves::Missing;
use crate::views::encode;

/// The largest image form taken: the catalog's largest image (5 MiB unless
/// configured otherwise, and the gateway's upload limit) with the form
/// around it; the catalog says no to anything larger than it takes.
const UPLOAD_LIMIT: usize = 6 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/admin/products/{id}/images",
        post(upload).layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
    )
}

/// An upload form as it came: its CSRF token and the picture's bytes and
/// content type.
struct Upload {
    csrf: Option<String>,
    image: axum::body::Bytes,
    content_type: String,
}

/// Reads the form's parts; the status and words of a form that cannot be
/// read.
async fn upload_form(mut multipart: Multipart) -> Result<Upload, (StatusCode, String)> {
    let unreadable = |e: MultipartError| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "That file is larger than the shop takes: pictures of up to 5 MB, please.".to_owned(),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "The form could not be read; please choose the file again.".to_owned(),
        ),
    };
    let mut upload = Upload {
        csrf: None,
        image: axum::body::Bytes::new(),
        content_type: String::new(),
    };
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        match field.name() {
            Some("csrf") => upload.csrf = Some(field.text().await.map_err(unreadable)?),
            Some("image") => {
                // The catalog takes `image/*` and reads the format from
                // the bytes themselves.
                upload.content_type = match field.content_type() {
                    Some(kind) if kind.starts_with("image/") => kind.to_owned(),
                    _ => "application/octet-stream".to_owned(),
                };
                upload.image = field.bytes().await.map_err(unreadable)?;
            }
            _ => {}
        }
    }
    Ok(upload)
}

async fn upload(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let back = format!("/admin/products/{id}");
    let form = match multipart {
        Ok(multipart) => upload_form(multipart).await,
        Err(_) => Err((
            StatusCode::BAD_REQUEST,
            "Please send the picture with the form on the product's page.".to_owned(),
        )),
    };
    let upload = match form {
        Ok(upload) => upload,
        Err((status, words)) => {
            if let Err(response) = product_id(&state, &headers, &id).await {
                return response;
            }
            let said = Said::upload(words, status);
            return product_page(&state, &headers, client, Some(&id), None, said).await;
        }
    };
    if let Err(refused) = check_csrf(&state, &headers, upload.csrf.as_deref()).await {
        return refused;
    }
    if let Err(response) = product_id(&state, &headers, &id).await {
        return response;
    }
    if upload.image.is_empty() {
        let said = Said::upload(
            "Choose a picture to upload first.".into(),
            StatusCode::BAD_REQUEST,
        );
        return product_page(&state, &headers, client, Some(&id), None, said).await;
    }
    let Some((_, session)) = state.sessions.of(&headers) else {
        return Redirect::to(&format!("/signin?next={}", encode(&back))).into_response();
    };
    let token = match crate::sessions::access(&session, &state.api, client).await {
        Ok((token, _)) => token,
        Err(Ok(_ended)) => {
            return Redirect::to(&format!("/signin?next={}", encode(&back))).into_response();
        }
        Err(Err(missing)) => return state.problem(&headers, missing).await,
    };
    let answer = state
        .api
        .call(Call {
            method: Method::POST,
            path: &format!("/api/v1/products/{id}/images"),
            token: Some(&token),
            body: None,
            raw: Some(Raw {
                bytes: upload.image,
                content_type: &upload.content_type,
            }),
            client,
            idempotency_key: None,
        })
        .await;
    match answer {
        Ok(answer) if answer.status.is_success() => {
            Redirect::to(&format!("{back}?done=uploaded")).into_response()
        }
        Ok(answer) if answer.status == StatusCode::NOT_FOUND => {
            state.problem(&headers, Missing::NotFound).await
        }
        Ok(answer) => {
            let said = Said::upload(answer.message(), answer.status);
            product_page(&state, &headers, client, Some(&id), None, said).await
        }
        Err(missing) => state.problem(&headers, missing).await,
    }
}
