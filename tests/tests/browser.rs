//! Herald in a real browser: headless Chromium with its own WebSocket and
//! EventSource, on pages served from the gateway's origin by a loopback
//! front door (as an ingress puts a web app and its gateway on one origin).
//! Each test asserts what the page shows and leaves a screenshot of its
//! final state in `target/screenshots/`.

use anyhow::Result;
use herald_publisher::{Principal, Topic};
use herald_tests::{
    Browser, Cluster, Front, Upstream, jwt_with_topics, metric, unix_now, wait_until,
};
use serde_json::json;

/// The docsfy web app's cookie flow: the page on the gateway's origin
/// connects with the `docsfy_session` cookie and gets `sync` and a published
/// `progress`; the same page on a foreign origin is refused (CSWSH guard),
/// although the browser sends the cookie there too.
#[tokio::test]
async fn docsfy_cookie_flow_in_chromium() -> Result<()> {
    let c = Cluster::start(2, None).await?;
    c.publisher
        .add_session(
            "sess-ann",
            &Principal::new("ann"),
            std::time::Duration::from_secs(600),
        )
        .await?;
    let ann = Topic::user("ann")?;
    c.publisher
        .set_snapshot(
            &ann,
            &json!({"projects": [{"name": "handbook", "status": "generating"}]}),
        )
        .await?;
    let origin = Front::start(vec![
        ("/api/ws", Upstream::Servers(vec![c.gw(0).addr.clone()])),
        ("/pages/", Upstream::Pages),
    ])
    .await?;
    let foreign = Front::start(vec![("/pages/", Upstream::Pages)]).await?;

    let mut browser = Browser::start().await?;
    browser
        .cookie("docsfy_session", "sess-ann", &origin.url("/"))
        .await?;
    browser.goto(&origin.url("/pages/docsfy.html")).await?;
    let log = browser.wait_text("#log", "sync").await?;
    assert!(log.contains("\"name\":\"handbook\""), "{log}");
    assert_eq!(browser.text("#status").await?, "open");
    // Published on the other replica's side of Redis.
    c.subscribers_become("user:ann", 1).await?;
    c.publisher
        .progress(
            std::slice::from_ref(&ann),
            &json!({"name": "handbook", "branch": "main", "status": "generating",
                    "current_stage": "writing_pages", "page_count": 5}),
        )
        .await?;
    let log = browser.wait_text("#log", "progress").await?;
    assert!(log.contains("\"current_stage\":\"writing_pages\""), "{log}");
    browser.screenshot("browser-docsfy-cookie").await?;

    // The same page on another origin: the browser attaches the cookie
    // (same host), but the gateway refuses the upgrade.
    let target = format!("ws://{}/api/ws", origin.addr);
    browser
        .goto(&foreign.url(&format!("/pages/docsfy.html?ws={target}")))
        .await?;
    let status = browser.wait_text("#status", "closed").await?;
    assert_eq!(status, "closed 1006", "the upgrade was refused");
    assert_eq!(browser.text("#log").await?, "", "no frame reached the page");
    let (_, text) = c.gw(0).get("/metrics").await?;
    assert_eq!(
        metric(
            &text,
            "herald_auth_failures_total{route=\"docsfy\",reason=\"origin\"}"
        ),
        Some(1.0),
        "refused by the origin check"
    );
    browser.screenshot("browser-docsfy-foreign-origin").await?;
    Ok(())
}

/// The browser's own EventSource behind a load balancer: the test kills the
/// replica the stream is on; the browser reconnects by itself, lands on the
/// other replica, resumes with `Last-Event-ID`, and the page shows every
/// event once, in order.
#[tokio::test]
async fn eventsource_survives_a_replica_kill_without_loss_or_repeat() -> Result<()> {
    let mut c = Cluster::start(2, None).await?;
    let front = Front::start(vec![
        (
            "/api/v1/dashboard/stream",
            Upstream::Servers(vec![c.gw(0).addr.clone(), c.gw(1).addr.clone()]),
        ),
        ("/pages/", Upstream::Pages),
    ])
    .await?;
    let token = jwt_with_topics("ops", Some("acme"), &[], &[], unix_now() + 600);
    let src = format!("/api/v1/dashboard/stream?token={token}");
    let mut browser = Browser::start().await?;
    browser
        .goto(&front.url(&format!("/pages/events.html?src={}", urlencode(&src))))
        .await?;
    browser.wait_text("#state", "open").await?;
    c.subscribers_become("res:dashboard:global", 1).await?;
    let dashboard = [Topic::resource("dashboard", "global")?];
    let publish = |n: u32| {
        let publisher = &c.publisher;
        let dashboard = &dashboard;
        async move {
            publisher
                .publish(dashboard, "metric_update", &json!({"metrics": {"n": n}}))
                .await
        }
    };
    for n in 1..=5 {
        publish(n).await?;
    }
    browser.wait_text("#log", "5 metric_update").await?;

    c.gateways[0].kill().await?;
    // Published while the browser has no stream: they must come from history.
    for n in 6..=8 {
        publish(n).await?;
    }
    browser.wait_text("#opens", "2").await?;
    for n in 9..=10 {
        publish(n).await?;
    }
    let log = browser.wait_text("#log", "10 metric_update").await?;
    let seen: Vec<&str> = log.lines().collect();
    let want: Vec<String> = (1..=10).map(|n| format!("{n} metric_update")).collect();
    assert_eq!(seen, want, "every event once, in order");
    wait_until("the stream on replica 1", || async {
        let (_, text) = c.gw(1).get("/metrics").await.unwrap_or_default();
        metric(&text, "herald_connections{route=\"stellaops-dashboard\"}") == Some(1.0)
    })
    .await?;
    browser.screenshot("browser-eventsource-failover").await?;
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
