//! Presence in one process: members counted in memory, events through the
//! embedded broker. Members cannot outlive the process, so nothing is leased.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};
use herald_shared::Envelope;
use parking_lot::Mutex;

use super::{Member, PresenceBackend};
use crate::broker::Broker;
use crate::store::StoreError;

pub struct MemoryPresence {
    /// `topic|key` → members.
    members: Mutex<HashMap<String, HashSet<String>>>,
    broker: Arc<dyn Broker>,
}

impl std::fmt::Debug for MemoryPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPresence").finish_non_exhaustive()
    }
}

impl MemoryPresence {
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        Self {
            members: Mutex::new(HashMap::new()),
            broker,
        }
    }

    async fn publish(&self, event: &Envelope) -> Result<(), StoreError> {
        self.broker
            .publish(event, None)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

fn id(m: &Member) -> String {
    format!("{}|{}", m.topic, m.key)
}

impl PresenceBackend for MemoryPresence {
    fn join<'a>(&'a self, member: &'a str, m: &'a Member) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let first = {
                let mut map = self.members.lock();
                let set = map.entry(id(m)).or_default();
                set.insert(member.to_owned()) && set.len() == 1
            };
            if first {
                self.publish(&m.online).await?;
            }
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
            let last = {
                let mut map = self.members.lock();
                let key = id(m);
                let set = map.entry(key.clone()).or_default();
                let last = set.remove(member) && set.is_empty();
                if set.is_empty() {
                    map.remove(&key);
                }
                last
            };
            if last {
                self.publish(&m.offline).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn sweep(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        futures_util::future::ready(Ok(())).boxed()
    }

    fn members<'a>(
        &'a self,
        topic: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let n = self
            .members
            .lock()
            .get(&format!("{topic}|{key}"))
            .map_or(0, |set| set.len() as u64);
        futures_util::future::ready(Ok(n)).boxed()
    }

    fn leased(&self) -> bool {
        false
    }
}
