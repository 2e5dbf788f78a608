//! Stella Ops orchestrator conformance: the four streams over WebSocket and
//! their SSE twins, against two replicas and one Redis, publishing through
//! `herald-publisher`; the agent task stream end to end with upstream
//! consumers.

use std::time::Duration;

use anyhow::Result;
use herald_publisher::Topic;
use herald_tests::{
    Closed, Cluster, SseClient, SseResponse, WsClient, jwt, jwt_with_topics, profile_config,
    unix_now,
};
use serde_json::{Value, json};

fn ops_token() -> String {
    jwt_with_topics(
        "ops",
        Some("acme"),
        &[],
        &["res:workflow-run:*", "res:deployment-job:*", "res:agent:*"],
        unix_now() + 600,
    )
}

async fn registered(c: &Cluster, kind: &str, id: &str) -> Result<Topic> {
    let topic = Topic::resource(kind, id)?;
    c.publisher.register_resource(&topic).await?;
    Ok(topic)
}

fn assert_error(frame: &Value, code: &str) {
    herald_tests::assert_error_frame(frame, code, None);
}

#[tokio::test]
async fn workflow_run_stream_delivers_the_documented_messages() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let run = registered(&c, "workflow-run", "run-1").await?;
    let mut ws = WsClient::connect(&c.gw(1).ws_url(&format!(
        "/api/v1/workflow-runs/run-1/stream?token={}",
        ops_token()
    )))
    .await?;
    c.subscribers_become("res:workflow-run:run-1", 1).await?;
    let messages = [
        json!({"type": "step_started", "nodeId": "security-check", "stepType": "security-gate", "timestamp": "2026-01-10T14:23:45Z"}),
        json!({"type": "step_progress", "nodeId": "deploy", "progress": 50, "message": "Deploying to target 3/6"}),
        json!({"type": "step_log", "nodeId": "deploy", "line": "Pulling image sha256:abc123...", "level": "info", "timestamp": "2026-01-10T14:23:50Z"}),
        json!({"type": "step_completed", "nodeId": "security-check", "status": "succeeded", "outputs": {"criticalCount": 0, "highCount": 3}, "duration": 5.2, "timestamp": "2026-01-10T14:23:50Z"}),
        json!({"type": "workflow_completed", "status": "succeeded", "duration": 125.5, "outputs": {"deploymentId": "uuid"}, "timestamp": "2026-01-10T14:25:50Z"}),
    ];
    for m in &messages {
        let mut data = m.clone();
        let t = data
            .as_object_mut()
            .and_then(|o| o.remove("type"))
            .unwrap_or_default();
        c.publisher
            .publish(
                std::slice::from_ref(&run),
                t.as_str().unwrap_or_default(),
                &data,
            )
            .await?;
    }
    let mut offsets = Vec::new();
    for m in &messages {
        let (frame, offset) = split_offset(ws.next_json().await?)?;
        assert_eq!(&frame, m, "the documented frame, plus its offset");
        offsets.push(offset);
    }
    offsets.dedup();
    assert_eq!(offsets.len(), messages.len(), "one offset per event");
    Ok(())
}

/// A Stella Ops event frame without its `offset` (the resume position the
/// bundled profiles add), and that offset.
fn split_offset(mut frame: Value) -> Result<(Value, String)> {
    let offset = frame
        .as_object_mut()
        .and_then(|o| o.remove("offset"))
        .and_then(|o| o.as_str().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("no string offset in {frame}"))?;
    Ok((frame, offset))
}

