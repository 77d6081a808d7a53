//! The public routes of the shop: which service serves each, who may pass,
//! which rate limits it counts against.

/// Who may pass a route. The gateway turns away callers early; the service
/// checks again (it trusts no header a client could send).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    Public,
    /// Any signed-in user.
    Customer,
    Admin,
    /// Reads for everyone, writes for admins.
    ReadPublicWriteAdmin,
}

/// Which rate limits a route counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    /// Sign-in, registration and tokens: few per address, whoever asks.
    Auth,
    Api,
}

impl Group {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Group::Auth => "auth",
            Group::Api => "api",
        }
    }
}

/// One public route: the service behind it, who may pass, its rate-limit
/// group, and whether it takes uploads (the larger body limit and a longer
/// timeout).
pub(crate) struct Route {
    pub(crate) service: &'static str,
    pub(crate) path: &'static str,
    pub(crate) policy: Policy,
    pub(crate) group: Group,
    pub(crate) upload: bool,
}

const fn route(service: &'static str, path: &'static str, policy: Policy) -> Route {
    Route {
        service,
        path,
        policy,
        group: Group::Api,
        upload: false,
    }
}

const fn auth(path: &'static str) -> Route {
    Route {
        group: Group::Auth,
        ..route("identity", path, Policy::Public)
    }
}

/// Services a gateway may run without: an API-only gateway serves no pages.
pub(crate) const OPTIONAL: &[&str] = &["storefront"];

/// Every public route of the shop.
pub(crate) const ROUTES: &[Route] = &[
    auth("/api/v1/users/register"),
    auth("/api/v1/users/login"),
    auth("/api/v1/auth/refresh"),
    auth("/api/v1/auth/logout"),
    route("identity", "/api/v1/users/me", Policy::Customer),
    route("identity", "/api/v1/users/{id}", Policy::Customer),
    route("identity", "/api/v1/users", Policy::Admin),
    route("identity", "/.well-known/jwks.json", Policy::Public),
    route("catalog", "/api/v1/products", Policy::ReadPublicWriteAdmin),
    route(
        "catalog",
        "/api/v1/products/{id}",
        Policy::ReadPublicWriteAdmin,
    ),
    Route {
        upload: true,
        ..route("catalog", "/api/v1/products/{id}/images", Policy::Admin)
    },
    route(
        "catalog",
        "/api/v1/products/{id}/images/{name}",
        Policy::Public,
    ),
    route(
        "catalog",
        "/api/v1/categories",
        Policy::ReadPublicWriteAdmin,
    ),
    route("inventory", "/api/v1/inventory", Policy::Admin),
    route("inventory", "/api/v1/inventory/alerts", Policy::Admin),
    route("inventory", "/api/v1/inventory/adjust", Policy::Admin),
    route("inventory", "/api/v1/inventory/reserve", Policy::Admin),
    route("inventory", "/api/v1/inventory/release", Policy::Admin),
    route("inventory", "/api/v1/inventory/{sku}", Policy::Public),
    route(
        "inventory",
        "/api/v1/inventory/{sku}/movements",
        Policy::Admin,
    ),
    route("basket", "/api/v1/baskets", Policy::Customer),
    route("basket", "/api/v1/baskets/{user_id}", Policy::Customer),
    route(
        "basket",
        "/api/v1/baskets/{user_id}/items",
        Policy::Customer,
    ),
    route(
        "basket",
        "/api/v1/baskets/{user_id}/items/{product_id}",
        Policy::Customer,
    ),
    route("payment", "/api/v1/payments", Policy::Customer),
    route("payment", "/api/v1/payments/provider", Policy::Admin),
    route(
        "payment",
        "/api/v1/payments/order/{order_id}",
        Policy::Customer,
    ),
    route("payment", "/api/v1/payments/{id}", Policy::Customer),
    route("payment", "/api/v1/payments/{id}/process", Policy::Customer),
    route("payment", "/api/v1/payments/{id}/cancel", Policy::Customer),
    route("payment", "/api/v1/payments/{id}/refund", Policy::Admin),
    route("payment", "/api/v1/users/{id}/payments", Policy::Customer),
    route("ordering", "/api/v1/orders", Policy::Customer),
    route("ordering", "/api/v1/orders/{id}", Policy::Customer),
    route("recommendation", "/api/v1/recommendations", Policy::Public),
    route(
        "recommendation",
        "/api/v1/recommendations/me",
        Policy::Customer,
    ),
    route("notification", "/api/v1/notifications", Policy::Customer),
    route("notification", "/api/v1/notifications/send", Policy::Admin),
    route(
        "notification",
        "/api/v1/notifications/{id}",
        Policy::Customer,
    ),
    // Live order status: a WebSocket handshake, joined to notification's
    // socket once it answers 101 (see `websocket.rs`). Admitted here as any
    // signed-in user; notification checks the token again, and keeps
    // checking it for as long as the socket lives.
    route("notification", "/ws", Policy::Customer),
    // The shop's pages, at the root.
    route("storefront", "/", Policy::Public),
    route("storefront", "/products", Policy::Public),
    route("storefront", "/products/{id}", Policy::Public),
    route("storefront", "/static/{name}", Policy::Public),
    // A shopper's pages; the storefront signs them in with its own session.
    route("storefront", "/signin", Policy::Public),
    route("storefront", "/register", Policy::Public),
    route("storefront", "/signout", Policy::Public),
    route("storefront", "/basket", Policy::Public),
    route("storefront", "/basket/items", Policy::Public),
    route("storefront", "/basket/items/{product_id}", Policy::Public),
    route("storefront", "/checkout", Policy::Public),
    route("storefront", "/orders", Policy::Public),
    route("storefront", "/orders/{id}", Policy::Public),
    route("storefront", "/account", Policy::Public),
    // The staff's pages: the storefront admits admins only.
    route("storefront", "/admin", Policy::Public),
    // A product's images, posted as a form: an upload's body limit.
    Route {
        upload: true,
        ..route("storefront", "/admin/products/{id}/images", Policy::Public)
    },
    route("storefront", "/admin/{*page}", Policy::Public),
];
