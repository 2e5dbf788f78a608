//! Property tests of the contract. Topics, envelopes, key names and route
//! profiles are generated whole (valid ones of every kind, and valid ones
//! broken in exactly one place), so every validation branch and every round
//! trip is reached; arbitrary input checks that the parsers never panic.

use herald_shared::envelope::{CONTROL_PREFIX, MAX_EVENT_TYPE_LEN, check_event_type, parse_offset};
use herald_shared::profile::{AuthLocation, AuthSource, Command, CredentialKind, RouteProfile};
use herald_shared::topic::{MAX_TOPIC_LEN, TopicKind, glob_matches};
use herald_shared::{
    ENVELOPE_VERSION, Envelope, EnvelopeError, Keys, Topic, TopicError, hash_secret,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One topic segment: every character a segment may hold.
const SEGMENT: &str = "[A-Za-z0-9._@+=-]{1,24}";

/// A valid topic of every shape, with its kind.
fn topic() -> impl Strategy<Value = (String, TopicKind)> {
    prop_oneof![
        SEGMENT.prop_map(|id| (format!("user:{id}"), TopicKind::User)),
        SEGMENT.prop_map(|id| (format!("org:{id}"), TopicKind::Org)),
        (SEGMENT, SEGMENT).prop_map(|(o, r)| (format!("org:{o}:role:{r}"), TopicKind::Org)),
        SEGMENT.prop_map(|r| (format!("role:{r}"), TopicKind::Role)),
        (SEGMENT, proptest::collection::vec(SEGMENT, 1..4))
            .prop_map(|(kind, ids)| (format!("res:{kind}:{}", ids.join(":")), TopicKind::Resource)),
    ]
}

fn valid_topic() -> impl Strategy<Value = Topic> {
    topic().prop_map(|(s, _)| Topic::parse(&s).unwrap_or_else(|e| panic!("{s}: {e}")))
}

/// Characters a topic may not hold: braces (hash tags), whitespace,
/// controls, JSON and glob syntax, non-ASCII.
fn forbidden_char() -> impl Strategy<Value = char> {
    prop::sample::select(vec![
        '{', '}', ' ', '\t', '\n', '\0', '"', '\\', '/', '*', '?', '#', ',', '|', 'é', 'ß', '😀',
    ])
}

/// A string that is not a topic, with the exact error it must get: a valid
/// topic broken in one way, or one of the degenerate shapes.
fn invalid_topic() -> impl Strategy<Value = (String, TopicError)> {
    let forbidden =
        (topic(), any::<prop::sample::Index>(), forbidden_char()).prop_map(|((s, _), at, ch)| {
            let mut bad = s.clone();
            bad.insert(at.index(s.len() + 1), ch);
            (bad.clone(), TopicError::ForbiddenChar { topic: bad, ch })
        });
    let empty_segment = (topic(), any::<prop::sample::Index>()).prop_map(|((s, _), at)| {
        // Doubling one separator, or one at either end, leaves an empty segment.
        let colons: Vec<usize> = s.match_indices(':').map(|(i, _)| i).collect();
        let bad = match at.index(colons.len() + 2) {
            0 => format!(":{s}"),
            1 => format!("{s}:"),
            n => {
                let mut b = s.clone();
                b.insert(colons[n - 2], ':');
                b
            }
        };
        (bad.clone(), TopicError::EmptySegment(bad))
    });
    let unknown_kind = ("[a-z]{1,8}", SEGMENT)
        .prop_filter("a known kind", |(k, _)| {
            !matches!(k.as_str(), "user" | "org" | "role" | "res")
        })
        .prop_map(|(k, id)| {
            let bad = format!("{k}:{id}");
            (bad.clone(), TopicError::UnknownKind(bad))
        });
    let lone_kind = prop::sample::select(vec!["user", "org", "role"])
        .prop_map(|k| (k.to_owned(), TopicError::UnknownKind(k.to_owned())));
    let short_resource = prop_oneof![
        SEGMENT.prop_map(|k| format!("res:{k}")),
        Just("res".to_owned())
    ]
    .prop_map(|bad| (bad.clone(), TopicError::BadResource(bad)));
    let too_long = (topic(), 1usize..100).prop_map(|((s, _), extra)| {
        let bad = format!("{s}{}", "a".repeat(MAX_TOPIC_LEN + extra - s.len()));
        (bad, TopicError::TooLong)
    });
    prop_oneof![
        forbidden,
        empty_segment,
        unknown_kind,
        lone_kind,
        short_resource,
        too_long,
        Just((String::new(), TopicError::Empty)),
    ]
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Quarters print exactly, so text and value agree without float_roundtrip.
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Event types: printable ASCII without quotes or backslashes, any length
/// the contract allows, control types included.
fn event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        "[!#-\\[\\]-~]{1,64}",
        "[!#-\\[\\]-~]{1,56}".prop_map(|t| format!("{CONTROL_PREFIX}{t}")),
    ]
}

