//! The embedded broker: one process, no Redis.
//!
//! Publishing hands the payload straight to the sink when the topic is
//! subscribed. It is the default when no Redis URL is configured and suits a
//! single replica; it is not a test double.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, Weak};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};

use super::{Broker, BrokerError, EventSink};

#[derive(Default)]
pub struct MemoryBroker {
    sink: OnceLock<Weak<dyn EventSink>>,
    topics: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker").finish_non_exhaustive()
    }
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self::default()
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A panic while holding this lock cannot leave the set half-updated.
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Broker for MemoryBroker {
    fn attach(&self, sink: Weak<dyn EventSink>) {
        let _ = self.sink.set(sink);
    }

    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.topics().insert(topic.to_owned());
        futures_util::future::ready(Ok(())).boxed()
    }

    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.topics().remove(topic);
        futures_util::future::ready(Ok(())).boxed()
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let subscribed = self.topics().contains(topic);
        if subscribed && let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
            sink.deliver(topic, payload);
        }
        futures_util::future::ready(Ok(())).boxed()
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
