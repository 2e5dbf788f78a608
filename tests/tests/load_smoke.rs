//! The benchmark's load tool as a smoke test: 1,000 WebSocket clients of
//! one gateway on a real Redis, 10 events published through
//! `herald-publisher`; every client receives every event exactly once. No
//! timing is asserted (BENCHMARKS.md measures that); only that nothing is
//! lost or repeated under a thousand-socket fan-out, and that the gateway
//! timed its fan-outs for the report.

use anyhow::{Context, Result, ensure};
use herald_tests::{Gateway, RedisServer, gateway_binary};

/// `key=value` from the load tool's report.
fn field<'a>(report: &'a str, key: &str) -> Option<&'a str> {
    report
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[tokio::test]
async fn a_thousand_clients_receive_every_event_exactly_once() -> Result<()> {
    let redis = RedisServer::start().await?;
    let gw = Gateway::on_redis(&redis).await?;
    let pid = gw.pid().context("gateway pid")?;
    let out = tokio::process::Command::new(gateway_binary().with_file_name("herald-wsload"))
        .args(["--gateway", &gw.addr, "--pid", &pid.to_string()])
        .args(["--redis", &redis.url()])
        .args(["--connections", "1000", "--events", "10", "--rate", "20"])
        .kill_on_drop(true)
        .output()
        .await
        .context("run herald-wsload")?;
    let report = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "herald-wsload failed: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(field(&report, "connections"), Some("1000"), "{report}");
    assert_eq!(
        field(&report, "deliveries"),
        Some("10000/10000"),
        "{report}"
    );
    assert_eq!(field(&report, "lost"), Some("0"), "{report}");
    assert_eq!(field(&report, "duplicated"), Some("0"), "{report}");
    // The gateway timed its own fan-out of each event (its delivery probes
    // may add a few).
    let fanouts: u64 = field(&report, "fanouts")
        .and_then(|n| n.parse().ok())
        .context("fanouts in the report")?;
    assert!(fanouts >= 10, "{report}");
    let mean: f64 = field(&report, "fanout_ms_mean")
        .and_then(|n| n.parse().ok())
        .context("fanout_ms_mean in the report")?;
    assert!(mean > 0.0, "{report}");
    Ok(())
}
