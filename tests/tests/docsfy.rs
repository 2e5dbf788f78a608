//! docsfy conformance (`/api/ws`), one test per documented behaviour, each
//! against two gateway replicas on one real Redis, publishing through
//! `herald-publisher`.

use std::time::Duration;

use anyhow::Result;
use herald_publisher::{Principal, Topic};
use herald_tests::{ADMIN_KEY, Closed, Cluster, WsClient};
use serde_json::{Value, json};

fn principal(sub: &str, roles: &[&str]) -> Principal {
    let mut p = Principal::new(sub);
    p.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    p
}

fn empty_sync() -> Value {
    json!({"type": "sync", "projects": [], "known_models": {}, "known_branches": {}})
}

/// The document's `progress` example.
fn progress_payload(owner: &str) -> Value {
    json!({
        "name": "docsfy", "branch": "main", "provider": "cursor", "model": "gpt-5.4-xhigh-fast",
        "owner": owner, "status": "generating", "current_stage": "generating_pages", "page_count": 3,
        "plan_json": "{\"project_name\":\"docsfy\",\"navigation\":[...]}"
    })
}

fn with_type(t: &str, payload: &Value) -> Value {
    let mut v = json!({"type": t});
    if let (Some(o), Some(p)) = (v.as_object_mut(), payload.as_object()) {
        o.extend(p.clone());
    }
    v
}

/// The document's `sync` example.
fn snapshot_payload() -> Value {
    json!({
        "projects": [{
            "name": "docsfy", "branch": "main", "ai_provider": "cursor", "ai_model": "gpt-5.4-xhigh-fast",
            "owner": "alice", "repo_url": "https://github.com/myk-org/docsfy", "status": "ready",
            "current_stage": null, "last_commit_sha": "abc123def456", "last_generated": "2026-04-17 12:34:56",
            "page_count": 14, "error_message": null, "plan_json": "{\"project_name\":\"docsfy\"}",
            "created_at": "2026-04-17 12:10:00", "updated_at": "2026-04-17 12:34:56"
        }],
        "known_models": {"cursor": ["gpt-5.4-xhigh-fast"]},
        "known_branches": {"docsfy": ["main"]}
    })
}

async fn connect_key(c: &Cluster, replica: usize, key: &str) -> Result<WsClient> {
    WsClient::connect(&c.gw(replica).ws_url(&format!("/api/ws?token={key}"))).await
}

/// Connect with an API key for `sub` and consume the initial sync.
async fn user(c: &Cluster, replica: usize, sub: &str, roles: &[&str]) -> Result<WsClient> {
    let key = format!("key-{sub}-{}", roles.join("-"));
    c.publisher
        .add_api_key(&key, &principal(sub, roles))
        .await?;
    let mut ws = connect_key(c, replica, &key).await?;
    assert_eq!(ws.next_json().await?["type"], "sync");
    Ok(ws)
}

#[tokio::test]
async fn api_key_in_token_query_gets_sync_immediately() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    c.publisher
        .add_api_key("k-alice", &principal("alice", &[]))
        .await?;
    let mut ws = connect_key(&c, 1, "k-alice").await?;
    assert_eq!(
        ws.next_json().await?,
        empty_sync(),
        "empty lists when no snapshot is stored"
    );
    Ok(())
}

#[tokio::test]
async fn admin_key_in_token_query_is_accepted() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut ws = connect_key(&c, 0, ADMIN_KEY).await?;
    assert_eq!(ws.next_json().await?, empty_sync());
    Ok(())
}

#[tokio::test]
async fn session_cookie_is_accepted() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    c.publisher
        .add_session(
            "sess-bob",
            &principal("bob", &[]),
            Duration::from_secs(28_800),
        )
        .await?;
    let url = c.gw(1).ws_url("/api/ws");
    let mut ws =
        WsClient::connect_with(&url, &[("Cookie", "theme=dark; docsfy_session=sess-bob")]).await?;
    assert_eq!(ws.next_json().await?, empty_sync());
    Ok(())
}

#[tokio::test]
async fn authorization_header_is_never_read() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    c.publisher
        .add_api_key("k-alice", &principal("alice", &[]))
        .await?;
    let url = c.gw(0).ws_url("/api/ws");
    let mut ws = WsClient::connect_with(&url, &[("Authorization", "Bearer k-alice")]).await?;
    let (frames, closed) = ws.until_closed().await?;
    assert!(
        frames.is_empty(),
        "no sync before the auth failure: {frames:?}"
    );
    assert_eq!(closed.code(), Some(1008));
    Ok(())
}

