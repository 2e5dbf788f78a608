//! The gateway's configuration: one typed struct.
//!
//! Loading order: built-in defaults, then the TOML file (`--config`, or the
//! bundled `deploy/herald.toml`), then `HERALD_*` environment variables, then
//! [`Config::validate`]. Any failure names the key (or variable) and the
//! reason, and the gateway does not start. Secrets come from the environment
//! only and are never printed.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use herald_shared::profile::{CredentialKind, RouteProfile};
use herald_shared::redis_target::RedisTarget;
use schemars::JsonSchema;
use serde::Deserialize;

/// The bundled default configuration: every seed profile.
pub const DEFAULT_CONFIG: &str = include_str!("../../deploy/herald.toml");

/// A boolean environment variable: `true`/`1` or `false`/`0`.
fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ConfigError::Env {
            var,
            reason: format!("`{v}` is not true or false"),
        }),
    }
}

/// Environment variables read by the gateway, in one place.
pub mod env {
    pub const LISTEN: &str = "HERALD_LISTEN";
    pub const REDIS_URL: &str = "HERALD_REDIS_URL";
    pub const REDIS_PREFIX: &str = "HERALD_REDIS_PREFIX";
    pub const REDIS_NODES: &str = "HERALD_REDIS_NODES";
    pub const REDIS_USERNAME: &str = "HERALD_REDIS_USERNAME";
    pub const REDIS_PASSWORD: &str = "HERALD_REDIS_PASSWORD";
    pub const REDIS_MODE: &str = "HERALD_REDIS_MODE";
    pub const REDIS_SERVICE_NAME: &str = "HERALD_REDIS_SERVICE_NAME";
    pub const REDIS_TLS: &str = "HERALD_REDIS_TLS";
    pub const REDIS_TLS_CA_FILE: &str = "HERALD_REDIS_TLS_CA_FILE";
    pub const REDIS_TLS_CERT_FILE: &str = "HERALD_REDIS_TLS_CERT_FILE";
    pub const REDIS_TLS_KEY_FILE: &str = "HERALD_REDIS_TLS_KEY_FILE";
    pub const JWT_SECRET: &str = "HERALD_JWT_SECRET";
    pub const ADMIN_KEY: &str = "HERALD_ADMIN_KEY";
    pub const LOG_FORMAT: &str = "HERALD_LOG_FORMAT";
    pub const DRAIN_MS: &str = "HERALD_DRAIN_MS";
    pub const UNREADY_MS: &str = "HERALD_UNREADY_MS";
    pub const API_KEY: &str = "HERALD_API_KEY";
    pub const API_LISTEN: &str = "HERALD_API_LISTEN";
    pub const API_CONSOLE: &str = "HERALD_API_CONSOLE";
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid environment variable {var}: {reason}")]
    Env { var: &'static str, reason: String },
    #[error("invalid config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

/// A secret from the environment; `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A fresh random secret: 32 bytes, hex.
    fn generate() -> Self {
        Self(format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        ))
    }
}

/// Secrets generated for a development run (see [`Config::development_mode`]).
#[derive(Debug, Clone)]
pub struct DevelopmentSecrets {
    pub admin_key: Secret,
    pub jwt_secret: Secret,
    pub api_key: Secret,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`; `HERALD_LISTEN`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub readiness: ReadinessConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub api: ApiConfig,
    /// How the file's `[[profiles]]` combine with the bundled ones.
    #[serde(default)]
    pub bundled_profiles: BundledProfiles,
    /// Route profiles. Absent: the bundled seed profiles.
    #[serde(default)]
    pub profiles: Option<Vec<RouteProfile>>,
}

/// What a file's `[[profiles]]` do to the bundled profiles. A file without
/// `[[profiles]]` serves the bundled ones either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BundledProfiles {
    /// The file's profiles are the whole set.
    #[default]
    Replace,
    /// Start from the bundled profiles: an entry named like a bundled one
    /// changes only the keys it sets (tables merge, other values replace);
    /// an entry with a new name is added after them.
    Extend,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

#[derive(Clone, Deserialize, JsonSchema)]
// Every field defaults, from `Default` below: the one place defaults live.
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URL; empty (and no `nodes`) means the embedded in-memory
    /// broker. `HERALD_REDIS_URL`. `rediss…` schemes use TLS, trusting the
    /// system's CAs or the PEM bundle in `SSL_CERT_FILE`.
    pub url: String,
    /// Instead of `url`: how Redis is laid out. Default `standalone`.
    /// `HERALD_REDIS_MODE`.
    pub mode: Option<RedisMode>,
    /// Instead of `url`: `HOST:PORT` of the server, of every sentinel, or of
    /// cluster seed nodes. `HERALD_REDIS_NODES` (comma-separated).
    pub nodes: Vec<String>,
    /// Sentinel: the monitored primary's name. `HERALD_REDIS_SERVICE_NAME`.
    pub service_name: String,
    /// ACL user, for either form (overrides the URL's). `HERALD_REDIS_USERNAME`.
    pub username: Option<String>,
    /// Only from `HERALD_REDIS_PASSWORD` (overrides the URL's).
    #[serde(skip)]
    #[schemars(skip)]
    pub password: Option<Secret>,
    /// Instead of a `rediss…` URL: connect over TLS. `HERALD_REDIS_TLS`.
    pub tls: bool,
    /// TLS (either form): trust only the CAs in this PEM bundle instead of
    /// the system's. `HERALD_REDIS_TLS_CA_FILE`.
    pub tls_ca_file: Option<PathBuf>,
    /// TLS (either form): client certificate chain (PEM) for a Redis that
    /// requires one (`tls-auth-clients yes`); needs `tls_key_file`.
    /// `HERALD_REDIS_TLS_CERT_FILE`.
    pub tls_cert_file: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    /// `HERALD_REDIS_TLS_KEY_FILE`.
    pub tls_key_file: Option<PathBuf>,
    /// Database number (standalone and Sentinel).
    pub database: Option<u8>,
    /// Prefix of every key and channel. Default `herald`; `HERALD_REDIS_PREFIX`.
    pub prefix: String,
}

impl std::fmt::Debug for RedisConfig {
    /// Through the target's own `Debug`, which never shows a password (nor a
    /// URL, which may carry one).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("target", &self.target())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// How the Redis deployment is laid out (`redis.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    Standalone,
    Sentinel,
    Cluster,
}

