//! Support for Herald's black-box suites: real `redis-server` processes,
//! real `herald-gateway` processes and real WebSocket clients.
//!
//! The gateway binary is the one `cargo build --workspace --bins` left next
//! to the test executables (`target/<profile>/herald-gateway`); the suites
//! never run the gateway in-process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single awaited event may take before a test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin key every test gateway gets.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
/// The JWT secret every test gateway gets.
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789";

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
async fn wait_for_line<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    needle: &str,
) -> Result<String> {
    let mut line = String::new();
    tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                bail!("process exited before printing `{needle}`");
            }
            if line.contains(needle) {
                return Ok(line.trim().to_owned());
            }
        }
    })
    .await
    .map_err(|_| anyhow!("timed out waiting for `{needle}`"))?
}

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
        // Keep draining its log so the pipe never fills.
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink).await;
        });
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
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
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

/// The bundled default configuration text.
pub fn default_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/herald.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The bundled configuration with `from` replaced by `to` inside the
/// `[[profiles]]` entry named `profile` only.
pub fn profile_config(profile: &str, edits: &[(&str, &str)]) -> String {
    let text = default_config();
    let marker = "\n[[profiles]]\n";
    let mut parts: Vec<String> = text.split(marker).map(str::to_owned).collect();
    let name = format!("name = \"{profile}\"");
    let block = parts
        .iter_mut()
        .find(|p| p.contains(&name))
        .unwrap_or_else(|| panic!("no profile {profile}"));
    for (from, to) in edits {
        assert!(block.contains(from), "profile {profile} has no `{from}`");
        *block = block.replace(from, to);
    }
    parts.join(marker)
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
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink).await;
        });
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
        Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .await?;
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

/// Poll a condition every 20 ms until it holds (for state only observable by
/// asking: readiness, Redis subscriptions). Fails after [`EVENT_TIMEOUT`].
pub async fn wait_until<F, Fut>(what: &str, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("timed out waiting for {what}")
}

/// A minimal HTTP/1.1 GET, enough for health and metrics endpoints.
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(EVENT_TIMEOUT, stream.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A WebSocket client.
#[derive(Debug)]
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    Frame {
        code: u16,
        reason: String,
    },
    /// The TCP connection ended without a close frame.
    Abrupt,
}

impl Closed {
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Frame { code, .. } => Some(*code),
            Self::Abrupt => None,
        }
    }
}

