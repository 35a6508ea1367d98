//! Service configuration, twelve-factor style: built-in defaults, then an optional TOML file
//! (`FAIRCHANCE_CONFIG`), then environment variables. Everything is validated at start and
//! every bad value is reported at once, naming its key, where it was set, and what is wrong.
//!
//! Business rules do not live here; they are in the playbook (see [`crate::playbook`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::auth::{AuthMode, Tokens};
use crate::tls::{ClientTls, TlsConfig};

/// Settings shared by every service binary.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// gRPC listen address (`FAIRCHANCE_LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// Database URL (`DATABASE_URL`): `sqlite://path.db` or `postgres://...`.
    pub database_url: String,
    /// Maximum pooled database connections (`FAIRCHANCE_DB_MAX_CONNECTIONS`).
    pub db_max_connections: u32,
    /// Run migrations on start (`FAIRCHANCE_MIGRATE_ON_START`).
    pub migrate_on_start: bool,
    /// Schedulers firing due timers side by side in this process (`FAIRCHANCE_TIMER_WORKERS`);
    /// `None` leaves it to the backend (see [`crate::timers::workers`]).
    pub timer_workers: Option<usize>,
    /// The playbook file (`FAIRCHANCE_PLAYBOOK`); `None` runs with built-in defaults.
    pub playbook: Option<PathBuf>,
    /// Server-side limits and shutdown behaviour.
    pub server: ServerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
    /// Addresses of the other services this one calls (`FAIRCHANCE_<SERVICE>_URL`).
    pub upstreams: BTreeMap<&'static str, String>,
    /// How this service calls the others (see [`crate::client`]).
    pub client: ClientConfig,
    /// Where the Prometheus endpoint (`/metrics`, `/healthz`) listens, on its own port
    /// (`FAIRCHANCE_METRICS_ADDR`, default `0.0.0.0:9090`); `None` (`off`) serves none.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether `FAIRCHANCE_METRICS_ADDR` was set. A service that cannot listen on an address
    /// it was given does not start; on the default it warns and runs without the endpoint
    /// (several binaries on one machine, as the bench runs them).
    pub metrics_addr_explicit: bool,
}

/// Default of `FAIRCHANCE_METRICS_ADDR`: the port Prometheus scrapes in every pod.
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9090);

/// Limits the gRPC server enforces on every call.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Per-request deadline on the server side (`FAIRCHANCE_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// In-flight calls across all connections; beyond it calls are shed with
    /// RESOURCE_EXHAUSTED rather than queued (`FAIRCHANCE_CONCURRENCY_LIMIT`).
    pub concurrency_limit: usize,
    /// Streams one caller may hold open at once (`FAIRCHANCE_MAX_STREAMS_PER_CALLER`); see
    /// [`crate::streams`].
    pub max_streams_per_caller: usize,
    /// Largest message a service accepts or sends (`FAIRCHANCE_MAX_MESSAGE_BYTES`); outgoing
    /// calls use the same limit in both directions.
    pub max_message_bytes: usize,
    /// Longest graceful shutdown drains in-flight calls before giving up
    /// (`FAIRCHANCE_DRAIN_TIMEOUT`).
    pub drain_timeout: Duration,
    /// How often health re-checks the database (`FAIRCHANCE_HEALTH_INTERVAL`).
    pub health_interval: Duration,
    /// Whether calls need a bearer token, and the known ones (`FAIRCHANCE_AUTH`,
    /// `FAIRCHANCE_TOKENS_FILE`).
    pub auth: AuthMode,
    /// The tokens file the server keeps re-reading while auth is required
    /// (`FAIRCHANCE_TOKENS_FILE`, every `FAIRCHANCE_TOKENS_RELOAD`); `None` keeps the tokens
    /// in `auth` for good.
    pub tokens_file: Option<WatchedFile>,
    /// TLS, mutual when a client CA is set (`FAIRCHANCE_TLS_CERT`, `FAIRCHANCE_TLS_KEY`,
    /// `FAIRCHANCE_TLS_CLIENT_CA`); `None` serves plaintext.
    pub tls: Option<TlsConfig>,
    /// A plaintext port serving only gRPC health (`FAIRCHANCE_HEALTH_ADDR`), for the
    /// kubelet's probes, which cannot speak TLS; `None` serves none.
    pub health_addr: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            concurrency_limit: 1024,
            max_streams_per_caller: 256,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            drain_timeout: Duration::from_secs(25),
            health_interval: Duration::from_secs(5),
            auth: AuthMode::Off,
            tokens_file: None,
            tls: None,
            health_addr: None,
        }
    }
}

/// A credential file named by a setting, re-read while the service runs so a rotated Secret
/// takes effect without a restart (see [`crate::auth::AuthLayer::reload_from`] and
/// [`crate::client::Connector`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFile {
    pub path: PathBuf,
    /// The setting that named it and where it was set, for messages.
    pub origin: String,
    /// How often it is re-read (`FAIRCHANCE_TOKENS_RELOAD`).
    pub every: Duration,
}

/// Default of `FAIRCHANCE_TOKENS_RELOAD`: a rotated token works within this (plus the
/// kubelet's own delay in updating a mounted Secret, up to about a minute).
pub const DEFAULT_TOKENS_RELOAD: Duration = Duration::from_secs(10);

