//! Property tests: the parsers of the contract never panic on any input,
//! and what they accept round-trips.

use herald_shared::{Envelope, Topic};
use proptest::prelude::*;

proptest! {
    #[test]
    fn topic_parse_never_panics_and_round_trips(s in ".{0,250}") {
        if let Ok(t) = Topic::parse(&s) {
            prop_assert_eq!(t.to_string(), s.clone());
            let braces = s.contains('{') || s.contains('}');
            prop_assert!(!braces, "a topic with braces was accepted");
        }
    }

    #[test]
    fn generated_topics_are_accepted(kind in "(user|org|role)", id in "[A-Za-z0-9._@+=-]{1,60}") {
        let topic = format!("{kind}:{id}");
        prop_assert!(Topic::parse(&topic).is_ok(), "{}", topic);
    }

    #[test]
    fn envelope_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn envelopes_round_trip(id in "[a-z0-9-]{1,36}", ty in "[a-z_.]{1,30}", ts in 0i64..4_000_000_000_000, n in any::<i64>(), s in ".{0,40}") {
        let raw = serde_json::json!({"v": 1, "id": id, "type": ty, "ts": ts, "topic": "user:a", "data": {"n": n, "s": s}}).to_string();
        let env = Envelope::decode(raw.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = Envelope::decode(env.encode().as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.data.get(), env.data.get());
        prop_assert_eq!(again.id, id);
    }
}
