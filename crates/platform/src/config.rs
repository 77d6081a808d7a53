//! Layered configuration: defaults < `emporium.toml` < environment < flags.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that never prints itself: URLs keep their scheme and host, the
/// password is masked.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn masked(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("****"));
                url.to_string()
            }
            Ok(url) if url.has_host() || url.scheme() == "sqlite" || url.scheme() == "memory" => {
                url.to_string()
            }
            _ if self.0.is_empty() => String::new(),
            _ => "****".to_owned(),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One short human line each when stdout is a terminal; JSON otherwise.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// An `EnvFilter` directive: `info`, `debug,hyper=info`, ...
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtelSettings {
    /// OTLP/HTTP endpoint; traces are exported only when set.
    pub endpoint: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    /// `memory://` (in-process) or `amqp://user:pass@host:5672/%2f`.
    pub url: Secret,
    /// Deliveries a consumer may hold unacknowledged.
    pub prefetch: u16,
    /// Failed deliveries are retried this many times, then dead-lettered.
    pub max_retries: u32,
    /// How often the outbox relay looks for unsent events, in milliseconds.
    pub relay_interval_ms: u64,
    /// The broker user each service publishes as, by service
    /// (`ordering = "emporium-ordering"`): a consumer takes a service's
    /// events only from that user. A service not named here publishes as
    /// this process's own user (one account for the whole shop).
    pub publishers: BTreeMap<String, String>,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("memory://"),
            prefetch: 32,
            max_retries: 5,
            relay_interval_ms: 200,
            publishers: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Where the identity service publishes its keys
    /// (`http://identity:8004/.well-known/jwks.json`). Not needed where
    /// identity runs in the same process: it hands its keys over directly.
    pub jwks_url: Option<String>,
    /// Extra keys trusted from a JWKS document on disk (tests, tokens
    /// minted outside identity).
    pub jwks_file: Option<PathBuf>,
    /// The `iss` claim identity writes and every service expects.
    pub issuer: String,
    /// The `aud` claim identity writes and every service expects.
    pub audience: String,
    /// Least time between two fetches of `jwks_url`: a token naming an
    /// unknown key fetches the set at most this often.
    pub jwks_refetch_secs: u64,
    /// The network between the services is private (a cluster network or
    /// a mesh), so `jwks_url` may be plain `http://` to a host that is not
    /// loopback. Off: keys are fetched over `https://` or from loopback.
    pub trusted_network: bool,
    /// Each service's own secret, with which it asks identity for the
    /// tokens it calls other services with (client credentials). A process
    /// holds the secrets of the services it runs; identity holds every
    /// service's. `emporium up` makes them when unset.
    pub service_secrets: BTreeMap<String, Secret>,
    /// How long a service's token lives.
    pub service_token_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwks_url: None,
            jwks_file: None,
            issuer: "emporium".into(),
            audience: "emporium".into(),
            jwks_refetch_secs: 10,
            trusted_network: false,
            service_secrets: BTreeMap::new(),
            service_token_secs: 600,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    /// Origins allowed by CORS at the gateway; empty means none.
    pub cors_origins: Vec<String>,
    /// Proxies (CIDR blocks) whose `X-Forwarded-For` names the client: the
    /// gateway for the services behind it, a load balancer for the
    /// gateway. Empty, the default, believes no header.
    pub trusted_proxies: Vec<crate::http::Cidr>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 15_000,
            cors_origins: vec![],
            trusted_proxies: vec![],
        }
    }
}

/// A service's own section of the configuration (`[catalog]`, ...), defined
/// in the service's crate. The kernel layers it and checks it at start-up;
/// the service reads it with [`Settings::section`].
pub trait Section:
    Serialize + DeserializeOwned + Default + Clone + fmt::Debug + Send + Sync + 'static
{
    /// The section's name, which is also the service's.
    const NAME: &'static str;
    /// Keys of the section that take comma-separated lists from the
    /// environment.
    const LIST_KEYS: &'static [&'static str] = &[];
    /// Which of the seeds' plain variables configure it when it runs alone.
    const PLAIN: Plain = Plain::NONE;
    /// The same section with every listening address on a free loopback
    /// port, for tests and benchmarks that run many shops at once.
    fn on_free_ports(self) -> Self {
        self
    }
}

