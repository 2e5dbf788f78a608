//! `heraldctl`: Herald's publisher from the shell, for operators and for
//! backends that are not written in Rust.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use herald_publisher::{HttpPublisher, Principal, Publisher, RedisMode, RedisTarget, Topic};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Publish to Herald gateways and manage what they serve"
)]
struct Cli {
    /// Redis URL the gateways use (default `redis://127.0.0.1:6379` unless
    /// --redis-node is given).
    #[arg(long, env = "HERALD_REDIS_URL")]
    redis: Option<String>,
    /// Instead of --redis: how Redis is laid out (`standalone`, `sentinel`,
    /// `cluster`), as the gateways' `redis.mode`.
    #[arg(long, env = "HERALD_REDIS_MODE", value_parser = parse_mode)]
    redis_mode: Option<RedisMode>,
    /// Instead of --redis: `HOST:PORT` of the server, of each sentinel or of
    /// cluster seed nodes (repeat, or comma-separate in the variable).
    #[arg(long, env = "HERALD_REDIS_NODES", value_delimiter = ',')]
    redis_node: Vec<String>,
    /// Sentinel: the monitored primary's name.
    #[arg(long, env = "HERALD_REDIS_SERVICE_NAME")]
    redis_service_name: Option<String>,
    /// ACL user (overrides the URL's).
    #[arg(long, env = "HERALD_REDIS_USERNAME")]
    redis_username: Option<String>,
    /// Password (overrides the URL's); best given in the variable.
    #[arg(long, env = "HERALD_REDIS_PASSWORD", hide_env_values = true)]
    redis_password: Option<String>,
    /// Instead of a `rediss…` URL: connect over TLS.
    #[arg(long, env = "HERALD_REDIS_TLS")]
    redis_tls: bool,
    /// TLS: trust only the CAs in this PEM bundle (default: the system's).
    #[arg(long, env = "HERALD_REDIS_TLS_CA_FILE")]
    redis_tls_ca: Option<std::path::PathBuf>,
    /// TLS: client certificate (PEM) for a Redis that requires one.
    #[arg(long, env = "HERALD_REDIS_TLS_CERT_FILE", requires = "redis_tls_key")]
    redis_tls_cert: Option<std::path::PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    #[arg(long, env = "HERALD_REDIS_TLS_KEY_FILE", requires = "redis_tls_cert")]
    redis_tls_key: Option<std::path::PathBuf>,
    /// Database number (standalone and Sentinel).
    #[arg(long)]
    redis_database: Option<u8>,
    /// Key prefix the gateways use (`redis.prefix`).
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald")]
    prefix: String,
    /// Use a gateway's server API instead of Redis, at this URL with the API
    /// prefix (`http://127.0.0.1:8080/herald/v1`); every command but
    /// assign-task, cancel-task and consume.
    #[arg(long, env = "HERALD_HTTP_URL")]
    http: Option<String>,
    /// Server-API key for --http (the operator key or a `publish` key).
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// How long a publish keeps retrying while Redis is unreachable or
    /// failing over, in ms (0: no retry). A retry never stores or delivers
    /// the event twice.
    #[arg(long, env = "HERALD_RETRY_MS", default_value_t = 10_000)]
    retry_ms: u64,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Publish one event to an audience; prints the event id.
    Publish {
        /// Topics of the audience (`user:alice`, `role:admin`, `res:project:p1`).
        #[arg(long = "to", required = true, num_args = 1..)]
        to: Vec<String>,
        /// Event type (`progress`, `status_change`, …).
        #[arg(long = "type")]
        event_type: String,
        /// Payload, a JSON value.
        #[arg(long)]
        data: String,
        /// With --http: a retried command with the same key is published once.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Store the snapshot of a topic (or of a user with --user).
    Snapshot {
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        topic: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        data: String,
        /// Also send the user's connections a fresh snapshot now.
        #[arg(long, requires = "user")]
        resync: bool,
    },
    /// Send a user's connections a fresh snapshot.
    Resync {
        #[arg(long)]
        user: String,
    },
    /// Grant a user a topic or glob, then resynchronise them.
    Grant {
        #[arg(long)]
        user: String,
        #[arg(long)]
        topic: String,
    },
    /// Revoke a grant, then resynchronise the user.
    Revoke {
        #[arg(long)]
        user: String,
        #[arg(long)]
        topic: String,
    },
    /// Send an event to every connection of an organisation (AgentHQ's broadcastToOrg).
    BroadcastOrg {
        #[arg(long)]
        org: String,
        #[arg(long = "type")]
        event_type: String,
        #[arg(long)]
        data: String,
    },
    /// Send an event to an organisation's channel subscribers (AgentHQ's broadcastToChannel).
    BroadcastChannel {
        #[arg(long)]
        org: String,
        #[arg(long)]
        channel: String,
        #[arg(long = "type")]
        event_type: String,
        #[arg(long)]
        data: String,
    },
    /// Register a resource (`res:workflow-run:42`) so its routes accept connections.
    RegisterResource {
        #[arg(long)]
        topic: String,
    },
    /// Send an agent a task (task_assigned); --task is the task object.
    AssignTask {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        task: String,
    },
    /// Cancel an agent's task (task_cancelled).
    CancelTask {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        task_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Read client frames forwarded upstream (one JSON line each); with --ack
    /// they are acknowledged after printing.
    Consume {
        #[arg(long, default_value = "agent-tasks")]
        stream: String,
        #[arg(long, default_value = "heraldctl")]
        group: String,
        #[arg(long, default_value = "heraldctl-1")]
        consumer: String,
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Wait this long for a message when none is pending.
        #[arg(long, default_value_t = 0)]
        block_ms: u64,
        #[arg(long)]
        ack: bool,
    },
    /// Manage API keys (stored hashed).
    Apikey {
        #[command(subcommand)]
        action: CredentialCmd,
    },
    /// Manage session tokens (stored hashed, expiring).
    Session {
        #[command(subcommand)]
        action: CredentialCmd,
    },
}

#[derive(Debug, Subcommand)]
enum CredentialCmd {
    /// Register a key or token for a principal.
    Add {
        /// The secret itself (API key or session token).
        #[arg(long, alias = "token")]
        key: String,
        #[arg(long)]
        sub: String,
        #[arg(long)]
        org: Option<String>,
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Topic globs the principal may subscribe to by itself.
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Sessions only: lifetime in seconds.
        #[arg(long, default_value_t = 28_800)]
        ttl_secs: u64,
    },
    /// Remove a key or token.
    Remove {
        #[arg(long, alias = "token")]
        key: String,
    },
}

fn parse_mode(s: &str) -> Result<RedisMode, String> {
    RedisMode::parse(s).ok_or_else(|| format!("`{s}` is not standalone, sentinel or cluster"))
}

/// The deployment named on the command line: --redis, or the explicit
/// --redis-node settings, or the local default.
fn redis_target(cli: &Cli) -> RedisTarget {
    let explicit = !cli.redis_node.is_empty()
        || cli.redis_mode.is_some()
        || cli.redis_service_name.is_some()
        || cli.redis_tls
        || cli.redis_database.is_some();
    RedisTarget {
        url: match (&cli.redis, explicit) {
            (Some(url), _) => url.clone(),
            (None, true) => String::new(),
            (None, false) => "redis://127.0.0.1:6379".to_owned(),
        },
        mode: cli.redis_mode,
        nodes: cli.redis_node.clone(),
        service_name: cli.redis_service_name.clone().unwrap_or_default(),
        username: cli.redis_username.clone(),
        password: cli.redis_password.clone(),
        tls: cli.redis_tls,
        database: cli.redis_database,
        tls_ca_file: cli.redis_tls_ca.clone(),
        tls_cert_file: cli.redis_tls_cert.clone(),
        tls_key_file: cli.redis_tls_key.clone(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(url) = &cli.http {
        let key = cli
            .api_key
            .as_deref()
            .context("--http needs --api-key (or HERALD_API_KEY)")?;
        return run(&HttpPublisher::new(url, key)?, cli.command).await;
    }
    let target = redis_target(&cli);
    // The client configuration also reads the TLS files, so a missing one
    // is named here, before any connection attempt.
    if let Err(e) = target.client_config() {
        let flag = match e.key {
            "url" => "--redis",
            "nodes" => "--redis-node",
            "mode" => "--redis-mode",
            "service_name" => "--redis-service-name",
            "tls" => "--redis-tls",
            "database" => "--redis-database",
            "tls_ca_file" => "--redis-tls-ca",
            "tls_cert_file" => "--redis-tls-cert",
            "tls_key_file" => "--redis-tls-key",
            other => other,
        };
        bail!("invalid Redis settings: {flag}: {}", e.reason);
    }
    let publisher = Publisher::connect_to(&target, &cli.prefix)
        .await
        .with_context(|| "cannot connect to Redis (check --redis / HERALD_REDIS_URL)")?
        .with_retry_window(Duration::from_millis(cli.retry_ms));
    match cli.command {
        Cmd::AssignTask { agent, task } => {
            println!("{}", publisher.assign_task(&agent, &json(&task)?).await?)
        }
        Cmd::CancelTask {
            agent,
            task_id,
            reason,
        } => {
            println!(
                "{}",
                publisher.cancel_task(&agent, &task_id, &reason).await?
            )
        }
        Cmd::Consume {
            stream,
            group,
            consumer,
            count,
            block_ms,
            ack,
        } => {
            let block = (block_ms > 0).then(|| Duration::from_millis(block_ms));
            let batch = publisher
                .consume(&stream, &group, &consumer, count, block)
                .await?;
            for m in &batch {
                let line = serde_json::json!({
                    "id": m.id, "source": m.source, "sub": m.sub, "received_ms": m.received_ms, "frame": m.frame
                });
                println!("{line}");
            }
            if ack {
                publisher
                    .ack(
                        &stream,
                        &group,
                        &batch.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
                    )
                    .await?;
            }
        }
        other => run(&publisher, other).await?,
    }
    Ok(())
}

/// Where the commands both paths serve go: Redis (`herald-publisher`) or a
/// gateway's server API. One `run` serves both.
trait Target {
    async fn publish(
        &self,
        to: &[Topic],
        event_type: &str,
        data: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<String>;
    async fn set_snapshot(&self, topic: &Topic, data: &serde_json::Value) -> anyhow::Result<()>;
    async fn resync(&self, user: &str) -> anyhow::Result<()>;
    async fn register_resource(&self, topic: &Topic) -> anyhow::Result<()>;
    async fn grant(&self, user: &str, glob: &str) -> anyhow::Result<()>;
    async fn revoke(&self, user: &str, glob: &str) -> anyhow::Result<()>;
    /// `ttl` given: a session; none: an API key.
    async fn add_credential(
        &self,
        secret: &str,
        principal: &Principal,
        ttl: Option<Duration>,
    ) -> anyhow::Result<()>;
    async fn remove_credential(&self, secret: &str, session: bool) -> anyhow::Result<()>;
}

impl Target for Publisher {
    async fn publish(
        &self,
        to: &[Topic],
        event_type: &str,
        data: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<String> {
        if idempotency_key.is_some() {
            bail!("--idempotency-key needs --http (the server API keeps the keys)");
        }
        Ok(Publisher::publish(self, to, event_type, data).await?)
    }
    async fn set_snapshot(&self, topic: &Topic, data: &serde_json::Value) -> anyhow::Result<()> {
        Ok(Publisher::set_snapshot(self, topic, data).await?)
    }
    async fn resync(&self, user: &str) -> anyhow::Result<()> {
        Ok(Publisher::resync(self, user).await?)
    }
    async fn register_resource(&self, topic: &Topic) -> anyhow::Result<()> {
        Ok(Publisher::register_resource(self, topic).await?)
    }
    async fn grant(&self, user: &str, glob: &str) -> anyhow::Result<()> {
        Ok(Publisher::grant(self, user, glob).await?)
    }
    async fn revoke(&self, user: &str, glob: &str) -> anyhow::Result<()> {
        Ok(Publisher::revoke(self, user, glob).await?)
    }
    async fn add_credential(
        &self,
        secret: &str,
        principal: &Principal,
        ttl: Option<Duration>,
    ) -> anyhow::Result<()> {
        match ttl {
            Some(ttl) => self.add_session(secret, principal, ttl).await?,
            None => self.add_api_key(secret, principal).await?,
        }
        Ok(())
    }
    async fn remove_credential(&self, secret: &str, session: bool) -> anyhow::Result<()> {
        if session {
            self.remove_session(secret).await?
        } else {
            self.remove_api_key(secret).await?
        }
        Ok(())
    }
}

impl Target for HttpPublisher {
    async fn publish(
        &self,
        to: &[Topic],
        event_type: &str,
        data: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<String> {
        Ok(
            HttpPublisher::publish(self, to, event_type, data, idempotency_key)
                .await?
                .id,
        )
    }
    async fn set_snapshot(&self, topic: &Topic, data: &serde_json::Value) -> anyhow::Result<()> {
        Ok(HttpPublisher::set_snapshot(self, topic, data).await?)
    }
    async fn resync(&self, user: &str) -> anyhow::Result<()> {
        Ok(HttpPublisher::resync(self, user).await?)
    }
    async fn register_resource(&self, topic: &Topic) -> anyhow::Result<()> {
        Ok(HttpPublisher::register_resource(self, topic).await?)
    }
    async fn grant(&self, user: &str, glob: &str) -> anyhow::Result<()> {
        Ok(HttpPublisher::grant(self, user, glob).await?)
    }
    async fn revoke(&self, user: &str, glob: &str) -> anyhow::Result<()> {
        Ok(HttpPublisher::revoke(self, user, glob).await?)
    }
    async fn add_credential(
        &self,
        secret: &str,
        principal: &Principal,
        ttl: Option<Duration>,
    ) -> anyhow::Result<()> {
        match ttl {
            Some(ttl) => self.add_session(secret, principal, ttl).await?,
            None => self.add_api_key(secret, principal, None).await?,
        }
        Ok(())
    }
    async fn remove_credential(&self, secret: &str, session: bool) -> anyhow::Result<()> {
        if session {
            self.remove_session(secret).await?
        } else {
            self.remove_api_key(secret).await?
        }
        Ok(())
    }
}

/// Every command both targets serve; the others are refused with the reason.
async fn run(target: &impl Target, command: Cmd) -> anyhow::Result<()> {
    match command {
        Cmd::Publish {
            to,
            event_type,
            data,
            idempotency_key,
        } => {
            let audience = to
                .iter()
                .map(|t| Topic::parse(t))
                .collect::<Result<Vec<_>, _>>()?;
            let id = target
                .publish(
                    &audience,
                    &event_type,
                    &json(&data)?,
                    idempotency_key.as_deref(),
                )
                .await?;
            println!("{id}");
        }
        Cmd::Snapshot {
            topic,
            user,
            data,
            resync,
        } => {
            let topic = match (&topic, &user) {
                (Some(t), _) => Topic::parse(t)?,
                (None, Some(u)) => Topic::user(u)?,
                (None, None) => bail!("give --topic or --user"),
            };
            target.set_snapshot(&topic, &json(&data)?).await?;
            if let (true, Some(u)) = (resync, &user) {
                target.resync(u).await?;
            }
        }
        Cmd::Resync { user } => target.resync(&user).await?,
        Cmd::RegisterResource { topic } => target.register_resource(&Topic::parse(&topic)?).await?,
        Cmd::BroadcastOrg {
            org,
            event_type,
            data,
        } => {
            let to = [Topic::org(&org)?];
            println!(
                "{}",
                target
                    .publish(&to, &event_type, &json(&data)?, None)
                    .await?
            );
        }
        Cmd::BroadcastChannel {
            org,
            channel,
            event_type,
            data,
        } => {
            let to = [herald_publisher::channel_topic(&org, &channel)?];
            println!(
                "{}",
                target
                    .publish(&to, &event_type, &json(&data)?, None)
                    .await?
            );
        }
        Cmd::Grant { user, topic } => target.grant(&user, &topic).await?,
        Cmd::Revoke { user, topic } => target.revoke(&user, &topic).await?,
        Cmd::Apikey { action } => credential(target, action, false).await?,
        Cmd::Session { action } => credential(target, action, true).await?,
        other => bail!(
            "`{}` is not served by the server API yet: use it with --redis",
            format!("{other:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap_or_default()
                .to_lowercase()
        ),
    }
    Ok(())
}

async fn credential(
    target: &impl Target,
    action: CredentialCmd,
    session: bool,
) -> anyhow::Result<()> {
    match action {
        CredentialCmd::Add {
            key,
            sub,
            org,
            roles,
            topics,
            ttl_secs,
        } => {
            let ttl = session.then(|| Duration::from_secs(ttl_secs));
            target
                .add_credential(&key, &principal(sub, org, roles, topics), ttl)
                .await
        }
        CredentialCmd::Remove { key } => target.remove_credential(&key, session).await,
    }
}

fn json(text: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text).with_context(|| "--data must be a JSON value")
}

fn principal(
    sub: String,
    org: Option<String>,
    roles: Vec<String>,
    topics: Vec<String>,
) -> Principal {
    let mut p = Principal::new(sub);
    p.org = org;
    p.roles = roles;
    p.topics = topics;
    p
}
