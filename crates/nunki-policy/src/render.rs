//! The policy text: our rules followed by `policy_data`.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// Our Rego rules (package `agent_policy`), embedded verbatim into every policy.
pub const RULES: &str = include_str!("rules.rego");

/// `RULES + "\npolicy_data := " + JSON`. The JSON is pretty-printed with two-space indentation:
/// the agent rejects lines longer than 64 KiB, and one compact line would exceed that for large
/// pods. The output depends only on `policy_data`, so equal data gives byte-identical policies.
pub fn render_policy(policy_data: &Value) -> String {
    let mut out = String::with_capacity(RULES.len() + 4096);
    out.push_str(RULES);
    out.push_str("\npolicy_data := ");
    let mut json = Vec::with_capacity(4096);
    let mut ser = serde_json::Serializer::with_formatter(
        &mut json,
        serde_json::ser::PrettyFormatter::with_indent(b"  "),
    );
    match policy_data
        .serialize(&mut ser)
        .ok()
        .and_then(|()| String::from_utf8(json).ok())
    {
        Some(text) => out.push_str(&text),
        // A Value always serializes into a Vec as UTF-8; fall back to the compact form anyway
        // rather than emit a truncated policy.
        None => {
            let _ = write!(out, "{policy_data}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use serde_json::json;

    #[test]
    fn policy_is_rules_then_data() {
        let data = json!({"containers": [], "common": {"cpath": "x"}});
        let text = render_policy(&data);
        let (rules, rest) = text.split_once("\npolicy_data := ").unwrap();
        assert_eq!(rules, RULES);
        assert_eq!(serde_json::from_str::<Value>(rest).unwrap(), data);
        assert_eq!(text, render_policy(&data));
        assert!(RULES.starts_with("# Nunki"));
        assert!(RULES.contains("\npackage agent_policy\n"));
    }
}
