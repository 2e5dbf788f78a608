//! Lookups the gateway makes on connect: API keys, sessions and snapshots.
//!
//! Backends write these through `herald-publisher` (Redis) or the server
//! API; in embedded mode API keys and sessions come from the config file and
//! snapshots and idempotency keys live in process memory.
//! Secrets are looked up by their SHA-256, never stored in clear.

pub mod memory;
pub mod memory_history;
pub mod redis;

use futures_util::future::BoxFuture;
use herald_shared::Principal;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt record at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The two kinds of stored end-user credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    Session,
}

pub trait Store: Send + Sync + 'static {
    /// The principal of an API key, by the key's SHA-256.
    fn api_key<'a>(
        &'a self,
        key_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>>;
    /// The principal of a live session, by the token's SHA-256.
    fn session<'a>(
        &'a self,
        token_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>>;
    /// The stored snapshot JSON of a topic.
    fn snapshot<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    /// Whether the backend registered a resource topic.
    fn resource_exists<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Append a forwarded client frame to an upstream stream.
    fn upstream_append<'a>(
        &'a self,
        stream: &'a str,
        fields: Vec<(&'static str, String)>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The history of a topic after `after` (exclusive): `(offset, envelope JSON)`.
    fn history_after<'a>(
        &'a self,
        topic: &'a str,
        after: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>>;
    /// The last `count` history entries of a topic, oldest first.
    fn history_last<'a>(
        &'a self,
        topic: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>>;
    /// The offset of the oldest entry a topic's history still holds.
    fn history_oldest<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    /// Topic globs granted to a user for client-chosen subscriptions.
    fn grants<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;
    /// Take an exclusive lease for `ttl_ms` unless another holder has it.
    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Extend leases this replica holds (and retake any Redis lost).
    fn lease_renew<'a>(
        &'a self,
        leases: &'a [(String, String, u64)],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Give a lease back if `holder` still has it.
    fn lease_release<'a>(
        &'a self,
        key: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Store a topic's snapshot JSON (what `Publisher::set_snapshot` writes).
    fn set_snapshot<'a>(
        &'a self,
        topic: &'a str,
        json: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Remember `value` under an idempotency key for `ttl_ms`, unless the key
    /// is already taken: then the value stored first, and nothing changes.
    fn claim_once<'a>(
        &'a self,
        key_hash: &'a str,
        value: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    /// Store an end-user credential by its SHA-256 (what
    /// `Publisher::add_api_key` / `add_session` write); sessions expire
    /// after `ttl_ms`.
    fn put_credential<'a>(
        &'a self,
        kind: Credential,
        hash: &'a str,
        principal: &'a Principal,
        ttl_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Delete an end-user credential by its SHA-256.
    fn remove_credential<'a>(
        &'a self,
        kind: Credential,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Add (or, with `granted` false, remove) a topic glob a user may subscribe to.
    fn set_grant<'a>(
        &'a self,
        user: &'a str,
        glob: &'a str,
        granted: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Register (or unregister) a resource topic.
    fn set_resource<'a>(
        &'a self,
        topic: &'a str,
        registered: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Store this replica's report (JSON); it is dropped by readers once
    /// `stale_ms` passes without a newer one (the replica died).
    fn put_replica_report<'a>(
        &'a self,
        replica: &'a str,
        report: &'a str,
        at_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Every replica's latest report, reported within `stale_ms` of `now_ms`;
    /// older ones are deleted.
    fn replica_reports(
        &self,
        now_ms: i64,
        stale_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    /// Forget an idempotency key if it still holds `value` (the work it
    /// guarded failed, so a retry must do it).
    fn release_claim<'a>(
        &'a self,
        key_hash: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}
