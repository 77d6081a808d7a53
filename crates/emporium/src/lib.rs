//! Wires services to their stores and starts them: the whole shop in one
//! process (`up`) or the named services (`serve`), through the same code.

pub mod load;

use std::sync::Arc;

use emporium_platform::auth::Issuer;
use emporium_platform::config::{SectionDef, Settings};
use emporium_platform::service::{self, Definition, Running};

/// Every service of the shop, in start-up order: a service comes after the
/// ones it calls. The one list a new service joins.
pub fn services() -> Vec<Definition> {
    vec![
        emporium_identity::definition(),
        emporium_catalog::definition(),
        emporium_inventory::definition(),
        emporium_basket::definition(),
        emporium_payment::definition(),
        emporium_ordering::definition(),
        emporium_recommendation::definition(),
        emporium_notification::definition(),
        emporium_gateway::definition(),
        // After the gateway, whose REST API it calls for what a signed-in
        // shopper does; the gateway reaches it once it has started.
        emporium_storefront::definition(),
    ]
}

/// The configuration sections of every service.
pub fn sections() -> Vec<SectionDef> {
    services().iter().map(|d| d.section).collect()
}

/// The names of every service, for help texts and errors.
/// The queue of every service that consumes events, whichever services a
/// process runs.
pub fn queues() -> Vec<emporium_platform::bus::Queue> {
    services().iter().filter_map(|d| d.consumes).collect()
}

pub fn names() -> Vec<&'static str> {
    services().iter().map(|d| d.name).collect()
}

/// The definitions of `names` in start-up order; every service when empty.
pub fn select(names: &[String]) -> anyhow::Result<Vec<Definition>> {
    let all = services();
    if let Some(unknown) = names
        .iter()
        .find(|n| !all.iter().any(|d| d.name == n.as_str()))
    {
        anyhow::bail!(
            "unknown service `{unknown}` (known: {})",
            self::names().join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|d| names.is_empty() || names.iter().any(|n| n == d.name))
        .collect())
}

/// Starts the named services (every one when empty) on the stores the
/// settings name.
pub async fn start(settings: Settings, names: &[String]) -> anyhow::Result<Running> {
    // Fault flags only where the settings allow them (decision 0032).
    emporium_platform::faults::process().configure(&settings.faults, false)?;
    declare_queues(&settings).await;
    service::start(settings, &select(names)?).await
}

/// Declares every consumer's queue on the broker before this process
/// publishes anything: a topic exchange drops what no queue is bound to
/// yet, so the events a service wrote before its consumers ever started
/// (the first admin's welcome, the seeded catalog) were lost on a first
/// start. When the broker is away at start, each consumer still declares
/// its own queue as it connects, as before.
async fn declare_queues(settings: &Settings) {
    let declared = async {
        let transport = emporium_platform::bus::transport_from_settings(&settings.bus)?;
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            transport.declare_queues(&queues()),
        )
        .await
        .map_err(|_| anyhow::anyhow!("the broker did not answer within 5 s"))?
    };
    if let Err(e) = declared.await {
        tracing::warn!(error = %e, "the shop's event queues were not declared ahead of their consumers");
    }
}

/// A shop started by [`up`].
pub struct Up {
    pub running: Running,
    /// Identity's signing key, for development tokens.
    pub issuer: Arc<Issuer>,
    /// Lines for the person who started it (a generated admin password).
    pub notices: Vec<String>,
}

/// The whole shop on embedded stores: every service, and the demo data on
/// first start.
pub async fn up(settings: Settings, seed: bool) -> anyhow::Result<Up> {
    up_reporting(settings, seed, &|_, _| {}).await
}

/// As [`up`], telling `report` of each service once it listens.
pub async fn up_reporting(
    mut settings: Settings,
    seed: bool,
    report: &(dyn Fn(&emporium_platform::Started, std::time::Duration) + Sync),
) -> anyhow::Result<Up> {
    // The shop's one admin hears of low stock, unless staff are named.
    let admin = settings
        .section::<emporium_identity::IdentitySettings>()
        .admin_email
        .unwrap_or_else(|| emporium_identity::DEMO_ADMIN_EMAIL.to_owned());
    settings.update_section::<emporium_notification::NotificationSettings>(|n| {
        if n.staff_emails.is_empty() {
            n.staff_emails = vec![admin];
        }
    });
    // `up` is the shop to try things on: fault flags are allowed.
    emporium_platform::faults::process().configure(&settings.faults, true)?;
    let issuer = emporium_identity::signing_issuer(&settings).await?;
    let running = service::start_reporting(settings, &services(), report).await?;
    let notices = if seed {
        // The settings the services run with: they hold the secrets made
        // at start, with which past orders go through the checkout.
        let settings = running.runtime.settings.clone();
        seed_demo(settings, &[], running.services.clone()).await?
    } else {
        vec![]
    };
    Ok(Up {
        running,
        issuer,
        notices,
    })
}

/// Loads the demo data of the named services (every one when empty) into
/// their configured stores; returns the lines to show once.
/// `local` are the services running in this process, which demo data made
/// through several services (past orders) needs.
pub async fn seed_demo(
    settings: Arc<Settings>,
    names: &[String],
    local: Arc<[emporium_platform::Started]>,
) -> anyhow::Result<Vec<String>> {
    let mut notices = vec![];
    for definition in select(names)? {
        let Some(seed) = definition.seed else {
            continue;
        };
        let seeded = seed(settings.clone(), local.clone()).await?;
        if seeded.records > 0 {
            tracing::info!(
                service = definition.name,
                records = seeded.records,
                "demo data seeded"
            );
        }
        notices.extend(seeded.notice);
    }
    Ok(notices)
}

/// Applies the migrations of the named services (every one when empty) to
/// their configured stores.
pub async fn migrate(settings: Settings, names: &[String]) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    for definition in select(names)? {
        (definition.migrate)(settings.clone()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_consumers_queue_is_declared_ahead() {
        let names: Vec<&str> = super::queues().iter().map(|q| q.name).collect();
        assert_eq!(
            names,
            ["inventory", "basket", "recommendation", "notification"]
        );
        assert!(super::queues().iter().all(|q| !q.interests.is_empty()));
    }
}
