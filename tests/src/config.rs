//! Gateway configuration text: the bundled `deploy/herald.toml`, and copies
//! of it with one profile edited.

use std::path::Path;

/// The bundled default configuration text.
pub fn default_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/herald.toml");
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
