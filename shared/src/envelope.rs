//! The event as it travels through Redis: one JSON object per pub/sub message.
//!
//! ```json
//! {"v":1,"id":"0192…","type":"progress","ts":1763900000000,
//!  "topic":"user:alice","to":["user:alice","role:admin"],"data":{…}}
//! ```
//!
//! - `v`: envelope version, [`ENVELOPE_VERSION`]; a gateway drops (and counts) others.
//! - `id`: unique per event. One event published to an audience of several topics
//!   carries the same id on each topic's message.
//! - `type`: the event type the client sees (`progress`, `status_change`, …).
//!   Types starting with `herald.` are control events the gateway acts on
//!   itself and never writes to a socket as-is.
//! - `ts`: publish time in Unix milliseconds; frames that carry a timestamp use
//!   it, and the gateway measures publish-to-socket lag from it.
//! - `topic`: the topic this copy was published on.
//! - `to`: the whole audience, in the publisher's order. A connection that joined
//!   several of these topics is served the event through the first of them it
//!   joined and ignores the other copies, so it sees the event once.
//! - `offset`: the topic's history offset, when history is on.
//! - `data`: the payload, an arbitrary JSON value (an object for flat frames).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::topic::Topic;

/// The envelope version this crate reads and writes.
pub const ENVELOPE_VERSION: u32 = 1;

/// Longest event type accepted, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 64;

/// Prefix of control event types handled by the gateway itself.
pub const CONTROL_PREFIX: &str = "herald.";

/// Control event: send the connection a fresh snapshot (published by the
/// backend after access changes).
pub const CONTROL_RESYNC: &str = "herald.resync";

/// Control event: connections of the topic's user drop client-chosen
/// subscriptions matching `data.topic` (a glob) that they may no longer hold.
pub const CONTROL_REVOKE: &str = "herald.revoke";

/// Why bytes from Redis are not a usable envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("invalid envelope JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported envelope version {0} (this build reads {ENVELOPE_VERSION})")]
    Version(u32),
    #[error("invalid event type: {0}")]
    EventType(String),
}

/// One event on one topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub ts: i64,
    pub topic: Topic,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Topic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    pub data: Box<RawValue>,
}

impl Envelope {
    /// Decode and check an envelope received from Redis.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let env: Envelope = serde_json::from_slice(bytes)?;
        if env.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(env.v));
        }
        check_event_type(&env.event_type)?;
        Ok(env)
    }

    /// Encode for Redis.
    pub fn encode(&self) -> String {
        // Serialising a struct of strings, numbers and already-valid raw JSON cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The audience in order; a lone topic when the publisher sent no `to`.
    pub fn audience(&self) -> &[Topic] {
        if self.to.is_empty() {
            std::slice::from_ref(&self.topic)
        } else {
            &self.to
        }
    }

    pub fn is_control(&self) -> bool {
        self.event_type.starts_with(CONTROL_PREFIX)
    }
}

/// A history offset (`ms-seq`, a Redis stream id) as a comparable pair.
pub fn parse_offset(s: &str) -> Option<(u64, u64)> {
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Event types are short printable ASCII without quotes or backslashes, so
/// they can be copied into frames and metric-free logs verbatim.
pub fn check_event_type(t: &str) -> Result<(), EnvelopeError> {
    let ok = !t.is_empty()
        && t.len() <= MAX_EVENT_TYPE_LEN
        && t.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(EnvelopeError::EventType(t.chars().take(80).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let raw = r#"{"v":1,"id":"e1","type":"progress","ts":5,"topic":"user:a","to":["user:a","role:admin"],"data":{"x":1}}"#;
        let env = Envelope::decode(raw.as_bytes()).expect("valid");
        assert_eq!(env.audience().len(), 2);
        assert_eq!(env.data.get(), r#"{"x":1}"#);
        let again = Envelope::decode(env.encode().as_bytes()).expect("re-decodes");
        assert_eq!(again.id, "e1");
    }

    #[test]
    fn rejects_other_versions_and_types() {
        let v2 = r#"{"v":2,"id":"e","type":"t","ts":0,"topic":"user:a","data":1}"#;
        assert!(matches!(
            Envelope::decode(v2.as_bytes()),
            Err(EnvelopeError::Version(2))
        ));
        let bad = r#"{"v":1,"id":"e","type":"a\"b","ts":0,"topic":"user:a","data":1}"#;
        assert!(matches!(
            Envelope::decode(bad.as_bytes()),
            Err(EnvelopeError::EventType(_))
        ));
        assert!(Envelope::decode(b"not json").is_err());
    }
}
