//! A loopback front door, as an ingress would be: each connection is routed
//! by its request path to a group of upstreams, and goes to the first one
//! that accepts (a killed replica's clients land on the next, which is what
//! a load balancer's health checks achieve). A route may instead serve the
//! test pages in `tests/clients/pages/`, so a page and the gateway share
//! one origin.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::node::clients_dir;

/// Where one path prefix goes.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Replicas in order of preference (`127.0.0.1:PORT`).
    Servers(Vec<String>),
    /// Files of `tests/clients/pages/`, by the path's last segment.
    Pages,
    /// Every request answered `200` with this JSON body (a backend's REST
    /// answer a client needs before it opens its socket).
    Json(String),
}

/// A running front door; stops on drop.
#[derive(Debug)]
pub struct Front {
    pub addr: String,
    task: JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Front {
    /// Serve `routes` (longest matching prefix wins) on a free loopback port.
    pub async fn start(routes: Vec<(&str, Upstream)>) -> Result<Self> {
        let mut routes: Vec<(String, Upstream)> =
            routes.into_iter().map(|(p, u)| (p.to_owned(), u)).collect();
        routes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let routes = Arc::new(routes);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let routes = Arc::clone(&routes);
                tokio::spawn(async move {
                    let _ = serve(client, &routes).await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn serve(mut client: TcpStream, routes: &[(String, Upstream)]) -> Result<()> {
    // Read up to the end of the request line; whatever else came stays in `head`.
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = client.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    let Some((_, upstream)) = routes.iter().find(|(p, _)| path.starts_with(p.as_str())) else {
        return respond(&mut client, "404 Not Found", "text/plain", b"no route").await;
    };
    match upstream {
        Upstream::Json(body) => {
            read_rest(&mut client, head).await?;
            respond(&mut client, "200 OK", "application/json", body.as_bytes()).await
        }
        Upstream::Pages => {
            read_rest(&mut client, head).await?;
            let name = path
                .split('?')
                .next()
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or_default();
            let file = clients_dir().join("pages").join(name);
            match (name.contains(".."), std::fs::read(&file)) {
                (false, Ok(body)) => respond(&mut client, "200 OK", "text/html", &body).await,
                _ => respond(&mut client, "404 Not Found", "text/plain", b"no page").await,
            }
        }
        Upstream::Servers(servers) => {
            for server in servers {
                if let Ok(mut up) = TcpStream::connect(server).await {
                    up.write_all(&head).await?;
                    tokio::io::copy_bidirectional(&mut client, &mut up).await?;
                    return Ok(());
                }
            }
            respond(&mut client, "502 Bad Gateway", "text/plain", b"no upstream").await
        }
    }
}

/// Read the rest of a request (headers and a `content-length` body), so that
/// closing after the answer does not reset the connection under the client.
async fn read_rest(client: &mut TcpStream, mut head: Vec<u8>) -> Result<()> {
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let headers = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = head.len() - end;
    while have < length {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Ok(())
}

async fn respond(client: &mut TcpStream, status: &str, kind: &str, body: &[u8]) -> Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body).await.context("write page")?;
    client.shutdown().await?;
    Ok(())
}
