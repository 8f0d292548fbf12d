//! Image configs as the node's container runtime knows them.
//!
//! Read from Nunki's image-info file (`images.json`), in its documented form:
//!
//! ```json
//! {"images": {"<reference as written in the YAML>": {
//!     "config": <the image's OCI config JSON, as the registry serves it>,
//!     "passwd": "<the image's /etc/passwd, or null>",
//!     "group":  "<the image's /etc/group, or null>"}}}
//! ```
//!
//! This parser is the agent's own (it does not share code with the policy generator). The pause
//! image that containerd runs as the sandbox container is built in.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::AgentError;

/// The `PATH` that containerd puts into every container (`oci.WithDefaultPathEnv`).
pub(crate) const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the runtime reads from one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `config.User` (`""`, `uid`, `name`, `uid:gid`, `name:group`, ...).
    pub user: String,
    /// `config.Env`.
    pub env: Vec<String>,
    /// `config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
    /// `config.WorkingDir`.
    pub working_dir: String,
    /// The keys of `config.Volumes`, sorted.
    pub volumes: Vec<String>,
    /// The image's `/etc/passwd`, if it has one.
    pub passwd: Option<String>,
    /// The image's `/etc/group`, if it has one.
    pub group: Option<String>,
}

impl ImageConfig {
    /// The config of the pause image (`registry.k8s.io/pause:3.x`): `/pause` as user
    /// 65535:65535, no passwd or group file.
    pub fn pause() -> Self {
        Self {
            user: "65535:65535".into(),
            env: vec![DEFAULT_PATH_ENV.into()],
            entrypoint: vec!["/pause".into()],
            cmd: Vec::new(),
            working_dir: "/".into(),
            volumes: Vec::new(),
            passwd: None,
            group: None,
        }
    }
}

/// The image configs the simulated node can run, keyed by the reference as written in the YAML.
#[derive(Debug, Clone, Default)]
pub struct ImageConfigs {
    images: BTreeMap<String, ImageConfig>,
}

#[derive(Deserialize)]
struct FileForm {
    images: BTreeMap<String, EntryForm>,
}

#[derive(Deserialize)]
struct EntryForm {
    config: OciImageConfig,
    #[serde(default)]
    passwd: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

/// The OCI image config document (only what the runtime uses).
#[derive(Deserialize, Default)]
struct OciImageConfig {
    #[serde(default)]
    config: Option<RuntimeConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    volumes: Option<BTreeMap<String, serde_json::Value>>,
}

impl ImageConfigs {
    /// An empty set (only the built-in pause image).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses an image-info document.
    pub fn from_json(text: &str) -> Result<Self, AgentError> {
        let file: FileForm = serde_json::from_str(text).map_err(|e| {
            AgentError::InvalidImageInfo(format!(
                "{e}; expected {{\"images\": {{\"<ref>\": {{\"config\": <OCI image config>, \
                 \"passwd\": <text or null>, \"group\": <text or null>}}}}}}"
            ))
        })?;
        let images = file
            .images
            .into_iter()
            .map(|(reference, entry)| {
                let rc = entry.config.config.unwrap_or_default();
                let config = ImageConfig {
                    user: rc.user.unwrap_or_default(),
                    env: rc.env.unwrap_or_default(),
                    entrypoint: rc.entrypoint.unwrap_or_default(),
                    cmd: rc.cmd.unwrap_or_default(),
                    working_dir: rc.working_dir.unwrap_or_default(),
                    volumes: rc.volumes.unwrap_or_default().into_keys().collect(),
                    passwd: entry.passwd,
                    group: entry.group,
                };
                (reference, config)
            })
            .collect();
        Ok(Self { images })
    }

