//! An event as the hub hands it to local connections: decoded once, shared
//! by every connection, with one cached frame per wire shape.
//!
//! The hub knows how many shapes there are, not how they are encoded: the
//! first connection of a shape encodes the frame (see `profile::wire`) and
//! every other connection of that shape reuses the bytes.

use std::sync::OnceLock;
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
}

impl SharedEvent {
    /// An event with room for `shapes` cached frames.
    pub fn new(envelope: Envelope, shapes: usize) -> Self {
        Self {
            envelope,
            arrived: Instant::now(),
            frames: (0..shapes).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The frame of shape `shape`, encoded by `encode` on first use.
    pub fn frame(&self, shape: usize, encode: impl FnOnce(&Envelope) -> Utf8Bytes) -> Utf8Bytes {
        match self.frames.get(shape) {
            Some(cell) => cell.get_or_init(|| encode(&self.envelope)).clone(),
            None => encode(&self.envelope),
        }
    }
}