/// `127.0.0.1:port`, where a service listens by default; port 0 asks for
/// a free one ([`Section::on_free_ports`]).
pub fn loopback(port: u16) -> std::net::SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// The relational backend a service runs on in production, which the
/// seeds' `DB_*` variables address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Production {
    Postgres,
    MySql,
}

/// The seeds' plain variables a lone service honours, and the keys of its
/// section they set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plain {
    /// `PORT` sets `http_addr`.
    pub http_port: bool,
    /// `GRPC_PORT` sets `grpc_addr`.
    pub grpc_port: bool,
    /// `DATABASE_URL` or `DB_*` set `database_url`, for this backend.
    pub database: Option<Production>,
    /// `REDIS_URL` or `REDIS_*` set this key.
    pub redis: Option<&'static str>,
    /// Variables that set one key of the section whenever it is loaded,
    /// alone or not: `("EMPORIUM_ADMIN_EMAIL", "admin_email")`.
    pub aliases: &'static [(&'static str, &'static str)],
}

impl Plain {
    pub const NONE: Plain = Plain {
        http_port: false,
        grpc_port: false,
        database: None,
        redis: None,
        aliases: &[],
    };
}

type Stored = Arc<dyn Any + Send + Sync>;
type Render = fn(&Stored) -> Option<toml::Value>;

/// A [`Section`] without its type, for the lists the binary keeps.
#[derive(Clone, Copy)]
pub struct SectionDef {
    pub name: &'static str,
    list_keys: &'static [&'static str],
    plain: Plain,
    parse: fn(config::Value) -> Result<Stored, config::ConfigError>,
    render: Render,
}

impl SectionDef {
    pub fn of<T: Section>() -> Self {
        Self {
            name: T::NAME,
            list_keys: T::LIST_KEYS,
            plain: T::PLAIN,
            parse: |value| Ok(Arc::new(T::deserialize(value)?) as Stored),
            render: |stored| {
                stored
                    .downcast_ref::<T>()
                    .and_then(|v| toml::Value::try_from(v).ok())
            },
        }
    }
}

impl fmt::Debug for SectionDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SectionDef({})", self.name)
    }
}

/// The services' sections, each kept as its own type.
#[derive(Clone, Default)]
struct Sections(BTreeMap<&'static str, (Stored, Render)>);

impl fmt::Debug for Sections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.values().filter_map(|(v, render)| render(v)))
            .finish()
    }
}

/// The configuration of a process: the shared sections, the peers it calls,
/// and the sections of its services.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub log: LogSettings,
    pub otel: OtelSettings,
    pub bus: BusSettings,
    pub auth: AuthSettings,
    pub http: HttpSettings,
    /// The gRPC address of each service this process calls, by service name
    /// (`catalog = "http://catalog:50050"`; a bare `host:port` is taken as
    /// `http://`). A peer running in the same process needs none.
    pub peers: BTreeMap<String, String>,
    /// Fault flags (decision 0032): whether `serve` allows them, and those
    /// on from the start.
    pub faults: crate::faults::FaultSettings,
    #[serde(skip)]
    sections: Sections,
    /// Sections not set explicitly listen on free loopback ports.
    #[serde(skip)]
    free_ports: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            log: LogSettings::default(),
            otel: OtelSettings::default(),
            bus: BusSettings::default(),
            auth: AuthSettings::default(),
            http: HttpSettings::default(),
            peers: BTreeMap::new(),
            faults: crate::faults::FaultSettings::default(),
            sections: Sections::default(),
            free_ports: false,
        }
    }
}

