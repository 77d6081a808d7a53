//! The distributed shop for the table: every service in a `serve` process
//! of its own, on the machine's PostgreSQL (a scratch database per
//! service), MariaDB (payment's), Redis (baskets, caches, idempotency keys,
//! under a prefix of this run) and RabbitMQ (a virtual host of this run),
//! configured as deploy/compose configures the containers. Everything made
//! here is removed by [`Scratch::remove`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use emporium_bench::shop::{self, Layout, Ready, Started, env_name};
use sea_orm::sqlx::{self, Connection};

/// The servers a run uses, as URLs without a database.
#[derive(Clone, Debug)]
pub struct Servers {
    /// `postgres://user@host:port`.
    pub postgres: String,
    /// `mysql://user@host:port`.
    pub mysql: String,
    /// `redis://host:port/db`.
    pub redis: String,
    /// `amqp://user:password@host:port`.
    pub amqp: String,
}

/// The services that keep a PostgreSQL database.
const ON_POSTGRES: [&str; 7] = [
    "identity",
    "catalog",
    "inventory",
    "basket",
    "ordering",
    "notification",
    "recommendation",
];

/// What this run made on the servers, to remove at the end.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The prefix of every name: `emporium_bench_<pid>`.
    pub name: String,
    postgres: Vec<String>,
    mysql: Vec<String>,
    vhost: Option<String>,
    redis_prefix: Option<String>,
}

impl Scratch {
    pub fn new() -> Self {
        let name = format!("emporium_bench_{}", std::process::id());
        Self {
            // redis-benchmark writes there in any case.
            redis_prefix: Some(name.clone()),
            name,
            ..Self::default()
        }
    }

    /// A PostgreSQL database of this run, `<prefix>_<what>`; its URL.
    pub async fn postgres_database(
        &mut self,
        servers: &Servers,
        what: &str,
    ) -> anyhow::Result<String> {
        let name = format!("{}_{what}", self.name);
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", servers.postgres))
            .await
            .with_context(|| format!("PostgreSQL at {}", servers.postgres))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await?;
        self.postgres.push(name.clone());
        Ok(format!("{}/{name}", servers.postgres))
    }

    async fn mysql_database(&mut self, servers: &Servers, what: &str) -> anyhow::Result<String> {
        let name = format!("{}_{what}", self.name);
        let mut admin = sqlx::MySqlConnection::connect(&servers.mysql)
            .await
            .with_context(|| format!("MariaDB at {}", servers.mysql))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
            .execute(&mut admin)
            .await?;
        self.mysql.push(name.clone());
        Ok(format!("{}/{name}", servers.mysql))
    }

    /// A RabbitMQ virtual host of this run, open to the URL's user.
    async fn vhost(&mut self, servers: &Servers) -> anyhow::Result<String> {
        let user = reqwest::Url::parse(&servers.amqp)?.username().to_owned();
        let name = self.name.clone();
        rabbitmqctl(&["add_vhost", &name]).await?;
        self.vhost = Some(name.clone());
        rabbitmqctl(&["set_permissions", "-p", &name, &user, ".*", ".*", ".*"]).await?;
        Ok(format!("{}/{name}", servers.amqp))
    }

