//! Per-topic history: how much of each topic's past Redis keeps, and the
//! one script that appends an event to its topic's stream and publishes it
//! with its offset. Every publish path that keeps history — the Rust
//! publisher, the gateway's own publishing, a backend in another language
//! following `docs/protocol.md` — runs this script, so resume and gap repair
//! see the same offsets whoever published.

use std::time::Duration;

use crate::envelope::Envelope;
use crate::keys::Keys;

/// How much of each topic's past Redis keeps, so gateways can replay it to
/// clients that resume (SSE `Last-Event-ID`) and fill gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// Entries kept per topic (approximately: trimmed with `MAXLEN ~`).
    pub max_len: u64,
    /// A topic's history is dropped this long after its last event.
    pub ttl: Duration,
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        Self {
            max_len: 1000,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// Append to a topic's history stream and publish, in one step, so every
/// published copy carries its offset. The entry field `e` holds the envelope
/// without offset; the offset is appended as the last member, like
/// [`crate::envelope::with_offset`]. Returns the offset.
///
/// KEYS: stream, channel. ARGV: envelope (without offset), max length, TTL seconds.
pub const PUBLISH_WITH_HISTORY: &str = r#"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
redis.call('PUBLISH', KEYS[2], string.sub(ARGV[1], 1, -2) .. ',"offset":"' .. id .. '"}')
return id
"#;

/// The stream entry field that holds the envelope.
pub const ENTRY_FIELD: &str = "e";

/// The KEYS and ARGV of [`PUBLISH_WITH_HISTORY`] for one envelope.
pub fn publish_call(
    keys: &Keys,
    envelope: &Envelope,
    policy: &HistoryPolicy,
) -> (Vec<String>, Vec<String>) {
    let topic = envelope.topic.as_str();
    (
        vec![keys.history(topic), keys.channel(topic)],
        vec![
            envelope.encode(),
            policy.max_len.to_string(),
            policy.ttl.as_secs().to_string(),
        ],
    )
}
