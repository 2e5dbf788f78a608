//! What each `Publisher` call leaves in a real Redis: the paths of the
//! crate's documentation examples, each against its own `redis-server`,
//! checked by reading Redis directly (keys, streams, TTLs, and a SUBSCRIBE
//! connection for what is published).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use fred::clients::SubscriberClient;
use fred::interfaces::{
    ClientLike, EventInterface, KeysInterface, PubsubInterface, SetsInterface, StreamsInterface,
};
use fred::prelude::{Builder, Client, Config, Value};
use fred::types::{ClusterHash, CustomCommand};
use herald_publisher::{
    HistoryPolicy, Principal, PublishError, Publisher, Topic, TopicKind, channel_topic,
};
use herald_shared::{Envelope, Keys, hash_secret};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long any awaited message or process line may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` on a free loopback port with its own scratch directory;
/// killed and removed when dropped.
struct Redis {
    port: u16,
    dir: std::path::PathBuf,
    _child: Child,
}

impl Redis {
    async fn start() -> Result<Self> {
        let mut last = anyhow!("not tried");
        // The free port can be taken between asking and binding; try again.
        for attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let dir = std::env::temp_dir().join(format!(
                "herald-publisher-test-{}-{port}-{attempt}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir)?;
            match Self::spawn(port, &dir).await {
                Ok(child) => {
                    return Ok(Self {
                        port,
                        dir,
                        _child: child,
                    });
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    last = e;
                }
            }
        }
        Err(last.context("could not start redis-server (is it installed?)"))
    }

    async fn spawn(port: u16, dir: &std::path::Path) -> Result<Child> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn redis-server")?;
        let mut out = BufReader::new(child.stdout.take().context("stdout")?);
        tokio::time::timeout(TIMEOUT, async {
            let mut line = String::new();
            loop {
                line.clear();
                if out.read_line(&mut line).await? == 0 {
                    bail!("redis-server exited");
                }
                if line.contains("Ready to accept connections") {
                    return Ok(());
                }
            }
        })
        .await
        .context("redis-server start")??;
        // Keep reading its log so the pipe never fills up.
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink).await;
        });
        Ok(child)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn client(&self) -> Result<Client> {
        let client = Builder::from_config(Config::from_url(&self.url())?).build()?;
        client.init().await?;
        Ok(client)
    }

    /// A connection subscribed to the channels of `topics` (SUBSCRIBE has
    /// been confirmed by the server when this returns).
    async fn subscribe(&self, keys: &Keys, topics: &[&str]) -> Result<Subscription> {
        let client: SubscriberClient =
            Builder::from_config(Config::from_url(&self.url())?).build_subscriber_client()?;
        client.init().await?;
        let rx = client.message_rx();
        for t in topics {
            client.subscribe(keys.channel(t)).await?;
        }
        Ok(Subscription {
            _client: client,
            rx,
            keys: keys.clone(),
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Subscription {
    _client: SubscriberClient,
    rx: tokio::sync::broadcast::Receiver<fred::types::Message>,
    keys: Keys,
}

impl Subscription {
    /// The next message: the topic its channel names, and its JSON.
    async fn next(&mut self) -> Result<(String, Json)> {
        let msg = tokio::time::timeout(TIMEOUT, self.rx.recv())
            .await
            .context("no message published")??;
        let topic = self
            .keys
            .topic_of_channel(&msg.channel)
            .with_context(|| format!("foreign channel {}", msg.channel))?
            .to_owned();
        let text = msg.value.as_string().context("text payload")?;
        Ok((topic, serde_json::from_str(&text)?))
    }
}

async fn publisher(redis: &Redis) -> Result<Publisher> {
    Ok(Publisher::connect(&redis.url()).await?)
}

/// `(entry id, fields)` of every entry of a stream, oldest first.
async fn xrange(client: &Client, key: &str) -> Result<Vec<(String, Vec<(String, String)>)>> {
    let value: Value = client.xrange(key, "-", "+", None).await?;
    let mut out = Vec::new();
    for entry in value.into_array() {
        let mut pair = entry.into_array().into_iter();
        let id = pair
            .next()
            .and_then(|v| v.as_string())
            .context("entry id")?;
        let kv: Vec<String> = pair
            .next()
            .context("entry fields")?
            .into_array()
            .iter()
            .filter_map(Value::as_string)
            .collect();
        let fields = kv
            .chunks(2)
            .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
            .collect();
        out.push((id, fields));
    }
    Ok(out)
}

async fn all_keys(client: &Client) -> Result<Vec<String>> {
    let cmd = CustomCommand::new_static("KEYS", ClusterHash::Random, false);
    Ok(client.custom(cmd, vec!["*"]).await?)
}

async fn exists(client: &Client, key: &str) -> Result<bool> {
    Ok(client.exists::<i64, _>(key).await? == 1)
}

fn without(mut v: Json, field: &str) -> Json {
    if let Some(o) = v.as_object_mut() {
        o.remove(field);
    }
    v
}

#[tokio::test]
async fn publish_stores_each_topics_history_and_publishes_it_with_the_offset() -> Result<()> {
    let redis = Redis::start().await?;
    let (keys, r) = (Keys::default(), redis.client().await?);
    let mut sub = redis
        .subscribe(&keys, &["user:alice", "role:admin"])
        .await?;
    let p = publisher(&redis).await?;
    let audience = [Topic::user("alice")?, Topic::role("admin")?];
    let data = json!({"name": "docsfy", "status": "generating", "n": [1, 2.5, null]});
    let id = p.progress(&audience, &data).await?;

    let mut seen = Vec::new();
    for _ in 0..audience.len() {
        let (topic, msg) = sub.next().await?;
        // Decodes as the gateway decodes it.
        let env = Envelope::decode(msg.to_string().as_bytes())?;
        assert_eq!(env.topic.as_str(), topic);
        let offset = env.offset.clone().context("published with its offset")?;
        assert!(
            herald_shared::envelope::parse_offset(&offset).is_some(),
            "{offset}"
        );
        assert!(msg["ts"].as_i64().is_some_and(|ts| ts > 0), "{msg}");
        assert_eq!(
            without(without(msg.clone(), "offset"), "ts"),
            json!({"v": 1, "id": id, "type": "progress", "topic": topic,
                   "to": ["user:alice", "role:admin"], "data": data}),
        );
        // The history entry is the same envelope without the offset, under
        // the offset as its id.
        let entries = xrange(&r, &keys.history(&topic)).await?;
        assert_eq!(entries.len(), 1, "{entries:?}");
        let (entry_id, fields) = &entries[0];
        assert_eq!(entry_id, &offset);
        assert_eq!(fields.len(), 1, "{fields:?}");
        assert_eq!(fields[0].0, "e");
        let stored: Json = serde_json::from_str(&fields[0].1)?;
        assert_eq!(stored, without(msg.clone(), "offset"));
        let ttl: i64 = r.ttl(keys.history(&topic)).await?;
        let default_ttl = HistoryPolicy::default().ttl.as_secs() as i64;
        assert!(0 < ttl && ttl <= default_ttl, "history TTL {ttl}");
        seen.push(topic);
    }
    seen.sort();
    assert_eq!(seen, ["role:admin", "user:alice"]);

    // A lone topic carries no `to`; each event gets a new id and a later offset.
    let first_offset = xrange(&r, &keys.history("user:alice")).await?[0].0.clone();
    let next = p
        .status_change(&[Topic::user("alice")?], &json!({"status": "ready"}))
        .await?;
    assert_ne!(next, id);
    let (topic, msg) = sub.next().await?;
    assert_eq!(topic, "user:alice");
    assert_eq!(msg["type"], "status_change");
    assert_eq!(msg.get("to"), None, "{msg}");
    let entries = xrange(&r, &keys.history("user:alice")).await?;
    assert_eq!(entries.len(), 2);
    assert_eq!(msg["offset"], json!(entries[1].0));
    let parse = herald_shared::envelope::parse_offset;
    assert!(parse(&entries[1].0) > parse(&first_offset));
    Ok(())
}

#[tokio::test]
async fn history_policies_per_kind_and_none_and_control_events_skip_history() -> Result<()> {
    let redis = Redis::start().await?;
    let (keys, r) = (Keys::default(), redis.client().await?);
    let mut sub = redis
        .subscribe(&keys, &["user:bob", "res:workflow-run:run-42", "org:acme"])
        .await?;
    let short = HistoryPolicy {
        max_len: 50,
        ttl: Duration::from_secs(60),
    };
    let p = publisher(&redis)
        .await?
        .with_history_for(TopicKind::Resource, Some(short))
        .with_history_for(TopicKind::User, None);
    let run = Topic::resource("workflow-run", "run-42")?;
    p.publish(std::slice::from_ref(&run), "step_log", &json!({"line": 1}))
        .await?;
    let (_, msg) = sub.next().await?;
    assert!(msg["offset"].is_string(), "{msg}");
    let ttl: i64 = r.ttl(keys.history(run.as_str())).await?;
    assert!(0 < ttl && ttl <= 60, "resource history TTL {ttl}");

    p.publish(&[Topic::user("bob")?], "progress", &json!({"p": 1}))
        .await?;
    let (topic, msg) = sub.next().await?;
    assert_eq!(topic, "user:bob");
    assert_eq!(msg.get("offset"), None, "no history, no offset: {msg}");
    assert!(!exists(&r, &keys.history("user:bob")).await?);

    // Kinds without an override keep the default policy.
    p.broadcast_to_org("acme", "agent.updated", &json!({"id": "a1"}))
        .await?;
    let (topic, msg) = sub.next().await?;
    assert_eq!(topic, "org:acme");
    assert!(msg["offset"].is_string(), "{msg}");

    let none = publisher(&redis).await?.with_history(None);
    none.publish(std::slice::from_ref(&run), "step_log", &json!({"line": 2}))
        .await?;
    let (_, msg) = sub.next().await?;
    assert_eq!(msg.get("offset"), None, "{msg}");
    assert_eq!(xrange(&r, &keys.history(run.as_str())).await?.len(), 1);

    // Control events are instructions for live connections, never history.
    let p = publisher(&redis).await?;
    p.resync("bob").await?;
    let (topic, msg) = sub.next().await?;
    assert_eq!(
        (topic.as_str(), &msg["type"]),
        ("user:bob", &json!("herald.resync"))
    );
    assert_eq!(msg["data"], Json::Null);
    assert_eq!(msg.get("offset"), None);
    assert!(!exists(&r, &keys.history("user:bob")).await?);
    Ok(())
}

#[tokio::test]
async fn snapshots_are_stored_and_replaced() -> Result<()> {
    let redis = Redis::start().await?;
    let (keys, r) = (Keys::default(), redis.client().await?);
    let p = publisher(&redis).await?;
    let alice = Topic::user("alice")?;
    let first = json!({"projects": [], "known_models": {}, "known_branches": {}});
    p.set_snapshot(&alice, &first).await?;
    let stored: Option<String> = r.get(keys.snapshot("user:alice")).await?;
    assert_eq!(
        stored
            .map(|s| serde_json::from_str::<Json>(&s))
            .transpose()?,
        Some(first)
    );
    let second =
        json!({"projects": [{"name": "docsfy"}], "known_models": {}, "known_branches": {}});
    p.set_snapshot(&alice, &second).await?;
    let stored: Option<String> = r.get(keys.snapshot("user:alice")).await?;
    assert_eq!(
        stored
            .map(|s| serde_json::from_str::<Json>(&s))
            .transpose()?,
        Some(second)
    );
    assert!(
        !exists(&r, &keys.history("user:alice")).await?,
        "not an event"
    );
    Ok(())
}

#[tokio::test]
async fn grant_and_revoke_change_the_acl_and_tell_live_connections() -> Result<()> {
    let redis = Redis::start().await?;
    let (keys, r) = (Keys::default(), redis.client().await?);
    let mut sub = redis.subscribe(&keys, &["user:bob"]).await?;
    let p = publisher(&redis).await?;

    p.grant("bob", "res:project:*").await?;
    p.grant("bob", "res:project:proj-1").await?;
    let mut acl: Vec<String> = r.smembers(keys.acl("bob")).await?;
    acl.sort();
    assert_eq!(acl, ["res:project:*", "res:project:proj-1"]);
    let mut grants = p.grants("bob").await?;
    grants.sort();
    assert_eq!(grants, acl);
    for _ in 0..2 {
        assert_eq!(sub.next().await?.1["type"], "herald.resync");
    }

    p.revoke("bob", "res:project:*").await?;
    assert_eq!(p.grants("bob").await?, ["res:project:proj-1"]);
    let (_, revoke) = sub.next().await?;
    assert_eq!(revoke["type"], "herald.revoke");
    assert_eq!(revoke["data"], json!({"topic": "res:project:*"}));
    assert_eq!(
        sub.next().await?.1["type"],
        "herald.resync",
        "after the revoke"
    );
    assert!(!exists(&r, &keys.history("user:bob")).await?);
    assert!(p.grants("nobody").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn api_keys_and_sessions_are_stored_only_as_hashes() -> Result<()> {
    let redis = Redis::start().await?;
    let (keys, r) = (Keys::default(), redis.client().await?);
    let p = publisher(&redis).await?;
    let mut alice = Principal::new("alice");
    alice.org = Some("acme".to_owned());
    alice.roles = vec!["admin".to_owned()];
    alice.topics = vec!["res:project:*".to_owned()];
    let (key, token) = ("plain-api-key-123", "plain-session-token-456");

    p.add_api_key(key, &alice).await?;
    p.add_session(token, &Principal::new("bob"), Duration::from_secs(120))
        .await?;
    let stored: Option<String> = r.get(keys.api_key(&hash_secret(key))).await?;
    let stored: Principal = serde_json::from_str(&stored.context("api key record")?)?;
    assert_eq!(stored, alice);
    let session: Option<String> = r.get(keys.session(&hash_secret(token))).await?;
    let session: Principal = serde_json::from_str(&session.context("session record")?)?;
    assert_eq!(session, Principal::new("bob"));
    let ttl: i64 = r.ttl(keys.session(&hash_secret(token))).await?;
    assert!(0 < ttl && ttl <= 120, "session TTL {ttl}");
    assert_eq!(
        r.ttl::<i64, _>(keys.api_key(&hash_secret(key))).await?,
        -1,
        "API keys do not expire"
    );

    let names = all_keys(&r).await?;
    assert_eq!(names.len(), 2, "{names:?}");
    for name in &names {
        let value: Option<String> = r.get(name.as_str()).await?;
        let text = format!("{name} {}", value.unwrap_or_default());
        assert!(
            !text.contains(key) && !text.contains(token),
            "plaintext in {text}"
        );
    }

    p.remove_api_key(key).await?;
    p.remove_session(token).await?;
    assert_eq!(all_keys(&r).await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn resources_are_registered_and_forgotten() -> Result<()> {
    let redis = Redis::start().await?;
    let (keys, r) = (Keys::default(), redis.client().await?);
    let p = publisher(&redis).await?;
    let run = Topic::resource("workflow-run", "run-42")?;
    let other = Topic::resource("workflow-run", "run-43")?;
    p.register_resource(&run).await?;
    p.register_resource(&other).await?;
    assert!(exists(&r, &keys.resource(run.as_str())).await?);
    p.unregister_resource(&run).await?;
    assert!(!exists(&r, &keys.resource(run.as_str())).await?);
    assert!(
        exists(&r, &keys.resource(other.as_str())).await?,
        "only that one"
    );
    Ok(())
}

#[tokio::test]
async fn tasks_reach_the_agent_topic_and_are_never_kept() -> Result<()> {
    let redis = Redis::start().await?;
    let (keys, r) = (Keys::default(), redis.client().await?);
    let mut sub = redis.subscribe(&keys, &["res:agent:agent-1"]).await?;
    let p = publisher(&redis).await?;
    let task = json!({
        "taskId": "t1", "taskType": "docker.pull", "payload": {"image": "myapp"},
        "credentials": {"registry.password": "secret"}, "timeout": 300
    });
    let id = p.assign_task("agent-1", &task).await?;
    let (topic, msg) = sub.next().await?;
    assert_eq!(topic, "res:agent:agent-1");
    assert_eq!(
        without(msg, "ts"),
        json!({"v": 1, "id": id, "type": "task_assigned", "topic": topic, "data": {"task": task}})
    );
    p.cancel_task("agent-1", "t1", "Deployment cancelled by user")
        .await?;
    let (_, msg) = sub.next().await?;
    assert_eq!(msg["type"], "task_cancelled");
    assert_eq!(
        msg["data"],
        json!({"taskId": "t1", "reason": "Deployment cancelled by user"})
    );
    assert_eq!(msg.get("offset"), None);
    assert!(
        !exists(&r, &keys.history("res:agent:agent-1")).await?,
        "credentials never stored"
    );
    assert_eq!(all_keys(&r).await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn broadcasts_go_to_the_org_and_channel_topics() -> Result<()> {
    let redis = Redis::start().await?;
    let keys = Keys::default();
    let general = channel_topic("acme", "general")?;
    assert_eq!(general.as_str(), "res:channel:acme:general");
    let mut sub = redis
        .subscribe(&keys, &["org:acme", general.as_str()])
        .await?;
    let p = publisher(&redis).await?;
    p.broadcast_to_channel("acme", "general", "post.created", &json!({"id": "p1"}))
        .await?;
    let (topic, msg) = sub.next().await?;
    assert_eq!(
        (topic.as_str(), &msg["type"], &msg["data"]),
        (
            general.as_str(),
            &json!("post.created"),
            &json!({"id": "p1"})
        )
    );
    p.broadcast_to_org("acme", "agent.updated", &json!({"id": "a1"}))
        .await?;
    let (topic, msg) = sub.next().await?;
    assert_eq!(
        (topic.as_str(), &msg["type"]),
        ("org:acme", &json!("agent.updated"))
    );
    assert!(channel_topic("acme", "has space").is_err());
    Ok(())
}

#[tokio::test]
async fn refused_events_publish_nothing() -> Result<()> {
    let redis = Redis::start().await?;
    let (keys, r) = (Keys::default(), redis.client().await?);
    let mut sub = redis.subscribe(&keys, &["user:alice"]).await?;
    let p = publisher(&redis).await?;
    let alice = [Topic::user("alice")?];
    assert!(matches!(
        p.publish(&[], "progress", &json!({})).await,
        Err(PublishError::EmptyAudience)
    ));
    for bad in ["", "has space", "quote\"d", &"x".repeat(65)] {
        assert!(
            matches!(
                p.publish(&alice, bad, &json!({})).await,
                Err(PublishError::Event(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        p.resync("not a user").await,
        Err(PublishError::Topic(_))
    ));
    assert!(matches!(
        p.broadcast_to_org("a{b}", "x", &json!({})).await,
        Err(PublishError::Topic(_))
    ));
    p.publish(&alice, "marker", &json!({})).await?;
    assert_eq!(
        sub.next().await?.1["type"],
        "marker",
        "nothing published before"
    );
    assert_eq!(xrange(&r, &keys.history("user:alice")).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_prefix_keeps_deployments_apart() -> Result<()> {
    let redis = Redis::start().await?;
    let (staging, r) = (Keys::new("staging"), redis.client().await?);
    let mut sub = redis.subscribe(&staging, &["user:alice"]).await?;
    let p = Publisher::connect_with_prefix(&redis.url(), "staging").await?;
    p.progress(&[Topic::user("alice")?], &json!({"p": 1}))
        .await?;
    assert_eq!(sub.next().await?.1["data"], json!({"p": 1}));
    p.add_api_key("k", &Principal::new("alice")).await?;
    let mut names = all_keys(&r).await?;
    names.sort();
    assert_eq!(
        names,
        [
            staging.api_key(&hash_secret("k")),
            staging.history("user:alice")
        ]
    );
    assert!(names.iter().all(|n| n.starts_with("staging:")));
    Ok(())
}

/// Frames as the gateway forwards them: `source`, `sub`, `received_ms`, `frame`.
async fn forward(r: &Client, keys: &Keys, frames: &[Json]) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let fields = vec![
            ("source", "agent-1".to_owned()),
            ("sub", "agent-1".to_owned()),
            ("received_ms", (1_700_000_000_000i64 + i as i64).to_string()),
            ("frame", frame.to_string()),
        ];
        let id: String = r
            .xadd(
                keys.upstream("agent-tasks"),
                false,
                ("MAXLEN", "~", 1000),
                "*",
                fields,
            )
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

#[tokio::test]
async fn upstream_consume_ack_and_claim_follow_consumer_group_rules() -> Result<()> {
    let redis = Redis::start().await?;
    let (keys, r) = (Keys::default(), redis.client().await?);
    let p = publisher(&redis).await?;
    let frames = [
        json!({"type": "task_progress", "taskId": "t-1", "progress": 50}),
        json!({"type": "task_log", "taskId": "t-1", "level": "info", "message": "pulled"}),
        json!({"type": "task_completed", "taskId": "t-1", "success": true}),
    ];
    let ids = forward(&r, &keys, &frames).await?;
    let block = Some(Duration::from_millis(200));

    let batch = p.consume("agent-tasks", "workers", "w1", 10, block).await?;
    assert_eq!(batch.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids);
    for (i, m) in batch.iter().enumerate() {
        assert_eq!(m.frame, frames[i]);
        assert_eq!((m.source.as_str(), m.sub.as_str()), ("agent-1", "agent-1"));
        assert_eq!(m.received_ms, 1_700_000_000_000 + i as i64);
    }
    // Delivered once per group: nothing new for the group, everything for another.
    assert!(
        p.consume("agent-tasks", "workers", "w2", 10, block)
            .await?
            .is_empty()
    );
    assert_eq!(
        p.consume("agent-tasks", "audit", "a1", 10, block)
            .await?
            .len(),
        3
    );

    assert_eq!(p.ack("agent-tasks", "workers", &[ids[0].clone()]).await?, 1);
    assert_eq!(
        p.ack("agent-tasks", "workers", &[ids[0].clone()]).await?,
        0,
        "acknowledged once"
    );
    assert_eq!(p.ack("agent-tasks", "workers", &[]).await?, 0);
    // Nothing has been idle for an hour; everything unacknowledged has been idle for zero.
    assert!(
        p.claim_stale(
            "agent-tasks",
            "workers",
            "w2",
            Duration::from_secs(3600),
            10
        )
        .await?
        .is_empty()
    );
    let orphans = p
        .claim_stale("agent-tasks", "workers", "w2", Duration::ZERO, 10)
        .await?;
    assert_eq!(orphans, batch[1..].to_vec());
    assert_eq!(p.ack("agent-tasks", "workers", &ids[1..]).await?, 2);
    assert!(
        p.claim_stale("agent-tasks", "workers", "w3", Duration::ZERO, 10)
            .await?
            .is_empty(),
        "nothing left pending"
    );

    // A new frame reaches the group once more.
    let later = forward(&r, &keys, &[json!({"type": "task_log", "taskId": "t-2"})]).await?;
    let next = p.consume("agent-tasks", "workers", "w1", 10, block).await?;
    assert_eq!(next.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), later);
    ensure!(
        p.consume("agent-tasks", "fresh", "f1", 1, block)
            .await?
            .len()
            == 1,
        "count limits a read"
    );
    Ok(())
}
