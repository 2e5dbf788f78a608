//! Replica reports: every [`REPORT_INTERVAL`] each replica stores what it
//! serves (readiness, broker state, connections per route, its busiest
//! topics and the presence it holds), so that any replica can show the
//! whole deployment (`GET /cluster/replicas`, the operator console) without
//! asking the others. A replica that stops reporting for [`STALE_MS`] (it
//! died) drops out of the list.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herald_shared::now_ms;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How often each replica stores its report.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// A report older than this is a dead replica's.
pub const STALE_MS: i64 = 10_000;
/// Topics and presence keys listed per replica, busiest first: a report stays
/// small however many topics a replica holds.
pub const LISTED: usize = 50;

/// What one replica says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub replica: String,
    /// When the report was made (Unix ms).
    pub at_ms: i64,
    /// Whether `/readyz` answers 200, and its text.
    pub ready: bool,
    pub readiness: String,
    /// The broker (`redis`, `memory`) and whether it is connected.
    pub broker: String,
    pub broker_ready: bool,
    /// Open connections per route (every route, zero included).
    pub routes: BTreeMap<String, u64>,
    /// Topics this replica holds.
    pub topics: u64,
    /// The busiest [`LISTED`] topics with their local subscribers.
    pub busiest_topics: Vec<TopicCount>,
    /// Presence keys held here with their local connections (at most [`LISTED`]).
    pub presence: Vec<PresenceCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicCount {
    pub topic: String,
    pub subscribers: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceCount {
    pub topic: String,
    pub key: String,
    pub connections: u64,
}

/// Open connections of each route on this replica, in profile order.
pub fn route_counts(app: &AppState) -> impl Iterator<Item = (String, u64)> + '_ {
    app.profiles
        .profiles
        .iter()
        .map(|p| (p.spec.name.clone(), p.metrics.open() as u64))
}

/// Every topic this replica holds with its local subscribers, unordered.
pub fn topic_counts(app: &AppState) -> Vec<TopicCount> {
    app.hub
        .topic_counts()
        .into_iter()
        .map(|(topic, n)| TopicCount {
            topic: topic.to_string(),
            subscribers: n as u64,
        })
        .collect()
}

impl ReplicaReport {
    /// This replica now.
    pub fn of(app: &AppState) -> Self {
        let routes = route_counts(app).collect();
        let mut topics = topic_counts(app);
        let held = topics.len() as u64;
        topics.sort_by(|a, b| {
            b.subscribers
                .cmp(&a.subscribers)
                .then(a.topic.cmp(&b.topic))
        });
        topics.truncate(LISTED);
        let mut presence: Vec<PresenceCount> = app
            .presence
            .held()
            .into_iter()
            .map(|(topic, key, n)| PresenceCount {
                topic: topic.to_string(),
                key,
                connections: n,
            })
            .collect();
        presence.sort_by(|a, b| (&a.topic, &a.key).cmp(&(&b.topic, &b.key)));
        presence.truncate(LISTED);
        let readiness = app.readiness();
        Self {
            replica: app.replica_id.clone(),
            at_ms: now_ms(),
            ready: readiness.is_ok(),
            readiness: readiness.err().unwrap_or("ready").to_owned(),
            broker: app.broker.name().to_owned(),
            broker_ready: app.broker.is_ready(),
            routes,
            topics: held,
            busiest_topics: topics,
            presence,
        }
    }
}

/// Store this replica's report every [`REPORT_INTERVAL`] until `stop`.
pub async fn report(app: Arc<AppState>, stop: CancellationToken) {
    let mut every = tokio::time::interval(REPORT_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let report = ReplicaReport::of(&app);
        let Ok(json) = serde_json::to_string(&report) else {
            continue;
        };
        if let Err(e) = app
            .store
            .put_replica_report(&report.replica, &json, report.at_ms)
            .await
        {
            // The next tick tries again; readiness already reports the outage.
            tracing::debug!(error = %e, "replica report not stored");
        }
    }
}

/// Every live replica's latest report, this one's first.
pub async fn all(app: &AppState) -> Result<Vec<ReplicaReport>, crate::store::StoreError> {
    let stored = app.store.replica_reports(now_ms(), STALE_MS).await?;
    let mut reports: Vec<ReplicaReport> = stored
        .iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .filter(|r: &ReplicaReport| r.replica != app.replica_id)
        .collect();
    // This replica's own state is current, not up to two seconds old.
    reports.insert(0, ReplicaReport::of(app));
    Ok(reports)
}
