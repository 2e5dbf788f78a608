//! Cluster-wide presence (AgentHQ's `agent.online` / `agent.offline`).
//!
//! Each connection with presence is a member of its key's set, with a lease.
//! Redis: a sorted set per key (score = lease expiry), changed only by Lua
//! scripts that also publish the online/offline event, so exactly one event
//! goes out per transition whichever replicas the connections are on, and in
//! the order the transitions happened. Every replica renews its members and
//! sweeps expired ones; a dead replica's members expire after one lease and
//! the sweep that empties a set publishes the offline event from a stored
//! template. Embedded mode counts members in memory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fred::interfaces::{LuaInterface, SetsInterface, SortedSetsInterface};
use fred::prelude::Client;
use herald_shared::{ENVELOPE_VERSION, Envelope, Keys, Topic};
use serde_json::value::RawValue;

use crate::broker::Broker;
use crate::profile::wire::now_ms;
use crate::store::StoreError;

/// KEYS: set, channel, meta. ARGV: member, now, expiry, online, offline, offline template.
const JOIN: &str = r#"
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local before = redis.call('ZCARD', KEYS[1])
if removed > 0 and before == 0 then redis.call('PUBLISH', KEYS[2], ARGV[5]) end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('SET', KEYS[3], ARGV[6])
if before == 0 then
  redis.call('PUBLISH', KEYS[2], ARGV[4])
  return 1
end
return 0
"#;

/// KEYS: set, channel. ARGV: member, now, offline.
const LEAVE: &str = r#"
local had = redis.call('ZREM', KEYS[1], ARGV[1])
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if had + removed > 0 and redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return 1
end
return 0
"#;

/// KEYS: set, channel, meta. ARGV: now. Returns 2 when the set is empty.
const SWEEP: &str = r#"
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
if removed > 0 then
  local tmpl = redis.call('GET', KEYS[3])
  if tmpl then
    local env = string.gsub(tmpl, '__ID__', 'sweep-' .. ARGV[1], 1)
    env = string.gsub(env, '"ts":0', '"ts":' .. ARGV[1], 1)
    redis.call('PUBLISH', KEYS[2], env)
  end
end
return 2
"#;

pub enum Backend {
    Redis(Client),
    /// One process: members per `topic|key`, events through the embedded broker.
    Memory {
        members: Mutex<HashMap<String, HashSet<String>>>,
        broker: Arc<dyn Broker>,
    },
}

/// One member this replica holds.
#[derive(Debug, Clone)]
struct Member {
    topic: Topic,
    key: String,
    online: String,
    offline: String,
    data: Box<RawValue>,
    lease_ms: u64,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Redis(_) => "Redis",
            Self::Memory { .. } => "Memory",
        })
    }
}

pub struct Presence {
    backend: Backend,
    keys: Keys,
    replica: String,
    seq: AtomicU64,
    held: Mutex<HashMap<String, Member>>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence").finish_non_exhaustive()
    }
}

