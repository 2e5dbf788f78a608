//! A real browser for the suites: headless Chromium (Debian's `chromium`)
//! driven by playwright-core through `tests/clients/browser.mjs`, one tab
//! per [`Browser`]. Screenshots go to `target/screenshots/`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::node::NodeScript;

/// Where the suites leave screenshots of their final states.
pub fn screenshots_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

/// One headless Chromium with one tab; closed when dropped.
#[derive(Debug)]
pub struct Browser {
    driver: NodeScript,
}

impl Browser {
    pub async fn start() -> Result<Self> {
        let mut driver = NodeScript::start("browser.mjs", &[], &[])?;
        let hello = driver.next_json().await?;
        if let Some(e) = hello.get("error") {
            bail!("the browser did not start: {e}");
        }
        Ok(Self { driver })
    }

    /// Run one driver command; its answer, or the driver's error.
    pub async fn command(&mut self, command: Value) -> Result<Value> {
        self.driver.send_line(&command.to_string()).await?;
        let answer = self
            .driver
            .next_json_within(crate::EVENT_TIMEOUT * 2)
            .await?;
        match answer.get("error") {
            Some(e) => bail!("browser: {command} failed: {e} ({answer})"),
            None => Ok(answer),
        }
    }

    pub async fn cookie(&mut self, name: &str, value: &str, url: &str) -> Result<()> {
        self.command(json!({"cmd": "cookie", "name": name, "value": value, "url": url}))
            .await
            .map(drop)
    }

    pub async fn goto(&mut self, url: &str) -> Result<()> {
        self.command(json!({"cmd": "goto", "url": url}))
            .await
            .map(drop)
    }

    /// Wait until the element's text contains `text`; its whole text.
    pub async fn wait_text(&mut self, selector: &str, text: &str) -> Result<String> {
        self.text_of(json!({"cmd": "wait_text", "selector": selector, "text": text}))
            .await
    }

    /// The element's text now.
    pub async fn text(&mut self, selector: &str) -> Result<String> {
        self.text_of(json!({"cmd": "text", "selector": selector}))
            .await
    }

    /// The `text` a command answers with.
    async fn text_of(&mut self, command: Value) -> Result<String> {
        let answer = self.command(command).await?;
        Ok(answer["text"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn fill(&mut self, selector: &str, value: &str) -> Result<()> {
        self.command(json!({"cmd": "fill", "selector": selector, "value": value}))
            .await
            .map(drop)
    }

    pub async fn click(&mut self, selector: &str) -> Result<()> {
        self.command(json!({"cmd": "click", "selector": selector}))
            .await
            .map(drop)
    }

    /// Save the page as `target/screenshots/NAME.png`; its path.
    pub async fn screenshot(&mut self, name: &str) -> Result<PathBuf> {
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        self.command(json!({"cmd": "screenshot", "path": path}))
            .await?;
        Ok(path)
    }
}
