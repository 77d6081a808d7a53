//! The messages' templates: built into the binary, each replaceable by a
//! file of the same name in `notification.templates_dir`, all compiled and
//! tried on a sample event at start so that a bad one stops the service
//! with one line naming it, never a message later.
//!
//! Names: `email/<type>.subject.txt`, `email/<type>.txt` and, optionally,
//! `email/<type>.html` (which may extend `email/layout.html`);
//! `sms/<type>.txt`. An event type with no template for a channel sends
//! nothing on it, so a file for a new type (say `payment.completed`) turns
//! that message on.

use std::collections::BTreeSet;
use std::path::Path;

use emporium_platform::money::Money;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Value, json};

use crate::domain::Channel;

/// The event types a template may be written for: those notification
/// consumes.
pub const KINDS: &[&str] = &[
    "user.registered",
    "order.confirmed",
    "order.failed",
    "order.cancelled",
    "order.processing",
    "order.shipped",
    "order.delivered",
    "payment.completed",
    "payment.failed",
    "payment.refunded",
    "stock.low",
];

macro_rules! built_in {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

const BUILT_IN: &[(&str, &str)] = built_in![
    "email/layout.html",
    "email/user.registered.subject.txt",
    "email/user.registered.txt",
    "email/user.registered.html",
    "email/order.confirmed.subject.txt",
    "email/order.confirmed.txt",
    "email/order.confirmed.html",
    "email/order.failed.subject.txt",
    "email/order.failed.txt",
    "email/order.failed.html",
    "email/order.cancelled.subject.txt",
    "email/order.cancelled.txt",
    "email/order.cancelled.html",
    "email/order.shipped.subject.txt",
    "email/order.shipped.txt",
    "email/order.shipped.html",
    "email/order.delivered.subject.txt",
    "email/order.delivered.txt",
    "email/order.delivered.html",
    "email/payment.refunded.subject.txt",
    "email/payment.refunded.txt",
    "email/payment.refunded.html",
    "email/stock.low.subject.txt",
    "email/stock.low.txt",
    "email/stock.low.html",
    "sms/order.shipped.txt",
    "sms/order.delivered.txt",
];

/// A message after rendering.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

pub struct Templates {
    env: Environment<'static>,
    names: BTreeSet<String>,
}

fn one_line(e: &minijinja::Error) -> String {
    let mut line = e.to_string();
    if let Some(detail) = e.detail()
        && !line.contains(detail)
    {
        line = format!("{line}: {detail}");
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `minor` units of `currency` as the shop writes an amount: `12.50 EUR`.
fn money(minor: i64, currency: &str) -> String {
    match Money::from_minor(minor, currency) {
        Ok(money) => format!("{} {}", money.amount(), currency),
        Err(_) => format!("{minor} {currency}"),
    }
}

/// Whether `name` is one a template may have, and for which type.
fn known(name: &str) -> bool {
    if name == "email/layout.html" {
        return true;
    }
    let (channel, file) = match name.split_once('/') {
        Some(split) => split,
        None => return false,
    };
    let stem = match channel {
        "email" => file
            .strip_suffix(".subject.txt")
            .or_else(|| file.strip_suffix(".txt"))
            .or_else(|| file.strip_suffix(".html")),
        "sms" => file.strip_suffix(".txt"),
        _ => None,
    };
    stem.is_some_and(|kind| KINDS.contains(&kind))
}

impl Templates {
    /// The built-in templates, each replaced by its file under `dir` when
    /// there is one; every one compiled and tried.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter("money", money);
        let mut names = BTreeSet::new();
        for (name, source) in BUILT_IN {
            env.add_template(name, source).map_err(|e| {
                anyhow::anyhow!("built-in notification template `{name}`: {}", one_line(&e))
            })?;
            names.insert((*name).to_owned());
        }
        if let Some(dir) = dir {
            for (name, source) in read_dir(dir)? {
                env.add_template_owned(name.clone(), source).map_err(|e| {
                    anyhow::anyhow!(
                        "configuration: notification template `{}`: {}",
                        dir.join(&name).display(),
                        one_line(&e)
                    )
                })?;
                names.insert(name);
            }
        }
        let templates = Self { env, names };
        templates.try_each(dir)?;
        Ok(templates)
    }

    /// Renders every type's templates on a sample of its event, so that a
    /// misspelt field or filter stops the start, not a message.
    fn try_each(&self, dir: Option<&Path>) -> anyhow::Result<()> {
        for kind in KINDS {
            for channel in Channel::ALL {
                let parts = self.parts(channel, kind);
                let present: Vec<&String> =
                    parts.iter().filter(|p| self.names.contains(*p)).collect();
                if present.is_empty() {
                    continue;
                }
                let needed = match channel {
                    Channel::Email => vec![parts[0].clone(), parts[1].clone()],
                    Channel::Sms => vec![parts[1].clone()],
                };
                if let Some(missing) = needed.iter().find(|n| !self.names.contains(*n)) {
                    anyhow::bail!(
                        "configuration: notification template `{missing}` is missing: {} needs it",
                        present[0]
                    );
                }
                for name in present {
                    let where_ = dir
                        .map(|d| d.join(name))
                        .filter(|p| p.exists())
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| name.clone());
                    self.env
                        .get_template(name)
                        .and_then(|t| t.render(minijinja::value::Serde(sample(kind))))
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "configuration: notification template `{where_}` does not render: {}",
                                one_line(&e)
                            )
                        })?;
                }
            }
        }
        Ok(())
    }

    /// The names of a type's parts on a channel: subject, text, HTML.
    fn parts(&self, channel: Channel, kind: &str) -> [String; 3] {
        let c = channel.as_str();
        [
            format!("{c}/{kind}.subject.txt"),
            format!("{c}/{kind}.txt"),
            format!("{c}/{kind}.html"),
        ]
    }

    /// Whether events of `kind` make a message on `channel`.
    pub fn has(&self, channel: Channel, kind: &str) -> bool {
        self.names.contains(&self.parts(channel, kind)[1])
    }

    pub fn render(
        &self,
        channel: Channel,
        kind: &str,
        context: &Value,
    ) -> Result<Rendered, minijinja::Error> {
        let [subject, text, html] = self.parts(channel, kind);
        let render = |name: &str| -> Result<Option<String>, minijinja::Error> {
            if !self.names.contains(name) {
                return Ok(None);
            }
            self.env
                .get_template(name)?
                .render(minijinja::value::Serde(context))
                .map(Some)
        };
        Ok(Rendered {
            subject: render(&subject)?
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            text: render(&text)?.unwrap_or_default(),
            html: render(&html)?,
        })
    }
}