/// Default of `FAIRCHANCE_MAX_MESSAGE_BYTES`: 1 MiB, in both directions. A bigger message is
/// a bug or an attack; lists are paged and bulk submissions are streamed item by item.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// How a service calls other services (see [`crate::client::Connector`]).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Longest wait for a connection to another service (`FAIRCHANCE_CLIENT_CONNECT_TIMEOUT`).
    pub connect_timeout: Duration,
    /// Deadline of a unary call that names none of its own (`FAIRCHANCE_CLIENT_DEADLINE`);
    /// it covers every attempt. Event streams have none: keepalive watches them instead.
    pub deadline: Duration,
    /// Attempts of one call, the first included (`FAIRCHANCE_CLIENT_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// First retry's backoff ceiling, doubling per attempt (`FAIRCHANCE_CLIENT_BACKOFF`).
    pub backoff: Duration,
    /// Largest message sent or received (`FAIRCHANCE_MAX_MESSAGE_BYTES`, as the server's).
    pub max_message_bytes: usize,
    /// The bearer token sent on every call (`FAIRCHANCE_CLIENT_TOKEN_FILE`); `None` sends none.
    pub token: Option<BearerToken>,
    /// The file `token` came from, re-read while the service runs, so an upstream's token
    /// rotation completes without a restart; `None` sends `token` for good.
    pub token_file: Option<WatchedFile>,
    /// TLS for `https://` upstreams (`FAIRCHANCE_CLIENT_CA`, `FAIRCHANCE_CLIENT_CERT`,
    /// `FAIRCHANCE_CLIENT_KEY`); `None` allows only `http://` upstreams.
    pub tls: Option<ClientTls>,
}

/// A bearer token this service presents to the others; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// A token as given; fails unless it is one word of visible ASCII (it goes into an
    /// HTTP header).
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.is_empty() {
            return Err("the token is empty".into());
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(
                "the token must be one line of visible ASCII, without spaces (it is sent as an HTTP header)"
                    .into(),
            );
        }
        Ok(Self(token.to_owned()))
    }

    /// The token in the file at `path` (surrounding whitespace, such as a final newline, is
    /// ignored).
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        Self::new(&text)
    }

    /// The `authorization` header value.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(5),
            max_attempts: 4,
            backoff: Duration::from_millis(50),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            token: None,
            token_file: None,
            tls: None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON unless standard output is a terminal.
    Auto,
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            _ => Err("expected one of auto, json, pretty".into()),
        }
    }
}

/// Logging and tracing settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `FAIRCHANCE_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// Filter directives (`FAIRCHANCE_LOG`, else `RUST_LOG`), e.g. `info,sqlx=warn`.
    pub log_filter: String,
    /// OTLP gRPC endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`); traces are exported only when set.
    pub otlp_endpoint: Option<String>,
    /// Service name on exported spans (`OTEL_SERVICE_NAME`, else the service's own name).
    pub service_name: String,
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// Where configuration values come from: a process environment and an optional file.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    env: BTreeMap<String, String>,
    file: Option<(String, toml::Table)>,
}

/// The environment variable naming the optional configuration file.
pub const CONFIG_FILE_VAR: &str = "FAIRCHANCE_CONFIG";

impl Sources {
    /// The process environment, plus the file named by `FAIRCHANCE_CONFIG` if set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(std::env::vars().collect())
    }

    /// An explicit environment (tests, the all-in-one dev server).
    pub fn from_map(env: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let file = match env.get(CONFIG_FILE_VAR) {
            Some(path) if !path.is_empty() => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(vec![format!("{CONFIG_FILE_VAR}={path}: cannot read: {e}")])
                })?;
                let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                    ConfigError(vec![format!("{CONFIG_FILE_VAR}={path}: {e}")])
                })?;
                Some((path.clone(), table))
            }
            _ => None,
        };
        Ok(Self { env, file })
    }

    /// The raw value of `key` and where it came from; environment wins over the file.
    /// In the file, keys are written in lower case without the `FAIRCHANCE_` prefix
    /// (`listen_addr`, `database_url`, `otel_exporter_otlp_endpoint`).
    fn raw(&self, key: &str) -> Option<(String, String)> {
        if let Some(v) = self.env.get(key).filter(|v| !v.is_empty()) {
            return Some((v.clone(), format!("{key} (environment)")));
        }
        let (path, table) = self.file.as_ref()?;
        let file_key = file_key(key);
        let value = table.get(&file_key)?;
        let text = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some((text, format!("{file_key} in {path}")))
    }

    /// Reads one setting with its own problems collected into `errors`.
    fn get<T>(&self, errors: &mut Vec<String>, key: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.parse_with(errors, key, default, |s| {
            s.parse::<T>().map_err(|e| e.to_string())
        })
    }

    fn parse_with<T>(
        &self,
        errors: &mut Vec<String>,
        key: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        match self.raw(key) {
            None => default,
            Some((text, origin)) => match parse(text.trim()) {
                Ok(v) => v,
                Err(why) => {
                    errors.push(format!("{origin}: invalid value {text:?}: {why}"));
                    default
                }
            },
        }
    }

    fn duration(&self, errors: &mut Vec<String>, key: &str, default: Duration) -> Duration {
        self.parse_with(errors, key, default, |s| {
            humantime::parse_duration(s)
                .map_err(|e| format!("{e} (expected a duration such as 500ms, 30s, 5m)"))
        })
    }

    fn string(&self, key: &str) -> Option<String> {
        self.raw(key).map(|(v, _)| v)
    }

    /// Keys in the file that no setting reads: almost always a typo.
    fn unknown_file_keys(&self, known: &[&str]) -> Vec<String> {
        let Some((path, table)) = &self.file else {
            return Vec::new();
        };
        let known: Vec<String> = known.iter().map(|k| file_key(k)).collect();
        table
            .keys()
            .filter(|k| !known.contains(k))
            .map(|k| {
                format!(
                    "{k} in {path}: unknown setting (known: {})",
                    known.join(", ")
                )
            })
            .collect()
    }
}

fn file_key(env_key: &str) -> String {
    env_key
        .strip_prefix("FAIRCHANCE_")
        .unwrap_or(env_key)
        .to_ascii_lowercase()
}

