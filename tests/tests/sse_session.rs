//! Server-Sent Events are served by the same session as WebSocket: a route
//! with an exclusive key or presence holds them for SSE streams too. Two
//! replicas, one Redis.

use anyhow::Result;
use herald_publisher::{Principal, Topic};
use herald_shared::Keys;
use herald_tests::{Cluster, SseClient, SseResponse, WsClient, profile_config, wait_until};
use serde_json::{Value, json};

/// Keep-alive comments often enough that a dropped client is noticed quickly.
const SSE: &str = "sse = { keep_alive_ms = 200 }";

async fn sse(c: &Cluster, replica: usize, path: &str) -> Result<SseResponse> {
    SseClient::connect(&c.gw(replica).addr, path, &[]).await
}

#[tokio::test]
async fn an_sse_stream_holds_the_exclusive_key_until_it_ends() -> Result<()> {
    let config = profile_config(
        "fileorganizer",
        &[(
            "frame = { style = \"flat\" }",
            &format!("frame = {{ style = \"flat\" }}\n{SSE}"),
        )],
    );
    let c = Cluster::start(2, Some(config)).await?;
    c.publisher
        .add_api_key("fo-alice", &Principal::new("alice"))
        .await?;
    let path = "/api/v1/ws/sse-1?token=fo-alice";
    let lease = Keys::default().lease("sse-1");

    let mut holder = sse(&c, 0, path).await?.stream()?;
    wait_until("lease taken", || c.redis.exists(&lease)).await?;
    c.subscribers_become("user:alice:client:sse-1", 1).await?;
    c.publisher
        .publish(
            &[Topic::parse("user:alice:client:sse-1")?],
            "job_complete",
            &json!({"jobId": "j1"}),
        )
        .await?;
    let event: Value = serde_json::from_str(&holder.next_event().await?.data)?;
    assert_eq!(event, json!({"type": "job_complete", "jobId": "j1"}));

    // A second holder is refused on the other replica, over SSE and WebSocket.
    match sse(&c, 1, path).await? {
        SseResponse::Refused { status, body } => {
            assert_eq!(status, 409);
            let body: Value = serde_json::from_str(&body)?;
            assert_eq!(body["code"], "CLIENT_ID_IN_USE", "{body}");
        }
        SseResponse::Stream(_) => panic!("a second holder was let in"),
    }
    let mut ws = WsClient::connect(&c.gw(1).ws_url(path)).await?;
    let (frames, closed) = ws.until_closed().await?;
    assert_eq!(frames[0]["code"], "CLIENT_ID_IN_USE");
    assert_eq!(closed.code(), Some(4409));

    // The stream ends: the key is free again.
    drop(holder);
    wait_until("lease released", || async { !c.redis.exists(&lease).await }).await?;
    let mut again = sse(&c, 1, path).await?.stream()?;
    c.subscribers_become("user:alice:client:sse-1", 1).await?;
    c.publisher
        .publish(
            &[Topic::parse("user:alice:client:sse-1")?],
            "job_complete",
            &json!({"jobId": "j2"}),
        )
        .await?;
    let event: Value = serde_json::from_str(&again.next_event().await?.data)?;
    assert_eq!(event["jobId"], "j2");
    Ok(())
}

#[tokio::test]
async fn sse_streams_announce_presence_once() -> Result<()> {
    let config = profile_config(
        "agenthq",
        &[(
            "frame = { style = \"nested\" }",
            &format!("frame = {{ style = \"nested\" }}\n{SSE}"),
        )],
    );
    let c = Cluster::start(2, Some(config)).await?;
    let mut agent = Principal::new("agent-sse");
    agent.org = Some("acme".to_owned());
    agent.roles = vec!["agent".to_owned()];
    c.publisher.add_api_key("ahq_sse_agent", &agent).await?;
    let mut watcher = Principal::new("bob");
    watcher.org = Some("acme".to_owned());
    c.publisher.add_api_key("ahq_sse_bob", &watcher).await?;
    let mut bob = WsClient::connect(&c.gw(0).ws_url("/ws?token=ahq_sse_bob")).await?;
    c.subscribers_become("org:acme", 1).await?;
    let org = Topic::parse("org:acme")?;
    let mut markers = 0;
    // What bob sees up to a marker published now: proves nothing else came.
    let mut seen_until_marker = async |bob: &mut WsClient| -> Result<Vec<String>> {
        markers += 1;
        let marker = format!("marker-{markers}");
        c.publisher
            .publish(std::slice::from_ref(&org), &marker, &json!({}))
            .await?;
        let mut seen = Vec::new();
        loop {
            let frame = bob.next_json().await?;
            let t = frame["type"].as_str().unwrap_or_default().to_owned();
            if t == marker {
                return Ok(seen);
            }
            seen.push(t);
        }
    };

    let path = "/ws?token=ahq_sse_agent";
    let on_a = sse(&c, 1, path).await?.stream()?;
    let presence = Keys::default().presence("org:acme", "agent-sse");
    let members = |n: i64| {
        let (c, presence) = (&c, presence.clone());
        async move { c.redis.zcard(&presence).await == Some(n) }
    };
    wait_until("one presence member", || members(1)).await?;
    assert_eq!(seen_until_marker(&mut bob).await?, ["agent.online"]);
    let on_b = sse(&c, 0, path).await?.stream()?;
    wait_until("two presence members", || members(2)).await?;
    drop(on_a);
    wait_until("one presence member left", || members(1)).await?;
    assert!(
        seen_until_marker(&mut bob).await?.is_empty(),
        "still online"
    );
    drop(on_b);
    wait_until("no presence member", || members(0)).await?;
    assert_eq!(seen_until_marker(&mut bob).await?, ["agent.offline"]);
    Ok(())
}
