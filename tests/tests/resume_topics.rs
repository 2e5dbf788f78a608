//! Resume across every topic a connection holds: one position (the SSE
//! `id:`, the WebSocket frame's `offset`) names a point in each, so a client
//! that loses its replica (SIGKILL) gets what it missed on all of them from
//! another replica, exactly once and in order per topic, then live events.
//! Served by the `desk` test route: the user's topic, the org's, a resource
//! and client-chosen channels. Two replicas, one Redis.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use herald_publisher::Topic;
use herald_tests::profiles::DESK;
use herald_tests::{
    Cluster, EVENT_TIMEOUT, SseClient, SseEvent, WsClient, jwt, jwt_with_topics, unix_now,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const JOINED: [&str; 3] = ["user:alice", "org:acme", "res:desk:d1"];

async fn publish(c: &Cluster, topic: &str, n: u64) -> Result<()> {
    c.publisher
        .publish(
            &[Topic::parse(topic)?],
            "note",
            &json!({"t": topic, "n": n}),
        )
        .await?;
    Ok(())
}

/// Publish `rounds` on every topic, one topic after the other.
async fn publish_rounds(c: &Cluster, topics: &[&str], rounds: std::ops::Range<u64>) -> Result<()> {
    for n in rounds {
        for t in topics {
            publish(c, t, n).await?;
        }
    }
    Ok(())
}

/// What arrived, per topic, in arrival order.
fn by_topic(events: &[(String, u64)]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (t, n) in events {
        out.entry(t.clone()).or_default().push(*n);
    }
    out
}

fn expect(topics: &[&str], rounds: std::ops::Range<u64>) -> BTreeMap<String, Vec<u64>> {
    topics
        .iter()
        .map(|t| ((*t).to_owned(), rounds.clone().collect()))
        .collect()
}

fn note(data: &Value) -> Result<(String, u64)> {
    let t = data["t"].as_str().context("a note's topic")?.to_owned();
    let n = data["n"].as_u64().context("a note's number")?;
    Ok((t, n))
}

fn sse_note(e: &SseEvent) -> Result<(String, u64)> {
    let frame: Value = serde_json::from_str(&e.data)?;
    note(&frame["data"])
}

async fn sse_notes(s: &mut SseClient, n: usize) -> Result<(Vec<(String, u64)>, String)> {
    let mut got = Vec::new();
    let mut last = String::new();
    for _ in 0..n {
        let e = s.next_event().await?;
        got.push(sse_note(&e)?);
        last = e.id;
    }
    Ok((got, last))
}

async fn ws_notes(ws: &mut WsClient, n: usize) -> Result<(Vec<(String, u64)>, String)> {
    let mut got = Vec::new();
    let mut last = String::new();
    for _ in 0..n {
        let frame = ws.next_json().await?;
        got.push(note(&frame["data"])?);
        last = frame["offset"]
            .as_str()
            .context("every event frame carries the position")?
            .to_owned();
    }
    Ok((got, last))
}

fn alice_path(desk: &str) -> String {
    let token = jwt("alice", Some("acme"), &[], unix_now() + 600);
    format!("/desk/{desk}?token={token}")
}

async fn subscribed(c: &Cluster, topics: &[&str]) -> Result<()> {
    for t in topics {
        c.subscribers_become(t, 1).await?;
    }
    Ok(())
}

#[tokio::test]
async fn an_sse_client_resumes_all_three_topics_on_the_other_replica() -> Result<()> {
    let mut c = Cluster::start(2, Some(DESK.to_owned())).await?;
    let path = alice_path("d1");
    let mut first = SseClient::connect(&c.gw(0).addr, &path, &[])
        .await?
        .stream()?;
    subscribed(&c, &JOINED).await?;
    publish_rounds(&c, &JOINED, 0..2).await?;
    let (got, last) = sse_notes(&mut first, 6).await?;
    assert_eq!(by_topic(&got), expect(&JOINED, 0..2));
    assert!(
        last.starts_with("h1"),
        "a position over three topics: {last}"
    );

    c.gateways[0].kill().await?;
    publish_rounds(&c, &JOINED, 2..5).await?;
    let mut resumed = SseClient::connect(&c.gw(1).addr, &path, &[("Last-Event-ID", &last)])
        .await?
        .stream()?;
    let (got, _) = sse_notes(&mut resumed, 9).await?;
    assert_eq!(
        by_topic(&got),
        expect(&JOINED, 2..5),
        "every missed event once, in order per topic: {got:?}"
    );
    publish_rounds(&c, &JOINED, 5..6).await?;
    let (got, _) = sse_notes(&mut resumed, 3).await?;
    assert_eq!(
        by_topic(&got),
        expect(&JOINED, 5..6),
        "then live, nothing repeated"
    );
    Ok(())
}

/// The first block of an SSE response read as raw text: a stream of a
/// route with positions opens with its position alone (`id:` and no data,
/// which a browser keeps without firing an event).
async fn first_block(addr: &str, path: &str) -> Result<(String, BufReader<TcpStream>)> {
    let mut stream = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut in_body = false;
    let mut block = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(EVENT_TIMEOUT, reader.read_line(&mut line)).await??;
        if n == 0 {
            bail!("stream ended before its first block: {block:?}");
        }
        let blank = line.trim_end().is_empty();
        match (in_body, blank) {
            (false, true) => in_body = true,
            (false, false) => {}
            (true, true) if !block.is_empty() => return Ok((block, reader)),
            (true, true) => {}
            (true, false) => block.push_str(&line),
        }
    }
}

