//! Redis Cluster with sharded pub/sub: each topic is held with SSUBSCRIBE on
//! the shard that owns its slot and published with SPUBLISH inside the
//! history script, so no event crosses the cluster bus. Three primaries and
//! three replicas, two gateway replicas, real WebSocket clients.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use herald_publisher::{Publisher, Topic};
use herald_tests::profiles::FEED;
use herald_tests::{
    FAST_PROBES, Gateway, GatewayOptions, RedisCluster, Reply, WsClient, heraldctl, jwt, metric,
    readiness_dip, unix_now, wait_until,
};
use serde_json::json;

fn channel(feed: &str) -> String {
    format!("herald:{{res:feed:{feed}}}:ch")
}

/// One feed whose topic lives on each primary, keyed by the owner's index.
async fn a_feed_per_shard(cluster: &RedisCluster) -> Result<BTreeMap<usize, String>> {
    let mut feeds = BTreeMap::new();
    for i in 0..200 {
        let feed = format!("f{i}");
        let owner = cluster.owner_of(&channel(&feed)).await?;
        if let Some(idx) = cluster.index_of(owner) {
            feeds.entry(idx).or_insert(feed);
        }
        if feeds.len() == 3 {
            break;
        }
    }
    ensure!(feeds.len() == 3, "three shards own feeds: {feeds:?}");
    Ok(feeds)
}

/// Two replicas: one names the cluster by URL, the other by explicit
/// settings (`redis.mode` in the file, the seeds in `HERALD_REDIS_NODES`).
async fn gateways(cluster: &RedisCluster) -> Result<Vec<Gateway>> {
    let mut out = Vec::new();
    let by_url = GatewayOptions {
        redis_url: Some(cluster.url()),
        config: Some(format!("{FEED}{FAST_PROBES}")),
        ..Default::default()
    };
    let explicit = GatewayOptions {
        config: Some(format!(
            "{FEED}{FAST_PROBES}\n[redis]\nmode = \"cluster\"\n"
        )),
        env: vec![("HERALD_REDIS_NODES".to_owned(), cluster.seeds().join(","))],
        ..Default::default()
    };
    for options in [by_url, explicit] {
        let gw = Gateway::start(options).await?;
        gw.wait_ready(true).await?;
        out.push(gw);
    }
    Ok(out)
}

/// A client of `feed` on each gateway, once each replica holds the feed
/// on its shard.
async fn readers_on_every_replica(
    cluster: &RedisCluster,
    gws: &[Gateway],
    feed: &str,
) -> Result<Vec<WsClient>> {
    let token = jwt("reader", None, &[], unix_now() + 600);
    let mut clients = Vec::new();
    for gw in gws {
        clients.push(WsClient::connect(&gw.ws_url(&format!("/feed/{feed}?token={token}"))).await?);
    }
    wait_until("one shard subscription per replica", || async {
        shard_subscribers(cluster, feed).await == Some(gws.len() as i64)
    })
    .await?;
    Ok(clients)
}

