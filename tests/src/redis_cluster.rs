//! A Redis Cluster on loopback: three primaries and three replicas
//! (`redis-server --cluster-enabled yes`, then `redis-cli --cluster create`),
//! and which node owns a key's slot.

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::redis::RedisServer;
use crate::resp::Reply;
use crate::wait::{EVENT_TIMEOUT, wait_until};

#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Six nodes, three of them replicas, every slot served.
    pub async fn start() -> Result<Self> {
        let mut nodes = Vec::new();
        for _ in 0..6 {
            nodes.push(RedisServer::start_cluster_node().await?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = tokio::time::timeout(
            EVENT_TIMEOUT,
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .output(),
        )
        .await?
        .context("run redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let cluster = Self { nodes };
        for node in &cluster.nodes {
            wait_until("cluster_state:ok and three replicas", || async {
                let ok = matches!(
                    node.command(&["CLUSTER", "INFO"]).await,
                    Ok(Reply::Bulk(info)) if info.contains("cluster_state:ok")
                );
                let replicas = match node.command(&["CLUSTER", "NODES"]).await {
                    Ok(Reply::Bulk(nodes)) => nodes.lines().filter(|l| l.contains("slave")).count(),
                    _ => 0,
                };
                ok && replicas == 3
            })
            .await?;
        }
        // A replica takes over only once it has synced with its primary.
        for node in &cluster.nodes {
            wait_until("every replica's link to its primary is up", || async {
                match node.command(&["INFO", "replication"]).await {
                    Ok(Reply::Bulk(info)) => {
                        info.contains("role:master") || info.contains("master_link_status:up")
                    }
                    _ => false,
                }
            })
            .await?;
        }
        Ok(cluster)
    }

    /// `redis-cluster://` naming three seed nodes.
    pub fn url(&self) -> String {
        let others: String = self.nodes[1..3]
            .iter()
            .map(|n| format!("&node=127.0.0.1:{}", n.port()))
            .collect();
        format!(
            "redis-cluster://127.0.0.1:{}?{}",
            self.nodes[0].port(),
            others.trim_start_matches('&')
        )
    }

    /// `HOST:PORT` of the three seed nodes [`Self::url`] names.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes[..3]
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    /// The node serving `key`'s slot as a primary now, asked of any live node.
    pub async fn owner_of(&self, key: &str) -> Result<&RedisServer> {
        for asked in &self.nodes {
            let Ok(Reply::Integer(slot)) = asked.command(&["CLUSTER", "KEYSLOT", key]).await else {
                continue;
            };
            let Ok(Reply::Bulk(table)) = asked.command(&["CLUSTER", "NODES"]).await else {
                continue;
            };
            for line in table
                .lines()
                .filter(|l| l.contains("master") && !l.contains("fail"))
            {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let serves = fields.iter().skip(8).any(|range| {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    matches!((lo.parse::<i64>(), hi.parse::<i64>()), (Ok(lo), Ok(hi)) if lo <= slot && slot <= hi)
                });
                let port = fields
                    .get(1)
                    .and_then(|a| a.split(['@', ':']).nth(1))
                    .and_then(|p| p.parse::<u16>().ok());
                if serves && let Some(node) = self.nodes.iter().find(|n| Some(n.port()) == port) {
                    return Ok(node);
                }
            }
        }
        bail!("no live node owns the slot of {key}")
    }

    /// Move the slot of `key`, with its keys, from the primary serving it to
    /// the primary `to` (an index in `nodes`), the way `redis-cli --cluster
    /// reshard` moves one slot: IMPORTING/MIGRATING, MIGRATE every key, then
    /// SETSLOT NODE on every primary.
    pub async fn migrate_slot(&self, key: &str, to: usize) -> Result<()> {
        let from = self.owner_of(key).await?;
        let dest = self.nodes.get(to).context("no such node")?;
        let Reply::Integer(slot) = from.command(&["CLUSTER", "KEYSLOT", key]).await? else {
            bail!("CLUSTER KEYSLOT {key}: not an integer");
        };
        let slot = slot.to_string();
        let (from_id, dest_id) = (node_id(from).await?, node_id(dest).await?);
        dest.command(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id])
            .await?;
        from.command(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dest_id])
            .await?;
        let port = dest.port().to_string();
        loop {
            let Reply::Array(keys) = from
                .command(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"])
                .await?
            else {
                bail!("CLUSTER GETKEYSINSLOT: not an array");
            };
            let keys: Vec<String> = keys
                .into_iter()
                .filter_map(|k| match k {
                    Reply::Bulk(k) => Some(k),
                    _ => None,
                })
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            from.command(&args).await?;
        }
        dest.command(&["CLUSTER", "SETSLOT", &slot, "NODE", &dest_id])
            .await?;
        from.command(&["CLUSTER", "SETSLOT", &slot, "NODE", &dest_id])
            .await?;
        for node in &self.nodes {
            if node.port() != from.port() && node.port() != dest.port() {
                // Replicas refuse SETSLOT; gossip tells them.
                let _ = node
                    .command(&["CLUSTER", "SETSLOT", &slot, "NODE", &dest_id])
                    .await;
            }
        }
        Ok(())
    }

    /// Index in `nodes` of a node.
    pub fn index_of(&self, node: &RedisServer) -> Option<usize> {
        self.nodes.iter().position(|n| n.port() == node.port())
    }
}

async fn node_id(node: &RedisServer) -> Result<String> {
    match node.command(&["CLUSTER", "MYID"]).await? {
        Reply::Bulk(id) => Ok(id),
        other => bail!("CLUSTER MYID: {other:?}"),
    }
}
