//! Presence across replicas in Redis: a sorted set per key (member =
//! connection, score = lease expiry), changed only by Lua scripts that also
//! publish the online/offline event, so exactly one event goes out per
//! transition. Every replica renews its members and sweeps every indexed
//! key; the sweep that empties a set publishes the offline event from the
//! template stored at join (a dead replica cannot send its own).

use fred::interfaces::{
    ClientLike, KeysInterface, LuaInterface, SetsInterface, SortedSetsInterface,
};
use fred::prelude::Client;
use futures_util::future::{BoxFuture, FutureExt};
use herald_shared::{Envelope, Keys, now_ms};

use super::{Member, PresenceBackend};
use crate::store::StoreError;

/// KEYS: set, channel, meta. ARGV: member, now, expiry, online, offline.
/// The offline event is also stored as the key's template for sweeps.
const JOIN: &str = r#"
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local before = redis.call('ZCARD', KEYS[1])
if removed > 0 and before == 0 then redis.call('PUBLISH', KEYS[2], ARGV[5]) end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('SET', KEYS[3], ARGV[5])
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

/// KEYS: set, channel. ARGV: now, offline. Returns 2 when the set is empty.
const SWEEP: &str = r#"
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
if removed > 0 and ARGV[2] ~= '' then redis.call('PUBLISH', KEYS[2], ARGV[2]) end
return 2
"#;

pub struct RedisPresence {
    client: Client,
    keys: Keys,
    scripts: Scripts,
}

/// The scripts as this deployment runs them: on Redis Cluster they publish
/// with SPUBLISH, like every other event (the set, its meta and the
/// channel share the `{topic}` hash tag, so one shard owns them all).
struct Scripts {
    join: String,
    leave: String,
    sweep: String,
}

impl Scripts {
    fn new(sharded: bool) -> Self {
        let adapt = |script: &str| match sharded {
            true => script.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'"),
            false => script.to_owned(),
        };
        Self {
            join: adapt(JOIN),
            leave: adapt(LEAVE),
            sweep: adapt(SWEEP),
        }
    }
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence").finish_non_exhaustive()
    }
}

fn unavailable(e: fred::error::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisPresence {
    pub fn new(client: Client, keys: Keys) -> Self {
        let scripts = Scripts::new(client.is_clustered());
        Self {
            client,
            keys,
            scripts,
        }
    }

    /// The offline event a sweeping replica publishes for a key: the stored
    /// template with an id and time of its own. Empty when there is none.
    async fn offline_from_template(&self, meta: &str, now: i64) -> String {
        let stored: Option<String> = self.client.get(meta).await.ok().flatten();
        let Some(mut env) = stored.and_then(|t| Envelope::decode(t.as_bytes()).ok()) else {
            return String::new();
        };
        env.id = format!("sweep-{now}");
        env.ts = now;
        env.encode()
    }

    async fn sweep_key(&self, entry: &str) -> Result<(), StoreError> {
        let Some((topic, key)) = entry.split_once('|') else {
            return Ok(());
        };
        let now = now_ms();
        let offline = self
            .offline_from_template(&self.keys.presence_meta(topic, key), now)
            .await;
        let keys = vec![self.keys.presence(topic, key), self.keys.channel(topic)];
        let swept: i64 = self
            .client
            .eval(
                self.scripts.sweep.as_str(),
                keys,
                vec![now.to_string(), offline],
            )
            .await
            .map_err(unavailable)?;
        if swept == 2 {
            // Empty: forget it, then look again. A join racing with this
            // sweep indexes before it adds its member, so a member present
            // now means the entry must stay.
            let index = self.keys.presence_index();
            let _: Result<i64, _> = self.client.srem(&index, entry).await;
            let set = self.keys.presence(topic, key);
            if matches!(self.client.zcard::<i64, _>(set).await, Ok(n) if n > 0) {
                let _: Result<i64, _> = self.client.sadd(&index, entry).await;
            }
        }
        Ok(())
    }
}

impl PresenceBackend for RedisPresence {
    fn join<'a>(&'a self, member: &'a str, m: &'a Member) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let now = now_ms();
            let topic = m.topic.as_str();
            let keys = vec![
                self.keys.presence(topic, &m.key),
                self.keys.channel(topic),
                self.keys.presence_meta(topic, &m.key),
            ];
            let args = vec![
                member.to_owned(),
                now.to_string(),
                (now + m.lease_ms as i64).to_string(),
                m.online.encode(),
                m.offline.encode(),
            ];
            // Indexed first: a replica that dies right after the join must
            // still be swept (an index entry with no members is dropped).
            let _: i64 = self
                .client
                .sadd(self.keys.presence_index(), format!("{}|{}", m.topic, m.key))
                .await
                .map_err(unavailable)?;
            let _: i64 = self
                .client
                .eval(self.scripts.join.as_str(), keys, args)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn leave<'a>(
        &'a self,
        member: &'a str,
        m: &'a Member,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let topic = m.topic.as_str();
            let keys = vec![self.keys.presence(topic, &m.key), self.keys.channel(topic)];
            let args = vec![member.to_owned(), now_ms().to_string(), m.offline.encode()];
            self.client
                .eval::<i64, _, _, _>(self.scripts.leave.as_str(), keys, args)
                .await
                .map(drop)
                .map_err(unavailable)
        }
        .boxed()
    }

    fn sweep(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let entries: Vec<String> = self
                .client
                .smembers(self.keys.presence_index())
                .await
                .map_err(unavailable)?;
            for entry in entries {
                if let Err(e) = self.sweep_key(&entry).await {
                    tracing::warn!(error = %e, "presence sweep failed");
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn members<'a>(
        &'a self,
        topic: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            // Members whose lease has not run out (a dead replica's linger
            // until the next sweep; they are not counted).
            self.client
                .zcount::<u64, _>(
                    self.keys.presence(topic, key),
                    now_ms() as f64,
                    f64::INFINITY,
                )
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn leased(&self) -> bool {
        true
    }
}
