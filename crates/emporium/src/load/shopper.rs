//! One shopper's session through the gateway's REST API: sign up or sign
//! in, look at the shop, fill a basket, check out, look at the orders,
//! cancel some; each request timed and recorded as a step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::stats::{Answer, Recorder};
use super::{Action, Plan};

/// The steps a session is made of, in the order a shopper meets them: the
/// report lists them so.
pub const STEPS: &[&str] = &[
    "register",
    "login",
    "categories",
    "browse",
    "search",
    "product",
    "stock",
    "recommendations",
    "basket_add",
    "basket_quantity",
    "basket",
    "checkout",
    "orders",
    "cancel",
];

/// The mock processor's test cards (crates/payment/src/provider.rs): the
/// first is approved, the others decline.
pub const APPROVED_CARD: &str = "4242424242424242";
pub const DECLINED_CARDS: &[&str] = &["4000000000000002", "4000000000009995"];

/// A small deterministic generator (SplitMix64): the same seed and session
/// number make the same choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// Exponentially distributed with mean `mean`, at most ten means.
    pub fn pause(&mut self, mean: Duration) -> Duration {
        let draw = -(1.0 - self.unit()).ln();
        mean.mul_f64(draw.min(10.0))
    }
}

/// An account made during the run, which a later session may sign in to.
#[derive(Clone)]
pub struct Account {
    email: String,
    password: String,
}

/// What every shopper shares.
pub struct Shop {
    pub http: reqwest::Client,
    /// The gateway, without a trailing slash.
    pub base: String,
    pub plan: Plan,
    pub recorder: Arc<Mutex<Recorder>>,
    pub deadline: Instant,
    pub stop: AtomicBool,
    /// Accounts no session is using now.
    pub idle_accounts: Mutex<Vec<Account>>,
    /// Words of product names, to search for.
    pub words: Vec<String>,
}

/// An answer: its status and JSON body (`Null` when none).
struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

struct Request<'a> {
    step: &'static str,
    method: Method,
    path: String,
    token: Option<&'a str>,
    body: Option<Value>,
    idempotency_key: Option<String>,
    /// 4xx statuses that are answers the shopper knows may come, not
    /// errors.
    expected: &'static [u16],
}

impl<'a> Request<'a> {
    fn get(step: &'static str, path: String, token: Option<&'a str>) -> Self {
        Request {
            step,
            method: Method::GET,
            path,
            token,
            body: None,
            idempotency_key: None,
            expected: &[],
        }
    }

    fn with(mut self, method: Method, body: Option<Value>) -> Self {
        self.method = method;
        self.body = body;
        self
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shop {
    /// Whether shoppers should start nothing new: the duration is over or
    /// the run was interrupted.
    pub fn over(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    pub fn record(&self, update: impl FnOnce(&mut Recorder)) {
        update(&mut lock(&self.recorder));
    }

    /// Sends one request and records it; `None` when no answer came.
    async fn send(&self, request: Request<'_>) -> Option<Reply> {
        let mut builder = self
            .http
            .request(request.method, format!("{}{}", self.base, request.path))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = request.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(key) = &request.idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let sent = Instant::now();
        let mut retry_after = None;
        let answered = match builder.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
                response.bytes().await.ok().map(|bytes| Reply {
                    status,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                })
            }
            Err(_) => None,
        };
        let latency = sent.elapsed();
        let answer = match &answered {
            None => Answer::Missing,
            Some(r) if r.status == 429 => Answer::Throttled,
            Some(r) if r.ok() || request.expected.contains(&r.status) => Answer::Expected(r.status),
            Some(r) => Answer::Unexpected(r.status),
        };
        self.record(|r| r.request(request.step, sent, latency, answer));
        if answer == Answer::Throttled {
            // As a browser's script would: wait as told (a second if not),
            // not hammer the edge with requests it refuses.
            let wait = Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 10));
            let left = self.deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(wait.min(left)).await;
        }
        answered
    }
}

/// One product as a listing shows it.
#[derive(Clone)]
struct Seen {
    id: String,
    sku: String,
}