#[tokio::test]
async fn a_websocket_client_resumes_on_the_other_replica_after_its_replica_dies() -> Result<()> {
    let mut c = Cluster::start(2, None).await?;
    let run = registered(&c, "workflow-run", "run-kill").await?;
    let topic = "res:workflow-run:run-kill";
    let url = |c: &Cluster, replica: usize, since: &str| {
        c.gw(replica).ws_url(&format!(
            "/api/v1/workflow-runs/run-kill/stream?token={}{since}",
            ops_token()
        ))
    };
    let log = |n: u64| json!({"nodeId": "deploy", "line": format!("line {n}"), "level": "info"});
    let publisher = c.publisher.clone();
    let publish = |n: u64| {
        let (run, publisher) = (run.clone(), publisher.clone());
        async move {
            publisher
                .publish(std::slice::from_ref(&run), "step_log", &log(n))
                .await
        }
    };
    let mut ws = WsClient::connect(&url(&c, 0, "")).await?;
    c.subscribers_become(topic, 1).await?;
    let mut last = String::new();
    for n in 0..5 {
        publish(n).await?;
        let (frame, offset) = split_offset(ws.next_json().await?)?;
        assert_eq!(frame["line"], format!("line {n}"));
        last = offset;
    }
    c.gateways[0].kill().await?;
    let (after, closed) = ws.until_closed().await?;
    assert_eq!(closed, Closed::Abrupt, "a killed replica sends no close");
    assert!(after.is_empty(), "nothing after the last read: {after:?}");
    for n in 5..10 {
        publish(n).await?;
    }
    let mut resumed = WsClient::connect(&url(&c, 1, &format!("&since={last}"))).await?;
    for n in 5..10 {
        let (frame, offset) = split_offset(resumed.next_json().await?)?;
        assert_eq!(
            frame["line"],
            format!("line {n}"),
            "missed events, in order"
        );
        assert_ne!(offset, last);
        last = offset;
    }
    c.subscribers_become(topic, 1).await?;
    publish(10).await?;
    let (frame, _) = split_offset(resumed.next_json().await?)?;
    assert_eq!(frame["line"], "line 10", "then live, nothing repeated");
    Ok(())
}

#[tokio::test]
async fn deployment_job_stream_authenticates_with_the_first_message() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let job = registered(&c, "deployment-job", "job-9").await?;
    let mut ws = WsClient::connect(&c.gw(0).ws_url("/api/v1/deployment-jobs/job-9/stream")).await?;
    ws.send_json(&json!({"type": "auth", "token": ops_token()}))
        .await?;
    c.subscribers_become("res:deployment-job:job-9", 1).await?;
    let done = json!({"status": "succeeded", "targetsDeployed": 4, "targetsFailed": 0, "duration": 180.5, "timestamp": "2026-01-10T14:26:45Z"});
    c.publisher.publish(&[job], "job_completed", &done).await?;
    let frame = ws.next_json().await?;
    assert_eq!(frame["type"], "job_completed");
    assert_eq!(frame["targetsDeployed"], 4);
    Ok(())
}

#[tokio::test]
async fn unknown_and_forbidden_resources_get_error_frames_then_close() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let mut missing = WsClient::connect(&c.gw(0).ws_url(&format!(
        "/api/v1/workflow-runs/nope/stream?token={}",
        ops_token()
    )))
    .await?;
    let (frames, closed) = missing.until_closed().await?;
    assert_error(&frames[0], "not_found");
    assert_eq!(closed.code(), Some(4404));

    registered(&c, "workflow-run", "secret").await?;
    let outsider = jwt("eve", None, &[], unix_now() + 600);
    let mut denied = WsClient::connect(&c.gw(1).ws_url(&format!(
        "/api/v1/workflow-runs/secret/stream?token={outsider}"
    )))
    .await?;
    let (frames, closed) = denied.until_closed().await?;
    assert_error(&frames[0], "forbidden");
    assert_eq!(closed.code(), Some(4403));

    let mut bad = WsClient::connect(
        &c.gw(1)
            .ws_url("/api/v1/workflow-runs/secret/stream?token=garbage"),
    )
    .await?;
    let (frames, closed) = bad.until_closed().await?;
    assert_error(&frames[0], "unauthorized");
    assert_eq!(closed.code(), Some(4401));
    Ok(())
}

