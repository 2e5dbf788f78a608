//! The route handler: Server-Sent Events for `Accept: text/event-stream` on
//! profiles with `sse`, otherwise the WebSocket upgrade: authenticate per the route profile (from
//! the request, or from the client's first frame), then hand the socket to a
//! tracked [`Connection`] task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::extract::rejection::PathRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::ACCEPT;
use axum::response::IntoResponse;
use axum::response::Response;
use axum_extra::extract::CookieJar;
use herald_shared::Principal;
use herald_shared::profile::{AuthLocation, AuthSource};

use crate::AppState;
use crate::auth::{AuthError, RequestCredentials};
use crate::conn::{CloseReason, Connection, finish};
use crate::profile::CompiledProfile;
use crate::sse;

/// Authentication known at upgrade time, or still to be read from the socket.
enum Pending {
    Done(Result<Principal, AuthError>),
    FirstMessage(AuthSource),
}

// One argument per axum extractor: the handler is the request's whole surface.
#[allow(clippy::too_many_arguments)]
pub async fn upgrade(
    profile: Arc<CompiledProfile>,
    State(app): State<Arc<AppState>>,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    cookies: CookieJar,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
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
    {
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
    }
    let wants_sse = profile.spec.sse.is_some()
        && headers
            .get(ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"));
    if wants_sse {
        let creds = RequestCredentials {
            query: &query,
            cookies: &cookies,
            headers: &headers,
        };
        let auth = app.auth.authenticate(&profile.spec.auth, &creds).await;
        return sse::serve(app, profile, auth, path, &headers, &query, Some(ip_slot)).await;
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let creds = RequestCredentials {
        query: &query,
        cookies: &cookies,
        headers: &headers,
    };
    let first_message = profile
        .spec
        .auth
        .sources
        .iter()
        .find(|s| s.from == AuthLocation::FirstMessage);
    let pending = match (
        app.auth.authenticate(&profile.spec.auth, &creds).await,
        first_message,
    ) {
        (Err(AuthError::Missing), Some(source)) => Pending::FirstMessage(source.clone()),
        (done, _) => Pending::Done(done),
    };
    let limits = &app.config.limits;
    let ws = ws
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(0)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes);
    let resume_from = profile
        .spec
        .resume
        .as_ref()
        .and_then(|r| query.get(&r.query).cloned());
    let tracker = app.shutdown.tracker().clone();
    // Failed authentications are accepted and then closed with the profile's
    // code (and error frame): browsers see close codes, never an HTTP status.
    ws.on_upgrade(move |mut socket| {
        tracker.track_future(async move {
            let _ip_slot = ip_slot;
            let result = match pending {
                Pending::Done(result) => result,
                Pending::FirstMessage(source) => first_message_auth(&mut socket, &app, &profile, &source).await,
            };
            match result {
                Ok(principal) => Connection { app, profile, principal, path, resume_from }.serve(socket).await,
                Err(e) => {
                    profile.metrics.auth_failure(e.reason());
                    tracing::info!(route = %profile.spec.name, reason = e.reason(), "authentication failed");
                    let reason = match e {
                        AuthError::Store(_) => CloseReason::Internal,
                        e => CloseReason::Unauthorized(e.message()),
                    };
                    finish(&mut socket, &app, &profile, reason).await;
                }
            }
        })
    })
}

/// Read the credential from the client's first frame: a JSON object whose
/// string field `source.name` holds it, within `auth.first_message_timeout_ms`.
async fn first_message_auth(
    socket: &mut WebSocket,
    app: &AppState,
    profile: &CompiledProfile,
    source: &AuthSource,
) -> Result<Principal, AuthError> {
    let limit = Duration::from_millis(profile.spec.auth.first_message_timeout_ms);
    let first = tokio::time::timeout(limit, async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(text))) => return Some(text),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => return None,
            }
        }
    })
    .await;
    let Ok(Some(text)) = first else {
        return Err(AuthError::Missing);
    };
    let credential = serde_json::from_str::<serde_json::Value>(text.as_str())
        .ok()
        .and_then(|v| {
            v.get(&source.name)
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)?;
    app.auth.verify(&credential, &source.accept).await
}
