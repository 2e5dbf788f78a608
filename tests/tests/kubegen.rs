//! kubegen conformance (`/v1/ws`), against two replicas and one Redis:
//! the `{type,data,timestamp}` envelope, client-chosen channels and their
//! authorization, live revocation, limits and the heartbeat.

use anyhow::Result;
use herald_publisher::{Principal, Topic};
use herald_tests::{Closed, Cluster, WsClient, jwt, jwt_with_topics, profile_config, unix_now};
use serde_json::{Value, json};

fn project_topic(channel: &str) -> Result<Topic> {
    Ok(Topic::resource("kubegen", channel)?)
}

async fn connect(c: &Cluster, replica: usize, token: &str) -> Result<WsClient> {
    WsClient::connect(&c.gw(replica).ws_url(&format!("/v1/ws?token={token}"))).await
}

fn dev_token() -> String {
    jwt_with_topics(
        "dev",
        None,
        &[],
        &["res:kubegen:project.*", "res:kubegen:validation.*"],
        unix_now() + 600,
    )
}

/// Subscribe and wait until the replica holds the topic in Redis.
async fn subscribe(c: &Cluster, ws: &mut WsClient, channel: &str, replicas: u64) -> Result<()> {
    ws.send_json(&json!({"type": "subscribe", "channel": channel}))
        .await?;
    c.subscribers_become(&format!("res:kubegen:{channel}"), replicas)
        .await
}

fn assert_envelope(frame: &Value, event: &str, data: &Value) {
    assert_eq!(frame["type"], event, "{frame}");
    assert_eq!(&frame["data"], data, "{frame}");
    let ts = frame["timestamp"].as_str().unwrap_or_default();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "RFC 3339 UTC: {ts}"
    );
    assert_eq!(
        frame.as_object().map(|o| o.len()),
        Some(3),
        "exactly type, data, timestamp: {frame}"
    );
}

#[tokio::test]
async fn subscribed_channel_receives_the_four_documented_events() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut ws = connect(&c, 1, &dev_token()).await?;
    subscribe(&c, &mut ws, "project.proj-1", 1).await?;
    let events = [
        (
            "project.progress",
            json!({"project_id": "proj-1", "progress": 45, "current_step": "Generating manifests...", "files_created": ["deployment.yaml", "service.yaml"]}),
        ),
        (
            "project.completed",
            json!({"project_id": "proj-1", "duration_ms": 5000, "files": ["deployment.yaml", "service.yaml", "configmap.yaml"]}),
        ),
        (
            "validation.progress",
            json!({"validation_id": "val-1", "current_check": "lint", "checks_completed": 2, "checks_total": 5}),
        ),
        (
            "validation.completed",
            json!({"validation_id": "val-1", "project_id": "proj-1", "status": "passed", "summary": {"tests_passed": 10, "tests_failed": 0, "coverage": 85}}),
        ),
    ];
    for (event, data) in &events {
        c.publisher
            .publish(&[project_topic("project.proj-1")?], event, data)
            .await?;
    }
    for (event, data) in &events {
        assert_envelope(&ws.next_json().await?, event, data);
    }
    Ok(())
}

#[tokio::test]
async fn unsubscribe_stops_delivery() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut ws = connect(&c, 0, &dev_token()).await?;
    subscribe(&c, &mut ws, "project.proj-2", 1).await?;
    ws.send_json(&json!({"type": "unsubscribe", "channel": "project.proj-2"}))
        .await?;
    c.subscribers_become("res:kubegen:project.proj-2", 0)
        .await?;
    c.publisher
        .publish(
            &[project_topic("project.proj-2")?],
            "project.progress",
            &json!({"progress": 1}),
        )
        .await?;
    c.publisher
        .publish(&[Topic::user("dev")?], "marker", &json!({}))
        .await?;
    assert_eq!(ws.next_json().await?["type"], "marker");
    Ok(())
}

#[tokio::test]
async fn subscribe_without_claim_or_grant_is_refused_and_the_connection_stays() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let plain = jwt("eve", None, &[], unix_now() + 600);
    let mut ws = connect(&c, 0, &plain).await?;
    ws.send_json(&json!({"type": "subscribe", "channel": "project.proj-1"}))
        .await?;
    let err = ws.next_json().await?;
    assert_eq!(err["type"], "error");
    assert_eq!(err["data"]["code"], "forbidden", "{err}");
    c.publisher
        .publish(
            &[project_topic("project.proj-1")?],
            "project.progress",
            &json!({}),
        )
        .await?;
    c.publisher
        .publish(&[Topic::user("eve")?], "marker", &json!({}))
        .await?;
    assert_eq!(
        ws.next_json().await?["type"],
        "marker",
        "still connected, proj-1 not delivered"
    );
    Ok(())
}

