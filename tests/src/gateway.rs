//! `herald-gateway` processes: finding the binary, how to start one
//! ([`GatewayOptions`]), and driving it from outside (HTTP probes, signals,
//! its log).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use tokio::io::BufReader;
use tokio::process::{Child, Command};

use crate::http::http_get;
use crate::process::{drain, scratch_dir, wait_for_line};
use crate::tokens::{ADMIN_KEY, JWT_SECRET};
use crate::wait::wait_until;

/// The gateway binary built by `cargo build --workspace --bins`.
pub fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/herald-gateway
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let bin = dir.join("herald-gateway");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

/// How to start a gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    pub redis_url: Option<String>,
    /// TOML written to a file and passed with `--config`.
    pub config: Option<String>,
    pub env: Vec<(String, String)>,
    /// Leave out HERALD_ADMIN_KEY / HERALD_JWT_SECRET.
    pub no_secrets: bool,
}

/// A `herald-gateway` process; killed when dropped.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Gateway {
    pub async fn start(opts: GatewayOptions) -> Result<Self> {
        let dir = scratch_dir("gateway");
        let log = dir.join("gateway.log");
        let mut cmd = Command::new(gateway_binary());
        // Only what the test says: a developer's HERALD_* variables must not
        // leak into the process under test.
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HERALD_LISTEN", "127.0.0.1:0")
            .env("HERALD_LOG_FORMAT", "text")
            .env("RUST_LOG", "info,herald_gateway=debug");
        if !opts.no_secrets {
            cmd.env("HERALD_ADMIN_KEY", ADMIN_KEY)
                .env("HERALD_JWT_SECRET", JWT_SECRET);
        }
        if let Some(url) = &opts.redis_url {
            cmd.env("HERALD_REDIS_URL", url);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if let Some(text) = &opts.config {
            let path = dir.join("herald.toml");
            std::fs::write(&path, text)?;
            cmd.arg("--config").arg(path);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("spawn herald-gateway")?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        let mut reader = BufReader::new(stdout);
        let line = wait_for_line(&mut reader, "listening on")
            .await
            .map_err(|e| {
                anyhow!(
                    "{e}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })?;
        let addr = line.rsplit(' ').next().context("address")?.to_owned();
        drain(reader);
        Ok(Self { child, addr, log })
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{path_and_query}", self.addr)
    }

    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(&self.addr, path).await
    }

    pub async fn is_ready(&self) -> bool {
        matches!(self.get("/readyz").await, Ok((200, _)))
    }

    /// Wait until `/readyz` answers `want`.
    pub async fn wait_ready(&self, want: bool) -> Result<()> {
        wait_until(&format!("readyz == {want}"), || async {
            self.is_ready().await == want
        })
        .await
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Send a signal (`TERM`, `KILL`) to the process.
    pub async fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().context("already exited")?;
        let out = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .output()
            .await
            .context("run kill")?;
        ensure!(
            out.status.success(),
            "kill -{sig} {pid} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// Wait for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<Option<i32>> {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .context("gateway did not exit")??;
        Ok(status.code())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