impl From<herald_shared::redis_target::RedisMode> for RedisMode {
    fn from(mode: herald_shared::redis_target::RedisMode) -> Self {
        use herald_shared::redis_target::RedisMode as Shared;
        match mode {
            Shared::Standalone => Self::Standalone,
            Shared::Sentinel => Self::Sentinel,
            Shared::Cluster => Self::Cluster,
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            mode: None,
            nodes: Vec::new(),
            service_name: String::new(),
            username: None,
            password: None,
            tls: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            database: None,
            prefix: herald_shared::keys::DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl RedisConfig {
    /// The deployment these settings name.
    pub fn target(&self) -> RedisTarget {
        RedisTarget {
            url: self.url.clone(),
            mode: self.mode.map(|m| match m {
                RedisMode::Standalone => herald_shared::redis_target::RedisMode::Standalone,
                RedisMode::Sentinel => herald_shared::redis_target::RedisMode::Sentinel,
                RedisMode::Cluster => herald_shared::redis_target::RedisMode::Cluster,
            }),
            nodes: self.nodes.clone(),
            service_name: self.service_name.clone(),
            username: self.username.clone(),
            password: self.password.as_ref().map(|p| p.expose().to_owned()),
            tls: self.tls,
            database: self.database,
            tls_ca_file: self.tls_ca_file.clone(),
            tls_cert_file: self.tls_cert_file.clone(),
            tls_key_file: self.tls_key_file.clone(),
        }
    }

    /// Whether a Redis deployment is configured (else: the embedded broker).
    pub fn is_set(&self) -> bool {
        !self.url.is_empty() || !self.nodes.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
// Every field defaults, from `Default` below: the one place defaults live.
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Events queued for one socket before it counts as a slow consumer and
    /// is closed. Default 1024.
    pub outbound_queue: usize,
    /// Longest an event may wait in the replica (from its arrival to its
    /// socket write) before its connection counts as a slow consumer and
    /// is closed: under overload, delay stays bounded and the clients that
    /// fell behind resume from history. 0 = no bound. Default 10000.
    pub max_queue_delay_ms: u64,
    /// Largest client message accepted, in bytes; larger closes with 1009. Default 65536.
    pub max_message_bytes: usize,
    /// Per-socket read buffer. Default 512: it is allocated for every socket
    /// for its whole life, while the clients of these APIs send small frames
    /// (a larger one is read in several calls, never refused for it). The
    /// WebSocket library's own default, 128 KiB, would cost that much RAM
    /// per idle socket; 4096 cost 3.5 KiB more per idle connection than 512.
    pub read_buffer_bytes: usize,
    /// Bytes of frames queued for one socket that leave in one write: a
    /// backlog of small events costs one send instead of one per event.
    /// 0 writes every frame on its own. Default 4096. A socket that had a
    /// backlog keeps a buffer of up to this (plus one frame) afterwards.
    pub write_coalesce_bytes: usize,
    /// A socket write that takes longer than this closes the connection. Default 10000.
    pub write_timeout_ms: u64,
    /// Open connections per client IP address on one replica; 0 = no cap. Default 0.
    pub connections_per_ip: usize,
    /// Open connections per principal on one replica; 0 = no cap. Default 0.
    pub connections_per_principal: usize,
    /// Client messages per second one connection may send on average; a
    /// client over it is closed (1008, error `rate_limited`). 0 = no cap. Default 50.
    pub client_messages_per_second: u32,
    /// New connections per second one address may open (bursts of twice
    /// that); beyond: HTTP 429. 0 = no cap. Default 0.
    pub connects_per_ip_per_second: u32,
    /// Time a client has to send its request head after connecting; slower
    /// (or silent) connections are closed. Default 10000.
    pub handshake_timeout_ms: u64,
    /// Client messages one connection may send in a burst. Default 100.
    pub client_message_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            outbound_queue: 1024,
            max_queue_delay_ms: 10_000,
            max_message_bytes: 64 * 1024,
            read_buffer_bytes: 512,
            write_coalesce_bytes: 4096,
            write_timeout_ms: 10_000,
            connections_per_ip: 0,
            connections_per_principal: 0,
            connects_per_ip_per_second: 0,
            handshake_timeout_ms: 10_000,
            client_messages_per_second: 50,
            client_message_burst: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
// Every field defaults, from `Default` below: the one place defaults live.
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM, sockets are closed at random moments spread over this
    /// window so clients do not reconnect to the other replicas all at once.
    /// Default 5000; `HERALD_DRAIN_MS`. Keep it below the pod's grace period.
    pub drain_ms: u64,
    /// On SIGTERM, first report not-ready (`/readyz` 503) this long while
    /// still serving, so load balancers that poll readiness stop routing here
    /// before the listener closes. Default 0; the Helm chart sets 2000.
    pub unready_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_ms: 5000,
            unready_ms: 0,
        }
    }
}

/// The delivery probe behind `/readyz`: an event this replica publishes to
/// itself through the broker, the way its clients' events travel.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
// Every field defaults, from `Default` below: the one place defaults live.
#[serde(default, deny_unknown_fields)]
pub struct ReadinessConfig {
    /// How often a probe is published. Default 2000.
    pub probe_interval_ms: u64,
    /// How long a probe may take to come back. Default 1000; at most
    /// `probe_interval_ms`.
    pub probe_timeout_ms: u64,
    /// Probes missing in a row before `/readyz` fails. Default 2.
    pub probe_misses: u32,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self {
            probe_interval_ms: 2000,
            probe_timeout_ms: 1000,
            probe_misses: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    #[default]
    Auto,
    Json,
    Text,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
// Every field defaults, from `Default` below: the one place defaults live.
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `sub` of the principal authenticated by `HERALD_ADMIN_KEY`. Default `admin`.
    pub admin_user: String,
    /// API keys served without Redis (embedded mode), stored as SHA-256.
    pub api_keys: Vec<StoredCredential>,
    /// Session tokens served without Redis (embedded mode), stored as SHA-256.
    pub sessions: Vec<StoredCredential>,
    /// How JWTs are verified: the algorithm and where its key comes from.
    pub jwt: JwtConfig,
    /// `HERALD_JWT_SECRET` (HS256). Environment only.
    #[serde(skip)]
    pub jwt_secret: Option<Secret>,
    /// `HERALD_ADMIN_KEY`. Environment only.
    #[serde(skip)]
    pub admin_key: Option<Secret>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            admin_user: "admin".to_owned(),
            api_keys: Vec::new(),
            sessions: Vec::new(),
            jwt: JwtConfig::default(),
            jwt_secret: None,
            admin_key: None,
        }
    }
}

/// JWT verification. The algorithm is pinned here, never taken from the
/// token; HS256 uses `HERALD_JWT_SECRET`, the others a public key from a PEM
/// file or a JSON Web Key Set fetched from `jwks_url`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
// Every field defaults, from `Default` below: the one place defaults live.
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// `HS256` (default), `RS256`, `ES256` or `EdDSA`.
    pub algorithm: JwtAlgorithm,
    /// PEM file with the public key (RS256, ES256, EdDSA).
    pub public_key_file: Option<PathBuf>,
    /// URL of a JSON Web Key Set (`https://issuer/.well-known/jwks.json`);
    /// keys are chosen by the token's `kid`.
    pub jwks_url: Option<String>,
    /// How long a fetched key set is used before it is fetched again. Default 300000.
    pub jwks_refresh_ms: u64,
    /// Fetch at most this often, also when a token names an unknown `kid`. Default 10000.
    pub jwks_min_interval_ms: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::Hs256,
            public_key_file: None,
            jwks_url: None,
            jwks_refresh_ms: 300_000,
            jwks_min_interval_ms: 10_000,
        }
    }
}

