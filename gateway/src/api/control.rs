//! Orders to live connections on every replica: resync (on the user's
//! topic), disconnect and unsubscribe (on the control topic, routed by the
//! hubs to the user's connections). Control events never enter history.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use herald_shared::envelope::{
    CONTROL_DISCONNECT, CONTROL_RESYNC, CONTROL_TOPIC, CONTROL_UNSUBSCRIBE,
};
use herald_shared::{Envelope, Topic, now_ms};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::caller::Caller;
use super::problem::Problem;
use super::read_json;
use super::records::user;
use crate::config::Capability;
use crate::state::AppState;

/// Publish a control event on `topic`.
pub(super) async fn send(
    app: &AppState,
    topic: Topic,
    event_type: &str,
    data: serde_json::Value,
) -> Result<(), Problem> {
    let data =
        RawValue::from_string(data.to_string()).map_err(|e| Problem::invalid(e.to_string()))?;
    let env = Envelope::single(
        uuid::Uuid::now_v7().to_string(),
        event_type,
        now_ms(),
        topic,
        data,
    );
    let retry = std::time::Duration::from_millis(app.config.api.publish_retry_ms);
    app.broker
        .publish_within(&env, None, retry)
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))
}

/// Every connection of the user sends a fresh snapshot.
pub(super) async fn resync(app: &AppState, user_topic: Topic) -> Result<(), Problem> {
    send(app, user_topic, CONTROL_RESYNC, serde_json::Value::Null).await
}

fn control_topic() -> Result<Topic, Problem> {
    Topic::parse(CONTROL_TOPIC).map_err(|e| Problem::unavailable(e.to_string()))
}

/// `POST /users/{sub}/resync`.
pub(super) async fn resync_user(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Capability::Publish)?;
    resync(&app, user(&sub)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /users/{sub}/disconnect`: every connection of the user, on every
/// replica and route, closes with its profile's `close.disconnect` code.
pub(super) async fn disconnect(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Capability::Admin)?;
    user(&sub)?;
    send(
        &app,
        control_topic()?,
        CONTROL_DISCONNECT,
        serde_json::json!({ "sub": sub }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnsubscribeRequest {
    /// The channel's topic (`res:channel:acme:general`).
    topic: String,
}

/// `POST /users/{sub}/unsubscribe`: the user's connections leave a
/// client-chosen channel (its grant, if any, stays: revoke removes it).
pub(super) async fn unsubscribe(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sub): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Problem> {
    caller.require(Capability::Admin)?;
    user(&sub)?;
    let req: UnsubscribeRequest = read_json(&app, body)?;
    Topic::parse(&req.topic).map_err(|e| Problem::invalid(format!("topic: {e}")))?;
    send(
        &app,
        control_topic()?,
        CONTROL_UNSUBSCRIBE,
        serde_json::json!({ "sub": sub, "topic": req.topic }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
