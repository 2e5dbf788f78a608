//! Property tests over the config loader and the wire encoder. Configs are
//! the bundled one with exactly one setting changed, in its TOML text or in
//! the parsed value, so every check of `validate` is reached and must name
//! the key it refuses; arbitrary text is still refused without a panic.
//! Frames are compared whole against the payload they carry.

use herald_gateway::config::{Config, ConfigError, DEFAULT_CONFIG, StoredCredential};
use herald_gateway::profile::wire::{encode_event, encode_event_at};
use herald_shared::profile::{FrameSpec, FrameStyle, TimestampFormat};
use proptest::prelude::*;
use serde_json::{Value, json};

fn bundled() -> Config {
    Config::parse(DEFAULT_CONFIG, "bundled").unwrap_or_else(|e| panic!("bundled config: {e}"))
}

/// The key a validation error names, or why there is none.
fn refused_key(c: &Config) -> Result<String, String> {
    match c.validate() {
        Err(ConfigError::Invalid { key, reason }) if !reason.is_empty() => Ok(key),
        other => Err(format!("{other:?}")),
    }
}

/// Numeric settings with the smallest value `validate` accepts, as
/// `(section, key, minimum)`.
const MINIMUMS: [(&str, &str, u64); 5] = [
    ("limits", "outbound_queue", 1),
    ("limits", "max_message_bytes", 64),
    ("limits", "read_buffer_bytes", 256),
    ("limits", "handshake_timeout_ms", 1),
    ("limits", "write_timeout_ms", 1),
];

fn numeric(c: &Config, key: &str) -> u64 {
    match key {
        "outbound_queue" => c.limits.outbound_queue as u64,
        "max_message_bytes" => c.limits.max_message_bytes as u64,
        "read_buffer_bytes" => c.limits.read_buffer_bytes as u64,
        "handshake_timeout_ms" => c.limits.handshake_timeout_ms,
        "write_timeout_ms" => c.limits.write_timeout_ms,
        _ => unreachable!("{key}"),
    }
}

/// The bundled text with `key = value` in `[section]`: its line replaced,
/// or added under the header when the file leaves the key to its default.
fn with_setting(text: &str, section: &str, key: &str, value: impl std::fmt::Display) -> String {
    let line = format!("{key} = {value}");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let header = format!("[{section}]");
    let start = lines
        .iter()
        .position(|l| *l == header)
        .unwrap_or_else(|| panic!("no {header}"));
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with('['))
        .map_or(lines.len(), |n| start + 1 + n);
    match lines[start + 1..end]
        .iter()
        .position(|l| l.starts_with(&format!("{key} =")))
    {
        Some(n) => lines[start + 1 + n] = line,
        None => lines.insert(start + 1, line),
    }
    lines.join("\n")
}

/// A value that is not 64 lowercase hex digits.
fn bad_sha256() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{0,63}",
        "[0-9a-f]{65,80}",
        ("[0-9a-f]{63}", "[A-Zg-z ]").prop_map(|(h, c)| format!("{h}{c}")),
    ]
}

