//! `redis-server` processes the suites run gateways against, and asking them
//! what the gateways did (pub/sub subscriptions, keys).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::BufReader;
use tokio::process::{Child, Command};

use crate::process::{drain, free_port, scratch_dir, wait_for_line};
use crate::wait::EVENT_TIMEOUT;

/// A `redis-server` process on its own port; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// With an append-only file fsynced on every write: a SIGKILL loses nothing.
    pub async fn start_persistent() -> Result<Self> {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).await
    }

    async fn start_with(extra: &[&str]) -> Result<Self> {
        let dir = scratch_dir("redis");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                child: None,
                dir: dir.clone(),
                extra: extra.clone(),
            };
            if server.spawn().await.is_ok() {
                return Ok(server);
            }
        }
        bail!("could not start redis-server (is it installed?)")
    }

    async fn spawn(&mut self) -> Result<()> {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(if self.extra.is_empty() {
                vec!["--appendonly".to_owned(), "no".to_owned()]
            } else {
                self.extra.clone()
            })
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn redis-server")?;
        let stdout = child.stdout.take().context("redis stdout")?;
        let mut reader = BufReader::new(stdout);
        wait_for_line(&mut reader, "Ready to accept connections").await?;
        drain(reader);
        self.child = Some(child);
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL: no goodbye to clients.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Start again on the same port (after [`RedisServer::kill`]).
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await;
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            match self.spawn().await {
                Ok(()) => return Ok(()),
                // The old socket may linger for a moment; the port is ours to retry.
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Run a command with `redis-cli` and return its raw output lines.
    pub async fn cli(&self, args: &[&str]) -> Result<Vec<String>> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .await?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Subscribers of one pub/sub channel, across all connections.
    pub async fn numsub(&self, channel: &str) -> Result<u64> {
        let lines = self.cli(&["PUBSUB", "NUMSUB", channel]).await?;
        lines
            .get(1)
            .and_then(|l| l.trim().parse().ok())
            .context("NUMSUB reply")
    }

    /// Active channels matching a pattern.
    pub async fn channels(&self, pattern: &str) -> Result<Vec<String>> {
        let mut lines = self.cli(&["PUBSUB", "CHANNELS", pattern]).await?;
        lines.retain(|l| !l.is_empty());
        lines.sort();
        Ok(lines)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
