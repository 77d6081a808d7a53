//! The pages of a signed-in shopper: sign in and out, register, basket,
//! checkout, orders. Every form posts and redirects (no JavaScript needed),
//! carries the CSRF token of its cookie, and keeps what was typed when the
//! answer is a refusal.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Answer, Call};
use crate::pages::AppState;
use crate::sessions::{self, SESSION_COOKIE, Shared};
use crate::shelves::Missing;

/// The mock processor's test cards, named on the checkout page.
pub const TEST_CARDS: &[(&str, &str)] = &[
    ("4242 4242 4242 4242", "is accepted"),
    ("4000 0000 0000 0002", "is declined"),
    ("4000 0000 0000 9995", "has no funds"),
    ("4000 0000 0000 0119", "fails at the processor"),
];

/// Where a form sends the shopper next: a path of this site only.
fn next_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn with_cookie(mut response: Response, value: HeaderValue) -> Response {
    response.headers_mut().append(header::SET_COOKIE, value);
    response
}

/// The signed-in shopper's session, its live access token and id; or the
/// answer that sends them to sign in.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    back: &str,
) -> Result<(Shared, String, String), Response> {
    let to_sign_in = || see_other(&format!("/signin?next={}", crate::views::encode(back)));
    let Some((id, session)) = state.sessions.of(headers) else {
        return Err(to_sign_in());
    };
    match sessions::access(&session, &state.api, client).await {
        Ok((token, user)) => Ok((session, token, user)),
        Err(Ok(_ended)) => {
            state.sessions.end(&id);
            Err(with_cookie(
                to_sign_in(),
                sessions::clear_cookie(SESSION_COOKIE),
            ))
        }
        Err(Err(missing)) => Err(state.problem(headers, missing).await),
    }
}

/// Whether a form's CSRF token holds; a page saying so when not.
pub(crate) async fn check_csrf(
    state: &AppState,
    headers: &HeaderMap,
    sent: Option<&str>,
) -> Result<(), Response> {
    if sessions::csrf_holds(headers, sent) {
        return Ok(());
    }
    Err(state
        .problem(
            headers,
            Missing::Refused(
                "This form has expired or did not come from this shop. Please try again.".into(),
            ),
        )
        .await
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn signin_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    state
        .render(
            &headers,
            StatusCode::OK,
            "signin.html",
            json!({ "next": next_path(query.next.as_deref()), "email": "", "error": null }),
        )
        .await
}

#[derive(Debug, Default, Deserialize)]
pub struct SigninForm {
    email: Option<String>,
    password: Option<String>,
    next: Option<String>,
    csrf: Option<String>,
}

/// Opens a session for the tokens and sends the shopper on.
fn opened(state: &AppState, tokens: &Value, next: &str) -> Response {
    match state.sessions.open(tokens) {
        Some((id, lasts)) => with_cookie(
            see_other(next),
            sessions::set_cookie(SESSION_COOKIE, &id, lasts),
        ),
        None => see_other("/signin"),
    }
}

pub async fn signin(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<SigninForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(refused) = check_csrf(&state, &headers, form.csrf.as_deref()).await {
        return refused;
    }
    let next = next_path(form.next.as_deref());
    let email = form.email.unwrap_or_default();
    let answer = state
        .api
        .call(Call {
            method: Method::POST,
            path: "/api/v1/users/login",
            token: None,
            body: Some(json!({ "email": email, "password": form.password.unwrap_or_default() })),
            raw: None,
            client,
            idempotency_key: None,
        })
        .await;
    let error = match answer {
        Ok(answer) if answer.status.is_success() => return opened(&state, &answer.body, &next),
        Ok(answer) if answer.status == StatusCode::UNAUTHORIZED => {
            "The email or password is wrong.".to_owned()
        }
        Ok(answer) if answer.status == StatusCode::TOO_MANY_REQUESTS => {
            format!("Too many attempts. {}", answer.message())
        }
        Ok(answer) => answer.message(),
        Err(missing) => return state.problem(&headers, missing).await,
    };
    state
        .render(
            &headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            "signin.html",
            json!({ "next": next, "email": email, "error": error }),
        )
        .await
}

pub async fn register_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state
        .render(
            &headers,
            StatusCode::OK,
            "register.html",
            json!({
                "form": { "email": "", "name": "" },
                "errors": { "email": null, "name": null, "password": null },
                "error": null,
            }),
        )
        .await
}