/// JWT signature algorithms the gateway verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum JwtAlgorithm {
    #[serde(rename = "HS256")]
    Hs256,
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

/// The server API (`docs/api.md`): publishing and administration over
/// HTTP for backends that cannot use `herald-publisher`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
// Every field defaults, from `Default` below: the one place defaults live.
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API. Default true; without a key (`HERALD_API_KEY` or
    /// `api.keys`) every request is refused.
    pub enabled: bool,
    /// Serve it on this address of its own instead of the main listener
    /// (keep the API off the public port). `HERALD_API_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// Path prefix of every endpoint. Default `/herald/v1`.
    pub prefix: String,
    /// Largest request body, in bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most events in one batch publish. Default 1000.
    pub max_batch: usize,
    /// How long an idempotency key is remembered. Default one day.
    pub idempotency_ttl_ms: u64,
    /// How long a publish keeps retrying through a Redis outage or failover
    /// before answering 503 (0: no retry). Default 10000.
    pub publish_retry_ms: u64,
    /// Serve the operator console at `{prefix}/console` (signing in takes
    /// the operator key, `HERALD_API_KEY`). Default false. `HERALD_API_CONSOLE`.
    pub console: bool,
    /// Keys for backends, stored as SHA-256, each with its capabilities.
    pub keys: Vec<ApiKeyConfig>,
    /// `HERALD_API_KEY`: the operator key, every capability. Environment only.
    #[serde(skip)]
    pub operator_key: Option<Secret>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            prefix: "/herald/v1".to_owned(),
            max_body_bytes: 1024 * 1024,
            max_batch: 1000,
            idempotency_ttl_ms: 86_400_000,
            publish_retry_ms: 10_000,
            console: false,
            keys: Vec::new(),
            operator_key: None,
        }
    }
}