fn unavailable(e: fred::error::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Presence {
    /// Renew and sweep every `every` (a third of the shortest lease) with Redis.
    pub fn start(
        backend: Backend,
        keys: Keys,
        replica: String,
        every: Option<Duration>,
    ) -> Arc<Self> {
        let redis = matches!(backend, Backend::Redis(_));
        let presence = Arc::new(Self {
            backend,
            keys,
            replica,
            seq: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
        });
        if let (true, Some(every)) = (redis, every) {
            tokio::spawn(Arc::clone(&presence).upkeep(every));
        }
        presence
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Member>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn envelope(&self, topic: &Topic, event_type: &str, data: &RawValue) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        Envelope {
            v: ENVELOPE_VERSION,
            id: format!("presence-{}-{n}", self.replica),
            event_type: event_type.to_owned(),
            ts: now_ms(),
            topic: topic.clone(),
            to: Vec::new(),
            offset: None,
            data: data.to_owned(),
        }
        .encode()
    }

    /// The offline envelope with placeholders the sweep script fills in.
    fn offline_template(m: &Member) -> String {
        Envelope {
            v: ENVELOPE_VERSION,
            id: "__ID__".to_owned(),
            event_type: m.offline.clone(),
            ts: 0,
            topic: m.topic.clone(),
            to: Vec::new(),
            offset: None,
            data: m.data.clone(),
        }
        .encode()
    }

    /// A connection with presence opened.
    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        &self,
        member: &str,
        topic: Topic,
        key: String,
        online: &str,
        offline: &str,
        data: Box<RawValue>,
        lease_ms: u64,
    ) -> Result<(), StoreError> {
        let m = Member {
            topic,
            key,
            online: online.to_owned(),
            offline: offline.to_owned(),
            data,
            lease_ms,
        };
        self.announce(member, &m).await?;
        self.held().insert(member.to_owned(), m);
        Ok(())
    }

    async fn announce(&self, member: &str, m: &Member) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redis(client) => {
                let now = now_ms();
                let set = self.keys.presence(m.topic.as_str(), &m.key);
                let keys = vec![
                    set,
                    self.keys.channel(m.topic.as_str()),
                    self.keys.presence_meta(m.topic.as_str(), &m.key),
                ];
                let args = vec![
                    member.to_owned(),
                    now.to_string(),
                    (now + m.lease_ms as i64).to_string(),
                    self.envelope(&m.topic, &m.online, &m.data),
                    self.envelope(&m.topic, &m.offline, &m.data),
                    Self::offline_template(m),
                ];
                // Indexed first: a replica that dies right after the join must
                // still be swept (an index entry with no members is dropped).
                let _: i64 = client
                    .sadd(self.keys.presence_index(), format!("{}|{}", m.topic, m.key))
                    .await
                    .map_err(unavailable)?;
                let _: i64 = client.eval(JOIN, keys, args).await.map_err(unavailable)?;
            }
            Backend::Memory { members, broker } => {
                let first = {
                    let mut map = members.lock().unwrap_or_else(|e| e.into_inner());
                    let set = map.entry(format!("{}|{}", m.topic, m.key)).or_default();
                    set.insert(member.to_owned()) && set.len() == 1
                };
                if first {
                    let env = self.envelope(&m.topic, &m.online, &m.data);
                    let _ = broker.publish(m.topic.as_str(), Bytes::from(env)).await;
                }
            }
        }
        Ok(())
    }

    /// A connection with presence closed.
    pub async fn leave(&self, member: &str) {
        let Some(m) = self.held().remove(member) else {
            return;
        };
        let result = match &self.backend {
            Backend::Redis(client) => {
                let keys = vec![
                    self.keys.presence(m.topic.as_str(), &m.key),
                    self.keys.channel(m.topic.as_str()),
                ];
                let args = vec![
                    member.to_owned(),
                    now_ms().to_string(),
                    self.envelope(&m.topic, &m.offline, &m.data),
                ];
                client
                    .eval::<i64, _, _, _>(LEAVE, keys, args)
                    .await
                    .map(drop)
                    .map_err(unavailable)
            }
            Backend::Memory { members, broker } => {
                let last = {
                    let mut map = members.lock().unwrap_or_else(|e| e.into_inner());
                    let id = format!("{}|{}", m.topic, m.key);
                    let set = map.entry(id.clone()).or_default();
                    let last = set.remove(member) && set.is_empty();
                    if set.is_empty() {
                        map.remove(&id);
                    }
                    last
                };
                if last {
                    let env = self.envelope(&m.topic, &m.offline, &m.data);
                    let _ = broker.publish(m.topic.as_str(), Bytes::from(env)).await;
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            // The member expires by itself; the sweep publishes the offline event.
            tracing::warn!(error = %e, "presence leave failed");
        }
    }

    /// Renew this replica's members, then sweep every key's expired ones.
    async fn upkeep(self: Arc<Self>, every: Duration) {
        let Backend::Redis(client) = &self.backend else {
            return;
        };
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let members: Vec<(String, Member)> = self
                .held()
                .iter()
                .map(|(k, m)| (k.clone(), m.clone()))
                .collect();
            for (member, m) in &members {
                if let Err(e) = self.announce(member, m).await {
                    tracing::warn!(error = %e, "presence renewal failed");
                }
            }
            let entries: Vec<String> = match client.smembers(self.keys.presence_index()).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "presence sweep failed");
                    continue;
                }
            };
            for entry in entries {
                let Some((topic, key)) = entry.split_once('|') else {
                    continue;
                };
                let keys = vec![
                    self.keys.presence(topic, key),
                    self.keys.channel(topic),
                    self.keys.presence_meta(topic, key),
                ];
                match client
                    .eval::<i64, _, _, _>(SWEEP, keys, vec![now_ms().to_string()])
                    .await
                {
                    Ok(2) => {
                        // Empty: forget it, then look again. A join racing with
                        // this sweep indexes before it adds its member, so a
                        // member present now means the entry must stay.
                        let index = self.keys.presence_index();
                        let _: Result<i64, _> = client.srem(&index, entry.as_str()).await;
                        let set = self.keys.presence(topic, key);
                        if matches!(client.zcard::<i64, _>(set).await, Ok(n) if n > 0) {
                            let _: Result<i64, _> = client.sadd(&index, entry.as_str()).await;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "presence sweep failed"),
                }
            }
        }
    }
}
