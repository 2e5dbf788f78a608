//! Topic keys: the strings events are addressed to and connections join.
//!
//! A topic is `kind:rest` where kind is one of `user`, `org`, `role` or `res`.
//! Segments are made of ASCII letters, digits and `._-@+=`; segments are joined
//! by `:`. Braces are forbidden because a topic is embedded in a Redis cluster
//! hash tag (`{topic}`), and whitespace or control characters would make keys
//! ambiguous in logs and in `redis-cli`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest topic accepted, in bytes. Long enough for `res:{kind}:{uuid}` with
/// room to spare, short enough that a hostile client cannot bloat Redis keys.
pub const MAX_TOPIC_LEN: usize = 200;

/// Why a string is not a valid topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is longer than {MAX_TOPIC_LEN} bytes")]
    TooLong,
    #[error("topic `{0}` must start with user:, org:, role: or res:")]
    UnknownKind(String),
    #[error("topic `{0}` has an empty segment")]
    EmptySegment(String),
    #[error("topic `{topic}` contains the forbidden character {ch:?}")]
    ForbiddenChar { topic: String, ch: char },
    #[error("topic `{0}` must be res:KIND:ID")]
    BadResource(String),
}

/// The four kinds of audience a topic can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// One user, on every connection they hold.
    User,
    /// Every connection of an organisation (and `org:{id}:role:{name}` sub-audiences).
    Org,
    /// Everyone holding a role (`admin` sees every variant in docsfy).
    Role,
    /// One resource: a project, a workflow run, a job, an agent, a channel.
    Resource,
}

/// A validated topic key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Topic(String);

impl Topic {
    /// Parse and validate a topic string.
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        validate(s)?;
        Ok(Self(s.to_owned()))
    }

    /// `user:{id}`.
    pub fn user(id: &str) -> Result<Self, TopicError> {
        Self::parse(&format!("user:{id}"))
    }

    /// `org:{id}`.
    pub fn org(id: &str) -> Result<Self, TopicError> {
        Self::parse(&format!("org:{id}"))
    }

    /// `role:{name}`.
    pub fn role(name: &str) -> Result<Self, TopicError> {
        Self::parse(&format!("role:{name}"))
    }

    /// `res:{kind}:{id}`.
    pub fn resource(kind: &str, id: &str) -> Result<Self, TopicError> {
        Self::parse(&format!("res:{kind}:{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> TopicKind {
        match self.0.split(':').next() {
            Some("user") => TopicKind::User,
            Some("org") => TopicKind::Org,
            Some("role") => TopicKind::Role,
            _ => TopicKind::Resource,
        }
    }
}

/// Whether a topic matches a grant or claim pattern, where `*` stands for
/// any run of characters (`res:project:*`, `res:channel:acme:*`, `*`).
pub fn glob_matches(pattern: &str, topic: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = topic.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty();
    };
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn validate(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if let Some(ch) = s.chars().find(|c| !is_topic_char(*c)) {
        return Err(TopicError::ForbiddenChar {
            topic: s.to_owned(),
            ch,
        });
    }
    let segments: Vec<&str> = s.split(':').collect();
    if segments.iter().any(|seg| seg.is_empty()) {
        return Err(TopicError::EmptySegment(s.to_owned()));
    }
    match segments[0] {
        "user" | "org" | "role" if segments.len() >= 2 => Ok(()),
        "res" if segments.len() >= 3 => Ok(()),
        "res" => Err(TopicError::BadResource(s.to_owned())),
        _ => Err(TopicError::UnknownKind(s.to_owned())),
    }
}

fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '@' | '+' | '=')
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Hash and Eq are those of the inner string, so maps keyed by Topic can be
// queried with the channel's &str without allocating.
impl std::borrow::Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Topic {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate(&s)?;
        Ok(Self(s))
    }
}

impl From<Topic> for String {
    fn from(t: Topic) -> Self {
        t.0
    }
}

impl std::str::FromStr for Topic {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_four_kinds() {
        for s in [
            "user:alice",
            "org:acme",
            "role:admin",
            "org:acme:role:ops",
            "res:run:42",
            "user:a.b@c.d",
        ] {
            assert!(Topic::parse(s).is_ok(), "{s}");
        }
        assert_eq!(
            Topic::parse("res:run:42").map(|t| t.kind()),
            Ok(TopicKind::Resource)
        );
        assert_eq!(
            Topic::parse("org:a:role:b").map(|t| t.kind()),
            Ok(TopicKind::Org)
        );
    }

    #[test]
    fn rejects_bad_topics() {
        assert_eq!(Topic::parse(""), Err(TopicError::Empty));
        assert!(matches!(
            Topic::parse("chan:x"),
            Err(TopicError::UnknownKind(_))
        ));
        assert!(matches!(
            Topic::parse("user:"),
            Err(TopicError::EmptySegment(_))
        ));
        assert!(matches!(
            Topic::parse("res:run"),
            Err(TopicError::BadResource(_))
        ));
        assert!(matches!(
            Topic::parse("user:{x}"),
            Err(TopicError::ForbiddenChar { ch: '{', .. })
        ));
        assert!(matches!(
            Topic::parse("user:a b"),
            Err(TopicError::ForbiddenChar { ch: ' ', .. })
        ));
        assert_eq!(
            Topic::parse(&format!("user:{}", "a".repeat(MAX_TOPIC_LEN))),
            Err(TopicError::TooLong)
        );
    }

    #[test]
    fn globs() {
        assert!(glob_matches("res:project:*", "res:project:p1"));
        assert!(glob_matches("*", "user:a"));
        assert!(glob_matches("res:*:p1", "res:project:p1"));
        assert!(glob_matches("res:project:p1", "res:project:p1"));
        assert!(!glob_matches("res:project:p1", "res:project:p10"));
        assert!(!glob_matches("res:project:*", "res:projects:p1"));
        assert!(!glob_matches("res:a*a", "res:a"));
        assert!(glob_matches("res:a*a", "res:aa"));
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<Topic>("\"user:bob\"").is_ok());
        assert!(serde_json::from_str::<Topic>("\"nope\"").is_err());
    }
}
