//! The alert rules in `deploy/alerts.yml` are valid and fire on what they
//! are about: `promtool check rules`, then `promtool test rules` with the
//! sample series of `deploy/alerts.test.yml`. Each alert's runbook link
//! points at a section of `docs/metrics.md`.

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

#[tokio::test]
async fn the_alert_rules_are_valid_and_fire_on_their_sample_series() -> Result<()> {
    let checked = promtool(&["check", "rules", "alerts.yml"]).await?;
    ensure!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yml"]).await?;
    ensure!(tested.contains("SUCCESS"), "{tested}");
    Ok(())
}

#[test]
fn every_alert_has_a_runbook_section() -> Result<()> {
    let rules = std::fs::read_to_string(repo().join("deploy/alerts.yml"))?;
    let page = std::fs::read_to_string(repo().join("docs/metrics.md"))?;
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    ensure!(alerts.len() == 6, "{alerts:?}");
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
