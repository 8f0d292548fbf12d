//! The offline image-info file: image configs and `/etc/passwd`/`/etc/group` texts by reference.
//!
//! Format (public, so that people and other tools can write it):
//!
//! ```json
//! {"images": {"<reference as written in the YAML>": {
//!     "config": <the image's OCI config JSON, verbatim as the registry serves it>,
//!     "passwd": "<the image's /etc/passwd, or null>",
//!     "group": "<the image's /etc/group, or null>"}}}
//! ```
//!
//! The generator never contacts a registry: an image that is neither in the file nor built in is
//! an error that says how to fetch it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// The command that fills the image-info file from registries.
pub const PULL_COMMAND: &str = "nunki images pull <files>";

/// Errors of reading, writing and looking up image information.
#[derive(Debug, thiserror::Error)]
pub enum ImageInfoError {
    /// The file could not be read or written.
    #[error("image-info file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not in the documented format.
    #[error(
        "image-info file{where_}: {source} (expected {{\"images\": {{\"<reference>\": {{\"config\": {{…}}, \"passwd\": \"…\" or null, \"group\": \"…\" or null}}}}}})",
        where_ = path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default()
    )]
    Format {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// One image's config JSON does not have the OCI image config shape.
    #[error("image \"{reference}\": invalid image config: {reason}")]
    InvalidConfig {
        /// The image reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The image is neither in the file nor built in.
    #[error(
        "image \"{reference}\" is not in the image-info file; fetch it with `{PULL_COMMAND}` (the files or directories of your Kubernetes YAML)"
    )]
    Missing {
        /// The image reference, as written in the YAML.
        reference: String,
    },
}

/// The fields of an image config (`config.config` of the OCI image config) the generator uses.
///
/// Field names are those of the OCI/Docker image config, so a value serializes to the same JSON
/// that a registry serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `User`: `uid`, `name`, `uid:gid` or `name:group`; empty or absent means root.
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `Env`: `NAME=value` entries.
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `Entrypoint`.
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `WorkingDir`; empty means `/`.
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    /// `Volumes`: paths that get an anonymous volume (the values are empty objects).
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
}

impl ImageConfig {
    /// The config of the Kubernetes pause image 3.6 (`registry.k8s.io/pause:3.6` and its mirrors
    /// such as `mcr.microsoft.com/oss/kubernetes/pause:3.6`).
    pub fn kubernetes_pause() -> Self {
        Self {
            user: Some("65535:65535".to_owned()),
            env: Some(vec![DEFAULT_PATH_ENV.to_owned()]),
            entrypoint: Some(vec!["/pause".to_owned()]),
            cmd: None,
            working_dir: Some("/".to_owned()),
            volumes: None,
        }
    }
}

/// containerd's default `PATH` for images without `Env`.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the generator knows about one image.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    raw_config: Box<RawValue>,
    config: ImageConfig,
    passwd: Option<String>,
    group: Option<String>,
}

impl ImageEntry {
    /// Builds an entry from the image's config JSON (verbatim) and its passwd/group texts.
    pub fn new(
        reference: &str,
        config_json: &str,
        passwd: Option<String>,
        group: Option<String>,
    ) -> Result<Self, ImageInfoError> {
        let raw_config = RawValue::from_string(config_json.to_owned()).map_err(|e| {
            ImageInfoError::InvalidConfig {
                reference: reference.to_owned(),
                reason: e.to_string(),
            }
        })?;
        Self::from_raw(reference, raw_config, passwd, group)
    }

    fn from_raw(
        reference: &str,
        raw_config: Box<RawValue>,
        passwd: Option<String>,
        group: Option<String>,
    ) -> Result<Self, ImageInfoError> {
        let config = parse_config(reference, &raw_config)?;
        Ok(Self {
            raw_config,
            config,
            passwd,
            group,
        })
    }

    /// A built-in image: the config, no passwd or group.
    pub fn builtin(config: ImageConfig) -> Self {
        Self {
            raw_config: builtin_raw_config(&config),
            config,
            passwd: None,
            group: None,
        }
    }

    /// The fields of `config.config` that the generator uses.
    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// The image config JSON exactly as it was read.
    pub fn raw_config(&self) -> &str {
        self.raw_config.get()
    }

    /// The image's `/etc/passwd`, if it has one.
    pub fn passwd(&self) -> Option<&str> {
        self.passwd.as_deref()
    }

    /// The image's `/etc/group`, if it has one.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
}

