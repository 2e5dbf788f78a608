//! A real Prometheus (Debian's `prometheus`) with the repository's static
//! scrape configuration, its targets pointed at two gateway replicas on one
//! Redis: both are up, the connection counts it reads are the connections
//! the test opened on each, and it loaded every alert rule.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use herald_tests::{
    Gateway, RedisServer, WsClient, free_port, jwt, scratch_dir, unix_now, wait_until,
};
use serde_json::Value;
use tokio::process::{Child, Command};

/// A query string value, percent-encoded (PromQL has braces, quotes, spaces).
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's HTTP API (its answers may be chunked: a real client).
async fn api(prometheus: &str, path: &str) -> Result<Value> {
    let response = reqwest::get(format!("http://{prometheus}{path}")).await?;
    let status = response.status();
    let body = response.text().await?;
    ensure!(status.is_success(), "{path}: {status} {body}");
    Ok(serde_json::from_str(&body)?)
}

async fn query(prometheus: &str, promql: &str) -> Result<Vec<Value>> {
    let answer = api(
        prometheus,
        &format!("/api/v1/query?query={}", encode(promql)),
    )
    .await?;
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// `instance` → value of a vector result.
fn by_instance(result: &[Value]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = result
        .iter()
        .map(|r| {
            (
                r["metric"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["value"][1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn prometheus_scrapes_two_replicas_and_loads_the_alert_rules() -> Result<()> {
    let redis = RedisServer::start().await?;
    let mut gateways = Vec::new();
    for _ in 0..2 {
        gateways.push(Gateway::on_redis(&redis).await?);
    }
    // Three connections on the first replica, two on the second.
    let mut sockets = Vec::new();
    for (i, gw) in gateways.iter().enumerate() {
        for n in 0..(3 - i) {
            let token = jwt(
                &format!("user-{i}-{n}"),
                Some("acme"),
                &[],
                unix_now() + 600,
            );
            sockets.push(WsClient::connect(&gw.ws_url(&format!("/v1/ws?token={token}"))).await?);
        }
    }

    // deploy/prometheus.yml as shipped, with the replicas' addresses as
    // targets, a short interval, and the rule file by its path.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped = std::fs::read_to_string(repo.join("deploy/prometheus.yml"))?;
    let targets = gateways
        .iter()
        .map(|g| format!("          - {}", g.addr))
        .collect::<Vec<_>>()
        .join("\n");
    let config = shipped
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace(
            "  - alerts.yml",
            &format!("  - {}", repo.join("deploy/alerts.yml").display()),
        )
        .replace(
            "          - herald-1:8080\n          - herald-2:8080",
            &targets,
        );
    ensure!(
        config.contains(&gateways[1].addr),
        "targets not replaced:\n{config}"
    );
    let dir = scratch_dir("prometheus");
    std::fs::write(dir.join("prometheus.yml"), &config)?;
    let web = format!("127.0.0.1:{}", free_port());
    let _prometheus: Child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
        .kill_on_drop(true)
        .spawn()
        .context("start prometheus (Debian package `prometheus`; the test command installs it)")?;

    let expected_up: Vec<(String, String)> = {
        let mut v: Vec<_> = gateways
            .iter()
            .map(|g| (g.addr.clone(), "1".to_owned()))
            .collect();
        v.sort();
        v
    };
    wait_until("both replicas up in Prometheus", || async {
        query(&web, "up{job=\"herald\"}")
            .await
            .is_ok_and(|r| by_instance(&r) == expected_up)
    })
    .await?;
    let mut expected_connections = vec![
        (gateways[0].addr.clone(), "3".to_owned()),
        (gateways[1].addr.clone(), "2".to_owned()),
    ];
    expected_connections.sort();
    wait_until("the opened connections counted per replica", || async {
        query(
            &web,
            "sum by (instance) (herald_connections{job=\"herald\"})",
        )
        .await
        .is_ok_and(|r| by_instance(&r) == expected_connections)
    })
    .await?;

    let rules = std::fs::read_to_string(repo.join("deploy/alerts.yml"))?;
    let alerts = rules.matches("- alert: ").count();
    let loaded = api(&web, "/api/v1/rules?type=alert").await?;
    let names: Vec<&str> = loaded["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str())
        .collect();
    ensure!(
        alerts >= 7 && names.len() == alerts,
        "{alerts} alerts in the file, loaded: {names:?}"
    );
    drop(sockets);
    Ok(())
}
