//! The contract between `herald-publisher` and `herald-gateway`.
//!
//! Everything two processes must agree on lives here and nowhere else, so a
//! backend written in another language can follow `docs/protocol.md` and a
//! Rust backend gets the same rules by type:
//!
//! - [`topic`]: topic keys (`user:`, `org:`, `role:`, `res:`) and their validation;
//! - [`envelope`]: the versioned event as it travels through Redis, and the
//!   one place that knows its byte layout;
//! - [`history`]: per-topic history policy and the publish-with-history script;
//! - [`keys`]: every Redis channel and key name, with cluster hash tags;
//! - [`principal`]: who is connected (claims, roles) and how secrets are hashed;
//! - [`profile`]: route-profile configuration types, pure data;
//! - `redis_target` (feature `redis`): where Redis is, as a URL or explicit
//!   settings, and the client configuration every process derives from it;
//!   `redis_retry` (feature `redis`): which Redis failures are worth another
//!   attempt, and the bounded retry loop of every publishing path, over a
//!   `redis_link` that replaces a client that stopped answering.
//!
//! This crate does no network I/O and, without feature `redis`, has no
//! async runtime.

pub mod envelope;
pub mod history;
pub mod keys;
pub mod principal;
pub mod profile;
#[cfg(feature = "redis")]
pub mod redis_link;
#[cfg(feature = "redis")]
pub mod redis_retry;
#[cfg(feature = "redis")]
pub mod redis_target;
pub mod topic;

pub use envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError, now_ms};
pub use history::HistoryPolicy;
pub use keys::Keys;
pub use principal::{Claims, Principal, hash_secret};
pub use topic::{Topic, TopicError};
