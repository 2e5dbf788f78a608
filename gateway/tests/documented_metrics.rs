//! Every series the gateway defines is documented in `docs/metrics.md`
//! with its type, and the page documents no series the gateway does not
//! define. The names come from `src/metrics.rs`, the one place they live.

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `herald_…` names quoted in `text` (between `"` in code, "`" in docs).
fn names(text: &str, quote: char) -> BTreeSet<String> {
    text.split(quote)
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with("herald_")
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// The kind each `describe_*!(CONST, …)` gives a series, by its name.
fn kinds(source: &str) -> Vec<(String, &'static str)> {
    let consts: Vec<(String, String)> = source
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("const ")?;
            let (name, value) = rest.split_once(": &str = \"")?;
            Some((name.to_owned(), value.trim_end_matches("\";").to_owned()))
        })
        .collect();
    let mut out = Vec::new();
    for (kind, macro_name) in [
        ("counter", "describe_counter!("),
        ("gauge", "describe_gauge!("),
        ("histogram", "describe_histogram!("),
    ] {
        for chunk in source.split(macro_name).skip(1) {
            let constant = chunk
                .trim_start()
                .split([',', ')'])
                .next()
                .unwrap_or_default()
                .trim();
            if let Some((_, series)) = consts.iter().find(|(c, _)| c == constant) {
                out.push((series.clone(), kind));
            }
        }
    }
    out
}

#[test]
fn every_series_is_documented_with_its_type_and_nothing_else_is() {
    let source = read("src/metrics.rs");
    let page = read("../docs/metrics.md");
    let defined = names(&source, '"');
    assert!(
        defined.contains("herald_broker_resubscribed_topics_total") && defined.len() > 10,
        "the names are read from the source: {defined:?}"
    );
    let documented = names(&page, '`');
    let missing: Vec<_> = defined.difference(&documented).collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
    let stale: Vec<_> = documented
        .iter()
        .filter(|d| !defined.contains(*d) && !d.ends_with("_bucket"))
        .collect();
    assert!(stale.is_empty(), "documented but not defined: {stale:?}");
    let kinds = kinds(&source);
    assert_eq!(
        kinds.len(),
        defined.len(),
        "every series is described: {kinds:?}"
    );
    for (series, kind) in kinds {
        let row = page
            .lines()
            .find(|l| l.starts_with(&format!("| `{series}` |")))
            .unwrap_or_else(|| panic!("no table row for {series}"));
        assert!(
            row.contains(&format!("| {kind} |")),
            "{series} is a {kind}: {row}"
        );
    }
}

/// The dashboard in `deploy/` charts every series the gateway defines.
#[test]
fn the_dashboard_charts_every_series() {
    let defined = names(&read("src/metrics.rs"), '"');
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("../deploy/grafana-dashboard.json")).expect("dashboard JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    let uncharted: Vec<_> = defined
        .iter()
        .filter(|series| {
            !exprs.iter().any(|e| {
                e.contains(&format!("{series}{{")) || e.contains(&format!("{series}_bucket{{"))
            })
        })
        .collect();
    assert!(uncharted.is_empty(), "not on the dashboard: {uncharted:?}");
}
