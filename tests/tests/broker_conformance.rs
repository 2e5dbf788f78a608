//! One suite for every broker implementation: the in-memory broker and the
//! Redis broker (on a real redis-server) must behave the same to the hub.

use herald_shared::redis_target::RedisTarget;
use std::sync::{Arc, Weak};

use anyhow::{Context, Result};
use bytes::Bytes;
use fred::interfaces::ClientLike;
use herald_gateway::broker::memory::MemoryBroker;
use herald_gateway::broker::redis::{self, RedisBroker};
use herald_gateway::broker::{Broker, EventSink};
use herald_gateway::config::AuthConfig;
use herald_gateway::store::Store;
use herald_gateway::store::memory::MemoryStore;
use herald_gateway::store::memory_history::MemoryHistory;
use herald_gateway::store::redis::RedisStore;
use herald_shared::envelope::parse_offset;
use herald_shared::{Envelope, HistoryPolicy, Keys, Topic};
use herald_tests::{EVENT_TIMEOUT, RedisServer, wait_until};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

struct Recorder(mpsc::UnboundedSender<(String, Bytes)>);

impl EventSink for Recorder {
    fn deliver(&self, topic: &str, payload: Bytes) {
        let _ = self.0.send((topic.to_owned(), payload));
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(String, Bytes)>) -> Result<(String, Bytes)> {
    tokio::time::timeout(EVENT_TIMEOUT, rx.recv())
        .await?
        .context("sink closed")
}

/// An event on `topic` whose id is `id`.
fn event(topic: &str, id: &str) -> Envelope {
    let data = RawValue::from_string(format!("{{\"n\":\"{id}\"}}")).expect("raw JSON");
    Envelope::single(
        id.to_owned(),
        "t",
        1,
        Topic::parse(topic).expect("topic"),
        data,
    )
}

/// What the sink got: the topic and the event id of the payload.
async fn next_id(rx: &mut mpsc::UnboundedReceiver<(String, Bytes)>) -> Result<(String, String)> {
    let (topic, payload) = next(rx).await?;
    let env = Envelope::decode(&payload).context("delivered payload is an envelope")?;
    Ok((topic, env.id))
}

fn pair(topic: &str, id: &str) -> (String, String) {
    (topic.to_owned(), id.to_owned())
}

async fn conformance(broker: Arc<dyn Broker>, store: Arc<dyn Store>) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink: Arc<dyn EventSink> = Arc::new(Recorder(tx));
    broker.attach(Arc::downgrade(&sink) as Weak<dyn EventSink>);
    wait_until("broker ready", || async { broker.is_ready() }).await?;

    broker.subscribe("user:a").await?;
    broker.subscribe("user:b").await?;
    broker.subscribe("user:b").await?; // idempotent
    broker.publish(&event("user:a", "1"), None).await?;
    assert_eq!(next_id(&mut rx).await?, pair("user:a", "1"));

    // Unsubscribed and never-subscribed topics deliver nothing: the marker on
    // user:b is the next thing the sink sees.
    broker.unsubscribe("user:a").await?;
    broker.publish(&event("user:a", "2"), None).await?;
    broker.publish(&event("user:c", "3"), None).await?;
    broker.publish(&event("user:b", "marker"), None).await?;
    assert_eq!(next_id(&mut rx).await?, pair("user:b", "marker"));

    // Order per topic is publish order.
    for i in 0..200u32 {
        broker
            .publish(&event("user:b", &i.to_string()), None)
            .await?;
    }
    for i in 0..200u32 {
        assert_eq!(next_id(&mut rx).await?, pair("user:b", &i.to_string()));
    }

