//! Placeholders for reference values that `nunki generate` cannot know.
//!
//! For hardware platforms the launch measurement of the user's guest image and the minimum TCB of
//! the user's machines are facts only the owner has. `generate` writes a string that starts with
//! [`PREFIX`] in their place; [`crate::ParsedManifest::parse`] refuses a manifest that still has
//! one and names each field, so a half-filled manifest can never be set.

/// Every placeholder starts with this text.
pub const PREFIX: &str = "<fill in: ";

/// A placeholder string for a value described by `what`.
pub fn placeholder(what: &str) -> String {
    format!("{PREFIX}{what}>")
}

/// Whether `s` is a placeholder.
pub fn is_placeholder(s: &str) -> bool {
    s.starts_with(PREFIX)
}

/// Every placeholder in a JSON document, as `(JSON path, what to fill in)`, in document order.
/// Bytes that are not JSON yield nothing (the typed parse reports them).
pub fn find(bytes: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        walk(&value, "$".to_string(), &mut out);
    }
    out
}

fn walk(value: &serde_json::Value, path: String, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::String(s) if is_placeholder(s) => {
            let what = s
                .strip_prefix(PREFIX)
                .unwrap_or(s)
                .trim_end_matches('>')
                .to_string();
            out.push((path, what));
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                walk(v, format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_placeholder_with_its_path() {
        let doc = serde_json::json!({
            "ReferenceValues": {"snp": [{
                "TrustedMeasurement": placeholder("the launch measurement"),
                "MinimumTCB": {"SNPVersion": placeholder("the minimum SNP firmware SPL"), "TEEVersion": 0}
            }]}
        });
        let found = find(&serde_json::to_vec(&doc).unwrap());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.contains(&(
            "$.ReferenceValues.snp[0].TrustedMeasurement".to_string(),
            "the launch measurement".to_string()
        )));
        assert!(
            found
                .iter()
                .any(|(p, _)| p.ends_with("MinimumTCB.SNPVersion"))
        );
    }

    #[test]
    fn ordinary_strings_are_not_placeholders() {
        assert!(find(br#"{"a": "fill in later", "b": ["<fill in"]}"#).is_empty());
        assert!(find(b"not json").is_empty());
    }
}