#[derive(Debug, Default, Deserialize)]
pub struct RegisterForm {
    email: Option<String>,
    name: Option<String>,
    password: Option<String>,
    csrf: Option<String>,
}

pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<RegisterForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(refused) = check_csrf(&state, &headers, form.csrf.as_deref()).await {
        return refused;
    }
    let (email, name, password) = (
        form.email.unwrap_or_default(),
        form.name.unwrap_or_default(),
        form.password.unwrap_or_default(),
    );
    let call = |path: &'static str, body: Value| {
        state.api.call(Call {
            method: Method::POST,
            path,
            token: None,
            body: Some(body),
            raw: None,
            client,
            idempotency_key: None,
        })
    };
    let registered = call(
        "/api/v1/users/register",
        json!({ "email": email, "name": name, "password": password }),
    )
    .await;
    let refusal: Answer = match registered {
        Ok(answer) if answer.status.is_success() => {
            match call(
                "/api/v1/users/login",
                json!({ "email": email, "password": password }),
            )
            .await
            {
                Ok(signed) if signed.status.is_success() => {
                    return opened(&state, &signed.body, "/");
                }
                // Registered, as an address already taken answers alike;
                // the shopper signs in, or learns it was taken.
                Ok(_) => return see_other("/signin?next=/"),
                Err(missing) => return state.problem(&headers, missing).await,
            }
        }
        Ok(answer) => answer,
        Err(missing) => return state.problem(&headers, missing).await,
    };
    let errors = json!({
        "email": refusal.field("email"),
        "name": refusal.field("name"),
        "password": refusal.field("password"),
    });
    state
        .render(
            &headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            "register.html",
            json!({ "form": { "email": email, "name": name }, "errors": errors, "error": refusal.message() }),
        )
        .await
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

pub async fn signout(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(refused) = check_csrf(&state, &headers, form.csrf.as_deref()).await {
        return refused;
    }
    if let Some((id, _)) = state.sessions.of(&headers)
        && let Some(session) = state.sessions.end(&id)
    {
        // Ends the refresh family at identity: the token is no use to
        // anyone who copied it.
        let refresh = session.lock().await.refresh_token().to_owned();
        let _ = state
            .api
            .call(Call {
                method: Method::POST,
                path: "/api/v1/auth/logout",
                token: None,
                body: Some(json!({ "refresh_token": refresh })),
                raw: None,
                client,
                idempotency_key: None,
            })
            .await;
    }
    with_cookie(see_other("/"), sessions::clear_cookie(SESSION_COOKIE))
}

/// What a page asks of the API besides the path.
pub(crate) struct Ask<'a> {
    pub(crate) method: Method,
    pub(crate) body: Option<Value>,
    pub(crate) idempotency_key: Option<&'a str>,
}

impl Ask<'_> {
    pub(crate) fn get() -> Self {
        Self {
            method: Method::GET,
            body: None,
            idempotency_key: None,
        }
    }
}

/// A call with the shopper's token, the page's way: the answer, or the
/// page that says why there is none.
pub(crate) async fn as_shopper(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    back: &str,
    ask: Ask<'_>,
    path: impl FnOnce(&str) -> String,
) -> Result<(Answer, String), Response> {
    let (_, token, user) = signed_in(state, headers, client, back).await?;
    let path = path(&user);
    let answer = state
        .api
        .call(Call {
            method: ask.method,
            path: &path,
            token: Some(&token),
            body: ask.body,
            raw: None,
            client,
            idempotency_key: ask.idempotency_key,
        })
        .await;
    match answer {
        Ok(answer) => Ok((answer, user)),
        Err(missing) => Err(state.problem(headers, missing).await),
    }
}

/// The page of a read: `template` with `context` made of the answer's
/// body, or the page that says why there is none.
pub(crate) async fn shown(
    state: &AppState,
    headers: &HeaderMap,
    read: Result<(Answer, String), Response>,
    status: StatusCode,
    template: &str,
    context: impl FnOnce(Value) -> Value,
) -> Response {
    match read {
        Ok((answer, _)) if answer.status.is_success() => {
            state
                .render(headers, status, template, context(answer.body))
                .await
        }
        Ok((answer, _)) => {
            state
                .problem(headers, Missing::Refused(answer.message()))
                .await
        }
        Err(response) => response,
    }
}