/// A backend's key for the server API.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// SHA-256 of the key, lowercase hex (`printf %s KEY | sha256sum`).
    pub sha256: String,
    /// What the key may do: `publish` (publish, snapshots, resync) and/or
    /// `admin` (everything).
    pub capabilities: Vec<Capability>,
}

/// What a server-API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Publish events, set snapshots, ask for a resync.
    Publish,
    /// Everything, including credentials, grants, disconnects and listings.
    Admin,
}

/// A credential kept in the config file for embedded mode.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoredCredential {
    /// SHA-256 of the key or token, lowercase hex (`printf %s KEY | sha256sum`).
    pub sha256: String,
    pub sub: String,
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Config {
    /// Load from a file (or the bundled default), apply the environment, validate.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                Self::parse(&text, &p.display().to_string())?
            }
            None => Self::parse(DEFAULT_CONFIG, BUNDLED)?,
        };
        if config.profiles.is_none() {
            config.profiles = Self::parse(DEFAULT_CONFIG, BUNDLED)?.profiles;
        }
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Parse TOML; the error carries the line, column and key serde saw.
    /// With `bundled_profiles = "extend"` the file's profiles are merged over
    /// the bundled ones first.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let parse_error = |origin: &str, message: String| ConfigError::Parse {
            origin: origin.to_owned(),
            message,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_error(origin, e.to_string()))?;
        if table.get("bundled_profiles").and_then(toml::Value::as_str) != Some("extend") {
            return toml::from_str(text).map_err(|e| parse_error(origin, e.to_string()));
        }
        let merged = extend_bundled(table).map_err(|m| parse_error(origin, m))?;
        // Spans are lost in the merge; the message still names the key.
        Self::deserialize(merged).map_err(|e| {
            parse_error(
                &format!("{origin} (merged over the bundled profiles)"),
                e.to_string(),
            )
        })
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env(env::LISTEN) {
            self.listen = v.parse().map_err(|e| ConfigError::Env {
                var: env::LISTEN,
                reason: format!("`{v}` is not HOST:PORT ({e})"),
            })?;
        }
        if let Some(v) = env(env::REDIS_URL) {
            self.redis.url = v;
        }
        if let Some(v) = env(env::REDIS_PREFIX) {
            self.redis.prefix = v;
        }
        if let Some(v) = env(env::REDIS_NODES).filter(|v| !v.is_empty()) {
            self.redis.nodes = v.split(',').map(|n| n.trim().to_owned()).collect();
        }
        if let Some(v) = env(env::REDIS_USERNAME).filter(|v| !v.is_empty()) {
            self.redis.username = Some(v);
        }
        if let Some(v) = env(env::REDIS_MODE).filter(|v| !v.is_empty()) {
            let mode = herald_shared::redis_target::RedisMode::parse(&v).ok_or_else(|| {
                ConfigError::Env {
                    var: env::REDIS_MODE,
                    reason: format!("`{v}` is not standalone, sentinel or cluster"),
                }
            })?;
            self.redis.mode = Some(mode.into());
        }
        if let Some(v) = env(env::REDIS_SERVICE_NAME).filter(|v| !v.is_empty()) {
            self.redis.service_name = v;
        }
        if let Some(v) = env(env::REDIS_TLS).filter(|v| !v.is_empty()) {
            self.redis.tls = parse_bool(env::REDIS_TLS, &v)?;
        }
        for (var, field) in [
            (env::REDIS_TLS_CA_FILE, &mut self.redis.tls_ca_file),
            (env::REDIS_TLS_CERT_FILE, &mut self.redis.tls_cert_file),
            (env::REDIS_TLS_KEY_FILE, &mut self.redis.tls_key_file),
        ] {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                *field = Some(PathBuf::from(v));
            }
        }
        self.redis.password = env(env::REDIS_PASSWORD)
            .filter(|s| !s.is_empty())
            .map(Secret);
        if let Some(v) = env(env::DRAIN_MS) {
            self.shutdown.drain_ms = v.parse().map_err(|e| ConfigError::Env {
                var: env::DRAIN_MS,
                reason: format!("`{v}` is not milliseconds ({e})"),
            })?;
        }
        if let Some(v) = env(env::UNREADY_MS) {
            self.shutdown.unready_ms = v.parse().map_err(|e| ConfigError::Env {
                var: env::UNREADY_MS,
                reason: format!("`{v}` is not milliseconds ({e})"),
            })?;
        }
        if let Some(v) = env(env::LOG_FORMAT) {
            self.log.format = match v.as_str() {
                "auto" => LogFormat::Auto,
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                _ => {
                    return Err(ConfigError::Env {
                        var: env::LOG_FORMAT,
                        reason: format!("`{v}` is not auto, json or text"),
                    });
                }
            };
        }
        self.auth.jwt_secret = env(env::JWT_SECRET).filter(|s| !s.is_empty()).map(Secret);
        self.auth.admin_key = env(env::ADMIN_KEY).filter(|s| !s.is_empty()).map(Secret);
        self.api.operator_key = env(env::API_KEY).filter(|s| !s.is_empty()).map(Secret);
        if let Some(v) = env(env::API_CONSOLE).filter(|v| !v.is_empty()) {
            self.api.console = parse_bool(env::API_CONSOLE, &v)?;
        }
        if let Some(v) = env(env::API_LISTEN).filter(|v| !v.is_empty()) {
            self.api.listen = Some(v.parse().map_err(|e| ConfigError::Env {
                var: env::API_LISTEN,
                reason: format!("`{v}` is not HOST:PORT ({e})"),
            })?);
        }
        Ok(())
    }

    /// Everything serde cannot check. Errors name the key. Reads nothing:
    /// the Redis TLS files are read (and named when unusable) as the
    /// client is configured, before the gateway listens.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason,
            })
        };
        if let Err(e) = self.redis.target().validate() {
            return invalid(&format!("redis.{}", e.key), e.reason);
        }
        let prefix = &self.redis.prefix;
        if prefix.is_empty() || prefix.contains(['{', '}', ' ']) {
            return invalid(
                "redis.prefix",
                format!("`{prefix}` must be non-empty without braces or spaces"),
            );
        }
        let r = &self.readiness;
        if r.probe_interval_ms == 0 {
            return invalid(
                "readiness.probe_interval_ms",
                "must be greater than zero".to_owned(),
            );
        }
        if r.probe_timeout_ms == 0 || r.probe_timeout_ms > r.probe_interval_ms {
            return invalid(
                "readiness.probe_timeout_ms",
                "must be greater than zero and at most readiness.probe_interval_ms".to_owned(),
            );
        }
        if r.probe_misses == 0 {
            return invalid("readiness.probe_misses", "must be at least 1".to_owned());
        }
        if self.limits.outbound_queue == 0 {
            return invalid("limits.outbound_queue", "must be at least 1".to_owned());
        }
        if self.limits.max_message_bytes < 64 {
            return invalid("limits.max_message_bytes", "must be at least 64".to_owned());
        }
        if self.limits.write_coalesce_bytes > 1 << 20 {
            return invalid(
                "limits.write_coalesce_bytes",
                "must be at most 1048576 (a socket keeps a buffer this large after a backlog)"
                    .to_owned(),
            );
        }
        if self.limits.read_buffer_bytes < 256 {
            return invalid(
                "limits.read_buffer_bytes",
                "must be at least 256".to_owned(),
            );
        }
        if self.limits.handshake_timeout_ms == 0 {
            return invalid(
                "limits.handshake_timeout_ms",
                "must be greater than zero".to_owned(),
            );
        }
        if self.limits.write_timeout_ms == 0 {
            return invalid(
                "limits.write_timeout_ms",
                "must be greater than zero".to_owned(),
            );
        }
        let jwt = &self.auth.jwt;
        match (jwt.algorithm, &jwt.public_key_file, &jwt.jwks_url) {
            (JwtAlgorithm::Hs256, None, None) => {}
            (JwtAlgorithm::Hs256, _, _) => {
                return invalid(
                    "auth.jwt.algorithm",
                    "HS256 takes its key from HERALD_JWT_SECRET; public_key_file and jwks_url need RS256, ES256 or EdDSA".to_owned(),
                );
            }
            (_, Some(_), Some(_)) | (_, None, None) => {
                return invalid(
                    "auth.jwt",
                    "RS256, ES256 and EdDSA need exactly one of public_key_file and jwks_url"
                        .to_owned(),
                );
            }
            (_, _, Some(url)) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return invalid(
                    "auth.jwt.jwks_url",
                    format!("`{url}` must be an http:// or https:// URL"),
                );
            }
            _ => {}
        }
        if jwt.jwks_min_interval_ms == 0 || jwt.jwks_refresh_ms < jwt.jwks_min_interval_ms {
            return invalid(
                "auth.jwt.jwks_refresh_ms",
                "jwks_min_interval_ms must be above zero and at most jwks_refresh_ms".to_owned(),
            );
        }
        if self.auth.admin_user.is_empty() {
            return invalid("auth.admin_user", "must not be empty".to_owned());
        }
        for (field, list) in [
            ("api_keys", &self.auth.api_keys),
            ("sessions", &self.auth.sessions),
        ] {
            for (i, c) in list.iter().enumerate() {
                if !is_sha256_hex(&c.sha256) {
                    return invalid(
                        &format!("auth.{field}[{i}].sha256"),
                        "must be 64 lowercase hex digits".to_owned(),
                    );
                }
                if c.sub.is_empty() {
                    return invalid(
                        &format!("auth.{field}[{i}].sub"),
                        "must not be empty".to_owned(),
                    );
                }
            }
        }
        let prefix = &self.api.prefix;
        if matches!(prefix.as_str(), "/healthz" | "/readyz" | "/metrics") {
            return invalid("api.prefix", format!("`{prefix}` is reserved"));
        }
        if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains(['{', '}', '*']) {
            return invalid(
                "api.prefix",
                format!(
                    "`{prefix}` must start with `/`, not end with one, and hold no `{{`, `}}` or `*`"
                ),
            );
        }
        if self
            .api
            .listen
            .is_some_and(|a| a == self.listen && a.port() != 0)
        {
            return invalid(
                "api.listen",
                "must differ from `listen` (leave it unset to serve the API there)".to_owned(),
            );
        }
        if self.api.max_body_bytes < 1024 {
            return invalid("api.max_body_bytes", "must be at least 1024".to_owned());
        }
        if self.api.console && !self.api.enabled {
            return invalid(
                "api.console",
                "the console runs on the server API: it needs api.enabled".to_owned(),
            );
        }
        if self.api.max_batch == 0 {
            return invalid("api.max_batch", "must be at least 1".to_owned());
        }
        if self.api.idempotency_ttl_ms == 0 {
            return invalid(
                "api.idempotency_ttl_ms",
                "must be greater than zero".to_owned(),
            );
        }
        for (i, k) in self.api.keys.iter().enumerate() {
            if !is_sha256_hex(&k.sha256) {
                return invalid(
                    &format!("api.keys[{i}].sha256"),
                    "must be 64 lowercase hex digits".to_owned(),
                );
            }
            if k.capabilities.is_empty() {
                return invalid(
                    &format!("api.keys[{i}].capabilities"),
                    "must list `publish` and/or `admin`".to_owned(),
                );
            }
        }
        let profiles = self.profiles();
        if profiles.is_empty() {
            return invalid(
                "profiles",
                "at least one route profile is required".to_owned(),
            );
        }
        for (i, p) in profiles.iter().enumerate() {
            p.validate(i).map_err(|e| ConfigError::Invalid {
                key: e.key,
                reason: e.reason,
            })?;
            let under_api = self.api.enabled
                && self.api.listen.is_none()
                && (p.path == *prefix || p.path.starts_with(&format!("{prefix}/")));
            if matches!(p.path.as_str(), "/healthz" | "/readyz" | "/metrics") || under_api {
                return invalid(
                    &format!("profiles[{i}].path"),
                    format!("`{}` is reserved (health, metrics or api.prefix)", p.path),
                );
            }
            if let Some(j) = profiles[..i]
                .iter()
                .position(|q| q.path == p.path || q.name == p.name)
            {
                return invalid(
                    &format!("profiles[{i}]"),
                    format!("name or path repeats profiles[{j}]"),
                );
            }
        }
        Ok(())
    }

    /// A first run that works on its own: with the embedded broker, a
    /// loopback address and no credential of any kind configured, generate
    /// the admin key, the JWT secret and the server-API key for this run.
    /// In every other case (Redis configured, a reachable address, any
    /// secret or stored key set) nothing is generated.
    pub fn development_mode(&mut self) -> Option<DevelopmentSecrets> {
        let unconfigured = !self.redis.is_set()
            && self.listen.ip().is_loopback()
            && self.api.listen.is_none_or(|a| a.ip().is_loopback())
            && self.auth.admin_key.is_none()
            && self.auth.jwt_secret.is_none()
            && self.auth.jwt.algorithm == JwtAlgorithm::Hs256
            && self.auth.api_keys.is_empty()
            && self.auth.sessions.is_empty()
            && self.api.operator_key.is_none()
            && self.api.keys.is_empty();
        if !unconfigured {
            return None;
        }
        let secrets = DevelopmentSecrets {
            admin_key: Secret::generate(),
            jwt_secret: Secret::generate(),
            api_key: Secret::generate(),
        };
        self.auth.admin_key = Some(secrets.admin_key.clone());
        self.auth.jwt_secret = Some(secrets.jwt_secret.clone());
        self.api.operator_key = Some(secrets.api_key.clone());
        Some(secrets)
    }

    pub fn profiles(&self) -> &[RouteProfile] {
        self.profiles.as_deref().unwrap_or_default()
    }

    /// Credential kinds some profile accepts but that cannot succeed with this
    /// configuration (for a start-up warning, not an error: the bundled
    /// profiles must start without secrets).
    pub fn unusable_credentials(&self) -> Vec<(String, CredentialKind)> {
        let mut out = Vec::new();
        for p in self.profiles() {
            for s in &p.auth.sources {
                for k in &s.accept {
                    let missing = match k {
                        CredentialKind::Jwt => {
                            self.auth.jwt.algorithm == JwtAlgorithm::Hs256
                                && self.auth.jwt_secret.is_none()
                        }
                        CredentialKind::AdminKey => self.auth.admin_key.is_none(),
                        _ => false,
                    };
                    if missing && !out.iter().any(|(n, kk)| n == &p.name && kk == k) {
                        out.push((p.name.clone(), *k));
                    }
                }
            }
        }
        out
    }
}