fn bad_event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{65,100}",
        ("[a-z]{0,10}", "[\"\\\\ \t\n\u{7f}é😀]", "[a-z]{0,10}")
            .prop_map(|(a, b, c)| format!("{a}{b}{c}")),
    ]
}

prop_compose! {
    /// An envelope with every field drawn, optional ones present or not.
    fn envelope()(
        id in any::<String>(),
        event_type in event_type(),
        ts in any::<i64>(),
        topic in valid_topic(),
        to in proptest::collection::vec(valid_topic(), 0..4),
        offset in proptest::option::of((any::<u64>(), any::<u64>())),
        data in json_value(),
    ) -> (Envelope, Value) {
        let offset = offset.map(|(ms, seq)| format!("{ms}-{seq}"));
        // The wire form, written out independently of the serde derive.
        let mut wire = json!({
            "v": ENVELOPE_VERSION, "id": id, "type": event_type, "ts": ts,
            "topic": topic.as_str(), "data": data,
        });
        if !to.is_empty() {
            wire["to"] = json!(to.iter().map(Topic::as_str).collect::<Vec<_>>());
        }
        if let Some(o) = &offset {
            wire["offset"] = json!(o);
        }
        let env = Envelope {
            v: ENVELOPE_VERSION,
            id,
            event_type,
            ts,
            topic,
            to,
            offset,
            data: serde_json::value::to_raw_value(&data).unwrap_or_default(),
        };
        (env, wire)
    }
}

/// A profile with every section present and valid, with drawn names,
/// timings and codes.
fn full_profile() -> impl Strategy<Value = RouteProfile> {
    (
        "[A-Za-z0-9_-]{1,16}",
        "[a-z]{1,8}",
        (1u64..60_000, 1u64..=100, 1u32..5),
        (300u64..100_000, 300u64..100_000),
        prop::sample::select(vec![1000u16, 1001, 1003, 1008, 1011, 1013, 3000, 4001, 4409, 4999]),
        any::<bool>(),
    )
        .prop_map(|(name, seg, (interval, timeout_pct, missed), (lease_a, lease_b), code, nested)| {
            let timeout = (interval * timeout_pct / 100).max(1);
            let style = if nested { "nested" } else { "flat" };
            let profile = json!({
                "name": name,
                "path": format!("/{seg}/{{id}}/stream"),
                "auth": {
                    "sources": [
                        {"from": "query", "name": "token", "accept": ["jwt", "api_key"]},
                        {"from": "first_message", "name": "token", "accept": ["jwt"]},
                    ],
                    "failure_close_code": code,
                    "first_message_timeout_ms": 500,
                },
                "join": ["user:{sub}", "org:{org}", "role:{role}", "res:run:{path.id}"],
                "frame": {"style": style, "timestamp_field": "timestamp"},
                "heartbeat": {"interval_ms": interval, "timeout_ms": timeout, "max_missed": missed, "close_code": code},
                "snapshot": {"event_type": "sync", "topics": ["user:{sub}"], "empty": {}},
                "commands": {"pong": "pong", "subscribe": "subscribe", "unsubscribe": "unsubscribe", "heartbeat": "heartbeat"},
                "on_unknown": "error",
                "close": {"shutdown": code, "slow_consumer": code},
                "errors": {"event_type": "error"},
                "channels": {"topic": "res:channel:{org}:{channel}"},
                "heartbeat_ack": {"event_type": "heartbeat_ack"},
                "exclusive": {"key": "{path.id}", "lease_ms": lease_a, "close_code": code},
                "presence": {"topic": "org:{org}", "online": "agent.online", "offline": "agent.offline",
                             "data_topic": "res:agent:{sub}", "lease_ms": lease_b},
                "resource": {"topic": "res:run:{path.id}", "not_found_close": code, "forbidden_close": code},
                "sse": {"keep_alive_ms": interval},
                "upstream": {"stream": format!("{seg}-tasks"), "types": ["task_log"], "source": "{path.id}"},
                "resume": {"replay_last": 5},
            });
            serde_json::from_value(profile).unwrap_or_else(|e| panic!("base profile: {e}"))
        })
}

