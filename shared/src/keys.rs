//! Every Redis channel and key name, built here and nowhere else.
//!
//! Per-topic names wrap the topic in a cluster hash tag, `{topic}`, so a
//! topic's channel, snapshot and (later) history stream land on one slot and a
//! Lua script may touch all of them in Redis Cluster. Topics cannot contain
//! braces, so the tag is exactly the topic.

/// Default prefix of every name.
pub const DEFAULT_PREFIX: &str = "herald";

/// Name builder for one deployment's prefix (several Herald deployments, or
/// test runs, can share a Redis by using different prefixes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Pub/sub channel of a topic: `herald:{user:alice}:ch`.
    pub fn channel(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:ch", self.prefix)
    }

    /// The topic a channel name was built from, if it is one of ours.
    pub fn topic_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix("}:ch")
    }

    /// Snapshot JSON of a topic (docsfy's `sync` payload for `user:alice`).
    pub fn snapshot(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:snapshot", self.prefix)
    }

    /// History stream of a topic: entries `e` = envelope without offset; the
    /// entry id is the event's offset.
    pub fn history(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:history", self.prefix)
    }

    /// Marker that the backend registered a resource topic (exists = known).
    pub fn resource(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:resource", self.prefix)
    }

    /// Stream of client frames forwarded to backends.
    pub fn upstream(&self, stream: &str) -> String {
        format!("{}:upstream:{{{stream}}}", self.prefix)
    }

    /// Set of topics (or globs) granted to a user for client-chosen subscriptions.
    pub fn acl(&self, user: &str) -> String {
        format!("{}:{{user:{user}}}:acl", self.prefix)
    }

    /// Exclusive lease of a key (a file-organizer `client_id`); the value is
    /// the holder connection's id.
    pub fn lease(&self, key: &str) -> String {
        format!("{}:lease:{{{key}}}", self.prefix)
    }

    /// Sorted set of live connections of a presence key (score: lease expiry, ms).
    pub fn presence(&self, topic: &str, key: &str) -> String {
        format!("{}:{{{topic}}}:presence:{key}", self.prefix)
    }

    /// The offline event template of a presence key, for sweeping dead replicas.
    pub fn presence_meta(&self, topic: &str, key: &str) -> String {
        format!("{}:{{{topic}}}:presence:{key}:meta", self.prefix)
    }

    /// Set of `topic|key` entries with presence, swept by every replica.
    pub fn presence_index(&self) -> String {
        format!("{}:presence:index", self.prefix)
    }

    /// Hash of replica id → its latest report (JSON with `at_ms`), read by
    /// the console and `GET /cluster/replicas`.
    pub fn replicas(&self) -> String {
        format!("{}:replicas", self.prefix)
    }

    /// Principal record of an API key, by the key's SHA-256 (hex).
    pub fn api_key(&self, key_hash: &str) -> String {
        format!("{}:apikey:{key_hash}", self.prefix)
    }

    /// Principal record of a session token, by the token's SHA-256 (hex).
    pub fn session(&self, token_hash: &str) -> String {
        format!("{}:session:{token_hash}", self.prefix)
    }

    /// What a publish with an idempotency key produced (the event id), kept
    /// for the key's lifetime, by the key's SHA-256 (hex).
    pub fn idempotency(&self, key_hash: &str) -> String {
        format!("{}:idem:{key_hash}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_round_trip_and_hash_tag() {
        let k = Keys::new("hx");
        let ch = k.channel("user:alice");
        assert_eq!(ch, "hx:{user:alice}:ch");
        assert_eq!(k.topic_of_channel(&ch), Some("user:alice"));
        assert_eq!(k.topic_of_channel("other:{user:alice}:ch"), None);
        assert!(k.snapshot("user:alice").contains("{user:alice}"));
    }
}