/// The top level of an image config: only `config` matters, everything else is kept verbatim.
#[derive(Deserialize)]
struct ConfigTop {
    #[serde(default)]
    config: Option<ImageConfig>,
}

fn parse_config(reference: &str, raw: &RawValue) -> Result<ImageConfig, ImageInfoError> {
    let invalid = |reason: String| ImageInfoError::InvalidConfig {
        reference: reference.to_owned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(raw.get()).map_err(|e| invalid(e.to_string()))?;
    if !value.is_object() {
        return Err(invalid("expected a JSON object".to_owned()));
    }
    let top: ConfigTop = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
    Ok(top.config.unwrap_or_default())
}

/// Image information by reference: the entries of an image-info file plus built-in images.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    entries: BTreeMap<String, ImageEntry>,
    builtins: BTreeMap<String, ImageEntry>,
}

impl ImageInfo {
    /// An empty set (no file entries, no built-in images).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses an image-info file. Unknown keys and duplicate references are errors.
    pub fn from_json(text: &str) -> Result<Self, ImageInfoError> {
        Self::parse(text, None)
    }

    /// Reads an image-info file.
    pub fn read(path: &Path) -> Result<Self, ImageInfoError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImageInfoError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, ImageInfoError> {
        let file: FileIn = serde_json::from_str(text).map_err(|source| ImageInfoError::Format {
            path: path.map(Path::to_owned),
            source,
        })?;
        let mut entries = BTreeMap::new();
        for (reference, entry) in file.images.0 {
            let parsed = ImageEntry::from_raw(&reference, entry.config, entry.passwd, entry.group)?;
            entries.insert(reference, parsed);
        }
        Ok(Self {
            entries,
            builtins: BTreeMap::new(),
        })
    }

    /// Registers a built-in image (no passwd/group): used when the file has no entry for it.
    pub fn with_builtin(mut self, reference: impl Into<String>, config: ImageConfig) -> Self {
        self.add_builtin(reference, config);
        self
    }

    /// Registers a built-in image in place (see [`Self::with_builtin`]).
    pub fn add_builtin(&mut self, reference: impl Into<String>, config: ImageConfig) {
        self.builtins
            .insert(reference.into(), ImageEntry::builtin(config));
    }

    /// Adds or replaces a file entry (what `nunki images pull` does for each image).
    pub fn insert(&mut self, reference: impl Into<String>, entry: ImageEntry) {
        self.entries.insert(reference.into(), entry);
    }

    /// The entry for `reference` exactly as written in the YAML: the file's entry, otherwise a
    /// built-in one.
    pub fn get(&self, reference: &str) -> Result<&ImageEntry, ImageInfoError> {
        self.entries
            .get(reference)
            .or_else(|| self.builtins.get(reference))
            .ok_or_else(|| ImageInfoError::Missing {
                reference: reference.to_owned(),
            })
    }

    /// Whether `reference` has a file entry or is built in.
    pub fn contains(&self, reference: &str) -> bool {
        self.entries.contains_key(reference) || self.builtins.contains_key(reference)
    }