/// Values a close code setting may not take.
fn bad_close_code() -> impl Strategy<Value = u16> {
    prop_oneof![
        0u16..1000,
        1004u16..=1006,
        1015u16..3000,
        5000u16..=u16::MAX
    ]
}

/// A template placeholder the profile does not define.
fn bad_placeholder() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}"
            .prop_filter("known", |n| !matches!(n.as_str(), "sub" | "org" | "role"))
            .prop_map(|n| format!("x:{{{n}}}")),
        "[a-z]{1,8}"
            .prop_filter("captured", |n| n != "id")
            .prop_map(|n| format!("x:{{path.{n}}}")),
        Just("x:{sub".to_owned()),
        Just("x:sub}".to_owned()),
    ]
}

/// Break `p` in exactly one place; returns the key `validate` must name.
fn break_one(p: &mut RouteProfile, which: u8, code: u16, template: &str, lease: u64) -> String {
    let set_code = |c: &mut u16| *c = code;
    match which {
        0 => {
            p.name = format!("{} x", p.name);
            "name"
        }
        1 => {
            p.path = p.path.trim_start_matches('/').to_owned();
            "path"
        }
        2 => {
            p.auth.sources.clear();
            "auth.sources"
        }
        3 => {
            p.auth.sources[0].name.clear();
            "auth.sources[0].name"
        }
        4 => {
            p.auth.sources[0].accept.clear();
            "auth.sources[0].accept"
        }
        5 => {
            p.auth.sources.push(AuthSource {
                from: AuthLocation::FirstMessage,
                name: "auth".into(),
                accept: vec![CredentialKind::Session],
            });
            "auth.sources"
        }
        6 => {
            p.auth.first_message_timeout_ms = 0;
            "auth.first_message_timeout_ms"
        }
        7 => {
            set_code(&mut p.auth.failure_close_code);
            "auth.failure_close_code"
        }
        8 => {
            set_code(&mut p.close.shutdown);
            "close.shutdown"
        }
        9 => {
            set_code(&mut p.close.slow_consumer);
            "close.slow_consumer"
        }
        10 => {
            p.join.push(template.to_owned());
            return format!("join[{}]", p.join.len() - 1);
        }
        11 => {
            if let Some(hb) = p.heartbeat.as_mut() {
                hb.interval_ms = 0;
            }
            "heartbeat.interval_ms"
        }
        12 => {
            if let Some(hb) = p.heartbeat.as_mut() {
                hb.timeout_ms = hb.interval_ms + 1 + lease;
            }
            "heartbeat.timeout_ms"
        }
        13 => {
            if let Some(hb) = p.heartbeat.as_mut() {
                hb.max_missed = 0;
            }
            "heartbeat.max_missed"
        }
        14 => {
            if let Some(hb) = p.heartbeat.as_mut() {
                set_code(&mut hb.close_code);
            }
            "heartbeat.close_code"
        }
        15 => {
            p.commands.retain(|_, c| *c != Command::Pong);
            "commands"
        }
        16 => {
            p.channels = None;
            "channels"
        }
        17 => {
            p.heartbeat_ack = None;
            "heartbeat_ack"
        }
        18 => {
            if let Some(ch) = p.channels.as_mut() {
                ch.topic = ch.topic.replace("{channel}", "general");
            }
            "channels.topic"
        }
        19 => {
            if let Some(ch) = p.channels.as_mut() {
                ch.topic = format!("{}:{template}", ch.topic);
            }
            "channels.topic"
        }
        20 => {
            if let Some(ch) = p.channels.as_mut() {
                ch.max_per_connection = 0;
            }
            "channels"
        }
        21 => {
            if let Some(ex) = p.exclusive.as_mut() {
                ex.key = template.to_owned();
            }
            "exclusive.key"
        }
        22 => {
            if let Some(ex) = p.exclusive.as_mut() {
                ex.lease_ms = lease;
            }
            "exclusive.lease_ms"
        }
        23 => {
            if let Some(ex) = p.exclusive.as_mut() {
                set_code(&mut ex.close_code);
            }
            "exclusive.close_code"
        }
        24 => {
            if let Some(pr) = p.presence.as_mut() {
                pr.topic = template.to_owned();
            }
            "presence.topic"
        }
        25 => {
            if let Some(pr) = p.presence.as_mut() {
                pr.data_topic = Some(template.to_owned());
            }
            "presence.data_topic"
        }
        26 => {
            if let Some(pr) = p.presence.as_mut() {
                pr.lease_ms = lease;
            }
            "presence.lease_ms"
        }
        27 => {
            if let Some(pr) = p.presence.as_mut() {
                pr.offline.clear();
            }
            "presence"
        }
        28 => {
            if let Some(r) = p.resource.as_mut() {
                r.topic = template.to_owned();
            }
            "resource.topic"
        }
        29 => {
            if let Some(r) = p.resource.as_mut() {
                set_code(&mut r.forbidden_close);
            }
            "resource.forbidden_close"
        }
        30 => {
            if let Some(u) = p.upstream.as_mut() {
                u.stream.push(':');
            }
            "upstream.stream"
        }
        31 => {
            if let Some(u) = p.upstream.as_mut() {
                u.source = template.to_owned();
            }
            "upstream.source"
        }
        32 => {
            if let Some(u) = p.upstream.as_mut() {
                u.types.clear();
            }
            "upstream"
        }
        33 => {
            if let Some(s) = p.sse.as_mut() {
                s.keep_alive_ms = 0;
            }
            "sse.keep_alive_ms"
        }
        34 => {
            p.errors = None;
            "on_unknown"
        }
        35 => {
            if let Some(s) = p.snapshot.as_mut() {
                s.event_type.clear();
            }
            "snapshot.event_type"
        }
        36 => {
            if let Some(s) = p.snapshot.as_mut() {
                s.topics.push(template.to_owned());
                return format!("snapshot.topics[{}]", s.topics.len() - 1);
            }
            "snapshot.topics"
        }
        _ => {
            p.frame.style = herald_shared::profile::FrameStyle::Flat;
            if let Some(s) = p.snapshot.as_mut() {
                s.empty = json!([]);
            }
            "snapshot.empty"
        }
    }
    .to_owned()
}