impl Settings {
    /// Embedded defaults with data under `data_dir` and every service on a
    /// free loopback port: for tests and benchmarks that run many shops.
    pub fn ephemeral(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            free_ports: true,
            ..Settings::default()
        }
    }

    /// A service's section: as configured, else its defaults.
    pub fn section<T: Section>(&self) -> T {
        if let Some(value) = self
            .sections
            .0
            .get(T::NAME)
            .and_then(|(v, _)| v.downcast_ref::<T>())
        {
            return value.clone();
        }
        if self.free_ports {
            T::default().on_free_ports()
        } else {
            T::default()
        }
    }

    pub fn set_section<T: Section>(&mut self, value: T) {
        self.sections
            .0
            .insert(T::NAME, (Arc::new(value), SectionDef::of::<T>().render));
    }

    /// Changes a service's section in place.
    pub fn update_section<T: Section>(&mut self, change: impl FnOnce(&mut T)) {
        let mut value = self.section::<T>();
        change(&mut value);
        self.set_section(value);
    }

    /// The relational store of `service`: `configured`, or an SQLite file
    /// under the data dir.
    pub fn database_url(&self, service: &str, configured: Option<&Secret>) -> Secret {
        configured.cloned().unwrap_or_else(|| {
            let file = self.data_dir.join(format!("{service}.db"));
            Secret::new(format!("sqlite://{}?mode=rwc", file.display()))
        })
    }

    /// The object store of `service`: `configured`, or a directory under the
    /// data dir.
    pub fn objects_url(&self, service: &str, configured: Option<&str>) -> String {
        configured.map(str::to_owned).unwrap_or_else(|| {
            let dir = absolute(&self.data_dir.join("objects").join(service));
            format!("file://{}", dir.display())
        })
    }

    /// The gRPC URL configured for `peer`, with a scheme.
    pub fn peer(&self, peer: &str) -> Option<String> {
        let raw = self.peers.get(peer)?.trim();
        if raw.is_empty() {
            return None;
        }
        Some(if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("http://{raw}")
        })
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut table = match toml::Value::try_from(self) {
            Ok(toml::Value::Table(table)) => table,
            Ok(_) => toml::Table::new(),
            Err(e) => return format!("# cannot render: {e}\n"),
        };
        for (name, (value, render)) in &self.sections.0 {
            if let Some(rendered) = render(value) {
                table.insert((*name).to_owned(), rendered);
            }
        }
        toml::to_string_pretty(&table).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Where configuration comes from, lowest precedence first after the defaults.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// A file named on the command line must exist; without one,
    /// `emporium.toml` in the working directory is read when present.
    pub file: Option<PathBuf>,
    /// The process environment (a map, so tests need not touch the real one).
    pub env: HashMap<String, String>,
    /// The one service started alone, to which the seeds' plain variables
    /// (`PORT`, `DATABASE_URL`, ...) apply.
    pub lone_service: Option<&'static str>,
    /// `key.path=value` pairs from flags; they win over everything.
    pub overrides: Vec<(String, String)>,
}

impl Sources {
    pub fn from_process_env() -> Self {
        Self {
            env: std::env::vars().collect(),
            ..Self::default()
        }
    }

