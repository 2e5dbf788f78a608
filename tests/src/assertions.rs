//! Checks several suites share: the flat error-frame shape.

use serde_json::Value;

/// Assert an error frame of the flat `{type,code,message,timestamp}` shape
/// (Stella Ops): `code`, a non-empty message (or exactly `message`), an
/// RFC 3339 UTC timestamp.
pub fn assert_error_frame(frame: &Value, code: &str, message: Option<&str>) {
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], code, "{frame}");
    match message {
        Some(m) => assert_eq!(frame["message"], m, "{frame}"),
        None => assert!(
            frame["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{frame}"
        ),
    }
    assert!(
        frame["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{frame}"
    );
}
