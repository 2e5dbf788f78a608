//! The hub: which local connections listen to which topic.
//!
//! It is the replica's source of truth for the topics it needs. The first
//! local subscriber of a topic subscribes the broker, the last one leaving
//! unsubscribes it; transitions are serialized per shard by an async lock
//! held across the broker call, so a subscribe and an unsubscribe of one
//! topic never race. Delivery takes a short read lock, decodes the envelope
//! once, and offers one [`SharedEvent`] to each connection's bounded
//! outbox ([`Subscriber`]); it never awaits, so one slow socket cannot stall the
//! broker's read loop or the other sockets.
//!
//! Orders for a user wherever they are connected (disconnect, unsubscribe)
//! arrive on the control topic, which every replica's hub holds
//! ([`Hub::listen_control`]); the hub hands each to the local connections of
//! the user named in it, found by the principal index sessions register in.
//!
//! Slow-consumer policy: when a connection's queue is full the event is
//! dropped for that connection, counted, and the connection is told to close
//! with its profile's `close.slow_consumer` code; the session does the same
//! when its oldest queued event waited past `limits.max_queue_delay_ms`
//! (overload). The client reconnects and resynchronises; it is never
//! silently left with a gap.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use foldhash::HashMap;
use foldhash::fast::RandomState;
use parking_lot::{Mutex, RwLock};

use bytes::Bytes;
use herald_shared::envelope::{CONTROL_TOPIC, RESERVED_TOPICS};
use herald_shared::{Envelope, Topic};

use crate::broker::{Broker, BrokerError, EventSink};
use crate::metrics;

mod event;
mod subscriber;
pub use event::SharedEvent;
pub use subscriber::{Offer, Signal, Subscriber};

const SHARDS: usize = 32;

#[derive(Default)]
struct Shard {
    subs: RwLock<HashMap<Topic, Vec<Arc<Subscriber>>>>,
    transitions: tokio::sync::Mutex<()>,
}

/// Principal `sub` → its local connections, for one shard of principals.
type PrincipalShard = Mutex<HashMap<String, Vec<Arc<Subscriber>>>>;

pub struct Hub {
    shards: Box<[Shard]>,
    /// Principal `sub` → its local connections, sharded like topics.
    principals: Box<[PrincipalShard]>,
    hasher: RandomState,
    broker: Arc<dyn Broker>,
    /// Number of distinct wire shapes: frame cache slots per [`SharedEvent`].
    shapes: usize,
    topic_count: AtomicUsize,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("topics", &self.topic_count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub on a broker; attaches itself as the broker's sink.
    pub fn new(broker: Arc<dyn Broker>, shapes: usize) -> Arc<Self> {
        let hub = Arc::new(Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            principals: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
            broker: Arc::clone(&broker),
            shapes,
            topic_count: AtomicUsize::new(0),
        });
        let sink: Arc<dyn EventSink> = hub.clone();
        broker.attach(Arc::downgrade(&sink));
        hub
    }

    fn shard(&self, topic: &str) -> &Shard {
        let i = self.hasher.hash_one(topic) as usize % self.shards.len();
        &self.shards[i]
    }

    /// An event not from the broker (replayed history) in the hub's shared form.
    pub fn shared(&self, envelope: Envelope) -> Arc<SharedEvent> {
        Arc::new(SharedEvent::new(envelope, self.shapes))
    }

    /// Add a connection to a topic; subscribes the broker on the first one.
    /// The gateway's own topics (`res:herald:…`) are never joined: a
    /// connection leaving one would unsubscribe the replica from it.
    pub async fn join(&self, topic: &Topic, sub: &Arc<Subscriber>) -> Result<(), BrokerError> {
        if topic.as_str().starts_with(RESERVED_TOPICS) {
            return Err(BrokerError::Config(format!("{topic} is reserved")));
        }
        self.hold(topic, sub).await
    }

    /// The gateway's own listener on one of its reserved topics (the
    /// delivery probe): joined like a connection, and never left.
    pub async fn join_own(&self, topic: &Topic, sub: &Arc<Subscriber>) -> Result<(), BrokerError> {
        self.hold(topic, sub).await
    }

    async fn hold(&self, topic: &Topic, sub: &Arc<Subscriber>) -> Result<(), BrokerError> {
        let shard = self.shard(topic.as_str());
        let _transition = shard.transitions.lock().await;
        // The connection's own short list says whether it holds the topic
        // already: a popular topic's list holds tens of thousands of
        // connections, and scanning it on every join made a connection
        // storm on one topic quadratic. Both lists change only under the
        // shard's transition lock.
        if sub.lock_topics().contains(topic) {
            return Ok(());
        }
        let first = {
            let mut map = shard.subs.write();
            let list = map.entry(topic.clone()).or_default();
            list.push(Arc::clone(sub));
            list.len() == 1
        };
        sub.lock_topics().push(topic.clone());
        if first {
            if let Err(e) = self.broker.subscribe(topic.as_str()).await {
                self.remove_local(shard, topic, sub);
                return Err(e);
            }
            metrics::topics(self.topic_count.fetch_add(1, Ordering::Relaxed) + 1);
        }
        Ok(())
    }

