//! File organizer conformance (`/api/v1/ws/{client_id}`), against two
//! replicas and one Redis: API-key auth, one live session per `client_id`
//! across every replica (lease), owner-wide and per-client events.

use anyhow::Result;
use herald_publisher::{Principal, Topic};
use herald_tests::{Closed, Cluster, WsClient, profile_config, wait_until};
use serde_json::{Value, json};

async fn connect(c: &Cluster, replica: usize, client_id: &str, key: &str) -> Result<WsClient> {
    WsClient::connect(
        &c.gw(replica)
            .ws_url(&format!("/api/v1/ws/{client_id}?token={key}")),
    )
    .await
}

async fn cluster(config: Option<String>) -> Result<Cluster> {
    let c = Cluster::start(2, config).await?;
    c.publisher
        .add_api_key("fo-alice", &Principal::new("alice"))
        .await?;
    Ok(c)
}

fn flat(event: &str, payload: &Value) -> Value {
    let mut v = payload.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), json!(event));
    }
    v
}

async fn lease_exists(c: &Cluster, client_id: &str) -> bool {
    c.redis
        .exists(&herald_shared::Keys::default().lease(client_id))
        .await
}

#[tokio::test]
async fn owner_receives_documented_events_on_every_connection() -> Result<()> {
    let c = cluster(None).await?;
    let mut a = connect(&c, 0, "c-a", "fo-alice").await?;
    let mut b = connect(&c, 1, "c-b", "fo-alice").await?;
    c.subscribers_become("user:alice", 2).await?;
    let events = [
        (
            "job_progress",
            json!({"jobId": "job_123", "progress": 65, "processedCount": 65, "totalCount": 100, "currentFile": "document.pdf"}),
        ),
        (
            "job_complete",
            json!({"jobId": "job_123", "status": "completed", "organized": 100, "failed": 0}),
        ),
        (
            "file_uploaded",
            json!({"fileId": "file_456", "name": "newfile.pdf", "size": 512000}),
        ),
        (
            "error",
            json!({"jobId": "job_123", "error": "Permission denied", "code": "PERMISSION_ERROR"}),
        ),
    ];
    for (event, data) in &events {
        c.publisher
            .publish(&[Topic::user("alice")?], event, data)
            .await?;
    }
    for ws in [&mut a, &mut b] {
        for (event, data) in &events {
            assert_eq!(ws.next_json().await?, flat(event, data));
        }
    }
    Ok(())
}

#[tokio::test]
async fn an_event_can_be_addressed_to_one_client_id() -> Result<()> {
    let c = cluster(None).await?;
    let mut one = connect(&c, 0, "c-1", "fo-alice").await?;
    let mut two = connect(&c, 1, "c-2", "fo-alice").await?;
    c.subscribers_become("user:alice:client:c-1", 1).await?;
    c.subscribers_become("user:alice", 2).await?;
    c.publisher
        .publish(
            &[Topic::parse("user:alice:client:c-1")?],
            "job_progress",
            &json!({"jobId": "j"}),
        )
        .await?;
    c.publisher
        .publish(&[Topic::user("alice")?], "marker", &json!({}))
        .await?;
    assert_eq!(one.next_json().await?["type"], "job_progress");
    assert_eq!(one.next_json().await?["type"], "marker");
    assert_eq!(
        two.next_json().await?["type"],
        "marker",
        "c-2 did not get c-1's event"
    );
    Ok(())
}

#[tokio::test]
async fn a_live_client_id_is_refused_on_any_replica_and_freed_on_close() -> Result<()> {
    let c = cluster(None).await?;
    let first = connect(&c, 0, "dup-1", "fo-alice").await?;
    wait_until("lease taken", || lease_exists(&c, "dup-1")).await?;
    for replica in [1, 0] {
        let mut second = connect(&c, replica, "dup-1", "fo-alice").await?;
        let (frames, closed) = second.until_closed().await?;
        assert_eq!(
            frames,
            vec![
                json!({"type": "error", "error": "Client id already connected", "code": "CLIENT_ID_IN_USE"})
            ]
        );
        assert_eq!(closed.code(), Some(4409));
    }
    first.close().await;
    wait_until("lease released", || async {
        !lease_exists(&c, "dup-1").await
    })
    .await?;
    let mut again = connect(&c, 1, "dup-1", "fo-alice").await?;
    c.subscribers_become("user:alice:client:dup-1", 1).await?;
    c.publisher
        .publish(
            &[Topic::parse("user:alice:client:dup-1")?],
            "job_complete",
            &json!({"jobId": "j"}),
        )
        .await?;
    assert_eq!(again.next_json().await?["type"], "job_complete");
    Ok(())
}

#[tokio::test]
async fn a_client_id_held_by_a_killed_replica_frees_within_the_lease() -> Result<()> {
    const LEASE_MS: u64 = 1500;
    let config = profile_config(
        "fileorganizer",
        &[("lease_ms = 10000", &format!("lease_ms = {LEASE_MS}"))],
    );
    let mut c = cluster(Some(config)).await?;
    let _held = connect(&c, 0, "crash-1", "fo-alice").await?;
    wait_until("lease taken", || lease_exists(&c, "crash-1")).await?;
    c.gateways[0].kill().await?;
    let killed_at = tokio::time::Instant::now();
    assert!(
        lease_exists(&c, "crash-1").await,
        "still held right after the crash"
    );
    wait_until("lease expired", || async {
        !lease_exists(&c, "crash-1").await
    })
    .await?;
    // The lease runs out at most one lease after the last renewal; the rest
    // is slack for a loaded machine, still well short of the bundled 10 s.
    let bound = 3 * std::time::Duration::from_millis(LEASE_MS);
    assert!(
        killed_at.elapsed() <= bound,
        "freed {:?} after the kill; bound {bound:?}",
        killed_at.elapsed()
    );
    let mut again = connect(&c, 1, "crash-1", "fo-alice").await?;
    c.subscribers_become("user:alice:client:crash-1", 1).await?;
    c.publisher
        .publish(
            &[Topic::parse("user:alice:client:crash-1")?],
            "file_uploaded",
            &json!({"fileId": "f"}),
        )
        .await?;
    assert_eq!(again.next_json().await?["type"], "file_uploaded");
    Ok(())
}

#[tokio::test]
async fn bad_keys_and_bad_client_ids_are_refused() -> Result<()> {
    let c = cluster(None).await?;
    let mut bad_key = connect(&c, 0, "c-x", "wrong").await?;
    let (frames, closed) = bad_key.until_closed().await?;
    assert_eq!(frames[0]["code"], "UNAUTHORIZED");
    assert_eq!(closed.code(), Some(1008));
    let mut bad_id = connect(&c, 1, "a%3Ab", "fo-alice").await?;
    let (_, closed) = bad_id.until_closed().await?;
    assert!(
        matches!(closed, Closed::Frame { code: 4409, .. }),
        "{closed:?}"
    );
    Ok(())
}
