//! Checks and steps several suites share: the flat error-frame shape, and
//! publishing through a Redis outage.

use std::time::Duration;

use anyhow::Result;
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

/// Publish `data` to `audience`, retrying while Redis is unreachable (fault
/// tests keep publishing through outages); fails after 20 s.
pub async fn publish_retrying(
    publisher: &herald_publisher::Publisher,
    audience: &[herald_publisher::Topic],
    event_type: &str,
    data: &Value,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while publisher.publish(audience, event_type, data).await.is_err() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "publish kept failing: {data}"
        );
    }
    Ok(())
}
