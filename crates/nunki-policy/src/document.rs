//! How a policy reaches the pod: the initdata annotation (default) or the legacy policy
//! annotation, and the hash that ends up in HOST_DATA.
//!
//! * initdata: `io.katacontainers.config.hypervisor.cc_init_data` = base64(gzip(TOML)) with
//!   `version = "0.1.0"`, `algorithm = "sha256"` and `[data] "policy.rego" = <policy>`. Kata puts
//!   SHA-256 of the TOML bytes into HOST_DATA.
//! * legacy: `io.katacontainers.config.agent.policy` = base64(policy); the hash is SHA-256 of the
//!   policy text.
//!
//! The hash is always computed over exactly the bytes emitted (or decoded), never over a
//! re-serialization.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use nunki_manifest::{PolicyHash, sha256};
use serde::{Deserialize, Serialize};

/// The initdata annotation key.
pub const INITDATA_ANNOTATION: &str = "io.katacontainers.config.hypervisor.cc_init_data";
/// The legacy policy annotation key.
pub const POLICY_ANNOTATION: &str = "io.katacontainers.config.agent.policy";
/// Kubernetes limits the keys and values of all annotations of one object to 256 KiB together.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// Largest decoded document accepted from an annotation (the agent's policy size limit).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

const INITDATA_VERSION: &str = "0.1.0";
const INITDATA_ALGORITHM: &str = "sha256";
const POLICY_KEY: &str = "policy.rego";

/// The two delivery formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyFormat {
    /// initdata TOML, gzip, base64 (Kata 3.21 and later).
    Initdata,
    /// base64 of the policy text (Kata 3.20 and older; Contrast's seed era).
    Legacy,
}

/// A policy in its delivery form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    /// How it is delivered.
    pub format: PolicyFormat,
    /// The Rego policy.
    pub policy_text: String,
    /// The bytes that are hashed: the initdata TOML, or the policy text.
    pub document_bytes: Vec<u8>,
    /// The annotation key.
    pub annotation_key: &'static str,
    /// The annotation value.
    pub annotation_value: String,
    /// SHA-256 of `document_bytes`: what HOST_DATA holds.
    pub hash: PolicyHash,
}

