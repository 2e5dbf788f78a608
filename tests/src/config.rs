//! Gateway configuration text: the bundled `deploy/herald.toml`, copies of
//! it with one profile edited, and fragments suites append.

use std::path::Path;

/// The bundled default configuration text.
pub fn default_config() -> String {
    deploy_config("herald.toml")
}

/// A configuration file shipped in `deploy/` (`agenthq-sdk.toml`).
pub fn deploy_config(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The bundled configuration with `from` replaced by `to` inside the
/// `[[profiles]]` entry named `profile` only.
pub fn profile_config(profile: &str, edits: &[(&str, &str)]) -> String {
    let text = default_config();
    let marker = "\n[[profiles]]\n";
    let mut parts: Vec<String> = text.split(marker).map(str::to_owned).collect();
    let name = format!("name = \"{profile}\"");
    let block = parts
        .iter_mut()
        .find(|p| p.contains(&name))
        .unwrap_or_else(|| panic!("no profile {profile}"));
    for (from, to) in edits {
        assert!(block.contains(from), "profile {profile} has no `{from}`");
        *block = block.replace(from, to);
    }
    parts.join(marker)
}

/// Delivery probes every 250 ms, two misses in a row fail readiness: a
/// replica notices a failover (or a Redis that stops delivering) quickly.
pub const FAST_PROBES: &str = "
[readiness]
probe_interval_ms = 250
probe_timeout_ms = 250
probe_misses = 2
";
