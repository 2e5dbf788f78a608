//! Readiness that proves delivery: each replica's delivery probe travels the
//! publish path and must come back on its subscription. A Redis that still
//! answers PING but delivers nothing makes the replica not-ready, and it is
//! ready again by itself once delivery resumes.

use anyhow::Result;
use herald_tests::{Cluster, FAST_PROBES, metric, wait_until};

#[tokio::test]
async fn a_redis_that_answers_ping_but_delivers_nothing_makes_the_replica_not_ready() -> Result<()>
{
    let c = Cluster::start(1, Some(FAST_PROBES.to_owned())).await?;
    let gw = c.gw(0);
    let (_, text) = gw.get("/metrics").await?;
    assert_eq!(
        metric(&text, "herald_delivery_probe_ok"),
        Some(1.0),
        "{text}"
    );

    // Writes (PUBLISH, scripts) wait for the pause to end; PING and reads go on.
    c.redis.cli(&["CLIENT", "PAUSE", "3000", "WRITE"]).await?;
    assert_eq!(c.redis.cli(&["PING"]).await?, ["PONG"]);
    wait_until("readyz: delivery probes missing", || async {
        matches!(gw.get("/readyz").await, Ok((503, body)) if body == "delivery probes missing")
    })
    .await?;
    let (_, text) = gw.get("/metrics").await?;
    assert_eq!(metric(&text, "herald_delivery_probe_ok"), Some(0.0));
    assert_eq!(
        metric(&text, "herald_broker_connected"),
        Some(1.0),
        "the connection itself looks fine: only the probe sees it"
    );
    assert!(
        metric(&text, "herald_delivery_probes_missed_total").unwrap_or(0.0) >= 2.0,
        "{text}"
    );

    gw.wait_ready(true).await?;
    let (_, text) = gw.get("/metrics").await?;
    assert_eq!(metric(&text, "herald_delivery_probe_ok"), Some(1.0));
    Ok(())
}