#[tokio::test]
async fn a_stream_that_saw_no_event_still_resumes_from_its_opening_position() -> Result<()> {
    let mut c = Cluster::start(2, Some(DESK.to_owned())).await?;
    let path = alice_path("d1");
    publish_rounds(&c, &JOINED, 0..1).await?; // before it connects: never its business
    let (block, _held) = first_block(&c.gw(0).addr, &path).await?;
    let id = block
        .trim_end()
        .strip_prefix("id: ")
        .context(format!("a bare id block: {block:?}"))?
        .to_owned();
    assert!(!block.contains("data:"), "{block:?}");
    subscribed(&c, &JOINED).await?;
    c.gateways[0].kill().await?;
    publish_rounds(&c, &JOINED, 1..3).await?;
    let mut resumed = SseClient::connect(&c.gw(1).addr, &path, &[("Last-Event-ID", &id)])
        .await?
        .stream()?;
    let (got, _) = sse_notes(&mut resumed, 6).await?;
    assert_eq!(
        by_topic(&got),
        expect(&JOINED, 1..3),
        "what came after it opened, none of what came before"
    );
    Ok(())
}

#[tokio::test]
async fn a_forged_truncated_oversized_or_foreign_position_is_no_position() -> Result<()> {
    let c = Cluster::start(1, Some(DESK.to_owned())).await?;
    let alice = alice_path("d1");
    let mut s = SseClient::connect(&c.gw(0).addr, &alice, &[])
        .await?
        .stream()?;
    subscribed(&c, &JOINED).await?;
    publish_rounds(&c, &JOINED, 0..1).await?;
    let (_, position) = sse_notes(&mut s, 3).await?;
    drop(s);
    publish_rounds(&c, &JOINED, 1..3).await?; // what a replay would send

    let bob = {
        let token = jwt("bob", Some("other"), &[], unix_now() + 600);
        format!("/desk/d2?token={token}")
    };
    let forged = format!("h1{}", "A".repeat(40));
    let truncated = position[..position.len() - 5].to_owned();
    let oversized = format!("h1{}", "B".repeat(4000));
    let cases: [(&str, &str, &str); 5] = [
        ("forged", &alice, &forged),
        ("truncated", &alice, &truncated),
        ("oversized", &alice, &oversized),
        ("not base64", &alice, "h1!!!!"),
        ("another principal's", &bob, &position),
    ];
    for (n, (what, path, id)) in cases.into_iter().enumerate() {
        let mut s = SseClient::connect(&c.gw(0).addr, path, &[("Last-Event-ID", id)])
            .await?
            .stream()?;
        let own = if path == bob.as_str() {
            "user:bob"
        } else {
            "user:alice"
        };
        // Subscribed before the stream started: a live marker is the first
        // event unless something was replayed.
        publish(&c, own, 100 + n as u64).await?;
        let e = s.next_event().await.context(what)?;
        assert_eq!(
            sse_note(&e)?,
            (own.to_owned(), 100 + n as u64),
            "{what} position: nothing replayed"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_websocket_client_resumes_its_topics_and_channels_on_the_other_replica() -> Result<()> {
    let mut c = Cluster::start(2, Some(DESK.to_owned())).await?;
    let token = jwt_with_topics(
        "alice",
        Some("acme"),
        &[],
        &["res:board:*"],
        unix_now() + 600,
    );
    let addrs: Vec<String> = c.gateways.iter().map(|g| g.addr.clone()).collect();
    let url = |replica: usize, since: Option<&str>| {
        let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
        format!("ws://{}/desk/d1?token={token}{since}", addrs[replica])
    };
    let held = ["user:alice", "org:acme", "res:board:b1", "res:board:b2"];
    let mut ws = WsClient::connect(&url(0, None)).await?;
    for channel in ["b1", "b2"] {
        ws.send_json(&json!({"type": "subscribe", "channel": channel}))
            .await?;
    }
    subscribed(&c, &JOINED).await?;
    subscribed(&c, &held[2..]).await?;
    publish_rounds(&c, &held, 0..1).await?;
    let (got, last) = ws_notes(&mut ws, 4).await?;
    assert_eq!(by_topic(&got), expect(&held, 0..1));

    c.gateways[0].kill().await?;
    publish_rounds(&c, &held, 1..4).await?;
    let mut ws = WsClient::connect(&url(1, Some(&last))).await?;
    let (got, _) = ws_notes(&mut ws, 6).await?;
    assert_eq!(
        by_topic(&got),
        expect(&held[..2], 1..4),
        "the joined topics replay on connect"
    );
    // The connection's position names b1; b2's subscribe brings its own.
    ws.send_json(&json!({"type": "subscribe", "channel": "b1"}))
        .await?;
    let (got, _) = ws_notes(&mut ws, 3).await?;
    assert_eq!(
        by_topic(&got),
        expect(&held[2..3], 1..4),
        "b1 on re-subscribe"
    );
    ws.send_json(&json!({"type": "subscribe", "channel": "b2", "since": last}))
        .await?;
    let (got, _) = ws_notes(&mut ws, 3).await?;
    assert_eq!(
        by_topic(&got),
        expect(&held[3..], 1..4),
        "b2 from the frame's position"
    );
    publish_rounds(&c, &held, 4..5).await?;
    let (got, after) = ws_notes(&mut ws, 4).await?;
    assert_eq!(
        by_topic(&got),
        expect(&held, 4..5),
        "then live, nothing repeated"
    );

    // The position now covers the channels too: a second reconnect that
    // re-subscribes gets only what it missed since.
    drop(ws);
    publish_rounds(&c, &held, 5..6).await?;
    let mut ws = WsClient::connect(&url(1, Some(&after))).await?;
    let (got, _) = ws_notes(&mut ws, 2).await?;
    assert_eq!(by_topic(&got), expect(&held[..2], 5..6));
    ws.send_json(&json!({"type": "subscribe", "channel": "b1"}))
        .await?;
    let (got, _) = ws_notes(&mut ws, 1).await?;
    assert_eq!(by_topic(&got), expect(&held[2..3], 5..6));
    Ok(())
}

#[tokio::test]
async fn a_topic_whose_history_moved_on_gets_a_gap_frame_and_the_others_resume() -> Result<()> {
    let c = Cluster::start(1, Some(DESK.to_owned())).await?;
    let token = jwt("alice", Some("acme"), &[], unix_now() + 600);
    let url = |since: Option<&str>| {
        let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
        c.gw(0).ws_url(&format!("/desk/d1?token={token}{since}"))
    };
    let mut ws = WsClient::connect(&url(None)).await?;
    subscribed(&c, &JOINED).await?;
    publish_rounds(&c, &JOINED, 0..1).await?;
    let (_, last) = ws_notes(&mut ws, 3).await?;
    ws.close().await;
    publish_rounds(&c, &JOINED, 1..4).await?;
    c.redis
        .cli(&["XTRIM", "herald:{org:acme}:history", "MAXLEN", "1"])
        .await?;
    let mut ws = WsClient::connect(&url(Some(&last))).await?;
    let gap = ws.next_json().await?;
    assert_eq!(gap["type"], "gap", "{gap}");
    assert_eq!(gap["data"]["topic"], "org:acme", "which topic: {gap}");
    let (got, _) = ws_notes(&mut ws, 7).await?;
    let mut want = expect(&["user:alice", "res:desk:d1"], 1..4);
    want.insert("org:acme".to_owned(), vec![3]);
    assert_eq!(by_topic(&got), want, "the others resume in full");
    Ok(())
}

#[tokio::test]
async fn an_event_for_several_held_topics_is_replayed_once() -> Result<()> {
    let c = Cluster::start(1, Some(DESK.to_owned())).await?;
    let path = alice_path("d1");
    let mut s = SseClient::connect(&c.gw(0).addr, &path, &[])
        .await?
        .stream()?;
    subscribed(&c, &JOINED).await?;
    publish_rounds(&c, &JOINED, 0..1).await?;
    let (_, last) = sse_notes(&mut s, 3).await?;
    drop(s);
    // One event, one id, a copy in the user's and the org's history.
    c.publisher
        .publish(
            &[Topic::user("alice")?, Topic::org("acme")?],
            "note",
            &json!({"t": "both", "n": 7}),
        )
        .await?;
    publish(&c, "res:desk:d1", 8).await?;
    let mut resumed = SseClient::connect(&c.gw(0).addr, &path, &[("Last-Event-ID", &last)])
        .await?
        .stream()?;
    let (got, _) = sse_notes(&mut resumed, 2).await?;
    assert_eq!(
        got,
        [("both".to_owned(), 7), ("res:desk:d1".to_owned(), 8)],
        "the shared event once"
    );
    publish(&c, "org:acme", 9).await?;
    let (got, _) = sse_notes(&mut resumed, 1).await?;
    assert_eq!(
        got,
        [("org:acme".to_owned(), 9)],
        "then live, nothing repeated"
    );
    Ok(())
}
