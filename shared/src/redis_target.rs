//! Where Redis is, and the one client configuration every Herald process
//! derives from it (feature `redis`).
//!
//! The gateway's `[redis]` table, the publisher library and `heraldctl`
//! describe a deployment the same way: a URL, or the same facts as explicit
//! settings (mode, nodes, Sentinel service name, credentials, TLS). Whichever
//! form, the client gets the same behaviour from here: a cluster is
//! rediscovered through every node it last knew, so losing any one seed does
//! not stop a reconnect; Sentinel is asked for the current primary on every
//! (re)connect; `rediss` and `tls = true` trust the system's CAs (or the PEM
//! bundle in `SSL_CERT_FILE`), or only the CA bundle `tls_ca_file` names,
//! and present the client certificate `tls_cert_file` / `tls_key_file` to a
//! Redis that requires one (`tls-auth-clients yes`).

use std::path::{Path, PathBuf};

use fred::prelude::Config;
use fred::rustls::pki_types::pem::PemObject;
use fred::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use fred::rustls::{ClientConfig as TlsClientConfig, RootCertStore};
use fred::types::config::{ClusterDiscoveryPolicy, ServerConfig, TlsConfig, TlsConnector};

/// How the Redis deployment is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedisMode {
    /// One server (`nodes` holds its address).
    #[default]
    Standalone,
    /// A primary found through sentinels (`nodes` lists the sentinels).
    Sentinel,
    /// Redis Cluster (`nodes` lists seed nodes; the rest are discovered).
    Cluster,
}

impl RedisMode {
    /// Parse `standalone`, `sentinel` or `cluster`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "standalone" => Some(Self::Standalone),
            "sentinel" => Some(Self::Sentinel),
            "cluster" => Some(Self::Cluster),
            _ => None,
        }
    }
}

/// A Redis deployment: `url`, or `nodes` with the other explicit settings.
/// `username` and `password` apply to either form (they override a URL's,
/// so a URL can stay free of secrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTarget {
    /// `redis://`, `rediss://`, `redis-cluster://`, `redis-sentinel://` …
    pub url: String,
    /// Explicit form: the layout; `None` is standalone.
    pub mode: Option<RedisMode>,
    /// Explicit form: `HOST:PORT` of the server, the sentinels or the seeds.
    pub nodes: Vec<String>,
    /// Explicit form, Sentinel: the monitored primary's name.
    pub service_name: String,
    /// ACL user (data nodes and sentinels).
    pub username: Option<String>,
    /// Password (data nodes and sentinels).
    pub password: Option<String>,
    /// Explicit form: connect over TLS.
    pub tls: bool,
    /// Explicit form: database number (standalone and Sentinel only).
    pub database: Option<u8>,
    /// TLS, either form: trust only the CAs in this PEM bundle (instead of
    /// the system's).
    pub tls_ca_file: Option<PathBuf>,
    /// TLS, either form: the client certificate chain (PEM) presented to a
    /// Redis that requires one; needs `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// TLS, either form: the client certificate's private key (PEM: PKCS#8,
    /// PKCS#1 or SEC1).
    pub tls_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show its scheme only.
        let scheme = self.url.split_once("://").map_or("", |(s, _)| s);
        f.debug_struct("RedisTarget")
            .field("scheme", &scheme)
            .field("mode", &self.mode)
            .field("nodes", &self.nodes)
            .field("service_name", &self.service_name)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .finish_non_exhaustive()
    }
}

/// Why a target was refused: the setting (`url`, `mode`, `nodes`,
/// `service_name`, `tls`, `database`, `tls_ca_file`, `tls_cert_file`,
/// `tls_key_file`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct TargetError {
    pub key: &'static str,
    pub reason: String,
}

fn refuse<T>(key: &'static str, reason: impl Into<String>) -> Result<T, TargetError> {
    Err(TargetError {
        key,
        reason: reason.into(),
    })
}

/// URL schemes the gateway and the publisher accept.
pub const URL_SCHEMES: [&str; 6] = [
    "redis://",
    "rediss://",
    "redis-cluster://",
    "rediss-cluster://",
    "redis-sentinel://",
    "rediss-sentinel://",
];

