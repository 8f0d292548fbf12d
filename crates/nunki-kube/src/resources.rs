//! [`Resources`]: every document of every input file, the workloads among them, and the
//! ConfigMaps and Secrets they may reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use k8s_openapi::api::core::v1::PodSpec;
use nunki_policy::{ConfigSources, WorkloadKind};

use crate::error::{Diagnostic, Diagnostics, KubeError};
use crate::kinds::{self, Class};
use crate::node::{Mapping, Node};
use crate::read;
use crate::typed::{self, Severity, push_key};

/// All resources read from the input files, in input order.
#[derive(Debug)]
pub struct Resources {
    pub(crate) files: Vec<SourceFile>,
    pub(crate) workloads: Vec<Workload>,
    pub(crate) config: ConfigSources,
    pub(crate) warnings: Vec<Diagnostic>,
}

/// One input file.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub path: PathBuf,
    /// The file as read, to leave files alone whose content would not change.
    pub text: String,
    /// The documents as read (for change detection).
    pub original: Vec<Node>,
    /// The documents as they are now.
    pub docs: Vec<Node>,
}

/// Where a resource is: file, document, and item of a `List` document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Loc {
    pub file: usize,
    pub doc: usize,
    pub item: Option<usize>,
}

/// A workload as we keep it between calls.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    pub loc: Loc,
    pub kind: WorkloadKind,
    pub api_version: String,
    pub name: String,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
    /// The typed pod spec of the current tree.
    pub spec: PodSpec,
}

impl Workload {
    /// `Deployment default/web`, `Pod web`, `Pod generateName=dummy`.
    pub(crate) fn describe(&self, doc: usize) -> String {
        describe(
            self.kind.as_str(),
            self.namespace.as_deref(),
            &self.name,
            self.generate_name.as_deref(),
            doc,
        )
    }
}

pub(crate) fn describe(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    generate_name: Option<&str>,
    doc: usize,
) -> String {
    let name = match (name, generate_name) {
        ("", Some(g)) => format!("generateName={g}"),
        (n, _) => n.to_owned(),
    };
    let kind = if kind.is_empty() { "resource" } else { kind };
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name} (document {})", doc + 1),
        None => format!("{kind} {name} (document {})", doc + 1),
    }
}

/// The YAML path prefix of a resource inside its document (`""` or `items[3]`).
pub(crate) fn resource_prefix(loc: Loc) -> String {
    match loc.item {
        Some(i) => format!("items[{i}]"),
        None => String::new(),
    }
}

/// Joins a prefix and a chain of keys into a YAML path.
pub(crate) fn join_path(prefix: &str, keys: &[&str]) -> String {
    let mut out = prefix.to_owned();
    for k in keys {
        push_key(&mut out, k);
    }
    out
}

impl Resources {
    /// Reads YAML files and directories.
    ///
    /// A directory contributes its `*.yaml` and `*.yml` files, sorted by name; subdirectories
    /// are not searched (like `kubectl apply -f DIR`). Files given by name are read whatever
    /// their extension. Each file may hold several documents; empty documents are skipped and
    /// `List` items are handled one by one.
    ///
    /// Fails on unreadable files, invalid YAML (naming file, line and column), and invalid
    /// workloads (all problems at once, each with file, resource and YAML path). Problems that
    /// do not affect what a container runs are [`Self::warnings`].
    pub fn read(paths: &[PathBuf]) -> Result<Resources, KubeError> {
        let files = read::input_files(paths)?;
        let mut texts = Vec::with_capacity(files.len());
        let mut total: u64 = 0;
        for path in files {
            let text = read::read_file(&path)?;
            total = total.saturating_add(text.len() as u64);
            if total > read::MAX_TOTAL_BYTES {
                return Err(KubeError::TooLarge {
                    path,
                    size: total,
                    limit: read::MAX_TOTAL_BYTES,
                });
            }
            texts.push((path, text));
        }
        Self::from_texts(texts)
    }

    /// Parses YAML text as if read from `path` (which is only used in messages and by
    /// [`Self::write_in_place`]).
    pub fn from_str(path: impl Into<PathBuf>, text: &str) -> Result<Resources, KubeError> {
        let path = path.into();
        if text.len() as u64 > read::MAX_FILE_BYTES {
            return Err(KubeError::TooLarge {
                path,
                size: text.len() as u64,
                limit: read::MAX_FILE_BYTES,
            });
        }
        Self::from_texts(vec![(path, text.to_owned())])
    }

