//! Plumbing for the child processes the suites start: scratch directories,
//! free ports, waiting for a child to say it is ready, and what a process
//! costs (RSS, CPU time) for the load tools.

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

/// Resident memory of a process, in KiB (`VmRSS`); 0 when unknown.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds a process has used (utime + stime of `/proc/PID/stat`); 0
/// when unknown.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After the command name, which is in parentheses, the line goes on at
    // field 3; utime and stime are fields 14 and 15, so 11 and 12 here.
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Linux reports clock ticks, 100 per second.
    (ticks(11) + ticks(12)) / 100.0
}
