//! What is live: this replica's topics and connections, the cluster's
//! topics as the broker sees them, and presence.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use herald_shared::Topic;
use serde::Serialize;

use super::caller::Caller;
use super::problem::Problem;
use crate::config::Capability;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub(super) struct TopicCount {
    topic: String,
    subscribers: u64,
}

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
    let mut topics: Vec<TopicCount> = app
        .hub
        .topic_counts()
        .into_iter()
        .map(|(topic, n)| TopicCount {
            topic: topic.to_string(),
            subscribers: n as u64,
        })
        .collect();
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
    let routes = app
        .profiles
        .profiles
        .iter()
        .map(|p| RouteCount {
            route: p.spec.name.clone(),
            connections: p.metrics.open() as u64,
        })
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