    fn from_texts(texts: Vec<(PathBuf, String)>) -> Result<Resources, KubeError> {
        let mut res = Resources {
            files: Vec::with_capacity(texts.len()),
            workloads: Vec::new(),
            config: ConfigSources::default(),
            warnings: Vec::new(),
        };
        let mut errors = Vec::new();
        for (path, text) in texts {
            let docs = read::parse_documents(&path, &text)?;
            let file = res.files.len();
            for (doc, node) in docs.iter().enumerate() {
                res.scan_document(file, &path, doc, node, &mut errors);
            }
            res.files.push(SourceFile {
                path,
                text,
                original: docs.clone(),
                docs,
            });
        }
        if errors.is_empty() {
            Ok(res)
        } else {
            Err(KubeError::Invalid(Diagnostics(errors)))
        }
    }

    fn scan_document(
        &mut self,
        file: usize,
        path: &Path,
        doc: usize,
        node: &Node,
        errors: &mut Vec<Diagnostic>,
    ) {
        let Some(map) = node.as_map() else {
            errors.push(Diagnostic {
                file: path.to_owned(),
                resource: format!("document {}", doc + 1),
                path: String::new(),
                message: format!(
                    "a Kubernetes resource must be a mapping with apiVersion and kind, not {}",
                    node.type_name()
                ),
            });
            return;
        };
        let kind = map.get("kind").and_then(Node::as_str).unwrap_or("");
        let api_version = map.get("apiVersion").and_then(Node::as_str).unwrap_or("");
        let items = map.get("items").and_then(Node::as_seq);
        if kinds::classify(api_version, kind, items.is_some()) == Class::List {
            for (i, item) in items.unwrap_or(&[]).iter().enumerate() {
                let loc = Loc {
                    file,
                    doc,
                    item: Some(i),
                };
                self.scan_resource(loc, path, item, errors);
            }
        } else {
            let loc = Loc {
                file,
                doc,
                item: None,
            };
            self.scan_resource(loc, path, node, errors);
        }
    }

