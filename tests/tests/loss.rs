//! The loss test: N clients on two replicas, each holding three topics (its
//! user's, its org's and a resource), M events spread over them; mid-run
//! Redis is killed with SIGKILL and restarted, then one replica is killed
//! with SIGKILL. Clients of the dead replica reconnect to the other one with
//! their resume position, which names all three topics. It prints `sent`,
//! `delivered`, `lost`, `duplicated` and `reordered` (within a topic), and
//! with history on all but `sent`/`delivered` must be 0.
//!
//! Rerun with other sizes: `HERALD_LOSS_CLIENTS=100 HERALD_LOSS_EVENTS=2000
//! cargo test -p herald-tests --test loss -- --nocapture`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use herald_publisher::Topic;
use herald_tests::profiles::DESK;
use herald_tests::{Cluster, RedisServer, WsClient, jwt, unix_now, wait_until};
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The topics every client holds; event `seq` goes to `TOPICS[seq % 3]`.
const TOPICS: [&str; 3] = ["user:reader", "org:acme", "res:desk:d1"];

#[derive(Debug, Default)]
struct Received {
    seqs: Vec<u64>,
    reconnects: u64,
}

/// One client: reads until it has seen `last`, reconnecting (to the next
/// replica, with its resume position) whenever its connection ends. It
/// counts itself `ready` once it has heard a `hello` on every topic.
async fn client(
    addrs: Vec<String>,
    first: usize,
    last: u64,
    ready: Arc<AtomicUsize>,
) -> Result<Received> {
    let token = jwt("reader", Some("acme"), &[], unix_now() + 3600);
    let mut got = Received::default();
    let mut since: Option<String> = None;
    let mut heard: HashSet<String> = HashSet::new();
    let mut target = first;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    'connect: while tokio::time::Instant::now() < deadline {
        let resume = since
            .as_ref()
            .map(|s| format!("&since={s}"))
            .unwrap_or_default();
        let url = format!(
            "ws://{}/desk/d1?token={token}{resume}",
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
                    if let Some(position) = frame["offset"].as_str() {
                        since = Some(position.to_owned());
                    }
                    if frame["type"] == "hello" {
                        if let Some(topic) = frame["data"]["topic"].as_str()
                            && heard.insert(topic.to_owned())
                            && heard.len() == TOPICS.len()
                        {
                            ready.fetch_add(1, Ordering::SeqCst);
                        }
                        continue;
                    }
                    let Some(seq) = frame["data"]["seq"].as_u64() else {
                        continue;
                    };
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
    let events = env_or("HERALD_LOSS_EVENTS", 1200);
    let mut c = Cluster::on(
        RedisServer::start_persistent().await?,
        2,
        Some(DESK.to_owned()),
    )
    .await?;
    let addrs: Vec<String> = c.gateways.iter().map(|g| g.addr.clone()).collect();
    let ready = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(addrs.clone(), i, events - 1, Arc::clone(&ready))))
        .collect();
    let topics = TOPICS
        .iter()
        .map(|t| Topic::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    // Every client hears every topic before the run: from then on its
    // position names all three.
    wait_until("every client hears every topic", || async {
        for topic in &topics {
            let hello = json!({"topic": topic.as_str()});
            let _ = c
                .publisher
                .publish(std::slice::from_ref(topic), "hello", &hello)
                .await;
        }
        ready.load(Ordering::SeqCst) == clients
    })
    .await?;

    for seq in 0..events {
        if seq == events / 3 {
            c.redis.kill().await;
            tokio::time::sleep(Duration::from_millis(300)).await; // an outage, not a blip
            c.redis.restart().await?;
        }
        if seq == 2 * events / 3 {
            c.gateways[0].kill().await?;
        }
        // No retry loop: the publisher's window carries it through the outage.
        c.publisher
            .publish(
                std::slice::from_ref(&topics[(seq % 3) as usize]),
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
        // Within a topic, events must arrive in publish order.
        for t in 0..3 {
            let on_topic: Vec<u64> = got.seqs.iter().copied().filter(|s| s % 3 == t).collect();
            reordered += on_topic.windows(2).filter(|w| w[1] <= w[0]).count() as u64;
        }
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
