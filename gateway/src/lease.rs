//! Exclusive leases held by this replica's connections (file organizer's
//! `client_id`): taken on connect, renewed together by one task, released on
//! close. A replica that dies stops renewing, so its keys free themselves
//! after one lease length.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::store::{Store, StoreError};

pub struct Leases {
    store: Arc<dyn Store>,
    /// key → (holder, ttl ms).
    held: Mutex<HashMap<String, (String, u64)>>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases").finish_non_exhaustive()
    }
}

impl Leases {
    /// Renew every `renew_every` (a third of the shortest lease, say).
    pub fn start(store: Arc<dyn Store>, renew_every: Option<Duration>) -> Arc<Self> {
        let leases = Arc::new(Self {
            store,
            held: Mutex::new(HashMap::new()),
        });
        if let Some(every) = renew_every {
            tokio::spawn(Arc::clone(&leases).renew(every));
        }
        leases
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, (String, u64)>> {
        self.held.lock()
    }

    /// Take `key` for `holder`; false when another connection has it.
    pub async fn acquire(&self, key: &str, holder: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let took = self.store.lease_acquire(key, holder, ttl_ms).await?;
        if took {
            self.held()
                .insert(key.to_owned(), (holder.to_owned(), ttl_ms));
        }
        Ok(took)
    }

    pub async fn release(&self, key: &str, holder: &str) {
        self.held().remove(key);
        if let Err(e) = self.store.lease_release(key, holder).await {
            // It expires by itself after one lease length.
            tracing::warn!(error = %e, "lease release failed");
        }
    }

    async fn renew(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let list: Vec<(String, String, u64)> = self
                .held()
                .iter()
                .map(|(k, (h, ttl))| (k.clone(), h.clone(), *ttl))
                .collect();
            if list.is_empty() {
                continue;
            }
            if let Err(e) = self.store.lease_renew(&list).await {
                tracing::warn!(error = %e, "lease renewal failed");
            }
        }
    }
}
