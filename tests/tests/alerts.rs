//! The alert rules in `deploy/alerts.yml` are valid and fire on what they
//! are about: `promtool check rules`, then `promtool test rules` with the
//! sample series of `deploy/alerts.test.yml`. Each alert's runbook link
//! points at a section of `docs/metrics.md`. The static scrape
//! configuration, which loads those rules, passes `promtool check config`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
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