    /// The references of the file entries, sorted.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Number of file entries (built-in images not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no file entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file entries in the documented format (pretty JSON, sorted by reference, newline at
    /// the end). Built-in images are not written.
    pub fn to_json(&self) -> String {
        let out = FileOut {
            images: self
                .entries
                .iter()
                .map(|(reference, entry)| {
                    (
                        reference.as_str(),
                        EntryOut {
                            config: &entry.raw_config,
                            passwd: entry.passwd.as_deref(),
                            group: entry.group.as_deref(),
                        },
                    )
                })
                .collect(),
        };
        // Serializing borrowed strings and raw JSON into a String cannot fail.
        let mut text = serde_json::to_string_pretty(&out).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the file entries to `path` (see [`Self::to_json`]).
    pub fn write(&self, path: &Path) -> Result<(), ImageInfoError> {
        std::fs::write(path, self.to_json()).map_err(|source| ImageInfoError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

fn builtin_raw_config(config: &ImageConfig) -> Box<RawValue> {
    #[derive(Serialize)]
    struct Top<'a> {
        config: &'a ImageConfig,
    }
    // Serializing an ImageConfig cannot fail; `null` would only stand in for the impossible case.
    serde_json::value::to_raw_value(&Top { config }).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    images: UniqueMap,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryIn {
    config: Box<RawValue>,
    #[serde(default)]
    passwd: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

/// A JSON object of entries that refuses a reference given twice.
struct UniqueMap(BTreeMap<String, EntryIn>);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor;
        impl<'de> Visitor<'de> for UniqueVisitor {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object from image reference to image entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(reference) = map.next_key::<String>()? {
                    if out.contains_key(&reference) {
                        return Err(de::Error::custom(format!(
                            "image \"{reference}\" is listed twice"
                        )));
                    }
                    let entry: EntryIn = map.next_value()?;
                    out.insert(reference, entry);
                }
                Ok(UniqueMap(out))
            }
        }
        deserializer.deserialize_map(UniqueVisitor)
    }
}

#[derive(Serialize)]
struct FileOut<'a> {
    images: BTreeMap<&'a str, EntryOut<'a>>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    config: &'a RawValue,
    passwd: Option<&'a str>,
    group: Option<&'a str>,
}

/// Whether an image reference is pinned by digest (`…@<algorithm>:<hex>`), e.g.
/// `docker.io/library/nginx@sha256:…`. A tag that merely looks like a digest
/// (`redis:sha256-…`) does not count.
pub fn reference_has_digest(reference: &str) -> bool {
    let Some((_, digest)) = reference.rsplit_once('@') else {
        return false;
    };
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !algorithm_ok {
        return false;
    }
    let is_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match algorithm {
        "sha256" => encoded.len() == 64 && is_hex(encoded),
        "sha512" => encoded.len() == 128 && is_hex(encoded),
        _ => {
            encoded.len() >= 32
                && encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    const PINNED: &str = "docker.io/library/nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn sample() -> String {
        format!(
            r#"{{"images": {{"{PINNED}": {{"config": {{"architecture":"amd64","os":"linux","config":{{"User":"101","Env":["PATH=/bin","NGINX_VERSION=1.27"],"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],"WorkingDir":"","Volumes":{{"/cache":{{}}}},"StopSignal":"SIGQUIT"}},"rootfs":{{"type":"layers","diff_ids":["sha256:aa"]}}}}, "passwd": "root:x:0:0::/root:/bin/sh\nnginx:x:101:101::/:/sbin/nologin\n", "group": null}}}}}}"#
        )
    }

    #[test]
    fn parses_the_fields_the_generator_uses() {
        let info = ImageInfo::from_json(&sample()).unwrap();
        let entry = info.get(PINNED).unwrap();
        let config = entry.config();
        assert_eq!(config.user.as_deref(), Some("101"));
        assert_eq!(
            config.env.as_deref(),
            Some(&["PATH=/bin".to_owned(), "NGINX_VERSION=1.27".to_owned()][..])
        );
        assert_eq!(
            config.entrypoint.as_deref(),
            Some(&["/docker-entrypoint.sh".to_owned()][..])
        );
        assert_eq!(config.cmd.as_ref().map(Vec::len), Some(3));
        assert_eq!(config.working_dir.as_deref(), Some(""));
        assert!(config.volumes.as_ref().unwrap().contains_key("/cache"));
        assert!(entry.passwd().unwrap().contains("nginx:x:101"));
        assert_eq!(entry.group(), None);
    }

    #[test]
    fn round_trip_keeps_the_config_verbatim() {
        let info = ImageInfo::from_json(&sample()).unwrap();
        let written = info.to_json();
        // Fields the generator does not use (StopSignal, rootfs) survive byte for byte.
        assert!(written.contains(r#""StopSignal":"SIGQUIT""#));
        assert!(written.contains(r#""rootfs":{"type":"layers","diff_ids":["sha256:aa"]}"#));
        let again = ImageInfo::from_json(&written).unwrap();
        assert_eq!(again.to_json(), written);
        assert_eq!(
            again.get(PINNED).unwrap().raw_config(),
            info.get(PINNED).unwrap().raw_config()
        );
    }

    #[test]
    fn write_and_read_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.json");
        let info = ImageInfo::from_json(&sample()).unwrap();
        info.write(&path).unwrap();
        let read = ImageInfo::read(&path).unwrap();
        assert_eq!(read.references().collect::<Vec<_>>(), vec![PINNED]);
    }

    #[test]
    fn unknown_top_level_key_is_an_error() {
        let text = r#"{"version": 1, "images": {}}"#;
        let err = ImageInfo::from_json(text).unwrap_err().to_string();
        assert!(
            err.starts_with("image-info file: unknown field `version`"),
            "{err}"
        );
        assert!(err.ends_with(r#"(expected {"images": {"<reference>": {"config": {…}, "passwd": "…" or null, "group": "…" or null}}})"#), "{err}");
    }

    #[test]
    fn unknown_entry_key_and_missing_config_are_errors() {
        let err = ImageInfo::from_json(r#"{"images": {"a": {"config": {}, "diff_ids": []}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `diff_ids`"), "{err}");
        let err = ImageInfo::from_json(r#"{"images": {"a": {"passwd": null}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `config`"), "{err}");
    }

    #[test]
    fn duplicate_reference_is_an_error() {
        let text = r#"{"images": {"a": {"config": {}}, "a": {"config": {}}}}"#;
        let err = ImageInfo::from_json(text).unwrap_err().to_string();
        assert!(err.contains("\"a\" is listed twice"), "{err}");
    }

    #[test]
    fn wrongly_typed_config_field_names_the_image() {
        let text = r#"{"images": {"busybox": {"config": {"config": {"Cmd": "sh"}}}}}"#;
        let err = ImageInfo::from_json(text).unwrap_err().to_string();
        assert!(
            err.starts_with("image \"busybox\": invalid image config"),
            "{err}"
        );
        let text = r#"{"images": {"busybox": {"config": []}}}"#;
        let err = ImageInfo::from_json(text).unwrap_err().to_string();
        assert!(err.contains("expected a JSON object"), "{err}");
    }

    #[test]
    fn null_or_absent_inner_config_is_empty() {
        let info = ImageInfo::from_json(
            r#"{"images": {"a": {"config": {"config": null}}, "b": {"config": {}}}}"#,
        )
        .unwrap();
        assert_eq!(info.get("a").unwrap().config(), &ImageConfig::default());
        assert_eq!(info.get("b").unwrap().config(), &ImageConfig::default());
    }

    #[test]
    fn missing_image_names_the_image_and_the_pull_command() {
        let info = ImageInfo::new();
        let err = info.get("quay.io/x/y:1").unwrap_err().to_string();
        assert!(err.contains("\"quay.io/x/y:1\""), "{err}");
        assert!(err.contains("nunki images pull"), "{err}");
    }

    #[test]
    fn lookup_is_by_reference_as_written() {
        let info = ImageInfo::from_json(r#"{"images": {"nginx": {"config": {}}}}"#).unwrap();
        assert!(info.get("nginx").is_ok());
        assert!(info.get("docker.io/library/nginx").is_err());
        assert!(info.get("nginx:latest").is_err());
    }

    #[test]
    fn builtins_need_no_file_entry_and_file_entries_take_precedence() {
        let mut info =
            ImageInfo::from_json(r#"{"images": {"pause": {"config": {"config": {"User": "0"}}}}}"#)
                .unwrap()
                .with_builtin("pause", ImageConfig::kubernetes_pause())
                .with_builtin("ghcr.io/nunki/initializer:1", ImageConfig::default());
        assert_eq!(
            info.get("pause").unwrap().config().user.as_deref(),
            Some("0")
        );
        assert!(info.get("ghcr.io/nunki/initializer:1").is_ok());
        // Built-in images are not written to the file.
        assert!(!info.to_json().contains("initializer"));
        info.insert(
            "x",
            ImageEntry::new("x", r#"{"config":{"Cmd":["a"]}}"#, None, None).unwrap(),
        );
        assert_eq!(info.len(), 2);
        let builtin = ImageInfo::new().with_builtin("p", ImageConfig::kubernetes_pause());
        let entry = builtin.get("p").unwrap();
        assert_eq!(entry.config(), &ImageConfig::kubernetes_pause());
        assert!(entry.raw_config().contains(r#""Entrypoint":["/pause"]"#));
        assert!(builtin.is_empty());
    }

    #[test]
    fn digest_detection() {
        assert!(reference_has_digest(PINNED));
        assert!(reference_has_digest(
            "ghcr.io/burgerdev/weird-images/gid:latest@sha256:bdbb485bb9e3baf381a2957b9369b6051c6113097a5f8dcee27faff17624a2c0"
        ));
        assert!(!reference_has_digest("nginx"));
        assert!(!reference_has_digest("nginx:1.27"));
        assert!(!reference_has_digest(
            "quay.io/kata-containers/test-images/opstree/redis:sha256-2642c7b07713df6897fa88cbe6db85170690cf3650018ceb2ab16cfa0b4f8d48"
        ));
        assert!(!reference_has_digest("nginx@sha256:abc"));
        assert!(!reference_has_digest(
            "nginx@sha256:ZZ00000000000000000000000000000000000000000000000000000000000000"
        ));
        assert!(!reference_has_digest("nginx@:0000"));
        assert!(reference_has_digest(
            "example.com/x@sha512:00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        ));
        assert!(reference_has_digest(
            "example.com/x@multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
        ));
    }
}
