//! Why a connection ended, and what the client is told.

use axum::extract::ws::{CloseFrame, close_code};
use herald_shared::profile::RouteProfile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close frame or disconnected.
    ClientClosed,
    /// The socket failed under us.
    ClientGone,
    /// A client message over `limits.max_message_bytes`.
    TooLarge,
    /// A text message that is not UTF-8.
    InvalidData,
    /// A frame that breaks the WebSocket protocol.
    ProtocolError,
    /// More client messages than `limits.client_messages_per_second` allows.
    Flood,
    /// The client stopped answering heartbeats.
    HeartbeatTimeout,
    /// The client's queue overflowed (see the hub's slow-consumer policy).
    SlowConsumer,
    /// The backend disconnected the user (`herald.disconnect`).
    Disconnected,
    /// A write did not finish within `limits.write_timeout_ms`.
    WriteTimeout,
    /// The replica is shutting down.
    Shutdown,
    /// No credential in any place the route accepts one (its close reason
    /// can differ: `auth.missing_reason`).
    MissingCredential,
    /// A credential that is invalid, expired at connect, or expired during
    /// the stream. The text is the error frame's message.
    Unauthorized(&'static str),
    /// The profile's exclusive key (a `client_id`) is held by another live
    /// connection, or is not a usable key.
    Conflict(&'static str),
    /// The path's resource was never registered by the backend.
    NotFound,
    /// The principal may not see the path's resource.
    Forbidden,
    /// Too many connections for this principal (`limits.connections_per_principal`).
    RateLimited,
    /// The broker or store failed.
    Internal,
}

/// Close code of `rate_limited` refusals.
pub const RATE_LIMITED_CLOSE: u16 = 4429;

impl CloseReason {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ClientGone => "client_gone",
            Self::TooLarge => "too_large",
            Self::InvalidData => "invalid_data",
            Self::ProtocolError => "protocol_error",
            Self::Flood => "flood",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::Disconnected => "disconnected",
            Self::WriteTimeout => "write_timeout",
            Self::Shutdown => "shutdown",
            Self::MissingCredential | Self::Unauthorized(_) => "unauthorized",
            Self::Conflict(_) => "conflict",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal_error",
        }
    }

    /// The close frame to send; none when the socket is already gone.
    pub fn frame(self, profile: &RouteProfile) -> Option<CloseFrame> {
        let (code, reason) = match self {
            Self::ClientClosed | Self::ClientGone | Self::WriteTimeout => return None,
            Self::TooLarge => (close_code::SIZE, "message too large"),
            Self::InvalidData => (close_code::INVALID, "invalid UTF-8"),
            Self::ProtocolError => (close_code::PROTOCOL, "protocol error"),
            Self::Flood => (close_code::POLICY, "message rate exceeded"),
            Self::HeartbeatTimeout => match &profile.heartbeat {
                Some(hb) => (hb.close_code, hb.close_reason.as_str()),
                None => (close_code::AWAY, "heartbeat timeout"),
            },
            Self::SlowConsumer => (profile.close.slow_consumer, "slow consumer"),
            Self::Disconnected => (profile.close.disconnect, "disconnected by the server"),
            Self::Shutdown => (profile.close.shutdown, "server shutting down"),
            Self::MissingCredential => (
                profile.auth.failure_close_code,
                profile
                    .auth
                    .missing_reason
                    .as_deref()
                    .unwrap_or(&profile.auth.failure_reason),
            ),
            Self::Unauthorized(_) => (
                profile.auth.failure_close_code,
                profile.auth.failure_reason.as_str(),
            ),
            Self::Conflict(message) => (
                profile.exclusive.as_ref().map_or(4409, |e| e.close_code),
                message,
            ),
            Self::NotFound => (
                profile
                    .resource
                    .as_ref()
                    .map_or(4404, |r| r.not_found_close),
                "not found",
            ),
            Self::Forbidden => (
                profile
                    .resource
                    .as_ref()
                    .map_or(4403, |r| r.forbidden_close),
                "forbidden",
            ),
            Self::RateLimited => (RATE_LIMITED_CLOSE, "too many connections"),
            Self::Internal => (profile.close.internal_error, "internal error"),
        };
        Some(CloseFrame {
            code,
            reason: truncate(reason).into(),
        })
    }

    /// The error frame's code and message for reasons the client should be
    /// told about (profiles with `errors`), as Stella Ops documents them.
    pub fn error(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::MissingCredential => {
                Some(("unauthorized", crate::auth::AuthError::Missing.message()))
            }
            Self::Unauthorized(message) => Some(("unauthorized", message)),
            Self::Conflict(message) => Some(("conflict", message)),
            Self::NotFound => Some(("not_found", "Resource not found")),
            Self::Forbidden => Some(("forbidden", "No access to resource")),
            Self::RateLimited => Some(("rate_limited", "Too many connections")),
            Self::Flood => Some(("rate_limited", "Too many messages")),
            Self::Internal => Some(("internal_error", "Server error")),
            _ => None,
        }
    }

    /// A failed authentication: unauthorized, unless the store failed.
    pub fn from_auth(e: &crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Store(_) => Self::Internal,
            crate::auth::AuthError::Missing => Self::MissingCredential,
            e => Self::Unauthorized(e.message()),
        }
    }

    pub fn from_socket_error(e: &axum::Error) -> Self {
        // axum wraps tungstenite's error; its message is the only stable handle.
        let text = e.to_string();
        if text.contains("Space limit exceeded") || text.contains("Message too long") {
            Self::TooLarge
        } else if text.contains("UTF-8") {
            Self::InvalidData
        } else if text.contains("protocol error") {
            Self::ProtocolError
        } else {
            Self::ClientGone
        }
    }
}

/// Close reasons are limited to 123 bytes by the protocol.
fn truncate(s: &str) -> &str {
    let mut end = s.len().min(123);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
