//! Redis-backed store, on the same keys `herald-publisher` writes.

use fred::interfaces::{
    HashesInterface, KeysInterface, LuaInterface, SetsInterface, StreamsInterface,
};
use std::collections::HashMap;

use fred::prelude::Client;
use fred::types::Expiration;
use futures_util::future::{BoxFuture, FutureExt};
use herald_shared::{Keys, Principal, history};

use super::{Credential, Store, StoreError};

#[derive(Debug)]
pub struct RedisStore {
    client: Client,
    keys: Keys,
}

/// Take or keep a lease: set when free or already ours.
const LEASE_TAKE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Release a lease only if still ours.
const LEASE_RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Keep the first value of an idempotency key: `SET NX`, else the stored one.
const CLAIM_ONCE: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"#;

fn unavailable(e: fred::error::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    pub fn new(client: Client, keys: Keys) -> Self {
        Self { client, keys }
    }

    async fn get(&self, key: String) -> Result<Option<String>, StoreError> {
        self.client
            .get::<Option<String>, _>(key)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn principal(&self, key: String) -> Result<Option<Principal>, StoreError> {
        let Some(json) = self.get(key.clone()).await? else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key,
                reason: e.to_string(),
            })
    }
}

impl Store for RedisStore {
    fn api_key<'a>(
        &'a self,
        key_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>> {
        self.principal(self.keys.api_key(key_hash)).boxed()
    }

    fn session<'a>(
        &'a self,
        token_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>> {
        self.principal(self.keys.session(token_hash)).boxed()
    }

