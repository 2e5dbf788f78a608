//! WebSocket transport: a thin adapter that moves frames between an axum
//! socket and a session, reads a first-message credential for routes that
//! take one, and closes with the route's code and error frame.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use herald_shared::Principal;
use herald_shared::profile::AuthSource;
use tokio::time::timeout;

use crate::auth::AuthError;
use crate::conn::{CloseReason, Inbound, Label, Outbound, Session, Transport};
use crate::profile::CompiledProfile;
use crate::state::AppState;

/// How long to wait for the client's close reply after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A WebSocket carrying one session.
#[derive(Debug)]
pub struct WsTransport {
    socket: WebSocket,
    /// Deadline of the final error frame.
    write_timeout: Duration,
}

impl WsTransport {
    pub fn new(socket: WebSocket, write_timeout: Duration) -> Self {
        Self {
            socket,
            write_timeout,
        }
    }

    /// Read the credential from the client's first frame: a JSON object whose
    /// string field `source.name` holds it, within `auth.first_message_timeout_ms`.
    pub async fn first_message_auth(
        &mut self,
        app: &AppState,
        profile: &CompiledProfile,
        source: &AuthSource,
    ) -> Result<Principal, AuthError> {
        let limit = Duration::from_millis(profile.spec.auth.first_message_timeout_ms);
        let first = timeout(limit, async {
            loop {
                match self.socket.recv().await {
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
        app.auth
            .verify(&credential, &source.accept, &profile.spec.auth)
            .await
    }
}

impl Transport for WsTransport {
    const DUPLEX: bool = true;

    async fn send(&mut self, mut frames: Vec<Outbound>) -> Result<(), CloseReason> {
        let io = async {
            for f in &mut frames {
                if !matches!(f.label, Label::Position(_)) {
                    let frame = std::mem::replace(&mut f.frame, Utf8Bytes::from_static(""));
                    self.socket.feed(Message::Text(frame)).await?;
                }
            }
            self.socket.flush().await
        };
        let sent = io.await.map_err(|_| CloseReason::ClientGone);
        // The events go only now that they are in the socket: the last
        // connection to let go of one ends its fan-out.
        drop(frames);
        sent
    }

    async fn recv(&mut self) -> Inbound {
        match self.socket.recv().await {
            Some(Ok(Message::Text(text))) => Inbound::Text(text),
            Some(Ok(Message::Binary(_))) => Inbound::Binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Control,
            Some(Ok(Message::Close(_))) | None => Inbound::Closed(CloseReason::ClientClosed),
            Some(Err(e)) => Inbound::Closed(CloseReason::from_socket_error(&e)),
        }
    }

    /// The route's error frame when the reason has one, then the close
    /// frame, then a short wait for the client's close reply.
    async fn close(&mut self, profile: &CompiledProfile, reason: CloseReason) {
        if let Some(frame) = reason.error().and_then(|e| profile.error_frame(e)) {
            let _ = timeout(self.write_timeout, self.socket.send(Message::Text(frame))).await;
        }
        let Some(frame) = reason.frame(&profile.spec) else {
            return;
        };
        // A client that stopped reading has no room for the close frame
        // either: give up after the write timeout and drop the socket.
        let sent = timeout(
            self.write_timeout,
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        let _ = timeout(CLOSE_GRACE, async {
            while let Some(Ok(msg)) = self.socket.recv().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Open the session of an upgraded socket: authenticate (from the request,
/// or from the first frame), then admit and join. Failed authentications
/// and refusals are closed here with the route's code and error frame
/// (browsers see close codes, never an HTTP status), and give `None`.
pub async fn open(
    mut transport: WsTransport,
    app: Arc<AppState>,
    profile: Arc<CompiledProfile>,
    auth: crate::route::PendingAuth,
    path: std::collections::HashMap<String, String>,
    resume: crate::conn::Resume,
    ip_slot: crate::limits::Slot<std::net::IpAddr>,
) -> Option<(Session, WsTransport)> {
    let result = match auth {
        crate::route::PendingAuth::Done(result) => result,
        crate::route::PendingAuth::FirstMessage(source) => {
            transport.first_message_auth(&app, &profile, &source).await
        }
    };
    let principal = match result {
        Ok(principal) => principal,
        Err(e) => {
            profile.metrics.auth_failure(e.reason());
            tracing::info!(route = %profile.spec.name, reason = e.reason(), "authentication failed");
            transport.close(&profile, CloseReason::from_auth(&e)).await;
            return None;
        }
    };
    let conn = crate::conn::Connection {
        app,
        profile: Arc::clone(&profile),
        principal,
        path,
        ip_slot,
    };
    match conn.open(resume).await {
        Ok(session) => Some((session, transport)),
        Err(reason) => {
            transport.close(&profile, reason).await;
            None
        }
    }
}
