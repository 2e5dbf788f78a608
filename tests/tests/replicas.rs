//! Replicas behind one Redis: per-replica reference-counted subscriptions,
//! and surviving a Redis restart.

use anyhow::Result;
use herald_publisher::{Principal, Topic};
use herald_tests::{Cluster, WsClient, wait_until};
use serde_json::json;

const ALICE_CHANNEL: &str = "herald:{user:alice}:ch";
/// Every replica holds the control topic (orders for users wherever they are).
const CONTROL_CHANNEL: &str = "herald:{res:herald:control}:ch";

async fn alice(c: &Cluster, replica: usize) -> Result<WsClient> {
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    c.docsfy_client(replica, "k-alice").await
}

async fn numsub_becomes(c: &Cluster, want: u64) -> Result<()> {
    wait_until(&format!("NUMSUB {ALICE_CHANNEL} == {want}"), || async {
        c.redis.numsub(ALICE_CHANNEL).await.ok() == Some(want)
    })
    .await
}

/// Channels held in Redis, sorted, without each replica's own delivery probe.
async fn client_channels(c: &Cluster) -> Result<Vec<String>> {
    let mut held = c.redis.channels("herald:*").await?;
    held.retain(|ch| !ch.starts_with("herald:{res:herald:probe:"));
    held.sort();
    Ok(held)
}

/// Open docsfy connections as replica `i` reports them.
async fn docsfy_connections(c: &Cluster, i: usize) -> Option<u64> {
    let (_, metrics) = c.gw(i).get("/metrics").await.ok()?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_connections{route=\"docsfy\"} "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn one_redis_subscription_per_topic_per_replica_dropped_after_the_last_leaves() -> Result<()>
{
    let c = Cluster::start(2, None).await?;
    assert_eq!(
        client_channels(&c).await?,
        vec![CONTROL_CHANNEL.to_owned()],
        "idle replicas subscribe to nothing but the control topic (and their own probe)"
    );
    assert_eq!(
        c.redis.channels("herald:{res:herald:probe:*").await?.len(),
        2,
        "one delivery-probe topic per replica"
    );
    assert_eq!(c.redis.numsub(CONTROL_CHANNEL).await?, 2);

    let a1 = alice(&c, 0).await?;
    assert_eq!(c.redis.numsub(ALICE_CHANNEL).await?, 1);
    let a2 = alice(&c, 0).await?;
    assert_eq!(
        c.redis.numsub(ALICE_CHANNEL).await?,
        1,
        "a second local connection reuses the subscription"
    );
    let b1 = alice(&c, 1).await?;
    assert_eq!(c.redis.numsub(ALICE_CHANNEL).await?, 2, "one per replica");
    assert_eq!(docsfy_connections(&c, 0).await, Some(2));
    assert_eq!(
        client_channels(&c).await?,
        vec![CONTROL_CHANNEL.to_owned(), ALICE_CHANNEL.to_owned()],
        "only wanted topics"
    );

    a1.close().await;
    // The gauge drops after the connection has left its topics, so from then
    // on replica A has dealt with the close.
    wait_until("replica A counts one docsfy connection", || async {
        docsfy_connections(&c, 0).await == Some(1)
    })
    .await?;
    // Still one local subscriber on replica A: the subscription stays.
    c.publisher
        .publish(&[Topic::user("alice")?], "marker", &json!({}))
        .await?;
    let mut a2 = a2;
    assert_eq!(a2.next_json().await?["type"], "marker");
    assert_eq!(c.redis.numsub(ALICE_CHANNEL).await?, 2);

    a2.close().await;
    numsub_becomes(&c, 1).await?;
    b1.close().await;
    numsub_becomes(&c, 0).await?;
    assert_eq!(client_channels(&c).await?, vec![CONTROL_CHANNEL.to_owned()]);
    Ok(())
}

#[tokio::test]
async fn redis_restart_not_ready_meanwhile_then_resubscribed_and_delivering() -> Result<()> {
    let mut c = Cluster::start(2, None).await?;
    let mut on_a = alice(&c, 0).await?;
    let mut on_b = alice(&c, 1).await?;

    c.redis.kill().await;
    for gw in &c.gateways {
        gw.wait_ready(false).await?;
    }
    assert_eq!(
        c.gw(0).get("/healthz").await?.0,
        200,
        "alive while Redis is down"
    );

    c.redis.restart().await?;
    for gw in &c.gateways {
        gw.wait_ready(true).await?;
    }
    assert_eq!(
        c.redis.numsub(ALICE_CHANNEL).await?,
        2,
        "both replicas resubscribed"
    );

    // The same client connections, never closed, receive events published after the restart.
    c.publisher
        .progress(&[Topic::user("alice")?], &json!({"name": "after-restart"}))
        .await?;
    assert_eq!(
        on_a.next_json().await?,
        json!({"type": "progress", "name": "after-restart"})
    );
    assert_eq!(
        on_b.next_json().await?,
        json!({"type": "progress", "name": "after-restart"})
    );
    let metrics = c.gw(0).get("/metrics").await?.1;
    assert!(
        metrics.contains("herald_broker_reconnects_total 1"),
        "reconnect counted:\n{metrics}"
    );
    Ok(())
}
