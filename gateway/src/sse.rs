//! Server-Sent Events twin of a route (profiles with `sse`): the same
//! authentication, admission, topics and payloads as the WebSocket route,
//! one `data:` line per event with the event's history offset as `id:`, and
//! `Last-Event-ID` (or `?lastEventId=`) resumes from that offset: the history
//! after it is replayed, then live events continue without repeats.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use herald_shared::{Principal, Topic};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::auth::AuthError;
use crate::conn::{CloseReason, admit, error_frame};
use crate::hub::{Hub, Subscriber};
use crate::limits::Slot;
use crate::profile::CompiledProfile;
use crate::profile::wire::{PreparedEvent, encode_event, now_ms};
use crate::replay;

/// The HTTP status and error body for a refusal before the stream starts.
fn refuse(app: &AppState, profile: &CompiledProfile, reason: CloseReason) -> Response {
    let status = match reason {
        CloseReason::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        CloseReason::Forbidden => StatusCode::FORBIDDEN,
        CloseReason::NotFound => StatusCode::NOT_FOUND,
        CloseReason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = reason
        .error()
        .and_then(|e| error_frame(app, profile, e))
        .map(|f| f.as_str().to_owned())
        .unwrap_or_default();
    (status, [("content-type", "application/json")], body).into_response()
}

pub async fn serve(
    app: Arc<AppState>,
    profile: Arc<CompiledProfile>,
    auth: Result<Principal, AuthError>,
    path: HashMap<String, String>,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    ip_slot: Option<Slot<std::net::IpAddr>>,
) -> Response {
    let principal = match auth {
        Ok(p) => p,
        Err(e) => {
            profile.metrics.auth_failure(e.reason());
            let reason = match e {
                AuthError::Store(_) => CloseReason::Internal,
                e => CloseReason::Unauthorized(e.message()),
            };
            return refuse(&app, &profile, reason);
        }
    };
    let slot = match admit(&app, &profile, &principal, &path).await {
        Ok(slot) => slot,
        Err(reason) => return refuse(&app, &profile, reason),
    };
    let topics = match profile.join_topics(&principal, &path) {
        Ok(t) => t,
        Err(_) => {
            return refuse(
                &app,
                &profile,
                CloseReason::Unauthorized("Identity cannot be served"),
            );
        }
    };
    let (sub, rx) = Subscriber::new(app.config.limits.outbound_queue);
    for topic in &topics {
        if app.hub.join(topic, &sub).await.is_err() {
            app.hub.leave_all(&sub).await;
            return refuse(&app, &profile, CloseReason::Internal);
        }
    }
    // Subscribed first, then the history read: an event published in
    // between is in both and the live copy is skipped by offset.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query.get("lastEventId").map(String::as_str));
    let mut replay = VecDeque::new();
    let mut replayed = None;
    if let (Some(since), Some(primary)) = (resume, topics.first()) {
        let r = replay::after(&app, primary, since, true).await;
        if r.gap {
            let gap_type = profile
                .spec
                .resume
                .as_ref()
                .map_or("herald.gap", |r| r.gap_type.as_str());
            let shape = &app.profiles.shapes[profile.shape];
            let data = serde_json::json!({ "since": since }).to_string();
            let frame = encode_event(shape, gap_type, now_ms(), &data);
            replay.push_back(Event::default().event(gap_type).data(frame.as_str()));
        }
        replay.extend(r.events.iter().map(|e| render(&app, &profile, e)));
        replayed = r.up_to.map(|o| (primary.clone(), o));
    }
    profile.metrics.opened.increment(1);
    profile.metrics.connections.increment(1.0);
    let expiry = principal.exp.map(|exp| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Box::pin(sleep_until(
            Instant::now() + Duration::from_secs(exp).saturating_sub(now),
        ))
    });
    let keep_alive = profile
        .spec
        .sse
        .as_ref()
        .map_or(15_000, |s| s.keep_alive_ms);
    let state = StreamState {
        hub: Arc::clone(&app.hub),
        token: app.shutdown.token(),
        app,
        profile,
        sub,
        rx,
        replay,
        replayed,
        expiry,
        done: false,
        _slots: (slot, ip_slot),
    };
    Sse::new(events(state))
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(keep_alive)))
        .into_response()
}

fn render(app: &AppState, profile: &CompiledProfile, event: &PreparedEvent) -> Event {
    let frame = event.frame(profile.shape, &app.profiles.shapes[profile.shape]);
    let mut e = Event::default().data(frame.as_str());
    if let Some(offset) = &event.envelope.offset {
        e = e.id(offset.as_str());
    }
    e
}

struct StreamState {
    app: Arc<AppState>,
    profile: Arc<CompiledProfile>,
    hub: Arc<Hub>,
    token: CancellationToken,
    sub: Arc<Subscriber>,
    rx: mpsc::Receiver<Arc<PreparedEvent>>,
    replay: VecDeque<Event>,
    replayed: Option<(Topic, (u64, u64))>,
    expiry: Option<Pin<Box<Sleep>>>,
    done: bool,
    _slots: (Slot<String>, Option<Slot<std::net::IpAddr>>),
}

impl Drop for StreamState {
    fn drop(&mut self) {
        let (hub, sub) = (Arc::clone(&self.hub), Arc::clone(&self.sub));
        tokio::spawn(async move { hub.leave_all(&sub).await });
        self.profile.metrics.connections.decrement(1.0);
        self.profile.metrics.closed("sse_ended");
    }
}

impl StreamState {
    /// The SSE event for a live event, or None when it is skipped.
    fn live(&self, event: &PreparedEvent) -> Option<Event> {
        let env = &event.envelope;
        if env.is_control() {
            return None;
        }
        if replay::already_replayed(&self.replayed, event) {
            return None;
        }
        Some(render(&self.app, &self.profile, event))
    }
}

fn events(state: StreamState) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(e) = st.replay.pop_front() {
            return Some((Ok(e), st));
        }
        loop {
            let expired = async {
                match st.expiry.as_mut() {
                    Some(s) => s.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = st.token.cancelled() => return None,
                _ = st.sub.slow_consumer() => return None,
                _ = expired => {
                    st.done = true;
                    let frame = error_frame(&st.app, &st.profile, ("unauthorized", "Token expired"));
                    let event = Event::default().event("error").data(frame.as_ref().map_or("", |f| f.as_str()));
                    return Some((Ok(event), st));
                }
                event = st.rx.recv() => match event {
                    Some(event) => {
                        if let Some(e) = st.live(&event) {
                            return Some((Ok(e), st));
                        }
                    }
                    None => return None,
                },
            }
        }
    })
}
