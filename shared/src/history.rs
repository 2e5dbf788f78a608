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

/// The one text of the history script, with the publish command it uses.
macro_rules! publish_with_history {
    ($publish:literal) => {
        concat!(
            r#"
if ARGV[4] then
  local needle = '"id":"' .. ARGV[4] .. '"'
  for _, entry in ipairs(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 100)) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'e' then
        -- The envelope's own id leads it ({"v":1,"id":…); an id inside
        -- the payload further on is not this event.
        local at = string.find(fields[i + 1], needle, 1, true)
        if at and at <= 16 then return entry[1] end
      end
    end
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
redis.call('"#,
            $publish,
            r#"', KEYS[2], string.sub(ARGV[1], 1, -2) .. ',"offset":"' .. id .. '"}')
return id
"#
        )
    };
}

/// Append to a topic's history stream and publish, in one step, so every
/// published copy carries its offset. The entry field `e` holds the envelope
/// without offset; the offset is appended as the last member, like
/// [`crate::envelope::with_offset`]. Returns the offset.
///
/// A retry passes the event id as ARGV[4]: when one of the topic's last
/// [`RETRY_LOOKBACK`] entries already holds that event (the first attempt
/// reached Redis but its reply was lost), the script returns that entry's
/// offset and neither appends nor publishes again.
///
/// KEYS: stream, channel. ARGV: envelope (without offset), max length, TTL
/// seconds, and on a retry the event id.
pub const PUBLISH_WITH_HISTORY: &str = publish_with_history!("PUBLISH");

/// [`PUBLISH_WITH_HISTORY`] for Redis Cluster: `SPUBLISH`, so the event
/// stays inside the shard that owns the topic's slot (the stream and the
/// channel share the `{topic}` hash tag) instead of crossing the cluster bus.
pub const SPUBLISH_WITH_HISTORY: &str = publish_with_history!("SPUBLISH");

/// The history script for plain or sharded pub/sub.
pub fn publish_script(sharded: bool) -> &'static str {
    match sharded {
        true => SPUBLISH_WITH_HISTORY,
        false => PUBLISH_WITH_HISTORY,
    }
}

/// History entries a retried publish searches for its first attempt.
pub const RETRY_LOOKBACK: usize = 100;

/// The stream entry field that holds the envelope.
pub const ENTRY_FIELD: &str = "e";

/// Whether a call of [`PUBLISH_WITH_HISTORY`] is a first attempt or a retry
/// that must not store the event twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    First,
    Retry,
}

/// The KEYS and ARGV of [`PUBLISH_WITH_HISTORY`] for one envelope.
pub fn publish_call(
    keys: &Keys,
    envelope: &Envelope,
    policy: &HistoryPolicy,
    attempt: Attempt,
) -> (Vec<String>, Vec<String>) {
    let topic = envelope.topic.as_str();
    let mut args = vec![
        envelope.encode(),
        policy.max_len.to_string(),
        policy.ttl.as_secs().to_string(),
    ];
    if attempt == Attempt::Retry {
        args.push(envelope.id.clone());
    }
    (vec![keys.history(topic), keys.channel(topic)], args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookback_in_the_script_is_the_documented_one() {
        assert!(PUBLISH_WITH_HISTORY.contains(&format!("'COUNT', {RETRY_LOOKBACK})")));
    }
}
