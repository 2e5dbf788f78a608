//! The server API over real processes: two replicas on one Redis, backends
//! publishing over HTTP, WebSocket and SSE clients receiving; then what every
//! endpoint refuses. Keys come from the config file (`api.keys`).

use anyhow::{Context, Result};
use herald_publisher::{HttpPublisher, Principal, Topic};
use herald_tests::{Cluster, SseClient, WsClient, jwt, unix_now};
use serde_json::{Value, json};

const PUBLISH_KEY: &str = "backend-publish-key";
const ADMIN_API_KEY: &str = "backend-admin-key";

fn config() -> String {
    let key = |k: &str, caps: &str| {
        format!(
            "[[api.keys]]\nsha256 = \"{}\"\ncapabilities = [{caps}]\n",
            herald_shared::hash_secret(k)
        )
    };
    format!(
        "{}{}",
        key(PUBLISH_KEY, "\"publish\""),
        key(ADMIN_API_KEY, "\"admin\"")
    )
}

fn api(c: &Cluster, replica: usize) -> String {
    format!("http://{}/herald/v1", c.gw(replica).addr)
}

async fn alice(c: &Cluster, replica: usize) -> Result<WsClient> {
    c.docsfy_client(replica, "k-alice").await
}

/// A request with an optional bearer key; the status and the body as JSON
/// (Null when empty), checking problems carry their media type.
async fn call(
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, Value)> {
    let client = reqwest::Client::new();
    let mut req = client.request(method, url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let media = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await?;
    if status >= 400 {
        assert_eq!(media, "application/problem+json", "{status}: {text}");
    }
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| format!("{status}: {text}"))?
    };
    Ok((status, body))
}

