//! `herald-wsload`: a bounded load tool for BENCHMARKS.md.
//!
//! Opens N WebSocket connections to a server (Herald's kubegen route, or a
//! peer: `--protocol socketio|pusher`), all in one channel (or, with
//! `--topics K`, over K channels: connection i in channel i mod K, event n
//! published to channel n mod K), spread over the
//! addresses given (`--gateway a,b`: replicas), from `--openers` tasks at
//! once. It measures the servers' summed RSS before and after (idle cost
//! per connection), then publishes M events (Herald through
//! `herald-publisher`; the peers over their HTTP publish APIs) and
//! measures deliveries per second and the publish-to-receive latency
//! (p50/p99) over every delivery. Every socket checks that it received each
//! event exactly once: `lost` and `duplicated` count the misses and repeats
//! over all of them; for Herald it also reads each gateway's own fan-out
//! time (`herald_fanout_seconds`) over the run. Each socket is read (and the server's pings answered)
//! from the moment it joined. `--channel NAME` (default `bench`) lets
//! several load processes count only their own events.
//!
//! ```text
//! herald-wsload --gateway 127.0.0.1:8080 --pid $(pidof herald-gateway) \
//!   --publish redis://127.0.0.1:6390 --connections 2000 --events 200 --rate 100
//! ```
//! Herald needs HERALD_JWT_SECRET equal to --jwt-secret. Loopback only;
//! every loop is bounded by the counts given and a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use herald_tests::load::{Fanout, LightWs, Protocol, Publish, now_us, percentile_ms, sorted};
use herald_tests::{admin_jwt_signed_with, cpu_seconds, rss_kib};

struct Args {
    protocol: Protocol,
    gateways: Vec<String>,
    pids: Vec<u32>,
    /// Herald's Redis URL, or a peer's HTTP `host:port`.
    publish: String,
    connections: usize,
    openers: usize,
    events: u64,
    rate: u64,
    jwt_secret: String,
    channel: String,
    /// Channels the connections are spread over (1: all in `channel`).
    topics: u64,
    /// Ask each server for a full garbage collection before reading its
    /// RSS (the Socket.IO peer's `POST /gc`).
    gc: bool,
    /// A user (JWT `sub`) of its own per connection, as in a connect storm
    /// of real clients; otherwise one user for all.
    distinct_users: bool,
    /// Spread the clients over this many source addresses (127.0.1.x),
    /// one per opener in turn; 0 = the default address.
    sources: u8,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        protocol: Protocol::Herald,
        gateways: vec!["127.0.0.1:8080".into()],
        pids: Vec::new(),
        publish: "redis://127.0.0.1:6379".into(),
        connections: 1000,
        openers: 1,
        events: 100,
        rate: 100,
        jwt_secret: herald_tests::JWT_SECRET.into(),
        channel: "bench".into(),
        topics: 1,
        gc: false,
        distinct_users: false,
        sources: 0,
    };
    let list = |v: &str| v.split(',').map(str::to_owned).collect::<Vec<_>>();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--gc" => {
                a.gc = true;
                continue;
            }
            "--distinct-users" => {
                a.distinct_users = true;
                continue;
            }
            _ => {}
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--protocol" => a.protocol = Protocol::parse(&value)?,
            "--gateway" => a.gateways = list(&value),
            "--pid" => {
                a.pids = list(&value)
                    .iter()
                    .map(|p| p.parse())
                    .collect::<Result<_, _>>()?
            }
            "--publish" | "--redis" => a.publish = value,
            "--connections" => a.connections = value.parse()?,
            "--openers" => a.openers = value.parse::<usize>()?.max(1),
            "--sources" => a.sources = value.parse()?,
            "--events" => a.events = value.parse()?,
            "--rate" => a.rate = value.parse()?,
            "--jwt-secret" => a.jwt_secret = value,
            "--channel" => a.channel = value,
            "--topics" => a.topics = value.parse::<u64>()?.max(1),
            _ => bail!("unknown flag {flag}"),
        }
    }
    if let Some(g) = a.gateways.iter().find(|g| !g.starts_with("127.")) {
        bail!("loopback servers only, not {g}");
    }
    Ok(a)
}

