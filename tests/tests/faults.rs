//! Faults survived with history on: a replica's pub/sub connection dropped,
//! and Redis itself killed (with an fsynced append-only file) and restarted,
//! in the middle of a stream of events. Every connected client sees every
//! event exactly once, in order.

use std::time::Duration;

use anyhow::Result;
use herald_publisher::{Principal, Publisher, Topic};
use herald_tests::{Closed, Cluster, RedisServer, WsClient};
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
        // The publisher's own retry window carries it through the outage.
        publisher
            .publish(&[Topic::user("alice")?], "progress", &json!({"seq": seq}))
            .await?;
        // Paced so the fault lands mid-stream rather than after it.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Publish the event that closes the stream, after every numbered one.
async fn publish_marker(publisher: &Publisher) -> Result<()> {
    publisher
        .publish(&[Topic::user("alice")?], "marker", &json!({}))
        .await?;
    Ok(())
}

/// Every numbered event once, in order, then the marker: a duplicate
/// delivered after the last numbered event shows up instead of the marker.
async fn received_once_in_order(ws: &mut WsClient) -> Result<()> {
    for want in 0..EVENTS {
        let frame = ws.next_json().await?;
        assert_eq!(frame["type"], "progress", "{frame}");
        assert_eq!(frame["seq"], want, "event {want}: got {frame}");
    }
    let frame = ws.next_json().await?;
    assert_eq!(frame["type"], "marker", "after the last event: {frame}");
    Ok(())
}

async fn alice(c: &Cluster, replica: usize) -> Result<WsClient> {
    c.docsfy_client(replica, "k-alice").await
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
    publish_marker(&c.publisher).await?;
    received_once_in_order(&mut on_a).await?;
    received_once_in_order(&mut on_b).await?;
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
    publish_marker(&publisher).await?;
    received_once_in_order(&mut on_a).await?;
    received_once_in_order(&mut on_b).await?;
    Ok(())
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_and_the_others_keep_up() -> Result<()> {
    let config = "[limits]\noutbound_queue = 256\nwrite_timeout_ms = 2000\n".to_owned();
    let c = Cluster::start(1, Some(config)).await?;
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    let mut fast = Vec::new();
    for _ in 0..10 {
        fast.push(alice(&c, 0).await?);
    }
    // Reads its sync, then never again.
    let mut slow = WsClient::connect_small_buffer(&c.gw(0).addr, "/api/ws?token=k-alice").await?;
    assert_eq!(slow.next_json().await?["type"], "sync");

    let blob = "x".repeat(16 * 1024);
    const BIG: u64 = 600;
    let topic = [Topic::user("alice")?];
    let readers: Vec<_> = fast
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                for want in 0..BIG {
                    let frame = ws.next_json().await?;
                    anyhow::ensure!(
                        frame["seq"] == want,
                        "fast client: expected {want}, got {}",
                        frame["seq"]
                    );
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for seq in 0..BIG {
        c.publisher
            .progress(&topic, &json!({"seq": seq, "blob": blob}))
            .await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for r in readers {
        r.await??;
    }
    herald_tests::wait_until("the slow client closed by policy", || async {
        let metrics = c
            .gw(0)
            .get("/metrics")
            .await
            .map(|m| m.1)
            .unwrap_or_default();
        metrics.lines().any(|l| {
            (l.contains("reason=\"slow_consumer\"") || l.contains("reason=\"write_timeout\""))
                && !l.ends_with(" 0")
        })
    })
    .await?;
    // What the slow client sees when it reads again: the events its socket
    // buffers held, in order from the first, then the end: a 1013 close
    // frame when there was room for it, otherwise none (clients say 1006).
    let (frames, closed) = slow.until_closed().await?;
    for (want, frame) in frames.iter().enumerate() {
        assert_eq!(frame["seq"], want, "buffered events in order, none skipped");
    }
    assert!(
        frames.len() < BIG as usize,
        "the backlog was cut: {} of {BIG}",
        frames.len()
    );
    assert!(
        matches!(closed, Closed::Abrupt) || closed.code() == Some(1013),
        "{closed:?}"
    );
    // Memory stayed bounded: the slow client's backlog was dropped, not kept.
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.gw(0).pid().unwrap_or(0)))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(rss_kib < 200 * 1024, "gateway RSS {rss_kib} KiB");
    Ok(())
}

/// Overload's bound: a client whose events wait in the replica longer than
/// `limits.max_queue_delay_ms` is closed as a slow consumer, with everything
/// before the cut delivered in order, even though its queue never filled.
#[tokio::test]
async fn events_waiting_past_the_delay_bound_close_the_connection() -> Result<()> {
    // The queue is large enough never to fill: only the delay bound can cut.
    let config = "[limits]\noutbound_queue = 100000\nmax_queue_delay_ms = 500\n".to_owned();
    let c = Cluster::start(1, Some(config)).await?;
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    let mut slow = WsClient::connect_small_buffer(&c.gw(0).addr, "/api/ws?token=k-alice").await?;
    assert_eq!(slow.next_json().await?["type"], "sync");
    // More than the socket buffers hold, so the rest waits in the replica.
    let blob = "x".repeat(16 * 1024);
    const BIG: u64 = 400;
    let topic = [Topic::user("alice")?];
    for seq in 0..BIG {
        c.publisher
            .progress(&topic, &json!({"seq": seq, "blob": blob}))
            .await?;
    }
    // The client being late is what is tested: it reads again only after
    // the events left queued have waited past the bound.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (frames, closed) = slow.until_closed().await?;
    for (want, frame) in frames.iter().enumerate() {
        assert_eq!(
            frame["seq"], want,
            "delivered events in order, none skipped"
        );
    }
    assert!(
        frames.len() < BIG as usize,
        "the late backlog was cut: {} of {BIG}",
        frames.len()
    );
    assert_eq!(closed.code(), Some(1013), "{closed:?}");
    let metrics = c.gw(0).get("/metrics").await?.1;
    let late = metrics
        .lines()
        .find(|l| l.starts_with("herald_messages_dropped_total") && l.contains("queue_delay"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(
        late,
        BIG - frames.len() as u64,
        "every event not delivered is counted: {metrics}"
    );
    Ok(())
}
