//! Publishing through an outage: `Publisher::publish` retries within its
//! window, so a backend worker needs no retry loop of its own, and a retry
//! never stores or delivers an event twice. Real Redis processes, a real
//! gateway, a real WebSocket client.

use std::time::Duration;

use anyhow::Result;
use herald_publisher::Topic;
use herald_shared::history::{self, Attempt, HistoryPolicy};
use herald_shared::{Envelope, Keys};
use herald_tests::profiles::FEED;
use herald_tests::{Cluster, RedisServer, Reply, WsClient, jwt, unix_now};
use serde_json::json;
use tokio::sync::oneshot;

fn feed_url(c: &Cluster) -> String {
    let token = jwt("reader", None, &[], unix_now() + 600);
    c.gw(0).ws_url(&format!("/feed/f1?token={token}"))
}

async fn history_len(redis: &RedisServer) -> Result<i64> {
    match redis
        .command(&["XLEN", "herald:{res:feed:f1}:history"])
        .await?
    {
        Reply::Integer(n) => Ok(n),
        other => anyhow::bail!("XLEN answered {other:?}"),
    }
}

#[tokio::test]
async fn a_retry_of_an_event_redis_already_took_is_neither_stored_nor_delivered_again() -> Result<()>
{
    let c = Cluster::start(1, Some(FEED.to_owned())).await?;
    let mut ws = WsClient::connect(&feed_url(&c)).await?;
    c.subscribers_become("res:feed:f1", 1).await?;
    let envelope = Envelope::single(
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
        "item",
        1_796_000_000_000,
        Topic::resource("feed", "f1")?,
        serde_json::value::to_raw_value(&json!({"n": 1}))?,
    );
    let keys = Keys::default();
    let policy = HistoryPolicy::default();
    let eval = |attempt| {
        let (k, a) = history::publish_call(&keys, &envelope, &policy, attempt);
        let mut args: Vec<String> = vec![
            "EVAL".into(),
            history::PUBLISH_WITH_HISTORY.into(),
            k.len().to_string(),
        ];
        args.extend(k);
        args.extend(a);
        args
    };
    let redis = &c.redis;
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        redis.command(&refs).await
    };
    let first = run(eval(Attempt::First)).await?;
    // The reply was lost, say: the retry finds the first attempt by id.
    let retry = run(eval(Attempt::Retry)).await?;
    assert_eq!(retry, first, "the retry answers the stored offset");
    assert_eq!(history_len(&c.redis).await?, 1, "stored once");
    let frame = ws.next_json().await?;
    assert_eq!(frame["data"], json!({"n": 1}));
    // The next event is the next frame: the retry published nothing.
    c.publisher
        .publish(&[Topic::resource("feed", "f1")?], "item", &json!({"n": 2}))
        .await?;
    assert_eq!(
        ws.next_json().await?["data"],
        json!({"n": 2}),
        "delivered once"
    );
    // A first attempt of a new event is stored even after a retried one.
    run(eval(Attempt::First)).await?;
    assert_eq!(history_len(&c.redis).await?, 3);
    Ok(())
}

#[tokio::test]
async fn every_publish_through_a_redis_crash_succeeds_and_arrives_once_in_order() -> Result<()> {
    const EVENTS: u64 = 150;
    const CRASH_AT: u64 = 50;
    let Cluster {
        mut redis,
        gateways,
        publisher,
    } = Cluster::on(
        RedisServer::start_persistent().await?,
        1,
        Some(FEED.to_owned()),
    )
    .await?;
    let c_url = {
        let token = jwt("reader", None, &[], unix_now() + 600);
        gateways[0].ws_url(&format!("/feed/f1?token={token}"))
    };
    let mut ws = WsClient::connect(&c_url).await?;
    let channel = "herald:{res:feed:f1}:ch";
    herald_tests::wait_until(channel, || async {
        redis.numsub(channel).await.ok() == Some(1)
    })
    .await?;
    let publisher = publisher.with_retry_window(Duration::from_secs(15));
    let topic = Topic::resource("feed", "f1")?;
    let (crash, crashed) = oneshot::channel::<()>();
    let publishing = async {
        let mut crash = Some(crash);
        for seq in 0..EVENTS {
            if seq == CRASH_AT
                && let Some(tx) = crash.take()
            {
                let _ = tx.send(());
            }
            // No retry loop here: the library's window covers the outage.
            publisher
                .publish(std::slice::from_ref(&topic), "item", &json!({"seq": seq}))
                .await
                .map_err(|e| anyhow::anyhow!("publish {seq} failed: {e}"))?;
        }
        anyhow::Ok(())
    };
    let fault = async {
        crashed.await?;
        redis.kill().await;
        tokio::time::sleep(Duration::from_millis(500)).await; // an outage, not a blip
        redis.restart().await?;
        anyhow::Ok(())
    };
    let (published, faulted) = tokio::join!(publishing, fault);
    published?;
    faulted?;

    let seen = ws.seqs_until(EVENTS - 1).await?;
    assert_eq!(
        seen,
        (0..EVENTS).collect::<Vec<_>>(),
        "every event once, in order"
    );
    match redis
        .command(&["XLEN", "herald:{res:feed:f1}:history"])
        .await?
    {
        Reply::Integer(n) => assert_eq!(n as u64, EVENTS, "each stored once"),
        other => anyhow::bail!("XLEN answered {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_http_publish_that_redis_holds_past_its_timeout_is_retried_and_stored_once() -> Result<()>
{
    let redis = RedisServer::start().await?;
    let gw = herald_tests::Gateway::start(herald_tests::GatewayOptions {
        redis_url: Some(redis.url()),
        config: Some(FEED.to_owned()),
        env: vec![("HERALD_API_KEY".into(), "operator-key".into())],
        ..Default::default()
    })
    .await?;
    gw.wait_ready(true).await?;
    let token = jwt("reader", None, &[], unix_now() + 600);
    let mut ws = WsClient::connect(&gw.ws_url(&format!("/feed/f1?token={token}"))).await?;
    let channel = "herald:{res:feed:f1}:ch";
    herald_tests::wait_until(channel, || async {
        redis.numsub(channel).await.ok() == Some(1)
    })
    .await?;
    // Writes wait longer than the gateway's 5 s command timeout: the first
    // attempt times out (yet runs when the pause ends), the retry runs too,
    // and the history script stores the event once.
    redis.command(&["CLIENT", "PAUSE", "6000", "WRITE"]).await?;
    let api = format!("http://{}/herald/v1", gw.addr);
    publish_over_http(&api, 1).await?;
    assert_eq!(ws.next_json().await?["data"], json!({"n": 1}));
    assert_eq!(history_len(&redis).await?, 1, "stored once");
    // The next frame is the next event: the retry delivered nothing.
    publish_over_http(&api, 2).await?;
    assert_eq!(ws.next_json().await?["data"], json!({"n": 2}));
    Ok(())
}

/// `heraldctl --http` publishing `{"n": n}` to `res:feed:f1`.
async fn publish_over_http(api: &str, n: u64) -> Result<()> {
    let data = json!({ "n": n }).to_string();
    let args = [
        "--http",
        api,
        "publish",
        "--to",
        "res:feed:f1",
        "--type",
        "item",
        "--data",
        &data,
    ];
    herald_tests::heraldctl(&[("HERALD_API_KEY", "operator-key")], &args).await?;
    Ok(())
}
