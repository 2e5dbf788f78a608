//! The resume position: one opaque, URL-safe string naming a point in every
//! topic a connection holds. It travels as the SSE `id:` and as a WebSocket
//! frame's `frame.offset_field`, and comes back on reconnect
//! (`Last-Event-ID`, `resume.query`) or in a subscribe frame
//! (`channels.position_field`).
//!
//! Two forms, both opaque to clients:
//! - a route that can only ever hold one topic uses that topic's history
//!   offset, `ms-seq`, so its event frames stay shared between sockets;
//! - any other route uses version 1: `h1` then base64url (no padding) of a
//!   varint base time in ms, then per held topic a 6-byte tag (the first
//!   bytes of the SHA-256 of the topic name), the varint time after the base
//!   and the varint sequence. At most [`MAX_TOPICS`] topics: ≤ 1.2 KB.
//!
//! A position names topics only by tag, so it can only pick among the topics
//! a connection is allowed to hold now, never name another principal's.
//! Anything that does not decode (another version, bad base64, truncated,
//! too many topics, too long) counts as no position at all.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_shared::Topic;
use herald_shared::envelope::parse_offset;
use sha2::{Digest, Sha256};

pub(crate) use herald_shared::profile::MAX_POSITION_TOPICS as MAX_TOPICS;

/// A history offset (`ms-seq`) as a comparable pair.
pub(crate) type Offset = (u64, u64);

const VERSION: &str = "h1";
const TAG_LEN: usize = 6;
/// Longest varint of a u64.
const VARINT_MAX: usize = 10;
/// Longest text a version-1 position can be; longer input is refused unread.
const MAX_TEXT: usize =
    VERSION.len() + (VARINT_MAX + MAX_TOPICS * (TAG_LEN + 2 * VARINT_MAX)).div_ceil(3) * 4;

type Tag = [u8; TAG_LEN];

fn tag(topic: &Topic) -> Tag {
    let digest = Sha256::digest(topic.as_str().as_bytes());
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&digest[..TAG_LEN]);
    out
}

/// `ms-seq`, the text form of an offset.
pub(crate) fn offset_text((ms, seq): Offset) -> String {
    format!("{ms}-{seq}")
}

#[derive(Debug, Clone)]
struct Entry {
    topic: Topic,
    tag: Tag,
    at: Offset,
}

/// Where a connection stands: per held topic, the offset of the last event
/// it was sent, or the topic's last offset when it joined.
#[derive(Debug, Default, Clone)]
pub(crate) struct Position {
    entries: Vec<Entry>,
}

impl Position {
    /// Start holding `topic` at `at` (or move it there if already held).
    pub(crate) fn hold(&mut self, topic: &Topic, at: Offset) {
        match self.entries.iter_mut().find(|e| e.topic == *topic) {
            Some(e) => e.at = at,
            None => self.entries.push(Entry {
                topic: topic.clone(),
                tag: tag(topic),
                at,
            }),
        }
    }

    /// The client was sent the event at `at` on `topic`.
    pub(crate) fn advance(&mut self, topic: &Topic, at: Offset) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.topic == *topic)
            && at > e.at
        {
            e.at = at;
        }
    }

    /// Where the connection stands in `topic`, if it holds it.
    pub(crate) fn at(&self, topic: &Topic) -> Option<Offset> {
        self.entries
            .iter()
            .find(|e| e.topic == *topic)
            .map(|e| e.at)
    }

    /// The connection no longer holds `topic`.
    pub(crate) fn release(&mut self, topic: &Topic) {
        self.entries.retain(|e| e.topic != *topic);
    }

    /// Whether the position names `topic`.
    pub(crate) fn holds(&self, topic: &Topic) -> bool {
        self.entries.iter().any(|e| e.topic == *topic)
    }

    /// Topics named.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The version-1 text of this position.
    pub(crate) fn encode(&self) -> String {
        let base = self.entries.iter().map(|e| e.at.0).min().unwrap_or(0);
        let mut bytes = Vec::with_capacity(VARINT_MAX + self.entries.len() * (TAG_LEN + 8));
        put_varint(&mut bytes, base);
        for e in &self.entries {
            bytes.extend_from_slice(&e.tag);
            put_varint(&mut bytes, e.at.0 - base);
            put_varint(&mut bytes, e.at.1);
        }
        let mut out = String::with_capacity(VERSION.len() + bytes.len().div_ceil(3) * 4);
        out.push_str(VERSION);
        URL_SAFE_NO_PAD.encode_string(&bytes, &mut out);
        out
    }
}

/// A position a client gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Given {
    /// A plain offset: it names the route's first joined topic only.
    Offset(Offset),
    /// A version-1 position.
    Tagged(Vec<(Tag, Offset)>),
}

