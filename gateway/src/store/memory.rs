//! Embedded-mode store: credentials from the config file, no snapshots.

use std::collections::HashMap;

use futures_util::future::{BoxFuture, FutureExt, ready};
use herald_shared::Principal;

use super::{Store, StoreError};
use crate::config::{AuthConfig, StoredCredential};

#[derive(Debug, Default)]
pub struct MemoryStore {
    api_keys: HashMap<String, Principal>,
    sessions: HashMap<String, Principal>,
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
}
