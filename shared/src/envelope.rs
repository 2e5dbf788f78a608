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
//!
//! This module is the one owner of that byte layout: building envelopes for
//! an audience, the clock their `ts` comes from, and the raw-bytes helpers
//! the gateway's hot path uses instead of parsing ([`id_of`], [`offset_of`],
//! [`with_offset`]). The history script in [`crate::history`] appends the
//! offset the same way [`with_offset`] does.

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

/// Control event on [`CONTROL_TOPIC`]: every connection of the user
/// `data.sub`, on every replica, closes (the profile's `close.disconnect`).
pub const CONTROL_DISCONNECT: &str = "herald.disconnect";

/// Control event on [`CONTROL_TOPIC`]: connections of the user `data.sub`
/// leave the client-chosen channel topic `data.topic`.
pub const CONTROL_UNSUBSCRIBE: &str = "herald.unsubscribe";

/// The topic every replica listens to for orders addressed to a user
/// wherever they are connected; never joined by connections.
pub const CONTROL_TOPIC: &str = "res:herald:control";

/// Prefix of the topics the gateway owns: never joined by connections,
/// never published to by backends.
pub const RESERVED_TOPICS: &str = "res:herald:";

/// Prefix of each replica's delivery-probe topic (`res:herald:probe:{replica}`):
/// the replica publishes to it and expects its own event back.
pub const PROBE_TOPICS: &str = "res:herald:probe:";

/// Event type of delivery probes.
pub const PROBE_EVENT: &str = "herald.probe";

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
    /// One event for each topic of an audience, sharing `id`, `ts` and
    /// `data`. `to` is written only when the audience has several topics.
    pub fn for_audience(
        id: &str,
        event_type: &str,
        ts: i64,
        audience: &[Topic],
        data: &RawValue,
    ) -> Vec<Self> {
        let to = if audience.len() > 1 {
            audience.to_vec()
        } else {
            Vec::new()
        };
        audience
            .iter()
            .map(|topic| Self {
                v: ENVELOPE_VERSION,
                id: id.to_owned(),
                event_type: event_type.to_owned(),
                ts,
                topic: topic.clone(),
                to: to.clone(),
                offset: None,
                data: data.to_owned(),
            })
            .collect()
    }

    /// One event on one topic, without audience or offset.
    pub fn single(
        id: String,
        event_type: &str,
        ts: i64,
        topic: Topic,
        data: Box<RawValue>,
    ) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            id,
            event_type: event_type.to_owned(),
            ts,
            topic,
            to: Vec::new(),
            offset: None,
            data,
        }
    }

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

/// Wall-clock Unix milliseconds: the `ts` of every envelope.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The envelope's `"id"` from raw bytes, without parsing the message:
/// [`Envelope::encode`] writes it second, after `"v"`.
pub fn id_of(payload: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"id\":\"";
    let head = &payload[..payload.len().min(96)];
    let start = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let end = start + head[start..].iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&head[start..end]).ok()
}

/// The `"offset"` from raw bytes, without parsing the message: it is the
/// envelope's last member, appended by [`with_offset`] (or the history
/// script), so it must end the message. A payload whose own last member is
/// an `"offset"` is followed by its closing brace and is not mistaken for it.
pub fn offset_of(payload: &[u8]) -> Option<(u64, u64)> {
    const KEY: &[u8] = b"\"offset\":\"";
    let tail = &payload[payload.len().saturating_sub(64)..];
    let start = tail.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let end = start + tail[start..].iter().position(|b| *b == b'"')?;
    if tail[end + 1..].trim_ascii() != b"}" {
        return None;
    }
    parse_offset(std::str::from_utf8(&tail[start..end]).ok()?)
}

/// An encoded envelope without offset, with `offset` appended as its last
/// member, exactly as the history script does it on publish. None when the
/// text is not a JSON object.
pub fn with_offset(encoded: &str, offset: &str) -> Option<String> {
    let body = encoded.trim_end().strip_suffix('}')?;
    Some(format!("{body},\"offset\":\"{offset}\"}}"))
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
    fn raw_helpers_agree_with_encode() {
        let data = RawValue::from_string(r#"{"offset":"9-9","id":"no"}"#.to_owned()).expect("raw");
        let topics = [
            Topic::parse("user:a").expect("topic"),
            Topic::parse("role:b").expect("topic"),
        ];
        let envs = Envelope::for_audience("e-7", "t", 5, &topics, &data);
        assert_eq!(envs.len(), 2);
        assert_eq!(envs[1].audience(), &topics);
        let encoded = envs[0].encode();
        assert_eq!(id_of(encoded.as_bytes()), Some("e-7"));
        assert_eq!(
            offset_of(encoded.as_bytes()),
            None,
            "the payload's offset is not the envelope's"
        );
        let spliced = with_offset(&encoded, "1700000000000-3").expect("object");
        assert_eq!(offset_of(spliced.as_bytes()), Some((1_700_000_000_000, 3)));
        let back = Envelope::decode(spliced.as_bytes()).expect("valid");
        assert_eq!(back.offset.as_deref(), Some("1700000000000-3"));
        assert_eq!(back.data.get(), data.get());
        assert_eq!(with_offset("[1]", "1-1"), None);
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