    /// Remove a connection from a topic; unsubscribes the broker after the last one.
    pub async fn leave(&self, topic: &Topic, sub: &Arc<Subscriber>) {
        let shard = self.shard(topic.as_str());
        let _transition = shard.transitions.lock().await;
        if self.remove_local(shard, topic, sub) {
            metrics::topics(
                self.topic_count
                    .fetch_sub(1, Ordering::Relaxed)
                    .saturating_sub(1),
            );
            if let Err(e) = self.broker.unsubscribe(topic.as_str()).await {
                // The broker forgot the topic either way; a reconnect will not restore it.
                tracing::warn!(error = %e, "broker unsubscribe failed");
            }
        }
    }

    /// Remove a connection from every topic it joined.
    pub async fn leave_all(&self, sub: &Arc<Subscriber>) {
        for topic in sub.topics() {
            self.leave(&topic, sub).await;
        }
    }

    /// Returns true when the topic has no local subscriber left.
    fn remove_local(&self, shard: &Shard, topic: &Topic, sub: &Arc<Subscriber>) -> bool {
        sub.lock_topics().retain(|t| t != topic);
        let mut map = shard.subs.write();
        let Some(list) = map.get_mut(topic) else {
            return false;
        };
        // Pointers compared in place (no load of each subscriber), and the
        // last one moved into the gap: fan-out order carries no meaning.
        let Some(at) = list.iter().position(|s| Arc::ptr_eq(s, sub)) else {
            return false;
        };
        list.swap_remove(at);
        if list.is_empty() {
            map.remove(topic);
            return true;
        }
        false
    }

    fn principal_shard(&self, sub: &str) -> &PrincipalShard {
        &self.principals[self.hasher.hash_one(sub) as usize % self.principals.len()]
    }

    /// Make a connection reachable by orders addressed to its principal.
    pub fn register_principal(&self, principal: &str, sub: &Arc<Subscriber>) {
        self.principal_shard(principal)
            .lock()
            .entry(principal.to_owned())
            .or_default()
            .push(Arc::clone(sub));
    }

    /// Undo [`Hub::register_principal`].
    pub fn forget_principal(&self, principal: &str, sub: &Arc<Subscriber>) {
        let mut map = self.principal_shard(principal).lock();
        if let Some(list) = map.get_mut(principal) {
            list.retain(|s| s.id != sub.id);
            if list.is_empty() {
                map.remove(principal);
            }
        }
    }

    /// Tell every local connection to close within the drain window.
    pub fn drain_all(&self) {
        for shard in &self.principals {
            for sub in shard.lock().values().flatten() {
                sub.drain();
            }
        }
    }

    /// Hold the control topic for this replica (resubscribed after a broker
    /// reconnect like every topic).
    pub async fn listen_control(&self) -> Result<(), BrokerError> {
        self.broker.subscribe(CONTROL_TOPIC).await
    }

    /// An order from the control topic: queue it to every local connection
    /// of the principal named in `data.sub`, like an event.
    fn route_order(&self, event: Arc<SharedEvent>) {
        let Ok(order) = serde_json::from_str::<Order>(event.envelope.data.get()) else {
            metrics::broker_invalid_message();
            return;
        };
        let map = self.principal_shard(&order.sub).lock();
        for sub in map.get(order.sub.as_str()).into_iter().flatten() {
            offer(sub, Arc::clone(&event));
        }
    }

