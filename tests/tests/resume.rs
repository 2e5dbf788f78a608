//! History replay on WebSocket routes: the latest events on join, resuming
//! from a position on another replica with nothing lost or repeated, and the
//! gap frame when the history no longer reaches back far enough.

use anyhow::Result;
use herald_publisher::Topic;
use herald_tests::profiles::FEED_WITH_REPLAY as FEED;
use herald_tests::{Cluster, WsClient, jwt, unix_now};
use serde_json::{Value, json};

fn url(c: &Cluster, replica: usize, since: Option<&str>) -> String {
    let token = jwt("reader", None, &[], unix_now() + 600);
    let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
    c.gw(replica)
        .ws_url(&format!("/feed/f1/?token={token}{since}").replace("/?", "?"))
}

async fn publish(c: &Cluster, from: u64, to: u64) -> Result<()> {
    for n in from..to {
        c.publisher
            .publish(&[Topic::resource("feed", "f1")?], "item", &json!({"n": n}))
            .await?;
    }
    Ok(())
}

fn n(frame: &Value) -> u64 {
    frame["data"]["n"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn joining_replays_the_latest_events_then_goes_live() -> Result<()> {
    let c = Cluster::start(2, Some(FEED.to_owned())).await?;
    publish(&c, 0, 5).await?;
    let mut ws = WsClient::connect(&url(&c, 1, None)).await?;
    for want in 2..5 {
        assert_eq!(
            n(&ws.next_json().await?),
            want,
            "the last three, oldest first"
        );
    }
    c.subscribers_become("res:feed:f1", 1).await?;
    publish(&c, 5, 6).await?;
    assert_eq!(n(&ws.next_json().await?), 5);
    Ok(())
}

#[tokio::test]
async fn resuming_on_another_replica_misses_and_repeats_nothing() -> Result<()> {
    let c = Cluster::start(2, Some(FEED.to_owned())).await?;
    let first_url = url(&c, 0, None);
    let mut first = WsClient::connect(&first_url).await?;
    c.subscribers_become("res:feed:f1", 1).await?;
    publish(&c, 0, 4).await?;
    let mut last = String::new();
    for want in 0..4 {
        let frame = first.next_json().await?;
        assert_eq!(n(&frame), want, "{frame}");
        last = frame["offset"].as_str().unwrap_or_default().to_owned();
    }
    first.close().await;
    publish(&c, 4, 9).await?;
    let mut resumed = WsClient::connect(&url(&c, 1, Some(&last))).await?;
    for want in 4..9 {
        assert_eq!(n(&resumed.next_json().await?), want);
    }
    c.subscribers_become("res:feed:f1", 1).await?;
    publish(&c, 9, 10).await?;
    assert_eq!(
        n(&resumed.next_json().await?),
        9,
        "live after the replay, nothing repeated"
    );
    Ok(())
}

#[tokio::test]
async fn a_position_older_than_the_history_is_reported_as_a_gap() -> Result<()> {
    let c = Cluster::start(1, Some(FEED.to_owned())).await?;
    let mut ws = WsClient::connect(&url(&c, 0, None)).await?;
    c.subscribers_become("res:feed:f1", 1).await?;
    publish(&c, 0, 2).await?;
    let old = ws.next_json().await?["offset"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ws.close().await;
    publish(&c, 2, 6).await?;
    // The history window moves past the client's position (exact trim).
    c.redis
        .cli(&["XTRIM", "herald:{res:feed:f1}:history", "MAXLEN", "2"])
        .await?;
    let mut late = WsClient::connect(&url(&c, 0, Some(&old))).await?;
    let gap = late.next_json().await?;
    assert_eq!(gap["type"], "gap", "{gap}");
    assert_eq!(gap["data"]["since"], json!(old));
    assert_eq!(
        n(&late.next_json().await?),
        4,
        "then what the history still holds"
    );
    assert_eq!(n(&late.next_json().await?), 5);
    Ok(())
}

#[tokio::test]
async fn history_is_configurable_per_topic_kind() -> Result<()> {
    use herald_publisher::{HistoryPolicy, TopicKind};
    let c = Cluster::start(1, None).await?;
    let publisher = c
        .publisher
        .clone()
        .with_history_for(TopicKind::User, None)
        .with_history_for(
            TopicKind::Resource,
            Some(HistoryPolicy {
                max_len: 10,
                ttl: std::time::Duration::from_secs(60),
            }),
        );
    let audience = [Topic::user("u1")?, Topic::resource("run", "r1")?];
    publisher.publish(&audience, "step", &json!({})).await?;
    let redis = &c.redis;
    let len = |key: &'static str| async move {
        redis
            .cli(&["XLEN", key])
            .await
            .ok()
            .and_then(|l| l.first().and_then(|v| v.trim().parse::<u64>().ok()))
    };
    assert_eq!(
        len("herald:{user:u1}:history").await,
        Some(0),
        "no history for user topics"
    );
    assert_eq!(len("herald:{res:run:r1}:history").await, Some(1));
    let ttl = c.redis.cli(&["TTL", "herald:{res:run:r1}:history"]).await?;
    let ttl: i64 = ttl
        .first()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(-1);
    assert!((1..=60).contains(&ttl), "the resource policy's TTL: {ttl}");
    Ok(())
}
