//! Hostile and bad input: nothing crashes, nothing else slows, every refusal
//! is the documented one, and credentials never reach the logs.

use anyhow::Result;
use herald_publisher::{Principal, Topic};
use herald_tests::{Cluster, JWT_SECRET, WsClient, jwt, unix_now};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

async fn docsfy(c: &Cluster) -> Result<WsClient> {
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    let mut ws = WsClient::connect(&c.gw(0).ws_url("/api/ws?token=k-alice")).await?;
    assert_eq!(ws.next_json().await?["type"], "sync");
    Ok(ws)
}

#[tokio::test]
async fn oversized_messages_close_with_1009() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    let mut ws = docsfy(&c).await?;
    ws.send_text(&"x".repeat(70_000)).await?;
    let (_, closed) = ws.until_closed().await?;
    assert_eq!(closed.code(), Some(1009), "{closed:?}");
    assert_eq!(c.gw(0).get("/healthz").await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    let mut ws = docsfy(&c).await?;
    ws.send_raw_text(vec![b'{', 0xff, 0xfe, b'}']).await?;
    let (_, closed) = ws.until_closed().await?;
    assert_eq!(closed.code(), Some(1007), "{closed:?}");
    Ok(())
}

#[tokio::test]
async fn a_flooding_client_is_closed_and_others_keep_receiving() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    let token = jwt("root", None, &["admin"], unix_now() + 600);
    let mut flooder = WsClient::connect(&c.gw(0).ws_url(&format!("/v1/ws?token={token}"))).await?;
    let mut bystander = docsfy(&c).await?;
    for _ in 0..300 {
        if flooder
            .send_json(&json!({"type": "unsubscribe", "channel": "x"}))
            .await
            .is_err()
        {
            break;
        }
    }
    let (frames, closed) = flooder.until_closed().await?;
    assert_eq!(
        frames.last().map(|f| f["data"]["code"].clone()),
        Some(json!("rate_limited")),
        "{frames:?}"
    );
    assert_eq!(closed.code(), Some(1008));
    c.publisher
        .progress(&[Topic::user("alice")?], &json!({"n": 1}))
        .await?;
    assert_eq!(bystander.next_json().await?["n"], 1);
    Ok(())
}

#[tokio::test]
async fn cookie_sessions_refuse_foreign_origins() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    c.publisher
        .add_session(
            "sess",
            &Principal::new("bob"),
            std::time::Duration::from_secs(600),
        )
        .await?;
    let url = c.gw(0).ws_url("/api/ws");
    let cookie = ("Cookie", "docsfy_session=sess");
    let foreign = WsClient::connect_with(&url, &[cookie, ("Origin", "https://evil.example")]).await;
    assert!(
        foreign
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("403")),
        "{foreign:?}"
    );
    let own_origin = format!("http://{}", c.gw(0).addr);
    let mut same = WsClient::connect_with(&url, &[cookie, ("Origin", &own_origin)]).await?;
    assert_eq!(same.next_json().await?["type"], "sync");
    let mut no_origin = WsClient::connect_with(&url, &[cookie]).await?;
    assert_eq!(
        no_origin.next_json().await?["type"],
        "sync",
        "non-browser clients send no Origin"
    );
    // A token in the query is not a cookie: no Origin rule applies.
    c.publisher
        .add_api_key("k-bob", &Principal::new("bob"))
        .await?;
    let mut by_token = WsClient::connect_with(
        &c.gw(0).ws_url("/api/ws?token=k-bob"),
        &[("Origin", "https://evil.example")],
    )
    .await?;
    assert_eq!(by_token.next_json().await?["type"], "sync");
    Ok(())
}