#[tokio::test]
async fn a_token_expiring_mid_stream_gets_unauthorized_and_the_close() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    // Seconds of validity: enough to connect and receive one event on a loaded
    // machine, so the error below can only come from expiry mid-stream.
    let short = jwt_with_topics("ops", None, &[], &["res:workflow-run:*"], unix_now() + 4);
    let run = registered(&c, "workflow-run", "run-2").await?;
    let mut ws = WsClient::connect(
        &c.gw(0)
            .ws_url(&format!("/api/v1/workflow-runs/run-2/stream?token={short}")),
    )
    .await?;
    c.subscribers_become("res:workflow-run:run-2", 1).await?;
    let step = json!({"nodeId": "deploy", "line": "before expiry"});
    c.publisher.publish(&[run], "step_log", &step).await?;
    let (frames, closed) = ws.until_closed().await?;
    let first = frames.first().cloned().unwrap_or_default();
    assert_eq!(
        split_offset(first)?.0,
        json!({"type": "step_log", "nodeId": "deploy", "line": "before expiry"}),
        "the stream was open before the token expired: {frames:?}"
    );
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_error(&frames[1], "unauthorized");
    assert_eq!(frames[1]["message"], "Token expired");
    assert_eq!(closed.code(), Some(4401));
    Ok(())
}

#[tokio::test]
async fn connections_beyond_the_per_principal_limit_are_rate_limited() -> Result<()> {
    let config = format!(
        "[limits]\nconnections_per_principal = 1\n{}",
        herald_tests::default_config().replacen("[limits]\n", "[limits_unused]\n", 0)
    );
    // A file with its own [limits] and no profiles keeps the bundled profiles.
    let config = if config.matches("[limits]").count() > 1 {
        "[limits]\nconnections_per_principal = 1\n".to_owned()
    } else {
        config
    };
    let c = Cluster::start(1, Some(config)).await?;
    registered(&c, "deployment-job", "job-1").await?;
    let url = c.gw(0).ws_url(&format!(
        "/api/v1/deployment-jobs/job-1/stream?token={}",
        ops_token()
    ));
    let _first = WsClient::connect(&url).await?;
    c.subscribers_become("res:deployment-job:job-1", 1).await?;
    let mut second = WsClient::connect(&url).await?;
    let (frames, closed) = second.until_closed().await?;
    assert_error(&frames[0], "rate_limited");
    assert_eq!(closed.code(), Some(4429));
    Ok(())
}

