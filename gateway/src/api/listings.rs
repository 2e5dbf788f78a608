//! What is live: this replica's topics and connections, the cluster's
//! topics as the broker sees them, every replica's report, presence, and a
//! topic's latest events.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use herald_shared::Topic;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::caller::Caller;
use super::problem::Problem;
use crate::config::Capability;
use crate::replicas::{self, ReplicaReport, TopicCount};
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub(super) struct Topics {
    replica: String,
    topics: Vec<TopicCount>,
}

/// `GET /topics`: this replica's topics and their local connections.
pub(super) async fn topics(
    State(app): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Topics>, Problem> {
    caller.require(Capability::Admin)?;
    let mut topics = replicas::topic_counts(&app);
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(Json(Topics {
        replica: app.replica_id.clone(),
        topics,
    }))
}

#[derive(Debug, Serialize)]
pub(super) struct ClusterTopic {
    topic: String,
    replicas: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct ClusterTopics {
    topics: Vec<ClusterTopic>,
}

/// `GET /cluster/topics`: topics held anywhere, with how many replicas hold
/// each (Redis `PUBSUB NUMSUB`).
pub(super) async fn cluster_topics(
    State(app): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<ClusterTopics>, Problem> {
    caller.require(Capability::Admin)?;
    let mut topics: Vec<ClusterTopic> = app
        .broker
        .cluster_topics()
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?
        .into_iter()
        .map(|(topic, replicas)| ClusterTopic { topic, replicas })
        .collect();
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(Json(ClusterTopics { topics }))
}

#[derive(Debug, Serialize)]
pub(super) struct RouteCount {
    route: String,
    connections: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct Connections {
    replica: String,
    routes: Vec<RouteCount>,
}

/// `GET /connections`: open connections per route on this replica.
pub(super) async fn connections(
    State(app): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Connections>, Problem> {
    caller.require(Capability::Admin)?;
    let routes = replicas::route_counts(&app)
        .map(|(route, connections)| RouteCount { route, connections })
        .collect();
    Ok(Json(Connections {
        replica: app.replica_id.clone(),
        routes,
    }))
}

#[derive(Debug, Serialize)]
pub(super) struct PresenceState {
    topic: String,
    key: String,
    online: bool,
    /// Live connections of the key, on every replica.
    members: u64,
}

/// `GET /presence/{topic}/{key}`: whether a presence key (an agent) is
/// online on its audience topic (`org:acme`), and with how many connections.
pub(super) async fn presence(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path((topic, key)): Path<(String, String)>,
) -> Result<Json<PresenceState>, Problem> {
    caller.require(Capability::Admin)?;
    let topic = Topic::parse(&topic).map_err(|e| Problem::invalid(format!("topic: {e}")))?;
    // Keys are rendered from topic templates, so they use the topic charset.
    let charset = |b: u8| b.is_ascii_alphanumeric() || b"._-@+=:".contains(&b);
    if key.is_empty() || key.len() > 200 || !key.bytes().all(charset) {
        return Err(Problem::invalid(
            "key: 1 to 200 of ASCII letters, digits and `._-@+=:`",
        ));
    }
    let members = app.presence.members(topic.as_str(), &key).await?;
    Ok(Json(PresenceState {
        topic: topic.to_string(),
        key,
        online: members > 0,
        members,
    }))
}

#[derive(Debug, Serialize)]
pub(super) struct Replicas {
    replicas: Vec<ReplicaReport>,
}

/// `GET /cluster/replicas`: every live replica's latest report (this one's
/// first, current), as the operator console shows them.
pub(super) async fn cluster_replicas(
    State(app): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Replicas>, Problem> {
    caller.require(Capability::Admin)?;
    let replicas = replicas::all(&app).await?;
    Ok(Json(Replicas { replicas }))
}

/// Most events `GET /history/{topic}` answers with.
const MAX_TAIL: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TailQuery {
    last: Option<usize>,
}

#[derive(Debug, Serialize)]
pub(super) struct Tail {
    topic: String,
    /// Oldest first, as stored (the envelope with its `offset`).
    events: Vec<Box<RawValue>>,
}

/// `GET /history/{topic}?last=N`: the topic's latest events from its history
/// (every replica reads the same), at most 100, oldest first.
pub(super) async fn history(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(topic): Path<String>,
    query: Result<Query<TailQuery>, QueryRejection>,
) -> Result<Json<Tail>, Problem> {
    caller.require(Capability::Admin)?;
    let topic = Topic::parse(&topic).map_err(|e| Problem::invalid(format!("topic: {e}")))?;
    let Query(query) = query.map_err(|e| Problem::invalid(e.body_text()))?;
    let last = query.last.unwrap_or(20);
    if !(1..=MAX_TAIL).contains(&last) {
        return Err(Problem::invalid(format!("last: 1 to {MAX_TAIL}")));
    }
    let events = app
        .store
        .history_last(topic.as_str(), last)
        .await?
        .into_iter()
        .filter_map(|(_, json)| RawValue::from_string(json).ok())
        .collect();
    Ok(Json(Tail {
        topic: topic.to_string(),
        events,
    }))
}
