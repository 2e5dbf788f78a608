//! Wire encoding: an event, a ping or a snapshot, laid out per [`FrameSpec`].
//!
//! Events are encoded lazily once per shape and the bytes shared by every
//! socket of that shape (the hub's `SharedEvent` caches them); nothing is
//! serialised per connection. Flat frames splice the payload object's members after the
//! type field instead of re-parsing the payload.

use axum::extract::ws::Utf8Bytes;
use herald_shared::profile::{AckSpec, ErrorFrameSpec, FrameSpec, FrameStyle, TimestampFormat};
use time::OffsetDateTime;
use time::macros::format_description;

/// Encode a payload (raw JSON) that is not a history event as a frame.
pub fn encode_event(spec: &FrameSpec, event_type: &str, ts_ms: i64, data: &str) -> Utf8Bytes {
    encode_event_at(spec, event_type, ts_ms, data, None)
}

/// Encode an event payload (raw JSON), with its history offset if the shape shows it.
pub fn encode_event_at(
    spec: &FrameSpec,
    event_type: &str,
    ts_ms: i64,
    data: &str,
    offset: Option<&str>,
) -> Utf8Bytes {
    let mut out = String::with_capacity(data.len() + 64);
    out.push('{');
    push_field(&mut out, &spec.type_field, &json_string(event_type));
    match (spec.style, object_members(data)) {
        (FrameStyle::Flat, Some(members)) => {
            if !members.is_empty() {
                out.push(',');
                out.push_str(members);
            }
        }
        // A flat shape given a non-object payload still shows it, nested.
        _ => {
            out.push(',');
            push_field(&mut out, &spec.data_field, data.trim());
        }
    }
    push_timestamp(&mut out, spec, ts_ms);
    if let (Some(field), Some(offset)) = (&spec.offset_field, offset) {
        out.push(',');
        push_field(&mut out, field, &json_string(offset));
    }
    out.push('}');
    Utf8Bytes::from(out)
}

/// A frame with only a type (and the shape's timestamp): pings, acks.
pub fn encode_bare(spec: &FrameSpec, frame_type: &str, ts_ms: i64) -> Utf8Bytes {
    let mut out = String::with_capacity(64);
    out.push('{');
    push_field(&mut out, &spec.type_field, &json_string(frame_type));
    push_timestamp(&mut out, spec, ts_ms);
    out.push('}');
    Utf8Bytes::from(out)
}

/// An error frame: `{"type":"error","code":…,"message":…}` plus the shape's timestamp.
/// Nested shapes carry code and message inside the data field.
pub fn encode_error(
    spec: &FrameSpec,
    errors: &ErrorFrameSpec,
    code: &str,
    message: &str,
    ts_ms: i64,
) -> Utf8Bytes {
    let mut body = String::with_capacity(64);
    body.push('{');
    push_field(
        &mut body,
        &errors.code_field,
        &json_string(errors.code(code)),
    );
    body.push(',');
    push_field(&mut body, &errors.message_field, &json_string(message));
    body.push('}');
    encode_event(spec, &errors.event_type, ts_ms, &body)
}

/// A reply frame such as AgentHQ's `{"type":"heartbeat_ack","timestamp":"…Z"}`:
/// the ack's own timestamp, not the shape's; with `in_data`, the timestamp
/// is the payload (`{"event":"heartbeat_ack","data":{"timestamp":"…Z"}}`).
pub fn encode_ack(spec: &FrameSpec, ack: &AckSpec, ts_ms: i64) -> Utf8Bytes {
    if ack.in_data {
        let body = match &ack.timestamp_field {
            Some(field) => format!(
                "{{{}:{}}}",
                json_string(field),
                format_timestamp(ack.timestamp_format, ts_ms)
            ),
            None => "{}".to_owned(),
        };
        return encode_event(spec, &ack.event_type, ts_ms, &body);
    }
    let mut out = String::with_capacity(64);
    out.push('{');
    push_field(&mut out, &spec.type_field, &json_string(&ack.event_type));
    if let Some(field) = &ack.timestamp_field {
        out.push(',');
        push_field(
            &mut out,
            field,
            &format_timestamp(ack.timestamp_format, ts_ms),
        );
    }
    out.push('}');
    Utf8Bytes::from(out)
}

fn push_field(out: &mut String, name: &str, json_value: &str) {
    out.push_str(&json_string(name));
    out.push(':');
    out.push_str(json_value);
}