#[tokio::test]
async fn forged_and_stale_tokens_are_refused_and_never_logged() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    let now = unix_now();
    let sign = |alg: Algorithm, key: &[u8], claims: serde_json::Value| {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).unwrap_or_default()
    };
    let secret = JWT_SECRET.as_bytes();
    let none = format!(
        "{}.{}.",
        herald_tests::base64url(br#"{"alg":"none","typ":"JWT"}"#),
        herald_tests::base64url(json!({"sub": "x", "exp": now + 600}).to_string().as_bytes())
    );
    let tokens = [
        ("alg none", none),
        (
            "other algorithm",
            sign(
                Algorithm::HS512,
                secret,
                json!({"sub": "x", "exp": now + 600}),
            ),
        ),
        (
            "wrong key",
            sign(
                Algorithm::HS256,
                b"not-the-secret",
                json!({"sub": "x", "exp": now + 600}),
            ),
        ),
        (
            "expired",
            sign(
                Algorithm::HS256,
                secret,
                json!({"sub": "x", "exp": now - 600}),
            ),
        ),
        (
            "not yet valid",
            sign(
                Algorithm::HS256,
                secret,
                json!({"sub": "x", "exp": now + 600, "nbf": now + 300}),
            ),
        ),
        (
            "no subject",
            sign(Algorithm::HS256, secret, json!({"exp": now + 600})),
        ),
        (
            "no expiry",
            sign(Algorithm::HS256, secret, json!({"sub": "x"})),
        ),
    ];
    for (what, token) in &tokens {
        let mut ws = WsClient::connect(&c.gw(0).ws_url(&format!("/v1/ws?token={token}"))).await?;
        let (frames, closed) = ws.until_closed().await?;
        assert_eq!(closed.code(), Some(1008), "{what}");
        assert_eq!(
            frames.first().map(|f| f["data"]["code"].clone()),
            Some(json!("unauthorized")),
            "{what}"
        );
    }
    let log = c.gw(0).log_text();
    for (what, token) in &tokens {
        let signature = token.rsplit('.').next().unwrap_or_default();
        assert!(
            signature.is_empty() || !log.contains(signature),
            "{what} token in the log"
        );
        assert!(!log.contains(token.as_str()), "{what} token in the log");
    }
    Ok(())
}

