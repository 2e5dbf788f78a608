//! Embedded-mode store: credentials from the config file, no snapshots or
//! grants, leases in process memory.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use futures_util::future::{BoxFuture, FutureExt, ready};
use herald_shared::Principal;
use parking_lot::Mutex;

use super::{Store, StoreError};
use crate::config::{AuthConfig, StoredCredential};

#[derive(Debug, Default)]
pub struct MemoryStore {
    api_keys: HashMap<String, Principal>,
    sessions: HashMap<String, Principal>,
    /// One process: a lease lasts until released, never expires.
    leases: Mutex<HashMap<String, String>>,
}

fn principal(c: &StoredCredential) -> (String, Principal) {
    let mut p = Principal::new(c.sub.clone());
    p.org = c.org.clone();
    p.roles = c.roles.clone();
    (c.sha256.clone(), p)
}

impl MemoryStore {
    pub fn from_config(auth: &AuthConfig) -> Self {
        Self {
            api_keys: auth.api_keys.iter().map(principal).collect(),
            sessions: auth.sessions.iter().map(principal).collect(),
            leases: Mutex::new(HashMap::new()),
        }
    }
}

impl Store for MemoryStore {
    fn api_key<'a>(
        &'a self,
        key_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>> {
        ready(Ok(self.api_keys.get(key_hash).cloned())).boxed()
    }

    fn session<'a>(
        &'a self,
        token_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>> {
        ready(Ok(self.sessions.get(token_hash).cloned())).boxed()
    }

    fn snapshot<'a>(
        &'a self,
        _topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        ready(Ok(None)).boxed()
    }

    fn grants<'a>(&'a self, _user: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        ready(Ok(Vec::new())).boxed()
    }

    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        _ttl_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let mut leases = self.leases.lock();
        let taken = match leases.entry(key.to_owned()) {
            Entry::Occupied(e) => e.get() == holder,
            Entry::Vacant(e) => {
                e.insert(holder.to_owned());
                true
            }
        };
        ready(Ok(taken)).boxed()
    }

    fn lease_renew<'a>(
        &'a self,
        _leases: &'a [(String, String, u64)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(Ok(())).boxed()
    }

    fn lease_release<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut leases = self.leases.lock();
        if leases.get(key).is_some_and(|h| h == holder) {
            leases.remove(key);
        }
        ready(Ok(())).boxed()
    }

    /// Embedded mode has no backend registry: every resource exists.
    fn resource_exists<'a>(&'a self, _topic: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        ready(Ok(true)).boxed()
    }

    fn upstream_append<'a>(
        &'a self,
        _stream: &'a str,
        _fields: Vec<(&'static str, String)>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(Err(StoreError::Unavailable(
            "upstream streams need Redis".to_owned(),
        )))
        .boxed()
    }

    fn history_after<'a>(
        &'a self,
        _topic: &'a str,
        _after: &'a str,
        _count: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        ready(Ok(Vec::new())).boxed()
    }

    fn history_last<'a>(
        &'a self,
        _topic: &'a str,
        _count: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        ready(Ok(Vec::new())).boxed()
    }

    fn history_oldest<'a>(
        &'a self,
        _topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        ready(Ok(None)).boxed()
    }
}