#[tokio::test]
async fn failed_auth_closes_1008() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    c.publisher
        .add_session("sess-old", &principal("old", &[]), Duration::from_secs(60))
        .await?;
    c.publisher.remove_session("sess-old").await?;
    let gw = c.gw(0);
    let cases = [
        WsClient::connect(&gw.ws_url("/api/ws?token=not-a-key")).await?,
        WsClient::connect(&gw.ws_url("/api/ws")).await?,
        WsClient::connect_with(
            &gw.ws_url("/api/ws"),
            &[("Cookie", "docsfy_session=sess-old")],
        )
        .await?,
    ];
    for mut ws in cases {
        let (frames, closed) = ws.until_closed().await?;
        assert!(frames.is_empty());
        assert_eq!(closed.code(), Some(1008), "{closed:?}");
    }
    Ok(())
}

#[tokio::test]
async fn sync_on_connect_is_the_stored_snapshot() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    c.publisher
        .set_snapshot(&Topic::user("alice")?, &snapshot_payload())
        .await?;
    c.publisher
        .add_api_key("k-alice", &principal("alice", &[]))
        .await?;
    let mut ws = connect_key(&c, 1, "k-alice").await?;
    assert_eq!(
        ws.next_json().await?,
        with_type("sync", &snapshot_payload())
    );
    Ok(())
}

#[tokio::test]
async fn progress_is_delivered_field_for_field_across_replicas() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut on_b = user(&c, 1, "alice", &[]).await?;
    c.publisher
        .progress(&[Topic::user("alice")?], &progress_payload("alice"))
        .await?;
    assert_eq!(
        on_b.next_json().await?,
        with_type("progress", &progress_payload("alice"))
    );
    Ok(())
}

#[tokio::test]
async fn status_change_is_followed_by_a_fresh_sync() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut ws = user(&c, 0, "alice", &[]).await?;
    // The backend stores the new state, then announces the terminal status.
    c.publisher
        .set_snapshot(&Topic::user("alice")?, &snapshot_payload())
        .await?;
    let change = json!({
        "name": "docsfy", "branch": "main", "provider": "cursor", "model": "gpt-5.4-xhigh-fast",
        "owner": "alice", "status": "ready", "page_count": 14,
        "last_generated": "2026-04-17 12:34:56", "last_commit_sha": "abc123def456"
    });
    c.publisher
        .status_change(&[Topic::user("alice")?], &change)
        .await?;
    assert_eq!(ws.next_json().await?, with_type("status_change", &change));
    assert_eq!(
        ws.next_json().await?,
        with_type("sync", &snapshot_payload())
    );
    // Progress is not followed by a sync.
    c.publisher
        .progress(&[Topic::user("alice")?], &progress_payload("alice"))
        .await?;
    c.publisher
        .publish(&[Topic::user("alice")?], "marker", &json!({}))
        .await?;
    assert_eq!(ws.next_json().await?["type"], "progress");
    assert_eq!(ws.next_json().await?["type"], "marker");
    Ok(())
}

#[tokio::test]
async fn admins_see_all_users_see_owned_and_shared_strangers_nothing() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut admin = connect_key(&c, 0, ADMIN_KEY).await?;
    assert_eq!(admin.next_json().await?["type"], "sync");
    let mut owner = user(&c, 1, "alice", &[]).await?;
    let mut shared = user(&c, 0, "bob", &[]).await?;
    let mut stranger = user(&c, 1, "carol", &[]).await?;

    // alice owns the variant and shares it with bob; admins see every variant.
    let audience = [
        Topic::user("alice")?,
        Topic::user("bob")?,
        Topic::role("admin")?,
    ];
    c.publisher
        .progress(&audience, &progress_payload("alice"))
        .await?;
    let expected = with_type("progress", &progress_payload("alice"));
    assert_eq!(admin.next_json().await?, expected);
    assert_eq!(owner.next_json().await?, expected);
    assert_eq!(shared.next_json().await?, expected);

    // carol's next frame is an event addressed to her, not alice's progress.
    c.publisher
        .publish(&[Topic::user("carol")?], "marker", &json!({"n": 1}))
        .await?;
    assert_eq!(
        stranger.next_json().await?,
        json!({"type": "marker", "n": 1})
    );
    Ok(())
}

