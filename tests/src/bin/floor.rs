//! `herald-floor`: the physical floor of a fan-out on this machine, for
//! BENCHMARKS.md. No gateway: N loopback TCP connections, and for each event
//! one thread (in a child process holding the server ends) writes the same
//! pre-encoded WebSocket text frame to every socket, one `write(2)` each.
//! Readers (the client of `herald-wsload`, `load::LightWs`, a tokio task
//! per socket) record each frame's latency from the start of its burst. Whatever a gateway adds on top of this
//! (queues, tasks, encoding, batching) is its own cost.
//!
//! ```text
//! herald-floor --connections 10000 --events 100 --rate 10
//! ```
//! Prints the burst time (the writer's time to reach every socket) and the
//! receive latency (p50/p99/max), in the format of `herald-wsload`.
//! `--writer-cpus LIST` runs the writer under `taskset -c LIST`: with the
//! floor itself started under `taskset` on other CPUs, writer and readers
//! do not share a core.
//! Loopback only; every loop is bounded by the counts given.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herald_tests::load::{LightWs, now_us, percentile_ms, sorted};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

struct Args {
    connections: usize,
    events: u64,
    rate: u64,
    /// The writing side, run as a child process: one process cannot hold
    /// both ends of 10,000 connections under a 20,000 open-file limit.
    writer: bool,
    /// CPUs the writer is held to (`taskset -c`), if any.
    writer_cpus: Option<String>,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        connections: 1000,
        events: 100,
        rate: 10,
        writer: false,
        writer_cpus: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--writer" {
            a.writer = true;
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--connections" => a.connections = value.parse()?,
            "--events" => a.events = value.parse()?,
            "--rate" => a.rate = value.parse()?,
            "--writer-cpus" => a.writer_cpus = Some(value),
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

/// A server-to-client WebSocket text frame (unmasked) carrying a
/// fixed-width payload: `{"n":…,"t":…}` padded to `PAYLOAD` bytes.
const PAYLOAD: usize = 48;

fn frame(n: u64, t: u64) -> Vec<u8> {
    let mut body = format!(r#"{{"n":{n},"t":{t}}}"#).into_bytes();
    body.resize(PAYLOAD, b' ');
    let mut f = vec![0x81, PAYLOAD as u8];
    f.extend_from_slice(&body);
    f
}

/// The writer: accepts the connections, then on a line on stdin writes
/// every event to every socket from one thread (blocking sockets, one write
/// per socket per event) and prints the median burst time.
fn write_events(args: &Args) -> Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let mut sockets = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (socket, _) = listener.accept()?;
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let gap = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let started = Instant::now();
    let mut bursts = Vec::with_capacity(args.events as usize);
    for n in 0..args.events {
        let f = frame(n, now_us());
        let burst = Instant::now();
        for socket in &mut sockets {
            socket.write_all(&f)?;
        }
        bursts.push(burst.elapsed().as_secs_f64() * 1000.0);
        let next = started + gap * (n as u32 + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    bursts.sort_by(f64::total_cmp);
    println!(
        "burst_ms_median={:.2} burst_ms_mean={:.2}",
        bursts.get(bursts.len() / 2).copied().unwrap_or(0.0),
        bursts.iter().sum::<f64>() / bursts.len().max(1) as f64
    );
    // Keep the sockets open until the readers are done with them.
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse()?;
    if args.writer {
        return write_events(&args);
    }
    let exe = std::env::current_exe()?;
    let mut writer = match &args.writer_cpus {
        None => tokio::process::Command::new(&exe),
        Some(cpus) => {
            let mut c = tokio::process::Command::new("taskset");
            c.args(["-c", cpus]).arg(&exe);
            c
        }
    };
    let mut writer = writer
        .args(["--writer", "--connections", &args.connections.to_string()])
        .args([
            "--events",
            &args.events.to_string(),
            "--rate",
            &args.rate.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut to_writer = writer.stdin.take().context("writer stdin")?;
    let mut from_writer =
        tokio::io::BufReader::new(writer.stdout.take().context("writer stdout")?).lines();
    let port: u16 = from_writer
        .next_line()
        .await?
        .context("the writer's port")?
        .parse()?;
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut readers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let client = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        client.set_nodelay(true)?;
        let (received, latencies, events) =
            (Arc::clone(&received), Arc::clone(&latencies), args.events);
        readers.push(tokio::spawn(async move {
            let mut client = LightWs::over(client);
            let mut mine = Vec::with_capacity(events as usize);
            let mut text = Vec::new();
            for _ in 0..events {
                if !matches!(client.next_text(&mut text).await, Ok(true)) {
                    break;
                }
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
                    continue;
                };
                if let Some(sent) = v["t"].as_u64() {
                    mine.push(now_us().saturating_sub(sent));
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Ok(mut l) = latencies.lock() {
                l.extend(mine);
            }
        }));
    }
    let started = Instant::now();
    to_writer.write_all(b"start\n").await?;
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(120), r).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let burst = from_writer
        .next_line()
        .await?
        .context("the writer's bursts")?;
    to_writer.write_all(b"done\n").await?;
    let _ = writer.wait().await;
    let got = received.load(Ordering::Relaxed);
    let expected = args.events * args.connections as u64;
    ensure!(got == expected, "received {got} of {expected}");
    let l = sorted(&latencies);
    let pct = |p: f64| percentile_ms(&l, p);
    println!(
        "floor connections={} events={} deliveries={got}/{expected} deliveries_per_s={:.0} \
         {burst} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        args.connections,
        args.events,
        got as f64 / secs,
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    Ok(())
}
