//! The gateway binary as operators run it: the embedded default, config
//! validation, a profile written only in a config file, metrics, and secrets
//! kept out of logs and metrics.

use anyhow::Result;
use herald_publisher::Topic;
use herald_tests::profiles::BUILDS as CUSTOM_PROFILE;
use herald_tests::{
    ADMIN_KEY, Cluster, Gateway, GatewayOptions, WsClient, gateway_binary, jwt, metric,
    scratch_dir, unix_now,
};
use serde_json::json;

#[tokio::test]
async fn bare_binary_serves_docsfy_with_the_embedded_broker() -> Result<()> {
    // No --config, no Redis: the bundled profiles on the in-memory broker.
    let gw = Gateway::start(GatewayOptions::default()).await?;
    gw.wait_ready(true).await?;
    let mut ws = WsClient::connect(&gw.ws_url(&format!("/api/ws?token={ADMIN_KEY}"))).await?;
    assert_eq!(
        ws.next_json().await?,
        json!({"type": "sync", "projects": [], "known_models": {}, "known_branches": {}})
    );
    assert!(gw.log_text().contains("embedded in-memory broker"));
    Ok(())
}

#[tokio::test]
async fn a_first_run_prints_development_credentials_that_work_end_to_end() -> Result<()> {
    // No config, no Redis, no secret: development mode.
    let gw = Gateway::start(GatewayOptions {
        no_secrets: true,
        ..Default::default()
    })
    .await?;
    let banner = gw.banner.join("\n");
    assert!(banner.contains("DEVELOPMENT MODE"), "{banner}");
    let value = |name: &str| {
        gw.banner
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no {name} in {banner}"))
    };
    let (admin, api_key) = (value("HERALD_ADMIN_KEY")?, value("HERALD_API_KEY")?);
    assert!(
        !gw.log_text().contains(&admin) && !gw.log_text().contains(&api_key),
        "secrets are printed once on stdout, never logged"
    );
    // The printed client command's URL, and the printed heraldctl command.
    let client_url = gw
        .banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("websocat '"))
        .and_then(|l| l.strip_suffix('\''))
        .ok_or_else(|| anyhow::anyhow!("no client command in {banner}"))?;
    let mut ws = WsClient::connect(client_url).await?;
    assert_eq!(ws.next_json().await?["type"], "sync");
    let heraldctl_line = gw
        .banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("heraldctl "))
        .ok_or_else(|| anyhow::anyhow!("no heraldctl command in {banner}"))?;
    // Run it as printed (its quoted JSON is the last argument).
    let (flags, data) = heraldctl_line
        .split_once(" --data '")
        .ok_or_else(|| anyhow::anyhow!("unexpected command {heraldctl_line}"))?;
    let data = data.trim_end_matches('\'');
    let mut args: Vec<&str> = flags.split_whitespace().collect();
    args.extend(["--data", data]);
    herald_tests::heraldctl(&[], &args).await?;
    assert_eq!(
        ws.next_json().await?,
        json!({"type": "progress", "step": 1})
    );
    Ok(())
}

#[tokio::test]
async fn the_embedded_broker_keeps_history_for_resume() -> Result<()> {
    let gw = Gateway::start(GatewayOptions {
        env: vec![("HERALD_API_KEY".into(), "embedded-api-key".into())],
        ..Default::default()
    })
    .await?;
    let api = herald_publisher::HttpPublisher::new(
        &format!("http://{}/herald/v1", gw.addr),
        "embedded-api-key",
    )?;
    let run = [Topic::resource("workflow-run", "e1")?];
    for n in 0..3 {
        api.publish(&run, "step_log", &json!({"line": n}), None)
            .await?;
    }
    // A viewer opening mid-run gets the run so far (resume.replay_last),
    // each frame with its offset; one reconnecting from the first offset
    // gets the rest.
    let token = jwt("ops", None, &["admin"], unix_now() + 600);
    let url = |since: &str| {
        gw.ws_url(&format!(
            "/api/v1/workflow-runs/e1/stream?token={token}{since}"
        ))
    };
    let mut viewer = WsClient::connect(&url("")).await?;
    let mut offsets = Vec::new();
    for n in 0..3 {
        let frame = viewer.next_json().await?;
        assert_eq!(frame["line"], n, "{frame}");
        offsets.push(frame["offset"].as_str().unwrap_or_default().to_owned());
    }
    let mut resumed = WsClient::connect(&url(&format!("&since={}", offsets[0]))).await?;
    for n in 1..3 {
        let frame = resumed.next_json().await?;
        assert_eq!(
            (frame["line"].clone(), frame["offset"].clone()),
            (json!(n), json!(offsets[n as usize]))
        );
    }
    Ok(())
}

