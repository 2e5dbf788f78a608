//! A guard on memory per idle connection: 2,000 WebSocket connections
//! (kubegen route, one channel each) on one gateway, and the gateway's RSS
//! growth per connection must stay within 10 KiB, twice the 5 KiB target.
//! A bound, not a benchmark: `scripts/bench.sh` measures the figure
//! (BENCHMARKS.md); this fails when a change makes idle connections much
//! heavier again (a per-socket buffer, a larger session future).

use anyhow::{Context, Result};
use futures_util::SinkExt;
use herald_tests::{Cluster, JWT_SECRET, admin_jwt_signed_with, metric, rss_kib, wait_until};
use tokio_tungstenite::tungstenite::Message;

const CONNECTIONS: usize = 2_000;
const BOUND_KIB: f64 = 10.0;

#[tokio::test]
async fn idle_connections_stay_under_the_memory_bound() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    let gw = c.gw(0);
    let pid = gw.pid().context("gateway pid")?;
    let url = gw.ws_url(&format!(
        "/v1/ws?token={}",
        admin_jwt_signed_with(JWT_SECRET, "memory")
    ));
    let before = rss_kib(pid);
    let mut sockets = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        ws.send(Message::Text(
            r#"{"type":"subscribe","channel":"idle"}"#.into(),
        ))
        .await?;
        sockets.push(ws);
    }
    // Every connection admitted and holding its channel.
    wait_until("every connection open", || async {
        let (_, text) = gw.get("/metrics").await.unwrap_or_default();
        metric(&text, "herald_connections{route=\"kubegen\"}") == Some(CONNECTIONS as f64)
    })
    .await?;
    c.subscribers_become("res:kubegen:idle", 1).await?;
    let after = rss_kib(pid);
    let per_connection = after.saturating_sub(before) as f64 / CONNECTIONS as f64;
    assert!(
        per_connection <= BOUND_KIB,
        "{per_connection:.2} KiB of RSS per idle connection (bound {BOUND_KIB} KiB; before {before} KiB, after {after} KiB)"
    );
    assert!(
        per_connection > 0.5,
        "the measurement saw the connections: {per_connection:.2} KiB"
    );
    drop(sockets);
    Ok(())
}