/// What one shopper knows during its session.
struct Shopper<'a> {
    shop: &'a Shop,
    rng: Rng,
    session: u64,
    token: String,
    user_id: String,
    categories: Vec<String>,
    /// The products of the last listing looked at.
    seen: Vec<Seen>,
    /// The product page last opened.
    current: Option<Seen>,
    /// The basket's lines as its last answer gave them.
    basket: Vec<(String, i64)>,
    /// Confirmed orders of this account that it may still cancel.
    cancellable: Vec<String>,
    checkouts: u32,
}

/// Runs session number `session` to its end (or to the end of the run);
/// false when it could not sign on.
pub async fn session(shop: Arc<Shop>, session: u64) -> bool {
    shop.record(|r| {
        r.sessions.started += 1;
        r.sessions.active += 1;
    });
    let mut rng = Rng::new(shop.plan.seed, session);
    let known = if rng.chance(shop.plan.returning) {
        let mut idle = lock(&shop.idle_accounts);
        let at = rng.below(idle.len());
        (!idle.is_empty()).then(|| idle.swap_remove(at))
    } else {
        None
    };
    let returning = known.is_some();
    let account = match known {
        Some(account) => Some(account),
        None => sign_up(&shop, session).await,
    };
    let mut signed_on = false;
    if let Some(account) = account {
        if let Some(mut shopper) = sign_in(&shop, rng, session, &account, returning).await {
            signed_on = true;
            shopper.shop_around().await;
        }
        lock(&shop.idle_accounts).push(account);
    }
    shop.record(|r| {
        r.sessions.finished += 1;
        r.sessions.active -= 1;
    });
    signed_on
}

/// A new account, registered.
async fn sign_up(shop: &Shop, session: u64) -> Option<Account> {
    let account = Account {
        email: format!("shopper-{}-{session}@example.com", shop.plan.tag),
        password: format!("load {} {session} passphrase", shop.plan.tag),
    };
    let registration = json!({
        "email": account.email,
        "password": account.password,
        "name": format!("Shopper {session}"),
    });
    let reply = shop
        .send(
            Request::get("register", "/api/v1/users/register".into(), None)
                .with(Method::POST, Some(registration)),
        )
        .await?;
    reply.ok().then_some(account)
}

async fn sign_in<'a>(
    shop: &'a Shop,
    rng: Rng,
    session: u64,
    account: &Account,
    returning: bool,
) -> Option<Shopper<'a>> {
    let credentials = json!({ "email": account.email, "password": account.password });
    let reply = shop
        .send(
            Request::get("login", "/api/v1/users/login".into(), None)
                .with(Method::POST, Some(credentials)),
        )
        .await
        .filter(Reply::ok)?;
    let token = reply.body["access_token"].as_str()?.to_owned();
    let user_id = reply.body["user"]["id"].as_str()?.to_owned();
    shop.record(|r| {
        if returning {
            r.sessions.signed_in += 1;
        } else {
            r.sessions.signed_up += 1;
        }
    });
    let mut shopper = Shopper {
        shop,
        rng,
        session,
        token,
        user_id,
        categories: vec![],
        seen: vec![],
        current: None,
        basket: vec![],
        cancellable: vec![],
        checkouts: 0,
    };
    if returning {
        // What an earlier session left in the basket is still there.
        shopper.view_basket().await;
    }
    Some(shopper)
}

