//! `herald-wsload`: a bounded load tool for BENCHMARKS.md.
//!
//! Opens N WebSocket connections to a gateway (the kubegen route, all
//! subscribed to one channel), measures the gateway's RSS before and after
//! (idle cost per connection), then publishes M events through
//! `herald-publisher` and measures deliveries per second and the
//! publish-to-receive latency (p50/p99) over every delivery. Every socket
//! checks that it received each event exactly once: `lost` and
//! `duplicated` count the misses and repeats over all of them. Each socket
//! is read (and the route's pings answered) from the moment it opens.
//! `--channel NAME` (default `bench`) lets several load processes, one per
//! replica, count only their own events.
//!
//! ```text
//! herald-wsload --gateway 127.0.0.1:8080 --pid $(pidof herald-gateway) \
//!   --redis redis://127.0.0.1:6390 --connections 2000 --events 200 --rate 100
//! ```
//! The gateway needs HERALD_JWT_SECRET equal to --jwt-secret. Loopback only;
//! every loop is bounded by the counts given and a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use herald_publisher::{Publisher, Topic};
use herald_tests::load::{now_us, percentile_ms};
use herald_tests::{admin_jwt_signed_with, cpu_seconds, rss_kib};
use tokio_tungstenite::tungstenite::Message;

struct Args {
    gateway: String,
    pid: u32,
    redis: String,
    connections: usize,
    events: u64,
    rate: u64,
    jwt_secret: String,
    channel: String,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        gateway: "127.0.0.1:8080".into(),
        pid: 0,
        redis: "redis://127.0.0.1:6379".into(),
        connections: 1000,
        events: 100,
        rate: 100,
        jwt_secret: herald_tests::JWT_SECRET.into(),
        channel: "bench".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--gateway" => a.gateway = value,
            "--pid" => a.pid = value.parse()?,
            "--redis" => a.redis = value,
            "--connections" => a.connections = value.parse()?,
            "--events" => a.events = value.parse()?,
            "--rate" => a.rate = value.parse()?,
            "--jwt-secret" => a.jwt_secret = value,
            "--channel" => a.channel = value,
            _ => bail!("unknown flag {flag}"),
        }
    }
    if !a.gateway.starts_with("127.") && !a.gateway.starts_with("localhost") {
        bail!("loopback gateways only");
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse()?;
    let token = admin_jwt_signed_with(&args.jwt_secret, "load");
    let rss_before = rss_kib(args.pid);
    let url = format!("ws://{}/v1/ws?token={token}", args.gateway);
    let subscribe = serde_json::json!({"type": "subscribe", "channel": args.channel}).to_string();
    let expected = args.events * args.connections as u64;
    let tallies = Arc::new(Tallies {
        received: AtomicU64::new(0),
        duplicated: AtomicU64::new(0),
        latencies: std::sync::Mutex::new(Vec::with_capacity(expected as usize)),
    });
    let mut readers = Vec::with_capacity(args.connections);
    let opened = Instant::now();
    for _ in 0..args.connections {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        ws.send(Message::Text(subscribe.as_str().into())).await?;
        // Read from the start: the route's heartbeat pings must be answered
        // even while the other connections are still opening.
        readers.push(tokio::spawn(read_events(
            ws,
            args.events,
            Arc::clone(&tallies),
        )));
    }
    let open_secs = opened.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await; // let subscriptions and allocations settle
    let rss_idle = rss_kib(args.pid);
    println!(
        "connections={} opened_per_s={:.0} rss_before_kib={rss_before} rss_idle_kib={rss_idle} per_connection_kib={:.2}",
        args.connections,
        args.connections as f64 / open_secs,
        (rss_idle.saturating_sub(rss_before)) as f64 / args.connections as f64
    );

    let publisher = Publisher::connect(&args.redis).await?;
    let topic = [Topic::resource("kubegen", &args.channel)?];
    let cpu_before = cpu_seconds(args.pid);
    let started = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    for n in 0..args.events {
        publisher
            .publish(&topic, "bench", &serde_json::json!({"n": n, "t": now_us()}))
            .await?;
        let next = started + gap * (n as u32 + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    // Readers get 120 s after the last publish at the most; a reader still
    // waiting then has lost events (counted below), and is dropped at exit.
    let _ = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(readers),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    let gateway_cpu = cpu_seconds(args.pid) - cpu_before;
    let got = tallies.received.load(Ordering::Relaxed);
    let dup = tallies.duplicated.load(Ordering::Relaxed);
    let mut l = tallies
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    l.sort_unstable();
    let pct = |p: f64| percentile_ms(&l, p);
    println!(
        "events={} deliveries={got}/{expected} lost={} duplicated={dup} deliveries_per_s={:.0} \
         p50_ms={:.2} p99_ms={:.2} max_ms={:.2} gateway_cpu_s={gateway_cpu:.2} \
         gateway_cpu_us_per_delivery={:.2}",
        args.events,
        expected - got,
        got as f64 / secs,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        gateway_cpu * 1e6 / got.max(1) as f64
    );
    Ok(())
}

/// What every socket's reader adds up.
struct Tallies {
    received: AtomicU64,
    duplicated: AtomicU64,
    latencies: std::sync::Mutex<Vec<u64>>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One socket's reader: answers the route's pings, records each event's
/// latency once, counts repeats, until every event came or the socket ends.
async fn read_events(mut ws: Socket, events: u64, tallies: Arc<Tallies>) {
    let mut mine = Vec::with_capacity(events as usize);
    let mut seen = vec![false; events as usize];
    while (mine.len() as u64) < events {
        // No timer and no cancellation per read: both cost the client more
        // than the floor's readers pay. `main` bounds the wait instead.
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            _ => break,
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
            continue;
        };
        if v["type"] == "ping" {
            if ws
                .send(Message::Text(r#"{"type":"pong"}"#.into()))
                .await
                .is_err()
            {
                break;
            }
            continue;
        }
        let (Some(sent), Some(n)) = (v["data"]["t"].as_u64(), v["data"]["n"].as_u64()) else {
            continue;
        };
        match seen.get_mut(n as usize) {
            Some(seen) if !*seen => {
                *seen = true;
                mine.push(now_us().saturating_sub(sent));
                tallies.received.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                tallies.duplicated.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if let Ok(mut l) = tallies.latencies.lock() {
        l.extend(mine);
    }
}