    /// An environment of `pairs` only, for `lone_service` when given: what
    /// a container of one service sees.
    pub fn from_pairs(pairs: &[(&str, &str)], lone_service: Option<&'static str>) -> Self {
        Self {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            lone_service,
            ..Self::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl From<String> for ConfigError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

/// Layers the sources over the defaults, and checks the shared sections and
/// those of `services` (any other section is refused).
pub fn load(sources: &Sources, services: &[SectionDef]) -> Result<Settings, ConfigError> {
    let err = |e: config::ConfigError| ConfigError(e.to_string());
    let mut builder = config::Config::builder()
        .add_source(config::Config::try_from(&Settings::default()).map_err(err)?);
    match &sources.file {
        Some(path) => {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path.as_path()));
        }
        None => {
            builder = builder.add_source(config::File::with_name("emporium.toml").required(false));
        }
    }
    let lone = match sources.lone_service {
        Some(name) => Some(
            services
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| ConfigError(format!("unknown service `{name}`")))?,
        ),
        None => None,
    };
    let mut plain = plain_variables(&sources.env, lone);
    for def in services {
        for (variable, key) in def.plain.aliases {
            if let Some(value) = sources.env.get(*variable).filter(|v| !v.is_empty()) {
                plain.insert(
                    format!(
                        "EMPORIUM__{}__{}",
                        def.name.to_uppercase(),
                        key.to_uppercase()
                    ),
                    value.clone(),
                );
            }
        }
    }
    let prefixed: HashMap<String, String> = sources
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("EMPORIUM__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let list_keys: Vec<String> = services
        .iter()
        .flat_map(|s| s.list_keys.iter().map(move |k| format!("{}.{k}", s.name)))
        .chain([
            "http.cors_origins".to_owned(),
            "http.trusted_proxies".to_owned(),
            "faults.flags.peers".to_owned(),
        ])
        .collect();
    for map in [plain, prefixed] {
        let mut environment = config::Environment::with_prefix("EMPORIUM")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for key in &list_keys {
            environment = environment.with_list_parse_key(key);
        }
        builder = builder.add_source(environment.source(Some(map.into_iter().collect())));
    }
    for (key, value) in &sources.overrides {
        builder = builder
            .set_override(key.as_str(), value.as_str())
            .map_err(err)?;
    }
    let mut table: HashMap<String, config::Value> = builder
        .build()
        .map_err(err)?
        .try_deserialize()
        .map_err(err)?;
    let mut sections = Sections::default();
    for def in services {
        let value = table.remove(def.name).unwrap_or_else(|| {
            config::Value::new(None, config::Map::<String, config::Value>::new())
        });
        let parsed = (def.parse)(value).map_err(|e| {
            let message = e.to_string();
            // Name the key in full: the section's parser knows only its part.
            if message.contains(&format!("{}.", def.name)) {
                ConfigError(message)
            } else {
                ConfigError(format!("{message} (in section `{}`)", def.name))
            }
        })?;
        sections.0.insert(def.name, (parsed, def.render));
    }
    let shared = config::Value::new(None, table.into_iter().collect::<config::Map<_, _>>());
    let mut settings = Settings::deserialize(shared).map_err(err)?;
    settings.sections = sections;
    Ok(settings)
}

/// The seeds' plain variables, translated to `EMPORIUM__…` names.
fn plain_variables(
    env: &HashMap<String, String>,
    lone: Option<&SectionDef>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let get = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
    if let Some(level) = get("LOG_LEVEL") {
        out.insert("EMPORIUM__LOG__LEVEL".into(), level);
    }
    if let Some(endpoint) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
        out.insert("EMPORIUM__OTEL__ENDPOINT".into(), endpoint);
    }
    if let Some(url) = get("AMQP_URL") {
        out.insert("EMPORIUM__BUS__URL".into(), url);
    }
    let Some(service) = lone else { return out };
    // Peers: `<PEER>_SERVICE_URL` is the peer's gRPC address; the seeds call
    // the catalog `PRODUCT`.
    for (name, value) in env.iter().filter(|(_, v)| !v.is_empty()) {
        if let Some(peer) = name.strip_suffix("_SERVICE_URL") {
            let peer = match peer {
                "PRODUCT" => "CATALOG",
                other => other,
            };
            if !peer.is_empty() && peer.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                out.insert(format!("EMPORIUM__PEERS__{peer}"), value.clone());
            }
        }
    }
    let prefix = format!("EMPORIUM__{}__", service.name.to_uppercase());
    let plain = service.plain;
    if plain.http_port
        && let Some(port) = get("PORT")
    {
        out.insert(format!("{prefix}HTTP_ADDR"), format!("0.0.0.0:{port}"));
    }
    if plain.grpc_port
        && let Some(port) = get("GRPC_PORT")
    {
        out.insert(format!("{prefix}GRPC_ADDR"), format!("0.0.0.0:{port}"));
    }
    if let Some(backend) = plain.database
        && let Some(url) =
            get("DATABASE_URL").or_else(|| database_from_parts(&get, backend, service.name))
    {
        out.insert(format!("{prefix}DATABASE_URL"), url);
    }
    if let Some(key) = plain.redis {
        let redis = get("REDIS_URL").or_else(|| {
            let host = get("REDIS_HOST")?;
            let port = get("REDIS_PORT").unwrap_or_else(|| "6379".into());
            let password = get("REDIS_PASSWORD")
                .map(|p| format!(":{}@", encode(&p)))
                .unwrap_or_default();
            let db = get("REDIS_DB").unwrap_or_else(|| "0".into());
            Some(format!("redis://{password}{host}:{port}/{db}"))
        });
        if let Some(url) = redis {
            out.insert(format!("{prefix}{}", key.to_uppercase()), url);
        }
    }
    out
}