impl WsClient {
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, &[]).await
    }

    /// Connect with extra request headers (Cookie, Authorization, Origin).
    /// Connect over a socket with a tiny receive buffer, for a client that
    /// stops reading: the server's writes to it block after a few KiB.
    pub async fn connect_small_buffer(addr: &str, path: &str) -> Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let tcp = socket.connect(addr.parse()?).await?;
        let req = format!("ws://{addr}{path}").into_client_request()?;
        let (stream, _) = tokio::time::timeout(
            EVENT_TIMEOUT,
            tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)),
        )
        .await??;
        Ok(Self { stream })
    }

    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Self> {
        let mut req = url.into_client_request()?;
        for (k, v) in headers {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes())?,
                http::HeaderValue::from_str(v)?,
            );
        }
        let (stream, _) =
            tokio::time::timeout(EVENT_TIMEOUT, tokio_tungstenite::connect_async(req)).await??;
        Ok(Self { stream })
    }

    /// The next text frame as JSON. Fails on close or timeout.
    pub async fn next_json(&mut self) -> Result<Value> {
        loop {
            let msg = tokio::time::timeout(EVENT_TIMEOUT, self.stream.next())
                .await
                .map_err(|_| anyhow!("no frame within {EVENT_TIMEOUT:?}"))?;
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
                Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("socket error: {e}"),
                None => bail!("socket ended"),
            }
        }
    }

    /// The next frame whose `type` is not `skip` (heartbeat pings, say).
    pub async fn next_json_except(&mut self, skip: &str) -> Result<Value> {
        loop {
            let v = self.next_json().await?;
            if v["type"] != skip {
                return Ok(v);
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.stream.send(Message::Text(text.into())).await?;
        Ok(())
    }

    pub async fn send_json(&mut self, v: &Value) -> Result<()> {
        self.send_text(&v.to_string()).await
    }

    /// A text frame with arbitrary (possibly invalid UTF-8) bytes.
    pub async fn send_raw_text(&mut self, bytes: Vec<u8>) -> Result<()> {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.stream.send(Message::Frame(frame)).await?;
        Ok(())
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.stream.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// Read until the server closes; returns the close frame. Text frames
    /// before it are returned too, so callers can assert on them.
    pub async fn until_closed(&mut self) -> Result<(Vec<Value>, Closed)> {
        let mut seen = Vec::new();
        loop {
            let msg = tokio::time::timeout(EVENT_TIMEOUT, self.stream.next())
                .await
                .map_err(|_| anyhow!("not closed within {EVENT_TIMEOUT:?}; saw {seen:?}"))?;
            match msg {
                Some(Ok(Message::Text(t))) => seen.push(serde_json::from_str(t.as_str())?),
                Some(Ok(Message::Close(f))) => return Ok((seen, closed(f))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok((seen, Closed::Abrupt)),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

fn closed(f: Option<CloseFrame>) -> Closed {
    match f {
        Some(f) => Closed::Frame {
            code: u16::from(f.code),
            reason: f.reason.to_string(),
        },
        None => Closed::Frame {
            code: 1005,
            reason: String::new(),
        },
    }
}

/// One Redis and `n` gateway replicas on it, plus a publisher.
#[derive(Debug)]
pub struct Cluster {
    pub redis: RedisServer,
    pub gateways: Vec<Gateway>,
    pub publisher: herald_publisher::Publisher,
}

impl Cluster {
    /// `n` replicas with the bundled configuration (or `config`).
    pub async fn start(n: usize, config: Option<String>) -> Result<Self> {
        Self::on(RedisServer::start().await?, n, config).await
    }

    /// `n` replicas on a given Redis.
    pub async fn on(redis: RedisServer, n: usize, config: Option<String>) -> Result<Self> {
        let mut gateways = Vec::new();
        for _ in 0..n {
            let gw = Gateway::start(GatewayOptions {
                redis_url: Some(redis.url()),
                config: config.clone(),
                ..Default::default()
            })
            .await?;
            gateways.push(gw);
        }
        for gw in &gateways {
            gw.wait_ready(true).await?;
        }
        let publisher = herald_publisher::Publisher::connect(&redis.url()).await?;
        Ok(Self {
            redis,
            gateways,
            publisher,
        })
    }

    pub fn gw(&self, i: usize) -> &Gateway {
        &self.gateways[i]
    }

    /// Wait until `n` replicas hold a Redis subscription to `topic`.
    pub async fn subscribers_become(&self, topic: &str, n: u64) -> Result<()> {
        let channel = format!("herald:{{{topic}}}:ch");
        wait_until(&format!("{n} subscriber(s) of {channel}"), || async {
            self.redis.numsub(&channel).await.ok() == Some(n)
        })
        .await
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HS256 token signed with [`JWT_SECRET`].
pub fn jwt(sub: &str, org: Option<&str>, roles: &[&str], exp: u64) -> String {
    jwt_with_topics(sub, org, roles, &[], exp)
}

/// An HS256 token with a `topics` claim (globs the holder may subscribe to).
pub fn jwt_with_topics(
    sub: &str,
    org: Option<&str>,
    roles: &[&str],
    topics: &[&str],
    exp: u64,
) -> String {
    let claims = herald_shared::Claims {
        sub: sub.to_owned(),
        org: org.map(str::to_owned),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        exp,
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

/// One Server-Sent Event as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: String,
}

type SseStream = std::pin::Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<std::io::Error>,
                >,
            > + Send,
    >,
>;

/// A Server-Sent Events client: plain HTTP over TCP, events parsed by
/// `eventsource-stream` (the parser behind reqwest-eventsource).
pub struct SseClient {
    events: SseStream,
}

impl std::fmt::Debug for SseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SseClient")
    }
}

/// What an SSE request got: a stream, or a refusal with its status and body.
#[derive(Debug)]
pub enum SseResponse {
    Stream(SseClient),
    Refused { status: u16, body: String },
}

impl SseClient {
    /// GET `path` with `Accept: text/event-stream` and extra headers.
    pub async fn connect(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<SseResponse> {
        use eventsource_stream::Eventsource;
        let mut stream = TcpStream::connect(addr).await?;
        let mut req =
            format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        tokio::time::timeout(EVENT_TIMEOUT, reader.read_line(&mut status_line)).await??;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("status")?;
        loop {
            let mut line = String::new();
            tokio::time::timeout(EVENT_TIMEOUT, reader.read_line(&mut line)).await??;
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        if status != 200 {
            let mut body = String::new();
            tokio::time::timeout(EVENT_TIMEOUT, reader.read_to_string(&mut body)).await??;
            return Ok(SseResponse::Refused { status, body });
        }
        let bytes = tokio_util::io::ReaderStream::new(reader);
        Ok(SseResponse::Stream(SseClient {
            events: Box::pin(bytes.eventsource()),
        }))
    }

    /// The next event (keep-alive comments are skipped by the parser).
    pub async fn next_event(&mut self) -> Result<SseEvent> {
        let next = tokio::time::timeout(EVENT_TIMEOUT, self.events.next())
            .await
            .map_err(|_| anyhow!("no SSE event within {EVENT_TIMEOUT:?}"))?;
        match next {
            Some(Ok(e)) => Ok(SseEvent {
                id: e.id,
                event: e.event,
                data: e.data,
            }),
            Some(Err(e)) => bail!("SSE error: {e}"),
            None => bail!("SSE stream ended"),
        }
    }
}

impl SseResponse {
    pub fn stream(self) -> Result<SseClient> {
        match self {
            Self::Stream(s) => Ok(s),
            Self::Refused { status, body } => bail!("refused with {status}: {body}"),
        }
    }
}

/// Assert an error frame of the flat `{type,code,message,timestamp}` shape
/// (Stella Ops): `code`, a non-empty message (or exactly `message`), an
/// RFC 3339 UTC timestamp.
pub fn assert_error_frame(frame: &Value, code: &str, message: Option<&str>) {
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], code, "{frame}");
    match message {
        Some(m) => assert_eq!(frame["message"], m, "{frame}"),
        None => assert!(
            frame["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{frame}"
        ),
    }
    assert!(
        frame["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{frame}"
    );
}

/// Publish `data` to `audience`, retrying while Redis is unreachable (fault
/// tests keep publishing through outages); fails after 20 s.
pub async fn publish_retrying(
    publisher: &herald_publisher::Publisher,
    audience: &[herald_publisher::Topic],
    event_type: &str,
    data: &Value,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while publisher.publish(audience, event_type, data).await.is_err() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "publish kept failing: {data}"
        );
    }
    Ok(())
}

/// URL-safe base64 without padding, for hand-made (forged) JWTs.
pub fn base64url(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
