//! An event as the hub hands it to local connections: decoded once, shared
//! by every connection, with one cached frame per wire shape.
//!
//! The hub knows how many shapes there are, not how they are encoded: the
//! first connection of a shape encodes the frame (see `profile::wire`) and
//! every other connection of that shape reuses the bytes.
//!
//! It also times the fan-out: an event the hub queued to local connections
//! is dropped when the last of them has written it (or dropped it), so its
//! drop is when this replica is done with it. Every holder of the event
//! takes part without counting anything on the hot path.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use herald_shared::Envelope;

#[derive(Debug)]
pub struct SharedEvent {
    pub envelope: Envelope,
    /// When this replica took it: how long it waited in the replica is the
    /// queueing delay `limits.max_queue_delay_ms` bounds.
    pub arrived: Instant,
    frames: Box<[OnceLock<Utf8Bytes>]>,
    /// The hub queued it to at least one local connection: its drop ends a
    /// fan-out (`herald_fanout_seconds`). Events read back from history are
    /// not fan-outs.
    fanned_out: AtomicBool,
}

impl SharedEvent {
    /// An event with room for `shapes` cached frames.
    pub fn new(envelope: Envelope, shapes: usize) -> Self {
        Self {
            envelope,
            arrived: Instant::now(),
            frames: (0..shapes).map(|_| OnceLock::new()).collect(),
            fanned_out: AtomicBool::new(false),
        }
    }

    /// The hub queued this event to local connections: time its fan-out.
    pub(super) fn fan_out(&self) {
        self.fanned_out.store(true, Ordering::Relaxed);
    }

    /// The frame of shape `shape`, encoded by `encode` on first use.
    pub fn frame(&self, shape: usize, encode: impl FnOnce(&Envelope) -> Utf8Bytes) -> Utf8Bytes {
        match self.frames.get(shape) {
            Some(cell) => cell.get_or_init(|| encode(&self.envelope)).clone(),
            None => encode(&self.envelope),
        }
    }
}

impl Drop for SharedEvent {
    fn drop(&mut self) {
        if *self.fanned_out.get_mut() {
            crate::metrics::fanout(self.arrived.elapsed());
        }
    }
}
