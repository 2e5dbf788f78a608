//! The loss test: N clients on two replicas, M events on one topic; mid-run
//! Redis is killed with SIGKILL and restarted, then one replica is killed
//! with SIGKILL. Clients of the dead replica reconnect to the other one with
//! their resume position. It prints `sent`, `delivered`, `lost`, `duplicated`
//! and `reordered`, and with history on all but `sent`/`delivered` must be 0.
//!
//! Rerun with other sizes: `HERALD_LOSS_CLIENTS=100 HERALD_LOSS_EVENTS=2000
//! cargo test -p herald-tests --test loss -- --nocapture`.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Result, bail};
use herald_publisher::Topic;
use herald_tests::profiles::FEED;
use herald_tests::{Cluster, RedisServer, WsClient, jwt, unix_now};
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Default)]
struct Received {
    seqs: Vec<u64>,
    reconnects: u64,
}

/// One client: reads until it has seen `last`, reconnecting (to the next
/// replica, with its resume position) whenever its connection ends.
async fn client(addrs: Vec<String>, first: usize, last: u64) -> Result<Received> {
    let token = jwt("reader", None, &[], unix_now() + 3600);
    let mut got = Received::default();
    // From the start of the history: a client whose first connection lands
    // after the first events (a slow connect) still gets them.
    let mut since: Option<String> = Some("0-0".to_owned());
    let mut target = first;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    'connect: while tokio::time::Instant::now() < deadline {
        let resume = since
            .as_ref()
            .map(|s| format!("&since={s}"))
            .unwrap_or_default();
        let url = format!(
            "ws://{}/feed/f1?token={token}{resume}",
            addrs[target % addrs.len()]
        );
        let Ok(mut ws) = WsClient::connect(&url).await else {
            target += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        loop {
            match ws.next_json().await {
                Ok(frame) => {
                    let Some(seq) = frame["data"]["seq"].as_u64() else {
                        continue;
                    };
                    since = frame["offset"].as_str().map(str::to_owned);
                    got.seqs.push(seq);
                    if seq == last {
                        return Ok(got);
                    }
                }
                Err(_) => {
                    target += 1;
                    got.reconnects += 1;
                    continue 'connect;
                }
            }
        }
    }
    bail!("client never saw event {last}: got {}", got.seqs.len())
}

#[tokio::test]
async fn nothing_lost_nothing_repeated_through_redis_and_replica_crashes() -> Result<()> {
    let clients = env_or("HERALD_LOSS_CLIENTS", 20) as usize;
    let events = env_or("HERALD_LOSS_EVENTS", 300);
    let mut c = Cluster::on(
        RedisServer::start_persistent().await?,
        2,
        Some(FEED.to_owned()),
    )
    .await?;
    let addrs: Vec<String> = c.gateways.iter().map(|g| g.addr.clone()).collect();
    let readers: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(addrs.clone(), i, events - 1)))
        .collect();
    c.subscribers_become("res:feed:f1", 2).await?;

    let topic = Topic::resource("feed", "f1")?;
    for seq in 0..events {
        if seq == events / 3 {
            c.redis.kill().await;
            tokio::time::sleep(Duration::from_millis(300)).await; // an outage, not a blip
            c.redis.restart().await?;
        }
        if seq == 2 * events / 3 {
            c.gateways[0].kill().await?;
        }
        herald_tests::publish_retrying(
            &c.publisher,
            std::slice::from_ref(&topic),
            "tick",
            &json!({"seq": seq}),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let (mut delivered, mut lost, mut duplicated, mut reordered, mut reconnects) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for r in readers {
        let got = r.await??;
        let distinct: HashSet<u64> = got.seqs.iter().copied().collect();
        let missing: Vec<u64> = (0..events).filter(|s| !distinct.contains(s)).collect();
        if !missing.is_empty() {
            println!("client missed {missing:?} (reconnects {})", got.reconnects);
        }
        delivered += got.seqs.len() as u64;
        reconnects += got.reconnects;
        lost += events - distinct.len() as u64;
        duplicated += got.seqs.len() as u64 - distinct.len() as u64;
        reordered += got.seqs.windows(2).filter(|w| w[1] <= w[0]).count() as u64;
    }
    let sent = events * clients as u64;
    println!(
        "sent={sent} delivered={delivered} lost={lost} duplicated={duplicated} reordered={reordered} reconnects={reconnects}"
    );
    assert!(
        reconnects >= clients as u64 / 2,
        "the replica crash moved its clients: {reconnects}"
    );
    assert_eq!(
        (lost, duplicated, reordered),
        (0, 0, 0),
        "sent={sent} delivered={delivered}"
    );
    Ok(())
}