/// The template files under `dir`, by name; a file whose name no template
/// has is refused, so that a misspelt name does not go unnoticed.
fn read_dir(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    let top = std::fs::read_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "configuration: notification.templates_dir `{}`: {e}",
            dir.display()
        )
    })?;
    for sub in top {
        let sub = sub?;
        let channel = sub.file_name().to_string_lossy().into_owned();
        if !sub.file_type()?.is_dir() {
            anyhow::bail!(
                "configuration: notification template `{}` is not under email/ or sms/",
                sub.path().display()
            );
        }
        for file in std::fs::read_dir(sub.path())? {
            let file = file?;
            let name = format!("{channel}/{}", file.file_name().to_string_lossy());
            if !known(&name) {
                anyhow::bail!(
                    "configuration: notification template `{}` is not a name this service knows (email/<type>.subject.txt, email/<type>.txt, email/<type>.html, sms/<type>.txt, email/layout.html; types: {})",
                    file.path().display(),
                    KINDS.join(", ")
                );
            }
            let source = std::fs::read_to_string(file.path()).map_err(|e| {
                anyhow::anyhow!(
                    "configuration: notification template `{}`: {e}",
                    file.path().display()
                )
            })?;
            found.push((name, source));
        }
    }
    Ok(found)
}

/// A context like the one a real event of `kind` gives, for trying the
/// templates at start.
pub fn sample(kind: &str) -> Value {
    let order = json!({
        "order_id": "0193a4b2-0000-7000-8000-000000000001",
        "user_id": "0193a4b2-0000-7000-8000-000000000002",
        "status": "confirmed",
        "total_minor": 4_990,
        "currency": "EUR",
        "reservation_id": "0193a4b2-0000-7000-8000-000000000003",
        "payment_id": "0193a4b2-0000-7000-8000-000000000004",
        "reason": null,
        "basket": true,
        "lines": [{ "product_id": "0193a4b2-0000-7000-8000-000000000005", "sku": "KIT-002", "quantity": 2, "unit_minor": 2_495 }],
    });
    let payment = json!({
        "id": "0193a4b2-0000-7000-8000-000000000004",
        "order_id": "0193a4b2-0000-7000-8000-000000000001",
        "user_id": "0193a4b2-0000-7000-8000-000000000002",
        "amount": { "amount": "49.90", "currency": "EUR" },
        "amount_minor": 4_990,
        "refunded_minor": 1_000,
        "status": "partially_refunded",
        "method": "card",
        "failure_reason": null,
    });
    let stock = json!({ "sku": "KIT-002", "warehouse": "east", "on_hand": 3, "reserved": 1, "available": 2, "threshold": 5 });
    let user = json!({ "id": "0193a4b2-0000-7000-8000-000000000002", "email": "ann@example.org", "name": "Ann", "role": "customer", "created_at": "2026-12-02T10:00:00Z" });
    let mut context = json!({
        "shop": { "name": "Emporium", "url": "http://127.0.0.1:8080" },
        "recipient": { "name": "Ann", "address": "ann@example.org" },
        "event": { "id": "0193a4b2-0000-7000-8000-000000000006", "type": kind, "time": "2026-12-02T10:00:00Z" },
    });
    let (key, data) = match kind.split('.').next() {
        Some("order") => ("order", order),
        Some("payment") => ("payment", payment),
        Some("stock") => ("stock", stock),
        _ => ("user", user),
    };
    if let Some(map) = context.as_object_mut() {
        map.insert(key.to_owned(), data);
    }
    context
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_built_in_templates_render_every_type_they_cover() {
        let templates = Templates::load(None).unwrap();
        let confirmed = templates
            .render(
                Channel::Email,
                "order.confirmed",
                &sample("order.confirmed"),
            )
            .unwrap();
        assert!(
            confirmed.subject.contains("0193a4b2"),
            "{}",
            confirmed.subject
        );
        assert!(confirmed.text.contains("49.90 EUR"), "{}", confirmed.text);
        assert!(confirmed.html.unwrap().contains("<html"));
        assert!(templates.has(Channel::Sms, "order.shipped"));
        assert!(!templates.has(Channel::Sms, "order.confirmed"));
        assert!(!templates.has(Channel::Email, "payment.completed"));
    }

    #[test]
    fn html_parts_escape_what_users_wrote() {
        let templates = Templates::load(None).unwrap();
        let mut context = sample("user.registered");
        context["recipient"]["name"] = json!("<script>x</script>");
        let welcome = templates
            .render(Channel::Email, "user.registered", &context)
            .unwrap();
        let html = welcome.html.unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn a_directory_replaces_adds_and_refuses_templates_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("email")).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write(
            "email/order.confirmed.subject.txt",
            "Yours: {{ order.order_id }}",
        );
        write(
            "email/payment.completed.subject.txt",
            "Paid {{ payment.amount_minor | money(payment.amount.currency) }}",
        );
        write(
            "email/payment.completed.txt",
            "Thanks, {{ recipient.name }}.",
        );
        let templates = Templates::load(Some(dir.path())).unwrap();
        let subject = templates
            .render(
                Channel::Email,
                "order.confirmed",
                &sample("order.confirmed"),
            )
            .unwrap()
            .subject;
        assert!(subject.starts_with("Yours: 0193a4b2"), "{subject}");
        let paid = templates
            .render(
                Channel::Email,
                "payment.completed",
                &sample("payment.completed"),
            )
            .unwrap();
        assert_eq!(paid.subject, "Paid 49.90 EUR");
        assert_eq!(paid.html, None);

        // A misspelt field, bad syntax, an unknown name, a subject alone:
        // each refused in one line that names the file.
        for (name, text, says) in [
            (
                "email/order.shipped.txt",
                "{{ order.tracking_number }}",
                "does not render",
            ),
            ("email/order.shipped.txt", "{% if %}", "order.shipped.txt"),
            (
                "email/order.shiped.txt",
                "hi",
                "not a name this service knows",
            ),
            (
                "email/payment.failed.subject.txt",
                "hi",
                "payment.failed.txt` is missing",
            ),
        ] {
            let bad = tempfile::tempdir().unwrap();
            std::fs::create_dir(bad.path().join("email")).unwrap();
            std::fs::write(bad.path().join(name), text).unwrap();
            let error = Templates::load(Some(bad.path())).err().unwrap().to_string();
            assert!(error.contains(says), "{name}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
