//! Authentication features of route profiles, on a profile written only in a
//! test config file: the credential in the client's first frame, typed error
//! frames, and streams that end when their token expires.

use anyhow::Result;
use herald_publisher::Topic;
use herald_tests::profiles::RUNS as PROFILE;
use herald_tests::{Closed, Cluster, WsClient, jwt, unix_now, wait_until};
use serde_json::json;

async fn subscribed(c: &Cluster, run: &str) -> Result<()> {
    let channel = format!("herald:{{res:run:{run}}}:ch");
    wait_until(&channel, || async {
        c.redis.numsub(&channel).await.ok() == Some(1)
    })
    .await
}

fn assert_error(frame: &serde_json::Value, message: &str) {
    herald_tests::assert_error_frame(frame, "unauthorized", Some(message));
}

#[tokio::test]
async fn token_in_the_first_message_authenticates() -> Result<()> {
    let c = Cluster::start(2, Some(PROFILE.to_owned())).await?;
    let mut ws = WsClient::connect(&c.gw(1).ws_url("/runs/r1/stream")).await?;
    let token = jwt("ops", None, &[], unix_now() + 300);
    ws.send_json(&json!({"type": "auth", "token": token}))
        .await?;
    subscribed(&c, "r1").await?;
    c.publisher
        .publish(
            &[Topic::resource("run", "r1")?],
            "step_progress",
            &json!({"nodeId": "deploy", "progress": 50}),
        )
        .await?;
    let frame = ws.next_json().await?;
    assert_eq!(frame["type"], "step_progress");
    assert_eq!(frame["progress"], 50);
    Ok(())
}

#[tokio::test]
async fn no_credential_within_the_deadline_gets_an_error_frame_and_close() -> Result<()> {
    let c = Cluster::start(1, Some(PROFILE.to_owned())).await?;
    let mut silent = WsClient::connect(&c.gw(0).ws_url("/runs/r1/stream")).await?;
    let (frames, closed) = silent.until_closed().await?;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_error(&frames[0], "Missing token");
    assert!(
        matches!(closed, Closed::Frame { code: 4001, .. }),
        "{closed:?}"
    );

    let mut wrong = WsClient::connect(&c.gw(0).ws_url("/runs/r1/stream")).await?;
    wrong
        .send_json(&json!({"type": "auth", "token": "a.b.c"}))
        .await?;
    let (frames, closed) = wrong.until_closed().await?;
    assert_error(&frames[0], "Invalid token");
    assert_eq!(closed.code(), Some(4001));
    Ok(())
}

#[tokio::test]
async fn expired_token_in_the_query_is_refused_with_unauthorized() -> Result<()> {
    let c = Cluster::start(1, Some(PROFILE.to_owned())).await?;
    let old = jwt("ops", None, &[], unix_now() - 3600);
    let mut ws =
        WsClient::connect(&c.gw(0).ws_url(&format!("/runs/r1/stream?token={old}"))).await?;
    let (frames, closed) = ws.until_closed().await?;
    assert_error(&frames[0], "Token expired");
    assert_eq!(closed.code(), Some(4001));
    Ok(())
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() -> Result<()> {
    let c = Cluster::start(1, Some(PROFILE.to_owned())).await?;
    // Long enough that connecting and one delivery fit before expiry on a
    // loaded machine (JWT expiry has one-second resolution).
    let short = jwt("ops", None, &[], unix_now() + 4);
    let mut ws =
        WsClient::connect(&c.gw(0).ws_url(&format!("/runs/r2/stream?token={short}"))).await?;
    subscribed(&c, "r2").await?;
    c.publisher
        .publish(
            &[Topic::resource("run", "r2")?],
            "step_log",
            &json!({"line": "ok"}),
        )
        .await?;
    let (frames, closed) = ws.until_closed().await?;
    assert_eq!(
        frames[0]["type"], "step_log",
        "served until expiry: {frames:?}"
    );
    assert_error(&frames[1], "Token expired");
    assert_eq!(closed.code(), Some(4001));
    Ok(())
}
