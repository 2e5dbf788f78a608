//! `redis-server` processes the suites run gateways against, and asking them
//! what the gateways did (pub/sub subscriptions, keys).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::BufReader;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::process::{drain, free_port, scratch_dir, wait_for_line};
use crate::resp::{RedisConnection, Reply};
use crate::wait::EVENT_TIMEOUT;

/// A `redis-server` process on its own port; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
    /// Held across queries: conditions polled every 20 ms would otherwise
    /// open a connection (or start a process) per poll.
    conn: Mutex<Option<RedisConnection>>,
}

impl RedisServer {
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// With an append-only file fsynced on every write: a SIGKILL loses nothing.
    pub async fn start_persistent() -> Result<Self> {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).await
    }

    /// A server that requires `password` (`--requirepass`). The harness's
    /// own commands do not authenticate: use it only through the gateway
    /// and `heraldctl`.
    pub async fn start_with_password(password: &str) -> Result<Self> {
        Self::start_with(&["--appendonly", "no", "--requirepass", password]).await
    }

    async fn start_with(extra: &[&str]) -> Result<Self> {
        Self::start_on(free_port, extra).await
    }

    /// A node for a Redis Cluster: its cluster bus port (port + 10000) must
    /// be free too.
    pub(crate) async fn start_cluster_node() -> Result<Self> {
        let port = || loop {
            let p = free_port();
            if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
                return p;
            }
        };
        Self::start_on(
            port,
            &[
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                // A replica that never finished its first sync refuses to
                // stand for election; without this the sync waits 5 s.
                "--repl-diskless-sync-delay",
                "0",
            ],
        )
        .await
    }

    async fn start_on(port: impl Fn() -> u16, extra: &[&str]) -> Result<Self> {
        let dir = scratch_dir("redis");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let mut last_error = None;
        for _ in 0..5 {
            let mut server = Self {
                port: port(),
                child: None,
                dir: dir.clone(),
                extra: extra.clone(),
                conn: Mutex::new(None),
            };
            // Another process may take the free port before redis binds it.
            match server.spawn().await {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
            .context("could not start redis-server (is it installed?)"))
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

    /// A replica of `primary` (`--replicaof`), ready once its first sync is done.
    pub async fn start_replica_of(primary: &RedisServer) -> Result<Self> {
        let port = primary.port.to_string();
        let replica =
            Self::start_with(&["--appendonly", "no", "--replicaof", "127.0.0.1", &port]).await?;
        crate::wait::wait_until("the replica's link to its primary", || async {
            matches!(
                replica.command(&["INFO", "replication"]).await,
                Ok(Reply::Bulk(info)) if info.contains("master_link_status:up")
            )
        })
        .await?;
        Ok(replica)
    }

    /// A Redis that also requires TLS on a second port, with a certificate
    /// for 127.0.0.1 signed by a CA made for this test (`openssl`). The plain
    /// port stays open for the suite's own queries.
    pub async fn start_tls() -> Result<TlsRedis> {
        Self::start_tls_with(false).await
    }

    /// As [`Self::start_tls`], and the TLS port also requires a client
    /// certificate signed by the test CA (`--tls-auth-clients yes`).
    pub async fn start_mutual_tls() -> Result<TlsRedis> {
        Self::start_tls_with(true).await
    }

    async fn start_tls_with(client_certificates: bool) -> Result<TlsRedis> {
        let dir = scratch_dir("redis-tls");
        let files = make_certificates(&dir).await?;
        let tls_port = free_port();
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let server = Self::start_with(&[
            "--appendonly",
            "no",
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &path(&files.cert),
            "--tls-key-file",
            &path(&files.key),
            "--tls-ca-cert-file",
            &path(&files.ca),
            "--tls-auth-clients",
            if client_certificates { "yes" } else { "no" },
        ])
        .await?;
        Ok(TlsRedis {
            server,
            tls_port,
            ca_file: files.ca,
            client_cert: files.client_cert,
            client_key: files.client_key,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL: no goodbye to clients.
    pub async fn kill(&mut self) {
        *self.conn.get_mut() = None;
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

    /// Run one command on this server's held connection. An error reply is
    /// an `Err`.
    pub async fn command(&self, args: &[&str]) -> Result<Reply> {
        let mut slot = self.conn.lock().await;
        // Taken out while in use: if this future is dropped between request
        // and reply, the connection goes with it instead of handing that
        // reply to the next command.
        let (mut conn, mut fresh) = match slot.take() {
            Some(conn) => (conn, false),
            None => (RedisConnection::connect(self.port).await?, true),
        };
        loop {
            match conn.request(args).await {
                Ok(Reply::Error(e)) => {
                    *slot = Some(conn);
                    bail!("redis {args:?}: {e}");
                }
                Ok(reply) => {
                    *slot = Some(conn);
                    return Ok(reply);
                }
                Err(e) if fresh => return Err(e),
                // A held connection may have been closed by the server since
                // its last use (CLIENT KILL, a restart): once more, fresh.
                Err(_) => {
                    conn = RedisConnection::connect(self.port).await?;
                    fresh = true;
                }
            }
        }
    }

    /// `redis-cli -p <port> <args…>`'s output lines, as it prints them when
    /// piped (one line per value, arrays flattened, nil as an empty line).
    /// Commands go over the held connection ([`RedisServer::command`]): the
    /// suites poll with this, and a process per poll is slow. Only
    /// redis-cli's own modes (`--scan`, any argument list starting with `-`)
    /// start `redis-cli`. An error reply is an `Err` either way.
    pub async fn cli(&self, args: &[&str]) -> Result<Vec<String>> {
        if args.first().is_some_and(|a| a.starts_with('-')) {
            return self.redis_cli(args).await;
        }
        Ok(self.command(args).await?.cli_lines())
    }

    async fn redis_cli(&self, args: &[&str]) -> Result<Vec<String>> {
        let out = tokio::time::timeout(
            EVENT_TIMEOUT,
            Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .with_context(|| format!("redis-cli {args:?}: no answer within {EVENT_TIMEOUT:?}"))?
        .with_context(|| format!("run redis-cli {args:?}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "redis-cli {args:?} failed ({}): {}{}",
                out.status,
                stderr.trim(),
                stdout.trim()
            );
        }
        // redis-cli exits 0 on an error reply; it prints `(error) ERR …` on
        // a terminal and `ERR …` when piped.
        if let Some(error) = stdout
            .lines()
            .find(|l| l.starts_with("(error)") || l.starts_with("ERR "))
        {
            bail!("redis-cli {args:?}: {error}");
        }
        Ok(stdout.lines().map(str::to_owned).collect())
    }

    /// Whether a key exists; false when Redis cannot be asked (callers poll).
    pub async fn exists(&self, key: &str) -> bool {
        matches!(
            self.command(&["EXISTS", key]).await.map(|r| r.integer()),
            Ok(Ok(1))
        )
    }

    /// Members of a sorted set; None when Redis cannot be asked.
    pub async fn zcard(&self, key: &str) -> Option<i64> {
        self.command(&["ZCARD", key]).await.ok()?.integer().ok()
    }

    /// Subscribers of one pub/sub channel, across all connections.
    pub async fn numsub(&self, channel: &str) -> Result<u64> {
        let reply = self.command(&["PUBSUB", "NUMSUB", channel]).await?;
        match &reply {
            Reply::Array(items) if items.len() == 2 => {
                u64::try_from(items[1].integer()?).context("negative NUMSUB")
            }
            other => bail!("NUMSUB reply {other:?}"),
        }
    }

    /// Active channels matching a pattern, sorted.
    pub async fn channels(&self, pattern: &str) -> Result<Vec<String>> {
        let mut channels = self
            .command(&["PUBSUB", "CHANNELS", pattern])
            .await?
            .strings()?;
        channels.sort();
        Ok(channels)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A [`RedisServer`] that also listens with TLS.
#[derive(Debug)]
pub struct TlsRedis {
    pub server: RedisServer,
    pub tls_port: u16,
    /// The PEM certificate of the CA that signed the server's certificate.
    pub ca_file: PathBuf,
    /// A client certificate signed by that CA, and its key (PEM).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsRedis {
    /// `rediss://` on the TLS port.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port)
    }
}

struct CertificateFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// `openssl req` arguments for a new P-256 key, unencrypted.
const NEW_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A CA, a server certificate for 127.0.0.1 and a client certificate, both
/// signed by the CA (P-256 keys, valid a day).
async fn make_certificates(dir: &std::path::Path) -> Result<CertificateFiles> {
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
    let ca = ["-x509", "-keyout", &ca_key, "-out", &ca_pem, "-days", "1"];
    openssl(
        &[
            &["req"][..],
            &NEW_KEY,
            &ca,
            &["-subj", "/CN=Herald test CA"],
        ]
        .concat(),
    )
    .await?;
    let issued = [
        (
            "server",
            "/CN=127.0.0.1",
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "/CN=herald-gateway",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    ];
    for (name, subject, extensions) in issued {
        let ext = format!("{name}.ext");
        std::fs::write(dir.join(&ext), extensions)?;
        let (key, csr) = (p(&format!("{name}.key")), p(&format!("{name}.csr")));
        let request = ["-keyout", &key, "-out", &csr, "-subj", subject];
        openssl(&[&["req"][..], &NEW_KEY, &request].concat()).await?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&format!("{name}.csr")),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p(&format!("{name}.pem")),
            "-days",
            "1",
            "-extfile",
            &p(&ext),
        ])
        .await?;
    }
    Ok(CertificateFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    })
}

async fn openssl(args: &[&str]) -> Result<()> {
    let out = tokio::time::timeout(EVENT_TIMEOUT, Command::new("openssl").args(args).output())
        .await?
        .context("run openssl (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
