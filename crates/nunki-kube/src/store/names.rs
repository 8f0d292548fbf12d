//! ConfigMap names, labels and annotations of the store's objects.
//!
//! A key `<dir>/<name>` lives in the ConfigMap `nunki-store.<dir>.<name>` when that is a valid
//! object name (lowercase, at most 253 characters, every dot-separated part starting and ending
//! with a letter or digit), else in `nunki-store-h.<sha256 of the key, hex>`. Key parts cannot
//! contain dots, and the three prefixes (`nunki-store.`, `nunki-store-h.`,
//! `nunki-store-chunk.`) differ, so two keys never share an object. Each entry also names its
//! key in an annotation, which reads check.

use nunki_store::StoreKey;

/// Prefix of every ConfigMap the store writes.
pub const NAME_PREFIX: &str = "nunki-store";
/// Label on every ConfigMap the store writes (`app.kubernetes.io/managed-by`).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "nunki-coordinator";
/// Label telling entries (`entry`) from the pieces of large values (`chunk`).
pub const KIND_LABEL: &str = "nunki.edgeless.systems/store-object";
/// Label with the key's directory (`manifests`, `policies`, `transitions`), when the directory
/// is a valid label value.
pub const DIR_LABEL: &str = "nunki.edgeless.systems/store-dir";
/// Annotation with the store key an entry holds.
pub const KEY_ANNOTATION: &str = "nunki.edgeless.systems/store-key";
/// Annotation of an entry whose value is split into chunks: how many.
pub const CHUNKS_ANNOTATION: &str = "nunki.edgeless.systems/store-chunks";
/// Annotation of a chunked entry: the value's length in bytes.
pub const SIZE_ANNOTATION: &str = "nunki.edgeless.systems/store-size";
/// Annotation of a chunked entry: the SHA-256 of the whole value (hex), which also names its
/// chunks.
pub const SHA256_ANNOTATION: &str = "nunki.edgeless.systems/store-sha256";
/// Key in `binaryData` that holds a value or a chunk.
pub const VALUE_KEY: &str = "value";

/// Longest object name Kubernetes accepts (a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;

/// The ConfigMap that holds `key`.
pub fn entry_name(key: &StoreKey) -> String {
    let readable = format!("{NAME_PREFIX}.{}.{}", key.dir(), key.name());
    if is_dns_subdomain(&readable) {
        readable
    } else {
        format!("{NAME_PREFIX}-h.{}", sha256_hex(key.to_string().as_bytes()))
    }
}

/// The ConfigMap that holds chunk `index` of the value whose SHA-256 is `digest_hex`.
pub fn chunk_name(digest_hex: &str, index: usize) -> String {
    format!("{NAME_PREFIX}-chunk.{digest_hex}.{index}")
}

/// Whether `s` is a valid Kubernetes object name (RFC 1123 subdomain, at most 253 characters).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.split('.').all(|part| {
            let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            part.chars().next().is_some_and(ok_char)
                && part.chars().last().is_some_and(ok_char)
                && part.chars().all(|c| ok_char(c) || c == '-')
        })
}

/// Whether `s` is a valid label value (at most 63 characters of `[A-Za-z0-9._-]`, starting and
/// ending with a letter or digit, or empty).
pub fn is_label_value(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.len() <= 63
        && s.chars().next().is_some_and(alnum)
        && s.chars().last().is_some_and(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> StoreKey {
        s.parse().unwrap()
    }

    #[test]
    fn readable_names_where_possible() {
        assert_eq!(
            entry_name(&key("transitions/latest")),
            "nunki-store.transitions.latest"
        );
        let hex = "ab".repeat(32);
        assert_eq!(
            entry_name(&key(&format!("manifests/{hex}"))),
            format!("nunki-store.manifests.{hex}")
        );
    }

    #[test]
    fn hashed_names_otherwise_and_all_distinct() {
        let keys = [
            "a-b-0/Name-With-Caps-9",
            "a-b-0/name-with-caps-9",
            "-/-",
            "x-/-y",
            "a-b/c",
            "a/b-c",
            &format!("{}/{}", "d".repeat(128), "n".repeat(128)),
        ];
        let names: Vec<String> = keys.iter().map(|k| entry_name(&key(k))).collect();
        for (k, n) in keys.iter().zip(&names) {
            assert!(is_dns_subdomain(n), "{k} -> {n}");
        }
        assert!(names[0].starts_with("nunki-store-h."), "{}", names[0]);
        assert_eq!(names[1], "nunki-store.a-b-0.name-with-caps-9");
        assert!(names[2].starts_with("nunki-store-h."));
        assert!(names[6].starts_with("nunki-store-h."));
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    #[test]
    fn subdomain_and_label_rules() {
        assert!(is_dns_subdomain("a.b-c.d0"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain("a-.b"));
        assert!(!is_dns_subdomain("A"));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
        assert!(is_dns_subdomain(&"a".repeat(253)));
        assert!(is_label_value("manifests"));
        assert!(is_label_value("A_b.c-9"));
        assert!(!is_label_value("-a"));
        assert!(!is_label_value(&"a".repeat(64)));
        assert!(
            chunk_name(&"0f".repeat(32), 85).len() < MAX_NAME_LEN
                && is_dns_subdomain(&chunk_name(&"0f".repeat(32), 85))
        );
    }
}