impl Shopper<'_> {
    async fn shop_around(&mut self) {
        let shop = self.shop;
        let reply = shop
            .send(Request::get(
                "categories",
                "/api/v1/categories".into(),
                None,
            ))
            .await;
        self.categories = reply
            .and_then(|r| r.body["items"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["slug"].as_str().map(str::to_owned))
            .collect();
        let (fewest, most) = shop.plan.actions;
        let actions = fewest + self.rng.below((most - fewest + 1) as usize) as u32;
        for _ in 0..actions {
            if shop.over() {
                return;
            }
            let pause = self.rng.pause(shop.plan.think);
            let left = shop.deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            if shop.over() {
                return;
            }
            match self.choose() {
                Action::Browse => self.browse().await,
                Action::Search => self.search().await,
                Action::Product => self.open_product().await,
                Action::Add => self.add_to_basket().await,
                Action::Quantity => self.change_quantity().await,
                Action::Checkout => self.checkout().await,
                Action::Orders => self.look_at_orders().await,
                Action::Cancel => self.cancel().await,
            }
        }
    }

    /// An action by the mix's weights, among those that make sense now.
    fn choose(&mut self) -> Action {
        let possible = |action: Action| match action {
            Action::Product | Action::Add => !self.seen.is_empty(),
            Action::Quantity | Action::Checkout => !self.basket.is_empty(),
            Action::Cancel => !self.cancellable.is_empty(),
            Action::Browse | Action::Search | Action::Orders => true,
        };
        let weights: Vec<(Action, u64)> = Action::ALL
            .iter()
            .map(|&a| {
                (
                    a,
                    if possible(a) {
                        self.shop.plan.mix.weight(a)
                    } else {
                        0
                    },
                )
            })
            .collect();
        let total: u64 = weights.iter().map(|w| w.1).sum();
        if total == 0 {
            return Action::Browse;
        }
        let mut draw = self.rng.next_u64() % total;
        for (action, weight) in weights {
            if draw < weight {
                return action;
            }
            draw -= weight;
        }
        Action::Browse
    }

    fn remember_listing(&mut self, reply: Option<Reply>) {
        let items: Vec<Seen> = reply
            .filter(Reply::ok)
            .and_then(|r| r.body["items"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                Some(Seen {
                    id: p["id"].as_str()?.to_owned(),
                    sku: p["sku"].as_str()?.to_owned(),
                })
            })
            .collect();
        if !items.is_empty() {
            self.seen = items;
        }
    }

    async fn browse(&mut self) {
        let category = self.rng.pick(&self.categories).cloned();
        let sort = *self
            .rng
            .pick(&["newest", "price", "-price", "name"])
            .unwrap_or(&"newest");
        let page = 1 + self.rng.below(2);
        let mut path = format!("/api/v1/products?per_page=12&page={page}&sort={sort}");
        if let Some(category) = category {
            path.push_str(&format!("&category={category}"));
        }
        let reply = self.shop.send(Request::get("browse", path, None)).await;
        self.remember_listing(reply);
    }

    async fn search(&mut self) {
        let word = self
            .rng
            .pick(&self.shop.words)
            .cloned()
            .unwrap_or_else(|| "coffee".into());
        let path = format!("/api/v1/products?per_page=12&q={word}");
        let reply = self.shop.send(Request::get("search", path, None)).await;
        self.remember_listing(reply);
    }

    async fn open_product(&mut self) {
        let Some(product) = self.rng.pick(&self.seen).cloned() else {
            return;
        };
        let shop = self.shop;
        let reply = shop
            .send(Request::get(
                "product",
                format!("/api/v1/products/{}", product.id),
                None,
            ))
            .await;
        if !reply.is_some_and(|r| r.ok()) {
            return;
        }
        // The product page shows what is in stock and what goes with it.
        shop.send(Request::get(
            "stock",
            format!("/api/v1/inventory/{}", product.sku),
            None,
        ))
        .await;
        shop.send(Request::get(
            "recommendations",
            format!("/api/v1/recommendations?product_id={}", product.id),
            None,
        ))
        .await;
        self.current = Some(product);
    }

    fn remember_basket(&mut self, reply: &Reply) {
        if let Some(items) = reply.body["items"].as_array() {
            self.basket = items
                .iter()
                .filter_map(|i| {
                    Some((
                        i["product_id"].as_str()?.to_owned(),
                        i["quantity"].as_i64()?,
                    ))
                })
                .collect();
        }
    }

    async fn add_to_basket(&mut self) {
        let product = match self.current.take() {
            Some(p) => p,
            None => match self.rng.pick(&self.seen) {
                Some(p) => p.clone(),
                None => return,
            },
        };
        let quantity = 1 + self.rng.below(2) as i64;
        let held = self
            .basket
            .iter()
            .find(|(id, _)| *id == product.id)
            .map_or(0, |l| l.1);
        if held + quantity > 5 {
            return;
        }
        let path = format!("/api/v1/baskets/{}/items", self.user_id);
        let body = json!({ "product_id": product.id, "quantity": quantity });
        let reply = self
            .shop
            .send(
                Request::get("basket_add", path, Some(&self.token)).with(Method::POST, Some(body)),
            )
            .await;
        if let Some(reply) = reply.filter(Reply::ok) {
            self.remember_basket(&reply);
        }
    }

    async fn change_quantity(&mut self) {
        let Some((product, held)) = self.rng.pick(&self.basket).cloned() else {
            return;
        };
        // Mostly one more or one fewer; sometimes the line goes.
        let quantity = if self.rng.chance(0.15) {
            0
        } else if held > 1 && self.rng.chance(0.5) {
            held - 1
        } else {
            (held + 1).min(5)
        };
        let path = format!("/api/v1/baskets/{}/items/{product}", self.user_id);
        let mut request = Request::get("basket_quantity", path, Some(&self.token))
            .with(Method::PUT, Some(json!({ "quantity": quantity })));
        // A confirmed order takes its lines out of the basket when its
        // event arrives, which may be after this shopper last looked.
        request.expected = &[404];
        match self.shop.send(request).await {
            Some(reply) if reply.ok() => self.remember_basket(&reply),
            Some(reply) if reply.status == 404 => self.basket.retain(|(id, _)| *id != product),
            _ => {}
        }
    }

    async fn view_basket(&mut self) {
        let path = format!("/api/v1/baskets/{}", self.user_id);
        let reply = self
            .shop
            .send(Request::get("basket", path, Some(&self.token)))
            .await;
        if let Some(reply) = reply.filter(Reply::ok) {
            self.remember_basket(&reply);
        }
    }

    async fn checkout(&mut self) {
        self.view_basket().await;
        if self.basket.is_empty() {
            return;
        }
        let card = if self.rng.chance(self.shop.plan.declined) {
            self.rng
                .pick(DECLINED_CARDS)
                .copied()
                .unwrap_or(APPROVED_CARD)
        } else {
            APPROVED_CARD
        };
        self.checkouts += 1;
        let mut request = Request::get("checkout", "/api/v1/orders".into(), Some(&self.token))
            .with(Method::POST, Some(json!({ "card_number": card })));
        request.idempotency_key = Some(format!(
            "load-{}-{}-{}",
            self.shop.plan.tag, self.session, self.checkouts
        ));
        // The basket emptied by a confirmed order's event meanwhile.
        request.expected = &[422];
        let reply = self.shop.send(request).await;
        let outcome = Outcome::of(reply.as_ref());
        if let Outcome::Confirmed(id) = &outcome {
            self.cancellable.push(id.clone());
            // Its lines leave the basket when the order's event arrives.
            self.basket.clear();
        }
        self.shop.record(|r| outcome.record(&mut r.checkouts));
    }

    async fn look_at_orders(&mut self) {
        let reply = self
            .shop
            .send(Request::get(
                "orders",
                "/api/v1/orders?per_page=10".into(),
                Some(&self.token),
            ))
            .await;
        if let Some(items) = reply
            .filter(Reply::ok)
            .and_then(|r| r.body["items"].as_array().cloned())
        {
            self.cancellable = items
                .iter()
                .filter(|o| o["status"] == "confirmed")
                .filter_map(|o| o["id"].as_str().map(str::to_owned))
                .collect();
        }
    }

    async fn cancel(&mut self) {
        if self.cancellable.is_empty() {
            return;
        }
        let id = self
            .cancellable
            .swap_remove(self.rng.below(self.cancellable.len()));
        let reply = self
            .shop
            .send(
                Request::get("cancel", format!("/api/v1/orders/{id}"), Some(&self.token))
                    .with(Method::DELETE, None),
            )
            .await;
        if reply.is_some_and(|r| r.ok() && r.body["status"] == "cancelled") {
            self.shop.record(|r| r.checkouts.cancelled += 1);
        }
    }
}

