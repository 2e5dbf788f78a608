//! The broker seam: how a replica hears about events published anywhere.
//!
//! Contract, shared by every implementation and checked by one conformance
//! suite (`tests/tests/broker_conformance.rs`):
//!
//! - `subscribe(topic)` / `unsubscribe(topic)` are called by the [`Hub`] only,
//!   on a topic's first local subscriber and after its last one left, and are
//!   serialized per topic by the hub. They are idempotent.
//! - Every message published on a subscribed topic is handed to the attached
//!   [`EventSink`] as `(topic, payload bytes)`, from the broker's own task,
//!   without awaiting. The sink must not block.
//! - After a lost connection the broker reconnects by itself, subscribes again
//!   to every topic it holds and reports [`Broker::is_ready`] false meanwhile.
//!   Messages published while it was away are lost at the pub/sub layer; a
//!   broker with history (Redis) repairs the gap by reading the topic's
//!   history through the store seam before releasing live messages.
//! - `publish` with a history policy appends to the topic's history and
//!   publishes with the offset, exactly as `herald-publisher` does (one
//!   script, `herald_shared::history`); the memory broker keeps the same
//!   history in process memory (`store::memory_history`).
//!
//! [`Hub`]: crate::hub::Hub

mod confirm;
pub mod memory;
pub mod redis;

use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use herald_shared::{Envelope, HistoryPolicy, Topic};

/// Receives every message of a subscribed topic. Implemented by the hub.
pub trait EventSink: Send + Sync {
    fn deliver(&self, topic: &str, payload: Bytes);
}

/// Why a broker call failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("invalid broker configuration: {0}")]
    Config(String),
}

pub trait Broker: Send + Sync + 'static {
    /// Start delivering to `sink`. Called once, before the first subscribe.
    fn attach(&self, sink: Weak<dyn EventSink>);
    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;
    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;
    /// Publish an event on its topic, through history when `history` is given
    /// and the broker keeps history (the gateway's own publishing; backends
    /// normally publish through `herald-publisher`, which runs the same script).
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
        history: Option<&'a HistoryPolicy>,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;
    /// [`Broker::publish`], retried through an outage or failover for at
    /// most `window`; a retry cannot store or deliver the event twice.
    fn publish_within<'a>(
        &'a self,
        envelope: &'a Envelope,
        history: Option<&'a HistoryPolicy>,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let _ = window;
        self.publish(envelope, history)
    }
    /// Topics some replica holds, with how many replicas hold each (what
    /// the broker sees cluster-wide; one replica for the memory broker).
    fn cluster_topics(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>, BrokerError>>;
    /// Topics that together cover every server this broker delivers from,
    /// derived from `base`: the delivery probe sends one event on each. One
    /// server: `base` itself; Redis Cluster: one topic per primary.
    fn probe_topics(&self, base: &Topic) -> Vec<Topic> {
        vec![base.clone()]
    }
    /// Connected and subscribed to everything it should be.
    fn is_ready(&self) -> bool;
    /// Short name for logs and metrics (`memory`, `redis`).
    fn name(&self) -> &'static str;
}