/// `DB_HOST`, `DB_PORT`, `DB_USER`, `DB_PASSWORD`, `DB_NAME` and
/// `DB_SSL_MODE` as a URL for the service's production backend.
fn database_from_parts(
    get: &dyn Fn(&str) -> Option<String>,
    backend: Production,
    service: &str,
) -> Option<String> {
    let host = get("DB_HOST")?;
    let (scheme, default_port, default_user) = match backend {
        Production::Postgres => ("postgres", "5432", "postgres"),
        Production::MySql => ("mysql", "3306", "root"),
    };
    let port = get("DB_PORT").unwrap_or_else(|| default_port.into());
    let user = get("DB_USER").unwrap_or_else(|| default_user.into());
    let password = get("DB_PASSWORD")
        .map(|p| format!(":{}", encode(&p)))
        .unwrap_or_default();
    let name = get("DB_NAME").unwrap_or_else(|| service.into());
    // The seeds write `DB_SSL_MODE=false|true`; PostgreSQL's own words
    // (`disable`, `verify-full`, ...) pass through.
    let ssl = get("DB_SSL_MODE").map(|mode| {
        let mode = mode.to_ascii_lowercase();
        match backend {
            Production::Postgres => match mode.as_str() {
                "false" | "off" | "0" | "disabled" => "?sslmode=disable".to_owned(),
                "true" | "on" | "1" | "required" => "?sslmode=require".to_owned(),
                other => format!("?sslmode={}", encode(other)),
            },
            Production::MySql => match mode.as_str() {
                "false" | "off" | "0" | "disable" | "disabled" => "?ssl-mode=disabled".to_owned(),
                "true" | "on" | "1" | "require" | "required" => "?ssl-mode=required".to_owned(),
                other => format!("?ssl-mode={}", encode(other)),
            },
        }
    });
    Some(format!(
        "{scheme}://{}{password}@{host}:{port}/{name}{}",
        encode(&user),
        ssl.unwrap_or_default()
    ))
}

