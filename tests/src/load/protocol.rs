//! The wire of each server the load tools drive: Herald's kubegen route,
//! Socket.IO 4 (Engine.IO v4 over a plain WebSocket) and the Pusher
//! protocol 7 (sockudo): how a client joins a channel, what its frames
//! mean, and how a backend publishes to it (Herald through
//! `herald-publisher` into Redis; the peers over their HTTP APIs, as their
//! backends do). Every event's payload is `{"n": sequence, "t": sent µs}`.

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use super::LightWs;

/// Which server a load tool speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Herald's kubegen route (`/v1/ws?token=…`, `subscribe` frames).
    Herald,
    /// Socket.IO 4 with the room joined by a `join` event (the peer server).
    SocketIo,
    /// Pusher protocol 7 (sockudo), app key `bench-key`.
    Pusher,
}

/// What a server's text frame is to a load client.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Event {
        n: u64,
        t: u64,
    },
    /// A protocol-level ping, answered with [`Protocol::pong`].
    Ping,
    Other,
}

/// The Pusher app the peer's start script configures.
const PUSHER_APP: &str = "bench";
const PUSHER_KEY: &str = "bench-key";
const PUSHER_SECRET: &str = "bench-secret";

impl Protocol {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "herald" => Ok(Self::Herald),
            "socketio" => Ok(Self::SocketIo),
            "pusher" => Ok(Self::Pusher),
            other => bail!("unknown protocol {other:?}: herald, socketio or pusher"),
        }
    }

    /// The path and query a client opens (`token` is Herald's JWT).
    pub fn path(self, token: &str) -> String {
        match self {
            Self::Herald => format!("/v1/ws?token={token}"),
            Self::SocketIo => "/socket.io/?EIO=4&transport=websocket".to_owned(),
            Self::Pusher => {
                format!("/app/{PUSHER_KEY}?protocol=7&client=herald-bench&version=1.0")
            }
        }
    }

    /// Everything between the upgrade and being in `channel`: the peers
    /// confirm the join, so a client returns only once it is in; Herald's
    /// kubegen route has no acknowledgement (the subscribe is sent).
    pub async fn join(self, ws: &mut LightWs, channel: &str) -> Result<()> {
        let mut buf = Vec::new();
        match self {
            Self::Herald => {
                let subscribe = serde_json::json!({"type": "subscribe", "channel": channel});
                ws.send_text(&subscribe.to_string()).await?;
            }
            Self::SocketIo => {
                expect(ws, &mut buf, |t| t.starts_with(b"0{")).await?;
                ws.send_text("40").await?;
                expect(ws, &mut buf, |t| t.starts_with(b"40")).await?;
                let join = serde_json::json!(["join", channel]);
                ws.send_text(&format!("421{join}")).await?;
                expect(ws, &mut buf, |t| t.starts_with(b"431")).await?;
            }
            Self::Pusher => {
                expect(ws, &mut buf, |t| {
                    contains(t, b"pusher:connection_established")
                })
                .await?;
                let subscribe = serde_json::json!({
                    "event": "pusher:subscribe",
                    "data": {"channel": channel},
                });
                ws.send_text(&subscribe.to_string()).await?;
                expect(ws, &mut buf, |t| {
                    contains(t, b"pusher_internal:subscription_succeeded")
                })
                .await?;
            }
        }
        Ok(())
    }

    /// What a text frame from the server is.
    pub fn read(self, text: &[u8]) -> Frame {
        let event = |v: &serde_json::Value| match (v["n"].as_u64(), v["t"].as_u64()) {
            (Some(n), Some(t)) => Frame::Event { n, t },
            _ => Frame::Other,
        };
        match self {
            Self::Herald => {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(text) else {
                    return Frame::Other;
                };
                match v["type"] == "ping" {
                    true => Frame::Ping,
                    false => event(&v["data"]),
                }
            }
            Self::SocketIo => match text {
                b"2" => Frame::Ping,
                [b'4', b'2', rest @ ..] => serde_json::from_slice::<serde_json::Value>(rest)
                    .map_or(Frame::Other, |v| event(&v[1])),
                _ => Frame::Other,
            },
            Self::Pusher => {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(text) else {
                    return Frame::Other;
                };
                if v["event"] == "pusher:ping" {
                    return Frame::Ping;
                }
                // Pusher carries the event's data as a string of JSON.
                v["data"]
                    .as_str()
                    .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                    .map_or(Frame::Other, |d| event(&d))
            }
        }
    }

    /// The next event on `ws`: its sequence number and sent time (µs).
    /// The protocol's pings are answered and other frames skipped on the
    /// way; `None` once the socket ended. No timer and no cancellation per
    /// read: both cost a client more than the floor's readers pay, so the
    /// tools bound their readers from outside.
    pub async fn next_event(self, ws: &mut LightWs, text: &mut Vec<u8>) -> Option<(u64, u64)> {
        loop {
            if !matches!(ws.next_text(text).await, Ok(true)) {
                return None;
            }
            match self.read(text) {
                Frame::Event { n, t } => return Some((n, t)),
                Frame::Ping => ws.send_text(self.pong()).await.ok()?,
                Frame::Other => {}
            }
        }
    }

    /// The answer to a [`Frame::Ping`].
    pub fn pong(self) -> &'static str {
        match self {
            Self::Herald => r#"{"type":"pong"}"#,
            Self::SocketIo => "3",
            Self::Pusher => r#"{"event":"pusher:pong","data":{}}"#,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Read frames until one passes `want`, within the handshake's bound.
async fn expect(ws: &mut LightWs, buf: &mut Vec<u8>, want: impl Fn(&[u8]) -> bool) -> Result<()> {
    for _ in 0..16 {
        if !ws.next_text(buf).await? {
            bail!("closed during the handshake");
        }
        if want(buf) {
            return Ok(());
        }
    }
    bail!(
        "handshake frame not seen; last: {}",
        String::from_utf8_lossy(buf)
    )
}

/// A backend publishing the load's events.
#[derive(Debug)]
pub enum Publish {
    Herald(herald_publisher::Publisher),
    /// The Socket.IO peer's `POST /publish?topic=` at this `host:port`
    /// (replica 1).
    SocketIo(reqwest::Client, String),
    /// The Pusher HTTP API at this `host:port`, signed as every Pusher
    /// server library signs it.
    Pusher(reqwest::Client, String),
}

impl Publish {
    /// `target` is Herald's Redis URL, or the peer's `host:port`.
    pub async fn connect(protocol: Protocol, target: &str) -> Result<Self> {
        let http = || {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .context("http client")
        };
        Ok(match protocol {
            Protocol::Herald => Self::Herald(herald_publisher::Publisher::connect(target).await?),
            Protocol::SocketIo => Self::SocketIo(http()?, target.to_owned()),
            Protocol::Pusher => Self::Pusher(http()?, target.to_owned()),
        })
    }

    /// Publish event `n` to `channel`, stamped now; returns once the server
    /// took it.
    pub async fn publish(&self, channel: &str, n: u64) -> Result<()> {
        let payload = serde_json::json!({"n": n, "t": super::now_us()});
        match self {
            Self::Herald(publisher) => {
                let topic = herald_publisher::Topic::resource("kubegen", channel)?;
                publisher.publish(&[topic], "bench", &payload).await?;
            }
            Self::SocketIo(client, target) => {
                client
                    .post(format!("http://{target}/publish?topic={channel}"))
                    .header("content-type", "application/json")
                    .body(payload.to_string())
                    .send()
                    .await?
                    .error_for_status()?;
            }
            Self::Pusher(client, target) => {
                let body = serde_json::json!({
                    "name": "msg",
                    "channels": [channel],
                    "data": payload.to_string(),
                })
                .to_string();
                client
                    .post(pusher_url(target, &body, super::now_us() / 1_000_000)?)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }
        Ok(())
    }
}

/// The signed URL of a Pusher `POST /apps/{app}/events` with this body.
fn pusher_url(target: &str, body: &str, timestamp: u64) -> Result<String> {
    let path = format!("/apps/{PUSHER_APP}/events");
    let body_md5 = hex::encode(Md5::digest(body.as_bytes()));
    // Keys in sorted order, as the signature requires.
    let query = format!(
        "auth_key={PUSHER_KEY}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={body_md5}"
    );
    let signature = pusher_signature(PUSHER_SECRET, &path, &query)?;
    Ok(format!(
        "http://{target}{path}?{query}&auth_signature={signature}"
    ))
}

/// Hex HMAC-SHA256 of `POST\n{path}\n{sorted query}` under the app secret.
fn pusher_signature(secret: &str, path: &str, query: &str) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).context("hmac key")?;
    mac.update(format!("POST\n{path}\n{query}").as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_each_protocol() {
        let herald = br#"{"type":"bench","data":{"n":3,"t":99}}"#;
        assert_eq!(Protocol::Herald.read(herald), Frame::Event { n: 3, t: 99 });
        assert_eq!(
            Protocol::Herald.read(br#"{"type":"ping","timestamp":"x"}"#),
            Frame::Ping
        );
        assert_eq!(
            Protocol::SocketIo.read(br#"42["msg",{"n":4,"t":7}]"#),
            Frame::Event { n: 4, t: 7 }
        );
        assert_eq!(Protocol::SocketIo.read(b"2"), Frame::Ping);
        assert_eq!(Protocol::SocketIo.read(b"431[\"ok\"]"), Frame::Other);
        let pusher = br#"{"event":"msg","channel":"c","data":"{\"n\":5,\"t\":8}"}"#;
        assert_eq!(Protocol::Pusher.read(pusher), Frame::Event { n: 5, t: 8 });
        assert_eq!(
            Protocol::Pusher.read(br#"{"event":"pusher:ping","data":{}}"#),
            Frame::Ping
        );
        assert!(Protocol::parse("mqtt").is_err());
    }

    /// The signature of the Pusher HTTP API's own documented example
    /// (pusher.com/docs/channels/library_auth_reference/rest-api), with its
    /// key, secret, body and timestamp.
    #[test]
    fn pusher_signature_matches_the_documented_example() {
        let path = "/apps/3/events";
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let body_md5 = hex::encode(Md5::digest(body.as_bytes()));
        assert_eq!(body_md5, "ec365a775a4cd0599faeb73354201b6f");
        let query = format!(
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5={body_md5}"
        );
        assert_eq!(
            pusher_signature("7ad3773142a6692b25b8", path, &query).expect("signed"),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }
}