#[tokio::test]
async fn an_event_reaching_a_connection_through_two_topics_arrives_once() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    // An admin who is also the owner joins both user:alice and role:admin.
    let mut ws = user(&c, 1, "alice", &["admin"]).await?;
    let audience = [Topic::user("alice")?, Topic::role("admin")?];
    c.publisher
        .progress(&audience, &progress_payload("alice"))
        .await?;
    // Reverse order too: the copy on role:admin comes first on the wire.
    let reversed = [Topic::role("admin")?, Topic::user("alice")?];
    c.publisher
        .publish(&reversed, "progress", &json!({"second": true}))
        .await?;
    c.publisher
        .publish(&[Topic::user("alice")?], "marker", &json!({}))
        .await?;
    assert_eq!(
        ws.next_json().await?,
        with_type("progress", &progress_payload("alice"))
    );
    assert_eq!(
        ws.next_json().await?,
        json!({"type": "progress", "second": true})
    );
    assert_eq!(
        ws.next_json().await?["type"],
        "marker",
        "no duplicate before the marker"
    );
    Ok(())
}

#[tokio::test]
async fn grant_and_revoke_trigger_a_new_sync() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut bob = user(&c, 1, "bob", &[]).await?;
    c.publisher
        .set_snapshot(&Topic::user("bob")?, &snapshot_payload())
        .await?;
    c.publisher.grant("bob", "res:project:docsfy").await?;
    assert_eq!(
        bob.next_json().await?,
        with_type("sync", &snapshot_payload())
    );
    c.publisher
        .set_snapshot(
            &Topic::user("bob")?,
            &json!({"projects": [], "known_models": {}, "known_branches": {}}),
        )
        .await?;
    c.publisher.revoke("bob", "res:project:docsfy").await?;
    assert_eq!(bob.next_json().await?, empty_sync());
    Ok(())
}

fn short_heartbeat_config() -> String {
    herald_tests::profile_config(
        "docsfy",
        &[
            ("interval_ms = 30000", "interval_ms = 400"),
            ("\ntimeout_ms = 10000", "\ntimeout_ms = 150"),
        ],
    )
}

#[tokio::test]
async fn server_pings_and_closes_1001_after_two_missed_pongs() -> Result<()> {
    let c = Cluster::start(2, Some(short_heartbeat_config())).await?;
    let mut ws = user(&c, 0, "alice", &[]).await?;
    let (frames, closed) = ws.until_closed().await?;
    assert_eq!(
        frames,
        vec![json!({"type": "ping"}), json!({"type": "ping"})],
        "two pings, both unanswered"
    );
    assert!(
        matches!(closed, Closed::Frame { code: 1001, .. }),
        "{closed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn answering_pongs_keeps_the_connection() -> Result<()> {
    let c = Cluster::start(2, Some(short_heartbeat_config())).await?;
    let mut ws = user(&c, 1, "alice", &[]).await?;
    // Four pings answered span more than two missed-pong windows.
    for _ in 0..4 {
        assert_eq!(ws.next_json().await?, json!({"type": "ping"}));
        ws.send_json(&json!({"type": "pong"})).await?;
    }
    c.publisher
        .progress(&[Topic::user("alice")?], &progress_payload("alice"))
        .await?;
    assert_eq!(ws.next_json_except("ping").await?["type"], "progress");
    Ok(())
}

#[tokio::test]
async fn client_frames_other_than_pong_are_ignored() -> Result<()> {
    let c = Cluster::start(2, Some(short_heartbeat_config())).await?;
    let mut ws = user(&c, 0, "alice", &[]).await?;
    ws.send_text("not json").await?;
    ws.send_text("{\"type\":").await?;
    ws.send_json(&json!({"type": "subscribe", "channel": "project.x"}))
        .await?;
    ws.send_json(&json!({"type": "PONG"})).await?;
    ws.send_json(&json!(["pong"])).await?;
    ws.send_binary(b"{\"type\":\"pong\"}".to_vec()).await?;
    c.publisher
        .progress(&[Topic::user("alice")?], &progress_payload("alice"))
        .await?;
    assert_eq!(
        ws.next_json_except("ping").await?["type"],
        "progress",
        "still connected, nothing answered"
    );
    // None of those counted as a pong: the heartbeat still closes the socket.
    let (frames, closed) = ws.until_closed().await?;
    assert!(frames.iter().all(|f| f["type"] == "ping"), "{frames:?}");
    assert_eq!(closed.code(), Some(1001));
    Ok(())
}
