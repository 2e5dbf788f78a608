//! Plumbing for the child processes the suites start: scratch directories,
//! free ports, and waiting for a child to say it is ready.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::wait::EVENT_TIMEOUT;

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(label: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "herald-test-{}-{}-{label}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok();
    dir
}

/// A port nobody listens on right now (tiny race; callers retry on bind failure).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Read lines from a child's output until one contains `needle`.
pub(crate) async fn wait_for_line<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    needle: &str,
) -> Result<String> {
    Ok(lines_until(reader, needle).await?.1)
}

/// The lines printed before the first one containing `needle`, and that line.
pub(crate) async fn lines_until<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    needle: &str,
) -> Result<(Vec<String>, String)> {
    let mut before = Vec::new();
    let mut line = String::new();
    tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                bail!("process exited before printing `{needle}`");
            }
            if line.contains(needle) {
                return Ok((before, line.trim().to_owned()));
            }
            before.push(line.trim_end().to_owned());
        }
    })
    .await
    .map_err(|_| anyhow!("timed out waiting for `{needle}`"))?
}

/// Keep reading a child's output after it is ready, so the pipe never fills
/// and blocks the child's writes.
pub(crate) fn drain<R: tokio::io::AsyncRead + Unpin + Send + 'static>(mut reader: BufReader<R>) {
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink).await;
    });
}
