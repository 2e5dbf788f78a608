//! The alert rules in `deploy/alerts.yml` are valid and fire on what they
//! are about: `promtool check rules`, then `promtool test rules` with the
//! sample series of `deploy/alerts.test.yml`. Each alert's runbook link
//! points at a section of `docs/metrics.md`. The static scrape
//! configuration, which loads those rules, passes `promtool check config`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use herald_tests::{Gateway, RedisServer, WsClient, jwt, metric, unix_now, wait_until};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn promtool(args: &[&str]) -> Result<String> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo().join("deploy"))
        .output()
        .await
        .context("run promtool (Debian package `prometheus`; the test command installs it)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "promtool {args:?} failed:\n{text}");
    Ok(text)
}

/// The alert names of `deploy/alerts.yml`.
fn alert_names(rules: &str) -> Vec<&str> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect()
}

#[tokio::test]
async fn the_alert_rules_are_valid_and_fire_on_their_sample_series() -> Result<()> {
    let rules = std::fs::read_to_string(repo().join("deploy/alerts.yml"))?;
    let n = alert_names(&rules).len();
    let checked = promtool(&["check", "rules", "alerts.yml"]).await?;
    ensure!(
        n >= 7 && checked.contains(&format!("SUCCESS: {n} rules found")),
        "{checked}"
    );
    let tested = promtool(&["test", "rules", "alerts.test.yml"]).await?;
    ensure!(tested.contains("SUCCESS"), "{tested}");
    Ok(())
}

#[test]
fn every_alert_has_a_runbook_section() -> Result<()> {
    let rules = std::fs::read_to_string(repo().join("deploy/alerts.yml"))?;
    let page = std::fs::read_to_string(repo().join("docs/metrics.md"))?;
    let alerts = alert_names(&rules);
    ensure!(!alerts.is_empty(), "no alerts in deploy/alerts.yml");
    for alert in alerts {
        ensure!(
            page.contains(&format!("\n### {alert}\n")),
            "docs/metrics.md has no runbook section for {alert}"
        );
        let anchor = format!("docs/metrics.md#{}", alert.to_lowercase());
        ensure!(
            rules.contains(&anchor),
            "{alert}'s runbook link is not {anchor}"
        );
    }
    Ok(())
}

/// The static scrape configuration (with the alert rules it loads) passes
/// `promtool check config`. The Kubernetes one is a file of its own,
/// `prometheus-kubernetes.yml`: Debian's promtool is built without
/// Kubernetes discovery and cannot read it.
#[tokio::test]
async fn the_static_scrape_configuration_is_valid() -> Result<()> {
    let checked = promtool(&["check", "config", "prometheus.yml"]).await?;
    ensure!(
        checked.contains("SUCCESS: prometheus.yml is valid prometheus config file syntax")
            && checked.contains("SUCCESS:")
            && checked.contains("rules found"),
        "{checked}"
    );
    Ok(())
}

/// `herald_…` series names in a rule file or a dashboard's expressions,
/// without the histogram suffixes.
fn series_named(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("herald_"))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

/// A gateway on Redis that served some traffic: a client message, an event
/// delivered, a refused token, a closed connection. Everything it exports
/// passes `promtool check metrics` (names, suffixes, types, help texts),
/// and every series an alert rule or the dashboard names is among it.
#[tokio::test]
async fn every_series_the_rules_and_dashboard_name_is_exported_and_well_formed() -> Result<()> {
    let redis = RedisServer::start().await?;
    let gw = Gateway::on_redis(&redis).await?;
    let token = jwt("alice", Some("acme"), &["res:kubegen:*"], unix_now() + 600);
    let mut ws = WsClient::connect(&gw.ws_url(&format!("/v1/ws?token={token}"))).await?;
    ws.send_json(&serde_json::json!({"type": "pong"})).await?;
    herald_tests::heraldctl_publish(
        &[],
        &["--redis", &redis.url()],
        "user:alice",
        "progress",
        r#"{"n":1}"#,
    )
    .await?;
    let frame = ws.next_json().await?;
    ensure!(frame["data"]["n"] == 1, "{frame}");
    ws.close().await;
    let refused = WsClient::connect(&gw.ws_url("/v1/ws?token=not-a-token")).await;
    drop(refused);
    wait_until("the traffic counted", || async {
        gw.get("/metrics").await.is_ok_and(|(_, text)| {
            metric(&text, "herald_client_messages_total{route=\"kubegen\"}") == Some(1.0)
                && text.contains("herald_connections_closed_total{")
                && text.contains("herald_auth_failures_total{")
        })
    })
    .await?;
    let (status, text) = gw.get("/metrics").await?;
    ensure!(status == 200, "/metrics answered {status}");

    let mut named = series_named(&std::fs::read_to_string(repo().join("deploy/alerts.yml"))?);
    named.extend(series_named(&std::fs::read_to_string(
        repo().join("deploy/grafana-dashboard.json"),
    )?));
    ensure!(named.len() > 15, "names read: {named:?}");
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| {
            !exported.contains(n.as_str()) && !exported.contains(format!("{n}_bucket").as_str())
        })
        .collect();
    ensure!(
        missing.is_empty(),
        "named by a rule or the dashboard, not exported: {missing:?}"
    );

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run promtool (the test command installs it)")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(text.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics: {findings}"
    );
    Ok(())
}