fn credential(sha256: String, sub: String) -> StoredCredential {
    StoredCredential {
        sha256,
        sub,
        org: None,
        roles: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn config_loader_never_panics_on_arbitrary_text(text in ".{0,300}") {
        if let Ok(c) = Config::parse(&text, "fuzz") {
            let _ = c.validate();
        }
    }

    #[test]
    fn mutating_one_line_of_the_default_config_never_panics(line in 0usize..400, replacement in "[a-z_.]{1,20} = [-0-9a-z\"{}\\[\\],. ]{0,30}") {
        let mut lines: Vec<&str> = DEFAULT_CONFIG.lines().collect();
        let i = line % lines.len();
        lines[i] = &replacement;
        let text = lines.join("\n");
        if let Ok(c) = Config::parse(&text, "fuzz")
            && let Err(e) = c.validate()
        {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn one_numeric_setting_is_read_as_written_and_checked_against_its_minimum(
        which in 0..MINIMUMS.len(),
        value in prop_oneof![0u64..300, 300u64..1_000_000],
    ) {
        let (section, key, minimum) = MINIMUMS[which];
        let c = Config::parse(&with_setting(DEFAULT_CONFIG, section, key, value), "t")
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(numeric(&c, key), value);
        if value >= minimum {
            prop_assert_eq!(c.validate().map_err(|e| e.to_string()), Ok(()));
        } else {
            prop_assert_eq!(refused_key(&c), Ok(format!("{section}.{key}")));
        }
    }

    #[test]
    fn drain_and_unready_windows_are_read_as_written(drain in any::<u32>(), unready in any::<u32>()) {
        let text = with_setting(DEFAULT_CONFIG, "shutdown", "unready_ms", unready);
        let text = with_setting(&text, "shutdown", "drain_ms", drain);
        let c = Config::parse(&text, "t").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!((c.shutdown.drain_ms, c.shutdown.unready_ms), (u64::from(drain), u64::from(unready)));
        prop_assert_eq!(c.validate().map_err(|e| e.to_string()), Ok(()));
    }

    #[test]
    fn redis_urls_and_prefixes_are_checked(
        host in "[a-z0-9.-]{1,20}",
        port in any::<u16>(),
        scheme in prop::sample::select(vec!["redis", "redis-cluster", "redis-sentinel", "rediss", "rediss-cluster", "rediss-sentinel", "http", "tcp", "redis-tls", ""]),
        prefix in "[a-z0-9:_-]{1,12}",
        bad_prefix in prop_oneof![Just(String::new()), "[a-z]{0,5}[{} ][a-z]{0,5}"],
    ) {
        let mut c = bundled();
        c.redis.url = format!("{scheme}://{host}:{port}");
        let accepted = matches!(
            scheme,
            "redis" | "redis-cluster" | "redis-sentinel" | "rediss" | "rediss-cluster" | "rediss-sentinel"
        );
        prop_assert_eq!(
            refused_key(&c).ok(),
            (!accepted).then(|| "redis.url".to_owned()),
            "{}", c.redis.url
        );
        let mut c = bundled();
        c.redis.prefix = prefix;
        prop_assert!(c.validate().is_ok(), "{}", c.redis.prefix);
        c.redis.prefix = bad_prefix;
        prop_assert_eq!(refused_key(&c), Ok("redis.prefix".to_owned()), "{:?}", c.redis.prefix);
    }

    #[test]
    fn stored_credentials_need_a_sha256_and_a_subject(
        good in proptest::collection::vec(("[0-9a-f]{64}", "[a-z]{1,8}"), 0..4),
        bad in bad_sha256(),
        sessions in any::<bool>(),
        empty_sub in any::<bool>(),
    ) {
        let field = if sessions { "sessions" } else { "api_keys" };
        let mut c = bundled();
        let list: Vec<StoredCredential> = good.into_iter().map(|(h, s)| credential(h, s)).collect();
        let at = list.len();
        c.auth.api_keys = list.clone();
        c.auth.sessions = list.clone();
        prop_assert!(c.validate().is_ok());
        let broken = if empty_sub {
            credential("0".repeat(64), String::new())
        } else {
            credential(bad, "alice".to_owned())
        };
        let target = if sessions { &mut c.auth.sessions } else { &mut c.auth.api_keys };
        target.push(broken);
        let part = if empty_sub { "sub" } else { "sha256" };
        prop_assert_eq!(refused_key(&c), Ok(format!("auth.{field}[{at}].{part}")));
    }

    #[test]
    fn profile_level_faults_name_the_profile_they_are_in(
        at in any::<prop::sample::Index>(),
        fault in 0u8..5,
        reserved in prop::sample::select(vec!["/healthz", "/readyz", "/metrics"]),
    ) {
        let mut c = bundled();
        let profiles = c.profiles.as_mut().ok_or_else(|| TestCaseError::fail("profiles"))?;
        let i = at.index(profiles.len());
        // Templates may use the path's captures, so only a path without any
        // can be swapped without breaking something else first.
        let plain: Vec<usize> = (0..profiles.len()).filter(|&j| !profiles[j].path.contains('{')).collect();
        let want = match fault {
            0 => {
                let j = plain[at.index(plain.len())];
                reserved.clone_into(&mut profiles[j].path);
                format!("profiles[{j}].path")
            }
            1 => {
                profiles[i].auth.sources.clear();
                format!("profiles[{i}].auth.sources")
            }
            2 => {
                // A copy of an earlier profile repeats its name and path.
                let copy = profiles[i].clone();
                profiles.push(copy);
                format!("profiles[{}]", profiles.len() - 1)
            }
            3 => {
                profiles[i].name.push('!');
                format!("profiles[{i}].name")
            }
            _ => {
                profiles.clear();
                "profiles".to_owned()
            }
        };
        prop_assert_eq!(refused_key(&c), Ok(want));
    }

    #[test]
    fn flat_frames_are_the_payload_beside_the_type(
        fields in proptest::collection::btree_map("[a-z]{1,8}", any::<i32>(), 0..8),
        ty in "[a-z_.]{1,20}",
    ) {
        let mut data = serde_json::Map::new();
        for (k, v) in &fields {
            if k != "type" {
                data.insert(k.clone(), serde_json::json!(v));
            }
        }
        let raw = serde_json::Value::Object(data.clone()).to_string();
        let spec = FrameSpec { style: FrameStyle::Flat, ..FrameSpec::default() };
        let frame: serde_json::Value = serde_json::from_str(encode_event(&spec, &ty, 0, &raw).as_str())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut expected = data;
        expected.insert("type".into(), serde_json::json!(ty));
        prop_assert_eq!(frame, serde_json::Value::Object(expected));
    }

    #[test]
    fn frames_of_every_shape_carry_the_whole_payload(
        nested in any::<bool>(),
        // Field names of the shape are capitalised, payload members are not,
        // so they never collide.
        type_field in "[A-Z][a-z]{0,6}",
        data_field in "[A-Z][a-z]{0,6}",
        timestamp_field in proptest::option::of("[A-Z][a-z]{0,6}"),
        offset_field in proptest::option::of("[A-Z][a-z]{0,6}"),
        members in proptest::collection::btree_map("[a-z]{1,8}", any::<String>(), 0..6),
        scalar in prop_oneof![Just(Value::Null), any::<i64>().prop_map(Value::from), any::<String>().prop_map(Value::from)],
        object in any::<bool>(),
        ty in "[!#-\\[\\]-~]{1,64}",
        ts in 0i64..4_000_000_000_000,
        offset in "[0-9]{1,13}-[0-9]{1,3}",
    ) {
        let fields = [&type_field, &data_field];
        let extra = [timestamp_field.as_ref(), offset_field.as_ref()];
        prop_assume!(type_field != data_field);
        prop_assume!(extra.iter().flatten().all(|f| !fields.contains(f)));
        prop_assume!(timestamp_field.is_none() || timestamp_field != offset_field);
        let data = if object {
            Value::Object(members.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
        } else {
            scalar
        };
        let spec = FrameSpec {
            style: if nested { FrameStyle::Nested } else { FrameStyle::Flat },
            type_field: type_field.clone(),
            data_field: data_field.clone(),
            timestamp_field: timestamp_field.clone(),
            timestamp_format: TimestampFormat::UnixMs,
            offset_field: offset_field.clone(),
        };
        let raw = data.to_string();
        let text = encode_event_at(&spec, &ty, ts, &raw, Some(offset.as_str()));
        let frame: Value = serde_json::from_str(text.as_str()).map_err(|e| TestCaseError::fail(format!("{e}: {}", text.as_str())))?;
        let mut expected = match (&data, nested) {
            (Value::Object(m), false) => m.clone(),
            _ => serde_json::Map::from_iter([(data_field, data.clone())]),
        };
        expected.insert(type_field, json!(ty));
        if let Some(f) = timestamp_field {
            expected.insert(f, json!(ts));
        }
        if let Some(f) = offset_field {
            expected.insert(f, json!(offset));
        }
        prop_assert_eq!(frame, Value::Object(expected));
    }
}
