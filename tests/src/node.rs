//! Real clients written in JavaScript (`tests/clients/`): a Node process
//! driven by lines on its stdin and reporting JSON lines on its stdout.
//! The test command installs Node and the clients' npm packages; a missing
//! one fails the test with what to install.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::wait::EVENT_TIMEOUT;

/// `tests/clients/`, where the scripts and their `node_modules` live.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// A running `node tests/clients/SCRIPT …` in a process group of its own,
/// killed with everything it started (a browser) on drop.
#[derive(Debug)]
pub struct NodeScript {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl NodeScript {
    /// Start `script` with `args` and extra environment variables.
    pub fn start(script: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let dir = clients_dir();
        if !dir.join("node_modules").is_dir() {
            bail!(
                "{}/node_modules is missing: run ./scripts/test.sh (it runs `npm ci` there)",
                dir.display()
            );
        }
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            // Its own group, so a drop also ends the browser it launched
            // (which would otherwise hold the test's output open).
            .process_group(0)
            .spawn()
            .context("cannot start `node` (Node.js 20+ is needed: apt-get install nodejs npm)")?;
        let stdin = child.stdin.take().context("node stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("node stdout")?).lines();
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// The next JSON line the script printed, within `EVENT_TIMEOUT`.
    pub async fn next_json(&mut self) -> Result<serde_json::Value> {
        self.next_json_within(EVENT_TIMEOUT).await
    }

    pub async fn next_json_within(
        &mut self,
        within: std::time::Duration,
    ) -> Result<serde_json::Value> {
        let line = tokio::time::timeout(within, self.stdout.next_line())
            .await
            .context("timed out waiting for the Node client")??
            .context("the Node client exited")?;
        serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))
    }

    /// Skip lines until one satisfies `pred`; fails on timeout or exit.
    pub async fn next_matching(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self
                .next_json_within(left)
                .await
                .with_context(|| format!("waiting for {what}"))?;
            if pred(&v) {
                return Ok(v);
            }
        }
    }

    /// Send one command line to the script.
    pub async fn send_line(&mut self, line: &str) -> Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Wait for the script to exit; its status code.
    pub async fn wait(&mut self) -> Result<Option<i32>> {
        let status = tokio::time::timeout(EVENT_TIMEOUT * 6, self.child.wait())
            .await
            .context("the Node script did not exit")??;
        Ok(status.code())
    }
}

impl Drop for NodeScript {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}
