//! Property tests over the config loader and the wire encoder: any input is
//! refused with an error (never a panic), and flat frames are exactly the
//! payload's members beside the type.

use herald_gateway::config::{Config, DEFAULT_CONFIG};
use herald_gateway::profile::wire::encode_event;
use herald_shared::profile::{FrameSpec, FrameStyle};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn config_loader_never_panics_on_arbitrary_text(text in ".{0,300}") {
        if let Ok(c) = Config::parse(&text, "fuzz") {
            let _ = c.validate();
        }
    }

    #[test]
    fn mutating_one_line_of_the_default_config_never_panics(line in 0usize..400, replacement in "[a-z_.]{1,20} = [-0-9a-z\"{}\\[\\],. ]{0,30}") {
        let mut lines: Vec<&str> = DEFAULT_CONFIG.lines().collect();
        let i = line % lines.len();
        lines[i] = &replacement;
        let text = lines.join("\n");
        if let Ok(c) = Config::parse(&text, "fuzz")
            && let Err(e) = c.validate()
        {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn flat_frames_are_the_payload_beside_the_type(
        fields in proptest::collection::btree_map("[a-z]{1,8}", any::<i32>(), 0..8),
        ty in "[a-z_.]{1,20}",
    ) {
        let mut data = serde_json::Map::new();
        for (k, v) in &fields {
            if k != "type" {
                data.insert(k.clone(), serde_json::json!(v));
            }
        }
        let raw = serde_json::Value::Object(data.clone()).to_string();
        let spec = FrameSpec { style: FrameStyle::Flat, ..FrameSpec::default() };
        let frame: serde_json::Value = serde_json::from_str(encode_event(&spec, &ty, 0, &raw).as_str())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut expected = data;
        expected.insert("type".into(), serde_json::json!(ty));
        prop_assert_eq!(frame, serde_json::Value::Object(expected));
    }
}
