//! The Redis broker: one pub/sub connection per replica (per shard on Redis
//! Cluster, where topics are held with sharded SSUBSCRIBE and published
//! with SPUBLISH), on `fred`.
//!
//! Three traps of the client library shape this file (see the stack notes in
//! `docs/protocol.md`):
//! - fred does not reconnect unless given a policy, and then does not
//!   resubscribe by itself; we keep the set of channels here and resubscribe
//!   from a reconnect-driven task, skipping empty sets.
//! - its message channel is a broadcast with 32 slots by default, and the
//!   usual `while let Ok(msg)` loop ends for good on the first `Lagged`; we
//!   raise the capacity and write our own loop that counts lag and goes on.
//! - an idle subscriber does not notice a dead server; a health loop pings on
//!   the pub/sub connection itself and reports not-ready when it fails.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::interfaces::{
    ClientLike, ClusterInterface, EventInterface, LuaInterface, PubsubInterface,
};
use fred::prelude::{Builder, Client, ReconnectPolicy, TcpConfig};
use fred::types::RespVersion;
use fred::types::config::{ConnectionConfig, PerformanceConfig};
use fred::types::config::{Options, Server};
use fred::util::redis_keyslot;
use futures_util::future::{BoxFuture, FutureExt};
use herald_shared::envelope::{id_of, offset_of, parse_offset, with_offset};
use herald_shared::redis_link::RedisLink;
use herald_shared::redis_retry::{MAX_RETRY_PAUSE, retry_within};
use herald_shared::redis_target::RedisTarget;
use herald_shared::{Envelope, HistoryPolicy, Keys, Topic, history, now_ms};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::confirm::Confirmations;
use super::{Broker, BrokerError, EventSink};
use crate::metrics;
use crate::store::Store;

/// Slots in the subscriber's broadcast channels; a burst larger than this
/// between two polls of our receiver loop is counted as lag (lost live, then
/// repaired from history). fred allocates every slot up front for each of
/// its notification channels, so this costs memory per client: 65,536 slots
/// cost ~100 MiB of RSS; 8,192 cost a few MiB. Clients that never receive
/// pub/sub messages keep fred's default.
const SUBSCRIBER_BROADCAST_CAPACITY: usize = 8_192;
const DEFAULT_BROADCAST_CAPACITY: usize = 32;
/// Channels per SUBSCRIBE command when resubscribing.
const RESUBSCRIBE_CHUNK: usize = 512;
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// Redis Cluster: how often the slot table is read to find topics whose
/// slot moved to another shard (see [`RedisBroker::reconcile`]).
const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(1);

