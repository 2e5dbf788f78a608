//! AgentHQ as its SDK really speaks (`deploy/agenthq-sdk.toml`), driven by a
//! Node client written to the SDK's wire facts (`tests/clients/
//! agenthq-sdk-client.mjs`, `ws` from npm), against two replicas and one
//! Redis: `{"event","data"}` frames both ways, the channel inside `data`,
//! acknowledgements, `heartbeat_ack` with an ISO-8601 timestamp in `data`,
//! JWTs whose org is `org_id`, and 4001 / 4000 closes.

use anyhow::Result;
use herald_publisher::Principal;
use herald_tests::{Cluster, NodeScript, deploy_config, jwt_from_claims, unix_now};
use serde_json::{Value, json};

async fn start() -> Result<Cluster> {
    Cluster::start(2, Some(deploy_config("agenthq-sdk.toml"))).await
}

fn base_url(c: &Cluster, replica: usize) -> String {
    format!("http://{}", c.gw(replica).addr)
}

/// A JWT as AgentHQ issues them: `sub` and `org_id`, nothing else of ours.
fn member_token(sub: &str, org: &str) -> String {
    jwt_from_claims(&json!({"sub": sub, "org_id": org, "exp": unix_now() + 600}))
}

async fn client(c: &Cluster, replica: usize, token: &str) -> Result<NodeScript> {
    let mut node = NodeScript::start(
        "agenthq-sdk-client.mjs",
        &[&base_url(c, replica), token],
        &[],
    )?;
    assert_eq!(node.next_json().await?, json!({"open": true}));
    Ok(node)
}

async fn next_frame(node: &mut NodeScript) -> Result<Value> {
    let line = node.next_json().await?;
    line.get("frame")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("expected a frame, got {line}"))
}

fn is_iso_millis(ts: &Value) -> bool {
    let Some(s) = ts.as_str() else { return false };
    let b = s.as_bytes();
    // 2026-02-17T12:00:00.000Z
    b.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 23) || c.is_ascii_digit())
}

#[tokio::test]
async fn the_sdk_subscribes_gets_acks_and_events_across_replicas() -> Result<()> {
    let c = start().await?;
    let mut agent = Principal::new("agent-scout");
    agent.org = Some("acme".into());
    c.publisher.add_api_key("ahq_scout", &agent).await?;
    let mut by_jwt = client(&c, 0, &member_token("ann", "acme")).await?;
    let mut by_key = client(&c, 1, "ahq_scout").await?;
    let mut other_org = client(&c, 1, &member_token("olga", "globex")).await?;

    for node in [&mut by_jwt, &mut by_key, &mut other_org] {
        node.send_line("subscribe general").await?;
        assert_eq!(
            next_frame(node).await?,
            json!({"event": "subscribed", "data": {"channel": "general"}})
        );
    }
    c.subscribers_become("res:channel:acme:general", 2).await?;
    c.subscribers_become("org:acme", 2).await?;

    let task = json!({"id": "task-1", "title": "Ship it", "status": "open"});
    c.publisher
        .broadcast_to_channel("acme", "general", "task:new", &task)
        .await?;
    c.publisher
        .broadcast_to_org("acme", "notification:new", &json!({"text": "hi"}))
        .await?;
    for node in [&mut by_jwt, &mut by_key] {
        assert_eq!(
            next_frame(node).await?,
            json!({"event": "task:new", "data": task})
        );
        assert_eq!(
            next_frame(node).await?,
            json!({"event": "notification:new", "data": {"text": "hi"}})
        );
    }

    // Heartbeats are answered; malformed JSON and unknown events are not.
    by_jwt.send_line("raw {not json").await?;
    by_jwt
        .send_line(r#"raw {"event":"dance","data":{}}"#)
        .await?;
    by_jwt
        .send_line(r#"raw {"type":"subscribe","channel":"x"}"#)
        .await?;
    by_jwt.send_line("heartbeat").await?;
    let ack = next_frame(&mut by_jwt).await?;
    assert_eq!(ack["event"], "heartbeat_ack", "{ack}");
    assert!(is_iso_millis(&ack["data"]["timestamp"]), "{ack}");
    assert_eq!(ack.as_object().map(|o| o.len()), Some(2), "{ack}");

    // After an unsubscribe the channel's events stop; the org's do not.
    by_jwt.send_line("unsubscribe general").await?;
    assert_eq!(
        next_frame(&mut by_jwt).await?,
        json!({"event": "unsubscribed", "data": {"channel": "general"}})
    );
    c.publisher
        .broadcast_to_channel("acme", "general", "task:updated", &task)
        .await?;
    c.publisher
        .broadcast_to_org("acme", "marker", &json!({}))
        .await?;
    assert_eq!(next_frame(&mut by_jwt).await?["event"], "marker");
    assert_eq!(next_frame(&mut by_key).await?["event"], "task:updated");
    assert_eq!(next_frame(&mut by_key).await?["event"], "marker");

    // globex's `general` is another channel: nothing of acme's arrived.
    c.publisher
        .broadcast_to_org("globex", "marker", &json!({}))
        .await?;
    assert_eq!(next_frame(&mut other_org).await?["event"], "marker");
    Ok(())
}

#[tokio::test]
async fn failed_authentication_is_an_accepted_upgrade_closed_with_4001() -> Result<()> {
    let c = start().await?;
    let cases = [
        ("", "Missing authentication token"),
        ("ahq_unknown", "Invalid authentication"),
        ("not-a-jwt", "Invalid authentication"),
        (
            // Signed correctly but with an org claim AgentHQ never sends.
            &*jwt_from_claims(&json!({"sub": "u", "org_id": {"id": 1}, "exp": unix_now() + 60})),
            "Invalid authentication",
        ),
    ];
    for (token, reason) in cases {
        let mut node = client(&c, 0, token).await?;
        assert_eq!(
            node.next_json().await?,
            json!({"closed": {"code": 4001, "reason": reason}}),
            "token {token:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_store_failure_closes_with_4000() -> Result<()> {
    let mut c = start().await?;
    c.redis.kill().await;
    // The API key cannot be looked up without Redis: an internal error.
    let mut node = client(&c, 0, "ahq_anything").await?;
    assert_eq!(
        node.next_json().await?["closed"]["code"],
        4000,
        "closed as an internal error"
    );
    Ok(())
}
