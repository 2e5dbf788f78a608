//! What the gateway reads on connect, written by backends: snapshots,
//! resources, end-user credentials and grants. The same keys
//! `herald-publisher` writes, through the store seam.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_shared::envelope::CONTROL_REVOKE;
use herald_shared::{Principal, Topic, hash_secret};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::caller::Caller;
use super::problem::Problem;
use super::{control, read_json};
use crate::config::Capability;
use crate::state::AppState;
use crate::store::Credential;

/// Longest credential lifetime accepted (about 300 years).
const MAX_TTL_MS: u64 = 10_000_000_000_000;

fn topic(raw: &str) -> Result<Topic, Problem> {
    Topic::parse(raw).map_err(|e| Problem::invalid(format!("topic: {e}")))
}

/// A user's `sub` as the topic `user:{sub}` accepts it.
pub(super) fn user(sub: &str) -> Result<Topic, Problem> {
    Topic::user(sub).map_err(|e| Problem::invalid(format!("sub: {e}")))
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

/// `PUT /resources/{topic}`: register a resource (a route with `resource`
/// serves it from now on).
pub(super) async fn register_resource(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Capability::Publish)?;
    app.store.set_resource(topic(&raw)?.as_str(), true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /resources/{topic}`.
pub(super) async fn unregister_resource(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Capability::Publish)?;
    app.store.set_resource(topic(&raw)?.as_str(), false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An end-user credential to store: the secret itself (only its SHA-256 is
/// kept) and the principal it authenticates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCredential {
    secret: String,
    sub: String,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// Topic globs the principal may subscribe to by itself.
    #[serde(default)]
    topics: Vec<String>,
    /// Lifetime; API keys default to none, sessions to one day.
    #[serde(default, deserialize_with = "whole_number")]
    ttl_ms: Option<u64>,
}

/// A non-negative whole number, also written as `3.0` (JSON does not tell
/// integers from floats); null is absent.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1e19 => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is not a whole number of milliseconds"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretOnly {
    secret: String,
}

fn credential_kind(kind: &str) -> Result<Credential, Problem> {
    match kind {
        "api-keys" => Ok(Credential::ApiKey),
        "sessions" => Ok(Credential::Session),
        _ => Err(Problem::not_found(format!(
            "no credential kind `{kind}` (api-keys, sessions)"
        ))),
    }
}

/// `POST /credentials/{kind}`: add an end-user API key or session.
pub(super) async fn add_credential(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(kind): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Problem> {
    caller.require(Capability::Admin)?;
    let kind = credential_kind(&kind)?;
    let new: NewCredential = read_json(&app, body)?;
    if new.secret.is_empty() {
        return Err(Problem::invalid("secret: must not be empty"));
    }
    user(&new.sub)?;
    if new.ttl_ms.is_some_and(|t| t == 0 || t > MAX_TTL_MS) {
        return Err(Problem::invalid(format!(
            "ttl_ms: between 1 and {MAX_TTL_MS}"
        )));
    }
    let ttl = match kind {
        Credential::ApiKey => new.ttl_ms,
        Credential::Session => Some(new.ttl_ms.unwrap_or(86_400_000)),
    };
    for (i, t) in new.topics.iter().enumerate() {
        glob(t).map_err(|_| Problem::invalid(format!("topics[{i}]: not a topic glob")))?;
    }
    let mut principal = Principal::new(new.sub);
    principal.org = new.org;
    principal.roles = new.roles;
    principal.topics = new.topics;
    app.store
        .put_credential(kind, &hash_secret(&new.secret), &principal, ttl)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /credentials/{kind}/remove`: the credential stops working for new
/// connections (open ones are ended with `disconnect`).
pub(super) async fn remove_credential(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(kind): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Problem> {
    caller.require(Capability::Admin)?;
    let kind = credential_kind(&kind)?;
    let gone: SecretOnly = read_json(&app, body)?;
    app.store
        .remove_credential(kind, &hash_secret(&gone.secret))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantRequest {
    /// A topic glob (`res:channel:acme:*`).
    topic: String,
}

#[derive(Debug, Serialize)]
pub(super) struct Grants {
    grants: Vec<String>,
}

fn glob(raw: &str) -> Result<(), Problem> {
    // A glob is a topic where `*` may stand anywhere.
    Topic::parse(&raw.replace('*', "x"))
        .map(drop)
        .map_err(|e| Problem::invalid(format!("topic: {e}")))
}

/// `POST /users/{sub}/grants`: the user may subscribe to channels matching
/// the glob; their connections get a fresh snapshot.
pub(super) async fn grant(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sub): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Problem> {
    change_grant(&app, caller, &sub, body, true).await
}

/// `POST /users/{sub}/revoke`: remove a grant; live connections drop the
/// channels it covered (unless something else allows them) and re-sync.
pub(super) async fn revoke(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sub): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Problem> {
    change_grant(&app, caller, &sub, body, false).await
}

/// Store or remove a grant, then tell the user's connections (what
/// `Publisher::grant` / `revoke` do).
async fn change_grant(
    app: &AppState,
    caller: Caller,
    sub: &str,
    body: Result<Bytes, BytesRejection>,
    granted: bool,
) -> Result<StatusCode, Problem> {
    caller.require(Capability::Admin)?;
    let topic = user(sub)?;
    let req: GrantRequest = read_json(app, body)?;
    glob(&req.topic)?;
    app.store.set_grant(sub, &req.topic, granted).await?;
    if !granted {
        let data = serde_json::json!({ "topic": req.topic });
        control::send(app, topic.clone(), CONTROL_REVOKE, data).await?;
    }
    control::resync(app, topic).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /users/{sub}/grants`.
pub(super) async fn grants(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<Json<Grants>, Problem> {
    caller.require(Capability::Admin)?;
    user(&sub)?;
    let mut grants = app.store.grants(&sub).await?;
    grants.sort();
    Ok(Json(Grants { grants }))
}