#[tokio::test]
async fn broker_connected_and_build_info_are_always_exported() -> Result<()> {
    let metric = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
    };
    let embedded = Gateway::start(GatewayOptions::default()).await?;
    let (_, text) = embedded.get("/metrics").await?;
    assert_eq!(
        metric(&text, "herald_broker_connected "),
        Some("1".into()),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "herald_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    // A replica whose Redis never answered says so from the start.
    let closed = format!("redis://127.0.0.1:{}", herald_tests::free_port());
    let never = Gateway::start(GatewayOptions {
        redis_url: Some(closed),
        ..Default::default()
    })
    .await?;
    let (_, text) = never.get("/metrics").await?;
    assert_eq!(
        metric(&text, "herald_broker_connected "),
        Some("0".into()),
        "{text}"
    );
    assert_eq!(never.get("/readyz").await?.0, 503);
    Ok(())
}

#[tokio::test]
async fn configured_runs_generate_nothing() -> Result<()> {
    let with_a_secret = Gateway::start(GatewayOptions {
        no_secrets: true,
        env: vec![("HERALD_JWT_SECRET".into(), "s".into())],
        ..Default::default()
    })
    .await?;
    assert!(
        with_a_secret.banner.is_empty(),
        "{:?}",
        with_a_secret.banner
    );
    let mut ws = WsClient::connect(&with_a_secret.ws_url("/api/ws?token=anything")).await?;
    assert_eq!(
        ws.until_closed().await?.1.code(),
        Some(1008),
        "no admin key exists"
    );
    Ok(())
}

#[tokio::test]
async fn embedded_mode_reads_hashed_api_keys_from_the_config_file() -> Result<()> {
    let hash = herald_shared::hash_secret("embedded-key");
    let config = format!("[auth]\n[[auth.api_keys]]\nsha256 = \"{hash}\"\nsub = \"alice\"\n");
    let gw = Gateway::start(GatewayOptions {
        config: Some(config),
        ..Default::default()
    })
    .await?;
    let mut ok = WsClient::connect(&gw.ws_url("/api/ws?token=embedded-key")).await?;
    assert_eq!(ok.next_json().await?["type"], "sync");
    let mut bad = WsClient::connect(&gw.ws_url(&format!("/api/ws?token={hash}"))).await?;
    assert_eq!(
        bad.until_closed().await?.1.code(),
        Some(1008),
        "the hash itself is not a key"
    );
    Ok(())
}

#[tokio::test]
async fn one_bundled_profile_is_overridden_by_name_and_the_others_kept() -> Result<()> {
    // docsfy moved and its snapshot renamed; every other bundled route untouched.
    let config = "bundled_profiles = \"extend\"\n\
        [[profiles]]\nname = \"docsfy\"\npath = \"/docsfy/ws\"\n\
        [profiles.snapshot]\nevent_type = \"hello\"\n";
    let gw = Gateway::start(GatewayOptions {
        config: Some(config.to_owned()),
        ..Default::default()
    })
    .await?;
    let mut moved = WsClient::connect(&gw.ws_url(&format!("/docsfy/ws?token={ADMIN_KEY}"))).await?;
    assert_eq!(
        moved.next_json().await?,
        json!({"type": "hello", "projects": [], "known_models": {}, "known_branches": {}}),
        "the override's keys, the bundled `empty` snapshot"
    );
    assert_eq!(gw.get("/api/ws").await?.0, 404, "the old path is gone");
    let token = jwt("root", None, &["admin"], unix_now() + 600);
    let mut kubegen = WsClient::connect(&gw.ws_url(&format!("/v1/ws?token={token}"))).await?;
    kubegen
        .send_json(&json!({"type": "subscribe", "channel": "project.p1"}))
        .await?;
    kubegen.send_json(&json!({"type": "unsubscribe"})).await?;
    let refused = kubegen.next_json().await?;
    assert_eq!(
        (refused["type"].as_str(), refused["data"]["code"].as_str()),
        (Some("error"), Some("bad_request")),
        "kubegen is still served with its bundled frames: {refused}"
    );
    Ok(())
}