const KNOWN_KEYS: &[&str] = &[
    "FAIRCHANCE_LISTEN_ADDR",
    "DATABASE_URL",
    "FAIRCHANCE_DB_MAX_CONNECTIONS",
    "FAIRCHANCE_MIGRATE_ON_START",
    "FAIRCHANCE_TIMER_WORKERS",
    "FAIRCHANCE_PLAYBOOK",
    "FAIRCHANCE_REQUEST_TIMEOUT",
    "FAIRCHANCE_CONCURRENCY_LIMIT",
    "FAIRCHANCE_MAX_STREAMS_PER_CALLER",
    "FAIRCHANCE_MAX_MESSAGE_BYTES",
    "FAIRCHANCE_DRAIN_TIMEOUT",
    "FAIRCHANCE_HEALTH_INTERVAL",
    "FAIRCHANCE_LOG_FORMAT",
    "FAIRCHANCE_LOG",
    "RUST_LOG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "FAIRCHANCE_INTAKE_URL",
    "FAIRCHANCE_ACTIVATION_URL",
    "FAIRCHANCE_FOLLOWUP_URL",
    "FAIRCHANCE_PROOF_URL",
    "FAIRCHANCE_METRICS_ADDR",
    "FAIRCHANCE_AUTH",
    "FAIRCHANCE_TOKENS_FILE",
    "FAIRCHANCE_TOKENS_RELOAD",
    "FAIRCHANCE_TLS_CERT",
    "FAIRCHANCE_TLS_KEY",
    "FAIRCHANCE_TLS_CLIENT_CA",
    "FAIRCHANCE_HEALTH_ADDR",
    "FAIRCHANCE_CLIENT_CONNECT_TIMEOUT",
    "FAIRCHANCE_CLIENT_DEADLINE",
    "FAIRCHANCE_CLIENT_MAX_ATTEMPTS",
    "FAIRCHANCE_CLIENT_BACKOFF",
    "FAIRCHANCE_CLIENT_TOKEN_FILE",
    "FAIRCHANCE_CLIENT_CA",
    "FAIRCHANCE_CLIENT_CERT",
    "FAIRCHANCE_CLIENT_KEY",
];

/// Defaults a particular binary starts from.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub service_name: &'static str,
    pub listen_addr: SocketAddr,
    pub database_url: String,
}

impl Defaults {
    /// A service's defaults: listen on all interfaces at `port`, SQLite file under `./data`.
    pub fn service(service_name: &'static str, port: u16) -> Self {
        Self {
            service_name,
            listen_addr: SocketAddr::from(([0, 0, 0, 0], port)),
            database_url: format!("sqlite://data/{service_name}.db"),
        }
    }
}

