//! Layered configuration: defaults < `emporium.toml` < environment < flags.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every service the binary knows how to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Catalog,
    Gateway,
}

impl Service {
    /// In start-up order: a service comes after the ones it calls.
    pub const ALL: [Service; 2] = [Service::Catalog, Service::Gateway];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Catalog => "catalog",
            Service::Gateway => "gateway",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|service| service.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Service::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown service `{s}` (known: {})", known.join(", "))
            })
    }
}

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
    #[default]
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
            format: LogFormat::Json,
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
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("memory://"),
            prefetch: 32,
            max_retries: 5,
            relay_interval_ms: 200,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Where the identity service publishes its keys.
    pub jwks_url: Option<String>,
    /// A JWKS document on disk; `emporium up` writes a development one.
    pub jwks_file: Option<PathBuf>,
    /// Expected `iss` claim.
    pub issuer: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    /// Origins allowed by CORS at the gateway; empty means none.
    pub cors_origins: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 15_000,
            cors_origins: vec![],
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `sqlite://…`, `postgres://…` or `mysql://…`; embedded SQLite when unset.
    pub database_url: Option<Secret>,
    /// `memory://` or `redis://…`.
    pub cache_url: Secret,
    pub cache_ttl_secs: u64,
    /// `file:///dir`, `s3://bucket` or `memory://`; a directory under the
    /// data dir when unset.
    pub objects_url: Option<String>,
    /// Largest image upload accepted.
    pub image_limit_bytes: usize,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            http_addr: ([127, 0, 0, 1], 8006).into(),
            grpc_addr: ([127, 0, 0, 1], 50050).into(),
            database_url: None,
            cache_url: Secret::new("memory://"),
            cache_ttl_secs: 300,
            objects_url: None,
            image_limit_bytes: 5 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    pub http_addr: SocketAddr,
    /// Catalog replicas (HTTP base URLs); the local catalog when empty and
    /// it runs in the same process.
    pub catalog: Vec<String>,
    /// Consecutive failures after which a replica is taken out of rotation.
    pub eject_after_failures: u32,
    /// How long an ejected replica stays out.
    pub eject_secs: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            http_addr: ([127, 0, 0, 1], 8080).into(),
            catalog: vec![],
            eject_after_failures: 3,
            eject_secs: 10,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub log: LogSettings,
    pub otel: OtelSettings,
    pub bus: BusSettings,
    pub auth: AuthSettings,
    pub http: HttpSettings,
    pub catalog: CatalogSettings,
    pub gateway: GatewaySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            log: LogSettings::default(),
            otel: OtelSettings::default(),
            bus: BusSettings::default(),
            auth: AuthSettings {
                issuer: "emporium".into(),
                ..AuthSettings::default()
            },
            http: HttpSettings::default(),
            catalog: CatalogSettings::default(),
            gateway: GatewaySettings::default(),
        }
    }
}

impl Settings {
    /// Embedded defaults with data under `data_dir` and every service on a
    /// free loopback port: for tests and benchmarks that run many shops.
    pub fn ephemeral(data_dir: &Path) -> Self {
        let free: SocketAddr = ([127, 0, 0, 1], 0).into();
        Self {
            data_dir: data_dir.to_path_buf(),
            catalog: CatalogSettings {
                http_addr: free,
                grpc_addr: free,
                ..CatalogSettings::default()
            },
            gateway: GatewaySettings {
                http_addr: free,
                ..GatewaySettings::default()
            },
            ..Settings::default()
        }
    }

    /// The relational store of a service: the configured URL, or an SQLite
    /// file under the data dir.
    pub fn database_url(&self, service: Service) -> Secret {
        let configured = match service {
            Service::Catalog => self.catalog.database_url.clone(),
            Service::Gateway => None,
        };
        configured.unwrap_or_else(|| {
            let file = self.data_dir.join(format!("{service}.db"));
            Secret::new(format!("sqlite://{}?mode=rwc", file.display()))
        })
    }

    /// The object store of a service: the configured URL, or a directory
    /// under the data dir.
    pub fn objects_url(&self, service: Service) -> String {
        let configured = match service {
            Service::Catalog => self.catalog.objects_url.clone(),
            Service::Gateway => None,
        };
        configured.unwrap_or_else(|| {
            let dir = absolute(&self.data_dir.join("objects").join(service.as_str()));
            format!("file://{}", dir.display())
        })
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
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
    pub lone_service: Option<Service>,
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
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl From<String> for ConfigError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
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
    let plain = plain_variables(&sources.env, sources.lone_service);
    let prefixed: HashMap<String, String> = sources
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("EMPORIUM__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for map in [plain, prefixed] {
        builder = builder.add_source(
            config::Environment::with_prefix("EMPORIUM")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("gateway.catalog")
                .with_list_parse_key("http.cors_origins")
                .source(Some(map.into_iter().collect())),
        );
    }
    for (key, value) in &sources.overrides {
        builder = builder
            .set_override(key.as_str(), value.as_str())
            .map_err(err)?;
    }
    let settings: Settings = builder
        .build()
        .map_err(err)?
        .try_deserialize()
        .map_err(err)?;
    Ok(settings)
}

/// The seeds' plain variables, translated to `EMPORIUM__…` names.
fn plain_variables(
    env: &HashMap<String, String>,
    lone: Option<Service>,
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
    let prefix = format!("EMPORIUM__{}__", service.as_str().to_uppercase());
    if let Some(port) = get("PORT") {
        out.insert(format!("{prefix}HTTP_ADDR"), format!("0.0.0.0:{port}"));
    }
    if service == Service::Gateway {
        // The gateway's peers are the services' HTTP replicas.
        if let Some(urls) = get("PRODUCT_SERVICE_URL").or_else(|| get("CATALOG_SERVICE_URL")) {
            out.insert("EMPORIUM__GATEWAY__CATALOG".into(), urls);
        }
        return out;
    }
    if let Some(port) = get("GRPC_PORT") {
        out.insert(format!("{prefix}GRPC_ADDR"), format!("0.0.0.0:{port}"));
    }
    let database = get("DATABASE_URL").or_else(|| {
        let host = get("DB_HOST")?;
        let port = get("DB_PORT").unwrap_or_else(|| "5432".into());
        let user = get("DB_USER").unwrap_or_else(|| "postgres".into());
        let password = get("DB_PASSWORD")
            .map(|p| format!(":{}", encode(&p)))
            .unwrap_or_default();
        let name = get("DB_NAME").unwrap_or_else(|| service.as_str().into());
        let ssl = get("DB_SSL_MODE")
            .map(|m| format!("?sslmode={m}"))
            .unwrap_or_default();
        Some(format!(
            "postgres://{}{password}@{host}:{port}/{name}{ssl}",
            encode(&user)
        ))
    });
    if let Some(url) = database {
        out.insert(format!("{prefix}DATABASE_URL"), url);
    }
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
        out.insert(format!("{prefix}CACHE_URL"), url);
    }
    out
}

