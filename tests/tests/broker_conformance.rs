//! One suite for every broker implementation: the in-memory broker and the
//! Redis broker (on a real redis-server) must behave the same to the hub.

use std::sync::{Arc, Weak};

use anyhow::{Context, Result};
use bytes::Bytes;
use fred::interfaces::ClientLike;
use herald_gateway::broker::memory::MemoryBroker;
use herald_gateway::broker::redis::{self, RedisBroker};
use herald_gateway::broker::{Broker, EventSink};
use herald_gateway::store::redis::RedisStore;
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

async fn conformance(
    broker: Arc<dyn Broker>,
    last_offset: impl FnOnce(Option<String>),
) -> Result<()> {
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

    // Publishing through history delivers the event whole; a broker that
    // keeps history adds the offset (checked per backend below).
    broker
        .publish(&event("user:b", "kept"), Some(&HistoryPolicy::default()))
        .await?;
    let (topic, payload) = next(&mut rx).await?;
    let env = Envelope::decode(&payload)?;
    assert_eq!((topic.as_str(), env.id.as_str()), ("user:b", "kept"));
    assert_eq!(env.data.get(), r#"{"n":"kept"}"#);
    last_offset(env.offset);
    drop(sink);
    Ok(())
}

#[tokio::test]
async fn memory_broker_conforms() -> Result<()> {
    conformance(Arc::new(MemoryBroker::new()), |offset| {
        assert_eq!(offset, None, "one process keeps no history");
    })
    .await
}

#[tokio::test]
async fn redis_broker_conforms() -> Result<()> {
    let redis = RedisServer::start().await?;
    let keys = Keys::new("conformance");
    let client = redis::builder(&redis.url())?.build()?;
    client.init().await?;
    let history = Arc::new(RedisStore::new(client, keys.clone()));
    let broker = RedisBroker::start(&redis.url(), keys, history)?;
    conformance(broker, |offset| {
        let offset = offset.expect("history gives the published copy its offset");
        assert!(
            herald_shared::envelope::parse_offset(&offset).is_some(),
            "offset {offset} is a stream id"
        );
    })
    .await?;
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
