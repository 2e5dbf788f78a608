//! Server-Sent Events transport (profiles with `sse`): a thin adapter that
//! serves a session as a `text/event-stream` response. Every event carries
//! the client's resume position as `id:` (and the stream opens with a bare
//! `id:` block), so `Last-Event-ID` resumes; gap frames are
//! named events; keep-alive comments hold idle streams open. Refusals before
//! the stream starts are HTTP statuses with the route's error frame as body;
//! an error during the stream is a final `event: error`.
//!
//! The session runs in its own task and hands events to the response body
//! through a small bounded channel, so a client that stops reading hits the
//! session's write deadline exactly like a stalled WebSocket.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use herald_shared::Principal;
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::auth::AuthError;
use crate::conn::{CloseReason, Connection, Inbound, Label, Outbound, Resume, Transport};
use crate::limits::Slot;
use crate::profile::CompiledProfile;
use crate::state::AppState;

/// Events buffered between the session and the response body.
const BUFFER: usize = 64;

/// The stream side of one SSE response.
#[derive(Debug)]
pub struct SseTransport {
    tx: mpsc::Sender<Event>,
    /// Deadline of the final error event.
    write_timeout: Duration,
}

impl Transport for SseTransport {
    const DUPLEX: bool = false;

    async fn send(&mut self, frames: Vec<Outbound>) -> Result<(), CloseReason> {
        for out in frames {
            let event = match &out.label {
                // No data: the browser keeps the id without firing an event.
                Label::Position(position) => Event::default().id(position.as_str()),
                Label::Plain => Event::default().data(out.frame.as_str()),
                Label::Event(e, position) => {
                    let event = Event::default().data(out.frame.as_str());
                    match position.as_deref().or(e.envelope.offset.as_deref()) {
                        Some(id) => event.id(id),
                        None => event,
                    }
                }
                Label::Named(name) => Event::default()
                    .data(out.frame.as_str())
                    .event(name.as_str()),
            };
            self.tx
                .send(event)
                .await
                .map_err(|_| CloseReason::ClientGone)?;
        }
        Ok(())
    }

    /// SSE has no way back: the only news from the client is that it left
    /// (the response body, and with it the receiver, was dropped).
    async fn recv(&mut self) -> Inbound {
        self.tx.closed().await;
        Inbound::Closed(CloseReason::ClientGone)
    }

    async fn close(&mut self, profile: &CompiledProfile, reason: CloseReason) {
        if let Some(frame) = reason.error().and_then(|e| profile.error_frame(e)) {
            let event = Event::default().event("error").data(frame.as_str());
            let _ = timeout(self.write_timeout, self.tx.send(event)).await;
        }
    }
}

/// The HTTP status and error body for a refusal before the stream starts.
fn refuse(profile: &CompiledProfile, reason: CloseReason) -> Response {
    let status = match reason {
        CloseReason::MissingCredential | CloseReason::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        CloseReason::Forbidden => StatusCode::FORBIDDEN,
        CloseReason::NotFound => StatusCode::NOT_FOUND,
        CloseReason::Conflict(_) => StatusCode::CONFLICT,
        CloseReason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = reason
        .error()
        .and_then(|e| profile.error_frame(e))
        .map(|f| f.as_str().to_owned())
        .unwrap_or_default();
    (status, [("content-type", "application/json")], body).into_response()
}

/// Open the session (or refuse with an HTTP status), then stream it.
pub async fn serve(
    app: Arc<AppState>,
    profile: Arc<CompiledProfile>,
    auth: Result<Principal, AuthError>,
    path: HashMap<String, String>,
    resume: Resume,
    ip_slot: Slot<std::net::IpAddr>,
) -> Response {
    let principal = match auth {
        Ok(p) => p,
        Err(e) => {
            profile.metrics.auth_failure(e.reason());
            return refuse(&profile, CloseReason::from_auth(&e));
        }
    };
    let conn = Connection {
        app: Arc::clone(&app),
        profile: Arc::clone(&profile),
        principal,
        path,
        ip_slot,
    };
    let session = match conn.open(resume).await {
        Ok(session) => session,
        Err(reason) => return refuse(&profile, reason),
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    let transport = SseTransport {
        tx,
        write_timeout: Duration::from_millis(app.config.limits.write_timeout_ms),
    };
    app.shutdown.tracker().spawn(session.serve(transport));
    let keep_alive = profile
        .spec
        .sse
        .as_ref()
        .map_or(15_000, |s| s.keep_alive_ms);
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(keep_alive)))
        .into_response()
}
