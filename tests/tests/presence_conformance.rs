//! One suite for every presence backend: in memory (one process) and on
//! Redis (across replicas, on a real redis-server) must announce exactly one
//! online event when a key gets its first member and one offline event when
//! it loses its last.

use herald_shared::redis_target::RedisTarget;
use std::sync::{Arc, Weak};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use fred::interfaces::ClientLike;
use herald_gateway::broker::memory::MemoryBroker;
use herald_gateway::broker::redis::{self, RedisBroker};
use herald_gateway::broker::{Broker, EventSink};
use herald_gateway::presence::memory::MemoryPresence;
use herald_gateway::presence::redis::RedisPresence;
use herald_gateway::presence::{Member, PresenceBackend};
use herald_gateway::store::redis::RedisStore;
use herald_shared::{Envelope, Keys, Topic};
use herald_tests::{EVENT_TIMEOUT, RedisServer, wait_until};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

struct Recorder(mpsc::UnboundedSender<Bytes>);

impl EventSink for Recorder {
    fn deliver(&self, _topic: &str, payload: Bytes) {
        let _ = self.0.send(payload);
    }
}

const TOPIC: &str = "org:acme";

fn envelope(id: &str, event_type: &str) -> Envelope {
    let data = RawValue::from_string(r#"{"id":"agent-1"}"#.to_owned()).expect("raw JSON");
    Envelope::single(
        id.to_owned(),
        event_type,
        1,
        Topic::parse(TOPIC).expect("topic"),
        data,
    )
}

fn member(n: u32, lease_ms: u64) -> Member {
    Member {
        topic: Topic::parse(TOPIC).expect("topic"),
        key: "agent-1".to_owned(),
        lease_ms,
        online: envelope(&format!("on-{n}"), "agent.online"),
        offline: envelope(&format!("off-{n}"), "agent.offline"),
    }
}

/// Events seen on the presence topic, as (type, id).
struct Events {
    rx: mpsc::UnboundedReceiver<Bytes>,
    broker: Arc<dyn Broker>,
    markers: u32,
    _sink: Arc<dyn EventSink>,
}

impl Events {
    async fn on(broker: Arc<dyn Broker>) -> Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink: Arc<dyn EventSink> = Arc::new(Recorder(tx));
        broker.attach(Arc::downgrade(&sink) as Weak<dyn EventSink>);
        wait_until("broker ready", || async { broker.is_ready() }).await?;
        broker.subscribe(TOPIC).await?;
        Ok(Self {
            rx,
            broker,
            markers: 0,
            _sink: sink,
        })
    }

    async fn next(&mut self) -> Result<(String, String)> {
        let payload = tokio::time::timeout(EVENT_TIMEOUT, self.rx.recv())
            .await
            .context("no event in time")?
            .context("sink closed")?;
        let env = Envelope::decode(&payload)?;
        Ok((env.event_type, env.id))
    }

    /// Publish a marker and expect exactly `want` before it: nothing else
    /// (no repeat, no stray event) was published in between.
    async fn exactly(&mut self, want: &[(&str, &str)]) -> Result<()> {
        self.markers += 1;
        let marker = format!("marker-{}", self.markers);
        self.broker
            .publish(&envelope(&marker, "marker"), None)
            .await?;
        for (t, id) in want {
            let got = self.next().await?;
            if got != ((*t).to_owned(), (*id).to_owned()) {
                bail!("expected {t} {id}, got {got:?}");
            }
        }
        let got = self.next().await?;
        if got != ("marker".to_owned(), marker.clone()) {
            bail!("expected {marker}, got {got:?}");
        }
        Ok(())
    }
}

async fn conformance(backend: &dyn PresenceBackend, events: &mut Events) -> Result<()> {
    let (a, b) = (member(1, 60_000), member(2, 60_000));

    backend.join("conn-a", &a).await?;
    events.exactly(&[("agent.online", "on-1")]).await?;
    // A second connection of the same key, and a renewal: no event.
    backend.join("conn-b", &b).await?;
    backend.join("conn-a", &a).await?;
    events.exactly(&[]).await?;
    // One of two leaves: still online.
    backend.leave("conn-a", &a).await?;
    events.exactly(&[]).await?;
    // The last leaves: one offline; leaving again changes nothing.
    backend.leave("conn-b", &b).await?;
    backend.leave("conn-b", &b).await?;
    events.exactly(&[("agent.offline", "off-2")]).await?;
    // And the key can come online again.
    backend.join("conn-c", &member(3, 60_000)).await?;
    events.exactly(&[("agent.online", "on-3")]).await?;
    backend.leave("conn-c", &member(3, 60_000)).await?;
    events.exactly(&[("agent.offline", "off-3")]).await?;
    Ok(())
}

#[tokio::test]
async fn memory_presence_conforms() -> Result<()> {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let backend = MemoryPresence::new(Arc::clone(&broker));
    assert!(!backend.leased(), "members cannot outlive the process");
    conformance(&backend, &mut Events::on(broker).await?).await
}

#[tokio::test]
async fn redis_presence_conforms_and_sweeps_dead_members() -> Result<()> {
    let redis = RedisServer::start().await?;
    let keys = Keys::new("conformance");
    let client = redis::builder(&RedisTarget::from_url(&redis.url()))?.build()?;
    client.init().await?;
    let history = Arc::new(RedisStore::new(client.clone(), keys.clone()));
    let broker: Arc<dyn Broker> =
        RedisBroker::start(&RedisTarget::from_url(&redis.url()), keys.clone(), history)?;
    let backend = RedisPresence::new(client.clone(), keys.clone());
    assert!(backend.leased());
    // A broker takes one sink for its life: one recorder for the whole test.
    let mut events = Events::on(broker).await?;
    conformance(&backend, &mut events).await?;

    // A member whose replica died is never renewed: a sweep after its lease
    // publishes the offline event from the stored template, once.
    let dead = member(4, 200);
    backend.join("conn-dead", &dead).await?;
    events.exactly(&[("agent.online", "on-4")]).await?;
    let swept = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            backend.sweep().await?;
            if let Ok(Some(payload)) =
                tokio::time::timeout(std::time::Duration::from_millis(100), events.rx.recv()).await
            {
                return anyhow::Ok(Envelope::decode(&payload)?);
            }
        }
    })
    .await
    .context("the sweep never published offline")??;
    assert_eq!(swept.event_type, "agent.offline");
    assert!(
        swept.id.starts_with("sweep-"),
        "a sweep's own id: {}",
        swept.id
    );
    assert_eq!(swept.data.get(), r#"{"id":"agent-1"}"#);
    backend.sweep().await?;
    events.exactly(&[]).await?;
    Ok(())
}