async fn check(config: &str, env: &[(&str, &str)]) -> Result<(bool, String)> {
    let path = scratch_dir("check").join("herald.toml");
    std::fs::write(&path, config)?;
    let mut cmd = tokio::process::Command::new(gateway_binary());
    cmd.arg("--check").arg("--config").arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn invalid_configuration_is_refused_naming_the_key() -> Result<()> {
    assert!(
        check("", &[]).await?.0,
        "an empty file keeps the bundled defaults"
    );
    let cases = [
        ("[limits]\noutbound_queue = 0\n", "limits.outbound_queue"),
        ("[limits]\noutbound_queu = 5\n", "outbound_queu"),
        ("[redis]\nurl = \"http://localhost\"\n", "redis.url"),
        (
            "[redis]\nmode = \"sentinel\"\nnodes = [\"127.0.0.1:26379\"]\n",
            "redis.service_name",
        ),
        (
            "[redis]\nnodes = [\"127.0.0.1:7000\", \"127.0.0.1:7001\"]\n",
            "redis.nodes",
        ),
        (
            "[redis]\nurl = \"redis://127.0.0.1:6379\"\nnodes = [\"127.0.0.1:7000\"]\n",
            "redis.nodes",
        ),
        ("[redis]\nmode = \"cluster\"\n", "redis.nodes"),
        ("[redis]\nmode = \"clustr\"\n", "clustr"),
        ("listen = \"nowhere\"\n", "listen"),
        (
            "[readiness]\nprobe_timeout_ms = 5000\n",
            "readiness.probe_timeout_ms",
        ),
        ("[readiness]\nprobe_misses = 0\n", "readiness.probe_misses"),
        (
            "[redis]\nurl = \"redis://127.0.0.1:6379\"\ntls_ca_file = \"/etc/ca.pem\"\n",
            "redis.tls_ca_file",
        ),
        (
            "[redis]\nurl = \"rediss://127.0.0.1:6379\"\ntls_cert_file = \"/etc/c.pem\"\n",
            "redis.tls_key_file",
        ),
        (
            "[redis]\nurl = \"rediss://127.0.0.1:6379\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
            "redis.tls_ca_file",
        ),
    ];
    for (text, key) in cases {
        let (ok, stderr) = check(text, &[]).await?;
        assert!(!ok, "{text:?} accepted");
        assert!(
            stderr.contains(key),
            "{text:?}: error does not name {key}: {stderr}"
        );
    }
    let docsfy_bad_heartbeat =
        herald_tests::profile_config("docsfy", &[("\ntimeout_ms = 10000", "\ntimeout_ms = 0")]);
    let (ok, stderr) = check(&docsfy_bad_heartbeat, &[]).await?;
    assert!(
        !ok && stderr.contains("profiles[0].heartbeat.timeout_ms"),
        "{stderr}"
    );
    let (ok, stderr) = check("", &[("HERALD_LISTEN", "not-an-address")]).await?;
    assert!(!ok && stderr.contains("HERALD_LISTEN"), "{stderr}");
    let (ok, stderr) = check("", &[("HERALD_REDIS_NODES", "127.0.0.1")]).await?;
    assert!(!ok && stderr.contains("redis.nodes"), "{stderr}");
    let (ok, stderr) = check("", &[("HERALD_REDIS_MODE", "clustered")]).await?;
    assert!(!ok && stderr.contains("HERALD_REDIS_MODE"), "{stderr}");
    let (ok, stderr) = check("", &[("HERALD_REDIS_TLS", "yes please")]).await?;
    assert!(!ok && stderr.contains("HERALD_REDIS_TLS"), "{stderr}");
    // More channels than a resume position can name: refused, not resumed in part.
    let desk_too_wide =
        herald_tests::profiles::DESK.replace("max_per_connection = 8", "max_per_connection = 62");
    let (ok, stderr) = check(&desk_too_wide, &[]).await?;
    assert!(
        !ok && stderr.contains("profiles[0].channels.max_per_connection")
            && stderr.contains("may hold 65 topics"),
        "{stderr}"
    );
    let desk_at_the_limit =
        herald_tests::profiles::DESK.replace("max_per_connection = 8", "max_per_connection = 61");
    assert!(check(&desk_at_the_limit, &[]).await?.0, "64 topics fit");
    Ok(())
}

#[tokio::test]
async fn a_profile_written_only_in_config_is_served() -> Result<()> {
    let c = Cluster::start(1, Some(CUSTOM_PROFILE.to_owned())).await?;
    let token = jwt("dev1", Some("acme"), &[], unix_now() + 300);
    let mut ws = WsClient::connect(
        &c.gw(0)
            .ws_url(&format!("/builds/b-7/events?access_token={token}")),
    )
    .await?;
    // No snapshot in this profile: wait until the replica holds the topic.
    for channel in ["herald:{res:build:b-7}:ch", "herald:{org:acme}:ch"] {
        herald_tests::wait_until(channel, || async {
            c.redis.numsub(channel).await.ok() == Some(1)
        })
        .await?;
    }
    c.publisher
        .publish(
            &[Topic::resource("build", "b-7")?],
            "build.step",
            &json!({"step": 2}),
        )
        .await?;
    c.publisher
        .publish(&[Topic::org("acme")?], "org.notice", &json!("hello"))
        .await?;
    let first = ws.next_json().await?;
    assert_eq!(first["type"], "build.step");
    assert_eq!(first["data"], json!({"step": 2}));
    let ts = first["ts"].as_str().unwrap_or_default();
    assert!(
        ts.len() == 24 && ts.ends_with('Z'),
        "millisecond RFC 3339: {ts}"
    );
    assert_eq!(ws.next_json().await?["data"], "hello");

    let expired = jwt("dev1", Some("acme"), &[], unix_now() - 3600);
    let mut old = WsClient::connect(
        &c.gw(0)
            .ws_url(&format!("/builds/b-7/events?access_token={expired}")),
    )
    .await?;
    assert_eq!(old.until_closed().await?.1.code(), Some(4001));
    // The bundled docsfy profile is replaced by the file's profiles.
    let mut gone = WsClient::connect(&c.gw(0).ws_url(&format!("/api/ws?token={ADMIN_KEY}"))).await;
    if let Ok(ws) = gone.as_mut() {
        assert!(
            ws.next_json().await.is_err(),
            "no docsfy route when the file lists its own profiles"
        );
    }
    Ok(())
}

#[tokio::test]
async fn metrics_count_connections_and_never_show_credentials() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    let mut ok = WsClient::connect(&c.gw(0).ws_url(&format!("/api/ws?token={ADMIN_KEY}"))).await?;
    assert_eq!(ok.next_json().await?["type"], "sync");
    let mut bad = WsClient::connect(&c.gw(0).ws_url("/api/ws?token=leaked-secret-123")).await?;
    assert_eq!(bad.until_closed().await?.1.code(), Some(1008));
    let (status, text) = c.gw(0).get("/metrics").await?;
    assert_eq!(status, 200);
    assert!(
        text.contains("herald_connections{route=\"docsfy\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("herald_auth_failures_total{route=\"docsfy\",reason=\"invalid\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("herald_topics_subscribed 3"),
        "user:admin, role:admin and the replica's delivery probe: {text}"
    );
    for secret in [ADMIN_KEY, "leaked-secret-123"] {
        assert!(!text.contains(secret), "metrics leak a credential");
        assert!(
            !c.gw(0).log_text().contains(secret),
            "logs leak a credential"
        );
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_drains_sockets_with_1001_and_exits() -> Result<()> {
    let mut gw = Gateway::start(GatewayOptions {
        env: vec![("HERALD_DRAIN_MS".to_owned(), "300".to_owned())],
        ..Default::default()
    })
    .await?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = WsClient::connect(&gw.ws_url(&format!("/api/ws?token={ADMIN_KEY}"))).await?;
        assert_eq!(ws.next_json().await?["type"], "sync");
        clients.push(ws);
    }
    gw.signal("TERM").await?;
    for ws in &mut clients {
        let (_, closed) = ws.until_closed().await?;
        assert_eq!(closed.code(), Some(1001), "{closed:?}");
    }
    let code = gw.wait_exit(std::time::Duration::from_secs(10)).await?;
    assert_eq!(code, Some(0), "exit status; log:\n{}", gw.log_text());
    Ok(())
}

#[tokio::test]
async fn sigterm_reports_not_ready_while_still_serving_then_drains() -> Result<()> {
    let mut gw = Gateway::start(GatewayOptions {
        env: vec![
            ("HERALD_UNREADY_MS".into(), "1500".into()),
            ("HERALD_DRAIN_MS".into(), "200".into()),
        ],
        ..Default::default()
    })
    .await?;
    gw.wait_ready(true).await?;
    let mut early = WsClient::connect(&gw.ws_url(&format!("/api/ws?token={ADMIN_KEY}"))).await?;
    assert_eq!(early.next_json().await?["type"], "sync");
    let (_, serving) = gw.get("/metrics").await?;
    assert_eq!(metric(&serving, "herald_draining"), Some(0.0), "{serving}");
    // The process gauges, sampled from /proc/self.
    let fds = metric(&serving, "herald_process_open_fds").unwrap_or(0.0);
    let limit = metric(&serving, "herald_process_max_fds").unwrap_or(0.0);
    assert!(fds >= 3.0 && limit >= fds, "fds {fds} of {limit}");
    let rss = metric(&serving, "herald_process_resident_memory_bytes").unwrap_or(0.0);
    assert!(rss > 1_000_000.0, "resident {rss}");
    gw.signal("TERM").await?;
    gw.wait_ready(false).await?;
    let (_, draining) = gw.get("/metrics").await?;
    assert_eq!(
        metric(&draining, "herald_draining"),
        Some(1.0),
        "{draining}"
    );
    // Not ready, yet still accepting and serving.
    let mut late = WsClient::connect(&gw.ws_url(&format!("/api/ws?token={ADMIN_KEY}"))).await?;
    assert_eq!(late.next_json().await?["type"], "sync");
    for ws in [&mut early, &mut late] {
        assert_eq!(ws.until_closed().await?.1.code(), Some(1001));
    }
    assert_eq!(
        gw.wait_exit(std::time::Duration::from_secs(10)).await?,
        Some(0)
    );
    Ok(())
}

/// `herald-gateway --healthcheck`, the image's HEALTHCHECK: 0 while the
/// gateway at `listen` answers `/healthz` (an unspecified listen address
/// means the loopback one), non-zero with the reason once it is gone.
#[tokio::test]
async fn the_healthcheck_command_reports_a_live_and_a_dead_gateway() -> Result<()> {
    let mut gw = Gateway::start(GatewayOptions::default()).await?;
    let port = gw.addr.rsplit(':').next().unwrap_or_default().to_owned();
    let probe = |listen: String| async move {
        let out = tokio::process::Command::new(gateway_binary())
            .arg("--healthcheck")
            .env_clear()
            .env("HERALD_LISTEN", listen)
            .output()
            .await?;
        anyhow::Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    for listen in [gw.addr.clone(), format!("0.0.0.0:{port}")] {
        let (healthy, stderr) = probe(listen.clone()).await?;
        assert!(healthy, "{listen}: {stderr}");
    }
    gw.kill().await?;
    let (healthy, stderr) = probe(format!("0.0.0.0:{port}")).await?;
    assert!(!healthy && stderr.contains("unhealthy"), "{stderr}");
    Ok(())
}
