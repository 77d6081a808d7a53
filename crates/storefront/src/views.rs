//! The pages' templates (minijinja, as notification's messages), built into
//! the binary; HTML escaped by default.

use minijinja::Environment;
use serde::Serialize;

use crate::assets::{ICON, SCRIPT, STYLESHEET};

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

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
];

pub struct Views {
    env: Environment<'static>,
}

impl Views {
    pub fn new() -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| anyhow::anyhow!("storefront template `{name}`: {e}"))?;
        }
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

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