impl ServiceConfig {
    /// Loads and validates the configuration.
    pub fn load(sources: &Sources, defaults: &Defaults) -> Result<Self, ConfigError> {
        let mut errors = sources.unknown_file_keys(KNOWN_KEYS);
        let server_defaults = ServerConfig::default();
        let listen_addr = sources.get(&mut errors, "FAIRCHANCE_LISTEN_ADDR", defaults.listen_addr);
        let database_url = sources.parse_with(
            &mut errors,
            "DATABASE_URL",
            defaults.database_url.clone(),
            |s| crate::db::Backend::of_url(s).map(|_| s.to_owned()),
        );
        let db_max_connections = sources.parse_with(
            &mut errors,
            "FAIRCHANCE_DB_MAX_CONNECTIONS",
            16,
            |s| match s.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err("expected a whole number from 1 to 1000".into()),
            },
        );
        let migrate_on_start =
            sources.parse_with(&mut errors, "FAIRCHANCE_MIGRATE_ON_START", true, parse_bool);
        let timer_workers =
            sources.parse_with(&mut errors, "FAIRCHANCE_TIMER_WORKERS", None, |s| {
                match s.parse::<usize>() {
                    Ok(n) if (1..=64).contains(&n) => Ok(Some(n)),
                    _ => Err("expected a whole number from 1 to 64".into()),
                }
            });
        if let Some(workers) = timer_workers
            && workers >= db_max_connections as usize
        {
            errors.push(format!(
                "FAIRCHANCE_TIMER_WORKERS: {workers} schedulers would hold all {db_max_connections} \
                 connections of FAIRCHANCE_DB_MAX_CONNECTIONS while they fire, leaving none for \
                 calls and consumers; use fewer, or a larger pool"
            ));
        }
        let playbook = sources.string("FAIRCHANCE_PLAYBOOK").map(PathBuf::from);
        if let Some(path) = &playbook
            && !path.is_file()
        {
            errors.push(format!(
                "FAIRCHANCE_PLAYBOOK: {} is not a readable file",
                path.display()
            ));
        }
        let request_timeout = sources.duration(
            &mut errors,
            "FAIRCHANCE_REQUEST_TIMEOUT",
            server_defaults.request_timeout,
        );
        let concurrency_limit = sources.parse_with(
            &mut errors,
            "FAIRCHANCE_CONCURRENCY_LIMIT",
            server_defaults.concurrency_limit,
            |s| match s.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err("expected a whole number of at least 1".into()),
            },
        );
        let max_streams_per_caller = sources.parse_with(
            &mut errors,
            "FAIRCHANCE_MAX_STREAMS_PER_CALLER",
            server_defaults.max_streams_per_caller,
            |s| match s.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err("expected a whole number of at least 1".into()),
            },
        );
        let max_message_bytes = sources.parse_with(
            &mut errors,
            "FAIRCHANCE_MAX_MESSAGE_BYTES",
            server_defaults.max_message_bytes,
            |s| match s.parse::<usize>() {
                Ok(n) if (1024..=256 * 1024 * 1024).contains(&n) => Ok(n),
                _ => Err("expected a number of bytes from 1024 to 268435456".into()),
            },
        );
        let drain_timeout = sources.duration(
            &mut errors,
            "FAIRCHANCE_DRAIN_TIMEOUT",
            server_defaults.drain_timeout,
        );
        let health_interval = sources.duration(
            &mut errors,
            "FAIRCHANCE_HEALTH_INTERVAL",
            server_defaults.health_interval,
        );
        let tokens_reload = sources.duration(
            &mut errors,
            "FAIRCHANCE_TOKENS_RELOAD",
            DEFAULT_TOKENS_RELOAD,
        );
        for (key, value) in [
            ("FAIRCHANCE_REQUEST_TIMEOUT", request_timeout),
            ("FAIRCHANCE_HEALTH_INTERVAL", health_interval),
            ("FAIRCHANCE_TOKENS_RELOAD", tokens_reload),
        ] {
            if value.is_zero() {
                errors.push(format!("{key}: must be longer than zero"));
            }
        }
        let client = client_config(sources, &mut errors, max_message_bytes, tokens_reload);
        let log_format = sources.get(&mut errors, "FAIRCHANCE_LOG_FORMAT", LogFormat::Auto);
        let log_filter = sources
            .string("FAIRCHANCE_LOG")
            .or_else(|| sources.string("RUST_LOG"))
            .unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_filter) {
            errors.push(format!(
                "FAIRCHANCE_LOG: invalid filter {log_filter:?}: {e}"
            ));
        }
        let otlp_endpoint =
            sources.parse_with(&mut errors, "OTEL_EXPORTER_OTLP_ENDPOINT", None, |s| {
                parse_url(s, "http://otel-collector:4317").map(Some)
            });
        let mut upstreams = BTreeMap::new();
        for (service, key) in UPSTREAM_KEYS {
            let url = sources.parse_with(&mut errors, key, None, |s| {
                parse_url(s, &format!("http://fairchance-{service}:50051")).map(Some)
            });
            if let Some(url) = url {
                upstreams.insert(*service, url);
            }
        }
        // The scheme decides whether the client settings apply: say so at start rather than
        // fail every call, or send credentials without the TLS that was asked for.
        for (service, key) in UPSTREAM_KEYS {
            let Some(url) = upstreams.get(service) else {
                continue;
            };
            match (url.starts_with("https://"), client.tls.is_some()) {
                (true, false) => errors.push(format!(
                    "{key}: {url} is https://, but FAIRCHANCE_CLIENT_CA is not set: name the PEM CA that signed the {service} service's certificate"
                )),
                (false, true) => errors.push(format!(
                    "{key}: {url} is plaintext http://, but FAIRCHANCE_CLIENT_CA is set: use https:// so calls use TLS"
                )),
                _ => {}
            }
        }
        let metrics_addr = sources.parse_with(
            &mut errors,
            "FAIRCHANCE_METRICS_ADDR",
            Some(DEFAULT_METRICS_ADDR),
            parse_metrics_addr,
        );
        let metrics_addr_explicit = sources.raw("FAIRCHANCE_METRICS_ADDR").is_some();
        // The default colliding with a chosen gRPC port is only warned about at start.
        if let Some(metrics) = metrics_addr
            && metrics_addr_explicit
            && metrics.port() != 0
            && metrics.port() == listen_addr.port()
        {
            errors.push(format!(
                "FAIRCHANCE_METRICS_ADDR: port {} is also FAIRCHANCE_LISTEN_ADDR's; the metrics endpoint needs its own port (or off)",
                metrics.port()
            ));
        }
        let auth = load_auth(sources, &mut errors);
        let tokens_file = match &auth {
            AuthMode::Required(_) => {
                sources
                    .raw("FAIRCHANCE_TOKENS_FILE")
                    .map(|(path, origin)| WatchedFile {
                        path: PathBuf::from(path),
                        origin,
                        every: tokens_reload,
                    })
            }
            AuthMode::Off => None,
        };
        let tls = load_tls(sources, &mut errors, tokens_reload);
        let health_addr = sources.parse_with(&mut errors, "FAIRCHANCE_HEALTH_ADDR", None, |s| {
            if s.eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            s.parse::<SocketAddr>()
                .map(Some)
                .map_err(|_| "expected an address such as 0.0.0.0:8081, or off".to_owned())
        });
        if let Some(health) = health_addr
            && health.port() != 0
            && health.port() == listen_addr.port()
        {
            errors.push(format!(
                "FAIRCHANCE_HEALTH_ADDR: port {} is also FAIRCHANCE_LISTEN_ADDR's; the plaintext health port needs its own port (or off)",
                health.port()
            ));
        }
        let service_name = sources
            .string("OTEL_SERVICE_NAME")
            .unwrap_or_else(|| format!("fairchance-{}", defaults.service_name));

        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(Self {
            listen_addr,
            database_url,
            db_max_connections,
            timer_workers,
            migrate_on_start,
            playbook,
            server: ServerConfig {
                request_timeout,
                concurrency_limit,
                max_streams_per_caller,
                max_message_bytes,
                drain_timeout,
                health_interval,
                auth,
                tokens_file,
                tls,
                health_addr,
            },
            telemetry: TelemetryConfig {
                log_format,
                log_filter,
                otlp_endpoint,
                service_name,
            },
            upstreams,
            client,
            metrics_addr,
            metrics_addr_explicit,
        })
    }

    /// The gRPC address of another fairchance service this one calls or subscribes to.
    pub fn upstream(&self, service: &str) -> Result<&str, ConfigError> {
        self.upstreams.get(service).map(String::as_str).ok_or_else(|| {
            ConfigError(vec![format!(
                "FAIRCHANCE_{}_URL: required: the address of the {service} service, e.g. http://fairchance-{service}:50051",
                service.to_ascii_uppercase()
            )])
        })
    }
}

