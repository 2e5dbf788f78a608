//! Where Redis is, and the one client configuration every Herald process
//! derives from it (feature `redis`).
//!
//! The gateway's `[redis]` table, the publisher library and `heraldctl`
//! describe a deployment the same way: a URL, or the same facts as explicit
//! settings (mode, nodes, Sentinel service name, credentials, TLS). Whichever
//! form, the client gets the same behaviour from here: a cluster is
//! rediscovered through every node it last knew, so losing any one seed does
//! not stop a reconnect; Sentinel is asked for the current primary on every
//! (re)connect; `rediss` and `tls = true` trust the system's CAs or the PEM
//! bundle in `SSL_CERT_FILE`.

use fred::prelude::Config;
use fred::types::config::{ClusterDiscoveryPolicy, ServerConfig, TlsConnector};

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
            .finish_non_exhaustive()
    }
}

/// Why a target was refused: the setting (`url`, `mode`, `nodes`,
/// `service_name`, `tls`, `database`) and the reason.
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
        assert!(RedisTarget::default().validate().is_ok());
        assert!(!RedisTarget::default().is_set());
    }

    #[test]
    fn debug_never_shows_the_url_password() {
        let target = RedisTarget::from_url("redis://:hunter2@127.0.0.1:6379");
        assert!(!format!("{target:?}").contains("hunter2"));
    }
}
