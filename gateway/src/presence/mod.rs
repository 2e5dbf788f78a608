//! Cluster-wide presence (AgentHQ's `agent.online` / `agent.offline`).
//!
//! Each connection with presence is a member of its key; exactly one online
//! event goes out when a key gets its first member and one offline event
//! when it loses its last, whichever replicas the members are on, in the
//! order the transitions happened. [`Presence`] keeps this replica's members
//! and builds their events; a [`PresenceBackend`] keeps the members:
//! [`redis::RedisPresence`] across replicas (members with leases, renewed
//! and swept so a dead replica's members expire), [`memory::MemoryPresence`]
//! in one process. One conformance suite (`tests/tests/presence_conformance.rs`)
//! runs against both.

pub mod memory;
pub mod redis;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use herald_shared::{Envelope, Topic, now_ms};
use parking_lot::Mutex;
use serde_json::value::RawValue;

use crate::store::StoreError;

/// One member's key and events, as a backend needs them.
#[derive(Debug, Clone)]
pub struct Member {
    pub topic: Topic,
    pub key: String,
    /// How long the member lives without renewal (a dead replica's members).
    pub lease_ms: u64,
    /// The events of this key's transitions.
    pub online: Envelope,
    pub offline: Envelope,
}

/// Where members live. Implementations publish the online event when a key
/// gets its first member and the offline event when it loses its last, on
/// the member's topic, exactly once per transition.
pub trait PresenceBackend: Send + Sync + 'static {
    /// Add (or renew) `member` of `m.key`.
    fn join<'a>(&'a self, member: &'a str, m: &'a Member) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Remove `member` of `m.key`.
    fn leave<'a>(&'a self, member: &'a str, m: &'a Member)
    -> BoxFuture<'a, Result<(), StoreError>>;
    /// Expire members nobody renewed (their replica died) and publish the
    /// offline event of keys that empties. A no-op where members cannot outlive
    /// their process.
    fn sweep(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Live members of a key, on every replica.
    fn members<'a>(
        &'a self,
        topic: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
    /// Whether members must be renewed and swept periodically.
    fn leased(&self) -> bool;
}

/// The presence of this replica's connections.
pub struct Presence {
    backend: Arc<dyn PresenceBackend>,
    replica: String,
    seq: AtomicU64,
    /// member → what it joined, for renewal and leave.
    held: Mutex<HashMap<String, Held>>,
}

#[derive(Debug, Clone)]
struct Held {
    topic: Topic,
    key: String,
    online: String,
    offline: String,
    data: Box<RawValue>,
    lease_ms: u64,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence").finish_non_exhaustive()
    }
}

impl Presence {
    /// Live members of a key across every replica.
    pub async fn members(&self, topic: &str, key: &str) -> Result<u64, StoreError> {
        self.backend.members(topic, key).await
    }

    /// Renew and sweep every `every` (a third of the shortest lease) when
    /// the backend leases its members.
    pub fn start(
        backend: Arc<dyn PresenceBackend>,
        replica: String,
        every: Option<Duration>,
    ) -> Arc<Self> {
        let leased = backend.leased();
        let presence = Arc::new(Self {
            backend,
            replica,
            seq: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
        });
        if let (true, Some(every)) = (leased, every) {
            tokio::spawn(Arc::clone(&presence).upkeep(every));
        }
        presence
    }

    /// Keys this replica holds members of, with how many connections each.
    pub fn held(&self) -> Vec<(Topic, String, u64)> {
        let mut counts: HashMap<(Topic, String), u64> = HashMap::new();
        for h in self.held.lock().values() {
            *counts.entry((h.topic.clone(), h.key.clone())).or_default() += 1;
        }
        counts.into_iter().map(|((t, k), n)| (t, k, n)).collect()
    }

    fn envelope(&self, topic: &Topic, event_type: &str, data: &RawValue) -> Envelope {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let id = format!("presence-{}-{n}", self.replica);
        Envelope::single(id, event_type, now_ms(), topic.clone(), data.to_owned())
    }

    fn member(&self, h: &Held) -> Member {
        Member {
            topic: h.topic.clone(),
            key: h.key.clone(),
            lease_ms: h.lease_ms,
            online: self.envelope(&h.topic, &h.online, &h.data),
            offline: self.envelope(&h.topic, &h.offline, &h.data),
        }
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
        let held = Held {
            topic,
            key,
            online: online.to_owned(),
            offline: offline.to_owned(),
            data,
            lease_ms,
        };
        self.backend.join(member, &self.member(&held)).await?;
        self.held.lock().insert(member.to_owned(), held);
        Ok(())
    }

    /// A connection with presence closed.
    pub async fn leave(&self, member: &str) {
        let Some(held) = self.held.lock().remove(member) else {
            return;
        };
        if let Err(e) = self.backend.leave(member, &self.member(&held)).await {
            // The member expires by itself; the sweep publishes the offline event.
            tracing::warn!(error = %e, "presence leave failed");
        }
    }

    /// Renew this replica's members, then sweep every key's expired ones.
    async fn upkeep(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let members: Vec<(String, Held)> = self
                .held
                .lock()
                .iter()
                .map(|(k, h)| (k.clone(), h.clone()))
                .collect();
            for (member, held) in &members {
                if let Err(e) = self.backend.join(member, &self.member(held)).await {
                    tracing::warn!(error = %e, "presence renewal failed");
                }
            }
            if let Err(e) = self.backend.sweep().await {
                tracing::warn!(error = %e, "presence sweep failed");
            }
        }
    }
}