pub struct RedisBroker {
    subscriber: SubscriberClient,
    /// Separate connection for PUBLISH: a RESP2 subscribed connection accepts
    /// only (UN)SUBSCRIBE and PING.
    /// Replaced when it stops answering (see `redis_link`).
    commands: RedisLink,
    keys: Keys,
    /// Channels we hold, our source of truth for resubscribing (fred's own
    /// tracking resubscribes empty sets and errors in cluster mode).
    channels: Mutex<foldhash::HashSet<String>>,
    ready: AtomicBool,
    /// Per-topic offsets for repairing gaps after a reconnect.
    continuity: Mutex<Continuity>,
    /// When the connection was last seen failing (Unix ms), for topics whose
    /// offset is unknown.
    down_since: AtomicI64,
    sink: OnceLock<Weak<dyn EventSink>>,
    /// Where gap repair reads a topic's history (the store seam).
    history: Arc<dyn Store>,
    /// Redis Cluster: sharded pub/sub. Each topic's channel is held with
    /// SSUBSCRIBE on the shard that owns its slot and published with
    /// SPUBLISH, so an event never crosses the cluster bus and shards add
    /// fan-out capacity.
    sharded: bool,
    /// Redis Cluster: the shard each held slot was last subscribed on, to
    /// notice a slot that moved without a reconnect.
    owners: Mutex<HashMap<u16, Server>>,
    /// When a reconcile last read the slot table (Unix ms).
    in_place_at: AtomicI64,
    /// Slots a message arrived on from an unexpected shard: reconciled at
    /// the next health tick whatever the slot table says.
    suspects: Mutex<HashSet<u16>>,
    /// Subscribes confirmed by one PING per group, per shard (`None`: the
    /// one server).
    confirmations: Confirmations<Option<Server>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

/// Client settings shared by the gateway's Redis connections.
pub fn builder(target: &RedisTarget) -> Result<Builder, BrokerError> {
    builder_with(target, DEFAULT_BROADCAST_CAPACITY)
}

fn builder_with(target: &RedisTarget, broadcast_capacity: usize) -> Result<Builder, BrokerError> {
    let mut config = target
        .client_config()
        .map_err(|e| BrokerError::Config(format!("redis.{e}")))?;
    // Start even when Redis is down: the replica reports not-ready and keeps trying.
    config.fail_fast = false;
    // RESP3 marks pub/sub messages as pushes, so a PING reply on the
    // subscribed connection can never be confused with a message (in RESP2
    // both are plain arrays).
    config.version = RespVersion::RESP3;
    let mut b = Builder::from_config(config);
    b.set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    b.set_performance_config(PerformanceConfig {
        broadcast_channel_capacity: broadcast_capacity,
        default_command_timeout: Duration::from_secs(5),
        ..Default::default()
    });
    b.set_connection_config(ConnectionConfig {
        connection_timeout: Duration::from_secs(2),
        internal_command_timeout: Duration::from_secs(2),
        tcp: TcpConfig {
            nodelay: Some(true),
            ..Default::default()
        },
        ..Default::default()
    });
    Ok(b)
}

impl RedisBroker {
    /// Connect in the background and start the receiver and health loops.
    /// Gaps after a reconnect are repaired from `history` (the store seam).
    pub fn start(
        target: &RedisTarget,
        keys: Keys,
        history: Arc<dyn Store>,
    ) -> Result<Arc<Self>, BrokerError> {
        let subscriber = builder_with(target, SUBSCRIBER_BROADCAST_CAPACITY)?
            .build_subscriber_client()
            .map_err(|e| BrokerError::Config(e.to_string()))?;
        let mut commands = builder(target)?;
        // fred would resend a publish in flight when a connection drops, as
        // a first attempt: the history script could then store an event
        // twice. Publish retries are ours, marked as retries. (Only here:
        // reads keep fred's attempts, which also follow cluster redirects.)
        commands.with_connection_config(|c| c.max_command_attempts = 1);
        let commands = commands
            .build()
            .map_err(|e| BrokerError::Config(e.to_string()))?;
        commands.connect();
        let commands = RedisLink::new(commands);
        let sharded = subscriber.is_clustered();
        let broker = Arc::new(Self {
            subscriber,
            commands,
            keys,
            channels: Mutex::new(foldhash::HashSet::default()),
            ready: AtomicBool::new(false),
            continuity: Mutex::new(Continuity::default()),
            down_since: AtomicI64::new(0),
            sink: OnceLock::new(),
            history,
            sharded,
            owners: Mutex::new(HashMap::new()),
            in_place_at: AtomicI64::new(now_ms()),
            suspects: Mutex::new(HashSet::new()),
            confirmations: Confirmations::default(),
            stop: CancellationToken::new(),
        });
        // Subscribe to the event channels before connecting so the first
        // reconnect notification is not missed.
        let messages = broker.subscriber.message_rx();
        let reconnects = broker.subscriber.reconnect_rx();
        let errors = broker.subscriber.error_rx();
        broker.subscriber.connect();
        tokio::spawn(Arc::clone(&broker).receive(messages));
        tokio::spawn(Arc::clone(&broker).health(reconnects, errors));
        Ok(broker)
    }

    fn channels(&self) -> MutexGuard<'_, foldhash::HashSet<String>> {
        self.channels.lock()
    }

