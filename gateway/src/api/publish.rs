//! Publishing over HTTP: one event or a batch, through the broker's
//! `publish` (the history script `herald-publisher` runs, so offsets, resume
//! and per-topic order are the same), with optional idempotency keys.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use herald_shared::envelope::{CONTROL_PREFIX, RESERVED_TOPICS, check_event_type};
use herald_shared::{Envelope, HistoryPolicy, Topic, hash_secret, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::caller::Caller;
use super::problem::Problem;
use super::read_json;
use crate::config::Capability;
use crate::state::AppState;

/// Most topics in one event's audience.
pub(super) const MAX_AUDIENCE: usize = 100;
/// Longest idempotency key.
pub(super) const MAX_IDEMPOTENCY_KEY: usize = 256;

fn empty_object() -> Box<RawValue> {
    // `{}` is valid JSON; the fallback only satisfies the type.
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// One event to publish.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishRequest {
    /// Topics of the audience; a connection that joined several gets it once.
    to: Vec<String>,
    #[serde(rename = "type")]
    event_type: String,
    /// The payload; `{}` when absent.
    #[serde(default = "empty_object")]
    data: Box<RawValue>,
    /// A retried request with the same key is delivered once.
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchRequest {
    events: Vec<PublishRequest>,
}

/// What one publish produced.
#[derive(Debug, Serialize)]
pub(super) struct Published {
    id: String,
    /// True when the idempotency key was seen before: nothing was published
    /// and `id` is the first request's.
    duplicate: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct BatchPublished {
    results: Vec<Published>,
}

/// A request checked and ready to publish.
struct Checked {
    audience: Vec<Topic>,
    event_type: String,
    data: Box<RawValue>,
    idempotency_key: Option<String>,
}

fn check(req: PublishRequest, at: &str) -> Result<Checked, Problem> {
    let invalid = |what: String| Problem::invalid(format!("{at}{what}"));
    if req.to.is_empty() || req.to.len() > MAX_AUDIENCE {
        return Err(invalid(format!("to: between 1 and {MAX_AUDIENCE} topics")));
    }
    let audience = req
        .to
        .iter()
        .enumerate()
        .map(|(i, t)| Topic::parse(t).map_err(|e| invalid(format!("to[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(i) = audience
        .iter()
        .position(|t| t.as_str().starts_with(RESERVED_TOPICS))
    {
        return Err(invalid(format!(
            "to[{i}]: `res:herald:…` topics are reserved for the gateway"
        )));
    }
    check_event_type(&req.event_type).map_err(|e| invalid(format!("type: {e}")))?;
    if req.event_type.starts_with(CONTROL_PREFIX) {
        return Err(invalid(format!(
            "type: `{CONTROL_PREFIX}…` is reserved for the gateway's control events"
        )));
    }
    if let Some(k) = &req.idempotency_key
        && (k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY)
    {
        return Err(invalid(format!(
            "idempotency_key: 1 to {MAX_IDEMPOTENCY_KEY} bytes"
        )));
    }
    Ok(Checked {
        audience,
        event_type: req.event_type,
        data: req.data,
        idempotency_key: req.idempotency_key,
    })
}

/// Publish one checked event; with an idempotency key, at most once per key.
async fn publish_checked(app: &AppState, ev: Checked) -> Result<Published, Problem> {
    let id = uuid::Uuid::now_v7().to_string();
    let claim = ev.idempotency_key.as_deref().map(hash_secret);
    if let Some(key) = &claim
        && let Some(first) = app
            .store
            .claim_once(key, &id, app.config.api.idempotency_ttl_ms)
            .await?
    {
        return Ok(Published {
            id: first,
            duplicate: true,
        });
    }
    let policy = HistoryPolicy::default();
    let retry = Duration::from_millis(app.config.api.publish_retry_ms);
    let envelopes = Envelope::for_audience(&id, &ev.event_type, now_ms(), &ev.audience, &ev.data);
    let sent = futures_util::future::try_join_all(
        envelopes
            .iter()
            .map(|env| app.broker.publish_within(env, Some(&policy), retry)),
    )
    .await;
    if let Err(e) = sent {
        if let Some(key) = &claim {
            // Best effort: if this fails too the key expires with its TTL.
            let _ = app.store.release_claim(key, &id).await;
        }
        return Err(Problem::unavailable(e.to_string()));
    }
    Ok(Published {
        id,
        duplicate: false,
    })
}

/// `POST /publish`. The `Idempotency-Key` header stands for
/// `idempotency_key` when the body has none.
pub(super) async fn publish(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Published>, Problem> {
    caller.require(Capability::Publish)?;
    let mut req: PublishRequest = read_json(&app, body)?;
    let header = headers
        .get("idempotency-key")
        .map(|v| match v.to_str() {
            Ok(k)
                if !k.is_empty()
                    && k.len() <= MAX_IDEMPOTENCY_KEY
                    && k.bytes().all(|b| (b' '..=b'~').contains(&b)) =>
            {
                Ok(k.to_owned())
            }
            _ => Err(Problem::invalid(format!(
                "Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
            ))),
        })
        .transpose()?;
    // The body's key, when it has one, wins over the header's.
    if req.idempotency_key.is_none() {
        req.idempotency_key = header;
    }
    let ev = check(req, "")?;
    Ok(Json(publish_checked(&app, ev).await?))
}

/// `POST /publish/batch`: every event is checked before any is published;
/// then they are published in order.
pub(super) async fn publish_batch(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchPublished>, Problem> {
    caller.require(Capability::Publish)?;
    let req: BatchRequest = read_json(&app, body)?;
    let max = app.config.api.max_batch;
    if req.events.is_empty() || req.events.len() > max {
        return Err(Problem::invalid(format!(
            "events: between 1 and {max} events (api.max_batch)"
        )));
    }
    let checked = req
        .events
        .into_iter()
        .enumerate()
        .map(|(i, ev)| check(ev, &format!("events[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut results = Vec::with_capacity(checked.len());
    for ev in checked {
        results.push(publish_checked(&app, ev).await?);
    }
    Ok(Json(BatchPublished { results }))
}
