//! `heraldctl`: Herald's publisher from the shell, for operators and for
//! backends that are not written in Rust.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use herald_publisher::{HttpPublisher, Principal, Publisher, Topic};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Publish to Herald gateways and manage what they serve"
)]
struct Cli {
    /// Redis URL the gateways use.
    #[arg(
        long,
        env = "HERALD_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis: String,
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(url) = &cli.http {
        let key = cli
            .api_key
            .as_deref()
            .context("--http needs --api-key (or HERALD_API_KEY)")?;
        return over_http(HttpPublisher::new(url, key)?, cli.command).await;
    }
    let publisher = Publisher::connect_with_prefix(&cli.redis, &cli.prefix)
        .await
        .with_context(|| "cannot connect to Redis (check --redis / HERALD_REDIS_URL)")?;
    match cli.command {
        Cmd::Publish {
            to,
            event_type,
            data,
            idempotency_key,
        } => {
            if idempotency_key.is_some() {
                bail!("--idempotency-key needs --http (the server API keeps the keys)");
            }
            let audience = to
                .iter()
                .map(|t| Topic::parse(t))
                .collect::<Result<Vec<_>, _>>()?;
            let id = publisher
                .publish(&audience, &event_type, &json(&data)?)
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
            publisher.set_snapshot(&topic, &json(&data)?).await?;
            if let (true, Some(u)) = (resync, &user) {
                publisher.resync(u).await?;
            }
        }
        Cmd::Resync { user } => publisher.resync(&user).await?,
        Cmd::RegisterResource { topic } => {
            publisher.register_resource(&Topic::parse(&topic)?).await?
        }
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
        Cmd::BroadcastOrg {
            org,
            event_type,
            data,
        } => {
            println!(
                "{}",
                publisher
                    .broadcast_to_org(&org, &event_type, &json(&data)?)
                    .await?
            );
        }
        Cmd::BroadcastChannel {
            org,
            channel,
            event_type,
            data,
        } => {
            println!(
                "{}",
                publisher
                    .broadcast_to_channel(&org, &channel, &event_type, &json(&data)?)
                    .await?
            );
        }
        Cmd::Grant { user, topic } => publisher.grant(&user, &topic).await?,
        Cmd::Revoke { user, topic } => publisher.revoke(&user, &topic).await?,
        Cmd::Apikey { action } => match action {
            CredentialCmd::Add {
                key,
                sub,
                org,
                roles,
                topics,
                ..
            } => {
                publisher
                    .add_api_key(&key, &principal(sub, org, roles, topics))
                    .await?
            }
            CredentialCmd::Remove { key } => publisher.remove_api_key(&key).await?,
        },
        Cmd::Session { action } => match action {
            CredentialCmd::Add {
                key,
                sub,
                org,
                roles,
                topics,
                ttl_secs,
            } => {
                publisher
                    .add_session(
                        &key,
                        &principal(sub, org, roles, topics),
                        Duration::from_secs(ttl_secs),
                    )
                    .await?
            }
            CredentialCmd::Remove { key } => publisher.remove_session(&key).await?,
        },
    }
    Ok(())
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

/// The commands the server API serves, over HTTP.
async fn over_http(api: HttpPublisher, command: Cmd) -> anyhow::Result<()> {
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
            let published = api
                .publish(
                    &audience,
                    &event_type,
                    &json(&data)?,
                    idempotency_key.as_deref(),
                )
                .await?;
            println!("{}", published.id);
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
            api.set_snapshot(&topic, &json(&data)?).await?;
            if let (true, Some(u)) = (resync, &user) {
                api.resync(u).await?;
            }
        }
        Cmd::Resync { user } => api.resync(&user).await?,
        Cmd::RegisterResource { topic } => api.register_resource(&Topic::parse(&topic)?).await?,
        Cmd::Grant { user, topic } => api.grant(&user, &topic).await?,
        Cmd::Revoke { user, topic } => api.revoke(&user, &topic).await?,
        Cmd::BroadcastOrg {
            org,
            event_type,
            data,
        } => {
            let to = [Topic::org(&org)?];
            println!(
                "{}",
                api.publish(&to, &event_type, &json(&data)?, None).await?.id
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
                api.publish(&to, &event_type, &json(&data)?, None).await?.id
            );
        }
        Cmd::Apikey { action } => match action {
            CredentialCmd::Add {
                key,
                sub,
                org,
                roles,
                topics,
                ..
            } => {
                api.add_api_key(&key, &principal(sub, org, roles, topics), None)
                    .await?
            }
            CredentialCmd::Remove { key } => api.remove_api_key(&key).await?,
        },
        Cmd::Session { action } => match action {
            CredentialCmd::Add {
                key,
                sub,
                org,
                roles,
                topics,
                ttl_secs,
            } => {
                api.add_session(
                    &key,
                    &principal(sub, org, roles, topics),
                    Duration::from_secs(ttl_secs),
                )
                .await?
            }
            CredentialCmd::Remove { key } => api.remove_session(&key).await?,
        },
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