impl RedisTarget {
    /// A deployment named by URL.
    pub fn from_url(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            ..Self::default()
        }
    }

    /// Whether a deployment is named at all (else: the embedded broker).
    pub fn is_set(&self) -> bool {
        !self.url.is_empty() || !self.nodes.is_empty()
    }

    /// Everything that can be checked without connecting.
    pub fn validate(&self) -> Result<(), TargetError> {
        self.validate_tls_files()?;
        if !self.url.is_empty() {
            if !URL_SCHEMES.iter().any(|s| self.url.starts_with(s)) {
                return refuse(
                    "url",
                    "must start with redis://, redis-cluster:// or redis-sentinel:// \
                     (rediss… for TLS)",
                );
            }
            let explicit = [
                ("nodes", !self.nodes.is_empty()),
                ("mode", self.mode.is_some()),
                ("service_name", !self.service_name.is_empty()),
                ("tls", self.tls),
                ("database", self.database.is_some()),
            ];
            if let Some((key, _)) = explicit.iter().find(|(_, set)| *set) {
                return refuse(
                    key,
                    "set either url or the explicit settings (mode, nodes, service_name, \
                     tls, database), not both",
                );
            }
            return Ok(());
        }
        let mode = self.mode.unwrap_or_default();
        if self.nodes.is_empty() {
            if self.mode.is_some()
                || !self.service_name.is_empty()
                || self.tls
                || self.database.is_some()
            {
                return refuse("nodes", "list at least one HOST:PORT");
            }
            return Ok(());
        }
        for node in &self.nodes {
            parse_node(node)?;
        }
        match mode {
            RedisMode::Standalone if self.nodes.len() > 1 => {
                return refuse(
                    "nodes",
                    "a standalone Redis has one address (sentinel and cluster modes take several)",
                );
            }
            RedisMode::Sentinel if self.service_name.is_empty() => {
                return refuse(
                    "service_name",
                    "Sentinel needs the monitored primary's name",
                );
            }
            RedisMode::Cluster if self.database.is_some_and(|d| d != 0) => {
                return refuse("database", "Redis Cluster has database 0 only");
            }
            _ => {}
        }
        if mode != RedisMode::Sentinel && !self.service_name.is_empty() {
            return refuse("service_name", "only used in sentinel mode");
        }
        Ok(())
    }

    /// Whether connections use TLS (a `rediss…` URL or `tls = true`).
    pub fn uses_tls(&self) -> bool {
        self.url.starts_with("rediss") || self.tls
    }

    fn validate_tls_files(&self) -> Result<(), TargetError> {
        let files = [
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
        ];
        if let Some((key, _)) = files.iter().find(|(_, f)| f.is_some())
            && !self.uses_tls()
        {
            return refuse(
                key,
                "only used over TLS: give a rediss… URL or set tls = true",
            );
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => refuse(
                "tls_key_file",
                "a client certificate (tls_cert_file) needs its private key",
            ),
            (None, Some(_)) => refuse(
                "tls_cert_file",
                "a private key (tls_key_file) needs its client certificate",
            ),
            _ => Ok(()),
        }
    }

    /// The TLS connector when a CA bundle or a client certificate is given
    /// (else fred's default: the system's CAs, no client certificate).
    /// Reads the files; a missing or unparsable one names its setting.
    fn tls_connector(&self) -> Result<Option<TlsConnector>, TargetError> {
        if self.tls_ca_file.is_none() && self.tls_cert_file.is_none() {
            return Ok(None);
        }
        let roots = match &self.tls_ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs("tls_ca_file", path)? {
                    roots.add(cert).map_err(|e| TargetError {
                        key: "tls_ca_file",
                        reason: format!("{}: {e}", path.display()),
                    })?;
                }
                roots
            }
            // The system's roots, as without any file: rebuilt here because
            // the client certificate needs its own builder.
            None => system_roots()?,
        };
        let builder = TlsClientConfig::builder().with_root_certificates(roots);
        let config = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certs("tls_cert_file", cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TargetError {
                    key: "tls_key_file",
                    reason: format!("{}: no PEM private key ({e})", key.display()),
                })?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| TargetError {
                        key: "tls_key_file",
                        reason: format!(
                            "{} does not go with {}: {e}",
                            key.display(),
                            cert.display()
                        ),
                    })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Some(config.into()))
    }

    /// The client configuration (not connected). Validates first.
    pub fn client_config(&self) -> Result<Config, TargetError> {
        self.validate()?;
        let mut config = if !self.url.is_empty() {
            Config::from_url(&self.url).map_err(|e| TargetError {
                key: "url",
                reason: e.details().to_owned(),
            })?
        } else {
            let hosts: Vec<(String, u16)> = self
                .nodes
                .iter()
                .map(|n| parse_node(n))
                .collect::<Result<_, _>>()?;
            let server = match self.mode.unwrap_or_default() {
                RedisMode::Standalone => {
                    let Some((host, port)) = hosts.into_iter().next() else {
                        return refuse("nodes", "list at least one HOST:PORT");
                    };
                    ServerConfig::new_centralized(host, port)
                }
                RedisMode::Sentinel => ServerConfig::new_sentinel(hosts, &self.service_name),
                RedisMode::Cluster => ServerConfig::new_clustered(hosts),
            };
            let tls = match self.tls {
                true => Some(
                    TlsConnector::default_rustls()
                        .map_err(|e| TargetError {
                            key: "tls",
                            reason: e.details().to_owned(),
                        })?
                        .into(),
                ),
                false => None,
            };
            Config {
                server,
                tls,
                database: self.database,
                ..Config::default()
            }
        };
        if let Some(connector) = self.tls_connector()? {
            // Keep the URL's host mapping; only who is trusted and what is
            // presented change.
            match &mut config.tls {
                Some(tls) => tls.connector = connector,
                None => config.tls = Some(TlsConfig::from(connector)),
            }
        }
        if self.username.is_some() {
            config.username.clone_from(&self.username);
        }
        if self.password.is_some() {
            config.password.clone_from(&self.password);
        }
        // Rediscover a cluster through every node it last knew, not only
        // the seeds: a dead seed (often the primary that just failed) must
        // not keep a client from finding the promoted one.
        if let ServerConfig::Clustered { policy, .. } = &mut config.server {
            *policy = ClusterDiscoveryPolicy::UseCache;
        }
        Ok(config)
    }
}

