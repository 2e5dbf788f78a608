//! The replica's own fan-out time, `herald_fanout_seconds`: one observation
//! per event it queued to its connections, taken once the last of them has
//! written it, on a real gateway and Redis with real WebSocket clients.

use anyhow::Result;
use herald_publisher::Topic;
use herald_tests::{
    Cluster, WsClient, default_config, jwt_with_topics, metric, unix_now, wait_until,
};
use serde_json::json;

/// Probes once an hour: after the one that makes the replica ready, every
/// fan-out the test sees is one of its own events.
fn config() -> String {
    format!(
        "{}\n[readiness]\nprobe_interval_ms = 3600000\nprobe_timeout_ms = 1000\n",
        default_config()
    )
}

async fn client(c: &Cluster, channels: &[&str]) -> Result<WsClient> {
    let token = jwt_with_topics("fan", None, &[], &["res:kubegen:fan.*"], unix_now() + 600);
    let mut ws = WsClient::connect(&c.gw(0).ws_url(&format!("/v1/ws?token={token}"))).await?;
    for channel in channels {
        ws.send_json(&json!({"type": "subscribe", "channel": channel}))
            .await?;
    }
    Ok(ws)
}

async fn metrics(c: &Cluster) -> Result<String> {
    Ok(c.gw(0).get("/metrics").await?.1)
}

/// Wait until the replica counts `n` open kubegen connections.
async fn connections_become(c: &Cluster, n: u32) -> Result<()> {
    wait_until(&format!("{n} kubegen connections"), || async {
        metric(
            &metrics(c).await.unwrap_or_default(),
            "herald_connections{route=\"kubegen\"}",
        ) == Some(f64::from(n))
    })
    .await
}

fn fanouts(text: &str) -> (f64, f64) {
    (
        metric(text, "herald_fanout_seconds_count").unwrap_or(0.0),
        metric(text, "herald_fanout_seconds_sum").unwrap_or(0.0),
    )
}

#[tokio::test]
async fn each_event_queued_to_local_connections_is_timed_once() -> Result<()> {
    let c = Cluster::start(1, Some(config())).await?;
    let topic = |ch: &str| Topic::resource("kubegen", ch);
    // One client holds both topics, two hold `fan.a` only.
    let mut both = client(&c, &["fan.a", "fan.b"]).await?;
    let mut only_a = vec![client(&c, &["fan.a"]).await?, client(&c, &["fan.a"]).await?];
    c.subscribers_become("res:kubegen:fan.a", 1).await?;
    c.subscribers_become("res:kubegen:fan.b", 1).await?;
    connections_become(&c, 3).await?;
    let (count_before, sum_before) = fanouts(&metrics(&c).await?);

    // One event to both topics reaches the replica twice (once per topic);
    // the copy on `fan.b` is queued to nobody (its only holder gets the
    // `fan.a` copy), so it is no fan-out. A last event on `fan.b` alone
    // comes after that copy, through the same subscription.
    c.publisher
        .publish(
            &[topic("fan.a")?, topic("fan.b")?],
            "step",
            &json!({"n": 1}),
        )
        .await?;
    c.publisher
        .publish(&[topic("fan.b")?], "step", &json!({"n": 2}))
        .await?;
    assert_eq!(both.next_json().await?["data"], json!({"n": 1}));
    assert_eq!(both.next_json().await?["data"], json!({"n": 2}));
    for ws in &mut only_a {
        assert_eq!(ws.next_json().await?["data"], json!({"n": 1}));
    }
    // Once the sessions are gone (the gauge drops as each ends), no event is
    // held any more: every fan-out that will be recorded is.
    both.close().await;
    for ws in only_a {
        ws.close().await;
    }
    connections_become(&c, 0).await?;
    let (count, sum) = fanouts(&metrics(&c).await?);
    assert_eq!(
        count - count_before,
        2.0,
        "two fan-outs: the event to three clients and the one to one client"
    );
    assert!(
        sum > sum_before,
        "their durations are recorded: {sum} vs {sum_before}"
    );
    Ok(())
}
