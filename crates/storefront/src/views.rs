//! The pages' templates (minijinja, as notification's messages), built into
//! the binary; HTML escaped by default.

use minijinja::Environment;
use serde::Serialize;

use crate::assets::{ICON, SCRIPT, STYLESHEET};

/// `(name, source)` of templates under `templates/`, built in.
macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/", $name)))),*]
    };
}
pub(crate) use templates;

const TEMPLATES: &[(&str, &str)] = templates![
    "base.html",
    "home.html",
    "products.html",
    "product.html",
    "problem.html",
    "signin.html",
    "register.html",
    "basket.html",
    "checkout.html",
    "orders.html",
    "order.html",
    "account.html",
    "pager.html",
    "admin/base.html",
    "admin/index.html",
    "admin/orders.html",
];

pub struct Views {
    env: Environment<'static>,
}

impl Views {
    pub fn new() -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_formatter(html_formatter);
        let admin = [
            crate::admin::catalog::TEMPLATES,
            crate::admin::people::TEMPLATES,
            crate::admin::payments::TEMPLATES,
            crate::admin::ops::TEMPLATES,
        ];
        for (name, source) in TEMPLATES.iter().chain(admin.into_iter().flatten()) {
            env.add_template(name, source)
                .map_err(|e| anyhow::anyhow!("storefront template `{name}`: {e}"))?;
        }
        env.add_global(
            "admin_areas",
            minijinja::Value::from(
                crate::admin::AREAS
                    .iter()
                    .map(|&(path, name, about)| minijinja::Value::from(vec![path, name, about]))
                    .collect::<Vec<_>>(),
            ),
        );
        env.add_filter("urlencode", |value: String| encode(&value));
        // Addresses of our own making: no escaping needed.
        env.add_global(
            "stylesheet",
            minijinja::Value::from_safe_string(format!("/static/{}", STYLESHEET.name)),
        );
        env.add_global(
            "script",
            minijinja::Value::from_safe_string(format!("/static/{}", SCRIPT.name)),
        );
        env.add_global(
            "icon",
            minijinja::Value::from_safe_string(format!("/static/{}", ICON.name)),
        );
        Ok(Self { env })
    }

    /// `name` rendered with `context`.
    pub fn render(&self, name: &str, context: impl Serialize) -> Result<String, minijinja::Error> {
        self.env
            .get_template(name)?
            .render(minijinja::value::Serde(context))
    }
}

/// HTML escaping of the five characters that matter in text and quoted
/// attributes; `/` stays as it is, so that addresses read as addresses.
fn html_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    let plain = value.is_safe() || value.is_undefined() || value.is_none();
    if plain || !matches!(state.auto_escape(), minijinja::AutoEscape::Html) {
        return minijinja::escape_formatter(out, state, value);
    }
    let text = value.to_string();
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    out.write_str(&escaped).map_err(|_| {
        minijinja::Error::new(
            minijinja::ErrorKind::WriteFailure,
            "the page could not be written",
        )
    })
}

/// A query value, percent-encoded.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
