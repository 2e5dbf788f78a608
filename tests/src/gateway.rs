//! `herald-gateway` processes: finding a current binary, how to start one
//! ([`GatewayOptions`]), and driving it from outside (HTTP probes, signals,
//! its log).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use tokio::io::BufReader;
use tokio::process::{Child, Command};

use crate::http::http_get;
use crate::process::{drain, lines_until, scratch_dir};
use crate::tokens::{ADMIN_KEY, JWT_SECRET};
use crate::wait::wait_until;

/// The gateway binary, current with its sources, or a panic saying why not.
///
/// Running one suite (`cargo test -p herald-tests --test resume`) builds no
/// other package's binaries, so a binary left by an earlier build would be
/// tested without notice. The first call in a test process therefore checks
/// `herald-gateway` and `heraldctl` (which some suites run too) against what
/// they were built from: every source file cargo listed in their dep-info
/// (`target/<profile>/<bin>.d`, the gateway's and `herald-shared`'s sources)
/// plus the manifests and `Cargo.lock`. When any is newer it runs
/// `cargo build --workspace --bins` rather than failing: a lockfile or
/// manifest change that does not affect the binaries leaves them older than
/// their inputs yet current, cargo will not relink them, and a check that
/// only failed would keep failing. Cargo's own fingerprints decide (a no-op
/// when nothing relevant changed), with the exact command `scripts/test.sh`
/// runs, so features resolve identically and nothing is rebuilt twice.
/// `cargo test` has released the build directory lock by the time test
/// binaries run; the build only waits for other cargo commands on the same
/// target directory, which is why the up-to-date case does not start one.
pub fn gateway_binary() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(|| current_binaries().map_err(|e| format!("{e:#}"))) {
        Ok(bin) => bin.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Poll `/readyz` at `addr` until it has been seen not ready and then ready
/// again: (seen not ready, ready again), within 60 s. Polled, because
/// readiness is only observable by asking.
pub async fn readiness_dip(addr: String) -> (bool, bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut was_unready = false;
    while tokio::time::Instant::now() < deadline {
        let ready = matches!(http_get(&addr, "/readyz").await, Ok((200, _)));
        if !ready {
            was_unready = true;
        } else if was_unready {
            return (true, true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (was_unready, false)
}

/// Run `heraldctl` with only `env` set; its stdout, or an error with its
/// stderr when it exits non-zero.
pub async fn heraldctl(env: &[(&str, &str)], args: &[&str]) -> Result<String> {
    let out = Command::new(gateway_binary().with_file_name("heraldctl"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .await
        .context("run heraldctl")?;
    ensure!(
        out.status.success(),
        "heraldctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `heraldctl CONNECTION… publish --to TOPIC --type TYPE --data DATA`: the
/// connection arguments say how (`--redis URL`, `--http URL --api-key K`,
/// TLS files…).
pub async fn heraldctl_publish(
    env: &[(&str, &str)],
    connection: &[&str],
    topic: &str,
    event_type: &str,
    data: &str,
) -> Result<String> {
    let publish = [
        "publish", "--to", topic, "--type", event_type, "--data", data,
    ];
    heraldctl(env, &[connection, &publish[..]].concat()).await
}

/// Binaries the suites run, next to each other in `target/<profile>/`.
const BINARIES: [&str; 3] = ["herald-gateway", "heraldctl", "herald-wsload"];

fn current_binaries() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate the test executable")?;
    // target/<profile>/deps/<test> → target/<profile>/herald-gateway
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable outside target/<profile>/deps")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let bins = BINARIES.map(|name| profile_dir.join(name));
    if !bins.iter().all(|bin| is_current(bin, workspace)) {
        build_binaries(workspace, profile_dir)?;
    }
    for bin in &bins {
        ensure!(
            bin.exists(),
            "{} missing after `cargo build --workspace --bins`",
            bin.display()
        );
    }
    Ok(bins[0].clone())
}

/// Whether `bin` is newer than every input cargo recorded for it and every
/// manifest; anything unreadable counts as not current.
fn is_current(bin: &Path, workspace: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified());
    let Ok(built) = modified(bin) else {
        return false;
    };
    let Ok(dep_info) = std::fs::read_to_string(bin.with_extension("d")) else {
        return false;
    };
    let manifests = [
        "Cargo.lock",
        "Cargo.toml",
        "gateway/Cargo.toml",
        "shared/Cargo.toml",
        "publisher/Cargo.toml",
    ]
    .map(|m| workspace.join(m));
    let sources = dep_info_inputs(&dep_info);
    !sources.is_empty()
        && sources
            .iter()
            .chain(&manifests)
            .all(|input| modified(input).is_ok_and(|m| m <= built))
}

/// The prerequisites of a Makefile-style dep-info rule
/// (`target: input input…`, spaces in paths escaped as `\ `).
fn dep_info_inputs(dep_info: &str) -> Vec<PathBuf> {
    let Some(line) = dep_info.lines().find(|l| !l.trim().is_empty()) else {
        return Vec::new();
    };
    let Some((_, inputs)) = line.split_once(": ") else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = inputs.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => {
                if !current.is_empty() {
                    paths.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        paths.push(PathBuf::from(current));
    }
    paths
}

fn build_binaries(workspace: &Path, profile_dir: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--workspace", "--bins"]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    let out = cmd.output().context("run cargo")?;
    ensure!(
        out.status.success(),
        "the black-box suites need current binaries and `cargo build --workspace --bins` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn dep_info_inputs_are_the_rule_prerequisites() {
        assert_eq!(
            super::dep_info_inputs("/t/herald-gateway: /w/a.rs /w/my\\ dir/b.rs\n\n"),
            [PathBuf::from("/w/a.rs"), PathBuf::from("/w/my dir/b.rs")]
        );
        assert!(super::dep_info_inputs("").is_empty());
    }
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
    /// What the gateway printed on stdout before its listening line (the
    /// development-mode banner).
    pub banner: Vec<String>,
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
        let (banner, line) = lines_until(&mut reader, "listening on")
            .await
            .map_err(|e| {
                anyhow!(
                    "{e}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })?;
        let addr = line.rsplit(' ').next().context("address")?.to_owned();
        drain(reader);
        Ok(Self {
            child,
            addr,
            log,
            banner,
        })
    }

    /// A gateway with the bundled configuration on `redis`, ready.
    pub async fn on_redis(redis: &crate::RedisServer) -> Result<Self> {
        let gw = Self::start(GatewayOptions {
            redis_url: Some(redis.url()),
            ..Default::default()
        })
        .await?;
        gw.wait_ready(true).await?;
        Ok(gw)
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