fn encode(part: &str) -> String {
    url::form_urlencoded::byte_serialize(part.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(env: &[(&str, &str)], lone: Option<Service>) -> Sources {
        Sources {
            file: Some(PathBuf::from("/nonexistent-is-checked-below")),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            lone_service: lone,
            overrides: vec![],
        }
    }

    fn load_env(env: &[(&str, &str)], lone: Option<Service>) -> Result<Settings, ConfigError> {
        let mut s = sources(env, lone);
        s.file = None;
        load(&s)
    }

    #[test]
    fn defaults_are_embedded() {
        let settings = load_env(&[], None).unwrap();
        assert_eq!(settings.catalog.http_addr.port(), 8006);
        assert!(
            settings
                .database_url(Service::Catalog)
                .expose()
                .starts_with("sqlite://")
        );
        assert_eq!(settings.bus.url.expose(), "memory://");
    }

    #[test]
    fn prefixed_environment_beats_plain_variables_and_flags_beat_both() {
        let env = [
            ("PORT", "9001"),
            ("EMPORIUM__CATALOG__HTTP_ADDR", "127.0.0.1:9002"),
        ];
        let settings = load_env(&env, Some(Service::Catalog)).unwrap();
        assert_eq!(settings.catalog.http_addr.port(), 9002);
        let mut s = sources(&env, Some(Service::Catalog));
        s.file = None;
        s.overrides
            .push(("catalog.http_addr".into(), "127.0.0.1:9003".into()));
        assert_eq!(load(&s).unwrap().catalog.http_addr.port(), 9003);
    }

    #[test]
    fn plain_variables_configure_a_lone_service() {
        let env = [
            ("PORT", "9100"),
            ("GRPC_PORT", "9101"),
            ("DB_HOST", "db"),
            ("DB_USER", "shop"),
            ("DB_PASSWORD", "p@ss"),
            ("REDIS_HOST", "cache"),
            ("AMQP_URL", "amqp://guest:guest@mq:5672/%2f"),
        ];
        let settings = load_env(&env, Some(Service::Catalog)).unwrap();
        assert_eq!(settings.catalog.http_addr.port(), 9100);
        assert_eq!(settings.catalog.grpc_addr.port(), 9101);
        assert_eq!(
            settings.database_url(Service::Catalog).expose(),
            "postgres://shop:p%40ss@db:5432/catalog"
        );
        assert_eq!(settings.catalog.cache_url.expose(), "redis://cache:6379/0");
        assert_eq!(settings.bus.url.masked(), "amqp://guest:****@mq:5672/%2f");
        // without a lone service, PORT means nothing
        assert_eq!(load_env(&env, None).unwrap().catalog.http_addr.port(), 8006);
    }

    #[test]
    fn a_lone_gateway_takes_its_replicas_from_plain_variables() {
        let env = [
            ("PORT", "9200"),
            ("PRODUCT_SERVICE_URL", "http://a:8006,http://b:8006"),
        ];
        let settings = load_env(&env, Some(Service::Gateway)).unwrap();
        assert_eq!(settings.gateway.http_addr.port(), 9200);
        assert_eq!(settings.gateway.catalog, ["http://a:8006", "http://b:8006"]);
        assert_eq!(
            settings.catalog.http_addr.port(),
            8006,
            "PORT is the gateway's alone"
        );
        assert!(
            load_env(&env, Some(Service::Catalog))
                .unwrap()
                .gateway
                .catalog
                .is_empty()
        );
    }

    #[test]
    fn a_bad_setting_is_named() {
        let err =
            load_env(&[("EMPORIUM__CATALOG__HTTP_ADDR", "not-an-address")], None).unwrap_err();
        assert!(err.to_string().contains("catalog.http_addr"), "{err}");
        let err = load_env(&[("EMPORIUM__CATALOG__NO_SUCH_KEY", "1")], None).unwrap_err();
        assert!(err.to_string().contains("no_such_key"), "{err}");
        let err = load(&sources(&[], None)).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let mut settings = Settings::default();
        settings.catalog.database_url = Some(Secret::new("postgres://u:hunter2@h/db"));
        let text = settings.to_masked_toml();
        assert!(!text.contains("hunter2"));
        assert!(text.contains("postgres://u:****@h/db"));
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn service_names_round_trip() {
        for service in Service::ALL {
            assert_eq!(service.as_str().parse::<Service>().unwrap(), service);
        }
        assert!("nope".parse::<Service>().unwrap_err().contains("catalog"));
    }
}