impl Given {
    /// Decode a client's position; None for anything that is not one.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        if let Some(offset) = parse_offset(text) {
            return Some(Self::Offset(offset));
        }
        let body = text.strip_prefix(VERSION)?;
        if text.len() > MAX_TEXT {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).ok()?;
        let mut rest = bytes.as_slice();
        let base = take_varint(&mut rest)?;
        let mut entries = Vec::new();
        while !rest.is_empty() {
            if entries.len() == MAX_TOPICS || rest.len() < TAG_LEN {
                return None;
            }
            let (tag, tail) = rest.split_at(TAG_LEN);
            rest = tail;
            let ms = base.checked_add(take_varint(&mut rest)?)?;
            let seq = take_varint(&mut rest)?;
            entries.push((tag.try_into().ok()?, (ms, seq)));
        }
        Some(Self::Tagged(entries))
    }

    /// Where `topic` resumes, if this position names it. `first` says
    /// whether it is the route's first joined topic.
    pub(crate) fn of(&self, topic: &Topic, first: bool) -> Option<Offset> {
        match self {
            Self::Offset(o) => first.then_some(*o),
            Self::Tagged(entries) => {
                let want = tag(topic);
                entries.iter().find(|(t, _)| *t == want).map(|(_, o)| *o)
            }
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for (i, &b) in input.iter().enumerate().take(VARINT_MAX) {
        let bits = u64::from(b & 0x7f);
        let shift = 7 * i as u32;
        // The tenth byte may only carry the top bit of a u64.
        if shift == 63 && bits > 1 {
            return None;
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(s: &str) -> Topic {
        Topic::parse(s).expect("valid topic")
    }

    #[test]
    fn a_position_names_each_held_topic() {
        let (a, b, c) = (topic("user:alice"), topic("org:acme"), topic("role:ops"));
        let mut p = Position::default();
        p.hold(&a, (1_796_000_000_000, 0));
        p.hold(&b, (1_796_000_000_500, 3));
        p.advance(&a, (1_796_000_000_900, 1));
        p.advance(&b, (1_796_000_000_100, 0)); // behind: ignored
        let text = p.encode();
        assert!(text.starts_with("h1"), "{text}");
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe: {text}"
        );
        let given = Given::parse(&text).expect("decodes");
        assert_eq!(given.of(&a, true), Some((1_796_000_000_900, 1)));
        assert_eq!(given.of(&b, false), Some((1_796_000_000_500, 3)));
        assert_eq!(given.of(&c, false), None, "a topic it never held");
        p.release(&a);
        assert_eq!(Given::parse(&p.encode()).and_then(|g| g.of(&a, true)), None);
    }

    #[test]
    fn a_plain_offset_names_the_first_topic_only() {
        let given = Given::parse("1796033109648-7").expect("an offset");
        assert_eq!(
            given.of(&topic("res:feed:f1"), true),
            Some((1_796_033_109_648, 7))
        );
        assert_eq!(given.of(&topic("org:acme"), false), None);
    }

    #[test]
    fn anything_else_is_no_position() {
        let mut full = Position::default();
        for i in 0..MAX_TOPICS {
            full.hold(&topic(&format!("user:u{i}")), (u64::MAX, u64::MAX));
        }
        let longest = full.encode();
        assert!(longest.len() <= MAX_TEXT, "{} > {MAX_TEXT}", longest.len());
        assert!(Given::parse(&longest).is_some());
        let mut over = Position::default();
        for i in 0..=MAX_TOPICS {
            over.hold(&topic(&format!("user:u{i}")), (1, 1));
        }
        let one_more = over.encode();
        for bad in [
            "",
            "h1",
            "h2AAAA",
            "h1!!!",
            "h1AAAAAAA",                   // a tag cut short
            &longest[..longest.len() - 3], // truncated
            &one_more,                     // more topics than a position holds
            &"h1A".repeat(2000),           // too long
            "h1_____________w",            // varint overflow
            "12-",
            "-1",
        ] {
            assert_eq!(Given::parse(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn decoding_never_panics(s in "\\PC{0,300}") {
            let _ = Given::parse(&s);
            let _ = Given::parse(&format!("h1{s}"));
        }

        #[test]
        fn what_is_encoded_decodes(offsets in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..MAX_TOPICS)) {
            let mut p = Position::default();
            for (i, o) in offsets.iter().enumerate() {
                p.hold(&topic(&format!("user:u{i}")), *o);
            }
            let given = Given::parse(&p.encode()).expect("decodes");
            for (i, o) in offsets.iter().enumerate() {
                prop_assert_eq!(given.of(&topic(&format!("user:u{i}")), i == 0), Some(*o));
            }
        }
    }
}
