//! The operator console in a real browser (headless Chromium), against two
//! replicas on one Redis: it is refused without the operator key, shows the
//! connections opened on both replicas, an agent's presence and a published
//! event, and its
//! publish form reaches a client. Also, without a browser: the console is
//! off by default, and its session cookie works on the API only together
//! with the console's header (a page of another origin cannot send it).

use anyhow::Result;
use herald_publisher::{Principal, Topic};
use herald_tests::{Browser, Cluster, OPERATOR_KEY, WsClient, jwt_from_claims, unix_now};
use serde_json::json;

const CONSOLE_ENV: [(&str, &str); 2] = [
    ("HERALD_API_KEY", OPERATOR_KEY),
    ("HERALD_API_CONSOLE", "true"),
];

fn console_url(c: &Cluster, replica: usize) -> String {
    format!("http://{}/herald/v1/console", c.gw(replica).addr)
}

async fn alice(c: &Cluster, replica: usize) -> Result<WsClient> {
    c.docsfy_client(replica, "k-alice").await
}

#[tokio::test]
async fn the_console_shows_both_replicas_and_publishes_to_a_client() -> Result<()> {
    let c = Cluster::with_env(2, None, &CONSOLE_ENV).await?;
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    // Five connections: three on replica 0, two on replica 1.
    let mut clients = Vec::new();
    for replica in [0, 0, 0, 1, 1] {
        clients.push(alice(&c, replica).await?);
    }
    // And an AgentHQ agent on replica 1, online in its org's presence.
    let mut scout = Principal::new("agent-scout");
    scout.org = Some("acme".into());
    scout.roles = vec!["agent".into()];
    c.publisher.add_api_key("ahq_scout", &scout).await?;
    let _agent = WsClient::connect(&c.gw(1).ws_url("/ws?token=ahq_scout")).await?;

    let mut browser = Browser::start().await?;
    browser.goto(&console_url(&c, 0)).await?;
    let refused = browser.text("#login-message").await?;
    assert_eq!(refused, "Sign in with the operator key.");
    browser.fill("#key", "not-the-operator-key").await?;
    browser.click("#login-form button").await?;
    assert_eq!(
        browser.wait_text("#login-message", "Wrong").await?,
        "Wrong key."
    );
    browser.screenshot("console-refused").await?;

    browser.fill("#key", OPERATOR_KEY).await?;
    browser.click("#login-form button").await?;
    // Both replicas' reports arrive within a report interval.
    browser.wait_text("#replica-count", "2").await?;
    assert_eq!(browser.wait_text("#total-connections", "6").await?, "6");
    let routes = browser.text("#routes").await?;
    let docsfy = routes
        .lines()
        .find(|l| l.starts_with("docsfy"))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(docsfy, ["docsfy", "3", "2", "5"], "{routes}");
    assert_eq!(browser.text("#ready-count").await?, "2");
    let presence = browser.wait_text("#presence", "agent-scout").await?;
    assert!(
        presence
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["org:acme", "agent-scout", "1"]),
        "{presence}"
    );
    let topics = browser.text("#topics").await?;
    assert!(
        topics
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["user:alice", "5", "2"]),
        "{topics}"
    );

    // An event published by a backend shows in the topic's tail.
    let to = [Topic::user("alice")?];
    c.publisher
        .progress(&to, &json!({"name": "handbook", "step": 42}))
        .await?;
    browser.fill("#tail-topic", "user:alice").await?;
    browser.click("#tail-form button").await?;
    let tail = browser.wait_text("#tail", "progress").await?;
    assert!(tail.contains(r#""step":42"#), "{tail}");

    // The publish form goes through the HTTP publish path to a client.
    browser.fill("#publish-to", "user:alice").await?;
    browser.fill("#publish-type", "console_note").await?;
    browser
        .fill("#publish-data", r#"{"from": "the console"}"#)
        .await?;
    browser.click("#publish-form button").await?;
    let result = browser.wait_text("#publish-result", "published").await?;
    assert!(result.starts_with("published "), "{result}");
    for ws in &mut clients {
        let first = ws.next_json().await?;
        assert_eq!(first["type"], "progress", "{first}");
        assert_eq!(
            ws.next_json().await?,
            json!({"type": "console_note", "from": "the console"})
        );
    }
    browser.wait_text("#tail", "console_note").await?;
    browser.screenshot("console").await?;
    Ok(())
}

#[tokio::test]
async fn the_console_is_off_by_default_and_its_cookie_needs_its_header() -> Result<()> {
    let plain = Cluster::with_operator_key(1, None).await?;
    let (status, _) = plain.gw(0).get("/herald/v1/console").await?;
    assert_eq!(status, 404, "off unless api.console");

    let c = Cluster::with_env(1, None, &CONSOLE_ENV).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = format!("{}/login", console_url(&c, 0));
    let wrong = http.post(&login).form(&[("key", "guess")]).send().await?;
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let signed = http
        .post(&login)
        .form(&[("key", OPERATOR_KEY)])
        .send()
        .await?;
    assert_eq!(signed.status().as_u16(), 303);
    let set_cookie = signed
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
    let replicas = format!("http://{}/herald/v1/cluster/replicas", c.gw(0).addr);
    let get = |cookie: String, header: bool| {
        let mut req = http.get(&replicas).header("cookie", cookie);
        if header {
            req = req.header("x-herald-console", "1");
        }
        req.send()
    };
    assert_eq!(
        get(cookie.clone(), false).await?.status().as_u16(),
        401,
        "cookie alone"
    );
    let ok = get(cookie.clone(), true).await?;
    assert_eq!(ok.status().as_u16(), 200);
    let body: serde_json::Value = ok.json().await?;
    assert_eq!(body["replicas"][0]["broker"], "redis", "{body}");
    assert_eq!(body["replicas"][0]["ready"], true, "{body}");
    // A well-formed session signed with another key (the JWT secret) is nobody's.
    let forged = format!(
        "herald_console={}",
        jwt_from_claims(
            &json!({"sub": "operator", "aud": "herald-console", "exp": unix_now() + 600})
        )
    );
    assert_eq!(get(forged, true).await?.status().as_u16(), 401);
    Ok(())
}
