//! `deploy/run-local.sh`, the cluster setup without Kubernetes: it starts a
//! redis-server and two gateway replicas on loopback ports with shared
//! credentials, prints when all are ready, delivers an event published on
//! one side to a client of the other, and stops every process it started on
//! SIGTERM.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use herald_tests::profiles::FEED;
use herald_tests::{
    EVENT_TIMEOUT, JWT_SECRET, WsClient, free_port, gateway_binary, heraldctl_publish, jwt,
    scratch_dir, unix_now, wait_until,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Two consecutive free ports (the script numbers replicas from a base).
fn consecutive_free_ports() -> u16 {
    loop {
        let base = free_port();
        let both = (0..2).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if base < u16::MAX - 2 && both {
            return base;
        }
    }
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn run_local_starts_redis_and_replicas_and_stops_them_all() -> Result<()> {
    let dir = scratch_dir("run-local");
    let config = dir.join("herald.toml");
    std::fs::write(&config, FEED)?;
    let redis_port = free_port();
    let base = consecutive_free_ports();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/run-local.sh");
    let mut child = Command::new("bash")
        .arg(&script)
        .arg("2")
        .env("HERALD_LOCAL_REDIS_PORT", redis_port.to_string())
        .env("HERALD_LOCAL_BASE_PORT", base.to_string())
        .env("HERALD_LOCAL_DIR", &dir)
        .env("HERALD_GATEWAY", gateway_binary())
        .env("HERALD_CONFIG", &config)
        .env("HERALD_JWT_SECRET", JWT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .context("run deploy/run-local.sh")?;
    let pid = child.id().context("pid")?;
    // Whatever happens below, nothing the script started outlives the test.
    let _group = KillGroupOnDrop(pid);
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(EVENT_TIMEOUT * 3, async {
        while let Some(line) = lines.next_line().await? {
            let done = line.contains("replicas ready");
            printed.push(line);
            if done {
                return anyhow::Ok(());
            }
        }
        anyhow::bail!("the script ended before its replicas were ready: {printed:?}")
    })
    .await
    .context("replicas not ready in time")??;
    let api_key = printed
        .iter()
        .find_map(|l| l.strip_prefix("HERALD_API_KEY="))
        .context("the API key is printed")?;
    ensure!(api_key.len() >= 32, "a generated key: {api_key}");

    // A client of replica 1 receives what is published through replica 0's
    // server API: the two share the script's Redis.
    let token = jwt("reader", None, &[], unix_now() + 600);
    let mut ws = WsClient::connect(&format!(
        "ws://127.0.0.1:{}/feed/f1?token={token}",
        base + 1
    ))
    .await?;
    let channel = "herald:{res:feed:f1}:ch";
    wait_until("replica 1 subscribed", || async {
        let out = Command::new("redis-cli")
            .args(["-p", &redis_port.to_string(), "PUBSUB", "NUMSUB", channel])
            .output()
            .await;
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().nth(1) == Some("1"))
    })
    .await?;
    heraldctl_publish(
        &[],
        &[
            "--http",
            &format!("http://127.0.0.1:{base}/herald/v1"),
            "--api-key",
            api_key,
        ],
        "res:feed:f1",
        "item",
        r#"{"n":7}"#,
    )
    .await?;
    let frame = ws.next_json().await?;
    assert_eq!(frame["data"], json!({"n": 7}), "{frame}");

    // SIGTERM: every process the script started is stopped.
    let out = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .output()
        .await?;
    ensure!(out.status.success(), "kill -TERM {pid}");
    let status = tokio::time::timeout(EVENT_TIMEOUT * 3, child.wait())
        .await
        .context("the script did not stop")??;
    assert!(status.success(), "exit status {status}");
    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await? {
        rest.push(line);
    }
    assert!(
        rest.iter().any(|l| l.starts_with("stopped 3 processes")),
        "{rest:?}"
    );
    for port in [redis_port, base, base + 1] {
        assert!(!listening(port), "port {port} is still served");
    }
    Ok(())
}

struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}