/// `FAIRCHANCE_AUTH` (`off`, the default, or `required`) and the tokens file it needs.
fn load_auth(sources: &Sources, errors: &mut Vec<String>) -> AuthMode {
    let required = sources.parse_with(errors, "FAIRCHANCE_AUTH", false, |s| {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(false),
            "required" => Ok(true),
            _ => Err("expected off or required".into()),
        }
    });
    // Read even when auth is off, so `check` finds a broken file before it is switched on.
    let tokens = sources
        .raw("FAIRCHANCE_TOKENS_FILE")
        .and_then(|(path, origin)| {
            Tokens::load(&origin, std::path::Path::new(&path))
                .map_err(|problems| errors.extend(problems))
                .ok()
        });
    match (required, tokens) {
        (false, _) => AuthMode::Off,
        (true, Some(tokens)) => AuthMode::Required(std::sync::Arc::new(tokens)),
        (true, None) => {
            if sources.raw("FAIRCHANCE_TOKENS_FILE").is_none() {
                errors.push(
                    "FAIRCHANCE_AUTH: required, but FAIRCHANCE_TOKENS_FILE is not set: name the file of caller tokens (see README: Security), or set FAIRCHANCE_AUTH=off"
                        .into(),
                );
            }
            AuthMode::Off
        }
    }
}

/// `FAIRCHANCE_TLS_CERT` and `FAIRCHANCE_TLS_KEY` (both or neither), and
/// `FAIRCHANCE_TLS_CLIENT_CA` for mutual TLS; the first two are re-read every `every`.
fn load_tls(sources: &Sources, errors: &mut Vec<String>, every: Duration) -> Option<TlsConfig> {
    let mut read = |key: &str| {
        let (path, origin) = sources.raw(key)?;
        std::fs::read(&path)
            .map_err(|e| errors.push(format!("{origin}: cannot read {path}: {e}")))
            .ok()
    };
    let cert = read("FAIRCHANCE_TLS_CERT");
    let key = read("FAIRCHANCE_TLS_KEY");
    let client_ca = read("FAIRCHANCE_TLS_CLIENT_CA");
    let set = |key: &str| sources.raw(key).is_some();
    match (set("FAIRCHANCE_TLS_CERT"), set("FAIRCHANCE_TLS_KEY")) {
        (false, false) => {
            if set("FAIRCHANCE_TLS_CLIENT_CA") {
                errors.push("FAIRCHANCE_TLS_CLIENT_CA: set, but FAIRCHANCE_TLS_CERT and FAIRCHANCE_TLS_KEY are not: client certificates are checked only over TLS".into());
            }
            return None;
        }
        (true, false) => {
            errors.push(
                "FAIRCHANCE_TLS_KEY: required when FAIRCHANCE_TLS_CERT is set: the PEM private key of the certificate".into(),
            );
            return None;
        }
        (false, true) => {
            errors.push(
                "FAIRCHANCE_TLS_CERT: required when FAIRCHANCE_TLS_KEY is set: the PEM certificate chain".into(),
            );
            return None;
        }
        (true, true) => {}
    }
    let (cert, key) = (cert?, key?);
    if set("FAIRCHANCE_TLS_CLIENT_CA") && client_ca.is_none() {
        return None;
    }
    let (cert_path, key_path) = (
        sources.string("FAIRCHANCE_TLS_CERT")?,
        sources.string("FAIRCHANCE_TLS_KEY")?,
    );
    TlsConfig::new(cert, key, client_ca)
        .map(|tls| tls.reload_from(cert_path.into(), key_path.into(), every))
        .map_err(|why| errors.push(why))
        .ok()
}

/// The credentials of outgoing calls: `FAIRCHANCE_CLIENT_TOKEN_FILE`, and
/// `FAIRCHANCE_CLIENT_CA` with `FAIRCHANCE_CLIENT_CERT` and `FAIRCHANCE_CLIENT_KEY` (both or
/// neither) for `https://` upstreams.
///
/// The token is read from a file, not the environment: a file mounted from a Secret is not
/// inherited by child processes, not shown by `kubectl describe pod` or `/proc/<pid>/environ`,
/// and not copied into crash reports that dump the environment.
fn load_client_credentials(
    sources: &Sources,
    errors: &mut Vec<String>,
) -> (Option<BearerToken>, Option<ClientTls>) {
    let token = sources
        .raw("FAIRCHANCE_CLIENT_TOKEN_FILE")
        .and_then(|(path, origin)| {
            BearerToken::load(std::path::Path::new(&path))
                .map_err(|why| errors.push(format!("{origin}: {path}: {why}")))
                .ok()
        });
    let mut read = |key: &str| {
        let (path, origin) = sources.raw(key)?;
        std::fs::read(&path)
            .map_err(|e| errors.push(format!("{origin}: cannot read {path}: {e}")))
            .ok()
    };
    let ca = read("FAIRCHANCE_CLIENT_CA");
    let cert = read("FAIRCHANCE_CLIENT_CERT");
    let key = read("FAIRCHANCE_CLIENT_KEY");
    let set = |key: &str| sources.raw(key).is_some();
    let identity = match (set("FAIRCHANCE_CLIENT_CERT"), set("FAIRCHANCE_CLIENT_KEY")) {
        (false, false) => None,
        (true, false) => {
            errors.push("FAIRCHANCE_CLIENT_KEY: required when FAIRCHANCE_CLIENT_CERT is set: the PEM private key of the client certificate".into());
            return (token, None);
        }
        (false, true) => {
            errors.push("FAIRCHANCE_CLIENT_CERT: required when FAIRCHANCE_CLIENT_KEY is set: the PEM client certificate chain".into());
            return (token, None);
        }
        (true, true) => match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => return (token, None),
        },
    };
    if !set("FAIRCHANCE_CLIENT_CA") {
        if identity.is_some() {
            errors.push("FAIRCHANCE_CLIENT_CA: required when FAIRCHANCE_CLIENT_CERT is set: the PEM CA that signed the upstream services' certificates".into());
        }
        return (token, None);
    }
    let Some(ca) = ca else {
        return (token, None);
    };
    let tls = ClientTls::new(ca, identity)
        .map_err(|why| errors.push(why))
        .ok();
    (token, tls)
}