fn push_timestamp(out: &mut String, spec: &FrameSpec, ts_ms: i64) {
    if let Some(field) = &spec.timestamp_field {
        out.push(',');
        push_field(out, field, &format_timestamp(spec.timestamp_format, ts_ms));
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// `a":1,"b":2` from `{"a":1,"b":2}`: the members of a JSON object, or None.
fn object_members(raw: &str) -> Option<&str> {
    raw.trim()
        .strip_prefix('{')?
        .strip_suffix('}')
        .map(str::trim)
}

/// A timestamp as a JSON value.
pub fn format_timestamp(format: TimestampFormat, ts_ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let text = match format {
        TimestampFormat::UnixMs => return ts_ms.to_string(),
        TimestampFormat::Rfc3339 => at.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        )),
        TimestampFormat::Rfc3339Millis => at.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        )),
    };
    format!("\"{}\"", text.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(style: FrameStyle, ts: Option<&str>) -> FrameSpec {
        FrameSpec {
            style,
            timestamp_field: ts.map(str::to_owned),
            ..FrameSpec::default()
        }
    }

    fn parse(b: &Utf8Bytes) -> serde_json::Value {
        serde_json::from_str(b.as_str()).expect("frame is JSON")
    }

    #[test]
    fn flat_splices_members() {
        let f = encode_event(
            &spec(FrameStyle::Flat, None),
            "progress",
            0,
            r#" { "name": "docsfy", "n": 3 } "#,
        );
        assert_eq!(
            parse(&f),
            serde_json::json!({"type":"progress","name":"docsfy","n":3})
        );
        let empty = encode_event(&spec(FrameStyle::Flat, None), "x", 0, "{}");
        assert_eq!(parse(&empty), serde_json::json!({"type":"x"}));
        let scalar = encode_event(&spec(FrameStyle::Flat, None), "x", 0, "[1]");
        assert_eq!(parse(&scalar), serde_json::json!({"type":"x","data":[1]}));
    }

    #[test]
    fn nested_with_timestamp() {
        let f = encode_event(
            &spec(FrameStyle::Nested, Some("timestamp")),
            "t",
            1_763_900_000_123,
            r#"{"a":1}"#,
        );
        assert_eq!(
            parse(&f),
            serde_json::json!({"type":"t","data":{"a":1},"timestamp":"2025-11-23T12:13:20Z"})
        );
        assert_eq!(
            format_timestamp(TimestampFormat::Rfc3339Millis, 1_763_900_000_123),
            "\"2025-11-23T12:13:20.123Z\""
        );
        assert_eq!(format_timestamp(TimestampFormat::UnixMs, 5), "5");
    }

    #[test]
    fn error_frames() {
        let f = encode_error(
            &spec(FrameStyle::Flat, Some("timestamp")),
            &ErrorFrameSpec::default(),
            "unauthorized",
            "Token expired",
            0,
        );
        assert_eq!(
            parse(&f),
            serde_json::json!({"type":"error","code":"unauthorized","message":"Token expired","timestamp":"1970-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn nested_error_and_ack_frames() {
        let mut errors = ErrorFrameSpec::default();
        errors
            .codes
            .insert("conflict".into(), "CLIENT_ID_IN_USE".into());
        let f = encode_error(
            &spec(FrameStyle::Nested, None),
            &errors,
            "conflict",
            "taken",
            0,
        );
        assert_eq!(
            parse(&f),
            serde_json::json!({"type":"error","data":{"code":"CLIENT_ID_IN_USE","message":"taken"}})
        );
        let ack = AckSpec {
            event_type: "heartbeat_ack".into(),
            timestamp_field: Some("timestamp".into()),
            timestamp_format: TimestampFormat::Rfc3339Millis,
            in_data: false,
        };
        let f = encode_ack(&spec(FrameStyle::Nested, None), &ack, 1_771_329_600_000);
        assert_eq!(
            parse(&f),
            serde_json::json!({"type":"heartbeat_ack","timestamp":"2026-02-17T12:00:00.000Z"})
        );
        let in_data = AckSpec {
            in_data: true,
            ..ack
        };
        let mut event_shape = spec(FrameStyle::Nested, None);
        event_shape.type_field = "event".into();
        let f = encode_ack(&event_shape, &in_data, 1_771_329_600_000);
        assert_eq!(
            parse(&f),
            serde_json::json!({"event":"heartbeat_ack","data":{"timestamp":"2026-02-17T12:00:00.000Z"}})
        );
    }

    #[test]
    fn bare_frames() {
        assert_eq!(
            encode_bare(&spec(FrameStyle::Flat, None), "ping", 0).as_str(),
            r#"{"type":"ping"}"#
        );
    }
}