async fn shard_subscribers(cluster: &RedisCluster, feed: &str) -> Option<i64> {
    let owner = cluster.owner_of(&channel(feed)).await.ok()?;
    match owner
        .command(&["PUBSUB", "SHARDNUMSUB", &channel(feed)])
        .await
        .ok()?
    {
        Reply::Array(items) => match items.get(1) {
            Some(Reply::Integer(n)) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test]
async fn every_shard_delivers_through_sharded_subscriptions_only() -> Result<()> {
    let cluster = RedisCluster::start().await?;
    let feeds = a_feed_per_shard(&cluster).await?;
    let gws = gateways(&cluster).await?;
    let publisher = Publisher::connect(&cluster.url()).await?;
    let token = jwt("reader", None, &[], unix_now() + 600);
    let mut clients = Vec::new();
    for feed in feeds.values() {
        for gw in &gws {
            let ws = WsClient::connect(&gw.ws_url(&format!("/feed/{feed}?token={token}"))).await?;
            clients.push((feed.clone(), ws));
        }
    }
    for feed in feeds.values() {
        wait_until("one shard subscription per replica", || async {
            shard_subscribers(&cluster, feed).await == Some(2)
        })
        .await?;
    }
    // heraldctl with the explicit settings, the library by URL.
    let seeds = cluster.seeds();
    for (i, feed) in feeds.values().enumerate() {
        if i == 0 {
            let mut args = vec!["--redis-mode", "cluster"];
            for seed in &seeds {
                args.extend(["--redis-node", seed.as_str()]);
            }
            let to = format!("res:feed:{feed}");
            let data = json!({"feed": feed}).to_string();
            args.extend(["publish", "--to", &to, "--type", "item", "--data", &data]);
            heraldctl(&[], &args).await?;
            continue;
        }
        publisher
            .publish(
                &[Topic::resource("feed", feed)?],
                "item",
                &json!({"feed": feed}),
            )
            .await?;
    }
    for (feed, ws) in &mut clients {
        let frame = ws.next_json().await?;
        assert_eq!(frame["data"]["feed"], json!(feed), "{frame}");
    }
    for node in &cluster.nodes {
        let plain = node.command(&["PUBSUB", "CHANNELS", "herald:*"]).await?;
        assert_eq!(
            plain,
            Reply::Array(Vec::new()),
            "no plain subscriptions on {}",
            node.port()
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_primary_of_a_busy_topic_dies_and_every_event_arrives_once_in_order() -> Result<()> {
    const EVENTS: u64 = 100;
    const CRASH_AT: u64 = 30;
    let mut cluster = RedisCluster::start().await?;
    let feeds = a_feed_per_shard(&cluster).await?;
    let (owner, feed) = feeds
        .iter()
        .next()
        .map(|(i, f)| (*i, f.clone()))
        .ok_or_else(|| anyhow::anyhow!("no feed"))?;
    let gws = gateways(&cluster).await?;
    let publisher = Publisher::connect(&cluster.url())
        .await?
        .with_retry_window(Duration::from_secs(30));
    let mut clients = readers_on_every_replica(&cluster, &gws, &feed).await?;
    let watcher = tokio::spawn(readiness_dip(gws[0].addr.clone()));
    let topic = Topic::resource("feed", &feed)?;
    for seq in 0..EVENTS {
        if seq == CRASH_AT {
            cluster.nodes[owner].kill().await;
        }
        // No retry loop: the publisher's window covers the promotion.
        publisher
            .publish(std::slice::from_ref(&topic), "item", &json!({"seq": seq}))
            .await?;
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        let seen = ws.seqs_until(EVENTS - 1).await?;
        assert_eq!(
            seen,
            (0..EVENTS).collect::<Vec<_>>(),
            "client of replica {i}: every event once, in order"
        );
    }
    let (was_unready, ready_again) = watcher.await?;
    ensure!(
        was_unready && ready_again,
        "readiness went false then true: {was_unready} {ready_again}"
    );
    Ok(())
}

/// The counter of topics resubscribed for `cause`, as a gateway exports it.
async fn resubscribed(gw: &Gateway, cause: &str) -> f64 {
    let Ok((_, text)) = gw.get("/metrics").await else {
        return 0.0;
    };
    let series = format!("herald_broker_resubscribed_topics_total{{cause=\"{cause}\"}}");
    metric(&text, &series).unwrap_or(0.0)
}

#[tokio::test]
async fn a_busy_topics_slot_migrates_and_every_event_arrives_once_in_order() -> Result<()> {
    const EVENTS: u64 = 120;
    let cluster = RedisCluster::start().await?;
    let feeds = a_feed_per_shard(&cluster).await?;
    let mut shards = feeds.iter();
    let (from, feed) = shards
        .next()
        .map(|(i, f)| (*i, f.clone()))
        .ok_or_else(|| anyhow::anyhow!("no feed"))?;
    let to = *shards
        .next()
        .map(|(i, _)| i)
        .ok_or_else(|| anyhow::anyhow!("no second shard"))?;
    let gws = gateways(&cluster).await?;
    let publisher = Publisher::connect(&cluster.url())
        .await?
        .with_retry_window(Duration::from_secs(30));
    let mut clients = readers_on_every_replica(&cluster, &gws, &feed).await?;
    let topic = Topic::resource("feed", &feed)?;
    // Publishing goes on while the slot moves: some publishes meet
    // MIGRATING (ASK, TRYAGAIN), some land on the new owner before the
    // gateways subscribe there.
    let publishing = async {
        for seq in 0..EVENTS {
            publisher
                .publish(std::slice::from_ref(&topic), "item", &json!({"seq": seq}))
                .await?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok(())
    };
    let migrating = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.migrate_slot(&channel(&feed), to).await
    };
    let (published, migrated) = tokio::join!(publishing, migrating);
    published?;
    migrated?;
    let owner = cluster.owner_of(&channel(&feed)).await?;
    ensure!(
        cluster.index_of(owner) == Some(to),
        "the slot moved from node {from} to node {to}"
    );
    for (i, ws) in clients.iter_mut().enumerate() {
        let seen = ws.seqs_until(EVENTS - 1).await?;
        assert_eq!(
            seen,
            (0..EVENTS).collect::<Vec<_>>(),
            "client of replica {i}: every event once, in order"
        );
    }
    wait_until("one subscription per replica on the new owner", || async {
        shard_subscribers(&cluster, &feed).await == Some(2)
    })
    .await?;
    for gw in &gws {
        ensure!(
            resubscribed(gw, "topology").await >= 1.0,
            "the replica counted a topology resubscription"
        );
    }
    // Delivery goes on through the new owner.
    publisher
        .publish(
            std::slice::from_ref(&topic),
            "item",
            &json!({"seq": EVENTS}),
        )
        .await?;
    for ws in &mut clients {
        ensure!(
            ws.seqs_until(EVENTS).await? == vec![EVENTS],
            "live after the move"
        );
    }
    Ok(())
}

#[tokio::test]
async fn any_one_shard_that_stops_delivering_makes_the_replica_not_ready() -> Result<()> {
    let cluster = RedisCluster::start().await?;
    let primaries: Vec<usize> = a_feed_per_shard(&cluster).await?.into_keys().collect();
    let gw = Gateway::start(GatewayOptions {
        redis_url: Some(cluster.url()),
        config: Some(format!("{FEED}{FAST_PROBES}")),
        ..Default::default()
    })
    .await?;
    gw.wait_ready(true).await?;
    // Each primary in turn holds writes (SPUBLISH inside the history
    // script waits) while it still answers PING: only the probe on that
    // shard can see it.
    for i in primaries {
        let node = &cluster.nodes[i];
        node.command(&["CLIENT", "PAUSE", "3000", "WRITE"]).await?;
        ensure!(
            node.command(&["PING"]).await? == Reply::Status("PONG".to_owned()),
            "node {i} answers PING while paused"
        );
        wait_until("readyz: delivery probes missing", || async {
            matches!(gw.get("/readyz").await, Ok((503, body)) if body == "delivery probes missing")
        })
        .await?;
        gw.wait_ready(true).await?;
    }
    Ok(())
}