/// The client settings, each bad value collected into `errors`.
fn client_config(
    sources: &Sources,
    errors: &mut Vec<String>,
    max_message_bytes: usize,
    tokens_reload: Duration,
) -> ClientConfig {
    let defaults = ClientConfig::default();
    let connect_timeout = sources.duration(
        errors,
        "FAIRCHANCE_CLIENT_CONNECT_TIMEOUT",
        defaults.connect_timeout,
    );
    let deadline = sources.duration(errors, "FAIRCHANCE_CLIENT_DEADLINE", defaults.deadline);
    let backoff = sources.duration(errors, "FAIRCHANCE_CLIENT_BACKOFF", defaults.backoff);
    for (key, value) in [
        ("FAIRCHANCE_CLIENT_CONNECT_TIMEOUT", connect_timeout),
        ("FAIRCHANCE_CLIENT_DEADLINE", deadline),
        ("FAIRCHANCE_CLIENT_BACKOFF", backoff),
    ] {
        if value.is_zero() {
            errors.push(format!("{key}: must be longer than zero"));
        }
    }
    let max_attempts = sources.parse_with(
        errors,
        "FAIRCHANCE_CLIENT_MAX_ATTEMPTS",
        defaults.max_attempts,
        |s| match s.parse::<u32>() {
            Ok(n) if (1..=10).contains(&n) => Ok(n),
            _ => Err("expected a whole number from 1 (no retries) to 10".into()),
        },
    );
    let (token, tls) = load_client_credentials(sources, errors);
    let token_file = token.as_ref().and_then(|_| {
        let (path, origin) = sources.raw("FAIRCHANCE_CLIENT_TOKEN_FILE")?;
        Some(WatchedFile {
            path: PathBuf::from(path),
            origin,
            every: tokens_reload,
        })
    });
    ClientConfig {
        connect_timeout,
        deadline,
        max_attempts,
        backoff,
        max_message_bytes,
        token,
        token_file,
        tls,
    }
}

/// The other services a service may call, and the variables naming their addresses.
const UPSTREAM_KEYS: &[(&str, &str)] = &[
    ("intake", "FAIRCHANCE_INTAKE_URL"),
    ("activation", "FAIRCHANCE_ACTIVATION_URL"),
    ("followup", "FAIRCHANCE_FOLLOWUP_URL"),
    ("proof", "FAIRCHANCE_PROOF_URL"),
];

fn parse_url(s: &str, example: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected an http:// or https:// URL, e.g. {example}"
        ))
    }
}

