//! Wires services to their stores and starts them: the whole shop in one
//! process (`up`) or the named services (`serve`), through the same code.

pub mod load;

use emporium_platform::auth::Issuer;
use emporium_platform::config::{SectionDef, Settings};
use emporium_platform::service::{self, Definition, Running};

/// Every service of the shop, in start-up order: a service comes after the
/// ones it calls. The one list a new service joins.
pub fn services() -> Vec<Definition> {
    vec![
        emporium_catalog::definition(),
        emporium_gateway::definition(),
    ]
}

/// The configuration sections of every service.
pub fn sections() -> Vec<SectionDef> {
    services().iter().map(|d| d.section).collect()
}

/// The names of every service, for help texts and errors.
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
    service::start(settings, &select(names)?).await
}

/// The whole shop on embedded stores: a development signing key under the
/// data dir (until identity issues tokens), every service, and the demo
/// data on first start.
pub async fn up(mut settings: Settings, seed: bool) -> anyhow::Result<(Running, Issuer)> {
    let (issuer, jwks) =
        Issuer::load_or_create(&settings.auth.issuer, &settings.data_dir.join("keys"))?;
    if settings.auth.jwks_file.is_none() && settings.auth.jwks_url.is_none() {
        settings.auth.jwks_file = Some(jwks);
    }
    let shop = service::start(settings, &services()).await?;
    if seed {
        for started in shop.services.iter() {
            if let Some(seeder) = &started.seeder {
                let added = seeder().await?;
                if added > 0 {
                    tracing::info!(service = started.name, records = added, "demo data seeded");
                }
            }
        }
    }
    Ok((shop, issuer))
}

/// Applies the migrations of the named services (every one when empty) to
/// their configured stores.
pub async fn migrate(settings: Settings, names: &[String]) -> anyhow::Result<()> {
    let settings = std::sync::Arc::new(settings);
    for definition in select(names)? {
        (definition.migrate)(settings.clone()).await?;
    }
    Ok(())
}
