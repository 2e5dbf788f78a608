//! One suite for every broker implementation: the in-memory broker and the
//! Redis broker (on a real redis-server) must behave the same to the hub.

use std::sync::{Arc, Weak};

use anyhow::{Context, Result};
use bytes::Bytes;
use herald_gateway::broker::memory::MemoryBroker;
use herald_gateway::broker::redis::RedisBroker;
use herald_gateway::broker::{Broker, EventSink};
use herald_shared::Keys;
use herald_tests::{EVENT_TIMEOUT, RedisServer, wait_until};
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

async fn conformance(broker: Arc<dyn Broker>) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink: Arc<dyn EventSink> = Arc::new(Recorder(tx));
    broker.attach(Arc::downgrade(&sink) as Weak<dyn EventSink>);
    wait_until("broker ready", || async { broker.is_ready() }).await?;

    broker.subscribe("user:a").await?;
    broker.subscribe("user:b").await?;
    broker.subscribe("user:b").await?; // idempotent
    broker.publish("user:a", Bytes::from_static(b"1")).await?;
    assert_eq!(
        next(&mut rx).await?,
        ("user:a".to_owned(), Bytes::from_static(b"1"))
    );

    // Unsubscribed and never-subscribed topics deliver nothing: the marker on
    // user:b is the next thing the sink sees.
    broker.unsubscribe("user:a").await?;
    broker.publish("user:a", Bytes::from_static(b"2")).await?;
    broker.publish("user:c", Bytes::from_static(b"3")).await?;
    broker
        .publish("user:b", Bytes::from_static(b"marker"))
        .await?;
    assert_eq!(
        next(&mut rx).await?,
        ("user:b".to_owned(), Bytes::from_static(b"marker"))
    );

    // Order per topic is publish order.
    for i in 0..200u32 {
        broker.publish("user:b", Bytes::from(i.to_string())).await?;
    }
    for i in 0..200u32 {
        assert_eq!(next(&mut rx).await?.1, Bytes::from(i.to_string()));
    }
    drop(sink);
    Ok(())
}

#[tokio::test]
async fn memory_broker_conforms() -> Result<()> {
    conformance(Arc::new(MemoryBroker::new())).await
}

#[tokio::test]
async fn redis_broker_conforms() -> Result<()> {
    let redis = RedisServer::start().await?;
    let broker = RedisBroker::start(&redis.url(), Keys::new("conformance"))?;
    conformance(broker).await
}