fn encode(part: &str) -> String {
    url::form_urlencoded::byte_serialize(part.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service on PostgreSQL with a Redis cache, like the catalog.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Shelf {
        http_addr: std::net::SocketAddr,
        grpc_addr: std::net::SocketAddr,
        database_url: Option<Secret>,
        cache_url: Secret,
        tags: Vec<String>,
    }

    impl Default for Shelf {
        fn default() -> Self {
            Self {
                http_addr: loopback(8006),
                grpc_addr: loopback(50050),
                database_url: None,
                cache_url: Secret::new("memory://"),
                tags: vec![],
            }
        }
    }

    impl Section for Shelf {
        const NAME: &'static str = "shelf";
        const LIST_KEYS: &'static [&'static str] = &["tags"];
        const PLAIN: Plain = Plain {
            http_port: true,
            grpc_port: true,
            database: Some(Production::Postgres),
            redis: Some("cache_url"),
            aliases: &[],
        };
    }

    /// A service on MariaDB whose Redis holds idempotency keys, like payment.
    #[derive(Clone, Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Till {
        database_url: Option<Secret>,
        idempotency_url: Option<Secret>,
    }

    impl Section for Till {
        const NAME: &'static str = "till";
        const PLAIN: Plain = Plain {
            database: Some(Production::MySql),
            redis: Some("idempotency_url"),
            ..Plain::NONE
        };
    }

    fn sections() -> Vec<SectionDef> {
        vec![SectionDef::of::<Shelf>(), SectionDef::of::<Till>()]
    }

    fn load_env(env: &[(&str, &str)], lone: Option<&'static str>) -> Result<Settings, ConfigError> {
        let sources = Sources {
            file: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            lone_service: lone,
            overrides: vec![],
        };
        load(&sources, &sections())
    }

    #[test]
    fn defaults_are_embedded() {
        let settings = load_env(&[], None).unwrap();
        let shelf = settings.section::<Shelf>();
        assert_eq!(shelf.http_addr.port(), 8006);
        assert!(
            settings
                .database_url("shelf", shelf.database_url.as_ref())
                .expose()
                .starts_with("sqlite://")
        );
        assert_eq!(settings.bus.url.expose(), "memory://");
        assert!(settings.peers.is_empty());
    }

    #[test]
    fn prefixed_environment_beats_plain_variables_and_flags_beat_both() {
        let env = [
            ("PORT", "9001"),
            ("EMPORIUM__SHELF__HTTP_ADDR", "127.0.0.1:9002"),
        ];
        let settings = load_env(&env, Some("shelf")).unwrap();
        assert_eq!(settings.section::<Shelf>().http_addr.port(), 9002);
        let sources = Sources {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            lone_service: Some("shelf"),
            overrides: vec![("shelf.http_addr".into(), "127.0.0.1:9003".into())],
            file: None,
        };
        assert_eq!(
            load(&sources, &sections())
                .unwrap()
                .section::<Shelf>()
                .http_addr
                .port(),
            9003
        );
    }

    #[test]
    fn plain_variables_configure_a_lone_service_on_postgres() {
        let env = [
            ("PORT", "9100"),
            ("GRPC_PORT", "9101"),
            ("DB_HOST", "db"),
            ("DB_USER", "shop"),
            ("DB_PASSWORD", "p@ss"),
            ("REDIS_HOST", "cache"),
            ("AMQP_URL", "amqp://guest:guest@mq:5672/%2f"),
        ];
        let settings = load_env(&env, Some("shelf")).unwrap();
        let shelf = settings.section::<Shelf>();
        assert_eq!(shelf.http_addr.port(), 9100);
        assert_eq!(shelf.grpc_addr.port(), 9101);
        assert_eq!(
            shelf.database_url.unwrap().expose(),
            "postgres://shop:p%40ss@db:5432/shelf"
        );
        assert_eq!(shelf.cache_url.expose(), "redis://cache:6379/0");
        assert_eq!(settings.bus.url.masked(), "amqp://guest:****@mq:5672/%2f");
        // without a lone service, PORT means nothing
        let settings = load_env(&env, None).unwrap();
        assert_eq!(settings.section::<Shelf>().http_addr.port(), 8006);
        // and it applies to the lone service only
        assert!(
            load_env(&env, Some("till"))
                .unwrap()
                .section::<Shelf>()
                .database_url
                .is_none()
        );
    }

    #[test]
    fn the_seeds_db_variables_address_a_mariadb_service() {
        // seed 002's payment service: DB_PORT=3306, DB_SSL_MODE=false
        let env = [
            ("DB_HOST", "mariadb"),
            ("DB_PORT", "3306"),
            ("DB_USER", "payment"),
            ("DB_PASSWORD", "secret"),
            ("DB_NAME", "payments"),
            ("DB_SSL_MODE", "false"),
            ("REDIS_URL", "redis://redis:6379/2"),
        ];
        let till = load_env(&env, Some("till")).unwrap().section::<Till>();
        assert_eq!(
            till.database_url.unwrap().expose(),
            "mysql://payment:secret@mariadb:3306/payments?ssl-mode=disabled"
        );
        assert_eq!(
            till.idempotency_url.unwrap().expose(),
            "redis://redis:6379/2"
        );
        // defaults follow the backend, not PostgreSQL's
        let till = load_env(&[("DB_HOST", "mariadb")], Some("till"))
            .unwrap()
            .section::<Till>();
        assert_eq!(
            till.database_url.unwrap().expose(),
            "mysql://root@mariadb:3306/till"
        );
        let shelf = load_env(&[("DB_HOST", "pg"), ("DB_SSL_MODE", "true")], Some("shelf"))
            .unwrap()
            .section::<Shelf>();
        assert_eq!(
            shelf.database_url.unwrap().expose(),
            "postgres://postgres@pg:5432/shelf?sslmode=require"
        );
    }

    #[test]
    fn peers_are_grpc_addresses_named_by_service() {
        let env = [
            ("PRODUCT_SERVICE_URL", "catalog:50050"),
            ("BASKET_SERVICE_URL", "http://basket:50051"),
        ];
        let settings = load_env(&env, Some("till")).unwrap();
        assert_eq!(
            settings.peer("catalog").as_deref(),
            Some("http://catalog:50050")
        );
        assert_eq!(
            settings.peer("basket").as_deref(),
            Some("http://basket:50051")
        );
        assert_eq!(settings.peer("inventory"), None);
        let settings = load_env(&[("EMPORIUM__PEERS__INVENTORY", "inv:50054")], None).unwrap();
        assert_eq!(
            settings.peer("inventory").as_deref(),
            Some("http://inv:50054")
        );
    }

    #[test]
    fn list_keys_split_on_commas() {
        let settings = load_env(&[("EMPORIUM__SHELF__TAGS", "a,b")], None).unwrap();
        assert_eq!(settings.section::<Shelf>().tags, ["a", "b"]);
    }

    #[test]
    fn a_bad_setting_is_named() {
        let err = load_env(&[("EMPORIUM__SHELF__HTTP_ADDR", "not-an-address")], None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("http_addr") && text.contains("shelf"),
            "{err}"
        );
        let err = load_env(&[("EMPORIUM__SHELF__NO_SUCH_KEY", "1")], None).unwrap_err();
        assert!(err.to_string().contains("no_such_key"), "{err}");
        let err = load_env(&[("EMPORIUM__NOPE__X", "1")], None).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = load_env(&[("EMPORIUM__LOG__NOPE", "1")], None).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let sources = Sources {
            file: Some(PathBuf::from("/nonexistent/emporium.toml")),
            ..Sources::default()
        };
        let err = load(&sources, &sections()).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let mut settings = load_env(&[], None).unwrap();
        settings.update_section::<Shelf>(|s| {
            s.database_url = Some(Secret::new("postgres://u:hunter2@h/db"));
        });
        let text = settings.to_masked_toml();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("postgres://u:****@h/db"), "{text}");
        assert!(
            text.contains("[shelf]") && text.contains("[till]"),
            "{text}"
        );
        assert!(!format!("{settings:?}").contains("hunter2"));
        // the value itself is intact
        assert_eq!(
            settings.section::<Shelf>().database_url.unwrap().expose(),
            "postgres://u:hunter2@h/db"
        );
    }

    #[test]
    fn ephemeral_settings_put_sections_on_free_ports() {
        #[derive(Clone, Debug, Serialize, Deserialize)]
        struct Port {
            port: u16,
        }
        impl Default for Port {
            fn default() -> Self {
                Port { port: 8000 }
            }
        }
        impl Section for Port {
            const NAME: &'static str = "port";
            fn on_free_ports(self) -> Self {
                Port { port: 0 }
            }
        }
        let mut settings = Settings::ephemeral(Path::new("/tmp/x"));
        settings.set_section(Port { port: 7 });
        assert_eq!(settings.section::<Port>().port, 7, "set explicitly");
        assert_eq!(
            Settings::ephemeral(Path::new("/tmp/x"))
                .section::<Port>()
                .port,
            0
        );
        assert_eq!(Settings::default().section::<Port>().port, 8000);
    }
}