    // Publishing through history delivers the event whole with its offset,
    // and the store seam reads it back (without offset) at that offset.
    let policy = HistoryPolicy::default();
    broker
        .publish(&event("user:b", "kept"), Some(&policy))
        .await?;
    let (topic, payload) = next(&mut rx).await?;
    let env = Envelope::decode(&payload)?;
    assert_eq!((topic.as_str(), env.id.as_str()), ("user:b", "kept"));
    assert_eq!(env.data.get(), r#"{"n":"kept"}"#);
    let offset = env
        .offset
        .context("the published copy carries its offset")?;
    assert!(parse_offset(&offset).is_some(), "offset {offset} is ms-seq");
    let last = store.history_last("user:b", 1).await?;
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].0, offset);
    assert!(
        last[0].1.contains(r#""id":"kept""#) && !last[0].1.contains("offset"),
        "{last:?}"
    );
    // Offsets grow with publish order; replay after one gives the rest.
    broker
        .publish(&event("user:b", "kept-2"), Some(&policy))
        .await?;
    let second = Envelope::decode(&next(&mut rx).await?.1)?;
    let second_offset = second.offset.context("offset")?;
    assert!(parse_offset(&second_offset) > parse_offset(&offset));
    let after = store.history_after("user:b", &offset, 10).await?;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].0, second_offset);
    assert_eq!(store.history_oldest("user:b").await?, Some(offset));
    drop(sink);
    Ok(())
}

#[tokio::test]
async fn memory_broker_conforms() -> Result<()> {
    let history = Arc::new(MemoryHistory::default());
    let store = MemoryStore::from_config(&AuthConfig::default(), Arc::clone(&history));
    conformance(
        Arc::new(MemoryBroker::with_history(history)),
        Arc::new(store),
    )
    .await
}

/// A Redis broker on `redis` under `prefix`, with the store it repairs from.
async fn redis_broker(
    redis: &RedisServer,
    prefix: &str,
) -> Result<(Arc<RedisBroker>, Arc<dyn Store>)> {
    let target = RedisTarget::from_url(&redis.url());
    let keys = Keys::new(prefix);
    let client = redis::builder(&target)?.build()?;
    client.init().await?;
    let store: Arc<dyn Store> = Arc::new(RedisStore::new(client, keys.clone()));
    let broker = RedisBroker::start(&target, keys, Arc::clone(&store))?;
    Ok((broker, store))
}

#[tokio::test]
async fn redis_broker_conforms() -> Result<()> {
    let redis = RedisServer::start().await?;
    let (broker, store) = redis_broker(&redis, "conformance").await?;
    conformance(broker, store).await?;
    // The history holds the event without offset, under the topic's key.
    let entries = redis
        .cli(&[
            "XRANGE",
            &Keys::new("conformance").history("user:b"),
            "-",
            "+",
        ])
        .await?;
    assert!(
        entries
            .iter()
            .any(|l| l.contains(r#""id":"kept""#) && !l.contains("offset")),
        "history entry missing: {entries:?}"
    );
    Ok(())
}

/// PINGs Redis has answered (`INFO commandstats`).
async fn pings(redis: &RedisServer) -> Result<u64> {
    let stats = redis.cli(&["INFO", "commandstats"]).await?;
    Ok(stats
        .iter()
        .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Subscribes made at once (a reconnect storm) are each live when they
/// return, and their confirmations share PINGs instead of costing a round
/// trip each.
#[tokio::test]
async fn redis_broker_confirms_concurrent_subscribes_together() -> Result<()> {
    let redis = RedisServer::start().await?;
    let (broker, _store) = redis_broker(&redis, "storm").await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink: Arc<dyn EventSink> = Arc::new(Recorder(tx));
    broker.attach(Arc::downgrade(&sink) as Weak<dyn EventSink>);
    wait_until("broker ready", || async { broker.is_ready() }).await?;

    let topics: Vec<String> = (0..200).map(|i| format!("user:storm-{i}")).collect();
    let before = pings(&redis).await?;
    futures_util::future::try_join_all(topics.iter().map(|t| broker.subscribe(t))).await?;
    let used = pings(&redis).await? - before;
    // One PING per group plus the health loop's (one per 500 ms).
    assert!(
        (1..50).contains(&used),
        "{used} PINGs confirmed 200 concurrent subscribes"
    );
    for t in &topics {
        broker.publish(&event(t, "live"), None).await?;
    }
    let mut got = std::collections::HashSet::new();
    for _ in &topics {
        got.insert(next_id(&mut rx).await?.0);
    }
    assert_eq!(got.len(), topics.len(), "every subscribe was live");
    drop(sink);
    Ok(())
}