/// `HOST:PORT` of the metrics endpoint, or `off`.
fn parse_metrics_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| "expected an address such as 0.0.0.0:9090, or off".into())
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources::from_map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
        .unwrap()
    }

    fn defaults() -> Defaults {
        Defaults::service("intake", 50051)
    }

    #[test]
    fn defaults_are_valid_and_sqlite() {
        let cfg = ServiceConfig::load(&env(&[]), &defaults()).unwrap();
        assert_eq!(cfg.listen_addr.port(), 50051);
        assert_eq!(cfg.database_url, "sqlite://data/intake.db");
        assert_eq!(cfg.server.request_timeout, Duration::from_secs(30));
        assert_eq!(cfg.telemetry.service_name, "fairchance-intake");
        assert!(cfg.migrate_on_start);
        assert_eq!(cfg.metrics_addr, Some("0.0.0.0:9090".parse().unwrap()));
        assert!(!cfg.metrics_addr_explicit);
    }

    #[test]
    fn the_metrics_endpoint_is_an_address_or_off_and_has_its_own_port() {
        let load = |value: &str| {
            ServiceConfig::load(&env(&[("FAIRCHANCE_METRICS_ADDR", value)]), &defaults())
        };
        let cfg = load("127.0.0.1:9464").unwrap();
        assert_eq!(cfg.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(cfg.metrics_addr_explicit);
        assert_eq!(load("off").unwrap().metrics_addr, None);
        assert_eq!(load("OFF").unwrap().metrics_addr, None);
        // Port 0 picks a free port (tests).
        assert_eq!(load("127.0.0.1:0").unwrap().metrics_addr.unwrap().port(), 0);
        for bad in ["9090", "localhost:9090", "yes", "0.0.0.0:99999"] {
            let text = load(bad).unwrap_err().to_string();
            assert!(
                text.contains(&format!(
                    "FAIRCHANCE_METRICS_ADDR (environment): invalid value {bad:?}: expected an address such as 0.0.0.0:9090, or off"
                )),
                "{text}"
            );
        }
        // The gRPC port (50051 by default) cannot be shared.
        let text = load("0.0.0.0:50051").unwrap_err().to_string();
        assert!(
            text.contains("FAIRCHANCE_METRICS_ADDR: port 50051 is also FAIRCHANCE_LISTEN_ADDR's"),
            "{text}"
        );
        // The default gives way: a service may listen on 9090 itself.
        let on_9090 = ServiceConfig::load(
            &env(&[("FAIRCHANCE_LISTEN_ADDR", "0.0.0.0:9090")]),
            &defaults(),
        );
        assert!(on_9090.is_ok(), "{on_9090:?}");
        // In the file, like every key: lower case without the prefix.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fc.toml");
        std::fs::write(&path, "metrics_addr = \"off\"\n").unwrap();
        let p = path.display().to_string();
        let cfg = ServiceConfig::load(&env(&[(CONFIG_FILE_VAR, &p)]), &defaults()).unwrap();
        assert_eq!(cfg.metrics_addr, None);
    }

    #[test]
    fn client_settings_come_from_their_keys_and_bad_ones_are_named() {
        let cfg = ServiceConfig::load(&env(&[]), &defaults()).unwrap();
        assert_eq!(cfg.client.deadline, Duration::from_secs(5));
        assert_eq!(cfg.client.max_attempts, 4);
        assert_eq!(cfg.client.max_message_bytes, 1024 * 1024);
        assert_eq!(cfg.server.max_message_bytes, 1024 * 1024);
        let cfg = ServiceConfig::load(
            &env(&[
                ("FAIRCHANCE_CLIENT_DEADLINE", "750ms"),
                ("FAIRCHANCE_CLIENT_CONNECT_TIMEOUT", "2s"),
                ("FAIRCHANCE_CLIENT_MAX_ATTEMPTS", "1"),
                ("FAIRCHANCE_CLIENT_BACKOFF", "10ms"),
                ("FAIRCHANCE_MAX_MESSAGE_BYTES", "65536"),
            ]),
            &defaults(),
        )
        .unwrap();
        assert_eq!(cfg.client.deadline, Duration::from_millis(750));
        assert_eq!(cfg.client.connect_timeout, Duration::from_secs(2));
        assert_eq!(cfg.client.max_attempts, 1);
        assert_eq!(cfg.client.backoff, Duration::from_millis(10));
        assert_eq!(cfg.client.max_message_bytes, 65536);
        let err = ServiceConfig::load(
            &env(&[
                ("FAIRCHANCE_CLIENT_DEADLINE", "0s"),
                ("FAIRCHANCE_CLIENT_CONNECT_TIMEOUT", "soon"),
                ("FAIRCHANCE_CLIENT_MAX_ATTEMPTS", "11"),
            ]),
            &defaults(),
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "FAIRCHANCE_CLIENT_DEADLINE: must be longer than zero",
            "FAIRCHANCE_CLIENT_CONNECT_TIMEOUT (environment): invalid value \"soon\"",
            "FAIRCHANCE_CLIENT_MAX_ATTEMPTS (environment): invalid value \"11\": expected a whole number from 1 (no retries) to 10",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn client_credentials_are_read_at_start_and_problems_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        let fixture = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, testkit::read_tls_fixture(name)).unwrap();
            path.display().to_string()
        };
        let (ca, cert, key) = (
            fixture("ca.pem"),
            fixture("client.pem"),
            fixture("client.key"),
        );
        let token_path = token.display().to_string();
        let cfg = ServiceConfig::load(
            &env(&[
                ("FAIRCHANCE_CLIENT_TOKEN_FILE", &token_path),
                ("FAIRCHANCE_CLIENT_CA", &ca),
                ("FAIRCHANCE_CLIENT_CERT", &cert),
                ("FAIRCHANCE_CLIENT_KEY", &key),
                ("FAIRCHANCE_INTAKE_URL", "https://fairchance-intake:50051"),
            ]),
            &defaults(),
        )
        .unwrap();
        assert_eq!(
            cfg.client.token.as_ref().unwrap().header_value(),
            "Bearer s3cret-token"
        );
        assert!(cfg.client.tls.as_ref().unwrap().has_identity());
        // Never printed.
        assert!(!format!("{cfg:?}").contains("s3cret"));

        std::fs::write(&token, "two words\n").unwrap();
        let err = ServiceConfig::load(
            &env(&[
                ("FAIRCHANCE_CLIENT_TOKEN_FILE", &token_path),
                ("FAIRCHANCE_CLIENT_CERT", &cert),
                ("FAIRCHANCE_INTAKE_URL", "https://fairchance-intake:50051"),
            ]),
            &defaults(),
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "FAIRCHANCE_CLIENT_TOKEN_FILE (environment): ",
            "the token must be one line of visible ASCII",
            "FAIRCHANCE_CLIENT_KEY: required when FAIRCHANCE_CLIENT_CERT is set",
            "FAIRCHANCE_INTAKE_URL: https://fairchance-intake:50051 is https://, but FAIRCHANCE_CLIENT_CA is not set",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), 3, "{text}");

        let missing = dir.path().join("nope").display().to_string();
        let err = ServiceConfig::load(
            &env(&[
                ("FAIRCHANCE_CLIENT_TOKEN_FILE", &missing),
                ("FAIRCHANCE_CLIENT_CA", &key),
                ("FAIRCHANCE_PROOF_URL", "http://fairchance-proof:50051"),
            ]),
            &defaults(),
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "FAIRCHANCE_CLIENT_TOKEN_FILE (environment): ",
            "cannot read",
            "FAIRCHANCE_CLIENT_CA: no PEM certificate",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        // With a usable CA, a plaintext upstream is a mistake, not a fallback.
        let err = ServiceConfig::load(
            &env(&[
                ("FAIRCHANCE_CLIENT_CA", &ca),
                ("FAIRCHANCE_PROOF_URL", "http://fairchance-proof:50051"),
            ]),
            &defaults(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("FAIRCHANCE_PROOF_URL: http://fairchance-proof:50051 is plaintext http://, but FAIRCHANCE_CLIENT_CA is set"),
            "{err}"
        );
        let err = ServiceConfig::load(
            &env(&[
                ("FAIRCHANCE_CLIENT_CERT", &cert),
                ("FAIRCHANCE_CLIENT_KEY", &key),
            ]),
            &defaults(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("FAIRCHANCE_CLIENT_CA: required when FAIRCHANCE_CLIENT_CERT is set"),
            "{err}"
        );
    }

    #[test]
    fn credential_files_are_re_read_at_the_configured_interval() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.toml");
        std::fs::write(
            &tokens,
            format!(
                "[[caller]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nscopes = [\"*\"]\n",
                crate::auth::token_digest("t")
            ),
        )
        .unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let (tokens, token) = (tokens.display().to_string(), token.display().to_string());
        let with = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("FAIRCHANCE_AUTH", "required"),
                ("FAIRCHANCE_TOKENS_FILE", tokens.as_str()),
                ("FAIRCHANCE_CLIENT_TOKEN_FILE", token.as_str()),
            ];
            pairs.extend_from_slice(extra);
            ServiceConfig::load(&env(&pairs), &defaults())
        };
        let cfg = with(&[("FAIRCHANCE_TOKENS_RELOAD", "2s")]).unwrap();
        assert_eq!(
            cfg.server.tokens_file,
            Some(WatchedFile {
                path: PathBuf::from(&tokens),
                origin: "FAIRCHANCE_TOKENS_FILE (environment)".into(),
                every: Duration::from_secs(2),
            })
        );
        let client = cfg.client.token_file.unwrap();
        assert_eq!(client.path, PathBuf::from(&token));
        assert_eq!(client.every, Duration::from_secs(2));
        let cfg = with(&[]).unwrap();
        assert_eq!(cfg.server.tokens_file.unwrap().every, DEFAULT_TOKENS_RELOAD);
        // With auth off nothing checks tokens, so nothing re-reads them.
        let cfg = with(&[("FAIRCHANCE_AUTH", "off")]).unwrap();
        assert!(cfg.server.tokens_file.is_none());
        for (bad, why) in [
            ("0s", "FAIRCHANCE_TOKENS_RELOAD: must be longer than zero"),
            (
                "often",
                "FAIRCHANCE_TOKENS_RELOAD (environment): invalid value \"often\"",
            ),
        ] {
            let text = with(&[("FAIRCHANCE_TOKENS_RELOAD", bad)])
                .unwrap_err()
                .to_string();
            assert!(text.contains(why), "{text}");
        }
    }

    #[test]
    fn environment_overrides_defaults() {
        let cfg = ServiceConfig::load(
            &env(&[
                ("FAIRCHANCE_LISTEN_ADDR", "127.0.0.1:7000"),
                ("DATABASE_URL", "postgres://localhost/intake"),
                ("FAIRCHANCE_REQUEST_TIMEOUT", "750ms"),
                ("FAIRCHANCE_LOG_FORMAT", "json"),
            ]),
            &defaults(),
        )
        .unwrap();
        assert_eq!(cfg.listen_addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(cfg.database_url, "postgres://localhost/intake");
        assert_eq!(cfg.server.request_timeout, Duration::from_millis(750));
        assert_eq!(cfg.telemetry.log_format, LogFormat::Json);
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let err = ServiceConfig::load(
            &env(&[
                ("FAIRCHANCE_LISTEN_ADDR", "localhost"),
                ("DATABASE_URL", "mysql://x"),
                ("FAIRCHANCE_REQUEST_TIMEOUT", "soon"),
                ("FAIRCHANCE_CONCURRENCY_LIMIT", "0"),
                ("FAIRCHANCE_TIMER_WORKERS", "0"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ]),
            &defaults(),
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "FAIRCHANCE_LISTEN_ADDR (environment): invalid value \"localhost\"",
            "DATABASE_URL (environment): invalid value \"mysql://x\"",
            "FAIRCHANCE_REQUEST_TIMEOUT (environment): invalid value \"soon\"",
            "FAIRCHANCE_CONCURRENCY_LIMIT (environment)",
            "FAIRCHANCE_TIMER_WORKERS (environment): invalid value \"0\": expected a whole number from 1 to 64",
            "OTEL_EXPORTER_OTLP_ENDPOINT (environment)",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), 6);

        let err = ServiceConfig::load(
            &env(&[
                ("FAIRCHANCE_TIMER_WORKERS", "8"),
                ("FAIRCHANCE_DB_MAX_CONNECTIONS", "8"),
            ]),
            &defaults(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("FAIRCHANCE_TIMER_WORKERS: 8 schedulers would hold all 8 connections"),
            "{err}"
        );
    }

    #[test]
    fn file_values_apply_below_the_environment_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fc.toml");
        std::fs::write(
            &path,
            "listen_addr = \"127.0.0.1:9000\"\nrequest_timeout = \"5s\"\n",
        )
        .unwrap();
        let p = path.display().to_string();
        let cfg = ServiceConfig::load(
            &env(&[(CONFIG_FILE_VAR, &p), ("FAIRCHANCE_REQUEST_TIMEOUT", "7s")]),
            &defaults(),
        )
        .unwrap();
        assert_eq!(cfg.listen_addr.port(), 9000);
        assert_eq!(cfg.server.request_timeout, Duration::from_secs(7));

        std::fs::write(&path, "request_timout = \"5s\"\nconcurrency_limit = -3\n").unwrap();
        let err = ServiceConfig::load(&env(&[(CONFIG_FILE_VAR, &p)]), &defaults()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("request_timout in {p}: unknown setting")),
            "{text}"
        );
        assert!(
            text.contains(&format!("concurrency_limit in {p}: invalid value \"-3\"")),
            "{text}"
        );
    }
}