#[tokio::test]
async fn heartbeat_frames_carry_a_timestamp_and_silence_is_terminated() -> Result<()> {
    let config = profile_config(
        "stellaops-dashboard",
        &[
            ("interval_ms = 30000", "interval_ms = 300"),
            ("timeout_ms = 30000", "timeout_ms = 200"),
        ],
    );
    let c = Cluster::start(1, Some(config)).await?;
    let mut ws = WsClient::connect(
        &c.gw(0)
            .ws_url(&format!("/api/v1/dashboard/stream?token={}", ops_token())),
    )
    .await?;
    let hb = ws.next_json().await?;
    assert_eq!(hb["type"], "heartbeat");
    assert!(
        hb["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{hb}"
    );
    ws.send_json(&json!({"type": "pong"})).await?;
    assert_eq!(
        ws.next_json().await?["type"],
        "heartbeat",
        "a pong keeps it"
    );
    let (_, closed) = ws.until_closed().await?;
    assert!(
        matches!(closed, Closed::Frame { code: 1001, .. }),
        "{closed:?}"
    );
    Ok(())
}

mod sse {
    use super::*;

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[tokio::test]
    async fn dashboard_over_sse_with_ids_and_resume_by_last_event_id() -> Result<()> {
        let c = Cluster::start(2, None).await?;
        let token = ops_token();
        let auth = bearer(&token);
        let dashboard = Topic::resource("dashboard", "global")?;
        let mut first = SseClient::connect(
            &c.gw(1).addr,
            "/api/v1/dashboard/stream",
            &[("Authorization", &auth)],
        )
        .await?
        .stream()?;
        c.subscribers_become("res:dashboard:global", 1).await?;
        let metric = |n: u32| json!({"metrics": {"pendingApprovals": n, "activeDeployments": 1}, "timestamp": "2026-01-10T14:23:45Z"});
        c.publisher
            .publish(
                std::slice::from_ref(&dashboard),
                "metric_update",
                &metric(1),
            )
            .await?;
        c.publisher
            .publish(
                std::slice::from_ref(&dashboard),
                "alert",
                &json!({"alert": {"id": "a1", "severity": "warning"}}),
            )
            .await?;
        let e1 = first.next_event().await?;
        let e2 = first.next_event().await?;
        assert!(
            !e1.id.is_empty() && !e2.id.is_empty() && e1.id != e2.id,
            "ids on every event"
        );
        let mut expected = metric(1);
        expected["type"] = json!("metric_update");
        expected["offset"] = json!(e1.id);
        assert_eq!(
            serde_json::from_str::<Value>(&e1.data)?,
            expected,
            "same payload as the WebSocket stream"
        );
        assert_eq!(serde_json::from_str::<Value>(&e2.data)?["type"], "alert");
        drop(first);

        // While away: three more; resume on the other replica from e1.
        for n in 2..=4 {
            c.publisher
                .publish(
                    std::slice::from_ref(&dashboard),
                    "metric_update",
                    &metric(n),
                )
                .await?;
        }
        let mut resumed = SseClient::connect(
            &c.gw(0).addr,
            "/api/v1/dashboard/stream",
            &[("Authorization", &auth), ("Last-Event-ID", &e1.id)],
        )
        .await?
        .stream()?;
        let got = resumed.next_event().await?;
        assert_eq!(got.id, e2.id, "replay starts right after the last seen id");
        let mut seen = vec![got.id.clone()];
        for n in 2..=4 {
            let e = resumed.next_event().await?;
            assert_eq!(
                serde_json::from_str::<Value>(&e.data)?["metrics"]["pendingApprovals"],
                n
            );
            seen.push(e.id);
        }
        // Live again after the replay, with no repeats.
        c.subscribers_become("res:dashboard:global", 1).await?;
        c.publisher
            .publish(
                &[dashboard],
                "promotion_update",
                &json!({"promotion": {"id": "p1"}}),
            )
            .await?;
        let live = resumed.next_event().await?;
        assert_eq!(
            serde_json::from_str::<Value>(&live.data)?["type"],
            "promotion_update"
        );
        assert!(!seen.contains(&live.id));
        Ok(())
    }

    #[tokio::test]
    async fn sse_refusals_are_http_statuses_with_error_bodies() -> Result<()> {
        let c = Cluster::start(1, None).await?;
        let path = "/api/v1/workflow-runs/run-x/stream";
        let refused = |r: SseResponse| match r {
            SseResponse::Refused { status, body } => {
                Some((status, serde_json::from_str::<Value>(&body).ok()))
            }
            SseResponse::Stream(_) => None,
        };
        let r = refused(SseClient::connect(&c.gw(0).addr, path, &[]).await?);
        assert_eq!(r.as_ref().map(|r| r.0), Some(401));
        let auth = bearer(&ops_token());
        let r =
            refused(SseClient::connect(&c.gw(0).addr, path, &[("Authorization", &auth)]).await?);
        assert_eq!(r.as_ref().map(|r| r.0), Some(404));
        assert_eq!(
            r.and_then(|r| r.1).map(|b| b["code"].clone()),
            Some(json!("not_found"))
        );
        registered(&c, "workflow-run", "run-x").await?;
        let eve = bearer(&jwt("eve", None, &[], unix_now() + 600));
        let r = refused(SseClient::connect(&c.gw(0).addr, path, &[("Authorization", &eve)]).await?);
        assert_eq!(r.map(|r| r.0), Some(403));
        let mut ok = SseClient::connect(&c.gw(0).addr, path, &[("Authorization", &auth)])
            .await?
            .stream()?;
        c.subscribers_become("res:workflow-run:run-x", 1).await?;
        c.publisher
            .publish(
                &[Topic::resource("workflow-run", "run-x")?],
                "step_progress",
                &json!({"nodeId": "n", "progress": 5}),
            )
            .await?;
        assert_eq!(
            serde_json::from_str::<Value>(&ok.next_event().await?.data)?["progress"],
            5
        );
        Ok(())
    }
}

mod agent {
    use super::*;

    #[tokio::test]
    async fn tasks_flow_down_and_reports_flow_up_to_consumer_groups() -> Result<()> {
        let c = Cluster::start(2, None).await?;
        registered(&c, "agent", "agent-1").await?;
        let agent_token = jwt_with_topics(
            "agent-1",
            None,
            &["agent"],
            &["res:agent:agent-1"],
            unix_now() + 600,
        );
        let mut agent = WsClient::connect(&c.gw(1).ws_url(&format!(
            "/api/v1/agents/agent-1/task-stream?token={agent_token}"
        )))
        .await?;
        c.subscribers_become("res:agent:agent-1", 1).await?;

        let task = json!({
            "taskId": "t-1", "taskType": "docker.pull", "payload": {"image": "myapp", "digest": "sha256:abc123..."},
            "credentials": {"registry.username": "user", "registry.password": "hunter2-secret"}, "timeout": 300
        });
        c.publisher.assign_task("agent-1", &task).await?;
        assert_eq!(
            agent.next_json().await?,
            json!({"type": "task_assigned", "task": task})
        );

        let reports = [
            json!({"type": "task_progress", "taskId": "t-1", "progress": 50, "message": "Pulling image layer 3/5"}),
            json!({"type": "task_log", "taskId": "t-1", "level": "info", "message": "Image layer downloaded"}),
            json!({"type": "task_completed", "taskId": "t-1", "success": true, "result": {"imageId": "sha256:abc123..."}}),
        ];
        for r in &reports {
            agent.send_json(r).await?;
        }
        // Worker 1 reads all three but acknowledges only the first, then dies.
        // Bounded, so frames that are never forwarded fail the test instead of hanging it.
        let mut batch = Vec::new();
        tokio::time::timeout(herald_tests::EVENT_TIMEOUT, async {
            while batch.len() < 3 {
                batch.extend(
                    c.publisher
                        .consume(
                            "agent-tasks",
                            "workers",
                            "w1",
                            10,
                            Some(Duration::from_secs(1)),
                        )
                        .await?,
                );
            }
            anyhow::Ok(())
        })
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{} of 3 reports forwarded within {:?}: {batch:?}",
                batch.len(),
                herald_tests::EVENT_TIMEOUT
            )
        })??;
        assert_eq!(
            batch.iter().map(|m| m.frame.clone()).collect::<Vec<_>>(),
            reports.to_vec()
        );
        assert!(
            batch
                .iter()
                .all(|m| m.source == "agent-1" && m.sub == "agent-1" && m.received_ms > 0)
        );
        c.publisher
            .ack("agent-tasks", "workers", &[batch[0].id.clone()])
            .await?;
        // Worker 2 takes over what worker 1 never acknowledged.
        let orphans = c
            .publisher
            .claim_stale("agent-tasks", "workers", "w2", Duration::ZERO, 10)
            .await?;
        assert_eq!(
            orphans.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
            vec![batch[1].id.clone(), batch[2].id.clone()]
        );
        assert_eq!(
            c.publisher
                .ack(
                    "agent-tasks",
                    "workers",
                    &[batch[1].id.clone(), batch[2].id.clone()]
                )
                .await?,
            2
        );

        c.publisher
            .cancel_task("agent-1", "t-1", "Deployment cancelled by user")
            .await?;
        assert_eq!(
            agent.next_json().await?,
            json!({"type": "task_cancelled", "taskId": "t-1", "reason": "Deployment cancelled by user"})
        );
        for gw in &c.gateways {
            assert!(
                !gw.log_text().contains("hunter2-secret"),
                "credentials never logged"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn invalid_agent_frames_are_answered_and_never_forwarded() -> Result<()> {
        let c = Cluster::start(1, None).await?;
        registered(&c, "agent", "agent-2").await?;
        let mut agent = WsClient::connect(&c.gw(0).ws_url(&format!(
            "/api/v1/agents/agent-2/task-stream?token={}",
            ops_token()
        )))
        .await?;
        c.subscribers_become("res:agent:agent-2", 1).await?;
        agent.send_text("{not json").await?;
        assert_error(&agent.next_json().await?, "bad_request");
        agent
            .send_json(&json!({"type": "rm_rf", "taskId": "t"}))
            .await?;
        assert_error(&agent.next_json().await?, "bad_request");
        let huge = "x".repeat(20_000);
        agent
            .send_json(&json!({"type": "task_log", "taskId": "t", "message": huge}))
            .await?;
        assert_error(&agent.next_json().await?, "bad_request");
        agent
            .send_json(&json!({"type": "task_log", "taskId": "t", "message": "ok"}))
            .await?;
        let got = c
            .publisher
            .consume(
                "agent-tasks",
                "audit",
                "a1",
                10,
                Some(Duration::from_secs(5)),
            )
            .await?;
        assert_eq!(got.len(), 1, "only the valid frame was forwarded: {got:?}");
        assert_eq!(got[0].frame["message"], "ok");
        Ok(())
    }
}

#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_refused_before_the_handshake() -> Result<()> {
    let config = "[limits]\nconnections_per_ip = 1\n".to_owned();
    let c = Cluster::start(1, Some(config)).await?;
    let url = c
        .gw(0)
        .ws_url(&format!("/api/v1/dashboard/stream?token={}", ops_token()));
    let first = WsClient::connect(&url).await?;
    let refused = WsClient::connect(&url)
        .await
        .expect_err("second connection from 127.0.0.1");
    assert!(refused.to_string().contains("429"), "{refused}");
    first.close().await;
    herald_tests::wait_until("slot freed", || async {
        WsClient::connect(&url).await.is_ok()
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn sse_streams_send_keep_alive_comments() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = profile_config(
        "stellaops-dashboard",
        &[("keep_alive_ms = 15000", "keep_alive_ms = 200")],
    );
    let c = Cluster::start(1, Some(config)).await?;
    let mut s = tokio::net::TcpStream::connect(&c.gw(0).addr).await?;
    let req = format!(
        "GET /api/v1/dashboard/stream HTTP/1.0\r\nAccept: text/event-stream\r\nAuthorization: Bearer {}\r\n\r\n",
        ops_token()
    );
    s.write_all(req.as_bytes()).await?;
    let mut seen = Vec::new();
    tokio::time::timeout(herald_tests::EVENT_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("\n:") {
            let n = s.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "stream ended");
            seen.extend_from_slice(&buf[..n]);
        }
        Ok(())
    })
    .await??;
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.0 200")
            || String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200")
    );
    Ok(())
}