    /// Our own receiver loop: never ends on lag, never awaits per message.
    async fn receive(
        self: Arc<Self>,
        mut rx: tokio::sync::broadcast::Receiver<fred::types::Message>,
    ) {
        loop {
            let msg = tokio::select! {
                _ = self.stop.cancelled() => return,
                msg = rx.recv() => msg,
            };
            match msg {
                Ok(msg) => {
                    let Some(topic) = self.keys.topic_of_channel(&msg.channel) else {
                        continue;
                    };
                    // UNSUBSCRIBE, like SUBSCRIBE, resolves before Redis has
                    // processed it: a message can still arrive for a topic we
                    // left. The channel set is the truth.
                    if !self.channels().contains(&*msg.channel) {
                        continue;
                    }
                    let Some(bytes) = msg.value.as_bytes() else {
                        metrics::broker_invalid_message();
                        continue;
                    };
                    metrics::broker_message();
                    self.on_message(
                        &msg.channel,
                        topic,
                        Bytes::copy_from_slice(bytes),
                        &msg.server,
                    );
                }
                Err(RecvError::Lagged(n)) => {
                    metrics::broker_lagged(n);
                    tracing::warn!(lost = n, "broker receiver lagged; messages were lost");
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    fn continuity(&self) -> MutexGuard<'_, Continuity> {
        self.continuity.lock()
    }

    /// A live message: held back while its topic is being repaired, dropped
    /// when its offset was already delivered, otherwise handed to the hub.
    /// Delivery happens under the lock so repair and live traffic of a topic
    /// keep their order.
    fn on_message(&self, channel: &str, topic: &str, payload: Bytes, from: &Server) {
        let Some(sink) = self.sink.get().and_then(Weak::upgrade) else {
            return;
        };
        let offset = offset_of(&payload);
        let mut c = self.continuity();
        if let Some(held) = c.recovering.get_mut(topic) {
            held.push((offset, payload));
            return;
        }
        if self.sharded {
            let slot = redis_keyslot(channel.as_bytes());
            let moved = self
                .owners
                .lock()
                .get(&slot)
                .is_some_and(|owner| owner != from);
            if moved {
                // From a shard other than the one we subscribed on: the
                // slot moved and the client library followed it before the
                // reconcile did, so events may be missing in between. Held
                // until the reconcile has repaired the gap.
                c.recovering
                    .entry(topic.to_owned())
                    .or_default()
                    .push((offset, payload));
                self.suspects.lock().insert(slot);
                return;
            }
        }
        if c.advance(topic, offset, id_of(&payload)) {
            sink.deliver(topic, payload);
        } else {
            metrics::dropped(metrics::Dropped::Duplicate);
        }
    }

    /// After a reconnect: deliver, in order, what each topic's history holds
    /// after the last offset delivered, then what arrived live meanwhile.
    /// A topic that has delivered nothing yet is repaired from
    /// `unknown_from` (Unix ms): shortly before delivery could have stopped.
    async fn repair(&self, topics: &[String], unknown_from: i64) {
        let Some(sink) = self.sink.get().and_then(Weak::upgrade) else {
            return;
        };
        for topic in topics {
            let after = match self.continuity().last.get(topic) {
                Some((ms, seq)) => format!("{ms}-{seq}"),
                None => format!("{}-0", unknown_from.max(0)),
            };
            let entries = self.history.history_after(topic, &after, REPAIR_MAX).await;
            let mut c = self.continuity();
            match entries {
                Ok(entries) => {
                    let mut repaired = 0u64;
                    for (id, env) in entries {
                        let Some(payload) = with_offset(&env, &id) else {
                            continue;
                        };
                        let payload = Bytes::from(payload);
                        if c.advance(topic, parse_offset(&id), id_of(&payload)) {
                            sink.deliver(topic, payload);
                            repaired += 1;
                        }
                    }
                    metrics::broker_repaired(repaired);
                }
                Err(e) => tracing::warn!(error = %e, topic, "cannot read history to repair a gap"),
            }
            for (offset, payload) in c.recovering.remove(topic).unwrap_or_default() {
                if c.advance(topic, offset, id_of(&payload)) {
                    sink.deliver(topic, payload);
                }
            }
        }
    }

    /// Readiness and resubscription. Ready means: the pub/sub connection
    /// answers PING and holds every channel we want.
    async fn health(
        self: Arc<Self>,
        mut reconnects: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
        mut errors: tokio::sync::broadcast::Receiver<(
            fred::error::Error,
            Option<fred::types::config::Server>,
        )>,
    ) {
        let mut need_resubscribe = false;
        let mut first = true;
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        let mut last_reconcile = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                r = reconnects.recv() => match r {
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        if !first {
                            metrics::broker_reconnect();
                            tracing::info!("broker reconnected; resubscribing");
                        }
                        first = false;
                        need_resubscribe = true;
                        self.set_ready(false);
                    }
                    Err(RecvError::Closed) => return,
                },
                e = errors.recv() => {
                    if let Ok((e, _)) = e {
                        tracing::warn!(error = %e, "broker connection error");
                    }
                    self.set_ready(false);
                    continue;
                }
                _ = tick.tick() => {}
            }
            if need_resubscribe {
                let topics: Vec<String> = self
                    .channels()
                    .iter()
                    .filter_map(|ch| self.keys.topic_of_channel(ch).map(str::to_owned))
                    .collect();
                {
                    let mut c = self.continuity();
                    for t in &topics {
                        c.recovering.entry(t.clone()).or_default();
                    }
                }
                match self.resubscribe().await {
                    Ok(()) => {
                        need_resubscribe = false;
                        let down_since = self.down_since.load(Ordering::Acquire);
                        self.repair(&topics, down_since - 1000).await;
                        if !topics.is_empty() {
                            metrics::broker_resubscribed(
                                metrics::Resubscribed::Reconnect,
                                topics.len(),
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "resubscribe failed; will retry");
                        self.set_ready(false);
                        continue;
                    }
                }
            }
            let mut reconciled = true;
            let suspected = self.sharded && !self.suspects.lock().is_empty();
            if self.sharded && (suspected || last_reconcile.elapsed() >= RECONCILE_INTERVAL) {
                last_reconcile = tokio::time::Instant::now();
                if let Err(e) = self.reconcile().await {
                    tracing::warn!(error = %e, "cannot resubscribe topics whose slot moved; will retry");
                    reconciled = false;
                }
            }
            let alive = matches!(
                tokio::time::timeout(PING_TIMEOUT, self.subscriber.ping::<()>(None)).await,
                Ok(Ok(()))
            );
            self.set_ready(alive && reconciled && !need_resubscribe);
        }
    }

    async fn resubscribe(&self) -> Result<(), fred::error::Error> {
        let channels: Vec<String> = self.channels().iter().cloned().collect();
        if self.sharded {
            for (slot, group) in by_slot(channels) {
                self.resubscribe_slot(slot, group).await?;
            }
            return Ok(());
        }
        for chunk in channels.chunks(RESUBSCRIBE_CHUNK) {
            self.subscriber.subscribe(chunk.to_vec()).await?;
        }
        // Same reason as `confirm`: ready only once Redis has processed them.
        self.subscriber.ping::<()>(None).await
    }

    /// SSUBSCRIBE one slot's channels (one command: channels of several
    /// slots are refused with CROSSSLOT) on the shard that owns the slot
    /// now, confirmed by a PING there, and remember that shard.
    async fn resubscribe_slot(
        &self,
        slot: u16,
        group: Vec<String>,
    ) -> Result<(), fred::error::Error> {
        let Some(first) = group.first().cloned() else {
            return Ok(());
        };
        self.subscriber.ssubscribe(group).await?;
        self.ping_on(self.shard_of(&first)).await?;
        self.remember_owner(slot);
        Ok(())
    }

    fn remember_owner(&self, slot: u16) {
        if let Some(owner) = self.owner_now(slot) {
            self.owners.lock().insert(slot, owner);
        }
    }

    /// The shard that owns `slot` in the subscriber's slot table.
    fn owner_now(&self, slot: u16) -> Option<Server> {
        self.subscriber
            .cached_cluster_state()
            .and_then(|state| state.get_server(slot).cloned())
    }

    /// After one topic's SSUBSCRIBE, which went to the owner the table
    /// named `before`. The slot's other topics may still be held on the
    /// shard recorded for it, so a different owner is not simply recorded:
    /// the whole slot is reconciled instead. So is a slot that moved while
    /// the subscribe was under way.
    fn record_subscription(&self, slot: u16, before: Option<Server>) {
        let now = self.owner_now(slot);
        let mut owners = self.owners.lock();
        let settled = before.is_some() && before == now;
        match (owners.get(&slot), now) {
            (None, Some(now)) if settled => {
                owners.insert(slot, now);
            }
            (Some(recorded), Some(now)) if settled && *recorded == now => {}
            _ => {
                drop(owners);
                self.suspects.lock().insert(slot);
            }
        }
    }

    /// Redis Cluster: a slot that moves to another shard (a migration, or a
    /// failover fred followed without a reconnect) ends our subscriptions
    /// on it silently: the old owner pushes `sunsubscribe`, which fred
    /// drops, and fred never subscribes on the new owner. So the slot table
    /// is read again, and every held slot whose owner is not the shard we
    /// subscribed it on is subscribed on its new owner and its topics'
    /// gap repaired from history, as after a reconnect.
    async fn reconcile(&self) -> Result<(), fred::error::Error> {
        match tokio::time::timeout(PING_TIMEOUT * 2, self.subscriber.sync_cluster()).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(fred::error::Error::new(
                    fred::error::ErrorKind::Timeout,
                    "reading the cluster's slot table timed out",
                ));
            }
        }
        let Some(state) = self.subscriber.cached_cluster_state() else {
            return Ok(());
        };
        let channels: Vec<String> = self.channels().iter().cloned().collect();
        let suspects = std::mem::take(&mut *self.suspects.lock());
        // A slot without a recorded owner is still being subscribed.
        let moved: Vec<(u16, Vec<String>)> = {
            let owners = self.owners.lock();
            by_slot(channels)
                .into_iter()
                .filter(|(slot, _)| {
                    suspects.contains(slot)
                        || owners
                            .get(slot)
                            .is_some_and(|owner| state.get_server(*slot) != Some(owner))
                })
                .collect()
        };
        let checked_before = self.in_place_at.swap(now_ms(), Ordering::AcqRel);
        if moved.is_empty() {
            return Ok(());
        }
        let topics: Vec<String> = moved
            .iter()
            .flat_map(|(_, group)| group.iter())
            .filter_map(|ch| self.keys.topic_of_channel(ch).map(str::to_owned))
            .collect();
        {
            let mut c = self.continuity();
            for t in &topics {
                c.recovering.entry(t.clone()).or_default();
            }
        }
        tracing::info!(
            topics = topics.len(),
            "slots moved to another shard; resubscribing"
        );
        let mut result = Ok(());
        for (slot, group) in moved {
            if let Err(e) = self.resubscribe_slot(slot, group).await {
                // Its owner stays unrecorded (or, for a suspected slot,
                // suspected), so the next round retries it.
                if suspects.contains(&slot) {
                    self.suspects.lock().insert(slot);
                }
                result = Err(e);
            }
        }
        // Repaired even when a group failed: live messages of these topics
        // are held until then, and a repeat repair delivers nothing twice.
        // Every slot was in place at the previous round.
        self.repair(&topics, checked_before - 1000).await;
        metrics::broker_resubscribed(metrics::Resubscribed::Topology, topics.len());
        result
    }

    /// The shard whose subscriber connection holds `channel` (Redis
    /// Cluster), as far as the cached slot table knows; `None` otherwise.
    fn shard_of(&self, channel: &str) -> Option<Server> {
        self.sharded
            .then(|| self.owner_now(redis_keyslot(channel.as_bytes())))
            .flatten()
    }

    /// PING on the subscriber's connection to `shard` (or its only one):
    /// answered after every command sent there before it.
    async fn ping_on(&self, shard: Option<Server>) -> Result<(), fred::error::Error> {
        match shard {
            Some(server) => {
                let options = Options {
                    cluster_node: Some(server),
                    ..Default::default()
                };
                self.subscriber
                    .with_options(&options)
                    .ping::<()>(None)
                    .await
            }
            None => self.subscriber.ping::<()>(None).await,
        }
    }

    /// fred resolves SUBSCRIBE once it is written, not when Redis has
    /// processed it (its acknowledgements arrive out of band and are dropped).
    /// A PING on the same connection is answered only after every command
    /// before it, so its reply proves the subscription is live: only then may
    /// the caller tell a client it is subscribed (docsfy's `sync`). Subscribes
    /// written while a PING is out share the next one.
    async fn confirm(&self, channel: &str) -> Result<(), BrokerError> {
        let shard = self.shard_of(channel);
        let ping = || async {
            match tokio::time::timeout(PING_TIMEOUT * 5, self.ping_on(shard.clone())).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("subscription not confirmed in time".to_owned()),
            }
        };
        self.confirmations
            .confirm(shard.clone(), ping)
            .await
            .map_err(BrokerError::Unavailable)
    }

    /// Every shard's channels of ours, with how many subscribers each has
    /// there (`PUBSUB SHARDCHANNELS` and `SHARDNUMSUB` on each primary).
    async fn shard_topics(&self) -> Result<Vec<(String, u64)>, fred::error::Error> {
        let commands = self.commands.client();
        let primaries = commands
            .cached_cluster_state()
            .map(|state| state.unique_primary_nodes())
            .unwrap_or_default();
        let mut out = Vec::new();
        for node in primaries {
            let options = Options {
                cluster_node: Some(node),
                ..Default::default()
            };
            let on_node = commands.with_options(&options);
            let channels: Vec<String> =
                on_node.pubsub_shardchannels(self.keys.channel("*")).await?;
            for channel in channels {
                let counts: Vec<fred::types::Value> =
                    on_node.pubsub_shardnumsub(channel.clone()).await?;
                let n = counts.get(1).and_then(fred::types::Value::as_u64);
                if let (Some(topic), Some(n)) = (self.keys.topic_of_channel(&channel), n) {
                    out.push((topic.to_owned(), n));
                }
            }
        }
        Ok(out)
    }

    fn set_ready(&self, ready: bool) {
        let was = self.ready.swap(ready, Ordering::AcqRel);
        if was && !ready {
            self.down_since.store(now_ms(), Ordering::Release);
        }
        if was != ready {
            metrics::broker_connected(ready);
            tracing::info!(ready, "broker readiness changed");
        }
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Names tried to find a probe topic on every primary (a few per primary
/// are enough: slots are spread evenly by the hash).
const PROBE_NAME_SEARCH: usize = 10_000;

/// History entries repaired per topic at most after one reconnect.
const REPAIR_MAX: usize = 10_000;

/// Last delivered offset per topic, and messages held while a topic is repaired.
#[derive(Debug, Default)]
struct Continuity {
    last: foldhash::HashMap<String, (u64, u64)>,
    /// Ids of the latest events per topic: a publish retried after a lost
    /// reply lands twice in history with two offsets but one id.
    recent: foldhash::HashMap<String, VecDeque<Box<str>>>,
    recovering: foldhash::HashMap<String, Vec<Held>>,
}

/// A live message held while its topic is repaired: its offset and bytes.
type Held = (Option<(u64, u64)>, Bytes);

/// Event ids remembered per topic for duplicate suppression.
const RECENT_IDS: usize = 64;

impl Continuity {
    /// Record a delivery; false when the offset (or the event id) was already
    /// delivered. Messages without an offset (no history) always pass.
    fn advance(&mut self, topic: &str, offset: Option<(u64, u64)>, id: Option<&str>) -> bool {
        let Some(offset) = offset else { return true };
        if let Some(last) = self.last.get(topic)
            && offset <= *last
        {
            return false;
        }
        if let Some(id) = id {
            let recent = self.recent.entry(topic.to_owned()).or_default();
            if recent.iter().any(|r| &**r == id) {
                return false;
            }
            if recent.len() == RECENT_IDS {
                recent.pop_front();
            }
            recent.push_back(id.into());
        }
        self.last.insert(topic.to_owned(), offset);
        true
    }

    fn forget(&mut self, topic: &str) {
        self.last.remove(topic);
        self.recent.remove(topic);
        self.recovering.remove(topic);
    }
}

impl RedisBroker {
    /// One PUBLISH, or one run of the history script marked as a first
    /// attempt or a retry.
    async fn publish_attempt(
        &self,
        commands: Client,
        envelope: &Envelope,
        history: Option<&HistoryPolicy>,
        attempt: history::Attempt,
    ) -> Result<(), fred::error::Error> {
        if attempt == history::Attempt::Retry && self.sharded {
            // A dead primary's slots move to its replica: ask the cluster
            // where they are now.
            let _ = tokio::time::timeout(MAX_RETRY_PAUSE, commands.sync_cluster()).await;
        }
        match history {
            Some(policy) => {
                let (keys, args) = history::publish_call(&self.keys, envelope, policy, attempt);
                commands
                    .eval::<String, _, _, _>(history::publish_script(self.sharded), keys, args)
                    .await
                    .map(drop)
            }
            None => {
                let channel = self.keys.channel(envelope.topic.as_str());
                match self.sharded {
                    true => {
                        commands
                            .spublish::<i64, _, _>(channel, envelope.encode())
                            .await
                    }
                    false => {
                        commands
                            .publish::<i64, _, _>(channel, envelope.encode())
                            .await
                    }
                }
                .map(drop)
            }
        }
    }
}

/// Channels grouped by hash slot.
fn by_slot(channels: Vec<String>) -> HashMap<u16, Vec<String>> {
    let mut groups: HashMap<u16, Vec<String>> = HashMap::new();
    for ch in channels {
        groups
            .entry(redis_keyslot(ch.as_bytes()))
            .or_default()
            .push(ch);
    }
    groups
}

fn unavailable(e: fred::error::Error) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl Broker for RedisBroker {
    fn attach(&self, sink: Weak<dyn EventSink>) {
        let _ = self.sink.set(sink);
    }

    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let channel = self.keys.channel(topic);
            // Recorded first: if Redis is down now, the reconnect resubscribes it.
            if self.channels().insert(channel.clone()) {
                // Nothing of an earlier subscription (held messages, the
                // last offset) may carry over to this one.
                self.continuity().forget(topic);
            }
            let slot = redis_keyslot(channel.as_bytes());
            let before = self.sharded.then(|| self.owner_now(slot)).flatten();
            match self.sharded {
                true => self.subscriber.ssubscribe(channel.clone()).await,
                false => self.subscriber.subscribe(channel.clone()).await,
            }
            .map_err(unavailable)?;
            self.confirm(&channel).await?;
            if self.sharded {
                self.record_subscription(slot, before);
            }
            Ok(())
        }
        .boxed()
    }

    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let channel = self.keys.channel(topic);
            self.channels().remove(&channel);
            self.continuity().forget(topic);
            match self.sharded {
                true => self.subscriber.sunsubscribe(channel).await,
                false => self.subscriber.unsubscribe(channel).await,
            }
            .map_err(unavailable)
        }
        .boxed()
    }

    fn cluster_topics(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>, BrokerError>> {
        async move {
            if self.sharded {
                return self.shard_topics().await.map_err(unavailable);
            }
            let channels: Vec<String> = self
                .commands
                .client()
                .pubsub_channels(self.keys.channel("*"))
                .await
                .map_err(unavailable)?;
            if channels.is_empty() {
                return Ok(Vec::new());
            }
            // NUMSUB answers a flat list: channel, count, channel, count, …
            let counts: Vec<fred::types::Value> = self
                .commands
                .client()
                .pubsub_numsub(channels)
                .await
                .map_err(unavailable)?;
            Ok(counts
                .chunks(2)
                .filter_map(|pair| {
                    let channel = pair.first()?.as_string()?;
                    let topic = self.keys.topic_of_channel(&channel)?.to_owned();
                    let n = pair.get(1)?.as_u64()?;
                    Some((topic, n))
                })
                .collect())
        }
        .boxed()
    }

    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
        history: Option<&'a HistoryPolicy>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        // One attempt, still reported to the link: a client that keeps
        // failing is replaced even when only the delivery probe publishes.
        self.publish_within(envelope, history, Duration::ZERO)
    }

    fn publish_within<'a>(
        &'a self,
        envelope: &'a Envelope,
        history: Option<&'a HistoryPolicy>,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        retry_within(window, &self.commands, move |attempt, commands| {
            self.publish_attempt(commands, envelope, history, attempt)
        })
        .map(|r| r.map_err(unavailable))
        .boxed()
    }

    fn probe_topics(&self, base: &Topic) -> Vec<Topic> {
        let state = match self.sharded {
            true => self.subscriber.cached_cluster_state(),
            false => None,
        };
        let Some(state) = state else {
            return vec![base.clone()];
        };
        // `{base}-{n}` for the first n whose slot each primary owns: the
        // same names round after round while the topology stays.
        let primaries = state.unique_primary_nodes().len();
        let mut covered: Vec<&Server> = Vec::new();
        let mut topics = Vec::new();
        for n in 0..PROBE_NAME_SEARCH {
            let Ok(topic) = Topic::parse(&format!("{base}-{n}")) else {
                break;
            };
            let slot = redis_keyslot(self.keys.channel(topic.as_str()).as_bytes());
            if let Some(owner) = state.get_server(slot)
                && !covered.contains(&owner)
            {
                covered.push(owner);
                topics.push(topic);
                if covered.len() == primaries {
                    break;
                }
            }
        }
        topics
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuity_drops_repeats_and_passes_unversioned() {
        let mut c = Continuity::default();
        assert!(c.advance("t", Some((1, 0)), Some("a")));
        assert!(!c.advance("t", Some((1, 0)), Some("b")), "same offset");
        assert!(
            !c.advance("t", Some((1, 1)), Some("a")),
            "same id at a new offset: a retried publish"
        );
        assert!(c.advance("t", Some((1, 2)), Some("b")));
        assert!(c.advance("t", None, None));
        c.forget("t");
        assert!(c.advance("t", Some((0, 5)), Some("a")));
    }
}
