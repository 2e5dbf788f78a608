//! A Redis that requires TLS, as managed Redis services do: gateways and
//! `heraldctl` reach it with a `rediss://` URL and trust its CA through
//! `SSL_CERT_FILE`, or with `tls = true` and its address; a certificate
//! nobody trusts keeps the replica not ready and says why in its log. A real
//! `redis-server` with `--tls-port`. Beside it, a Redis that requires a
//! password, reached with the password from the environment, and one that
//! requires client certificates, reached with the CA and the client
//! certificate named in the gateway's and heraldctl's own settings.

use anyhow::Result;
use herald_tests::profiles::FEED;
use herald_tests::{
    Gateway, GatewayOptions, OPERATOR_KEY, RedisServer, WsClient, jwt, unix_now, wait_until,
};
use serde_json::json;

/// Once `gw` is ready: a client of feed f1 on it, subscribed at `redis`.
async fn feed_reader(gw: &Gateway, redis: &RedisServer) -> Result<WsClient> {
    gw.wait_ready(true).await?;
    let token = jwt("reader", None, &[], unix_now() + 600);
    let ws = WsClient::connect(&gw.ws_url(&format!("/feed/f1?token={token}"))).await?;
    let channel = "herald:{res:feed:f1}:ch";
    wait_until(channel, || async {
        redis.numsub(channel).await.ok() == Some(1)
    })
    .await?;
    Ok(ws)
}

#[tokio::test]
async fn gateways_and_heraldctl_reach_a_redis_that_requires_tls() -> Result<()> {
    let redis = RedisServer::start_tls().await?;
    let ca = redis.ca_file.to_string_lossy().into_owned();
    let gw = Gateway::start(GatewayOptions {
        redis_url: Some(redis.url()),
        config: Some(FEED.to_owned()),
        env: vec![("SSL_CERT_FILE".into(), ca.clone())],
        ..Default::default()
    })
    .await?;
    // Ready means the delivery probe went out and came back over TLS.
    let mut ws = feed_reader(&gw, &redis.server).await?;
    let url = redis.url();
    herald_tests::heraldctl_publish(
        &[("SSL_CERT_FILE", &ca)],
        &["--redis", &url],
        "res:feed:f1",
        "item",
        r#"{"n":1}"#,
    )
    .await?;
    let frame = ws.next_json().await?;
    assert_eq!(frame["data"], json!({"n": 1}), "{frame}");

    // A second replica in the explicit form (`tls = true` with the node's
    // address): an event published through its server API crosses the TLS
    // Redis to the first replica's client.
    let explicit = Gateway::start(GatewayOptions {
        config: Some(format!(
            "{FEED}\n[redis]\nnodes = [\"127.0.0.1:{}\"]\ntls = true\n",
            redis.tls_port
        )),
        env: vec![
            ("SSL_CERT_FILE".into(), ca),
            ("HERALD_API_KEY".into(), OPERATOR_KEY.into()),
        ],
        ..Default::default()
    })
    .await?;
    explicit.wait_ready(true).await?;
    herald_tests::heraldctl_publish(
        &[],
        &[
            "--http",
            &format!("http://{}/herald/v1", explicit.addr),
            "--api-key",
            OPERATOR_KEY,
        ],
        "res:feed:f1",
        "item",
        r#"{"n":"across"}"#,
    )
    .await?;
    let frame = ws.next_json().await?;
    assert_eq!(frame["data"], json!({"n": "across"}), "{frame}");
    Ok(())
}

#[tokio::test]
async fn a_password_from_the_environment_opens_a_redis_that_requires_one() -> Result<()> {
    let redis = RedisServer::start_with_password("s3cret-pass").await?;
    let node = format!("127.0.0.1:{}", redis.port());
    let gw = Gateway::start(GatewayOptions {
        config: Some(FEED.to_owned()),
        env: vec![
            ("HERALD_REDIS_NODES".into(), node.clone()),
            ("HERALD_REDIS_PASSWORD".into(), "s3cret-pass".into()),
        ],
        ..Default::default()
    })
    .await?;
    gw.wait_ready(true).await?;
    let token = jwt("reader", None, &[], unix_now() + 600);
    let mut ws = WsClient::connect(&gw.ws_url(&format!("/feed/f1?token={token}"))).await?;
    herald_tests::heraldctl_publish(
        &[("HERALD_REDIS_PASSWORD", "s3cret-pass")],
        &["--redis-node", &node],
        "res:feed:f1",
        "item",
        r#"{"n":2}"#,
    )
    .await?;
    let frame = ws.next_json().await?;
    assert_eq!(frame["data"], json!({"n": 2}), "{frame}");

    // The wrong password: not ready, and the log says why; the password
    // itself is never logged.
    let wrong = Gateway::start(GatewayOptions {
        config: Some(FEED.to_owned()),
        env: vec![
            ("HERALD_REDIS_NODES".into(), node),
            ("HERALD_REDIS_PASSWORD".into(), "not-the-pass".into()),
        ],
        ..Default::default()
    })
    .await?;
    wait_until("an authentication error in the log", || async {
        let log = wrong.log_text();
        log.contains("WRONGPASS") || log.contains("invalid username-password")
    })
    .await?;
    assert!(
        !wrong.log_text().contains("not-the-pass"),
        "password logged"
    );
    let (status, _) = wrong.get("/readyz").await?;
    assert_eq!(status, 503);
    Ok(())
}

