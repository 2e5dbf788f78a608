//! `herald-publisher`: what backend workers call to reach Herald's clients.
//!
//! A [`Publisher`] holds one multiplexed Redis connection. It publishes
//! events to an audience (a list of [topics](herald_shared::Topic)) in the
//! envelope format of `docs/protocol.md`, and manages what gateways read on
//! connect: per-topic snapshots, API keys and session tokens (stored hashed),
//! and per-user grants. The `heraldctl` binary exposes the same operations
//! to operators and to backends written in other languages.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herald_publisher::PublishError> {
//! use herald_publisher::{Publisher, Topic};
//! use serde_json::json;
//!
//! let publisher = Publisher::connect("redis://127.0.0.1:6379").await?;
//! let audience = [Topic::user("alice")?, Topic::role("admin")?];
//! publisher.progress(&audience, &json!({"name": "docsfy", "status": "generating"})).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use fred::interfaces::{
    ClientLike, ClusterInterface, KeysInterface, LuaInterface, PubsubInterface, SetsInterface,
};
use fred::prelude::{Builder, Client, Expiration, ReconnectPolicy};
use herald_shared::envelope::{CONTROL_RESYNC, CONTROL_REVOKE, check_event_type};
use herald_shared::history;
use herald_shared::{Envelope, Keys, hash_secret, now_ms};
use serde::Serialize;
use serde_json::value::RawValue;

#[cfg(feature = "http")]
mod http;
mod upstream;

pub use herald_shared::history::HistoryPolicy;
use herald_shared::redis_link::RedisLink;
use herald_shared::redis_retry::{MAX_RETRY_PAUSE, retry_within};
pub use herald_shared::redis_target::{RedisMode, RedisTarget, TargetError};
pub use herald_shared::topic::TopicKind;
pub use herald_shared::{Principal, Topic, TopicError};
#[cfg(feature = "http")]
pub use http::{HttpError, HttpPublisher, Published};
pub use upstream::UpstreamMessage;

/// Event type of in-flight progress updates.
pub const PROGRESS: &str = "progress";
/// Event type of terminal status updates.
pub const STATUS_CHANGE: &str = "status_change";