    fn scan_resource(&mut self, loc: Loc, path: &Path, node: &Node, errors: &mut Vec<Diagnostic>) {
        let prefix = resource_prefix(loc);
        let diag = |resource: &str, p: String, message: String| Diagnostic {
            file: path.to_owned(),
            resource: resource.to_owned(),
            path: p,
            message,
        };
        let Some(map) = node.as_map() else {
            errors.push(diag(
                &format!("document {}", loc.doc + 1),
                prefix,
                format!(
                    "a List item must be a resource mapping, not {}",
                    node.type_name()
                ),
            ));
            return;
        };
        let kind = map.get("kind").and_then(Node::as_str).unwrap_or("");
        let api_version = map.get("apiVersion").and_then(Node::as_str).unwrap_or("");
        let meta = match read_meta(map, &prefix) {
            Ok(m) => m,
            Err((p, message)) => {
                errors.push(diag(&describe(kind, None, "", None, loc.doc), p, message));
                return;
            }
        };
        let resource = describe(
            kind,
            meta.namespace.as_deref(),
            &meta.name,
            meta.generate_name.as_deref(),
            loc.doc,
        );
        if kind.is_empty() || api_version.is_empty() {
            self.warnings.push(diag(
                &resource,
                prefix,
                "no apiVersion or kind: not a Kubernetes resource, passed through unchanged"
                    .to_owned(),
            ));
            return;
        }
        let has_items = map.get("items").is_some_and(|i| i.as_seq().is_some());
        match kinds::classify(api_version, kind, has_items) {
            Class::Workload(w) => {
                if let Some(wl) =
                    self.scan_workload(loc, path, map, w, api_version, meta, &resource, errors)
                {
                    self.workloads.push(wl);
                }
            }
            Class::ConfigMap => {
                if let Some(data) = config_map_data(map, &prefix, path, &resource, errors) {
                    let previous = self
                        .config
                        .config_maps
                        .insert((meta.namespace, meta.name), data);
                    if previous.is_some() {
                        self.warnings.push(diag(
                            &resource,
                            prefix,
                            "a ConfigMap of this name and namespace came earlier; this one is used"
                                .to_owned(),
                        ));
                    }
                }
            }
            Class::Secret => match secret_data(map, &prefix, path, &resource, &mut self.warnings) {
                Ok(data) => {
                    let previous = self
                        .config
                        .secrets
                        .insert((meta.namespace, meta.name), data);
                    if previous.is_some() {
                        self.warnings.push(diag(
                            &resource,
                            prefix,
                            "a Secret of this name and namespace came earlier; this one is used"
                                .to_owned(),
                        ));
                    }
                }
                Err(d) => errors.push(d),
            },
            Class::List => self.warnings.push(diag(
                &resource,
                prefix,
                "a List inside a List is passed through unchanged; its workloads get no policy"
                    .to_owned(),
            )),
            Class::Other => {
                if WorkloadKind::from_kind(kind).is_some() {
                    self.warnings.push(diag(
                        &resource,
                        prefix,
                        format!(
                            "apiVersion {api_version} is not a Kubernetes workload API; passed through without a policy"
                        ),
                    ));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn scan_workload(
        &mut self,
        loc: Loc,
        path: &Path,
        map: &Mapping,
        kind: WorkloadKind,
        api_version: &str,
        meta: Meta,
        resource: &str,
        errors: &mut Vec<Diagnostic>,
    ) -> Option<Workload> {
        let prefix = resource_prefix(loc);
        let diag = |p: String, message: String| Diagnostic {
            file: path.to_owned(),
            resource: resource.to_owned(),
            path: p,
            message,
        };
        if meta.name.is_empty() && meta.generate_name.is_none() {
            errors.push(diag(
                join_path(&prefix, &["metadata", "name"]),
                "required: a workload needs metadata.name (or metadata.generateName)".to_owned(),
            ));
            return None;
        }
        let tkeys = kinds::template_keys(kind);
        let template = match lookup(map, tkeys) {
            _ if tkeys.is_empty() => map,
            Some(Node::Map(t)) => t,
            Some(other) => {
                errors.push(diag(
                    join_path(&prefix, tkeys),
                    format!(
                        "must be a mapping (a pod template), not {}",
                        other.type_name()
                    ),
                ));
                return None;
            }
            None => {
                errors.push(diag(
                    join_path(&prefix, tkeys),
                    "required: the pod template is missing".to_owned(),
                ));
                return None;
            }
        };
        let template_prefix = join_path(&prefix, tkeys);
        if let Err((p, m)) = check_template_metadata(template, &template_prefix) {
            errors.push(diag(p, m));
            return None;
        }
        if kind != WorkloadKind::Pod
            && annotation(map, crate::POD_ROLE_ANNOTATION).is_some()
            && annotation(template, crate::POD_ROLE_ANNOTATION).is_none()
        {
            self.warnings.push(diag(
                join_path(
                    &prefix,
                    &["metadata", "annotations", crate::POD_ROLE_ANNOTATION],
                ),
                format!(
                    "the pod role is read from the pod template; move this annotation to {}",
                    join_path(&template_prefix, &["metadata", "annotations"])
                ),
            ));
        }
        let spec_prefix = join_path(&template_prefix, &["spec"]);
        let spec = match template.get("spec") {
            Some(spec @ Node::Map(_)) => spec,
            Some(other) => {
                errors.push(diag(
                    spec_prefix,
                    format!("must be a mapping (a pod spec), not {}", other.type_name()),
                ));
                return None;
            }
            None => {
                errors.push(diag(
                    spec_prefix,
                    "required: the pod spec is missing".to_owned(),
                ));
                return None;
            }
        };
        let (typed, findings) = match typed::convert_pod_spec(spec, &spec_prefix) {
            Ok(r) => r,
            Err(f) => {
                errors.push(diag(f.path, f.message));
                return None;
            }
        };
        let mut failed = false;
        for f in findings {
            match f.severity {
                Severity::Error => {
                    failed = true;
                    errors.push(diag(f.path, f.message));
                }
                Severity::Warning => self.warnings.push(diag(f.path, f.message)),
            }
        }
        if typed.containers.is_empty() {
            failed = true;
            errors.push(diag(
                join_path(&spec_prefix, &["containers"]),
                "required: a pod needs at least one container".to_owned(),
            ));
        }
        for (field, list) in [
            (
                "initContainers",
                typed.init_containers.as_deref().unwrap_or(&[]),
            ),
            ("containers", &typed.containers[..]),
        ] {
            for (i, c) in list.iter().enumerate() {
                if c.name.is_empty() {
                    failed = true;
                    errors.push(diag(
                        format!("{}[{i}].name", join_path(&spec_prefix, &[field])),
                        "required: every container needs a name".to_owned(),
                    ));
                }
            }
        }
        if failed {
            return None;
        }
        let mut typed = typed;
        if kind == WorkloadKind::StatefulSet {
            add_claim_volumes(map, &mut typed);
        }
        Some(Workload {
            loc,
            kind,
            api_version: api_version.to_owned(),
            name: meta.name,
            generate_name: meta.generate_name,
            namespace: meta.namespace,
            spec: typed,
        })
    }

    /// Non-fatal findings: unknown fields outside what a container runs, resources passed
    /// through for a reason worth knowing, undecodable Secret values.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// ConfigMaps and Secrets of all input files.
    pub fn config_sources(&self) -> &ConfigSources {
        &self.config
    }

    /// The input files, in reading order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// The resource node at `loc` in the current tree.
    pub(crate) fn node(&self, loc: Loc) -> Option<&Node> {
        let doc = self.files.get(loc.file)?.docs.get(loc.doc)?;
        match loc.item {
            None => Some(doc),
            Some(i) => doc.get("items")?.as_seq()?.get(i),
        }
    }

    /// The resource node at `loc` in the current tree, mutable.
    pub(crate) fn node_mut(&mut self, loc: Loc) -> Option<&mut Node> {
        let doc = self.files.get_mut(loc.file)?.docs.get_mut(loc.doc)?;
        match loc.item {
            None => Some(doc),
            Some(i) => match doc.as_map_mut()?.get_mut("items")? {
                Node::Seq(items) => items.get_mut(i),
                _ => None,
            },
        }
    }
}

/// `metadata` fields we use.
#[derive(Debug)]
pub(crate) struct Meta {
    pub name: String,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
}

fn read_meta(map: &Mapping, prefix: &str) -> Result<Meta, (String, String)> {
    let meta = match map.get("metadata") {
        None | Some(Node::Null) => {
            return Ok(Meta {
                name: String::new(),
                generate_name: None,
                namespace: None,
            });
        }
        Some(Node::Map(m)) => m,
        Some(other) => {
            return Err((
                join_path(prefix, &["metadata"]),
                format!("must be a mapping, not {}", other.type_name()),
            ));
        }
    };
    let string = |key: &str| -> Result<Option<String>, (String, String)> {
        match meta.get(key) {
            None | Some(Node::Null) => Ok(None),
            Some(Node::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err((
                join_path(prefix, &["metadata", key]),
                format!("must be a string, not {}; quote it", other.type_name()),
            )),
        }
    };
    Ok(Meta {
        name: string("name")?.unwrap_or_default(),
        generate_name: string("generateName")?.filter(|g| !g.is_empty()),
        namespace: string("namespace")?.filter(|n| !n.is_empty()),
    })
}

/// The pod template's `metadata`, if any, must be a mapping, and its `annotations` and `labels`
/// mappings of strings (Kubernetes rejects anything else, and the policy annotation lives here).
fn check_template_metadata(template: &Mapping, prefix: &str) -> Result<(), (String, String)> {
    let meta = match template.get("metadata") {
        None | Some(Node::Null) => return Ok(()),
        Some(Node::Map(m)) => m,
        Some(other) => {
            return Err((
                join_path(prefix, &["metadata"]),
                format!("must be a mapping, not {}", other.type_name()),
            ));
        }
    };
    for field in ["annotations", "labels"] {
        match meta.get(field) {
            None | Some(Node::Null) => {}
            Some(Node::Map(m)) => {
                for (k, v) in m.iter() {
                    if !matches!(v, Node::String(_)) {
                        return Err((
                            join_path(prefix, &["metadata", field, k]),
                            format!("must be a string, not {}; quote it", v.type_name()),
                        ));
                    }
                }
            }
            Some(other) => {
                return Err((
                    join_path(prefix, &["metadata", field]),
                    format!("must be a mapping of strings, not {}", other.type_name()),
                ));
            }
        }
    }
    Ok(())
}

/// Follows `keys` from `map`.
pub(crate) fn lookup<'a>(map: &'a Mapping, keys: &[&str]) -> Option<&'a Node> {
    let (first, rest) = keys.split_first()?;
    map.get(first)?.get_path(rest)
}

/// The pod template of a workload resource (the resource itself for a Pod).
/// The volumes the StatefulSet controller adds to each pod: one PersistentVolumeClaim volume
/// per `spec.volumeClaimTemplates[]` (named after the template) that the pod spec does not
/// define itself.
fn add_claim_volumes(resource: &Mapping, spec: &mut PodSpec) {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Volume};
    let Some(templates) = resource
        .get("spec")
        .and_then(|s| s.get("volumeClaimTemplates"))
        .and_then(Node::as_seq)
    else {
        return;
    };
    for t in templates {
        let Some(name) = t.get_path(&["metadata", "name"]).and_then(Node::as_str) else {
            continue;
        };
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        if volumes.iter().any(|v| v.name == name) {
            continue;
        }
        volumes.push(Volume {
            name: name.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name.to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
}

pub(crate) fn template_of(resource: &Node, kind: WorkloadKind) -> Option<&Mapping> {
    resource.get_path(kinds::template_keys(kind))?.as_map()
}

/// `metadata.annotations[key]` of a resource or template mapping.
pub(crate) fn annotation<'a>(map: &'a Mapping, key: &str) -> Option<&'a str> {
    map.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

fn config_map_data(
    map: &Mapping,
    prefix: &str,
    path: &Path,
    resource: &str,
    errors: &mut Vec<Diagnostic>,
) -> Option<BTreeMap<String, String>> {
    match string_map(map, "data", prefix) {
        Ok(data) => Some(data.into_iter().collect()),
        Err((p, message)) => {
            errors.push(Diagnostic {
                file: path.to_owned(),
                resource: resource.to_owned(),
                path: p,
                message,
            });
            None
        }
    }
}

/// `data` base64-decoded, then `stringData` on top (as the API server merges them).
fn secret_data(
    map: &Mapping,
    prefix: &str,
    path: &Path,
    resource: &str,
    warnings: &mut Vec<Diagnostic>,
) -> Result<BTreeMap<String, String>, Diagnostic> {
    let diag = |p: String, message: String| Diagnostic {
        file: path.to_owned(),
        resource: resource.to_owned(),
        path: p,
        message,
    };
    let data = string_map(map, "data", prefix).map_err(|(p, m)| diag(p, m))?;
    let string_data = string_map(map, "stringData", prefix).map_err(|(p, m)| diag(p, m))?;
    let mut out = BTreeMap::new();
    for (key, encoded) in data {
        let p = join_path(prefix, &["data", &key]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| {
                diag(
                    p.clone(),
                    format!("not valid base64 ({e}); put plain text under stringData instead"),
                )
            })?;
        match String::from_utf8(bytes) {
            Ok(s) => {
                out.insert(key, s);
            }
            Err(_) => warnings.push(diag(
                p,
                "decodes to binary data, not UTF-8 text; environment variables cannot refer to it"
                    .to_owned(),
            )),
        }
    }
    for (key, value) in string_data {
        out.insert(key, value);
    }
    Ok(out)
}

/// A `map[string]string` field such as ConfigMap `data`.
fn string_map(
    map: &Mapping,
    field: &str,
    prefix: &str,
) -> Result<Vec<(String, String)>, (String, String)> {
    match map.get(field) {
        None | Some(Node::Null) => Ok(Vec::new()),
        Some(Node::Map(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Node::String(s) => Ok((k.to_owned(), s.clone())),
                other => Err((
                    join_path(prefix, &[field, k]),
                    format!("must be a string, not {}; quote it", other.type_name()),
                )),
            })
            .collect(),
        Some(other) => Err((
            join_path(prefix, &[field]),
            format!("must be a mapping of strings, not {}", other.type_name()),
        )),
    }
}