    /// Reads an image-info file.
    pub fn from_file(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AgentError::InvalidImageInfo(format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_json(&text)
            .map_err(|e| AgentError::InvalidImageInfo(format!("{}: {e}", path.display())))
    }

    /// Adds or replaces one image.
    pub fn insert(&mut self, reference: impl Into<String>, config: ImageConfig) {
        self.images.insert(reference.into(), config);
    }

    /// The config for `reference`: the entry written exactly so, or else an entry whose
    /// reference normalizes to the same image (`nginx` = `docker.io/library/nginx:latest`).
    pub fn get(&self, reference: &str) -> Option<&ImageConfig> {
        if let Some(c) = self.images.get(reference) {
            return Some(c);
        }
        let wanted = ImageRef::parse(reference).normalized();
        self.images
            .iter()
            .find(|(k, _)| ImageRef::parse(k).normalized() == wanted)
            .map(|(_, v)| v)
    }

    /// The number of entries (without the built-in pause image).
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

/// An image reference split the way the Docker reference grammar does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub(crate) fn parse(reference: &str) -> Self {
        let (name, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d.to_owned())),
            None => (reference, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name.get(last_slash..).and_then(|tail| tail.rfind(':')) {
            Some(i) => {
                let at = last_slash + i;
                (
                    name.get(..at).unwrap_or(name),
                    name.get(at + 1..).map(str::to_owned),
                )
            }
            None => (name, None),
        };
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        Self {
            domain,
            path,
            tag,
            digest,
        }
    }

    /// The name containerd stores a pulled image under: `domain/path@digest` when the reference
    /// has a digest (a tag next to it is dropped), otherwise `domain/path:tag` (`latest` by
    /// default).
    pub(crate) fn normalized(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}/{}@{d}", self.domain, self.path),
            None => format!(
                "{}/{}:{}",
                self.domain,
                self.path,
                self.tag.as_deref().unwrap_or("latest")
            ),
        }
    }
}

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

pub(crate) fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: (*f.first()?).to_owned(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
            })
        })
        .collect()
}

pub(crate) fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: (*f.first()?).to_owned(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn references_normalize_like_containerd() {
        let n = |r: &str| ImageRef::parse(r).normalized();
        assert_eq!(n("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(n("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(n("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(
            n("registry.k8s.io/pause:3.6@sha256:abc"),
            "registry.k8s.io/pause@sha256:abc"
        );
        assert_eq!(n("localhost:5000/app/web:v1"), "localhost:5000/app/web:v1");
        assert_eq!(n("localhost/web"), "localhost/web:latest");
        assert_eq!(
            n("quay.io/kata-containers/test-images/opstree/redis:sha256-2642"),
            "quay.io/kata-containers/test-images/opstree/redis:sha256-2642"
        );
    }

    #[test]
    fn image_info_is_parsed_and_found_by_normalized_reference() {
        let text = r#"{"images": {"docker.io/library/busybox:latest": {
            "config": {"architecture": "amd64", "config": {"Cmd": ["sh"],
              "Env": ["PATH=/bin"], "Volumes": {"/b": {}, "/a": {}}}},
            "passwd": "root:x:0:0:root:/root:/bin/sh\n", "group": null}}}"#;
        let images = ImageConfigs::from_json(text).unwrap();
        let c = images.get("busybox").expect("normalized lookup");
        assert_eq!(c.cmd, ["sh"]);
        assert_eq!(c.volumes, ["/a", "/b"]);
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.group, None);
        assert!(images.get("busybox:1.36").is_none());
        let err = ImageConfigs::from_json(r#"{"imgs": {}}"#).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
    }

    #[test]
    fn passwd_and_group_files_are_parsed() {
        let p =
            parse_passwd("# c\nroot:x:0:0:root:/root:/bin/sh\nbad\nname:x:2:1::/home:/bin/false\n");
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1],
            PasswdEntry {
                name: "name".into(),
                uid: 2,
                gid: 1
            }
        );
        let g = parse_group("daemon:x:1:\nname:x:2:name, other\n");
        assert_eq!(g[1].members, ["name", "other"]);
        assert!(g[0].members.is_empty());
    }
}