/// Why a publisher call failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("invalid topic: {0}")]
    Topic(#[from] TopicError),
    #[error("invalid event: {0}")]
    Event(String),
    #[error("payload is not serialisable JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the audience is empty")]
    EmptyAudience,
    #[error("invalid Redis target: {0}")]
    Target(#[from] TargetError),
}

/// The unique id of a published event (a time-ordered UUID).
pub type EventId = String;

/// How long a publish keeps trying through a Redis outage or failover
/// unless [`Publisher::with_retry_window`] says otherwise.
pub const DEFAULT_RETRY_WINDOW: Duration = herald_shared::redis_retry::DEFAULT_RETRY_WINDOW;

/// A connection to the Redis that Herald gateways listen to.
#[derive(Clone)]
pub struct Publisher {
    /// The client, replaced when it stops answering (see `redis_link`).
    link: RedisLink,
    keys: Keys,
    history: Option<HistoryPolicy>,
    history_by_kind: Vec<(TopicKind, Option<HistoryPolicy>)>,
    retry_window: Duration,
    /// Redis Cluster: sharded pub/sub (`SPUBLISH`), as gateways subscribe.
    sharded: bool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connect with the default key prefix (`herald`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), herald_publisher::PublishError> {
    /// let publisher = herald_publisher::Publisher::connect("redis://127.0.0.1:6379").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(redis_url: &str) -> Result<Self, PublishError> {
        Self::connect_with_prefix(redis_url, herald_shared::keys::DEFAULT_PREFIX).await
    }

    /// Connect with the key prefix the gateways use (`redis.prefix`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), herald_publisher::PublishError> {
    /// let publisher = herald_publisher::Publisher::connect_with_prefix("redis://127.0.0.1:6379", "staging").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with_prefix(redis_url: &str, prefix: &str) -> Result<Self, PublishError> {
        Self::connect_to(&RedisTarget::from_url(redis_url), prefix).await
    }

    /// Connect to a deployment given by URL or by explicit settings, with
    /// the gateways' key prefix. Losing any one cluster seed or sentinel
    /// never stops the publisher from reconnecting.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), herald_publisher::PublishError> {
    /// use herald_publisher::{Publisher, RedisMode, RedisTarget};
    /// let target = RedisTarget {
    ///     mode: Some(RedisMode::Sentinel),
    ///     nodes: vec!["sentinel-1:26379".into(), "sentinel-2:26379".into()],
    ///     service_name: "mymaster".into(),
    ///     password: std::env::var("REDIS_PASSWORD").ok(),
    ///     ..RedisTarget::default()
    /// };
    /// let publisher = Publisher::connect_to(&target, "herald").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_to(target: &RedisTarget, prefix: &str) -> Result<Self, PublishError> {
        let config = target.client_config()?;
        let mut builder = Builder::from_config(config);
        builder.set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
        builder.with_performance_config(|p| p.default_command_timeout = Duration::from_secs(5));
        // fred would resend a command in flight when a connection drops, as
        // a first attempt: the history script could then store the event
        // twice. Publish retries are ours, marked as retries.
        builder.with_connection_config(|c| c.max_command_attempts = 1);
        let client = builder.build()?;
        client.init().await?;
        let sharded = client.is_clustered();
        Ok(Self {
            link: RedisLink::new(client),
            keys: Keys::new(prefix),
            history: Some(HistoryPolicy::default()),
            history_by_kind: Vec::new(),
            retry_window: DEFAULT_RETRY_WINDOW,
            sharded,
        })
    }

    /// How long [`Publisher::publish`] keeps retrying an event Redis did not
    /// take (connection lost, a failover under way, a replica promoted)
    /// before it returns the error; zero: no retry. A retry cannot store or
    /// deliver the event twice: the history script finds an earlier attempt
    /// by the event id, and gateways drop a repeated id.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) {
    /// let p = p.with_retry_window(std::time::Duration::from_secs(30));
    /// # }
    /// ```
    pub fn with_retry_window(mut self, window: Duration) -> Self {
        self.retry_window = window;
        self
    }

    /// Change the history kept per topic; `None` publishes without history
    /// (at-most-once, no resume).
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) {
    /// use std::time::Duration;
    /// use herald_publisher::HistoryPolicy;
    /// let p = p.with_history(Some(HistoryPolicy { max_len: 10_000, ttl: Duration::from_secs(86_400) }));
    /// # }
    /// ```
    pub fn with_history(mut self, history: Option<HistoryPolicy>) -> Self {
        self.history = history;
        self
    }

    /// History for one kind of topic, overriding [`Publisher::with_history`]
    /// (say, long history for `res:` workflow runs, none for `user:` topics).
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) {
    /// use std::time::Duration;
    /// use herald_publisher::{HistoryPolicy, TopicKind};
    /// let p = p
    ///     .with_history_for(TopicKind::Resource, Some(HistoryPolicy { max_len: 5_000, ttl: Duration::from_secs(86_400) }))
    ///     .with_history_for(TopicKind::User, None);
    /// # }
    /// ```
    pub fn with_history_for(mut self, kind: TopicKind, history: Option<HistoryPolicy>) -> Self {
        self.history_by_kind.retain(|(k, _)| *k != kind);
        self.history_by_kind.push((kind, history));
        self
    }

    fn history_for(&self, topic: &Topic) -> Option<HistoryPolicy> {
        let kind = topic.kind();
        self.history_by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(self.history, |(_, h)| *h)
    }

    /// Publish one event to every topic of an audience, with one event id.
    /// A connection that joined several of these topics receives it once.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// use herald_publisher::Topic;
    /// let id = p.publish(&[Topic::resource("project", "proj-1")?], "project.completed",
    ///                    &serde_json::json!({"project_id": "proj-1"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        audience: &[Topic],
        event_type: &str,
        data: &T,
    ) -> Result<EventId, PublishError> {
        check_event_type(event_type).map_err(|e| PublishError::Event(e.to_string()))?;
        if audience.is_empty() {
            return Err(PublishError::EmptyAudience);
        }
        let data: Box<RawValue> = serde_json::value::to_raw_value(data)?;
        let id = uuid::Uuid::now_v7().to_string();
        let ts = now_ms();
        let envelopes = Envelope::for_audience(&id, event_type, ts, audience, &data);
        // Control events are instructions for live connections, not history.
        let control = event_type.starts_with(herald_shared::envelope::CONTROL_PREFIX);
        let calls = envelopes.into_iter().map(|env| async move {
            let history = self.history_for(&env.topic).filter(|_| !control);
            retry_within(self.retry_window, &self.link, |attempt, client| {
                self.publish_one(client, &env, history, attempt)
            })
            .await
        });
        futures_util::future::try_join_all(calls).await?;
        Ok(id)
    }

    async fn publish_one(
        &self,
        client: Client,
        env: &Envelope,
        history: Option<HistoryPolicy>,
        attempt: history::Attempt,
    ) -> Result<(), fred::error::Error> {
        if attempt == history::Attempt::Retry && self.sharded {
            // A dead primary's slots move to its replica: ask the cluster
            // where they are now.
            let _ = tokio::time::timeout(MAX_RETRY_PAUSE, client.sync_cluster()).await;
        }
        match history {
            Some(h) => {
                let (keys, args) = history::publish_call(&self.keys, env, &h, attempt);
                client
                    .eval::<String, _, _, _>(history::publish_script(self.sharded), keys, args)
                    .await
                    .map(drop)
            }
            // Without history a repeat is possible; gateways drop it by id.
            None => {
                let channel = self.keys.channel(env.topic.as_str());
                match self.sharded {
                    true => client.spublish::<i64, _, _>(channel, env.encode()).await,
                    false => client.publish::<i64, _, _>(channel, env.encode()).await,
                }
                .map(drop)
            }
        }
    }

    /// Publish a `progress` event.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// use herald_publisher::Topic;
    /// p.progress(&[Topic::user("alice")?], &serde_json::json!({
    ///     "name": "docsfy", "branch": "main", "provider": "cursor", "model": "m",
    ///     "owner": "alice", "status": "generating", "current_stage": "planning"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn progress<T: Serialize + ?Sized>(
        &self,
        audience: &[Topic],
        data: &T,
    ) -> Result<EventId, PublishError> {
        self.publish(audience, PROGRESS, data).await
    }

    /// Publish a `status_change` event. Profiles that list `status_change` in
    /// `snapshot.resend_after` follow it with a fresh snapshot, so store the
    /// new snapshots ([`Publisher::set_snapshot`]) before calling this.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// use herald_publisher::Topic;
    /// p.status_change(&[Topic::user("alice")?, Topic::role("admin")?], &serde_json::json!({
    ///     "name": "docsfy", "branch": "main", "provider": "cursor", "model": "m",
    ///     "owner": "alice", "status": "ready", "page_count": 14})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn status_change<T: Serialize + ?Sized>(
        &self,
        audience: &[Topic],
        data: &T,
    ) -> Result<EventId, PublishError> {
        self.publish(audience, STATUS_CHANGE, data).await
    }

    /// Store the snapshot served on connect to connections whose profile reads
    /// this topic's snapshot (docsfy: `user:{sub}`). It replaces the previous one.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// use herald_publisher::Topic;
    /// p.set_snapshot(&Topic::user("alice")?, &serde_json::json!({
    ///     "projects": [], "known_models": {}, "known_branches": {}})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_snapshot<T: Serialize + ?Sized>(
        &self,
        topic: &Topic,
        data: &T,
    ) -> Result<(), PublishError> {
        let json = serde_json::to_string(data)?;
        let () = self
            .link
            .client()
            .set(self.keys.snapshot(topic.as_str()), json, None, None, false)
            .await?;
        Ok(())
    }

    /// Ask every connection of a user to send its client a fresh snapshot.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.resync("alice").await?;
    /// # Ok(()) }
    /// ```
    pub async fn resync(&self, user: &str) -> Result<(), PublishError> {
        self.publish(
            &[Topic::user(user)?],
            CONTROL_RESYNC,
            &serde_json::Value::Null,
        )
        .await
        .map(drop)
    }

    /// Register an API key for a principal. Only the key's SHA-256 is stored.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.add_api_key("k-alice-123", &herald_publisher::Principal::new("alice")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_api_key(&self, key: &str, principal: &Principal) -> Result<(), PublishError> {
        let json = serde_json::to_string(principal)?;
        let () = self
            .link
            .client()
            .set(
                self.keys.api_key(&hash_secret(key)),
                json,
                None,
                None,
                false,
            )
            .await?;
        Ok(())
    }

    /// Remove an API key; connections already open stay open.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.remove_api_key("k-alice-123").await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_api_key(&self, key: &str) -> Result<(), PublishError> {
        let _: i64 = self
            .link
            .client()
            .del(self.keys.api_key(&hash_secret(key)))
            .await?;
        Ok(())
    }

    /// Register a session token (a login cookie's value) that expires after `ttl`.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// use std::time::Duration;
    /// p.add_session("opaque-token", &herald_publisher::Principal::new("alice"), Duration::from_secs(28_800)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_session(
        &self,
        token: &str,
        principal: &Principal,
        ttl: Duration,
    ) -> Result<(), PublishError> {
        let json = serde_json::to_string(principal)?;
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let () = self
            .link
            .client()
            .set(
                self.keys.session(&hash_secret(token)),
                json,
                Some(Expiration::EX(secs)),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    /// End a session; new connections with it are refused.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.remove_session("opaque-token").await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_session(&self, token: &str) -> Result<(), PublishError> {
        let _: i64 = self
            .link
            .client()
            .del(self.keys.session(&hash_secret(token)))
            .await?;
        Ok(())
    }

    /// Grant a user a topic (or a glob such as `res:project:*`) for
    /// client-chosen subscriptions, and resynchronise the user's connections.
    /// Store the user's new snapshot first when access changes what it shows.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.grant("bob", "res:project:proj-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn grant(&self, user: &str, topic_glob: &str) -> Result<(), PublishError> {
        let _: i64 = self
            .link
            .client()
            .sadd(self.keys.acl(user), topic_glob)
            .await?;
        self.resync(user).await
    }

    /// Revoke a grant made with [`Publisher::grant`]. Every replica drops the
    /// user's live subscriptions that the grant covered and nothing else
    /// allows; no event published after this call returns reaches them. The
    /// user's connections are then resynchronised.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.revoke("bob", "res:project:proj-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn revoke(&self, user: &str, topic_glob: &str) -> Result<(), PublishError> {
        let _: i64 = self
            .link
            .client()
            .srem(self.keys.acl(user), topic_glob)
            .await?;
        self.publish(
            &[Topic::user(user)?],
            CONTROL_REVOKE,
            &serde_json::json!({ "topic": topic_glob }),
        )
        .await?;
        self.resync(user).await
    }

    /// AgentHQ's `broadcastToOrg`: an event for every connection of an
    /// organisation (topic `org:{org}`).
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.broadcast_to_org("acme", "agent.updated", &serde_json::json!({"id": "a1", "name": "Scout"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn broadcast_to_org<T: Serialize + ?Sized>(
        &self,
        org: &str,
        event: &str,
        data: &T,
    ) -> Result<EventId, PublishError> {
        self.publish(&[Topic::org(org)?], event, data).await
    }

    /// AgentHQ's `broadcastToChannel`: an event for connections of an
    /// organisation subscribed to one channel (topic `res:channel:{org}:{channel}`,
    /// the bundled AgentHQ profile's channel template).
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.broadcast_to_channel("acme", "general", "post.created", &serde_json::json!({"id": "p1"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn broadcast_to_channel<T: Serialize + ?Sized>(
        &self,
        org: &str,
        channel: &str,
        event: &str,
        data: &T,
    ) -> Result<EventId, PublishError> {
        self.publish(&[channel_topic(org, channel)?], event, data)
            .await
    }

    /// Register a resource (a workflow run, a deployment job, an agent) so
    /// routes with a `resource` check accept connections to it; until then
    /// they answer `not_found`.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// use herald_publisher::Topic;
    /// p.register_resource(&Topic::resource("workflow-run", "run-42")?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_resource(&self, topic: &Topic) -> Result<(), PublishError> {
        let () = self
            .link
            .client()
            .set(self.keys.resource(topic.as_str()), "1", None, None, false)
            .await?;
        Ok(())
    }

    /// Forget a resource; new connections to it get `not_found`.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// use herald_publisher::Topic;
    /// p.unregister_resource(&Topic::resource("workflow-run", "run-42")?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn unregister_resource(&self, topic: &Topic) -> Result<(), PublishError> {
        let _: i64 = self
            .link
            .client()
            .del(self.keys.resource(topic.as_str()))
            .await?;
        Ok(())
    }

    /// Send an agent a task (`{"type":"task_assigned","task":{…}}`) wherever it
    /// is connected (topic `res:agent:{id}`). Tasks carry credentials, so they
    /// are never kept in history.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.assign_task("agent-1", &serde_json::json!({
    ///     "taskId": "t1", "taskType": "docker.pull", "payload": {"image": "myapp"},
    ///     "credentials": {"registry.password": "secret"}, "timeout": 300})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn assign_task<T: Serialize + ?Sized>(
        &self,
        agent: &str,
        task: &T,
    ) -> Result<EventId, PublishError> {
        let data = serde_json::json!({ "task": serde_json::to_value(task)? });
        self.publish_without_history(&[Topic::resource("agent", agent)?], "task_assigned", &data)
            .await
    }

    /// Cancel an agent's task (`{"type":"task_cancelled","taskId","reason"}`).
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.cancel_task("agent-1", "t1", "Deployment cancelled by user").await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel_task(
        &self,
        agent: &str,
        task_id: &str,
        reason: &str,
    ) -> Result<EventId, PublishError> {
        let data = serde_json::json!({ "taskId": task_id, "reason": reason });
        self.publish_without_history(&[Topic::resource("agent", agent)?], "task_cancelled", &data)
            .await
    }

    async fn publish_without_history<T: Serialize + ?Sized>(
        &self,
        audience: &[Topic],
        event_type: &str,
        data: &T,
    ) -> Result<EventId, PublishError> {
        Self {
            link: self.link.clone(),
            keys: self.keys.clone(),
            history: None,
            history_by_kind: Vec::new(),
            retry_window: self.retry_window,
            sharded: self.sharded,
        }
        .publish(audience, event_type, data)
        .await
    }

    /// The grants of a user.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// let topics: Vec<String> = p.grants("bob").await?;
    /// # Ok(()) }
    /// ```
    pub async fn grants(&self, user: &str) -> Result<Vec<String>, PublishError> {
        Ok(self.link.client().smembers(self.keys.acl(user)).await?)
    }
}

/// The topic of an organisation's channel: `res:channel:{org}:{channel}`.
pub fn channel_topic(org: &str, channel: &str) -> Result<Topic, TopicError> {
    Topic::parse(&format!("res:channel:{org}:{channel}"))
}
