//! `herald-topicload`: many-topic fan-out for BENCHMARKS.md, one Redis
//! against a Redis Cluster.
//!
//! Opens `--connections` WebSocket connections to a gateway (the kubegen
//! route, read with the load tools' light client), each subscribed to a
//! channel of its own, so there are as many topics as connections. Once the
//! gateway holds them all, `--concurrency` tasks publish `--events` events
//! through `herald-publisher` as fast as Redis takes them, one topic after
//! another, each event to one topic. It prints the publish and delivery
//! rates, the deliveries lost, repeated and out of order (each socket checks
//! its topic's sequence), the publish-to-receive latency, and the CPU each
//! Redis server (`--redis-node`, repeated) spent per publish.
//!
//! ```text
//! herald-topicload --gateway 127.0.0.1:8080 --redis redis-cluster://127.0.0.1:7000 \
//!   --redis-node 127.0.0.1:7000 --redis-node 127.0.0.1:7001 --redis-node 127.0.0.1:7002 \
//!   --connections 10000 --events 200000 --concurrency 64
//! ```
//! The gateway needs HERALD_JWT_SECRET equal to --jwt-secret. Loopback only;
//! every loop is bounded by the counts given and a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use herald_publisher::{Publisher, Topic};
use herald_tests::load::{LightWs, Protocol, now_us, percentile_ms, sorted};
use herald_tests::{RedisConnection, Reply, admin_jwt_signed_with, cpu_seconds, http_get, metric};

struct Args {
    gateway: String,
    pid: u32,
    redis: String,
    nodes: Vec<u16>,
    connections: usize,
    events: u64,
    concurrency: u64,
    jwt_secret: String,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        gateway: "127.0.0.1:8080".into(),
        pid: 0,
        redis: "redis://127.0.0.1:6379".into(),
        nodes: Vec::new(),
        connections: 10_000,
        events: 100_000,
        concurrency: 64,
        jwt_secret: herald_tests::JWT_SECRET.into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--gateway" => a.gateway = value,
            "--redis" => a.redis = value,
            "--pid" => a.pid = value.parse()?,
            "--redis-node" => {
                let port = value
                    .strip_prefix("127.0.0.1:")
                    .context("--redis-node must be 127.0.0.1:PORT")?;
                a.nodes.push(port.parse()?);
            }
            "--connections" => a.connections = value.parse()?,
            "--events" => a.events = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--jwt-secret" => a.jwt_secret = value,
            _ => bail!("unknown flag {flag}"),
        }
    }
    let loopback = |u: &str| u.contains("//127.") || u.contains("//localhost");
    if !a.gateway.starts_with("127.") || !loopback(&a.redis) {
        bail!("loopback only");
    }
    Ok(a)
}

/// CPU seconds a Redis server has used (`INFO cpu`, user + system).
async fn redis_cpu(port: u16) -> Result<f64> {
    let mut conn = RedisConnection::connect(port).await?;
    let Reply::Bulk(info) = conn.request(&["INFO", "cpu"]).await? else {
        bail!("INFO cpu: not a bulk string");
    };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(field("used_cpu_user:") + field("used_cpu_sys:"))
}

/// The gateway's `herald_topics_subscribed`.
async fn topics_held(gateway: &str) -> f64 {
    let Ok((_, text)) = http_get(gateway, "/metrics").await else {
        return 0.0;
    };
    metric(&text, "herald_topics_subscribed").unwrap_or(0.0)
}