impl Args {
    /// The channel of connection `i`, and of event `i`.
    fn channel_of(&self, i: u64) -> String {
        match self.topics {
            1 => self.channel.clone(),
            k => format!("{}-{}", self.channel, i % k),
        }
    }

    /// How many of the events go to topic `t` (events `t`, `t + K`, …).
    fn events_of(&self, t: u64) -> u64 {
        match t < self.events {
            true => (self.events - 1 - t) / self.topics + 1,
            false => 0,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(parse()?);
    let rss_before = rss(&args).await;
    let expected: u64 = (0..args.connections as u64)
        .map(|i| args.events_of(i % args.topics))
        .sum();
    let tallies = Arc::new(Tallies {
        received: AtomicU64::new(0),
        duplicated: AtomicU64::new(0),
        latencies: std::sync::Mutex::new(Vec::with_capacity(expected as usize)),
        first: std::sync::Mutex::new(Vec::with_capacity(args.connections)),
    });
    // Tokens are minted before the clock starts: a client arrives with one.
    let paths: Arc<Vec<String>> = Arc::new(match args.distinct_users {
        true => (0..args.connections)
            .map(|i| {
                let sub = format!("load-{}-{i}", args.channel);
                args.protocol
                    .path(&admin_jwt_signed_with(&args.jwt_secret, &sub))
            })
            .collect(),
        false => vec![
            args.protocol
                .path(&admin_jwt_signed_with(&args.jwt_secret, "load")),
        ],
    });
    let opened = Instant::now();
    let opened_from_us = now_us();
    // Each opener takes every `openers`-th connection, in turn over the
    // servers, and opens them one after another.
    let openers: Vec<_> = (0..args.openers)
        .map(|first| {
            let (args, tallies, paths) =
                (Arc::clone(&args), Arc::clone(&tallies), Arc::clone(&paths));
            tokio::spawn(async move { open(&args, &paths, first, &tallies).await })
        })
        .collect();
    let mut readers = Vec::with_capacity(args.connections);
    for opener in openers {
        readers.extend(opener.await??);
    }
    let open_secs = opened.elapsed().as_secs_f64();
    let opened_until_us = now_us();
    tokio::time::sleep(Duration::from_secs(2)).await; // let subscriptions and allocations settle
    let rss_idle = rss(&args).await;
    println!(
        "connections={} opened_per_s={:.0} opened_from_us={opened_from_us} opened_until_us={opened_until_us} \
         rss_before_kib={rss_before} rss_idle_kib={rss_idle} per_connection_kib={:.2}",
        args.connections,
        args.connections as f64 / open_secs,
        (rss_idle.saturating_sub(rss_before)) as f64 / args.connections as f64
    );

    let publisher = Publish::connect(args.protocol, &args.publish).await?;
    let cpu = || args.pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let fanout_before = fanouts(&args).await?;
    let cpu_before = cpu();
    let started = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    for n in 0..args.events {
        publisher.publish(&args.channel_of(n), n).await?;
        let next = started + gap * (n as u32 + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    let published_secs = started.elapsed().as_secs_f64();
    // Readers get 120 s after the last publish at the most; a reader still
    // waiting then has lost events (counted below), and is dropped at exit.
    // Each reader hands its socket back, closed only once every reader is
    // done: a client closing while others still wait for the last event
    // would charge its disconnect to their latency.
    let sockets = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(readers),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    let gateway_cpu = cpu() - cpu_before;
    drop(sockets);
    let fanout = fanouts(&args).await?;
    let got = tallies.received.load(Ordering::Relaxed);
    let dup = tallies.duplicated.load(Ordering::Relaxed);
    let l = sorted(&tallies.latencies);
    let pct = |p: f64| percentile_ms(&l, p);
    let first = sorted(&tallies.first);
    println!(
        "events={} deliveries={got}/{expected} lost={} duplicated={dup} offered_per_s={:.0} \
         deliveries_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} first_event_p99_ms={:.2} \
         gateway_cpu_s={gateway_cpu:.2} gateway_cpu_us_per_delivery={:.2}",
        args.events,
        expected - got,
        expected as f64 / published_secs,
        got as f64 / secs,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        percentile_ms(&first, 0.99),
        gateway_cpu * 1e6 / got.max(1) as f64
    );
    if let (Some(after), Some(before)) = (fanout, fanout_before) {
        // Every gateway's fan-outs of the run as one distribution (a
        // replica's delivery probes among them: a few, and quick).
        let mut run = Fanout::default();
        for (a, b) in after.iter().zip(&before) {
            run.add(&a.since(b));
        }
        println!(
            "fanouts={} fanout_ms_mean={:.2} fanout_ms_p50={:.2} fanout_ms_p99={:.2}",
            run.count(),
            run.mean_ms(),
            run.quantile_ms(0.50),
            run.quantile_ms(0.99)
        );
    }
    Ok(())
}

/// Each Herald gateway's fan-out histogram (`None` for the peers, which
/// have none).
async fn fanouts(args: &Args) -> Result<Option<Vec<Fanout>>> {
    if args.protocol != Protocol::Herald {
        return Ok(None);
    }
    let http = reqwest::Client::new();
    let mut all = Vec::with_capacity(args.gateways.len());
    for g in &args.gateways {
        all.push(Fanout::scrape(&http, g).await?);
    }
    Ok(Some(all))
}

/// Open this opener's share of the connections; each starts its reader as
/// soon as it joined, so the server's pings are answered while the rest open.
async fn open(
    args: &Args,
    paths: &[String],
    first: usize,
    tallies: &Arc<Tallies>,
) -> Result<Vec<tokio::task::JoinHandle<LightWs>>> {
    let mut readers = Vec::new();
    for i in (first..args.connections).step_by(args.openers) {
        let server = &args.gateways[i % args.gateways.len()];
        let path = &paths[i % paths.len()];
        let source = (args.sources > 0)
            .then(|| std::net::Ipv4Addr::new(127, 0, 1, 1 + (i % args.sources as usize) as u8));
        let mut ws = LightWs::connect(server, path, source)
            .await
            .with_context(|| format!("connection {i} to {server}"))?;
        args.protocol
            .join(&mut ws, &args.channel_of(i as u64))
            .await?;
        let topic = i as u64 % args.topics;
        readers.push(tokio::spawn(read_events(
            ws,
            args.protocol,
            (topic, args.topics),
            args.events_of(topic),
            Arc::clone(tallies),
        )));
    }
    Ok(readers)
}

/// The servers' summed RSS, after a full collection where asked.
async fn rss(args: &Args) -> u64 {
    if args.gc {
        let client = reqwest::Client::new();
        for server in &args.gateways {
            let _ = client.post(format!("http://{server}/gc")).send().await;
        }
    }
    args.pids.iter().map(|p| rss_kib(*p)).sum()
}

/// What every socket's reader adds up.
struct Tallies {
    received: AtomicU64,
    duplicated: AtomicU64,
    latencies: std::sync::Mutex<Vec<u64>>,
    /// The first event's latencies alone: a connection's first delivery
    /// pays for buffers that later ones reuse.
    first: std::sync::Mutex<Vec<u64>>,
}

/// One socket's reader: answers the route's pings, records each event's
/// latency once, counts repeats, until every event of its topic (`t` of
/// `k`: events t, t + k, …) came or the socket ends.
async fn read_events(
    mut ws: LightWs,
    protocol: Protocol,
    (t, k): (u64, u64),
    events: u64,
    tallies: Arc<Tallies>,
) -> LightWs {
    let mut mine = Vec::with_capacity(events as usize);
    let mut seen = vec![false; events as usize];
    let mut text = Vec::new();
    let mut first = None;
    while (mine.len() as u64) < events {
        let Some((n, sent)) = protocol.next_event(&mut ws, &mut text).await else {
            break;
        };
        // An event of another topic is a misdelivery: counted with repeats.
        let mine_n = (n % k == t).then_some(n / k);
        match mine_n.and_then(|i| seen.get_mut(i as usize)) {
            Some(seen) if !*seen => {
                *seen = true;
                let latency = now_us().saturating_sub(sent);
                if n == t {
                    first = Some(latency);
                }
                mine.push(latency);
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
    if let (Some(latency), Ok(mut l)) = (first, tallies.first.lock()) {
        l.push(latency);
    }
    ws
}