const BREAKS: u8 = 38;

proptest! {
    #[test]
    fn valid_topics_are_accepted_and_round_trip((s, kind) in topic()) {
        let t = Topic::parse(&s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(t.as_str(), s.as_str());
        prop_assert_eq!(t.to_string(), s.clone());
        prop_assert_eq!(t.kind(), kind);
        prop_assert_eq!(s.parse::<Topic>(), Ok(t.clone()));
        prop_assert_eq!(Topic::try_from(s.clone()), Ok(t.clone()));
        prop_assert_eq!(String::from(t.clone()), s.clone());
        let json = serde_json::to_string(&t).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&json, &serde_json::to_string(&s).unwrap_or_default());
        prop_assert_eq!(serde_json::from_str::<Topic>(&json).ok(), Some(t));
    }

    #[test]
    fn constructors_build_the_topic_they_name(a in SEGMENT, b in SEGMENT) {
        prop_assert_eq!(Topic::user(&a), Topic::parse(&format!("user:{a}")));
        prop_assert_eq!(Topic::org(&a), Topic::parse(&format!("org:{a}")));
        prop_assert_eq!(Topic::role(&a), Topic::parse(&format!("role:{a}")));
        prop_assert_eq!(Topic::resource(&a, &b), Topic::parse(&format!("res:{a}:{b}")));
        prop_assert!(Topic::resource(&a, &b).is_ok());
    }

    #[test]
    fn invalid_topics_get_the_error_that_names_the_fault((s, want) in invalid_topic()) {
        prop_assert_eq!(Topic::parse(&s), Err(want));
        let json = serde_json::to_string(&s).unwrap_or_default();
        prop_assert!(serde_json::from_str::<Topic>(&json).is_err(), "serde accepted {}", s);
    }

    #[test]
    fn topic_parse_never_panics_and_round_trips(s in ".{0,250}") {
        if let Ok(t) = Topic::parse(&s) {
            prop_assert_eq!(t.to_string(), s.clone());
            let braces = s.contains('{') || s.contains('}');
            prop_assert!(!braces, "a topic with braces was accepted");
        }
    }

    #[test]
    fn a_topic_matches_every_glob_cut_from_it((s, _) in topic(), cut in any::<(prop::sample::Index, prop::sample::Index)>()) {
        let (i, j) = (cut.0.index(s.len() + 1), cut.1.index(s.len() + 1));
        let (i, j) = (i.min(j), i.max(j));
        let pattern = format!("{}*{}", &s[..i], &s[j..]);
        prop_assert!(glob_matches(&pattern, &s), "{} !~ {}", pattern, s);
        prop_assert!(glob_matches(&s, &s));
        prop_assert!(glob_matches("*", &s));
        let (longer, shifted) = (format!("{s}x"), format!("x{s}"));
        prop_assert!(!glob_matches(&longer, &s));
        prop_assert!(!glob_matches(&shifted, &s));
    }

    #[test]
    fn keys_tag_every_per_topic_name_with_the_topic(
        (s, _) in topic(),
        prefix in "[a-z][a-z0-9_-]{0,10}",
        member in SEGMENT,
    ) {
        let keys = Keys::new(&prefix);
        let tag = format!("{{{s}}}");
        let names = [
            keys.channel(&s),
            keys.snapshot(&s),
            keys.history(&s),
            keys.resource(&s),
            keys.presence(&s, &member),
            keys.presence_meta(&s, &member),
        ];
        for name in &names {
            prop_assert!(name.starts_with(&format!("{prefix}:")), "{}", name);
            prop_assert_eq!(name.matches(&tag).count(), 1, "{}", name);
        }
        let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
        prop_assert_eq!(distinct.len(), names.len());
        let (channel, snapshot) = (keys.channel(&s), keys.snapshot(&s));
        prop_assert_eq!(keys.topic_of_channel(&channel), Some(s.as_str()));
        prop_assert_eq!(keys.topic_of_channel(&snapshot), None);
        let other = Keys::new(&format!("{prefix}x"));
        prop_assert_eq!(other.topic_of_channel(&channel), None);
    }

    #[test]
    fn secrets_hash_to_stable_distinct_hex(secret in any::<String>()) {
        let h = hash_secret(&secret);
        prop_assert_eq!(h.len(), 64);
        prop_assert!(h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        prop_assert_eq!(&h, &hash_secret(&secret));
        prop_assert_ne!(h, hash_secret(&format!("{secret}x")));
    }

    #[test]
    fn envelope_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn envelopes_round_trip_whole((env, wire) in envelope()) {
        let encoded = env.encode();
        let on_wire: Value = serde_json::from_str(&encoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&on_wire, &wire);
        let again = Envelope::decode(encoded.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again_json = serde_json::to_value(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again_json, wire);
        prop_assert_eq!(again.audience(), if env.to.is_empty() { std::slice::from_ref(&env.topic) } else { &env.to[..] });
        prop_assert_eq!(again.is_control(), env.event_type.starts_with(CONTROL_PREFIX));
        if let Some(o) = &env.offset {
            let (ms, seq) = o.split_once('-').unwrap_or_default();
            prop_assert_eq!(parse_offset(o), Some((ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))));
        }
    }

    #[test]
    fn envelopes_of_other_versions_are_refused((_, mut wire) in envelope(), v in any::<u32>()) {
        prop_assume!(v != ENVELOPE_VERSION);
        wire["v"] = json!(v);
        let got = Envelope::decode(wire.to_string().as_bytes());
        prop_assert!(matches!(got, Err(EnvelopeError::Version(x)) if x == v), "{:?}", got);
    }

    #[test]
    fn envelopes_with_bad_event_types_are_refused((_, mut wire) in envelope(), bad in bad_event_type()) {
        prop_assert!(check_event_type(&bad).is_err(), "{:?}", bad);
        wire["type"] = json!(bad);
        let got = Envelope::decode(wire.to_string().as_bytes());
        prop_assert!(matches!(got, Err(EnvelopeError::EventType(_))), "{:?}", got);
    }

    #[test]
    fn good_event_types_pass_and_the_limit_is_exact(t in event_type()) {
        prop_assert!(check_event_type(&t).is_ok(), "{}", t);
        let longest = format!("{t}{}", "x".repeat(MAX_EVENT_TYPE_LEN - t.len()));
        prop_assert!(check_event_type(&longest).is_ok());
        let too_long = format!("{longest}x");
        prop_assert!(check_event_type(&too_long).is_err());
    }

    #[test]
    fn offsets_parse_back_and_garbage_is_refused(ms in any::<u64>(), seq in any::<u64>(), junk in ".{0,30}") {
        prop_assert_eq!(parse_offset(&format!("{ms}-{seq}")), Some((ms, seq)));
        if !junk.contains('-') {
            prop_assert_eq!(parse_offset(&junk), None);
        }
    }

    #[test]
    fn full_profiles_validate_and_survive_serialisation(p in full_profile(), index in 0usize..50) {
        prop_assert_eq!(p.validate(index), Ok(()));
        let json = serde_json::to_value(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: RouteProfile = serde_json::from_value(json.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(serde_json::to_value(&back).ok(), Some(json));
        prop_assert_eq!(back.validate(index), Ok(()));
    }

    #[test]
    fn a_profile_broken_in_one_place_is_refused_naming_that_key(
        p in full_profile(),
        index in 0usize..50,
        which in 0..BREAKS,
        code in bad_close_code(),
        template in bad_placeholder(),
        lease in 0u64..300,
    ) {
        let mut broken = p;
        let field = break_one(&mut broken, which, code, &template, lease);
        let err = broken.validate(index).err();
        prop_assert_eq!(err.as_ref().map(|e| e.key.clone()), Some(format!("profiles[{index}].{field}")), "{:?}", err);
        prop_assert!(err.is_some_and(|e| !e.reason.is_empty()));
    }

    #[test]
    fn profile_parsing_never_panics(text in ".{0,300}") {
        if let Ok(p) = serde_json::from_str::<RouteProfile>(&text) {
            let _ = p.validate(0);
        }
    }
}