#[tokio::test]
async fn admins_pass_and_api_keys_authenticate() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut admin = connect(&c, 0, &jwt("root", None, &["admin"], unix_now() + 600)).await?;
    subscribe(&c, &mut admin, "anything.at-all", 1).await?;
    c.publisher
        .add_api_key("kg-key", &Principal::new("ci"))
        .await?;
    let mut keyed = connect(&c, 1, "kg-key").await?;
    c.publisher
        .grant("ci", "res:kubegen:project.proj-9")
        .await?;
    subscribe(&c, &mut keyed, "project.proj-9", 1).await?;
    c.publisher
        .publish(
            &[
                project_topic("anything.at-all")?,
                project_topic("project.proj-9")?,
            ],
            "project.progress",
            &json!({"p": 1}),
        )
        .await?;
    assert_eq!(admin.next_json().await?["data"], json!({"p": 1}));
    assert_eq!(keyed.next_json().await?["data"], json!({"p": 1}));
    let mut bad = connect(&c, 0, "nope").await?;
    let (frames, closed) = bad.until_closed().await?;
    assert_eq!(frames[0]["data"]["code"], "unauthorized");
    assert_eq!(closed.code(), Some(1008));
    Ok(())
}

#[tokio::test]
async fn revoke_drops_a_live_subscription_on_another_replica() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    c.publisher
        .add_api_key("bob-key", &Principal::new("bob"))
        .await?;
    c.publisher.grant("bob", "res:kubegen:project.*").await?;
    let mut bob = connect(&c, 1, "bob-key").await?;
    subscribe(&c, &mut bob, "project.p2", 1).await?;
    c.publisher
        .publish(
            &[project_topic("project.p2")?],
            "project.progress",
            &json!({"before": true}),
        )
        .await?;
    assert_eq!(bob.next_json().await?["data"], json!({"before": true}));

    c.publisher.revoke("bob", "res:kubegen:project.*").await?;
    // Published right after revoke returned: must never reach bob.
    c.publisher
        .publish(
            &[project_topic("project.p2")?],
            "project.progress",
            &json!({"after": true}),
        )
        .await?;
    // The drop notice comes first: the event published after revoke returned
    // would otherwise arrive here.
    let err = bob.next_json().await?;
    assert_eq!(err["data"]["code"], "forbidden", "{err}");
    c.subscribers_become("res:kubegen:project.p2", 0).await?;
    c.publisher
        .publish(&[Topic::user("bob")?], "marker", &json!({}))
        .await?;
    assert_eq!(bob.next_json().await?["type"], "marker");
    bob.send_json(&json!({"type": "subscribe", "channel": "project.p2"}))
        .await?;
    assert_eq!(
        bob.next_json().await?["data"]["code"],
        "forbidden",
        "the grant is gone"
    );
    Ok(())
}

#[tokio::test]
async fn channel_names_and_counts_are_limited() -> Result<()> {
    let config = profile_config(
        "kubegen",
        &[("max_per_connection = 100", "max_per_connection = 2")],
    );
    let c = Cluster::start(1, Some(config)).await?;
    let mut ws = connect(&c, 0, &jwt("root", None, &["admin"], unix_now() + 600)).await?;
    for bad in ["a:b", "has space", "", &"x".repeat(129)] {
        ws.send_json(&json!({"type": "subscribe", "channel": bad}))
            .await?;
        assert_eq!(
            ws.next_json().await?["data"]["code"],
            "bad_request",
            "{bad:?}"
        );
    }
    ws.send_json(&json!({"type": "subscribe"})).await?;
    assert_eq!(ws.next_json().await?["data"]["code"], "bad_request");
    subscribe(&c, &mut ws, "one", 1).await?;
    subscribe(&c, &mut ws, "two", 1).await?;
    ws.send_json(&json!({"type": "subscribe", "channel": "three"}))
        .await?;
    assert_eq!(ws.next_json().await?["data"]["code"], "rate_limited");
    Ok(())
}

#[tokio::test]
async fn server_pings_with_a_timestamp_and_closes_silent_clients() -> Result<()> {
    let config = profile_config(
        "kubegen",
        &[
            ("interval_ms = 30000", "interval_ms = 400"),
            ("\ntimeout_ms = 10000", "\ntimeout_ms = 150"),
        ],
    );
    let c = Cluster::start(1, Some(config)).await?;
    let mut ws = connect(&c, 0, &dev_token()).await?;
    let ping = ws.next_json().await?;
    assert_eq!(ping["type"], "ping");
    assert!(
        ping["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ping}"
    );
    ws.send_json(&json!({"type": "pong"})).await?;
    assert_eq!(ws.next_json().await?["type"], "ping", "kept after a pong");
    let (frames, closed) = ws.until_closed().await?;
    assert!(frames.iter().all(|f| f["type"] == "ping"));
    assert!(
        matches!(closed, Closed::Frame { code: 1001, .. }),
        "{closed:?}"
    );
    Ok(())
}