/// Why a document could not be built or decoded.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The TOML could not be written.
    #[error("cannot encode the initdata TOML: {0}")]
    TomlEncode(#[from] toml::ser::Error),
    /// gzip failed.
    #[error("cannot gzip the initdata document: {0}")]
    Gzip(std::io::Error),
    /// An annotation value is not standard base64.
    #[error("annotation {key}: not valid base64: {reason}")]
    Base64 {
        /// The annotation.
        key: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// The initdata value is not gzip.
    #[error("annotation {key}: not valid gzip: {source}")]
    Gunzip {
        /// The annotation.
        key: &'static str,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// The decoded document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("annotation {key}: the decoded document exceeds {limit} bytes")]
    TooLarge {
        /// The annotation.
        key: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The document is not UTF-8.
    #[error("annotation {key}: the decoded document is not UTF-8")]
    Utf8 {
        /// The annotation.
        key: &'static str,
    },
    /// The initdata TOML does not parse or lacks a field.
    #[error("annotation {INITDATA_ANNOTATION}: invalid initdata: {reason}")]
    Initdata {
        /// What is wrong.
        reason: String,
    },
    /// Both annotations are present and carry different policies.
    #[error(
        "both {INITDATA_ANNOTATION} and {POLICY_ANNOTATION} are set and carry different policies; remove one"
    )]
    Conflict,
    /// The annotations would exceed Kubernetes' limit.
    #[error(
        "the annotations would take {size} bytes ({policy_bytes} of them for {key}), more than Kubernetes allows ({limit} bytes for all annotations of an object); make the pod's policy smaller (fewer containers, env values, volumes) or remove other annotations"
    )]
    AnnotationsTooLarge {
        /// Total size of keys and values.
        size: usize,
        /// Size of the policy annotation's key and value.
        policy_bytes: usize,
        /// The policy annotation.
        key: &'static str,
        /// [`MAX_ANNOTATIONS_BYTES`].
        limit: usize,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Initdata {
    version: String,
    algorithm: String,
    data: BTreeMap<String, String>,
}

/// The initdata TOML in the layout `toml::to_string_pretty` uses, with the policy in a
/// multi-line literal string (no `'''`, no control characters but newline and tab, no
/// trailing quote), without the per-character analysis the `toml` crate does, which was an
/// eighth of `generate`'s time. `None`: let the `toml` crate choose the string form.
fn literal_initdata(policy_text: &str) -> Option<String> {
    let fits = !policy_text.contains("'''")
        && !policy_text.ends_with('\'')
        && policy_text.contains('\n')
        && policy_text
            .chars()
            .all(|c| c == '\n' || c == '\t' || !c.is_control());
    if !fits {
        return None;
    }
    let mut out = String::with_capacity(policy_text.len() + 96);
    out.push_str("version = \"");
    out.push_str(INITDATA_VERSION);
    out.push_str("\"\nalgorithm = \"");
    out.push_str(INITDATA_ALGORITHM);
    out.push_str("\"\n\n[data]\n\"");
    out.push_str(POLICY_KEY);
    out.push_str("\" = '''\n");
    out.push_str(policy_text);
    out.push_str("'''\n");
    Some(out)
}

impl PolicyDocument {
    /// The initdata form of `policy_text`.
    pub fn initdata(policy_text: &str) -> Result<Self, DocumentError> {
        let doc = Initdata {
            version: INITDATA_VERSION.to_string(),
            algorithm: INITDATA_ALGORITHM.to_string(),
            data: BTreeMap::from([(POLICY_KEY.to_string(), policy_text.to_string())]),
        };
        let toml_text = match literal_initdata(policy_text) {
            Some(text) => text,
            None => toml::to_string_pretty(&doc)?,
        };
        // Level 3: the hash is over the TOML, not the gzip stream, so the level only trades
        // annotation size (5 % larger than level 6) for speed (gzip was 40 % of `generate`'s
        // time at level 6; level 1 is faster still but 40 % larger).
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(3));
        gz.write_all(toml_text.as_bytes())
            .map_err(DocumentError::Gzip)?;
        let compressed = gz.finish().map_err(DocumentError::Gzip)?;
        let document_bytes = toml_text.into_bytes();
        Ok(Self {
            format: PolicyFormat::Initdata,
            policy_text: policy_text.to_string(),
            hash: PolicyHash(sha256(&document_bytes)),
            document_bytes,
            annotation_key: INITDATA_ANNOTATION,
            annotation_value: STANDARD.encode(compressed),
        })
    }

    /// The legacy form of `policy_text`.
    pub fn legacy(policy_text: &str) -> Self {
        let document_bytes = policy_text.as_bytes().to_vec();
        Self {
            format: PolicyFormat::Legacy,
            policy_text: policy_text.to_string(),
            hash: PolicyHash(sha256(&document_bytes)),
            annotation_key: POLICY_ANNOTATION,
            annotation_value: STANDARD.encode(&document_bytes),
            document_bytes,
        }
    }

    /// Builds the document in the given format.
    pub fn new(format: PolicyFormat, policy_text: &str) -> Result<Self, DocumentError> {
        match format {
            PolicyFormat::Initdata => Self::initdata(policy_text),
            PolicyFormat::Legacy => Ok(Self::legacy(policy_text)),
        }
    }

    /// Decodes the policy annotation of a pod; `None` when it has neither. The initdata document
    /// wins when both are present and carry the same policy; different policies are an error.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<Option<Self>, DocumentError> {
        let initdata = annotations
            .get(INITDATA_ANNOTATION)
            .map(|v| Self::decode_initdata(v))
            .transpose()?;
        let legacy = annotations
            .get(POLICY_ANNOTATION)
            .map(|v| Self::decode_legacy(v))
            .transpose()?;
        match (initdata, legacy) {
            (Some(i), Some(l)) if i.policy_text != l.policy_text => Err(DocumentError::Conflict),
            (Some(i), _) => Ok(Some(i)),
            (None, l) => Ok(l),
        }
    }

    /// Decodes an initdata annotation value.
    pub fn decode_initdata(value: &str) -> Result<Self, DocumentError> {
        let key = INITDATA_ANNOTATION;
        let compressed = decode_base64(key, value)?;
        let mut document_bytes = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .take(MAX_DOCUMENT_BYTES as u64 + 1)
            .read_to_end(&mut document_bytes)
            .map_err(|source| DocumentError::Gunzip { key, source })?;
        if document_bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge {
                key,
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let text = std::str::from_utf8(&document_bytes).map_err(|_| DocumentError::Utf8 { key })?;
        let doc: Initdata = toml::from_str(text).map_err(|e| DocumentError::Initdata {
            reason: e.to_string(),
        })?;
        if doc.version != INITDATA_VERSION {
            return Err(DocumentError::Initdata {
                reason: format!("version {:?}, expected {INITDATA_VERSION:?}", doc.version),
            });
        }
        if doc.algorithm != INITDATA_ALGORITHM {
            return Err(DocumentError::Initdata {
                reason: format!(
                    "algorithm {:?}; Nunki's policy hashes are SHA-256, so only {INITDATA_ALGORITHM:?} is supported",
                    doc.algorithm
                ),
            });
        }
        let policy_text =
            doc.data
                .get(POLICY_KEY)
                .cloned()
                .ok_or_else(|| DocumentError::Initdata {
                    reason: format!("no {POLICY_KEY:?} in [data]"),
                })?;
        Ok(Self {
            format: PolicyFormat::Initdata,
            policy_text,
            hash: PolicyHash(sha256(&document_bytes)),
            document_bytes,
            annotation_key: key,
            annotation_value: value.to_string(),
        })
    }

    /// Decodes a legacy policy annotation value.
    pub fn decode_legacy(value: &str) -> Result<Self, DocumentError> {
        let key = POLICY_ANNOTATION;
        let document_bytes = decode_base64(key, value)?;
        let policy_text =
            String::from_utf8(document_bytes.clone()).map_err(|_| DocumentError::Utf8 { key })?;
        Ok(Self {
            format: PolicyFormat::Legacy,
            policy_text,
            hash: PolicyHash(sha256(&document_bytes)),
            document_bytes,
            annotation_key: key,
            annotation_value: value.to_string(),
        })
    }

    /// Checks that `annotations` with this document's annotation set (replacing any policy
    /// annotation already there) stay within Kubernetes' 256 KiB limit.
    pub fn check_annotations_size(
        &self,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), DocumentError> {
        let others: usize = annotations
            .iter()
            .filter(|(k, _)| k.as_str() != INITDATA_ANNOTATION && k.as_str() != POLICY_ANNOTATION)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        let policy_bytes = self.annotation_key.len() + self.annotation_value.len();
        let size = others + policy_bytes;
        if size > MAX_ANNOTATIONS_BYTES {
            return Err(DocumentError::AnnotationsTooLarge {
                size,
                policy_bytes,
                key: self.annotation_key,
                limit: MAX_ANNOTATIONS_BYTES,
            });
        }
        Ok(())
    }
}

