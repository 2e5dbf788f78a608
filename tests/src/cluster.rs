//! A deployment in miniature: one Redis, gateway replicas on it, and a
//! publisher, with a way to wait for the replicas' subscriptions.

use anyhow::{Result, ensure};

use crate::gateway::{Gateway, GatewayOptions};
use crate::redis::RedisServer;
use crate::tokens::OPERATOR_KEY;
use crate::wait::wait_until;
use crate::ws::WsClient;

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

    /// `n` replicas whose server API takes [`OPERATOR_KEY`].
    pub async fn with_operator_key(n: usize, config: Option<String>) -> Result<Self> {
        Self::with_env(n, config, &[("HERALD_API_KEY", OPERATOR_KEY)]).await
    }

    /// `n` replicas with extra environment variables.
    pub async fn with_env(n: usize, config: Option<String>, env: &[(&str, &str)]) -> Result<Self> {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::on_with(RedisServer::start().await?, n, config, env).await
    }

    /// `n` replicas on a given Redis.
    pub async fn on(redis: RedisServer, n: usize, config: Option<String>) -> Result<Self> {
        Self::on_with(redis, n, config, Vec::new()).await
    }

    async fn on_with(
        redis: RedisServer,
        n: usize,
        config: Option<String>,
        env: Vec<(String, String)>,
    ) -> Result<Self> {
        let mut gateways = Vec::new();
        for _ in 0..n {
            let gw = Gateway::start(GatewayOptions {
                redis_url: Some(redis.url()),
                config: config.clone(),
                env: env.clone(),
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

    /// A docsfy `/api/ws` client on a replica with `token`, past its `sync`
    /// (sent once the replica's subscriptions are in place).
    pub async fn docsfy_client(&self, replica: usize, token: &str) -> Result<WsClient> {
        let url = self.gw(replica).ws_url(&format!("/api/ws?token={token}"));
        let mut ws = WsClient::connect(&url).await?;
        let first = ws.next_json().await?;
        ensure!(
            first["type"] == "sync",
            "docsfy's first frame is sync: {first}"
        );
        Ok(ws)
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
