//! The embedded broker: one process, no Redis.
//!
//! Publishing hands the payload straight to the sink when the topic is
//! subscribed; with a history policy it is first appended to the topic's
//! history (shared with the memory store) and carries its offset, as on
//! Redis. It is the default when no Redis URL is configured and suits a
//! single replica; it is not a test double.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use herald_shared::envelope::with_offset;
use herald_shared::{Envelope, HistoryPolicy};
use parking_lot::{Mutex, MutexGuard};

use super::{Broker, BrokerError, EventSink};
use crate::store::memory_history::MemoryHistory;

#[derive(Default)]
pub struct MemoryBroker {
    sink: OnceLock<Weak<dyn EventSink>>,
    topics: Mutex<HashSet<String>>,
    history: Arc<MemoryHistory>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker").finish_non_exhaustive()
    }
}

impl MemoryBroker {
    /// A broker without history readers (events are still kept).
    pub fn new() -> Self {
        Self::default()
    }

    /// A broker appending to `history`, which the memory store reads.
    pub fn with_history(history: Arc<MemoryHistory>) -> Self {
        Self {
            history,
            ..Self::default()
        }
    }

    /// Whether a topic is subscribed (what the hub asked for).
    pub fn holds(&self, topic: &str) -> bool {
        self.topics().contains(topic)
    }

    fn topics(&self) -> MutexGuard<'_, HashSet<String>> {
        self.topics.lock()
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
        envelope: &'a Envelope,
        history: Option<&'a HistoryPolicy>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let topic = envelope.topic.as_str();
        let deliver = |payload: String| {
            let subscribed = self.topics().contains(topic);
            if subscribed && let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
                sink.deliver(topic, Bytes::from(payload));
            }
        };
        let encoded = envelope.encode();
        match history {
            // Delivered under the history lock: offsets and delivery agree on order.
            Some(policy) => {
                self.history
                    .append(topic, encoded.clone(), policy, |offset| {
                        if let Some(with) = with_offset(&encoded, offset) {
                            deliver(with);
                        }
                    });
            }
            None => deliver(encoded),
        }
        futures_util::future::ready(Ok(())).boxed()
    }

    fn cluster_topics(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>, BrokerError>> {
        let held = self.topics().iter().map(|t| (t.clone(), 1)).collect();
        futures_util::future::ready(Ok(held)).boxed()
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