const BUNDLED: &str = "bundled deploy/herald.toml";

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The JSON Schema of the configuration file, derived from the types serde
/// reads it with (`herald-gateway --config-schema`): editors validate a TOML
/// file against it, and the docs test checks every key it lists is documented.
pub fn schema() -> serde_json::Value {
    serde_json::Value::from(schemars::schema_for!(Config))
}

/// The file's table with its `profiles` merged over the bundled ones, by name.
fn extend_bundled(mut file: toml::Table) -> Result<toml::Table, String> {
    let mut bundled: toml::Table = DEFAULT_CONFIG
        .parse()
        .map_err(|e: toml::de::Error| format!("{BUNDLED}: {e}"))?;
    let mut profiles = match bundled.remove("profiles") {
        Some(toml::Value::Array(list)) => list,
        _ => Vec::new(),
    };
    let own = match file.remove("profiles") {
        None => Vec::new(),
        Some(toml::Value::Array(list)) => list,
        Some(_) => return Err("profiles: must be an array of tables ([[profiles]])".to_owned()),
    };
    let mut seen: Vec<String> = Vec::new();
    for (i, entry) in own.into_iter().enumerate() {
        let toml::Value::Table(entry) = entry else {
            return Err(format!("profiles[{i}]: must be a table"));
        };
        let Some(name) = entry.get("name").and_then(toml::Value::as_str) else {
            return Err(format!(
                "profiles[{i}].name: required to extend or add to the bundled profiles"
            ));
        };
        if seen.contains(&name.to_owned()) {
            return Err(format!(
                "profiles[{i}].name: `{name}` appears twice in the file"
            ));
        }
        seen.push(name.to_owned());
        let base = profiles.iter_mut().find_map(|p| match p {
            toml::Value::Table(t) if t.get("name").and_then(toml::Value::as_str) == Some(name) => {
                Some(t)
            }
            _ => None,
        });
        match base {
            Some(base) => merge_table(base, entry),
            None => profiles.push(toml::Value::Table(entry)),
        }
    }
    file.insert("profiles".to_owned(), toml::Value::Array(profiles));
    Ok(file)
}