/// What every socket's reader adds up.
#[derive(Default)]
struct Tallies {
    received: AtomicU64,
    duplicated: AtomicU64,
    out_of_order: AtomicU64,
    latencies: std::sync::Mutex<Vec<u64>>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse()?;
    let path = Protocol::Herald.path(&admin_jwt_signed_with(&args.jwt_secret, "load"));
    let baseline = topics_held(&args.gateway).await;
    let mut sockets = Vec::with_capacity(args.connections);
    let opened = Instant::now();
    for i in 0..args.connections {
        // Spread over loopback source addresses: tens of thousands of
        // sockets from one address make every connect search long for a
        // free local port.
        let source = std::net::Ipv4Addr::new(127, 0, 1, 1 + (i % 64) as u8);
        let mut ws = LightWs::connect(&args.gateway, &path, Some(source))
            .await
            .with_context(|| format!("connection {i}"))?;
        Protocol::Herald.join(&mut ws, &format!("t{i}")).await?;
        sockets.push(ws);
    }
    // Publishing starts only once the gateway holds every topic.
    let want = baseline + args.connections as f64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while topics_held(&args.gateway).await < want {
        if Instant::now() > deadline {
            bail!("the gateway did not subscribe every topic in time");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "connections={} topics={} subscribed_per_s={:.0}",
        args.connections,
        args.connections,
        args.connections as f64 / opened.elapsed().as_secs_f64()
    );

    let connections = args.connections as u64;
    let per_socket = args.events / connections;
    let expected = per_socket * connections;
    let tallies = Arc::new(Tallies::default());
    let mut readers = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let tallies = Arc::clone(&tallies);
        readers.push(tokio::spawn(read_topic(
            ws,
            i as u64,
            connections,
            per_socket,
            tallies,
        )));
    }

    let publisher = Arc::new(Publisher::connect(&args.redis).await?);
    let mut cpu_before = Vec::new();
    for port in &args.nodes {
        cpu_before.push(redis_cpu(*port).await?);
    }
    let gateway_before = cpu_seconds(args.pid);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let mut publishers = Vec::new();
    for _ in 0..args.concurrency {
        let (publisher, next) = (Arc::clone(&publisher), Arc::clone(&next));
        publishers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= expected || Instant::now() > deadline {
                    return anyhow::Ok(());
                }
                let topic = Topic::resource("kubegen", &format!("t{}", n % connections))?;
                publisher
                    .publish(
                        &[topic],
                        "bench",
                        &serde_json::json!({"n": n, "t": now_us()}),
                    )
                    .await?;
            }
        }));
    }
    for p in publishers {
        p.await??;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let mut cpu = Vec::new();
    for (port, before) in args.nodes.iter().zip(&cpu_before) {
        cpu.push(redis_cpu(*port).await? - before);
    }
    // Readers get 60 s after the last publish; one still waiting then has
    // lost events (counted below). Sockets close only once all are done.
    let sockets = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(readers),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    let gateway_cpu = cpu_seconds(args.pid) - gateway_before;
    drop(sockets);
    let got = tallies.received.load(Ordering::Relaxed);
    let cpu_total: f64 = cpu.iter().sum();
    let shares: Vec<String> = cpu.iter().map(|c| format!("{c:.2}")).collect();
    let l = sorted(&tallies.latencies);
    println!(
        "events={expected} published_per_s={:.0} deliveries={got}/{expected} lost={} duplicated={} \
         out_of_order={} deliveries_per_s={:.0} p50_ms={:.2} p99_ms={:.2} redis_cpu_s=[{}] \
         redis_cpu_us_per_publish={:.1} gateway_cpu_s={:.2} gateway_cpu_us_per_delivery={:.1}",
        expected as f64 / publish_secs,
        expected.saturating_sub(got),
        tallies.duplicated.load(Ordering::Relaxed),
        tallies.out_of_order.load(Ordering::Relaxed),
        got as f64 / secs,
        percentile_ms(&l, 0.50),
        percentile_ms(&l, 0.99),
        shares.join(","),
        cpu_total * 1e6 / expected as f64,
        gateway_cpu,
        gateway_cpu * 1e6 / got.max(1) as f64,
    );
    Ok(())
}

/// Socket `i`'s reader: its topic gets events `i`, `i + topics`, … in that
/// order; each is counted once, with its latency, until all came or the
/// socket ended. Answers the route's pings.
async fn read_topic(
    mut ws: LightWs,
    i: u64,
    topics: u64,
    events: u64,
    tallies: Arc<Tallies>,
) -> LightWs {
    let mut mine = Vec::with_capacity(events as usize);
    let mut next = i;
    let mut text = Vec::new();
    while (mine.len() as u64) < events {
        let Some((n, sent)) = Protocol::Herald.next_event(&mut ws, &mut text).await else {
            break;
        };
        if n < next {
            tallies.duplicated.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if n != next {
            tallies.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        next = n + topics;
        mine.push(now_us().saturating_sub(sent));
        tallies.received.fetch_add(1, Ordering::Relaxed);
    }
    if let Ok(mut l) = tallies.latencies.lock() {
        l.extend(mine);
    }
    ws
}
