//! A Sentinel deployment on loopback: one primary, one replica and three
//! sentinels (`redis-server --sentinel`) watching them under the name
//! `herald`, quorum 2, a primary declared down after 1 s.

use std::process::Stdio;

use anyhow::{Context, Result};
use tokio::io::BufReader;
use tokio::process::{Child, Command};

use crate::process::{drain, free_port, scratch_dir, wait_for_line};
use crate::redis::RedisServer;
use crate::resp::{RedisConnection, Reply};
use crate::wait::wait_until;

/// The service name the sentinels monitor.
const SERVICE: &str = "herald";

#[derive(Debug)]
pub struct Sentinels {
    pub primary: RedisServer,
    pub replica: RedisServer,
    ports: Vec<u16>,
    _sentinels: Vec<Child>,
}

impl Sentinels {
    /// Start the primary, its replica and three sentinels, and wait until
    /// every sentinel knows the replica and the other two sentinels (what a
    /// failover needs).
    pub async fn start() -> Result<Self> {
        let primary = RedisServer::start().await?;
        let replica = RedisServer::start_replica_of(&primary).await?;
        let mut sentinels = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let (child, port) = spawn_sentinel(primary.port()).await?;
            sentinels.push(child);
            ports.push(port);
        }
        for &port in &ports {
            wait_until(
                "a sentinel that knows the replica and its peers",
                || async {
                    let Ok(mut conn) = RedisConnection::connect(port).await else {
                        return false;
                    };
                    let count = |reply: Result<Reply>| match reply {
                        Ok(Reply::Array(items)) => items.len(),
                        _ => 0,
                    };
                    count(conn.command(&["SENTINEL", "REPLICAS", SERVICE]).await) == 1
                        && count(conn.command(&["SENTINEL", "SENTINELS", SERVICE]).await) == 2
                },
            )
            .await?;
        }
        Ok(Self {
            primary,
            replica,
            ports,
            _sentinels: sentinels,
        })
    }

    /// The `redis-sentinel://` URL naming all three sentinels.
    pub fn url(&self) -> String {
        let others: String = self.ports[1..]
            .iter()
            .map(|p| format!("&node=127.0.0.1:{p}"))
            .collect();
        format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={SERVICE}{others}",
            self.ports[0]
        )
    }

    /// `HOST:PORT` of every sentinel (the explicit form of [`Self::url`]).
    pub fn nodes(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The name the sentinels monitor the primary under.
    pub fn service_name(&self) -> &'static str {
        SERVICE
    }

    /// The port of the primary as the first sentinel sees it now.
    pub async fn primary_port(&self) -> Result<u16> {
        let mut conn = RedisConnection::connect(self.ports[0]).await?;
        match conn
            .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])
            .await?
        {
            Reply::Array(items) => match items.get(1) {
                Some(Reply::Bulk(port)) => Ok(port.parse()?),
                other => anyhow::bail!("unexpected port {other:?}"),
            },
            other => anyhow::bail!("unexpected reply {other:?}"),
        }
    }
}

async fn spawn_sentinel(primary: u16) -> Result<(Child, u16)> {
    let dir = scratch_dir("sentinel");
    let port = free_port();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {SERVICE} 1000\n\
             sentinel failover-timeout {SERVICE} 5000\n\
             sentinel parallel-syncs {SERVICE} 1\n",
            dir.display()
        ),
    )?;
    let mut child = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawn redis-server --sentinel")?;
    let stdout = child.stdout.take().context("sentinel stdout")?;
    let mut reader = BufReader::new(stdout);
    wait_for_line(&mut reader, "+monitor master").await?;
    drain(reader);
    Ok((child, port))
}