    fn snapshot<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        self.get(self.keys.snapshot(topic)).boxed()
    }

    fn set_snapshot<'a>(
        &'a self,
        topic: &'a str,
        json: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.client
                .set::<(), _, _>(self.keys.snapshot(topic), json, None, None, false)
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn claim_once<'a>(
        &'a self,
        key_hash: &'a str,
        value: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        async move {
            self.client
                .eval::<Option<String>, _, _, _>(
                    CLAIM_ONCE,
                    vec![self.keys.idempotency(key_hash)],
                    vec![value.to_owned(), ttl_ms.to_string()],
                )
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn put_replica_report<'a>(
        &'a self,
        replica: &'a str,
        report: &'a str,
        at_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            // The time rides in the value so readers can drop a dead
            // replica's report without a key per replica.
            let value = format!("{at_ms} {report}");
            self.client
                .hset::<i64, _, _>(self.keys.replicas(), (replica, value))
                .await
                .map(drop)
                .map_err(unavailable)
        }
        .boxed()
    }

    fn replica_reports(
        &self,
        now_ms: i64,
        stale_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        async move {
            let key = self.keys.replicas();
            let all: HashMap<String, String> =
                self.client.hgetall(&key).await.map_err(unavailable)?;
            let mut live = Vec::new();
            let mut stale = Vec::new();
            for (replica, value) in all {
                let (at, report) = value.split_once(' ').unwrap_or(("0", ""));
                match at.parse::<i64>() {
                    Ok(at) if now_ms - at <= stale_ms => live.push((replica, report.to_owned())),
                    _ => stale.push(replica),
                }
            }
            if !stale.is_empty() {
                self.client
                    .hdel::<i64, _, _>(&key, stale)
                    .await
                    .map_err(unavailable)?;
            }
            live.sort();
            Ok(live.into_iter().map(|(_, r)| r).collect())
        }
        .boxed()
    }

    fn release_claim<'a>(
        &'a self,
        key_hash: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            // The lease script's compare-and-delete is exactly this.
            self.client
                .eval::<i64, _, _, _>(
                    LEASE_RELEASE,
                    vec![self.keys.idempotency(key_hash)],
                    vec![value.to_owned()],
                )
                .await
                .map(drop)
                .map_err(unavailable)
        }
        .boxed()
    }

    fn put_credential<'a>(
        &'a self,
        kind: Credential,
        hash: &'a str,
        principal: &'a Principal,
        ttl_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let json = serde_json::to_string(principal).map_err(|e| StoreError::Corrupt {
                key: hash.to_owned(),
                reason: e.to_string(),
            })?;
            let key = match kind {
                Credential::ApiKey => self.keys.api_key(hash),
                Credential::Session => self.keys.session(hash),
            };
            let expiry =
                ttl_ms.map(|ms| Expiration::PX(i64::try_from(ms.max(1)).unwrap_or(i64::MAX)));
            self.client
                .set::<(), _, _>(key, json, expiry, None, false)
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn remove_credential<'a>(
        &'a self,
        kind: Credential,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let key = match kind {
                Credential::ApiKey => self.keys.api_key(hash),
                Credential::Session => self.keys.session(hash),
            };
            self.client
                .del::<i64, _>(key)
                .await
                .map(drop)
                .map_err(unavailable)
        }
        .boxed()
    }

    fn set_grant<'a>(
        &'a self,
        user: &'a str,
        glob: &'a str,
        granted: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let key = self.keys.acl(user);
            let changed = if granted {
                self.client.sadd::<i64, _, _>(key, glob).await
            } else {
                self.client.srem::<i64, _, _>(key, glob).await
            };
            changed.map(drop).map_err(unavailable)
        }
        .boxed()
    }

    fn set_resource<'a>(
        &'a self,
        topic: &'a str,
        registered: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let key = self.keys.resource(topic);
            let done = if registered {
                self.client
                    .set::<(), _, _>(key, "1", None, None, false)
                    .await
            } else {
                self.client.del::<i64, _>(key).await.map(drop)
            };
            done.map_err(unavailable)
        }
        .boxed()
    }

    fn grants<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        async move {
            self.client
                .smembers(self.keys.acl(user))
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let took: i64 = self
                .client
                .eval(
                    LEASE_TAKE,
                    vec![self.keys.lease(key)],
                    vec![holder.to_owned(), ttl_ms.to_string()],
                )
                .await
                .map_err(unavailable)?;
            Ok(took == 1)
        }
        .boxed()
    }

    fn lease_renew<'a>(
        &'a self,
        leases: &'a [(String, String, u64)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            for (key, holder, ttl_ms) in leases {
                let took: i64 = self
                    .client
                    .eval(
                        LEASE_TAKE,
                        vec![self.keys.lease(key)],
                        vec![holder.clone(), ttl_ms.to_string()],
                    )
                    .await
                    .map_err(unavailable)?;
                if took == 0 {
                    tracing::warn!("a lease this replica held was taken by another connection");
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn lease_release<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let _: i64 = self
                .client
                .eval(
                    LEASE_RELEASE,
                    vec![self.keys.lease(key)],
                    vec![holder.to_owned()],
                )
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn resource_exists<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let n: i64 = self
                .client
                .exists(self.keys.resource(topic))
                .await
                .map_err(unavailable)?;
            Ok(n > 0)
        }
        .boxed()
    }

    fn upstream_append<'a>(
        &'a self,
        stream: &'a str,
        fields: Vec<(&'static str, String)>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let _: String = self
                .client
                .xadd(
                    self.keys.upstream(stream),
                    false,
                    ("MAXLEN", "~", 100_000),
                    "*",
                    fields,
                )
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn history_after<'a>(
        &'a self,
        topic: &'a str,
        after: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        async move {
            let entries: Vec<(String, HashMap<String, String>)> = self
                .client
                .xrange(
                    self.keys.history(topic),
                    format!("({after}"),
                    "+",
                    Some(count as u64),
                )
                .await
                .map_err(unavailable)?;
            Ok(entries
                .into_iter()
                .filter_map(|(id, mut f)| f.remove(history::ENTRY_FIELD).map(|e| (id, e)))
                .collect())
        }
        .boxed()
    }

    fn history_last<'a>(
        &'a self,
        topic: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        async move {
            let entries: Vec<(String, HashMap<String, String>)> = self
                .client
                .xrevrange(self.keys.history(topic), "+", "-", Some(count as u64))
                .await
                .map_err(unavailable)?;
            let mut out: Vec<(String, String)> = entries
                .into_iter()
                .filter_map(|(id, mut f)| f.remove(history::ENTRY_FIELD).map(|e| (id, e)))
                .collect();
            out.reverse();
            Ok(out)
        }
        .boxed()
    }

    fn history_oldest<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        async move {
            let entries: Vec<(String, HashMap<String, String>)> = self
                .client
                .xrange(self.keys.history(topic), "-", "+", Some(1))
                .await
                .map_err(unavailable)?;
            Ok(entries.into_iter().next().map(|(id, _)| id))
        }
        .boxed()
    }
}
