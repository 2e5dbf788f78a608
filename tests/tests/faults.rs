//! Faults survived with history on: a replica's pub/sub connection dropped,
//! and Redis itself killed (with an fsynced append-only file) and restarted,
//! in the middle of a stream of events. Every connected client sees every
//! event exactly once, in order.

use std::time::Duration;

use anyhow::Result;
use herald_publisher::{Principal, Publisher, Topic};
use herald_tests::{Cluster, RedisServer, WsClient};
use serde_json::json;

const EVENTS: u64 = 150;

/// Publish `EVENTS` numbered events, retrying a publish until Redis takes it,
/// and run `fault` once `at` of them are out.
async fn publish_through<F: std::future::Future<Output = Result<()>>>(
    publisher: &Publisher,
    at: u64,
    fault: F,
) -> Result<()> {
    let mut fault = Some(fault);
    for seq in 0..EVENTS {
        if seq == at
            && let Some(f) = fault.take()
        {
            f.await?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while publisher
            .progress(&[Topic::user("alice")?], &json!({"seq": seq}))
            .await
            .is_err()
        {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "publish {seq} kept failing"
            );
        }
        // Paced so the fault lands mid-stream rather than after it.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

async fn received_in_order(ws: &mut WsClient) -> Result<()> {
    for want in 0..EVENTS {
        let frame = ws.next_json().await?;
        assert_eq!(frame["type"], "progress", "{frame}");
        assert_eq!(frame["seq"], want, "event {want}: got {frame}");
    }
    Ok(())
}

async fn alice(c: &Cluster, replica: usize) -> Result<WsClient> {
    let mut ws = WsClient::connect(&c.gw(replica).ws_url("/api/ws?token=k-alice")).await?;
    assert_eq!(ws.next_json().await?["type"], "sync");
    Ok(ws)
}

#[tokio::test]
async fn a_dropped_pubsub_connection_is_repaired_from_history() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    let mut on_a = alice(&c, 0).await?;
    let mut on_b = alice(&c, 1).await?;
    let redis = &c.redis;
    publish_through(&c.publisher, 50, async {
        redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]).await?;
        Ok(())
    })
    .await?;
    received_in_order(&mut on_a).await?;
    received_in_order(&mut on_b).await?;
    let metrics = c.gw(0).get("/metrics").await?.1;
    assert!(
        metrics.contains("herald_broker_reconnects_total 1"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn redis_killed_and_restarted_mid_stream_loses_nothing() -> Result<()> {
    let mut c = Cluster::on(RedisServer::start_persistent().await?, 2, None).await?;
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    let mut on_a = alice(&c, 0).await?;
    let mut on_b = alice(&c, 1).await?;
    let publisher = c.publisher.clone();
    let redis = &mut c.redis;
    publish_through(&publisher, 50, async {
        redis.kill().await;
        tokio::time::sleep(Duration::from_millis(300)).await; // an outage, not a blip
        redis.restart().await
    })
    .await?;
    received_in_order(&mut on_a).await?;
    received_in_order(&mut on_b).await?;
    Ok(())
}