    /// PostgreSQL connections open now: to this run's databases, in all,
    /// and the server's limit.
    pub async fn postgres_connections(&self, servers: &Servers) -> anyhow::Result<(i64, i64, i64)> {
        let mut admin =
            sqlx::PgConnection::connect(&format!("{}/postgres", servers.postgres)).await?;
        let counts: (i64, i64, i32) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE datname LIKE $1 || '%'), count(*), current_setting('max_connections')::int FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
        .bind(&self.name)
        .fetch_one(&mut admin)
        .await?;
        Ok((counts.0, counts.1, i64::from(counts.2)))
    }

    /// Drops the databases, the virtual host and the Redis keys made; says
    /// what it removed.
    pub async fn remove(&mut self, servers: &Servers) -> Vec<String> {
        let mut done = vec![];
        if !self.postgres.is_empty()
            && let Ok(mut admin) =
                sqlx::PgConnection::connect(&format!("{}/postgres", servers.postgres)).await
        {
            for name in self.postgres.drain(..) {
                let dropped = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
                done.push(outcome("PostgreSQL database", &name, dropped.err()));
            }
        }
        if !self.mysql.is_empty()
            && let Ok(mut admin) = sqlx::MySqlConnection::connect(&servers.mysql).await
        {
            for name in self.mysql.drain(..) {
                let dropped = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS `{name}`"
                )))
                .execute(&mut admin)
                .await;
                done.push(outcome("MariaDB database", &name, dropped.err()));
            }
        }
        if let Some(vhost) = self.vhost.take() {
            let deleted = rabbitmqctl(&["delete_vhost", &vhost]).await;
            done.push(outcome("RabbitMQ virtual host", &vhost, deleted.err()));
        }
        if let Some(prefix) = self.redis_prefix.take() {
            let removed = clear_redis(servers, &prefix).await;
            done.push(outcome(
                "Redis keys",
                &format!("{prefix}* and the caches'"),
                removed.err(),
            ));
        }
        done
    }
}

/// The caches' namespaces the distributed shop writes in its Redis
/// database (the bench's own, `--redis-url`), and redis-benchmark's key.
const REDIS_SHARED: [&str; 4] = [
    "catalog:*",
    "inventory:*",
    "notification:*",
    "key:__rand_int__",
];

/// Deletes the keys under `prefix` and those of [`REDIS_SHARED`] from the
/// database of `servers.redis`: what a run leaves, and what an interrupted
/// one left (a stale cache generation would meet the next run's shop).
pub async fn clear_redis(servers: &Servers, prefix: &str) -> anyhow::Result<()> {
    let script = "url=$1; shift; for pattern in \"$@\"; do redis-cli -u \"$url\" --scan --pattern \"$pattern\" | xargs -r -n 500 redis-cli -u \"$url\" del >/dev/null || exit 1; done";
    let prefixed = format!("{prefix}*");
    let status = tokio::process::Command::new("sh")
        .args(["-c", script, "sh", &servers.redis, &prefixed])
        .args(REDIS_SHARED)
        .status()
        .await
        .context("sh and redis-cli (redis-tools)")?;
    if !status.success() {
        bail!("redis-cli: {status}");
    }
    Ok(())
}

fn outcome(what: &str, name: &str, error: Option<impl std::fmt::Display>) -> String {
    match error {
        None => format!("{what} {name} removed"),
        Some(e) => format!("{what} {name} NOT removed: {e}"),
    }
}

async fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .await
        .context("rabbitmqctl (it makes this run's virtual host) cannot run")?;
    if !output.status.success() {
        bail!(
            "rabbitmqctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `N` random bytes.
fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes)
}

/// A random secret of 32 hex digits.
fn secret() -> anyhow::Result<String> {
    Ok(random::<16>()?.iter().map(|b| format!("{b:02x}")).collect())
}