/// How one checkout ended, from its answer.
#[derive(Debug, PartialEq)]
enum Outcome {
    Confirmed(String),
    Failed(String),
    /// Refused before an order was made, with the problem's detail.
    Refused(String),
    /// The edge's rate limit: not a checkout at all.
    Throttled,
    Unsettled(String),
}

impl Outcome {
    fn of(reply: Option<&Reply>) -> Self {
        let Some(reply) = reply else {
            return Outcome::Unsettled("no answer".into());
        };
        let order = &reply.body;
        let reason = order["failure_reason"].as_str().unwrap_or_default();
        match reply.status {
            200..=299 => match order["status"].as_str() {
                Some("confirmed") => {
                    Outcome::Confirmed(order["id"].as_str().unwrap_or_default().into())
                }
                Some("failed") if !reason.trim().is_empty() => Outcome::Failed(reason_kind(reason)),
                other => Outcome::Unsettled(format!(
                    "order {} answered {} with status {other:?} and reason {reason:?}",
                    order["id"], reply.status
                )),
            },
            429 => Outcome::Throttled,
            400..=499 => Outcome::Refused(format!(
                "{} {}",
                reply.status,
                order["detail"].as_str().unwrap_or("(no detail)")
            )),
            status => Outcome::Unsettled(format!(
                "{status}: {}",
                order["detail"].as_str().unwrap_or("(no detail)")
            )),
        }
    }

