//! `herald-pubload`: publishing throughput for BENCHMARKS.md, the server API
//! against `herald-publisher`, on the same gateway and Redis.
//!
//! Publishes `--events` events to 100 resource topics from `--concurrency`
//! tasks, one of three ways: `http` (one `POST /publish` per event), `batch`
//! (`POST /publish/batch` of `--batch` events) or `redis` (`Publisher::publish`
//! straight to Redis, no gateway in the path). Prints requests/s, events/s
//! and the p50/p99 latency of one call.
//!
//! ```text
//! herald-pubload --mode http --api http://127.0.0.1:8080/herald/v1 --key KEY \
//!   --redis redis://127.0.0.1:6390 --events 20000 --concurrency 16
//! ```
//! Loopback only; bounded by the count given and a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use herald_publisher::{HttpPublisher, Publisher, Topic};
use serde_json::json;

#[derive(Clone)]
struct Args {
    mode: String,
    api: String,
    key: String,
    redis: String,
    events: u64,
    concurrency: u64,
    batch: u64,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        mode: "http".into(),
        api: "http://127.0.0.1:8080/herald/v1".into(),
        key: String::new(),
        redis: "redis://127.0.0.1:6379".into(),
        events: 10_000,
        concurrency: 16,
        batch: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => a.mode = value,
            "--api" => a.api = value,
            "--key" => a.key = value,
            "--redis" => a.redis = value,
            "--events" => a.events = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--batch" => a.batch = value.parse()?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    let loopback = |u: &str| u.contains("//127.") || u.contains("//localhost");
    if !loopback(&a.api) || !loopback(&a.redis) {
        bail!("loopback only");
    }
    if !matches!(a.mode.as_str(), "http" | "batch" | "redis") || a.concurrency == 0 || a.batch == 0
    {
        bail!("--mode http|batch|redis, --concurrency and --batch above zero");
    }
    Ok(a)
}

enum Client {
    Http(HttpPublisher, reqwest::Client),
    Redis(Publisher),
}

/// One call: `n` events (one unless batching). Returns events published.
async fn call(client: &Client, args: &Args, seq: u64) -> Result<u64> {
    let topic = |i: u64| Topic::resource("bench", &format!("t{}", i % 100));
    match client {
        Client::Http(api, _) if args.mode == "http" => {
            api.publish(&[topic(seq)?], "tick", &json!({"seq": seq}), None)
                .await?;
            Ok(1)
        }
        Client::Http(_, raw) => {
            let events: Vec<_> = (0..args.batch)
                .map(|i| json!({"to": [format!("res:bench:t{}", (seq + i) % 100)], "type": "tick", "data": {"seq": seq + i}}))
                .collect();
            let response = raw
                .post(format!("{}/publish/batch", args.api))
                .bearer_auth(&args.key)
                .json(&json!({ "events": events }))
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "batch: {}",
                response.status()
            );
            Ok(args.batch)
        }
        Client::Redis(p) => {
            p.publish(&[topic(seq)?], "tick", &json!({"seq": seq}))
                .await?;
            Ok(1)
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse()?;
    let client = Arc::new(match args.mode.as_str() {
        "redis" => Client::Redis(Publisher::connect(&args.redis).await?),
        _ => Client::Http(
            HttpPublisher::new(&args.api, &args.key)?,
            reqwest::Client::new(),
        ),
    });
    let per_call = if args.mode == "batch" { args.batch } else { 1 };
    let calls = args.events.div_ceil(per_call);
    let deadline = Instant::now() + Duration::from_secs(300);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|t| {
            let (client, args) = (Arc::clone(&client), args.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut published = 0;
                let mut call_no = t;
                while call_no < calls && Instant::now() < deadline {
                    let at = Instant::now();
                    published += call(&client, &args, call_no * per_call).await?;
                    latencies.push(at.elapsed());
                    call_no += args.concurrency;
                }
                anyhow::Ok((latencies, published))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut published = 0;
    for t in tasks {
        let (l, p) = t.await??;
        latencies.extend(l);
        published += p;
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "mode={} events={published} calls={} concurrency={} seconds={secs:.2} requests_per_s={:.0} events_per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
        args.mode,
        latencies.len(),
        args.concurrency,
        latencies.len() as f64 / secs,
        published as f64 / secs,
        pct(0.50),
        pct(0.99),
    );
    Ok(())
}