#[tokio::test]
async fn an_untrusted_certificate_keeps_the_replica_not_ready_and_says_why() -> Result<()> {
    let redis = RedisServer::start_tls().await?;
    let gw = Gateway::start(GatewayOptions {
        redis_url: Some(redis.url()),
        config: Some(FEED.to_owned()),
        ..Default::default()
    })
    .await?;
    wait_until("a certificate error in the log", || async {
        gw.log_text().to_lowercase().contains("certificate")
    })
    .await?;
    let (status, body) = gw.get("/readyz").await?;
    assert_eq!((status, body.as_str()), (503, "broker not ready"));
    Ok(())
}

#[tokio::test]
async fn a_redis_that_requires_client_certificates_admits_only_gateways_that_present_one()
-> Result<()> {
    let redis = RedisServer::start_mutual_tls().await?;
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let (ca, cert, key) = (
        path(&redis.ca_file),
        path(&redis.client_cert),
        path(&redis.client_key),
    );
    // The CA from the gateway's own setting (not SSL_CERT_FILE) and a client
    // certificate: admitted, and delivering.
    let gw = Gateway::start(GatewayOptions {
        redis_url: Some(redis.url()),
        config: Some(FEED.to_owned()),
        env: vec![
            ("HERALD_REDIS_TLS_CA_FILE".into(), ca.clone()),
            ("HERALD_REDIS_TLS_CERT_FILE".into(), cert.clone()),
            ("HERALD_REDIS_TLS_KEY_FILE".into(), key.clone()),
        ],
        ..Default::default()
    })
    .await?;
    let mut ws = feed_reader(&gw, &redis.server).await?;
    let url = redis.url();
    herald_tests::heraldctl_publish(
        &[],
        &[
            "--redis",
            &url,
            "--redis-tls-ca",
            &ca,
            "--redis-tls-cert",
            &cert,
            "--redis-tls-key",
            &key,
        ],
        "res:feed:f1",
        "item",
        r#"{"n":3}"#,
    )
    .await?;
    let frame = ws.next_json().await?;
    assert_eq!(frame["data"], json!({"n": 3}), "{frame}");

    // The same CA without a client certificate: the server refuses the
    // handshake, so the replica stays not ready.
    let anonymous = Gateway::start(GatewayOptions {
        redis_url: Some(redis.url()),
        config: Some(FEED.to_owned()),
        env: vec![("HERALD_REDIS_TLS_CA_FILE".into(), ca.clone())],
        ..Default::default()
    })
    .await?;
    wait_until(
        "the server's certificate-required alert in the log",
        || async { anonymous.log_text().contains("CertificateRequired") },
    )
    .await?;
    let (status, _) = anonymous.get("/readyz").await?;
    assert_eq!(status, 503);

    // A certificate whose key is another's: refused before any connection,
    // naming the setting, by the gateway and by heraldctl alike.
    let out = tokio::process::Command::new(herald_tests::gateway_binary())
        .arg("--check")
        .env("HERALD_REDIS_URL", redis.url())
        .env("HERALD_REDIS_TLS_CERT_FILE", &cert)
        .env("HERALD_REDIS_TLS_KEY_FILE", &ca)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("redis.tls_key_file"),
        "{stderr}"
    );
    let refused = herald_tests::heraldctl_publish(
        &[],
        &[
            "--redis",
            &url,
            "--redis-tls-cert",
            &cert,
            "--redis-tls-key",
            &path(&redis.ca_file.with_file_name("missing.key")),
        ],
        "res:feed:f1",
        "item",
        "{}",
    )
    .await;
    let message = format!("{:#}", refused.expect_err("a missing key file is refused"));
    assert!(message.contains("--redis-tls-key"), "{message}");
    Ok(())
}
