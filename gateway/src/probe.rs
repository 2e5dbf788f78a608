//! The delivery probe: readiness that proves delivery, not only a PING.
//!
//! A PING on the pub/sub connection says Redis answers; it does not say
//! events still arrive (a subscription dropped after a failover, a server
//! that refuses writes while reads work). So each replica publishes a small
//! event on its own topic, `res:herald:probe:{replica}`, through the broker's
//! publish path (the history script, like backends' events) every
//! `readiness.probe_interval_ms`, and waits for it on its own subscription
//! for `readiness.probe_timeout_ms`. On Redis Cluster one such topic lives
//! on each primary (`res:herald:probe:{replica}-{n}`), so one silent shard
//! is seen too. After `readiness.probe_misses` rounds in a row with a probe
//! missing `/readyz` fails; the first full round back makes it pass again.
//! Cost: one publish per replica and Redis server per interval, whatever
//! the topics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald_shared::envelope::{PROBE_EVENT, PROBE_TOPICS};
use herald_shared::{Envelope, HistoryPolicy, Topic, now_ms};
use serde_json::value::RawValue;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::ReadinessConfig;
use crate::hub::{Hub, Subscriber};
use crate::metrics;

/// Probes kept in history: the last one, briefly (the script needs a policy).
const HISTORY: HistoryPolicy = HistoryPolicy {
    max_len: 1,
    ttl: Duration::from_secs(60),
};

/// Whether this replica's probes come back.
#[derive(Debug, Default)]
pub struct Probe {
    ok: AtomicBool,
}

impl Probe {
    /// Join this replica's probe topic and start probing until `stop`.
    pub fn start(
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
        replica_id: &str,
        config: &ReadinessConfig,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let probe = Arc::new(Self::default());
        let topic = match Topic::parse(&format!("{PROBE_TOPICS}{replica_id}")) {
            Ok(topic) => topic,
            Err(e) => {
                // Never ready rather than ready unproven.
                tracing::error!(error = %e, "no probe topic for this replica id");
                return probe;
            }
        };
        let run = Run {
            probe: Arc::clone(&probe),
            hub,
            broker,
            topic,
            replica_id: replica_id.to_owned(),
            interval: Duration::from_millis(config.probe_interval_ms),
            timeout: Duration::from_millis(config.probe_timeout_ms),
            misses: config.probe_misses,
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = run.run() => {}
            }
        });
        probe
    }

    /// Probes come back: events published now reach this replica.
    pub fn ok(&self) -> bool {
        self.ok.load(Ordering::Acquire)
    }

    fn set(&self, ok: bool) {
        if self.ok.swap(ok, Ordering::AcqRel) != ok {
            metrics::probe(ok);
            match ok {
                true => tracing::info!("delivery probes come back"),
                false => tracing::warn!("delivery probes missing: not ready"),
            }
        }
    }
}

struct Run {
    probe: Arc<Probe>,
    hub: Arc<Hub>,
    broker: Arc<dyn Broker>,
    topic: Topic,
    replica_id: String,
    interval: Duration,
    timeout: Duration,
    misses: u32,
}

impl Run {
    async fn run(self) {
        let base = &self.topic;
        // One round in flight at a time; a late probe is read and skipped.
        let sub = Subscriber::new(64);
        let mut joined: Vec<Topic> = Vec::new();
        let mut missed = 0u32;
        let mut seq = 0u64;
        let mut next = Instant::now();
        loop {
            sleep_until(next).await;
            let sent = Instant::now();
            next = sent + self.interval;
            // Held by the broker, resubscribed with the rest; the set
            // changes only when the cluster's primaries do.
            let wanted = self.broker.probe_topics(base);
            for old in joined.iter().filter(|t| !wanted.contains(t)) {
                self.hub.leave(old, &sub).await;
            }
            joined.retain(|t| wanted.contains(t));
            let mut all_joined = !wanted.is_empty();
            for topic in &wanted {
                if !joined.contains(topic) {
                    match self.hub.join_own(topic, &sub).await {
                        Ok(()) => joined.push(topic.clone()),
                        Err(_) => all_joined = false,
                    }
                }
            }
            seq += 1;
            let back = all_joined && self.round_trip(&wanted, seq, &sub, sent).await;
            if back {
                metrics::probe_round_trip(sent.elapsed().as_secs_f64());
                missed = 0;
                self.probe.set(true);
            } else {
                metrics::probe_missed();
                missed = missed.saturating_add(1);
                if missed >= self.misses {
                    self.probe.set(false);
                }
            }
        }
    }

    /// Publish probe round `seq`, one event per topic, and wait for every
    /// one of them until the timeout.
    async fn round_trip(
        &self,
        topics: &[Topic],
        seq: u64,
        sub: &Subscriber,
        sent: Instant,
    ) -> bool {
        let deadline = sent + self.timeout;
        let Ok(data) = RawValue::from_string(format!("{{\"seq\":{seq}}}")) else {
            return false;
        };
        let envelopes: Vec<Envelope> = topics
            .iter()
            .enumerate()
            .map(|(i, topic)| {
                let id = format!("probe-{}-{seq}-{i}", self.replica_id);
                Envelope::single(id, PROBE_EVENT, now_ms(), topic.clone(), data.clone())
            })
            .collect();
        let publishes = envelopes
            .iter()
            .map(|envelope| self.broker.publish(envelope, Some(&HISTORY)));
        match timeout(self.timeout, futures_util::future::join_all(publishes)).await {
            Ok(results) => {
                if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                    tracing::debug!(error = %e, "probe not published");
                    return false;
                }
            }
            Err(_) => return false,
        }
        let mut waiting: Vec<&str> = envelopes.iter().map(|e| e.id.as_str()).collect();
        let wait = async {
            loop {
                let event = sub.next().await;
                waiting.retain(|id| *id != event.envelope.id);
                if waiting.is_empty() {
                    return true;
                }
            }
        };
        timeout_at(deadline, wait).await.unwrap_or(false)
    }
}
