//! Lookups the gateway makes on connect: API keys, sessions and snapshots.
//!
//! Backends write these through `herald-publisher` (Redis); in embedded mode
//! API keys and sessions come from the config file and no snapshot is stored.
//! Secrets are looked up by their SHA-256, never stored in clear.

pub mod memory;
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
}
