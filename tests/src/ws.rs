//! The WebSocket client the suites speak to gateways with, and how a
//! connection ended as that client saw it.

use anyhow::{Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wait::EVENT_TIMEOUT;

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

    /// Connect with extra request headers (Cookie, Authorization, Origin).
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

    /// The `data.seq` of every event frame until `last` arrives, in arrival
    /// order (other frames are skipped).
    pub async fn seqs_until(&mut self, last: u64) -> Result<Vec<u64>> {
        let mut seen = Vec::new();
        while seen.last() != Some(&last) {
            if let Some(seq) = self.next_json().await?["data"]["seq"].as_u64() {
                seen.push(seq);
            }
        }
        Ok(seen)
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
        // RFC 6455 §7.1.5: a close frame without a status reads as 1005.
        None => Closed::Frame {
            code: 1005,
            reason: String::new(),
        },
    }
}