#[tokio::test]
async fn clients_that_never_finish_their_request_are_disconnected() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Cluster::start(1, Some("[limits]\nhandshake_timeout_ms = 300\n".to_owned())).await?;
    for partial in ["", "GET /api/ws HTTP/1.1\r\nHost: x\r\n"] {
        let mut s = tokio::net::TcpStream::connect(&c.gw(0).addr).await?;
        s.write_all(partial.as_bytes()).await?;
        let mut buf = Vec::new();
        // Ends (EOF, perhaps after a 408) instead of hanging: bounded by the test timeout.
        tokio::time::timeout(herald_tests::EVENT_TIMEOUT, s.read_to_end(&mut buf)).await??;
        let text = String::from_utf8_lossy(&buf);
        assert!(
            buf.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{partial:?}: {text}"
        );
    }
    assert_eq!(c.gw(0).get("/healthz").await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn a_connection_storm_from_one_address_is_throttled() -> Result<()> {
    let c = Cluster::start(
        1,
        Some("[limits]\nconnects_per_ip_per_second = 5\n".to_owned()),
    )
    .await?;
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    let url = c.gw(0).ws_url("/api/ws?token=k-alice");
    let mut refused = 0;
    let mut open = Vec::new();
    for _ in 0..40 {
        match WsClient::connect(&url).await {
            Ok(ws) => open.push(ws),
            Err(e) if e.to_string().contains("429") => refused += 1,
            Err(e) => return Err(e),
        }
    }
    assert!(
        open.len() >= 10 && refused > 0,
        "burst admitted, storm throttled: {} open, {refused} refused",
        open.len()
    );
    assert!(open.len() < 40);
    assert_eq!(c.gw(0).get("/healthz").await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn sigterm_spreads_closes_over_the_drain_window() -> Result<()> {
    use herald_tests::{ADMIN_KEY, Gateway, GatewayOptions};
    const DRAIN_MS: u64 = 3000;
    let mut gw = Gateway::start(GatewayOptions {
        env: vec![("HERALD_DRAIN_MS".into(), DRAIN_MS.to_string())],
        ..Default::default()
    })
    .await?;
    let mut clients = Vec::new();
    for _ in 0..12 {
        let mut ws = WsClient::connect(&gw.ws_url(&format!("/api/ws?token={ADMIN_KEY}"))).await?;
        assert_eq!(ws.next_json().await?["type"], "sync");
        clients.push(ws);
    }
    let start = tokio::time::Instant::now();
    gw.signal("TERM").await?;
    // Spawned at once (collected), so each close is timed when it arrives.
    let closes: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let (_, closed) = ws.until_closed().await?;
                anyhow::Ok((closed.code(), start.elapsed()))
            })
        })
        .collect();
    let mut times = Vec::new();
    for h in closes {
        let (code, at) = h.await??;
        assert_eq!(code, Some(1001));
        times.push(at);
    }
    times.sort();
    let drain = std::time::Duration::from_millis(DRAIN_MS);
    let spread = times[times.len() - 1] - times[0];
    // Uniform over the window: twelve closes all within a tenth of it is
    // vanishingly unlikely.
    assert!(
        spread > drain / 10,
        "closes spread over the window: {spread:?} ({times:?})"
    );
    // Every close is due within the window; the slack is for a loaded machine.
    assert!(
        times[times.len() - 1] < 2 * drain,
        "last close {:?} after the signal",
        times[times.len() - 1]
    );
    assert_eq!(
        gw.wait_exit(std::time::Duration::from_secs(10)).await?,
        Some(0)
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_spreads_sse_stream_ends_over_the_drain_window() -> Result<()> {
    use herald_tests::{Gateway, GatewayOptions, SseClient};
    const DRAIN_MS: u64 = 3000;
    let mut gw = Gateway::start(GatewayOptions {
        env: vec![("HERALD_DRAIN_MS".into(), DRAIN_MS.to_string())],
        ..Default::default()
    })
    .await?;
    let auth = format!("Bearer {}", jwt("viewer", None, &[], unix_now() + 600));
    let mut streams = Vec::new();
    for _ in 0..12 {
        let stream = SseClient::connect(
            &gw.addr,
            "/api/v1/dashboard/stream",
            &[("Authorization", &auth)],
        )
        .await?
        .stream()?;
        streams.push(stream);
    }
    let start = tokio::time::Instant::now();
    gw.signal("TERM").await?;
    let ends: Vec<_> = streams
        .into_iter()
        .map(|mut sse| {
            tokio::spawn(async move {
                let events = sse.until_ended().await?;
                anyhow::Ok((events, start.elapsed()))
            })
        })
        .collect();
    let mut times = Vec::new();
    for h in ends {
        let (events, at) = h.await??;
        assert!(events.is_empty(), "no event was published: {events:?}");
        times.push(at);
    }
    times.sort();
    let drain = std::time::Duration::from_millis(DRAIN_MS);
    let spread = times[times.len() - 1] - times[0];
    assert!(
        spread > drain / 10,
        "SSE ends spread over the window like WebSocket closes: {spread:?} ({times:?})"
    );
    assert!(
        times[times.len() - 1] < 2 * drain,
        "last end {:?} after the signal",
        times[times.len() - 1]
    );
    assert_eq!(
        gw.wait_exit(std::time::Duration::from_secs(10)).await?,
        Some(0)
    );
    Ok(())
}

#[tokio::test]
async fn api_keys_and_session_tokens_are_stored_only_hashed() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    c.publisher
        .add_api_key("plain-api-key-123", &Principal::new("alice"))
        .await?;
    c.publisher
        .add_session(
            "plain-session-456",
            &Principal::new("alice"),
            std::time::Duration::from_secs(60),
        )
        .await?;
    let dump = c.redis.cli(&["--scan", "--pattern", "*"]).await?;
    let mut everything = dump.join("\n");
    for key in &dump {
        // Streams (the delivery probe's history) hold no credentials.
        if c.redis.cli(&["TYPE", key]).await? == ["string"] {
            everything.push_str(&c.redis.cli(&["GET", key]).await?.join("\n"));
        }
    }
    for secret in ["plain-api-key-123", "plain-session-456"] {
        assert!(!everything.contains(secret), "{secret} stored in clear");
        assert!(
            everything.contains(&herald_shared::hash_secret(secret)),
            "{secret} stored by its hash"
        );
    }
    let mut ws = WsClient::connect(&c.gw(0).ws_url("/api/ws?token=plain-api-key-123")).await?;
    assert_eq!(ws.next_json().await?["type"], "sync");
    Ok(())
}
