//! Embedded-mode store, all in process memory: credentials from the config
//! file plus those added through the server API, snapshots, grants,
//! idempotency keys, leases and topic history (written by the memory broker). Resources are not checked (every resource
//! exists) and nothing is kept across restarts.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use futures_util::future::{BoxFuture, FutureExt, ready};
use herald_shared::Principal;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use super::memory_history::MemoryHistory;
use super::{Credential, Store, StoreError};
use crate::config::{AuthConfig, StoredCredential};

#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Key hash → principal and expiry (none for configured ones).
    api_keys: Mutex<HashMap<String, (Principal, Option<Instant>)>>,
    sessions: Mutex<HashMap<String, (Principal, Option<Instant>)>>,
    grants: Mutex<HashMap<String, BTreeSet<String>>>,
    /// One process: a lease lasts until released, never expires.
    leases: Mutex<HashMap<String, String>>,
    snapshots: Mutex<HashMap<String, String>>,
    claims: Mutex<Claims>,
    /// Shared with the memory broker, which appends to it.
    history: Arc<MemoryHistory>,
    /// Replica id → (report, when).
    replicas: Mutex<HashMap<String, (String, i64)>>,
}

/// Idempotency keys: key → (first value, expiry), and when expired ones
/// were last dropped.
#[derive(Debug, Default)]
struct Claims {
    by_key: HashMap<String, (String, Instant)>,
    swept_at: Option<Instant>,
}

/// Expired idempotency keys are dropped by a claim at most this often.
const CLAIMS_SWEEP_EVERY: Duration = Duration::from_secs(30);

fn principal(c: &StoredCredential) -> (String, Principal) {
    let mut p = Principal::new(c.sub.clone());
    p.org = c.org.clone();
    p.roles = c.roles.clone();
    (c.sha256.clone(), p)
}

/// The principal of a credential that has not expired.
fn live(table: &HashMap<String, (Principal, Option<Instant>)>, hash: &str) -> Option<Principal> {
    let now = Instant::now();
    match table.get(hash) {
        Some((p, until)) if until.is_none_or(|u| u > now) => Some(p.clone()),
        _ => None,
    }
}

impl MemoryStore {
    /// A store reading `history`, which the memory broker writes.
    pub fn from_config(auth: &AuthConfig, history: Arc<MemoryHistory>) -> Self {
        Self {
            history,
            api_keys: Mutex::new(
                auth.api_keys
                    .iter()
                    .map(principal)
                    .map(|(h, p)| (h, (p, None)))
                    .collect(),
            ),
            sessions: Mutex::new(
                auth.sessions
                    .iter()
                    .map(principal)
                    .map(|(h, p)| (h, (p, None)))
                    .collect(),
            ),
            ..Self::default()
        }
    }
}

impl Store for MemoryStore {
    fn api_key<'a>(
        &'a self,
        key_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>> {
        ready(Ok(live(&self.api_keys.lock(), key_hash))).boxed()
    }

    fn session<'a>(
        &'a self,
        token_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>> {
        ready(Ok(live(&self.sessions.lock(), token_hash))).boxed()
    }

    fn snapshot<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        ready(Ok(self.snapshots.lock().get(topic).cloned())).boxed()
    }

    fn set_snapshot<'a>(
        &'a self,
        topic: &'a str,
        json: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.snapshots
            .lock()
            .insert(topic.to_owned(), json.to_owned());
        ready(Ok(())).boxed()
    }

    fn claim_once<'a>(
        &'a self,
        key_hash: &'a str,
        value: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let now = Instant::now();
        let mut guard = self.claims.lock();
        let Claims {
            by_key: claims,
            swept_at,
        } = &mut *guard;
        if swept_at.is_none_or(|t| now.duration_since(t) >= CLAIMS_SWEEP_EVERY) {
            claims.retain(|_, (_, until)| *until > now);
            *swept_at = Some(now);
        }
        let first = match claims.get(key_hash) {
            Some((first, until)) if *until > now => Some(first.clone()),
            _ => {
                let until = now + Duration::from_millis(ttl_ms);
                claims.insert(key_hash.to_owned(), (value.to_owned(), until));
                None
            }
        };
        ready(Ok(first)).boxed()
    }

    fn put_replica_report<'a>(
        &'a self,
        replica: &'a str,
        report: &'a str,
        at_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.replicas
            .lock()
            .insert(replica.to_owned(), (report.to_owned(), at_ms));
        ready(Ok(())).boxed()
    }

    fn replica_reports(
        &self,
        now_ms: i64,
        stale_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let mut replicas = self.replicas.lock();
        replicas.retain(|_, (_, at)| now_ms - *at <= stale_ms);
        let mut reports: Vec<(String, String)> = replicas
            .iter()
            .map(|(id, (r, _))| (id.clone(), r.clone()))
            .collect();
        reports.sort();
        ready(Ok(reports.into_iter().map(|(_, r)| r).collect())).boxed()
    }

    fn release_claim<'a>(
        &'a self,
        key_hash: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut guard = self.claims.lock();
        if guard.by_key.get(key_hash).is_some_and(|(v, _)| v == value) {
            guard.by_key.remove(key_hash);
        }
        ready(Ok(())).boxed()
    }

    fn grants<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let grants = self
            .grants
            .lock()
            .get(user)
            .map(|g| g.iter().cloned().collect());
        ready(Ok(grants.unwrap_or_default())).boxed()
    }

    fn put_credential<'a>(
        &'a self,
        kind: Credential,
        hash: &'a str,
        principal: &'a Principal,
        ttl_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let until = ttl_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
        let table = match kind {
            Credential::ApiKey => &self.api_keys,
            Credential::Session => &self.sessions,
        };
        table
            .lock()
            .insert(hash.to_owned(), (principal.clone(), until));
        ready(Ok(())).boxed()
    }

    fn remove_credential<'a>(
        &'a self,
        kind: Credential,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        match kind {
            Credential::ApiKey => drop(self.api_keys.lock().remove(hash)),
            Credential::Session => drop(self.sessions.lock().remove(hash)),
        }
        ready(Ok(())).boxed()
    }

    fn set_grant<'a>(
        &'a self,
        user: &'a str,
        glob: &'a str,
        granted: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut grants = self.grants.lock();
        if granted {
            grants
                .entry(user.to_owned())
                .or_default()
                .insert(glob.to_owned());
        } else if let Some(set) = grants.get_mut(user) {
            set.remove(glob);
            if set.is_empty() {
                grants.remove(user);
            }
        }
        ready(Ok(())).boxed()
    }

    /// Embedded mode does not check resources, so there is nothing to record.
    fn set_resource<'a>(
        &'a self,
        _topic: &'a str,
        _registered: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(Ok(())).boxed()
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
        topic: &'a str,
        after: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        ready(Ok(self.history.after(topic, after, count))).boxed()
    }

    fn history_last<'a>(
        &'a self,
        topic: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        ready(Ok(self.history.last(topic, count))).boxed()
    }

    fn history_oldest<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        ready(Ok(self.history.oldest(topic))).boxed()
    }
}
