//! The docsfy CLI from PyPI (`docsfy generate REPO --watch`), run unchanged
//! against two replicas behind a front door that sends `/api/ws` to the
//! gateway and the rest to a stand-in for docsfy's REST server (the CLI
//! starts a generation with `POST /api/generate`, then follows it over the
//! socket). The test publishes the generation's progress through both
//! replicas' HTTP publish path and its final status through the library,
//! and reads what the CLI printed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_publisher::{HttpPublisher, Principal, Topic};
use herald_tests::{Cluster, Front, OPERATOR_KEY, Upstream, metric, scratch_dir, wait_until};
use serde_json::json;

/// The CLI the test command installs (`target/docsfy-venv`), or why it could not.
fn docsfy_cli() -> Result<PathBuf> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let cli = target.join("docsfy-venv/bin/docsfy");
    if cli.is_file() {
        return Ok(cli);
    }
    let why = std::fs::read_to_string(target.join("docsfy-venv.why"))
        .unwrap_or_else(|_| "run ./scripts/test.sh, which installs it".to_owned());
    bail!("the docsfy CLI is not installed in target/docsfy-venv: {why}")
}

fn variant(status: &str, pages: u64) -> serde_json::Value {
    json!({"name": "proj", "branch": "main", "ai_provider": "cursor", "ai_model": "gpt-x",
           "owner": "alice", "status": status, "page_count": pages})
}

#[tokio::test]
async fn the_docsfy_cli_follows_a_generation_published_through_two_replicas() -> Result<()> {
    let cli = docsfy_cli()?;
    let c = Cluster::with_operator_key(2, None).await?;
    c.publisher
        .add_api_key("dfy-alice-key", &Principal::new("alice"))
        .await?;
    let alice = Topic::user("alice")?;
    c.publisher
        .set_snapshot(&alice, &json!({"projects": [variant("generating", 0)]}))
        .await?;
    // docsfy's REST server answers the start of the generation.
    let started = json!({"project": "proj", "branch": "main", "status": "generating",
                         "generation_id": "gid-1"});
    let front = Front::start(vec![
        ("/api/ws", Upstream::Servers(vec![c.gw(0).addr.clone()])),
        ("/", Upstream::Json(started.to_string())),
    ])
    .await?;

    let home = scratch_dir("docsfy-home");
    let config_dir = home.join(".config/docsfy");
    std::fs::create_dir_all(&config_dir)?;
    std::fs::write(
        config_dir.join("config.toml"),
        format!(
            "[default]\nserver = \"herald\"\n\n[servers.herald]\nurl = \"{}\"\nusername = \"alice\"\npassword = \"dfy-alice-key\"\n",
            front.url("")
        ),
    )?;
    let run = tokio::process::Command::new(&cli)
        .args(["generate", "https://github.com/example/proj", "--watch"])
        .args(["--provider", "cursor", "--model", "gpt-x"])
        .env("HOME", &home)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env("NO_PROXY", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start the docsfy CLI")?;

    // Publish once the CLI's socket is open on replica 0.
    wait_until("the CLI's connection on replica 0", || async {
        let (_, text) = c.gw(0).get("/metrics").await.unwrap_or_default();
        metric(&text, "herald_connections{route=\"docsfy\"}") == Some(1.0)
    })
    .await?;
    let progress = |stage: &str, pages: u64| {
        json!({"name": "proj", "branch": "main", "provider": "cursor", "model": "gpt-x",
               "owner": "alice", "status": "generating", "current_stage": stage,
               "page_count": pages})
    };
    let via = |replica: usize| {
        HttpPublisher::new(
            &format!("http://{}/herald/v1", c.gw(replica).addr),
            OPERATOR_KEY,
        )
    };
    let to = [alice.clone()];
    via(1)?
        .publish(&to, "progress", &progress("cloning", 0), None)
        .await?;
    // Another project's event on the same user: the CLI must skip it.
    via(0)?
        .publish(
            &to,
            "progress",
            &json!({"name": "other", "branch": "main", "status": "generating",
                    "current_stage": "planning"}),
            None,
        )
        .await?;
    via(0)?
        .publish(&to, "progress", &progress("generating_pages", 3), None)
        .await?;
    c.publisher
        .set_snapshot(&alice, &json!({"projects": [variant("ready", 14)]}))
        .await?;
    let mut ready = progress("", 14);
    ready["status"] = "ready".into();
    c.publisher.status_change(&to, &ready).await?;

    let out = tokio::time::timeout(Duration::from_secs(60), run.wait_with_output())
        .await
        .context("the docsfy CLI did not exit")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let printed = format!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(stdout.contains("Generation ID: gid-1"), "{printed}");
    let watch: Vec<&str> = stderr.lines().map(str::trim).collect();
    assert_eq!(
        watch,
        [
            "Watching generation progress...",
            "[generating] cloning (0 pages)",
            "[generating] generating_pages (3 pages)",
            "Generation complete! (14 pages)",
        ],
        "{printed}"
    );
    Ok(())
}
