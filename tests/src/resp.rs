//! A minimal RESP2 client connection to a test `redis-server`: one command
//! at a time, replies parsed into [`Reply`]. Enough to ask Redis what the
//! gateways did (subscriptions, keys, streams) without starting a
//! `redis-cli` process per question.

use std::future::Future;
use std::pin::Pin;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::wait::EVENT_TIMEOUT;

/// A Redis reply. Bulk strings are read as UTF-8 (lossily): every key and
/// value the suites look at is text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Status(String),
    Integer(i64),
    Bulk(String),
    Array(Vec<Reply>),
    /// An error reply nested in an array (a top-level one is an `Err`).
    Error(String),
}

impl Reply {
    pub fn integer(&self) -> Result<i64> {
        match self {
            Self::Integer(n) => Ok(*n),
            other => bail!("expected an integer reply, got {other:?}"),
        }
    }

    /// The elements of an array reply of strings.
    pub fn strings(&self) -> Result<Vec<String>> {
        match self {
            Self::Array(items) => items
                .iter()
                .map(|item| match item {
                    Self::Bulk(s) | Self::Status(s) => Ok(s.clone()),
                    other => bail!("expected a string element, got {other:?}"),
                })
                .collect(),
            other => bail!("expected an array reply, got {other:?}"),
        }
    }

    /// The reply as `redis-cli` prints it when its output is not a terminal:
    /// one line per value, arrays flattened, nil as an empty line.
    pub fn cli_lines(&self) -> Vec<String> {
        let mut text = String::new();
        self.write_raw(&mut text);
        text.push('\n');
        text.lines().map(str::to_owned).collect()
    }

    fn write_raw(&self, out: &mut String) {
        match self {
            Self::Nil => {}
            Self::Status(s) | Self::Bulk(s) | Self::Error(s) => out.push_str(s),
            Self::Integer(n) => out.push_str(&n.to_string()),
            Self::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    item.write_raw(out);
                }
            }
        }
    }
}

/// One client connection.
#[derive(Debug)]
pub struct RedisConnection {
    stream: BufReader<TcpStream>,
}

impl RedisConnection {
    pub async fn connect(port: u16) -> Result<Self> {
        let tcp = tokio::time::timeout(EVENT_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .with_context(|| format!("connect to redis on port {port}: timed out"))?
            .with_context(|| format!("connect to redis on port {port}"))?;
        Ok(Self {
            stream: BufReader::new(tcp),
        })
    }

    /// Send one command; an error reply (`ERR …`, `WRONGTYPE …`) is an `Err`.
    pub async fn command(&mut self, args: &[&str]) -> Result<Reply> {
        match self.request(args).await? {
            Reply::Error(e) => bail!("redis {args:?}: {e}"),
            reply => Ok(reply),
        }
    }

    /// Send one command and read its reply, error replies included: an
    /// `Err` here means the connection itself failed.
    pub async fn request(&mut self, args: &[&str]) -> Result<Reply> {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg.as_bytes());
            frame.extend_from_slice(b"\r\n");
        }
        tokio::time::timeout(EVENT_TIMEOUT, async {
            self.stream.get_mut().write_all(&frame).await?;
            read_reply(&mut self.stream).await
        })
        .await
        .with_context(|| format!("redis {args:?}: no reply within {EVENT_TIMEOUT:?}"))?
    }
}

type ReplyFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply>> + Send + 'a>>;

fn read_reply(stream: &mut BufReader<TcpStream>) -> ReplyFuture<'_> {
    // Boxed: arrays nest, and an async fn cannot recurse unboxed.
    Box::pin(async move {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            bail!("redis closed the connection");
        }
        let line = line
            .strip_suffix("\r\n")
            .with_context(|| format!("unterminated reply line {line:?}"))?;
        let (kind, rest) = line.split_at_checked(1).context("empty reply line")?;
        let reply = match kind {
            "+" => Reply::Status(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Integer(rest.parse().with_context(|| format!("integer {rest:?}"))?),
            "$" => {
                let len: i64 = rest
                    .parse()
                    .with_context(|| format!("bulk length {rest:?}"))?;
                match usize::try_from(len) {
                    Err(_) => Reply::Nil,
                    Ok(len) => {
                        let mut buf = vec![0; len + 2];
                        stream.read_exact(&mut buf).await?;
                        buf.truncate(len);
                        Reply::Bulk(String::from_utf8_lossy(&buf).into_owned())
                    }
                }
            }
            "*" => {
                let len: i64 = rest
                    .parse()
                    .with_context(|| format!("array length {rest:?}"))?;
                match usize::try_from(len) {
                    Err(_) => Reply::Nil,
                    Ok(len) => {
                        let mut items = Vec::with_capacity(len.min(1024));
                        for _ in 0..len {
                            items.push(read_reply(stream).await?);
                        }
                        Reply::Array(items)
                    }
                }
            }
            other => bail!("unknown reply type {other:?} in {line:?}"),
        };
        Ok(reply)
    })
}

#[cfg(test)]
mod tests {
    use super::Reply;

    #[test]
    fn cli_lines_match_redis_cli_output_when_piped() {
        assert_eq!(Reply::Integer(3).cli_lines(), ["3"]);
        assert_eq!(Reply::Nil.cli_lines(), [""]);
        assert_eq!(Reply::Array(vec![]).cli_lines(), [""]);
        assert_eq!(
            Reply::Array(vec![Reply::Bulk("ch".into()), Reply::Integer(0)]).cli_lines(),
            ["ch", "0"]
        );
        assert_eq!(Reply::Bulk("a\nb".into()).cli_lines(), ["a", "b"]);
    }
}
