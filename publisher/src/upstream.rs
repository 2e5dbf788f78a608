//! Frames clients send to backends (Stella Ops agents' `task_progress`,
//! `task_log`, `task_completed`), read from the gateway's upstream streams
//! with consumer groups: at-least-once, a message stays pending until a
//! worker acknowledges it, and a worker can claim what a dead one left.

use std::time::Duration;

use fred::interfaces::{ClientLike, StreamsInterface};
use fred::prelude::{Client, Value};
use fred::types::{ClusterHash, CustomCommand};

use crate::{PublishError, Publisher};

/// One forwarded client frame.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamMessage {
    /// Stream entry id; acknowledge with it.
    pub id: String,
    /// Who sent it, per the profile's `upstream.source` (the agent id).
    pub source: String,
    /// The authenticated principal of the connection.
    pub sub: String,
    /// When the gateway received it, Unix milliseconds.
    pub received_ms: i64,
    /// The client frame as sent.
    pub frame: serde_json::Value,
}

fn message(id: String, fields: &[(String, String)]) -> UpstreamMessage {
    let get = |k: &str| {
        fields
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    UpstreamMessage {
        id,
        source: get("source"),
        sub: get("sub"),
        received_ms: get("received_ms").parse().unwrap_or(0),
        frame: serde_json::from_str(&get("frame")).unwrap_or(serde_json::Value::Null),
    }
}

/// `[[id, [f, v, f, v…]], …]` as returned by XREADGROUP / XAUTOCLAIM.
fn entries(value: &Value) -> Vec<UpstreamMessage> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = pair.first()?.as_string()?;
            let Value::Array(kv) = pair.get(1)? else {
                return None;
            };
            let fields: Vec<(String, String)> = kv
                .chunks(2)
                .filter_map(|c| Some((c.first()?.as_string()?, c.get(1)?.as_string()?)))
                .collect();
            Some(message(id, &fields))
        })
        .collect()
}

impl Publisher {
    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), PublishError> {
        let key = self.keys.upstream(stream);
        match self
            .link
            .client()
            .xgroup_create::<Value, _, _, _>(key, group, "0", true)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.details().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Read up to `count` new messages of an upstream stream for `consumer` in
    /// `group` (created on first use, from the start of the stream), waiting
    /// up to `block` for one. They stay pending until [`Publisher::ack`].
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// use std::time::Duration;
    /// let batch = p.consume("agent-tasks", "workers", "worker-1", 100, Some(Duration::from_secs(5))).await?;
    /// for m in &batch {
    ///     println!("{} from agent {}: {}", m.id, m.source, m.frame);
    /// }
    /// p.ack("agent-tasks", "workers", &batch.iter().map(|m| m.id.clone()).collect::<Vec<_>>()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn consume(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: u64,
        block: Option<Duration>,
    ) -> Result<Vec<UpstreamMessage>, PublishError> {
        self.ensure_group(stream, group).await?;
        // A blocking read stalls its connection, so it gets one of its own.
        let client: Client = self.link.client().clone_new();
        client.init().await?;
        let key = self.keys.upstream(stream);
        let block_ms = block.map(|d| d.as_millis() as u64);
        let value: Value = client
            .xreadgroup(
                group,
                consumer,
                Some(count),
                block_ms,
                false,
                key.clone(),
                ">",
            )
            .await?;
        let _ = client.quit().await;
        // RESP2 [[key, entries]] or RESP3 {key: entries}.
        let found = match value {
            Value::Array(streams) => streams.into_iter().find_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            }),
            Value::Map(map) => map.inner().into_iter().next().map(|(_, v)| v),
            _ => None,
        };
        Ok(found.map(|v| entries(&v)).unwrap_or_default())
    }

    /// Acknowledge processed messages; they are not delivered again.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// p.ack("agent-tasks", "workers", &["1700000000000-0".to_owned()]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ack(
        &self,
        stream: &str,
        group: &str,
        ids: &[String],
    ) -> Result<u64, PublishError> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(self
            .link
            .client()
            .xack(self.keys.upstream(stream), group, ids.to_vec())
            .await?)
    }

    /// Take over messages another consumer of the group read but did not
    /// acknowledge within `min_idle` (a worker that died).
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::Publisher) -> Result<(), herald_publisher::PublishError> {
    /// use std::time::Duration;
    /// let orphans = p.claim_stale("agent-tasks", "workers", "worker-2", Duration::from_secs(30), 100).await?;
    /// # Ok(()) }
    /// ```
    pub async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: u64,
    ) -> Result<Vec<UpstreamMessage>, PublishError> {
        self.ensure_group(stream, group).await?;
        let key = self.keys.upstream(stream);
        // fred's typed XAUTOCLAIM expects the Redis 6 reply; read the raw one.
        let cmd = CustomCommand::new_static("XAUTOCLAIM", ClusterHash::FirstKey, false);
        let args: Vec<Value> = vec![
            key.into(),
            group.into(),
            consumer.into(),
            (min_idle.as_millis() as i64).into(),
            "0-0".into(),
            "COUNT".into(),
            (count as i64).into(),
        ];
        let value: Value = self.link.client().custom(cmd, args).await?;
        match value {
            Value::Array(parts) => Ok(parts.get(1).map(entries).unwrap_or_default()),
            _ => Ok(Vec::new()),
        }
    }
}
