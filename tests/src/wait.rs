//! Time limits: how long a test waits for anything, and polling for state
//! that can only be observed by asking.

use std::time::Duration;

use anyhow::{Result, bail};

/// How long any single awaited event may take before a test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Poll a condition every 20 ms until it holds (for state only observable by
/// asking: readiness, Redis subscriptions). Fails after [`EVENT_TIMEOUT`].
pub async fn wait_until<F, Fut>(what: &str, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("timed out waiting for {what}")
}