fn decode_base64(key: &'static str, value: &str) -> Result<Vec<u8>, DocumentError> {
    // Base64 grows data by 4/3; refuse early what cannot decode to an acceptable size.
    if value.len() / 4 * 3 > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge {
            key,
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    STANDARD
        .decode(value.trim())
        .map_err(|e| DocumentError::Base64 {
            key,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn via_toml_crate(text: &str) -> String {
        toml::to_string_pretty(&Initdata {
            version: INITDATA_VERSION.to_string(),
            algorithm: INITDATA_ALGORITHM.to_string(),
            data: BTreeMap::from([(POLICY_KEY.to_string(), text.to_string())]),
        })
        .unwrap()
    }

    #[test]
    fn literal_form_parses_back_to_the_same_document() {
        let policy = crate::render_policy(&serde_json::json!({
            "containers": [{"OCI": {"Process": {"Args": ["sh", "-c", "echo \"$HOME\" \\ done"], "Env": ["A=b\tc", "ü=ß"]}}}],
            "common": {"cpath": "/run/kata-containers/shared/containers"}
        }));
        for text in [
            policy.as_str(),
            "package agent_policy\n  default X := true\n",
            "package agent_policy\n\tdefault X := true\n",
            "a \"quoted\" and 'single' \\ back\nslash",
        ] {
            let fast = literal_initdata(text).expect("fits a literal string");
            // Same document as the toml crate's (which may pick another string form).
            let ours: Initdata = toml::from_str(&fast).unwrap();
            let theirs: Initdata = toml::from_str(&via_toml_crate(text)).unwrap();
            assert_eq!(ours.data, theirs.data);
            assert!(fast.starts_with("version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n"));
            let parsed: Initdata = toml::from_str(&fast).unwrap();
            assert_eq!(parsed.data[POLICY_KEY], text);
        }
    }

    #[test]
    fn texts_a_literal_string_cannot_hold_use_the_toml_crate() {
        for text in [
            "a ''' b\n",
            "ends with a quote\n'",
            "carriage\r\nreturn",
            "no newline",
            "bell\u{7}\n",
        ] {
            assert_eq!(literal_initdata(text), None, "{text:?}");
            let doc = PolicyDocument::initdata(text).unwrap();
            let back = PolicyDocument::decode_initdata(&doc.annotation_value).unwrap();
            assert_eq!(back.policy_text, text);
            assert_eq!(back.hash, doc.hash);
        }
    }
}
