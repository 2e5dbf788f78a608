//! Behind Sentinel: two gateway replicas and a publisher find the primary
//! through three sentinels. The primary is SIGKILLed mid-stream: the
//! replica is promoted, the gateways turn not-ready and then ready again on
//! the new primary, every `publish` call succeeds (its retry window outlasts
//! the promotion), and each client gets every event once, in order.

use std::time::Duration;

use anyhow::{Result, ensure};
use herald_publisher::{Publisher, RedisMode, RedisTarget, Topic};
use herald_tests::profiles::FEED;
use herald_tests::{
    FAST_PROBES, Gateway, GatewayOptions, Sentinels, WsClient, jwt, readiness_dip, unix_now,
    wait_until,
};
use serde_json::json;

const EVENTS: u64 = 120;
const CRASH_AT: u64 = 40;

#[tokio::test]
async fn a_primary_killed_mid_stream_fails_over_and_every_event_arrives_once() -> Result<()> {
    let mut s = Sentinels::start().await?;
    let config = format!("{FEED}{FAST_PROBES}");
    // One replica names the deployment by URL, the other by explicit
    // settings; the publisher too.
    let explicit = format!(
        "{config}\n[redis]\nmode = \"sentinel\"\nnodes = {:?}\nservice_name = \"{}\"\n",
        s.nodes(),
        s.service_name()
    );
    let mut gateways = Vec::new();
    for (url, config) in [(Some(s.url()), config), (None, explicit)] {
        let gw = Gateway::start(GatewayOptions {
            redis_url: url,
            config: Some(config),
            ..Default::default()
        })
        .await?;
        gw.wait_ready(true).await?;
        gateways.push(gw);
    }
    let target = RedisTarget {
        mode: Some(RedisMode::Sentinel),
        nodes: s.nodes(),
        service_name: s.service_name().to_owned(),
        ..RedisTarget::default()
    };
    let publisher = Publisher::connect_to(&target, "herald")
        .await?
        .with_retry_window(Duration::from_secs(30));
    let token = jwt("reader", None, &[], unix_now() + 600);
    let mut clients = Vec::new();
    for gw in &gateways {
        clients.push(WsClient::connect(&gw.ws_url(&format!("/feed/f1?token={token}"))).await?);
    }
    let channel = "herald:{res:feed:f1}:ch";
    wait_until("both replicas subscribed on the primary", || async {
        s.primary.numsub(channel).await.ok() == Some(2)
    })
    .await?;
    let watcher = tokio::spawn(readiness_dip(gateways[0].addr.clone()));

    let topic = Topic::resource("feed", "f1")?;
    for seq in 0..EVENTS {
        if seq == CRASH_AT {
            s.primary.kill().await;
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
    assert_eq!(
        s.primary_port().await?,
        s.replica.port(),
        "the replica was promoted"
    );
    let (was_unready, ready_again) = watcher.await?;
    ensure!(
        was_unready && ready_again,
        "readiness went false then true: {was_unready} {ready_again}"
    );
    Ok(())
}
