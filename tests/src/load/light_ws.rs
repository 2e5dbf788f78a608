//! A minimal WebSocket client for load tools.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bytes a client socket buffers: WebSocket frames of the benchmarks are a
/// few hundred bytes, so one read usually holds several.
const CLIENT_BUFFER: usize = 2048;

/// A minimal WebSocket client for load: one buffered read per batch of
/// frames, no per-frame allocation beyond the caller's buffer, pings
/// answered. A general client (tungstenite) costs several times the floor's
/// raw reader per frame, and on a machine where the load shares the cores
/// that cost shows up as the gateway's latency.
#[derive(Debug)]
pub struct LightWs {
    stream: BufReader<TcpStream>,
}

impl LightWs {
    /// Open `ws://{addr}{path}` (path with its query), loopback only; from
    /// `source` when given. Tens of thousands of connections from one
    /// address to one port make the kernel search long for a free local
    /// port on every connect (`__inet_hash_connect` was half the machine's
    /// CPU in a connect storm): spreading clients over 127.0.0.0/8 keeps
    /// that search short.
    pub async fn connect(
        addr: &str,
        path: &str,
        source: Option<std::net::Ipv4Addr>,
    ) -> io::Result<Self> {
        let stream = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let to: std::net::SocketAddr = addr
                    .parse()
                    .map_err(|e| io::Error::other(format!("{addr}: {e}")))?;
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind((ip, 0).into())?;
                socket.connect(to).await?
            }
        };
        stream.set_nodelay(true)?;
        let mut ws = Self::over(stream);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        ws.stream.read_line(&mut line).await?;
        if !line.starts_with("HTTP/1.1 101") {
            return Err(io::Error::other(format!(
                "upgrade refused: {}",
                line.trim_end()
            )));
        }
        loop {
            line.clear();
            if ws.stream.read_line(&mut line).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                return Ok(ws);
            }
        }
    }

    /// A stream already speaking WebSocket frames (the floor's sockets).
    pub fn over(stream: TcpStream) -> Self {
        Self {
            stream: BufReader::with_capacity(CLIENT_BUFFER, stream),
        }
    }

    /// Send a text frame, masked as a client must (with a zero key: the
    /// protocol requires the mask, not its secrecy).
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        let mut frame = Vec::with_capacity(text.len() + 8);
        frame.push(0x81);
        match text.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(text.as_bytes());
        self.stream.get_mut().write_all(&frame).await
    }

    /// The next text frame's payload into `buf`; pings are answered on the
    /// way. `Ok(false)` when the server closed.
    pub async fn next_text(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            let mut head = [0u8; 2];
            match self.stream.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e),
            }
            let len = match head[1] & 0x7f {
                126 => u64::from(self.stream.read_u16().await?),
                127 => self.stream.read_u64().await?,
                n => u64::from(n),
            };
            if head[1] & 0x80 != 0 {
                return Err(io::Error::other("a server frame must not be masked"));
            }
            buf.resize(len as usize, 0);
            self.stream.read_exact(buf).await?;
            match head[0] {
                0x81 => return Ok(true),
                0x89 => self.pong(buf).await?,
                0x88 => return Ok(false),
                0x8a => {}
                other => {
                    return Err(io::Error::other(format!(
                        "frame 0x{other:02x} not expected"
                    )));
                }
            }
        }
    }

    async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut frame = vec![0x8a, 0x80 | payload.len().min(125) as u8, 0, 0, 0, 0];
        frame.extend_from_slice(&payload[..payload.len().min(125)]);
        self.stream.get_mut().write_all(&frame).await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Frames of every length form, a ping answered with the client's
    /// pong, and a close, over a real loopback socket.
    #[tokio::test]
    async fn light_client_reads_frames_and_answers_pings() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let long = "x".repeat(300);
            let mut out = vec![0x89, 2, b'h', b'i', 0x81, 5];
            out.extend_from_slice(b"short");
            out.extend_from_slice(&[0x81, 126, 1, 44]);
            out.extend_from_slice(long.as_bytes());
            out.extend_from_slice(&[0x88, 0]);
            s.write_all(&out).await.expect("write");
            let mut pong = [0u8; 8];
            s.read_exact(&mut pong).await.expect("pong");
            pong
        });
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut ws = super::LightWs::over(stream);
        let mut buf = Vec::new();
        assert!(ws.next_text(&mut buf).await.expect("first"));
        assert_eq!(buf, b"short");
        assert!(ws.next_text(&mut buf).await.expect("second"));
        assert_eq!(buf.len(), 300);
        assert!(!ws.next_text(&mut buf).await.expect("close"));
        let pong = server.await.expect("server");
        assert_eq!(pong, [0x8a, 0x82, 0, 0, 0, 0, b'h', b'i']);
    }
}