    /// Topics with at least one local subscriber, and how many each has.
    pub fn topic_counts(&self) -> Vec<(Topic, usize)> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.subs
                    .read()
                    .iter()
                    .map(|(t, subs)| (t.clone(), subs.len()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Topics with at least one local subscriber.
    pub fn topics(&self) -> Vec<Topic> {
        self.shards
            .iter()
            .flat_map(|s| s.subs.read().keys().cloned().collect::<Vec<_>>())
            .collect()
    }
}

impl EventSink for Hub {
    fn deliver(&self, topic: &str, payload: Bytes) {
        let envelope = match Envelope::decode(&payload) {
            Ok(e) => e,
            Err(e) => {
                metrics::broker_invalid_message();
                tracing::debug!(error = %e, "dropping invalid envelope");
                return;
            }
        };
        let event = self.shared(envelope);
        if topic == CONTROL_TOPIC {
            return self.route_order(event);
        }
        // Copies of one event on other topics of its audience that precede this
        // one serve the connections that joined those; see `Envelope::to`.
        let audience = event.envelope.audience();
        let earlier = &audience[..audience
            .iter()
            .position(|t| t.as_str() == topic)
            .unwrap_or(0)];
        let shard = self.shard(topic);
        let map = shard.subs.read();
        let Some(list) = map.get(topic) else { return };
        let mut queued = false;
        for sub in list {
            if !earlier.is_empty() && sub.joined_any(earlier) {
                continue;
            }
            queued |= offer(sub, Arc::clone(&event));
        }
        // The hub's own reference goes last at the earliest, so no
        // connection can end the fan-out before it is marked.
        if queued {
            event.fan_out();
        }
    }
}

/// Queue an event to one connection without waiting: a full queue makes it
/// a slow consumer. Whether it was queued.
fn offer(sub: &Subscriber, event: Arc<SharedEvent>) -> bool {
    match sub.offer(event) {
        Offer::Queued => return true,
        Offer::Full => metrics::dropped(metrics::Dropped::SlowConsumer),
        Offer::Gone => metrics::dropped(metrics::Dropped::Closed),
    }
    false
}

/// Who an order on the control topic is for.
#[derive(serde::Deserialize)]
struct Order {
    sub: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::memory::MemoryBroker;
    use serde_json::value::RawValue;

    fn envelope(topic: &str, to: &[&str], id: &str) -> Envelope {
        let to: Vec<Topic> = to.iter().map(|t| self::topic(t)).collect();
        let data = RawValue::from_string("{}".to_owned()).expect("raw");
        let mut env = Envelope::single(id.to_owned(), "t", 0, self::topic(topic), data);
        env.to = to;
        env
    }

    fn topic(s: &str) -> Topic {
        Topic::parse(s).expect("valid topic")
    }

    fn next_id(sub: &Subscriber) -> Option<String> {
        sub.try_next().map(|e| e.envelope.id.clone())
    }

    #[tokio::test]
    async fn the_gateways_own_topics_are_never_joined() {
        let broker = Arc::new(MemoryBroker::new());
        let hub = Hub::new(broker.clone(), 1);
        hub.listen_control().await.expect("control");
        let a = Subscriber::new(8);
        assert!(hub.join(&topic(CONTROL_TOPIC), &a).await.is_err());
        hub.leave_all(&a).await;
        assert!(broker.holds(CONTROL_TOPIC), "still held for orders");
    }

    #[tokio::test]
    async fn refcounts_broker_subscriptions_and_dedups() {
        let broker = Arc::new(MemoryBroker::new());
        let hub = Hub::new(broker.clone(), 1);
        let a = Subscriber::new(8);
        let b = Subscriber::new(8);
        let (alice, admin) = (topic("user:alice"), topic("role:admin"));
        hub.join(&alice, &a).await.expect("join");
        hub.join(&admin, &a).await.expect("join");
        hub.join(&admin, &b).await.expect("join");
        assert_eq!(hub.topics().len(), 2);
        assert!(broker.holds("user:alice") && broker.holds("role:admin"));

        // One event to [user:alice, role:admin]: a (on both) gets it once, b once.
        let to = ["user:alice", "role:admin"];
        for t in to {
            broker
                .publish(&envelope(t, &to, "e1"), None)
                .await
                .expect("publish");
        }
        assert_eq!(next_id(&a).as_deref(), Some("e1"));
        assert!(a.try_next().is_none(), "a must see e1 once");
        assert_eq!(next_id(&b).as_deref(), Some("e1"));

        // The last local subscriber of a topic leaving unsubscribes the broker;
        // a topic someone still holds stays subscribed.
        hub.leave_all(&a).await;
        assert_eq!(hub.topics(), vec![admin.clone()]);
        assert!(!broker.holds("user:alice"), "broker left user:alice");
        assert!(broker.holds("role:admin"), "b still holds role:admin");
        broker
            .publish(&envelope("user:alice", &[], "e2"), None)
            .await
            .expect("publish");
        assert!(a.try_next().is_none(), "left topics deliver nothing");
        hub.leave_all(&b).await;
        assert!(hub.topics().is_empty());
        assert!(!broker.holds("role:admin"), "broker left role:admin");
    }

    #[tokio::test]
    async fn full_queue_marks_slow_consumer() {
        let broker = Arc::new(MemoryBroker::new());
        let hub = Hub::new(broker.clone(), 1);
        let a = Subscriber::new(1);
        hub.join(&topic("user:a"), &a).await.expect("join");
        for id in ["1", "2"] {
            broker
                .publish(&envelope("user:a", &[], id), None)
                .await
                .expect("publish");
        }
        let signal = tokio::time::timeout(std::time::Duration::from_secs(1), a.signalled(false))
            .await
            .expect("kicked");
        assert_eq!(signal, Signal::SlowConsumer);
    }
}
