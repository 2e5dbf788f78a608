//! Topic history in process memory, for embedded mode: what Redis streams
//! hold for the Redis backends. The memory broker appends (and delivers
//! under the same lock, so delivery order is offset order); the memory store
//! reads it for resume and replay. Offsets are `ms-seq` like stream ids.
//! Each topic keeps `max_len` entries for `ttl` after its last event.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use herald_shared::HistoryPolicy;
use herald_shared::envelope::parse_offset;
use parking_lot::{Mutex, MutexGuard};

#[derive(Debug)]
struct Entry {
    offset: (u64, u64),
    /// The envelope without its offset.
    envelope: String,
}

#[derive(Debug)]
struct Topic {
    entries: VecDeque<Entry>,
    expires: Instant,
}

/// Every topic's recent events.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    topics: Mutex<Topics>,
}

#[derive(Debug, Default)]
struct Topics {
    by_name: HashMap<String, Topic>,
    swept_at: Option<Instant>,
}

/// Expired topics are dropped by an append at most this often, so their
/// memory is returned without a scan per publish.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

fn offset_text((ms, seq): (u64, u64)) -> String {
    format!("{ms}-{seq}")
}

impl MemoryHistory {
    /// Append an envelope (encoded without offset) and return its offset;
    /// `then` runs before the lock is released (the broker delivers there).
    pub fn append(
        &self,
        topic: &str,
        envelope: String,
        policy: &HistoryPolicy,
        then: impl FnOnce(&str),
    ) -> String {
        let now = Instant::now();
        let mut topics = self.lock();
        if topics
            .swept_at
            .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY)
        {
            topics.by_name.retain(|_, t| t.expires > now);
            topics.swept_at = Some(now);
        }
        let entry = topics
            .by_name
            .entry(topic.to_owned())
            .or_insert_with(|| Topic {
                entries: VecDeque::new(),
                expires: now,
            });
        let ms = u64::try_from(herald_shared::now_ms()).unwrap_or_default();
        let offset = match entry.entries.back() {
            Some(last) if last.offset.0 >= ms => (last.offset.0, last.offset.1 + 1),
            _ => (ms, 0),
        };
        entry.entries.push_back(Entry { offset, envelope });
        let max = usize::try_from(policy.max_len.max(1)).unwrap_or(usize::MAX);
        while entry.entries.len() > max {
            entry.entries.pop_front();
        }
        entry.expires = now + policy.ttl;
        let text = offset_text(offset);
        then(&text);
        text
    }

    /// Entries after `after` (exclusive), oldest first, at most `count`.
    pub fn after(&self, topic: &str, after: &str, count: usize) -> Vec<(String, String)> {
        let Some(after) = parse_offset(after) else {
            return Vec::new();
        };
        self.read(topic, |entries| {
            entries
                .iter()
                .filter(|e| e.offset > after)
                .take(count)
                .map(|e| (offset_text(e.offset), e.envelope.clone()))
                .collect()
        })
    }

    /// The last `count` entries, oldest first.
    pub fn last(&self, topic: &str, count: usize) -> Vec<(String, String)> {
        self.read(topic, |entries| {
            entries
                .iter()
                .skip(entries.len().saturating_sub(count))
                .map(|e| (offset_text(e.offset), e.envelope.clone()))
                .collect()
        })
    }

    /// The offset of the oldest entry kept.
    pub fn oldest(&self, topic: &str) -> Option<String> {
        self.read(topic, |entries| {
            entries.front().map(|e| offset_text(e.offset))
        })
    }

    fn read<T: Default>(&self, topic: &str, f: impl FnOnce(&VecDeque<Entry>) -> T) -> T {
        let now = Instant::now();
        match self.lock().by_name.get(topic) {
            Some(t) if t.expires > now => f(&t.entries),
            _ => T::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Topics> {
        self.topics.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_increase_and_history_is_bounded() {
        let h = MemoryHistory::default();
        let policy = HistoryPolicy {
            max_len: 3,
            ttl: Duration::from_secs(60),
        };
        let offsets: Vec<String> = (0..5)
            .map(|i| h.append("user:a", format!("{{\"n\":{i}}}"), &policy, |_| {}))
            .collect();
        let parsed: Vec<_> = offsets.iter().filter_map(|o| parse_offset(o)).collect();
        assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        let last = h.last("user:a", 10);
        assert_eq!(last.len(), 3, "max_len kept");
        assert_eq!(last[0].0, offsets[2]);
        assert_eq!(h.oldest("user:a"), Some(offsets[2].clone()));
        let after = h.after("user:a", &offsets[3], 10);
        assert_eq!(after, vec![(offsets[4].clone(), "{\"n\":4}".to_owned())]);
        assert!(h.after("user:b", &offsets[0], 10).is_empty());
        assert!(h.after("user:a", "nonsense", 10).is_empty());
    }

    #[test]
    fn history_expires_with_its_ttl() {
        let h = MemoryHistory::default();
        let policy = HistoryPolicy {
            max_len: 10,
            ttl: Duration::ZERO,
        };
        h.append("user:a", "{}".to_owned(), &policy, |_| {});
        assert!(h.last("user:a", 10).is_empty());
        assert_eq!(h.oldest("user:a"), None);
    }
}
