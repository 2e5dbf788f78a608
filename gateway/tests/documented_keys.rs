//! Every key the configuration parser accepts is documented: route-profile
//! keys in `docs/profiles.md`, the others in the README's configuration
//! reference. The keys come from the schema of the types serde reads the
//! file with, so a new field without documentation fails here.

use serde_json::Value;

/// Dotted key paths of a schema node; `[]` marks the elements of an array.
fn keys(defs: &Value, node: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(name) = node["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        return keys(defs, &defs[name], prefix, out);
    }
    for alternatives in ["anyOf", "oneOf", "allOf"] {
        for alt in node[alternatives].as_array().into_iter().flatten() {
            keys(defs, alt, prefix, out);
        }
    }
    if !node["items"].is_null() {
        keys(defs, &node["items"], &format!("{prefix}[]"), out);
    }
    for (name, child) in node["properties"].as_object().into_iter().flatten() {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if !out.contains(&key) {
            out.push(key.clone());
        }
        keys(defs, child, &key, out);
    }
}

fn all_keys() -> Vec<String> {
    let schema = herald_gateway::config::schema();
    let mut out = Vec::new();
    keys(&schema["$defs"], &schema, "", &mut out);
    out
}

fn doc(path: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn every_accepted_key_is_documented() {
    let profiles_md = doc("../docs/profiles.md");
    let readme = doc("../README.md");
    let keys = all_keys();
    assert!(
        keys.iter().any(|k| k == "profiles[].frame.offset_field")
            && keys.iter().any(|k| k == "limits.outbound_queue"),
        "the walk reaches nested keys: {keys:?}"
    );
    // Sections (`heartbeat`, `limits`) are documented through their keys.
    let leaves = keys.iter().filter(|key| {
        !keys
            .iter()
            .any(|k| k.starts_with(&format!("{key}.")) || k.starts_with(&format!("{key}[].")))
    });
    let missing: Vec<_> = leaves
        .filter(|key| match key.strip_prefix("profiles[].") {
            Some(profile_key) => !profiles_md.contains(&format!("`{profile_key}`")),
            None => !readme.contains(&format!("`{key}`")),
        })
        .collect();
    assert!(
        missing.is_empty(),
        "accepted by the parser but not documented (profile keys in docs/profiles.md, \
         the others in README.md's configuration reference, each as `key`): {missing:#?}"
    );
}
