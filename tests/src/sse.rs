//! The Server-Sent Events client: one request, then either a stream of
//! parsed events or the refusal the gateway answered with.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::wait::EVENT_TIMEOUT;

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
        // HTTP/1.0: the body is the rest of the connection, no chunked
        // framing for the event parser to see through.
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

impl SseClient {
    /// Read until the server ends the stream; returns the events before the end.
    pub async fn until_ended(&mut self) -> Result<Vec<SseEvent>> {
        let mut seen = Vec::new();
        loop {
            let next = tokio::time::timeout(EVENT_TIMEOUT, self.events.next())
                .await
                .map_err(|_| anyhow!("stream not ended within {EVENT_TIMEOUT:?}; saw {seen:?}"))?;
            match next {
                Some(Ok(e)) => seen.push(SseEvent {
                    id: e.id,
                    event: e.event,
                    data: e.data,
                }),
                Some(Err(_)) | None => return Ok(seen),
            }
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