    fn record(&self, checkouts: &mut super::stats::Checkouts) {
        match self {
            Outcome::Confirmed(_) => checkouts.confirmed += 1,
            Outcome::Failed(reason) => *checkouts.failed.entry(reason.clone()).or_default() += 1,
            Outcome::Refused(detail) => *checkouts.refused.entry(detail.clone()).or_default() += 1,
            Outcome::Throttled => {}
            Outcome::Unsettled(what) => {
                checkouts.unsettled += 1;
                if checkouts.unsettled_examples.len() < 10 {
                    checkouts.unsettled_examples.push(what.clone());
                }
            }
        }
    }
}

/// A failure reason with what differs from order to order (SKUs, counts,
/// ids) left out, so that reasons of one kind count together.
fn reason_kind(reason: &str) -> String {
    let mut kind = String::with_capacity(reason.len());
    let mut in_number = false;
    for c in reason.chars().take(160) {
        if c.is_ascii_digit() {
            if !in_number {
                kind.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            kind.push(c);
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: Value) -> Reply {
        Reply { status, body }
    }

    #[test]
    fn a_checkout_is_settled_only_when_confirmed_or_failed_with_a_reason() {
        let confirmed = reply(201, json!({"id": "o1", "status": "confirmed"}));
        assert_eq!(
            Outcome::of(Some(&confirmed)),
            Outcome::Confirmed("o1".into())
        );
        let declined = reply(
            201,
            json!({"id": "o2", "status": "failed", "failure_reason": "payment failed: declined"}),
        );
        assert_eq!(
            Outcome::of(Some(&declined)),
            Outcome::Failed("payment failed: declined".into())
        );
        for unsettled in [
            reply(
                201,
                json!({"id": "o3", "status": "failed", "failure_reason": ""}),
            ),
            reply(201, json!({"id": "o4", "status": "pending"})),
            reply(503, json!({"detail": "ordering unavailable"})),
        ] {
            assert!(
                matches!(Outcome::of(Some(&unsettled)), Outcome::Unsettled(_)),
                "{}",
                unsettled.body
            );
        }
        assert!(matches!(Outcome::of(None), Outcome::Unsettled(_)));
        assert_eq!(
            Outcome::of(Some(&reply(422, json!({"detail": "the basket is empty"})))),
            Outcome::Refused("422 the basket is empty".into())
        );
        assert_eq!(
            Outcome::of(Some(&reply(429, Value::Null))),
            Outcome::Throttled
        );
    }

    #[test]
    fn reasons_of_one_kind_count_together() {
        assert_eq!(
            reason_kind("out of stock: KIT-001 has 3 of 5"),
            "out of stock: KIT-# has # of #"
        );
    }

    #[test]
    fn the_same_seed_makes_the_same_choices() {
        let draws = |seed, stream| {
            let mut rng = Rng::new(seed, stream);
            (0..8).map(|_| rng.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7, 3), draws(7, 3));
        assert_ne!(draws(7, 3), draws(7, 4));
        assert_ne!(draws(7, 3), draws(8, 3));
        let mut rng = Rng::new(1, 1);
        let mean = Duration::from_millis(100);
        let total: Duration = (0..2000).map(|_| rng.pause(mean)).sum();
        let average = total.as_secs_f64() / 2000.0;
        assert!((0.08..0.12).contains(&average), "{average}");
    }
}