pub async fn basket(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let read = as_shopper(&state, &headers, client, "/basket", Ask::get(), |me| {
        format!("/api/v1/baskets/{me}")
    })
    .await;
    shown(
        &state,
        &headers,
        read,
        StatusCode::OK,
        "basket.html",
        |basket| json!({ "basket": basket, "error": null }),
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct LineForm {
    product_id: Option<String>,
    quantity: Option<String>,
    csrf: Option<String>,
}

/// A quantity as typed: a whole number from `least` to 99.
fn quantity(raw: Option<&str>, least: i64) -> Option<i64> {
    raw.unwrap_or("1")
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|q| (least..=99).contains(q))
}

/// The basket page again with a message, after a refused change.
async fn basket_with(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    error: String,
) -> Response {
    let read = as_shopper(state, headers, client, "/basket", Ask::get(), |me| {
        format!("/api/v1/baskets/{me}")
    })
    .await;
    shown(
        state,
        headers,
        read,
        StatusCode::UNPROCESSABLE_ENTITY,
        "basket.html",
        |basket| json!({ "basket": basket, "error": error }),
    )
    .await
}

pub async fn add_to_basket(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LineForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(refused) = check_csrf(&state, &headers, form.csrf.as_deref()).await {
        return refused;
    }
    let product = form.product_id.unwrap_or_default();
    let back = if uuid::Uuid::parse_str(&product).is_ok() {
        format!("/products/{product}")
    } else {
        "/".to_owned()
    };
    let Some(quantity) = quantity(form.quantity.as_deref(), 1) else {
        return state
            .problem(
                &headers,
                Missing::Refused("A quantity is a whole number from 1 to 99.".into()),
            )
            .await;
    };
    let added = as_shopper(
        &state,
        &headers,
        client,
        &back,
        Ask {
            method: Method::POST,
            body: Some(json!({ "product_id": product, "quantity": quantity })),
            idempotency_key: None,
        },
        |me| format!("/api/v1/baskets/{me}/items"),
    )
    .await;
    match added {
        Ok((answer, _)) if answer.status.is_success() => see_other("/basket"),
        Ok((answer, _)) => basket_with(&state, &headers, client, answer.message()).await,
        Err(response) => response,
    }
}

pub async fn change_line(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(product): Path<String>,
    form: Result<Form<LineForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(refused) = check_csrf(&state, &headers, form.csrf.as_deref()).await {
        return refused;
    }
    if uuid::Uuid::parse_str(&product).is_err() {
        return state.problem(&headers, Missing::NotFound).await;
    }
    let Some(quantity) = quantity(form.quantity.as_deref(), 0) else {
        return basket_with(
            &state,
            &headers,
            client,
            "A quantity is a whole number from 0 to 99.".into(),
        )
        .await;
    };
    let (method, body) = match quantity {
        0 => (Method::DELETE, None),
        n => (Method::PUT, Some(json!({ "quantity": n }))),
    };
    let changed = as_shopper(
        &state,
        &headers,
        client,
        "/basket",
        Ask {
            method,
            body,
            idempotency_key: None,
        },
        |me| format!("/api/v1/baskets/{me}/items/{product}"),
    )
    .await;
    match changed {
        Ok((answer, _)) if answer.status.is_success() => see_other("/basket"),
        Ok((answer, _)) => basket_with(&state, &headers, client, answer.message()).await,
        Err(response) => response,
    }
}

pub async fn checkout_page(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let read = as_shopper(&state, &headers, client, "/checkout", Ask::get(), |me| {
        format!("/api/v1/baskets/{me}")
    })
    .await;
    shown(&state, &headers, read, StatusCode::OK, "checkout.html", |basket| {
        json!({ "basket": basket, "cards": TEST_CARDS, "error": null, "key": sessions::random_token() })
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct CheckoutForm {
    card_number: Option<String>,
    key: Option<String>,
    csrf: Option<String>,
}

pub async fn checkout(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<CheckoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(refused) = check_csrf(&state, &headers, form.csrf.as_deref()).await {
        return refused;
    }
    // The form's own key: a second press of "Pay" is the same order.
    let key = form.key.filter(|k| !k.is_empty() && k.len() <= 64);
    let card: String = form
        .card_number
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let placed = as_shopper(
        &state,
        &headers,
        client,
        "/checkout",
        Ask {
            method: Method::POST,
            body: Some(json!({ "card_number": card })),
            idempotency_key: key.as_deref(),
        },
        |_| "/api/v1/orders".to_owned(),
    )
    .await;
    let answer = match placed {
        Ok((answer, _)) => answer,
        Err(response) => return response,
    };
    let order = &answer.body;
    let error = match (answer.status.is_success(), order["status"].as_str()) {
        (true, Some("confirmed")) => {
            return see_other(&format!(
                "/orders/{}",
                order["id"].as_str().unwrap_or_default()
            ));
        }
        (true, _) => format!(
            "The payment did not go through: {}. Nothing was charged, and your basket is as it was.",
            in_words(order["failure_reason"].as_str().unwrap_or_default())
        ),
        (false, _) => answer.message(),
    };
    // The checkout page again, the basket as it stands and the message.
    let read = as_shopper(&state, &headers, client, "/checkout", Ask::get(), |me| {
        format!("/api/v1/baskets/{me}")
    })
    .await;
    let basket = match read {
        Ok((answer, _)) => answer.body,
        Err(response) => return response,
    };
    state
        .render(
            &headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            "checkout.html",
            json!({ "basket": basket, "cards": TEST_CARDS, "error": error, "key": sessions::random_token() }),
        )
        .await
}

/// A failed order's reason as a shopper reads it.
fn in_words(reason: &str) -> &'static str {
    if reason.contains("card_declined") {
        "the card was declined"
    } else if reason.contains("insufficient_funds") {
        "the card has no funds for it"
    } else if reason.contains("stock") {
        "some of it is no longer in stock"
    } else {
        "the order could not be completed"
    }
}

pub async fn orders(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let read = as_shopper(&state, &headers, client, "/orders", Ask::get(), |_| {
        "/api/v1/orders?per_page=50".to_owned()
    })
    .await;
    shown(
        &state,
        &headers,
        read,
        StatusCode::OK,
        "orders.html",
        |orders| json!({ "orders": orders }),
    )
    .await
}

pub async fn order(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if uuid::Uuid::parse_str(&id).is_err() {
        return state.problem(&headers, Missing::NotFound).await;
    }
    let back = format!("/orders/{id}");
    let (session, token, _) = match signed_in(&state, &headers, client, &back).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    drop(session);
    let answer = state
        .api
        .call(Call {
            method: Method::GET,
            path: &format!("/api/v1/orders/{id}"),
            token: Some(&token),
            body: None,
            raw: None,
            client,
            idempotency_key: None,
        })
        .await;
    match answer {
        Ok(answer) if answer.status.is_success() => {
            // The page's script opens the live socket with this token;
            // it lives five minutes and the script renews it by reloading.
            state
                .render(
                    &headers,
                    StatusCode::OK,
                    "order.html",
                    json!({ "order": answer.body, "socket_token": token }),
                )
                .await
        }
        // Another's order answers as one that is not there (decision 0021).
        Ok(answer)
            if answer.status == StatusCode::NOT_FOUND || answer.status == StatusCode::FORBIDDEN =>
        {
            state.problem(&headers, Missing::NotFound).await
        }
        Ok(answer) => {
            state
                .problem(&headers, Missing::Refused(answer.message()))
                .await
        }
        Err(missing) => state.problem(&headers, missing).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_sends_the_shopper_only_to_a_path_of_this_site() {
        assert_eq!(next_path(Some("/orders/1")), "/orders/1");
        for elsewhere in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "orders",
        ] {
            assert_eq!(next_path(Some(elsewhere)), "/", "{elsewhere}");
        }
        assert_eq!(next_path(None), "/");
        assert_eq!(quantity(Some("3"), 1), Some(3));
        assert_eq!(quantity(Some("0"), 1), None);
        assert_eq!(quantity(Some("0"), 0), Some(0));
        assert_eq!(quantity(Some("100"), 0), None);
        assert_eq!(quantity(Some("x"), 0), None);
    }
}
