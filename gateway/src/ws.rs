//! The WebSocket upgrade handler: authenticate per the route profile, then
//! hand the socket to a tracked [`Connection`] task.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::ws::{CloseFrame, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum_extra::extract::CookieJar;

use crate::AppState;
use crate::auth::RequestCredentials;
use crate::conn::{Connection, close};
use crate::profile::CompiledProfile;

pub async fn upgrade(
    profile: Arc<CompiledProfile>,
    State(app): State<Arc<AppState>>,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
    cookies: CookieJar,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let path = path.map(|Path(p)| p).unwrap_or_default();
    let creds = RequestCredentials {
        query: &query,
        cookies: &cookies,
        headers: &headers,
    };
    let auth = app.auth.authenticate(&profile.spec.auth, &creds).await;
    let limits = &app.config.limits;
    let ws = ws
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(0)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes);
    let tracker = app.shutdown.tracker().clone();
    match auth {
        Ok(principal) => ws.on_upgrade(move |socket| {
            let conn = Connection {
                app,
                profile,
                principal,
                path,
            };
            tracker.track_future(conn.serve(socket))
        }),
        Err(e) => {
            profile.metrics.auth_failure(e.reason());
            tracing::info!(route = %profile.spec.name, reason = e.reason(), "authentication failed");
            // Accept, then close with the profile's code: a browser sees a
            // close code but never an HTTP status on a failed upgrade.
            let frame = CloseFrame {
                code: profile.spec.auth.failure_close_code,
                reason: profile.spec.auth.failure_reason.clone().into(),
            };
            ws.on_upgrade(move |mut socket| {
                tracker.track_future(async move { close(&mut socket, Some(frame)).await })
            })
        }
    }
}