/// Every certificate of a PEM file; none at all is an error.
fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TargetError> {
    let bad = |reason: String| TargetError {
        key,
        reason: format!("{}: {reason}", path.display()),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

/// The system's trusted roots (`SSL_CERT_FILE` when set), as fred's default
/// connector trusts.
fn system_roots() -> Result<RootCertStore, TargetError> {
    let found = fred::rustls_native_certs::load_native_certs();
    if let Some(e) = found.errors.first() {
        return refuse("tls", e.to_string());
    }
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    Ok(roots)
}

/// `HOST:PORT`, the host possibly a bracketed IPv6 address.
fn parse_node(node: &str) -> Result<(String, u16), TargetError> {
    let bad = || {
        refuse(
            "nodes",
            format!("`{node}` is not HOST:PORT (a port from 1 to 65535)"),
        )
    };
    let Some((host, port)) = node.rsplit_once(':') else {
        return bad();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match port.parse::<u16>() {
        Ok(port) if port > 0 && !host.is_empty() => Ok((host.to_owned(), port)),
        _ => bad(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_mode_builds_its_server_config() {
        let cluster = RedisTarget {
            mode: Some(RedisMode::Cluster),
            nodes: nodes(&["10.0.0.1:7000", "10.0.0.2:7000"]),
            password: Some("p".to_owned()),
            ..Default::default()
        };
        let config = cluster.client_config().expect("valid");
        assert!(matches!(
            config.server,
            ServerConfig::Clustered { ref hosts, policy: ClusterDiscoveryPolicy::UseCache } if hosts.len() == 2
        ));
        assert_eq!(config.password.as_deref(), Some("p"));

        let sentinel = RedisTarget {
            mode: Some(RedisMode::Sentinel),
            nodes: nodes(&["s1:26379", "s2:26379", "[::1]:26380"]),
            service_name: "mymaster".to_owned(),
            database: Some(2),
            ..Default::default()
        };
        let config = sentinel.client_config().expect("valid");
        assert!(matches!(
            config.server,
            ServerConfig::Sentinel { ref hosts, ref service_name, .. }
                if hosts.len() == 3 && service_name == "mymaster"
        ));
        assert_eq!(config.database, Some(2));

        let one = RedisTarget {
            nodes: nodes(&["redis.example:6380"]),
            tls: true,
            ..Default::default()
        };
        let config = one.client_config().expect("valid");
        assert!(config.tls.is_some());
        assert!(matches!(config.server, ServerConfig::Centralized { .. }));
    }

    #[test]
    fn credentials_override_the_urls() {
        let target = RedisTarget {
            username: Some("herald".to_owned()),
            password: Some("from-secret".to_owned()),
            ..RedisTarget::from_url("redis://old:old@127.0.0.1:6379")
        };
        let config = target.client_config().expect("valid");
        assert_eq!(config.username.as_deref(), Some("herald"));
        assert_eq!(config.password.as_deref(), Some("from-secret"));
    }

    #[test]
    fn mistakes_name_the_setting() {
        let cases = [
            (RedisTarget::from_url("http://x"), "url"),
            (
                RedisTarget {
                    nodes: nodes(&["a:1"]),
                    ..RedisTarget::from_url("redis://a:1")
                },
                "nodes",
            ),
            (
                RedisTarget {
                    nodes: nodes(&["a:1", "b:1"]),
                    ..Default::default()
                },
                "nodes",
            ),
            (
                RedisTarget {
                    mode: Some(RedisMode::Sentinel),
                    nodes: nodes(&["a:26379"]),
                    ..Default::default()
                },
                "service_name",
            ),
            (
                RedisTarget {
                    mode: Some(RedisMode::Cluster),
                    ..Default::default()
                },
                "nodes",
            ),
            (
                RedisTarget {
                    nodes: nodes(&["a:0"]),
                    ..Default::default()
                },
                "nodes",
            ),
            (
                RedisTarget {
                    nodes: nodes(&["no-port"]),
                    ..Default::default()
                },
                "nodes",
            ),
            (
                RedisTarget {
                    nodes: nodes(&["a:1"]),
                    service_name: "m".to_owned(),
                    ..Default::default()
                },
                "service_name",
            ),
            (
                RedisTarget {
                    mode: Some(RedisMode::Cluster),
                    nodes: nodes(&["a:1"]),
                    database: Some(3),
                    ..Default::default()
                },
                "database",
            ),
        ];
        for (target, key) in cases {
            let e = target.validate().expect_err("refused");
            assert_eq!(e.key, key, "{target:?}: {e}");
        }
        let tls_files = [
            (
                RedisTarget {
                    tls_ca_file: Some("/ca.pem".into()),
                    ..RedisTarget::from_url("redis://a:1")
                },
                "tls_ca_file",
            ),
            (
                RedisTarget {
                    tls_cert_file: Some("/c.pem".into()),
                    ..RedisTarget::from_url("rediss://a:1")
                },
                "tls_key_file",
            ),
            (
                RedisTarget {
                    nodes: nodes(&["a:1"]),
                    tls: true,
                    tls_key_file: Some("/k.pem".into()),
                    ..Default::default()
                },
                "tls_cert_file",
            ),
        ];
        for (target, key) in tls_files {
            let e = target.validate().expect_err("refused");
            assert_eq!(e.key, key, "{target:?}: {e}");
        }
        assert!(RedisTarget::default().validate().is_ok());
        assert!(!RedisTarget::default().is_set());
    }

    #[test]
    fn unreadable_tls_files_are_named_before_connecting() {
        let dir = std::env::temp_dir().join(format!("herald-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "no certificate here").expect("write");
        let cases = [
            (
                RedisTarget {
                    tls_ca_file: Some(dir.join("missing.pem")),
                    ..RedisTarget::from_url("rediss://127.0.0.1:6380")
                },
                "tls_ca_file",
            ),
            (
                RedisTarget {
                    tls_ca_file: Some(not_pem.clone()),
                    ..RedisTarget::from_url("rediss://127.0.0.1:6380")
                },
                "tls_ca_file",
            ),
            (
                RedisTarget {
                    tls_cert_file: Some(not_pem.clone()),
                    tls_key_file: Some(not_pem),
                    ..RedisTarget::from_url("rediss://127.0.0.1:6380")
                },
                "tls_cert_file",
            ),
        ];
        for (target, key) in cases {
            let e = target.client_config().expect_err("refused");
            assert_eq!(e.key, key, "{target:?}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_never_shows_the_url_password() {
        let target = RedisTarget::from_url("redis://:hunter2@127.0.0.1:6379");
        assert!(!format!("{target:?}").contains("hunter2"));
    }
}