/// The distributed shop, running.
pub struct Shop {
    pub layout: Layout,
    pub data_dir: PathBuf,
    /// What every process is given, as deploy/compose gives it.
    pub env: Vec<(String, String)>,
    /// Each service's process, ready, in start order.
    pub processes: Vec<(&'static str, Started)>,
    /// The catalog's database, for the bare reads.
    pub catalog_url: String,
}

impl Shop {
    pub async fn stop(self) {
        for (_, process) in self.processes {
            process.stop().await;
        }
    }
}

/// Makes the stores of this run (recorded in `scratch`), migrates them,
/// starts every service in its own process and seeds the demo catalog
/// and stock.
pub async fn start(
    binary: &Path,
    work: &Path,
    servers: &Servers,
    scratch: &mut Scratch,
) -> anyhow::Result<Shop> {
    let layout = Layout::free()?;
    let data_dir = work.join("distributed");
    std::fs::create_dir_all(&data_dir)?;
    let mut env = layout.env();
    let mut set = |key: &str, value: String| env.push((env_name(key), value));
    let mut catalog_url = String::new();
    for service in ON_POSTGRES {
        let url = scratch.postgres_database(servers, service).await?;
        if service == "catalog" {
            catalog_url.clone_from(&url);
        }
        set(&format!("{service}.database_url"), url);
    }
    set(
        "payment.database_url",
        scratch.mysql_database(servers, "payment").await?,
    );
    set("bus.url", scratch.vhost(servers).await?);
    let prefix = scratch.name.clone();
    // Without redis-cli the run goes on; the end says what stayed.
    let _ = clear_redis(servers, &prefix).await;
    for key in [
        "catalog.cache_url",
        "inventory.cache_url",
        "basket.redis_url",
        "payment.redis_url",
        "ordering.redis_url",
        "notification.redis_url",
        "gateway.rate_limit_url",
    ] {
        set(key, servers.redis.clone());
    }
    for key in [
        "basket.redis_prefix",
        "payment.redis_prefix",
        "ordering.redis_prefix",
        "gateway.rate_limit_prefix",
    ] {
        let section = key.split('.').next().unwrap_or(key);
        set(key, format!("{prefix}:{section}"));
    }
    set(
        "auth.jwks_url",
        format!("{}/.well-known/jwks.json", layout.url("identity")),
    );
    // Identity seals its signing keys on a server's database (decision 0017).
    set(
        "identity.key_encryption_keys",
        base64::engine::general_purpose::STANDARD.encode(random::<32>()?),
    );
    // The services that call others hold a secret; identity holds them all.
    for caller in ["basket", "ordering", "notification", "storefront"] {
        set(&format!("auth.service_secrets.{caller}"), secret()?);
    }
    for peer in [
        "identity",
        "catalog",
        "inventory",
        "basket",
        "payment",
        "recommendation",
    ] {
        set(&format!("peers.{peer}"), layout.grpc_url(peer));
    }
    for service in shop::services().iter().filter(|s| **s != "gateway") {
        set(&format!("gateway.upstreams.{service}"), layout.url(service));
    }
    // All the load comes from one address and a few users.
    set("gateway.api_per_address", "0".into());
    set("gateway.api_per_user", "0".into());
    set(
        "notification.mailbox_dir",
        data_dir.join("mailbox").display().to_string(),
    );
    set("storefront.api_url", layout.url("gateway"));

    run(binary, &data_dir, &["migrate"], &env).await?;
    let mut processes = vec![];
    // Identity first, the gateway last, the others at once.
    let services = shop::services();
    let (first, rest) = services.split_at(1);
    let (middle, last) = rest.split_at(rest.len() - 1);
    for group in [first, middle, last] {
        let starting = group.iter().map(|service| {
            let ready = if *service == "gateway" {
                format!("{}/ready", layout.internal_url())
            } else {
                format!("{}/ready", layout.url(service))
            };
            let env = &env;
            let data_dir = &data_dir;
            async move {
                let args = ["serve".to_owned(), (*service).to_owned()];
                shop::start(
                    binary,
                    data_dir,
                    &args,
                    env,
                    Ready::Url(&ready),
                    Duration::from_secs(60),
                )
                .await
                .with_context(|| format!("serve {service}"))
            }
        });
        for (service, started) in group.iter().zip(futures::future::join_all(starting).await) {
            processes.push((*service, started?));
        }
    }
    run(
        binary,
        &data_dir,
        &["seed", "identity", "catalog", "inventory"],
        &env,
    )
    .await?;
    Ok(Shop {
        layout,
        data_dir,
        env,
        processes,
        catalog_url,
    })
}

/// A one-shot command of the binary (`migrate`, `seed`) with `env`.
async fn run(
    binary: &Path,
    data_dir: &Path,
    args: &[&str],
    env: &[(String, String)],
) -> anyhow::Result<()> {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend(["--log-format", "json", "--set", "log.level=warn"].map(str::to_owned));
    shop::once(binary, data_dir, &all, env).await.map(|_| ())
}
