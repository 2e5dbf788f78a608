//! The seam between a session and what carries its frames.
//!
//! A transport moves frames and reports what the client sent; it knows
//! nothing of topics, history, heartbeats or presence. WebSocket (`ws`) and
//! Server-Sent Events (`sse`) implement it; a new transport (HTTP streaming,
//! say) is one more implementation, served by the same session.

use std::future::Future;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use super::CloseReason;
use crate::hub::SharedEvent;
use crate::profile::CompiledProfile;

/// One frame for the client, with what a transport may want to label it by.
#[derive(Debug)]
pub struct Outbound {
    pub frame: Utf8Bytes,
    pub label: Label,
}

/// What a frame is, for transports that show more than the bytes (SSE's
/// `id:` and `event:` lines). WebSocket ignores it.
#[derive(Debug)]
pub enum Label {
    /// A frame of the gateway's own (snapshot, ping, reply).
    Plain,
    /// A published event, with the client's resume position after it when
    /// that is not the event's own history offset.
    Event(Arc<SharedEvent>, Option<String>),
    /// A frame with a name of its own (the gap frame's type).
    Named(String),
    /// The resume position alone, before any event: for transports that can
    /// tell it without a frame (an SSE block with only `id:`). Others skip it.
    Position(String),
}

impl Outbound {
    pub fn plain(frame: Utf8Bytes) -> Self {
        Self {
            frame,
            label: Label::Plain,
        }
    }
}

/// What the client sent.
#[derive(Debug)]
pub enum Inbound {
    Text(Utf8Bytes),
    /// A binary message: counted against the message budget, otherwise ignored.
    Binary,
    /// Transport-level traffic (WebSocket ping/pong): nothing to do.
    Control,
    /// The client is gone or broke the protocol.
    Closed(CloseReason),
}

pub trait Transport: Send {
    /// Whether the client can send frames (commands, pongs) on this
    /// transport. Without it the session runs no heartbeat: nobody could answer.
    const DUPLEX: bool;

    /// Write frames in order and flush once.
    fn send(
        &mut self,
        frames: Vec<Outbound>,
    ) -> impl Future<Output = Result<(), CloseReason>> + Send;

    /// The client's next message. Must be cancel-safe: the session polls it
    /// in a `select!` beside its queue and timers.
    fn recv(&mut self) -> impl Future<Output = Inbound> + Send;

    /// Tell the client why it ends (error frame, close code), as far as the
    /// transport can say it.
    fn close(
        &mut self,
        profile: &CompiledProfile,
        reason: CloseReason,
    ) -> impl Future<Output = ()> + Send;
}
