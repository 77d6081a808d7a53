//! `emporium`: one binary for the whole shop and each of its services.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use emporium_platform::auth::Role;
use emporium_platform::config::{self, Settings, Sources};

#[derive(Parser)]
#[command(
    name = "emporium",
    version,
    about = "An online shop made of microservices, in one binary"
)]
struct Cli {
    /// Configuration file (default: ./emporium.toml when present).
    #[arg(long, short, global = true, env = "EMPORIUM_CONFIG")]
    config: Option<PathBuf>,
    /// Override one setting, e.g. `--set catalog.http_addr=0.0.0.0:9000`.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Where embedded stores keep their files.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// `json`, `pretty`, or `auto`: pretty on a terminal, JSON otherwise.
    #[arg(long, global = true, value_parser = ["auto", "json", "pretty"])]
    log_format: Option<String>,
    /// What to log: `info`, `debug`, `warn`, or a filter such as
    /// `info,catalog=debug`. On a terminal `up` shows only warnings and a
    /// line per service unless this is given.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole shop in this process on embedded stores.
    Up {
        /// Do not add the demo catalog to an empty shop.
        #[arg(long)]
        no_seed: bool,
    },
    /// Run the named services on the configured stores.
    Serve {
        #[arg(required = true, value_parser = parse_service)]
        services: Vec<String>,
    },
    /// Apply database migrations (every service when none is named).
    Migrate {
        #[arg(value_parser = parse_service)]
        services: Vec<String>,
    },
    /// Load the demo data (every service's when none is named) into the
    /// configured stores; what exists already is kept.
    Seed {
        #[arg(value_parser = parse_service)]
        services: Vec<String>,
    },
    /// Print the effective configuration, secrets masked.
    Config {
        /// The service that would run alone (its plain variables apply).
        #[arg(value_parser = parse_service)]
        service: Option<String>,
    },
    /// Mint a development access token with identity's current key (read
    /// from identity's configured store).
    Token {
        #[arg(long, default_value = "admin", value_parser = ["admin", "customer"])]
        role: String,
        #[arg(long, default_value = "dev-admin")]
        subject: String,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
    /// Play shoppers through the gateway's REST API for a while: sign up or
    /// in, browse, search, fill a basket, check out, cancel; then report.
    Load(Box<emporium::load::Options>),
}

fn parse_service(s: &str) -> Result<String, String> {
    emporium::select(&[s.to_owned()])
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

fn settings(cli: &Cli, lone: Option<&'static str>) -> Result<Settings, config::ConfigError> {
    let mut sources = Sources::from_process_env();
    sources.file = cli.config.clone();
    sources.lone_service = lone;
    for pair in &cli.overrides {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            config::ConfigError::from(format!("--set `{pair}` must be KEY=VALUE"))
        })?;
        sources
            .overrides
            .push((key.trim().to_owned(), value.to_owned()));
    }
    if let Some(level) = &cli.log_level {
        sources.overrides.push(("log.level".into(), level.clone()));
    }
    if let Some(format) = &cli.log_format {
        sources
            .overrides
            .push(("log.format".into(), format.clone()));
    }
    if let Some(dir) = &cli.data_dir {
        sources
            .overrides
            .push(("data_dir".into(), dir.display().to_string()));
    }
    config::load(&sources, &emporium::sections())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let lone_name = match &cli.command {
        Command::Serve { services }
        | Command::Migrate { services }
        | Command::Seed { services }
            if services.len() == 1 =>
        {
            Some(services[0].as_str())
        }
        Command::Config { service } => service.as_deref(),
        _ => None,
    };
    let lone = lone_name.and_then(|name| emporium::names().into_iter().find(|n| *n == name));
    let settings = match settings(&cli, lone) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A level chosen anywhere (flag, variable, file) keeps every line.
    let level_chosen = cli.log_level.is_some()
        || std::env::var_os("LOG_LEVEL").is_some()
        || std::env::var_os("EMPORIUM__LOG__LEVEL").is_some()
        || settings.log.level != emporium_platform::config::LogSettings::default().level;
    match runtime.block_on(run(cli.command, settings, level_chosen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut settings: Settings, level_chosen: bool) -> anyhow::Result<()> {
    match command {
        Command::Config { .. } => {
            print!("{}", settings.to_masked_toml());
            Ok(())
        }
        Command::Token {
            role,
            subject,
            ttl_secs,
        } => {
            let issuer = emporium_identity::signing_issuer(&settings).await?;
            let role = if role == "admin" {
                Role::Admin
            } else {
                Role::Customer
            };
            println!(
                "{}",
                issuer.mint(&subject, role, Duration::from_secs(ttl_secs))?
            );
            Ok(())
        }
        Command::Load(options) => emporium::load::run(*options).await?.verdict(),
        Command::Migrate { services } => {
            let _telemetry = emporium_platform::telemetry::init(&settings, "emporium-migrate")?;
            emporium::migrate(settings, &services).await
        }
        Command::Seed { services } => {
            let _telemetry = emporium_platform::telemetry::init(&settings, "emporium-seed")?;
            for notice in
                emporium::seed_demo(std::sync::Arc::new(settings), &services, Vec::new().into())
                    .await?
            {
                println!("{notice}");
            }
            Ok(())
        }
        Command::Serve { services } => {
            let name = services.join("+");
            let _telemetry =
                emporium_platform::telemetry::init(&settings, &format!("emporium-{name}"))?;
            let stop = emporium_platform::shutdown::signals()?;
            let shop = emporium::start(settings, &services).await?;
            stop.await;
            shop.stop(Duration::from_secs(15)).await;
            Ok(())
        }
        Command::Up { no_seed } => {
            let started = Instant::now();
            // On a terminal, a line per service instead of every log line.
            let quiet = !level_chosen
                && settings.log.format != emporium_platform::config::LogFormat::Json
                && std::io::IsTerminal::is_terminal(&std::io::stdout());
            if quiet {
                settings.log.level = "warn".into();
                println!("Starting Emporium (every log line: --log-level info)");
            }
            let _telemetry = emporium_platform::telemetry::init(&settings, "emporium")?;
            let stop = emporium_platform::shutdown::signals()?;
            let data_dir = std::path::absolute(&settings.data_dir)?;
            let https = settings
                .section::<emporium_gateway::GatewaySettings>()
                .tls_cert_file
                .is_some();
            // Where emails land when no SMTP server is configured.
            let mailbox = {
                let own = settings.section::<emporium_notification::NotificationSettings>();
                own.smtp_url.is_none().then(|| {
                    own.mailbox_dir
                        .clone()
                        .unwrap_or_else(|| data_dir.join("mailbox"))
                })
            };
            let emporium::Up {
                running: shop,
                notices,
                ..
            } = emporium::up_reporting(settings, !no_seed, &|service, after| {
                if quiet {
                    println!("  {:<14} up after {} ms", service.name, after.as_millis());
                }
            })
            .await?;
            let ready = started.elapsed();
            println!();
            println!(
                "Emporium is up (ready in {} ms). Data: {}",
                ready.as_millis(),
                data_dir.display()
            );
            if let Some(url) = shop.url("gateway") {
                let url = if https {
                    url.replacen("http://", "https://", 1)
                } else {
                    url
                };
                println!("  shop           {url}/");
                println!("  shop API       {url}/api/v1/products");
                println!("  OpenAPI        {url}/api/v1/openapi.json");
            }
            for (service, kind, addr) in shop.addresses() {
                println!("  {service:<14} {kind:<5} {addr}");
            }
            if let Some(mailbox) = mailbox {
                println!(
                    "  mailbox        {} (each email as an .eml file)",
                    mailbox.display()
                );
            }
            for notice in &notices {
                println!("  {notice}");
            }
            println!("  dev token      emporium token --role admin");
            println!("Press Ctrl-C to stop.");
            stop.await;
            shop.stop(Duration::from_secs(15)).await;
            println!("stopped");
            Ok(())
        }
    }
}
