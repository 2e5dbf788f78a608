//! The route handler of every profile: address caps from [`limits`],
//! the `Origin` check for cookie credentials, authentication per the route
//! profile, then the transport the client asked for: Server-Sent Events for
//! `Accept: text/event-stream` on profiles with `sse`, otherwise the
//! WebSocket upgrade. Both serve the same session.
//!
//! [`limits`]: crate::limits

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::extract::rejection::PathRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::ACCEPT;
use axum::response::IntoResponse;
use axum::response::Response;
use axum_extra::extract::CookieJar;
use herald_shared::Principal;
use herald_shared::profile::{AuthLocation, AuthSource};

use crate::auth::{AuthError, RequestCredentials};
use crate::conn::Resume;
use crate::profile::CompiledProfile;
use crate::state::AppState;
use crate::ws::WsTransport;
use crate::{sse, ws};

/// Authentication known at upgrade time, or still to be read from the socket.
#[derive(Debug)]
pub enum PendingAuth {
    Done(Result<Principal, AuthError>),
    FirstMessage(AuthSource),
}

// One argument per axum extractor: the handler is the request's whole surface.
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    profile: Arc<CompiledProfile>,
    State(app): State<Arc<AppState>>,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    cookies: CookieJar,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let path = path.map(|Path(p)| p).unwrap_or_default();
    // Before any handshake work, so a connection storm from one address is cheap to refuse.
    if !app.limits.connect_allowed(peer.ip()) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "connecting too fast from this address",
        )
            .into_response();
    }
    let Some(ip_slot) = app.limits.ip(peer.ip()) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address",
        )
            .into_response();
    };
    let creds = RequestCredentials {
        query: &query,
        cookies: &cookies,
        headers: &headers,
    };
    if creds.decisive_source(&profile.spec.auth) == Some(AuthLocation::Cookie)
        && !creds.origin_allowed(&profile.spec.auth.allowed_origins)
    {
        profile.metrics.auth_failure("origin");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let wants_sse = profile.spec.sse.is_some()
        && headers
            .get(ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"));
    if wants_sse {
        // EventSource resumes with `Last-Event-ID` (or `?lastEventId=` where
        // a header cannot be set) and starts live otherwise.
        let resume = Resume {
            from: headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .or_else(|| query.get("lastEventId").map(String::as_str))
                .map(str::to_owned),
            latest_on_join: false,
            positions: true,
            announce: true,
        };
        let auth = app.auth.authenticate(&profile.spec.auth, &creds).await;
        return sse::serve(app, profile, auth, path, resume, ip_slot).await;
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let auth = app.auth.authenticate(&profile.spec.auth, &creds).await;
    let first_message = profile
        .spec
        .auth
        .sources
        .iter()
        .find(|s| s.from == AuthLocation::FirstMessage);
    let pending = match (auth, first_message) {
        (Err(AuthError::Missing), Some(source)) => PendingAuth::FirstMessage(source.clone()),
        (done, _) => PendingAuth::Done(done),
    };
    let limits = &app.config.limits;
    let upgrade = upgrade
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(limits.write_coalesce_bytes)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes);
    let resume = Resume {
        from: profile
            .spec
            .resume
            .as_ref()
            .and_then(|r| query.get(&r.query).cloned()),
        latest_on_join: true,
        positions: profile.spec.websocket_positions(),
        announce: false,
    };
    let write_timeout = Duration::from_millis(limits.write_timeout_ms);
    let tracker = app.shutdown.tracker().clone();
    upgrade.on_upgrade(move |socket| {
        let sessions = tracker.clone();
        tracker.track_future(async move {
            let transport = WsTransport::new(socket, write_timeout);
            let opened = ws::open(transport, app, profile, pending, path, resume, ip_slot);
            let Some((session, transport)) = opened.await else {
                return;
            };
            // The session gets a task of its own holding only itself and its
            // socket, so the upgrade's task (axum's, with the handshake's
            // state and every argument above) is freed: an idle connection
            // costs only what serving it needs.
            sessions.spawn(session.serve(transport));
        })
    })
}
