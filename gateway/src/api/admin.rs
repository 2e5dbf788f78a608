//! Snapshots, resync and what a replica holds: topics with their local
//! subscriber counts and open connections per route.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_shared::envelope::CONTROL_RESYNC;
use herald_shared::{Envelope, Topic, now_ms};
use serde::Serialize;
use serde_json::value::RawValue;

use super::caller::Caller;
use super::problem::Problem;
use super::read_json;
use crate::config::Capability;
use crate::state::AppState;

fn topic(raw: &str) -> Result<Topic, Problem> {
    Topic::parse(raw).map_err(|e| Problem::invalid(format!("topic: {e}")))
}

/// `PUT /snapshots/{topic}`: the body (any JSON) becomes the topic's snapshot.
pub(super) async fn put_snapshot(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Problem> {
    caller.require(Capability::Publish)?;
    let topic = topic(&raw)?;
    let data: Box<RawValue> = read_json(&app, body)?;
    app.store.set_snapshot(topic.as_str(), data.get()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /snapshots/{topic}`.
pub(super) async fn get_snapshot(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Response, Problem> {
    caller.require(Capability::Publish)?;
    let topic = topic(&raw)?;
    match app.store.snapshot(topic.as_str()).await? {
        Some(json) => Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response()),
        None => Err(Problem::not_found(format!(
            "no snapshot stored for {topic}"
        ))),
    }
}

/// `POST /users/{sub}/resync`: every connection of the user, on every
/// replica, sends its client a fresh snapshot.
pub(super) async fn resync(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Capability::Publish)?;
    let topic = Topic::user(&sub).map_err(|e| Problem::invalid(format!("sub: {e}")))?;
    let data =
        RawValue::from_string("null".to_owned()).map_err(|e| Problem::invalid(e.to_string()))?;
    let id = uuid::Uuid::now_v7().to_string();
    let env = Envelope::single(id, CONTROL_RESYNC, now_ms(), topic, data);
    // Control events are instructions for live connections, never history.
    app.broker
        .publish(&env, None)
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
pub(super) struct TopicCount {
    topic: String,
    subscribers: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct Topics {
    replica: String,
    topics: Vec<TopicCount>,
}

/// `GET /topics`: this replica's topics and their local subscribers.
pub(super) async fn topics(
    State(app): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Topics>, Problem> {
    caller.require(Capability::Admin)?;
    let mut topics: Vec<TopicCount> = app
        .hub
        .topic_counts()
        .into_iter()
        .map(|(topic, subscribers)| TopicCount {
            topic: topic.to_string(),
            subscribers,
        })
        .collect();
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(Json(Topics {
        replica: app.replica_id.clone(),
        topics,
    }))
}

#[derive(Debug, Serialize)]
pub(super) struct RouteCount {
    route: String,
    connections: usize,
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
            connections: p.metrics.open(),
        })
        .collect();
    Ok(Json(Connections {
        replica: app.replica_id.clone(),
        routes,
    }))
}