#[tokio::test]
async fn heraldctl_consume_shows_forwarded_frames() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    registered(&c, "agent", "agent-3").await?;
    let mut agent = WsClient::connect(&c.gw(0).ws_url(&format!(
        "/api/v1/agents/agent-3/task-stream?token={}",
        ops_token()
    )))
    .await?;
    c.subscribers_become("res:agent:agent-3", 1).await?;
    agent
        .send_json(&json!({"type": "task_progress", "taskId": "t-9", "progress": 10}))
        .await?;
    let url = c.redis.url();
    let out = herald_tests::heraldctl(
        &[],
        &[
            "--redis",
            &url,
            "consume",
            "--group",
            "ops",
            "--block-ms",
            "5000",
            "--ack",
        ],
    )
    .await?;
    let line: Value = serde_json::from_str(out.trim())?;
    assert_eq!(line["source"], "agent-3");
    assert_eq!(
        line["frame"],
        json!({"type": "task_progress", "taskId": "t-9", "progress": 10})
    );
    Ok(())
}

#[tokio::test]
async fn a_viewer_opening_mid_run_sees_the_run_so_far() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    let run = registered(&c, "workflow-run", "run-mid").await?;
    for n in 0..3 {
        c.publisher
            .publish(
                std::slice::from_ref(&run),
                "step_log",
                &json!({"nodeId": "deploy", "line": n}),
            )
            .await?;
    }
    let mut ws = WsClient::connect(&c.gw(1).ws_url(&format!(
        "/api/v1/workflow-runs/run-mid/stream?token={}",
        ops_token()
    )))
    .await?;
    for n in 0..3 {
        assert_eq!(ws.next_json().await?["line"], n);
    }
    c.subscribers_become("res:workflow-run:run-mid", 1).await?;
    c.publisher
        .publish(
            std::slice::from_ref(&run),
            "step_log",
            &json!({"nodeId": "deploy", "line": 3}),
        )
        .await?;
    assert_eq!(ws.next_json().await?["line"], 3);
    Ok(())
}