#[tokio::test]
async fn http_publishes_reach_websocket_and_sse_on_another_replica_through_history() -> Result<()> {
    let c = Cluster::start(2, Some(config())).await?;
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    let mut ws = alice(&c, 1).await?;
    let auth = format!("Bearer {}", jwt("viewer", None, &[], unix_now() + 600));
    let mut sse = SseClient::connect(
        &c.gw(1).addr,
        "/api/v1/dashboard/stream",
        &[("Authorization", &auth)],
    )
    .await?
    .stream()?;
    c.subscribers_become("user:alice", 1).await?;
    c.subscribers_become("res:dashboard:global", 1).await?;

    let backend = HttpPublisher::new(&api(&c, 0), PUBLISH_KEY)?;
    let audience = [
        Topic::user("alice")?,
        Topic::resource("dashboard", "global")?,
    ];
    let first = backend
        .publish(&audience, "metric_update", &json!({"n": 1}), None)
        .await?;
    assert!(!first.duplicate);
    assert_eq!(
        ws.next_json().await?,
        json!({"type": "metric_update", "n": 1})
    );
    let e1 = sse.next_event().await?;
    let data: Value = serde_json::from_str(&e1.data)?;
    assert_eq!(
        (data["n"].clone(), data["offset"].clone()),
        (json!(1), json!(e1.id))
    );

    // A retried request with the same key is delivered once.
    let once = backend
        .publish(
            &audience,
            "metric_update",
            &json!({"n": 2}),
            Some("job-7/step-2"),
        )
        .await?;
    let again = backend
        .publish(
            &audience,
            "metric_update",
            &json!({"n": 2}),
            Some("job-7/step-2"),
        )
        .await?;
    assert!(!once.duplicate && again.duplicate, "{once:?} {again:?}");
    assert_eq!(again.id, once.id, "the retry answers the first id");
    let client = reqwest::Client::new();
    let by_header = |replica: usize| {
        client
            .post(format!("{}/publish", api(&c, replica)))
            .bearer_auth(PUBLISH_KEY)
            .header("Idempotency-Key", "job-7/step-3")
            .json(&json!({"to": ["user:alice", "res:dashboard:global"], "type": "metric_update", "data": {"n": 3}}))
            .send()
    };
    let h1: Value = by_header(0).await?.json().await?;
    let h2: Value = by_header(1).await?.json().await?;
    assert_eq!(
        (h1["duplicate"].clone(), h2["duplicate"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(h1["id"], h2["id"], "the key holds across replicas");
    backend
        .publish(&audience, "metric_update", &json!({"n": 4}), None)
        .await?;
    for n in 2..=4 {
        assert_eq!(ws.next_json().await?["n"], n, "each event once, in order");
    }
    let mut seen = vec![e1.id.clone()];
    for n in 2..=4 {
        let e = sse.next_event().await?;
        assert_eq!(serde_json::from_str::<Value>(&e.data)?["n"], n);
        seen.push(e.id);
    }
    drop(sse);

    // In history: an SSE client resuming from the first event on the other
    // replica gets the rest replayed.
    let mut resumed = SseClient::connect(
        &c.gw(0).addr,
        "/api/v1/dashboard/stream",
        &[("Authorization", &auth), ("Last-Event-ID", &e1.id)],
    )
    .await?
    .stream()?;
    for (n, id) in (2..=4).zip(&seen[1..]) {
        let e = resumed.next_event().await?;
        assert_eq!(serde_json::from_str::<Value>(&e.data)?["n"], n);
        assert_eq!(&e.id, id, "the same offsets as live");
    }
    Ok(())
}

#[tokio::test]
async fn batches_snapshots_resync_and_listings() -> Result<()> {
    let c = Cluster::start(2, Some(config())).await?;
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    let (post, put, get) = (
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::GET,
    );
    let base = api(&c, 0);

    // A snapshot set over HTTP is what a new connection syncs with.
    let snapshot = json!({"projects": [{"name": "p1"}], "known_models": {}, "known_branches": {}});
    let (status, _) = call(
        put.clone(),
        &format!("{base}/snapshots/user:alice"),
        Some(PUBLISH_KEY),
        Some(&snapshot.to_string()),
    )
    .await?;
    assert_eq!(status, 204);
    assert_eq!(
        call(
            get.clone(),
            &format!("{base}/snapshots/user:alice"),
            Some(PUBLISH_KEY),
            None
        )
        .await?,
        (200, snapshot.clone())
    );
    let mut ws = WsClient::connect(&c.gw(1).ws_url("/api/ws?token=k-alice")).await?;
    let mut sync = ws.next_json().await?;
    assert_eq!(
        sync.as_object_mut().and_then(|o| o.remove("type")),
        Some(json!("sync"))
    );
    assert_eq!(sync, snapshot);
    c.subscribers_become("user:alice", 1).await?;

    // A batch is published in order, one result per event.
    let batch = json!({"events": [
        {"to": ["user:alice"], "type": "progress", "data": {"step": 1}},
        {"to": ["user:alice"], "type": "progress", "data": {"step": 2}},
        {"to": ["user:alice"], "type": "status_change", "data": {"status": "ready"}}
    ]});
    let (status, body) = call(
        post.clone(),
        &format!("{base}/publish/batch"),
        Some(PUBLISH_KEY),
        Some(&batch.to_string()),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(3));
    assert_eq!(ws.next_json().await?["step"], 1);
    assert_eq!(ws.next_json().await?["step"], 2);
    assert_eq!(ws.next_json().await?["type"], "status_change");
    assert_eq!(
        ws.next_json().await?["type"],
        "sync",
        "docsfy re-syncs after status_change"
    );

    // Resync over HTTP reaches the connection on the other replica.
    let (status, _) = call(
        post.clone(),
        &format!("{base}/users/alice/resync"),
        Some(PUBLISH_KEY),
        None,
    )
    .await?;
    assert_eq!(status, 204);
    assert_eq!(ws.next_json().await?["type"], "sync");

    // Listings of replica 1 show what this test opened there.
    let (status, topics) = call(
        get.clone(),
        &format!("{}/topics", api(&c, 1)),
        Some(ADMIN_API_KEY),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    assert!(
        topics["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t == &json!({"topic": "user:alice", "subscribers": 1})),
        "{topics}"
    );
    let (_, conns) = call(
        get.clone(),
        &format!("{}/connections", api(&c, 1)),
        Some(ADMIN_API_KEY),
        None,
    )
    .await?;
    let docsfy = conns["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["route"] == "docsfy")
        .cloned();
    assert_eq!(
        docsfy,
        Some(json!({"route": "docsfy", "connections": 1})),
        "{conns}"
    );
    let (_, conns0) = call(
        get,
        &format!("{base}/connections"),
        Some(ADMIN_API_KEY),
        None,
    )
    .await?;
    assert!(
        conns0["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["connections"] == 0),
        "{conns0}"
    );
    Ok(())
}

#[tokio::test]
async fn refusals_are_problems_and_change_nothing() -> Result<()> {
    let c = Cluster::start(1, Some(config())).await?;
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    let mut ws = alice(&c, 0).await?;
    c.subscribers_become("user:alice", 1).await?;
    let base = api(&c, 0);
    let url = format!("{base}/publish");
    let good = r#"{"to":["user:alice"],"type":"progress","data":{"refused":true}}"#;
    let post = reqwest::Method::POST;
    let user_jwt = jwt("alice", None, &["admin"], unix_now() + 600);
    for (key, want) in [
        (None, 401),
        (Some("k-alice"), 401),         // an end-user API key
        (Some(user_jwt.as_str()), 401), // an end-user JWT, even an admin's
        (Some("nope"), 401),
    ] {
        let (status, body) = call(post.clone(), &url, key, Some(good)).await?;
        assert_eq!(
            (status, body["code"].as_str()),
            (want, Some("unauthorized")),
            "{key:?}: {body}"
        );
    }
    let (status, body) = call(
        reqwest::Method::GET,
        &format!("{base}/topics"),
        Some(PUBLISH_KEY),
        None,
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    for (bad, names) in [
        ("{", "body"),
        (r#"{"to":[],"type":"progress"}"#, "to"),
        (r#"{"to":["nope"],"type":"progress"}"#, "to[0]"),
        (r#"{"to":["user:alice"],"type":""}"#, "type"),
        (r#"{"to":["user:alice"],"type":"herald.resync"}"#, "type"),
        (
            r#"{"to":["user:alice"],"type":"progress","colour":1}"#,
            "colour",
        ),
        (
            r#"{"to":["user:alice"],"type":"progress","idempotency_key":""}"#,
            "idempotency_key",
        ),
    ] {
        let (status, body) = call(post.clone(), &url, Some(PUBLISH_KEY), Some(bad)).await?;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {body}"
        );
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(names),
            "{bad}: {body}"
        );
    }
    let bad_batch =
        r#"{"events":[{"to":["user:alice"],"type":"progress"},{"to":["x"],"type":"progress"}]}"#;
    let (status, body) = call(
        post.clone(),
        &format!("{base}/publish/batch"),
        Some(PUBLISH_KEY),
        Some(bad_batch),
    )
    .await?;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("events[1].to[0]"),
        "{body}"
    );
    let huge = format!(
        r#"{{"to":["user:alice"],"type":"progress","data":"{}"}}"#,
        "x".repeat(1_100_000)
    );
    let (status, body) = call(post.clone(), &url, Some(PUBLISH_KEY), Some(&huge)).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    let (status, _) = call(
        reqwest::Method::GET,
        &format!("{base}/snapshots/user:nobody"),
        Some(PUBLISH_KEY),
        None,
    )
    .await?;
    assert_eq!(status, 404);
    let (status, body) = call(reqwest::Method::DELETE, &url, Some(PUBLISH_KEY), None).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{body}"
    );
    let (status, body) = call(
        reqwest::Method::GET,
        &format!("{base}/no-such-thing"),
        Some(PUBLISH_KEY),
        None,
    )
    .await?;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // Nothing of the above reached the client (not even the valid half of
    // the refused batch): the next frame is the marker.
    let (status, _) = call(
        post,
        &url,
        Some(PUBLISH_KEY),
        Some(r#"{"to":["user:alice"],"type":"progress","data":{"marker":true}}"#),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(
        ws.next_json().await?,
        json!({"type": "progress", "marker": true})
    );

    // The document is served, with the configured prefix.
    let (status, doc) = call(
        reqwest::Method::GET,
        &format!("{base}/openapi.json"),
        None,
        None,
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(doc["servers"][0]["url"], "/herald/v1");
    assert!(doc["paths"]["/publish"]["post"].is_object());
    Ok(())
}

/// Server-API call that must succeed; returns the body.
async fn ok(method: reqwest::Method, url: &str, key: &str, body: Option<Value>) -> Result<Value> {
    let text = body.map(|b| b.to_string());
    let (status, body) = call(method, url, Some(key), text.as_deref()).await?;
    anyhow::ensure!((200..300).contains(&status), "{url}: {status} {body}");
    Ok(body)
}

#[tokio::test]
async fn disconnect_closes_every_connection_of_the_user_on_every_replica() -> Result<()> {
    // docsfy's disconnect code changed, to tell it from the default.
    let config = format!(
        "bundled_profiles = \"extend\"\n{}[[profiles]]\nname = \"docsfy\"\n[profiles.close]\ndisconnect = 4001\n",
        config()
    );
    let c = Cluster::start(2, Some(config)).await?;
    for (key, sub) in [("k-alice", "alice"), ("k-bob", "bob")] {
        c.publisher.add_api_key(key, &Principal::new(sub)).await?;
    }
    let mut docsfy = alice(&c, 0).await?;
    let token = jwt("alice", None, &[], unix_now() + 600);
    let mut kubegen = WsClient::connect(&c.gw(1).ws_url(&format!("/v1/ws?token={token}"))).await?;
    let mut bob = WsClient::connect(&c.gw(1).ws_url("/api/ws?token=k-bob")).await?;
    assert_eq!(bob.next_json().await?["type"], "sync");
    c.subscribers_become("user:bob", 1).await?;
    c.subscribers_become("user:alice", 2).await?;

    ok(
        reqwest::Method::POST,
        &format!("{}/users/alice/disconnect", api(&c, 0)),
        ADMIN_API_KEY,
        None,
    )
    .await?;
    let (_, closed) = docsfy.until_closed().await?;
    assert_eq!(
        closed.code(),
        Some(4001),
        "docsfy's close.disconnect: {closed:?}"
    );
    let (_, closed) = kubegen.until_closed().await?;
    assert_eq!(
        closed.code(),
        Some(1008),
        "kubegen's default, on the other replica: {closed:?}"
    );
    // Bob is untouched.
    c.publisher
        .publish(
            &[Topic::user("bob")?],
            "progress",
            &json!({"still": "here"}),
        )
        .await?;
    assert_eq!(
        bob.next_json().await?,
        json!({"type": "progress", "still": "here"})
    );
    // A publish key may not disconnect.
    let (status, _) = call(
        reqwest::Method::POST,
        &format!("{}/users/bob/disconnect", api(&c, 0)),
        Some(PUBLISH_KEY),
        None,
    )
    .await?;
    assert_eq!(status, 403);
    Ok(())
}

#[tokio::test]
async fn grants_unsubscribe_and_revoke_act_on_live_connections() -> Result<()> {
    let c = Cluster::start(2, Some(config())).await?;
    let (post, get) = (reqwest::Method::POST, reqwest::Method::GET);
    let base = api(&c, 0);
    let token = jwt("bob", None, &[], unix_now() + 600);
    let mut bob = WsClient::connect(&c.gw(1).ws_url(&format!("/v1/ws?token={token}"))).await?;
    let subscribe = json!({"type": "subscribe", "channel": "project.p1"});

    // Without a grant: forbidden.
    bob.send_json(&subscribe).await?;
    assert_eq!(bob.next_json().await?["data"]["code"], "forbidden");
    ok(
        post.clone(),
        &format!("{base}/users/bob/grants"),
        ADMIN_API_KEY,
        Some(json!({"topic": "res:kubegen:project.*"})),
    )
    .await?;
    assert_eq!(
        ok(
            get.clone(),
            &format!("{base}/users/bob/grants"),
            ADMIN_API_KEY,
            None
        )
        .await?,
        json!({"grants": ["res:kubegen:project.*"]})
    );
    bob.send_json(&subscribe).await?;
    c.subscribers_become("res:kubegen:project.p1", 1).await?;
    let topic = [Topic::parse("res:kubegen:project.p1")?];
    c.publisher
        .publish(&topic, "project.progress", &json!({"n": 1}))
        .await?;
    assert_eq!(bob.next_json().await?["data"]["n"], 1);

    // The backend takes the channel away: an error frame, then nothing more from it.
    ok(
        post.clone(),
        &format!("{base}/users/bob/unsubscribe"),
        ADMIN_API_KEY,
        Some(json!({"topic": "res:kubegen:project.p1"})),
    )
    .await?;
    let frame = bob.next_json().await?;
    assert_eq!(
        (
            frame["data"]["code"].as_str(),
            frame["data"]["message"].as_str()
        ),
        (Some("forbidden"), Some("Unsubscribed by the server")),
        "{frame}"
    );
    c.subscribers_become("res:kubegen:project.p1", 0).await?;

    // The grant stayed, so bob may come back; a revoke then drops it live.
    bob.send_json(&subscribe).await?;
    c.subscribers_become("res:kubegen:project.p1", 1).await?;
    ok(
        post,
        &format!("{base}/users/bob/revoke"),
        ADMIN_API_KEY,
        Some(json!({"topic": "res:kubegen:project.*"})),
    )
    .await?;
    let frame = bob.next_json().await?;
    assert_eq!(frame["data"]["message"], "Subscription revoked", "{frame}");
    c.subscribers_become("res:kubegen:project.p1", 0).await?;
    assert_eq!(
        ok(
            get,
            &format!("{base}/users/bob/grants"),
            ADMIN_API_KEY,
            None
        )
        .await?,
        json!({"grants": []})
    );
    Ok(())
}

#[tokio::test]
async fn credentials_resources_presence_and_cluster_listings() -> Result<()> {
    let c = Cluster::start(2, Some(config())).await?;
    let (post, put, delete, get) = (
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::GET,
    );
    let base = api(&c, 0);

    // An end-user API key added over HTTP works on the other replica, until removed.
    ok(
        post.clone(),
        &format!("{base}/credentials/api-keys"),
        ADMIN_API_KEY,
        Some(json!({"secret": "k-carol", "sub": "carol"})),
    )
    .await?;
    let mut carol = WsClient::connect(&c.gw(1).ws_url("/api/ws?token=k-carol")).await?;
    assert_eq!(carol.next_json().await?["type"], "sync");
    assert!(
        c.redis
            .exists(&herald_shared::Keys::default().api_key(&herald_shared::hash_secret("k-carol")))
            .await,
        "the publisher's key"
    );
    ok(
        post.clone(),
        &format!("{base}/credentials/api-keys/remove"),
        ADMIN_API_KEY,
        Some(json!({"secret": "k-carol"})),
    )
    .await?;
    let mut refused = WsClient::connect(&c.gw(1).ws_url("/api/ws?token=k-carol")).await?;
    assert_eq!(refused.until_closed().await?.1.code(), Some(1008));
    // A session token, read from docsfy's cookie.
    ok(
        post.clone(),
        &format!("{base}/credentials/sessions"),
        ADMIN_API_KEY,
        Some(json!({"secret": "s-dave", "sub": "dave", "ttl_ms": 60000})),
    )
    .await?;
    let mut dave = WsClient::connect_with(
        &c.gw(1).ws_url("/api/ws"),
        &[("Cookie", "docsfy_session=s-dave")],
    )
    .await?;
    assert_eq!(dave.next_json().await?["type"], "sync");
    let (status, body) = call(
        post.clone(),
        &format!("{base}/credentials/passwords"),
        Some(ADMIN_API_KEY),
        Some(r#"{"secret":"x","sub":"y"}"#),
    )
    .await?;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // Resources: registered over HTTP, served; unregistered, refused.
    let ops =
        herald_tests::jwt_with_topics("ops", None, &[], &["res:workflow-run:*"], unix_now() + 600);
    let run_url = c
        .gw(1)
        .ws_url(&format!("/api/v1/workflow-runs/r9/stream?token={ops}"));
    ok(
        put,
        &format!("{base}/resources/res:workflow-run:r9"),
        PUBLISH_KEY,
        None,
    )
    .await?;
    let mut run = WsClient::connect(&run_url).await?;
    c.subscribers_become("res:workflow-run:r9", 1).await?;
    ok(
        post.clone(),
        &format!("{base}/publish"),
        PUBLISH_KEY,
        Some(json!({"to": ["res:workflow-run:r9"], "type": "step_log", "data": {"line": "x"}})),
    )
    .await?;
    assert_eq!(run.next_json().await?["line"], "x");
    ok(
        delete,
        &format!("{base}/resources/res:workflow-run:r9"),
        PUBLISH_KEY,
        None,
    )
    .await?;
    let mut gone = WsClient::connect(&run_url).await?;
    assert_eq!(gone.until_closed().await?.1.code(), Some(4404));

    // Presence of an AgentHQ agent, whose key was added over HTTP.
    ok(
        post,
        &format!("{base}/credentials/api-keys"),
        ADMIN_API_KEY,
        Some(
            json!({"secret": "ahq_scout", "sub": "agent-scout", "org": "acme", "roles": ["agent"]}),
        ),
    )
    .await?;
    let presence_url = format!("{base}/presence/org:acme/agent-scout");
    assert_eq!(
        ok(get.clone(), &presence_url, ADMIN_API_KEY, None).await?["online"],
        false
    );
    let agent = WsClient::connect(&c.gw(1).ws_url("/ws?token=ahq_scout")).await?;
    herald_tests::wait_until("the agent is online", || async {
        ok(get.clone(), &presence_url, ADMIN_API_KEY, None)
            .await
            .ok()
            == Some(
                json!({"topic": "org:acme", "key": "agent-scout", "online": true, "members": 1}),
            )
    })
    .await?;
    agent.close().await;
    herald_tests::wait_until("the agent is offline", || async {
        ok(get.clone(), &presence_url, ADMIN_API_KEY, None)
            .await
            .ok()
            .map(|b| b["online"].clone())
            == Some(json!(false))
    })
    .await?;

    // Cluster topics: dave's on replica 1 only; alice's on both.
    c.publisher
        .add_api_key("k-alice", &Principal::new("alice"))
        .await?;
    let _a0 = alice(&c, 0).await?;
    let _a1 = alice(&c, 1).await?;
    c.subscribers_become("user:alice", 2).await?;
    let listed = ok(
        get,
        &format!("{}/cluster/topics", api(&c, 1)),
        ADMIN_API_KEY,
        None,
    )
    .await?;
    let replicas = |topic: &str| {
        listed["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["topic"] == topic)
            .map(|t| t["replicas"].clone())
    };
    assert_eq!(replicas("user:alice"), Some(json!(2)), "{listed}");
    assert_eq!(replicas("user:dave"), Some(json!(1)), "{listed}");
    assert_eq!(
        replicas("res:herald:control"),
        Some(json!(2)),
        "every replica listens for orders: {listed}"
    );
    assert_eq!(
        replicas("user:carol"),
        Some(json!(1)),
        "removing a credential leaves open connections be: {listed}"
    );
    drop(carol);
    Ok(())
}

#[tokio::test]
async fn the_api_on_a_listener_of_its_own_and_heraldctl_over_it() -> Result<()> {
    let c = Cluster::start(1, None).await?;
    let gw = herald_tests::Gateway::start(herald_tests::GatewayOptions {
        redis_url: Some(c.redis.url()),
        env: vec![
            ("HERALD_API_LISTEN".into(), "127.0.0.1:0".into()),
            ("HERALD_API_KEY".into(), ADMIN_API_KEY.into()),
        ],
        ..Default::default()
    })
    .await?;
    let api_addr = gw
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("herald-gateway server API on "))
        .map(str::to_owned)
        .context("the API address is printed")?;
    assert_ne!(api_addr, gw.addr);
    let (status, _) = herald_tests::http_get(&gw.addr, "/herald/v1/openapi.json").await?;
    assert_eq!(status, 404, "not on the main listener");
    let base = format!("http://{api_addr}/herald/v1");

    // heraldctl over the API: a key, a grant, a publish.
    async fn heraldctl_at(base: &str, args: &[&str]) -> Result<String> {
        let api = ["--http", base, "--api-key", ADMIN_API_KEY];
        herald_tests::heraldctl(&[], &[&api[..], args].concat()).await
    }
    let heraldctl = |args: &'static [&'static str]| heraldctl_at(&base, args);
    heraldctl(&["apikey", "add", "--key", "k-erin", "--sub", "erin"]).await?;
    heraldctl(&["grant", "--user", "erin", "--topic", "res:kubegen:*"]).await?;
    assert_eq!(
        ok(
            reqwest::Method::GET,
            &format!("{base}/users/erin/grants"),
            ADMIN_API_KEY,
            None
        )
        .await?,
        json!({"grants": ["res:kubegen:*"]})
    );
    let mut erin = WsClient::connect(&gw.ws_url("/api/ws?token=k-erin")).await?;
    assert_eq!(erin.next_json().await?["type"], "sync");
    c.subscribers_become("user:erin", 1).await?;
    heraldctl(&[
        "publish",
        "--to",
        "user:erin",
        "--type",
        "progress",
        "--data",
        r#"{"via":"heraldctl"}"#,
    ])
    .await?;
    assert_eq!(
        erin.next_json().await?,
        json!({"type": "progress", "via": "heraldctl"})
    );
    let refused = heraldctl(&["consume"]).await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("--redis")),
        "a clear refusal"
    );
    Ok(())
}
