//! The server API against its OpenAPI document, with real tools from PyPI
//! (installed by `scripts/test.sh` into `target/py`): the document is valid
//! OpenAPI 3.1 (`openapi-spec-validator`), and `schemathesis` fuzzes every
//! operation of a gateway on a real Redis with every check it has: no 5xx,
//! every response (status, media type, body) as documented, schema-valid
//! requests accepted, schema-violating ones refused, auth enforced.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use herald_tests::Cluster;

const KEY: &str = "fuzzing-admin-key";

fn tool(name: &str) -> PathBuf {
    // Found on PATH; scripts/test.sh puts target/py/bin there.
    PathBuf::from(name)
}

async fn run(cmd: &mut tokio::process::Command, limit: Duration) -> Result<(bool, String)> {
    let out = tokio::time::timeout(limit, cmd.kill_on_drop(true).output())
        .await
        .context("timed out")?
        .context(
            "not installed: run ./scripts/test.sh, which installs it from PyPI into target/py",
        )?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[tokio::test]
async fn the_document_is_valid_openapi() -> Result<()> {
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let (ok, out) = run(
        tokio::process::Command::new(tool("openapi-spec-validator")).arg(&doc),
        Duration::from_secs(60),
    )
    .await?;
    assert!(ok && out.contains("OK"), "{out}");
    Ok(())
}

#[tokio::test]
async fn schemathesis_finds_nothing() -> Result<()> {
    let config = format!(
        "[[api.keys]]\nsha256 = \"{}\"\ncapabilities = [\"admin\"]\n",
        herald_shared::hash_secret(KEY)
    );
    let c = Cluster::start(1, Some(config)).await?;
    let url = format!("http://{}/herald/v1/openapi.json", c.gw(0).addr);
    let (ok, out) = run(
        tokio::process::Command::new(tool("schemathesis"))
            .args(["run", &url, "--checks", "all", "--max-examples", "50"])
            .args(["--workers", "1", "--seed", "20261130"])
            .args(["-H", &format!("Authorization: Bearer {KEY}")])
            .env("NO_COLOR", "1"),
        Duration::from_secs(600),
    )
    .await?;
    assert!(ok, "schemathesis reported failures:\n{out}");
    // Every served operation but `GET /openapi.json`, the document
    // schemathesis was loaded from and leaves out.
    let operations = herald_gateway::api::endpoints().len() - 1;
    assert!(
        out.contains(&format!(
            "Operations:       {operations} selected / {operations} total"
        )) && out.contains(&format!("{operations} passed")),
        "every operation tested:\n{out}"
    );
    assert_eq!(
        c.gw(0).get("/healthz").await?.0,
        200,
        "the gateway survived"
    );
    Ok(())
}