/// Merge `over` into `base`: tables merge key by key, anything else replaces.
fn merge_table(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_table(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn bundled_default_loads_and_has_docsfy() {
        let c = Config::load(None, no_env).expect("bundled config is valid");
        assert_eq!(c.listen, default_listen());
        assert!(c.redis.url.is_empty());
        assert!(c.profiles().iter().any(|p| p.path == "/api/ws"));
    }

    #[test]
    fn env_overrides_and_names_bad_variables() {
        let env = |k: &str| match k {
            env::LISTEN => Some("127.0.0.1:0".to_owned()),
            env::REDIS_URL => Some("redis://127.0.0.1:1".to_owned()),
            env::ADMIN_KEY => Some("k".to_owned()),
            _ => None,
        };
        let c = Config::load(None, env).expect("valid");
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.redis.url, "redis://127.0.0.1:1");
        assert_eq!(c.auth.admin_key.as_ref().map(Secret::expose), Some("k"));
        assert_eq!(format!("{:?}", c.auth.admin_key), "Some(Secret(***))");
        let with_password = |k: &str| {
            (k == env::REDIS_URL).then(|| "rediss://app:hunter2-pass@redis.example:6380".to_owned())
        };
        let c = Config::load(None, with_password).expect("valid");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2-pass"), "{shown}");
        assert!(shown.contains("rediss"), "the scheme still shows: {shown}");
        let bad = |k: &str| (k == env::LISTEN).then(|| "nope".to_owned());
        let e = Config::load(None, bad).expect_err("bad listen");
        assert!(e.to_string().contains("HERALD_LISTEN"), "{e}");
    }

    #[test]
    fn file_errors_name_the_key() {
        let e = Config::parse("[limits]\noutbound_queu = 3\n", "t.toml").expect_err("unknown key");
        assert!(e.to_string().contains("outbound_queu"), "{e}");
        let mut c = Config::parse("[limits]\noutbound_queue = 0\n", "t.toml").expect("parses");
        c.profiles = Config::parse(DEFAULT_CONFIG, "d")
            .expect("default")
            .profiles;
        let e = c.validate().expect_err("zero queue");
        assert!(
            matches!(e, ConfigError::Invalid { ref key, .. } if key == "limits.outbound_queue"),
            "{e}"
        );
        let mut c =
            Config::parse("[limits]\nwrite_coalesce_bytes = 2000000\n", "t.toml").expect("parses");
        c.profiles = Config::parse(DEFAULT_CONFIG, "d")
            .expect("default")
            .profiles;
        let e = c.validate().expect_err("huge coalescing buffer");
        assert!(
            matches!(e, ConfigError::Invalid { ref key, .. } if key == "limits.write_coalesce_bytes"),
            "{e}"
        );
        let c = Config::parse("[redis]\nurl = \"http://x\"\n", "t.toml").expect("parses");
        let e = c.validate().expect_err("bad url");
        assert!(e.to_string().contains("redis.url"), "{e}");
    }

    #[test]
    fn extend_overrides_one_bundled_profile_and_keeps_the_others() {
        let bundled = Config::load(None, no_env).expect("bundled");
        let text = "bundled_profiles = \"extend\"\n\
            [[profiles]]\nname = \"docsfy\"\n[profiles.heartbeat]\ninterval_ms = 5000\ntimeout_ms = 2000\n\
            [[profiles]]\nname = \"extra\"\npath = \"/extra\"\n[profiles.auth]\n\
            sources = [{ from = \"query\", name = \"t\", accept = [\"jwt\"] }]\n";
        let c = Config::parse(text, "t.toml").expect("extends");
        c.validate().expect("valid");
        let names: Vec<_> = c.profiles().iter().map(|p| p.name.as_str()).collect();
        let mut want: Vec<_> = bundled.profiles().iter().map(|p| p.name.as_str()).collect();
        want.push("extra");
        assert_eq!(names, want, "bundled order kept, new ones after");
        let docsfy = &c.profiles()[0];
        let hb = docsfy.heartbeat.as_ref().expect("heartbeat kept");
        assert_eq!((hb.interval_ms, hb.timeout_ms), (5000, 2000), "overridden");
        assert_eq!(hb.max_missed, 2, "keys not set keep the bundled value");
        assert_eq!(docsfy.path, "/api/ws");
        assert!(docsfy.snapshot.is_some(), "untouched sections kept");

        let e = Config::parse(
            "bundled_profiles = \"extend\"\n[[profiles]]\npath = \"/x\"\n",
            "t.toml",
        )
        .expect_err("nameless");
        assert!(e.to_string().contains("profiles[0].name"), "{e}");
        let e = Config::parse(
            "bundled_profiles = \"extend\"\n[[profiles]]\nname = \"docsfy\"\nframe = { style = \"wavy\" }\n",
            "t.toml",
        )
        .expect_err("bad value in an override");
        assert!(e.to_string().contains("wavy"), "{e}");
        let twice = "bundled_profiles = \"extend\"\n[[profiles]]\nname = \"docsfy\"\n[[profiles]]\nname = \"docsfy\"\n";
        let e = Config::parse(twice, "t.toml").expect_err("a name twice in the file");
        assert!(e.to_string().contains("appears twice"), "{e}");
        let e = Config::parse("bundled_profiles = \"merge\"\n", "t.toml").expect_err("bad mode");
        assert!(e.to_string().contains("bundled_profiles"), "{e}");
    }

    #[test]
    fn development_secrets_only_for_an_unconfigured_loopback_embedded_run() {
        let mut c = Config::load(None, no_env).expect("bundled");
        let dev = c.development_mode().expect("bare run is development mode");
        assert_eq!(c.auth.admin_key.as_ref(), Some(&dev.admin_key));
        assert_eq!(dev.api_key.expose().len(), 64);
        assert_ne!(dev.api_key, dev.admin_key);
        assert!(c.development_mode().is_none(), "generated once");
        let with =
            |k: &'static str, v: &'static str| move |key: &str| (key == k).then(|| v.to_owned());
        for env in [
            with(env::REDIS_URL, "redis://127.0.0.1:1"),
            with(env::LISTEN, "0.0.0.0:8080"),
            with(env::ADMIN_KEY, "k"),
            with(env::JWT_SECRET, "s"),
            with(env::API_KEY, "a"),
        ] {
            let mut c = Config::load(None, env).expect("valid");
            assert!(c.development_mode().is_none(), "{c:?}");
        }
    }

    #[test]
    fn profile_errors_name_the_key() {
        let text = format!(
            "{}\n[[profiles]]\nname = \"docsfy2\"\npath = \"/api/ws\"\n[profiles.auth]\nsources = [{{ from = \"query\", name = \"t\", accept = [\"jwt\"] }}]\n",
            DEFAULT_CONFIG
        );
        let c = Config::parse(&text, "t.toml").expect("parses");
        let e = c.validate().expect_err("duplicate path");
        assert!(e.to_string().contains("repeats profiles[0]"), "{e}");
    }
}
