//! AgentHQ conformance (`/ws`), against two replicas and one Redis: JWT or
//! `ahq_` API key, org registration and org-wide events, channel
//! subscriptions scoped to the org, heartbeat acks, `{type,data}` frames.

use anyhow::Result;
use herald_publisher::{Principal, channel_topic};
use herald_tests::{Cluster, WsClient, jwt_with_topics, unix_now};
use serde_json::json;

async fn connect(c: &Cluster, replica: usize, token: &str) -> Result<WsClient> {
    WsClient::connect(&c.gw(replica).ws_url(&format!("/ws?token={token}"))).await
}

fn member(sub: &str, org: &str) -> String {
    let glob = format!("res:channel:{org}:*");
    jwt_with_topics(sub, Some(org), &[], &[glob.as_str()], unix_now() + 600)
}

fn agent_key(sub: &str, org: &str) -> Principal {
    let mut p = Principal::new(sub);
    p.org = Some(org.to_owned());
    p
}

#[tokio::test]
async fn connections_join_their_org_and_receive_org_wide_events() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    c.publisher
        .add_api_key("ahq_scout", &agent_key("agent-scout", "acme"))
        .await?;
    let mut by_jwt = connect(&c, 0, &member("ann", "acme")).await?;
    let mut by_key = connect(&c, 1, "ahq_scout").await?;
    let mut other_org = connect(&c, 1, &member("olga", "globex")).await?;
    c.subscribers_become("org:acme", 2).await?;
    c.subscribers_become("org:globex", 1).await?;

    let agent = json!({"id": "agent-7", "name": "Builder", "status": "online"});
    for event in ["agent.online", "agent.updated", "agent.offline"] {
        c.publisher.broadcast_to_org("acme", event, &agent).await?;
    }
    for ws in [&mut by_jwt, &mut by_key] {
        for event in ["agent.online", "agent.updated", "agent.offline"] {
            assert_eq!(ws.next_json().await?, json!({"type": event, "data": agent}));
        }
    }
    c.publisher
        .broadcast_to_org("globex", "marker", &json!(null))
        .await?;
    assert_eq!(
        other_org.next_json().await?["type"],
        "marker",
        "no acme event reached globex"
    );
    Ok(())
}

#[tokio::test]
async fn channel_events_reach_only_subscribers() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut reader = connect(&c, 1, &member("ann", "acme")).await?;
    let mut bystander = connect(&c, 0, &member("bo", "acme")).await?;
    reader
        .send_json(&json!({"type": "subscribe", "channel": "general"}))
        .await?;
    c.subscribers_become("res:channel:acme:general", 1).await?;
    let post = json!({"id": "post-1", "title": "Hello", "channelId": "general"});
    c.publisher
        .broadcast_to_channel("acme", "general", "post.created", &post)
        .await?;
    c.publisher
        .broadcast_to_channel("acme", "general", "post.updated", &post)
        .await?;
    assert_eq!(
        reader.next_json().await?,
        json!({"type": "post.created", "data": post})
    );
    assert_eq!(
        reader.next_json().await?,
        json!({"type": "post.updated", "data": post})
    );
    c.publisher
        .broadcast_to_org("acme", "marker", &json!(null))
        .await?;
    assert_eq!(
        bystander.next_json().await?["type"],
        "marker",
        "unsubscribed member saw no post"
    );

    reader
        .send_json(&json!({"type": "unsubscribe", "channel": "general"}))
        .await?;
    c.subscribers_become("res:channel:acme:general", 0).await?;
    c.publisher
        .broadcast_to_channel("acme", "general", "post.created", &post)
        .await?;
    c.publisher
        .broadcast_to_org("acme", "marker", &json!(null))
        .await?;
    assert_eq!(
        reader.next_json().await?["type"],
        "marker",
        "marker of the first broadcast"
    );
    assert_eq!(
        reader.next_json().await?["type"],
        "marker",
        "no post after unsubscribe"
    );
    Ok(())
}

#[tokio::test]
async fn a_channel_outside_the_grants_is_refused() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    c.publisher
        .add_api_key("ahq_bob", &agent_key("bob", "acme"))
        .await?;
    c.publisher
        .grant("bob", channel_topic("acme", "general")?.as_str())
        .await?;
    let mut bob = connect(&c, 0, "ahq_bob").await?;
    bob.send_json(&json!({"type": "subscribe", "channel": "secret"}))
        .await?;
    let err = bob.next_json().await?;
    assert_eq!(err["type"], "error");
    assert_eq!(err["data"]["code"], "forbidden", "{err}");
    bob.send_json(&json!({"type": "subscribe", "channel": "general"}))
        .await?;
    c.subscribers_become("res:channel:acme:general", 1).await?;
    // The other org's channel of the same name is a different topic.
    c.publisher
        .broadcast_to_channel("globex", "general", "post.created", &json!({"leak": true}))
        .await?;
    c.publisher
        .broadcast_to_channel("acme", "general", "post.created", &json!({"ok": true}))
        .await?;
    assert_eq!(bob.next_json().await?["data"], json!({"ok": true}));
    Ok(())
}

#[tokio::test]
async fn heartbeat_is_acknowledged_with_a_millisecond_timestamp() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut ws = connect(&c, 1, &member("ann", "acme")).await?;
    ws.send_json(&json!({"type": "heartbeat"})).await?;
    let ack = ws.next_json().await?;
    assert_eq!(ack["type"], "heartbeat_ack");
    let ts = ack["timestamp"].as_str().unwrap_or_default();
    let b = ts.as_bytes();
    assert!(
        ts.len() == 24 && b[10] == b'T' && b[19] == b'.' && ts.ends_with('Z'),
        "ISO-8601 with ms: {ts}"
    );
    assert_eq!(ack.as_object().map(|o| o.len()), Some(2), "{ack}");
    Ok(())
}

#[tokio::test]
async fn failed_authentication_closes_with_an_error() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    let mut ws = connect(&c, 0, "ahq_unknown").await?;
    let (frames, closed) = ws.until_closed().await?;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["data"]["code"], "unauthorized");
    assert_eq!(closed.code(), Some(1008));
    Ok(())
}
