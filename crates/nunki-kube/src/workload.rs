//! Per-workload access for the policy generator and the manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nunki_policy::{PodInput, WorkloadKind};

use crate::error::KubeError;
use crate::kinds;
use crate::node::{Mapping, Node};
use crate::resources::{Loc, Resources, template_of};
use crate::rewrite::is_coordinator_template;

/// One workload (a resource with a pod template), as it is when [`Resources::workloads`] was
/// called. Pass it back to [`Resources::set_policy_annotation`] to annotate it.
#[derive(Debug, Clone)]
pub struct WorkloadRef {
    /// Index into `Resources::workloads`, checked against `loc` and the names on use.
    index: usize,
    loc: Loc,
    file: PathBuf,
    kind: WorkloadKind,
    api_version: String,
    name: String,
    generate_name: Option<String>,
    namespace: Option<String>,
    is_coordinator: bool,
    pod_input: PodInput,
}

impl WorkloadRef {
    /// The file the workload was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 0-based index of its document among the file's non-empty documents.
    pub fn document(&self) -> usize {
        self.loc.doc
    }

    /// 0-based index in the `items` of a `List` document, if it came from one.
    pub fn list_item(&self) -> Option<usize> {
        self.loc.item
    }

    /// The resource kind.
    pub fn kind(&self) -> WorkloadKind {
        self.kind
    }

    /// `apiVersion` as written (`v1`, `apps/v1`, `batch/v1`).
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// `metadata.name` (empty for a resource that only has `generateName`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `metadata.generateName`, if set.
    pub fn generate_name(&self) -> Option<&str> {
        self.generate_name.as_deref()
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Whether the pod template is annotated `nunki.edgeless.systems/pod-role: coordinator`
    /// (its manifest entry gets `Role: "coordinator"`, and it gets no Initializer).
    pub fn is_coordinator(&self) -> bool {
        self.is_coordinator
    }

    /// What the policy generator needs: kind, names, the template's annotations without the
    /// two policy annotations, and the typed pod spec of the (rewritten) tree.
    pub fn pod_input(&self) -> PodInput {
        self.pod_input.clone()
    }

    /// [`Self::pod_input`] without the copy.
    pub fn input(&self) -> &PodInput {
        &self.pod_input
    }

    /// The default `WorkloadSecretID`: `<group>/<version>/<kind>/<namespace>/<name>`, with
    /// group `core` for the core API group (`apiVersion: v1`), namespace `default` when none
    /// is set, and `generateName` standing in for an empty name. Examples:
    /// `apps/v1/Deployment/default/web`, `core/v1/Pod/prod/db`, `batch/v1/CronJob/default/backup`.
    pub fn workload_secret_id(&self) -> String {
        let (_, version) = kinds::group_version(&self.api_version);
        let name = match (self.name.as_str(), self.generate_name.as_deref()) {
            ("", Some(g)) => g,
            (n, _) => n,
        };
        format!(
            "{}/{}/{}/{}/{}",
            kinds::group_for_id(&self.api_version),
            version,
            self.kind.as_str(),
            self.namespace.as_deref().unwrap_or("default"),
            name
        )
    }

    /// `Deployment default/web (document 1)`, for messages.
    pub fn describe(&self) -> String {
        crate::resources::describe(
            self.kind.as_str(),
            self.namespace.as_deref(),
            &self.name,
            self.generate_name.as_deref(),
            self.loc.doc,
        )
    }
}

impl Resources {
    /// Every workload, in input order (file, document, `List` item).
    pub fn workloads(&self) -> Vec<WorkloadRef> {
        self.workloads
            .iter()
            .enumerate()
            .map(|(index, wl)| {
                let template = self.node(wl.loc).and_then(|n| template_of(n, wl.kind));
                let is_coordinator = template.is_some_and(is_coordinator_template);
                let annotations = template.map(pod_annotations).unwrap_or_default();
                let labels = template
                    .map(|t| string_entries(t, "labels"))
                    .unwrap_or_default();
                WorkloadRef {
                    index,
                    loc: wl.loc,
                    file: self
                        .files
                        .get(wl.loc.file)
                        .map(|f| f.path.clone())
                        .unwrap_or_default(),
                    kind: wl.kind,
                    api_version: wl.api_version.clone(),
                    name: wl.name.clone(),
                    generate_name: wl.generate_name.clone(),
                    namespace: wl.namespace.clone(),
                    is_coordinator,
                    pod_input: PodInput {
                        kind: wl.kind,
                        name: wl.name.clone(),
                        generate_name: wl.generate_name.clone(),
                        namespace: wl.namespace.clone(),
                        annotations,
                        labels,
                        spec: wl.spec.clone(),
                    },
                }
            })
            .collect()
    }

    /// The policy annotations ([`crate::INITDATA_ANNOTATION`], [`crate::POLICY_ANNOTATION`])
    /// on the workload's pod template as they are in the tree now (empty when it has none).
    pub fn policy_annotations(&self, workload: &WorkloadRef) -> BTreeMap<String, String> {
        let annotations = self
            .node(workload.loc)
            .and_then(|n| n.get_path(kinds::template_keys(workload.kind)))
            .and_then(|t| t.get_path(&["metadata", "annotations"]))
            .and_then(Node::as_map);
        [crate::INITDATA_ANNOTATION, crate::POLICY_ANNOTATION]
            .into_iter()
            .filter_map(|key| {
                let value = annotations?.get(key)?.as_str()?;
                Some((key.to_owned(), value.to_owned()))
            })
            .collect()
    }

    /// Sets the policy annotation `key` (one of [`crate::INITDATA_ANNOTATION`] and
    /// [`crate::POLICY_ANNOTATION`]) to `value` on the workload's pod template, creating
    /// `metadata` and `annotations` as needed, and removes the other policy annotation (a pod
    /// must carry exactly one policy).
    pub fn set_policy_annotation(
        &mut self,
        workload: &WorkloadRef,
        key: &str,
        value: impl Into<String>,
    ) -> Result<(), KubeError> {
        let other = match key {
            crate::INITDATA_ANNOTATION => crate::POLICY_ANNOTATION,
            crate::POLICY_ANNOTATION => crate::INITDATA_ANNOTATION,
            _ => {
                return Err(KubeError::NotAPolicyAnnotation {
                    key: key.to_owned(),
                });
            }
        };
        let same_file = self
            .files
            .get(workload.loc.file)
            .is_some_and(|f| f.path == workload.file);
        let known = same_file
            && self.workloads.get(workload.index).is_some_and(|wl| {
                wl.loc == workload.loc
                    && wl.kind == workload.kind
                    && wl.name == workload.name
                    && wl.namespace == workload.namespace
            });
        let template = if known {
            self.node_mut(workload.loc)
                .and_then(|n| n.get_path_mut(kinds::template_keys(workload.kind)))
                .and_then(Node::as_map_mut)
        } else {
            None
        };
        let Some(template) = template else {
            return Err(KubeError::UnknownWorkload(workload.describe()));
        };
        // A template without metadata gets it first, where people write it.
        if matches!(template.get("metadata"), None | Some(Node::Null)) {
            template.insert_at(0, "metadata", Node::Map(Mapping::new()));
        }
        let annotations = child_map(template, "metadata")
            .and_then(|meta| child_map(meta, "annotations"))
            .ok_or_else(|| KubeError::UnknownWorkload(workload.describe()))?;
        annotations.insert(key, Node::String(value.into()));
        annotations.remove(other);
        Ok(())
    }
}

/// The mapping under `key`, created (or replacing a null) if absent. `None` if it holds
/// something else, which [`Resources::read`] has already rejected for metadata/annotations.
fn child_map<'a>(map: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
    let slot = map.entry_or_insert_with(key, || Node::Map(Mapping::new()))?;
    if matches!(slot, Node::Null) {
        *slot = Node::Map(Mapping::new());
    }
    slot.as_map_mut()
}

/// The template's string annotations without the policy annotations.
fn pod_annotations(template: &Mapping) -> BTreeMap<String, String> {
    let mut annotations = string_entries(template, "annotations");
    annotations.remove(crate::INITDATA_ANNOTATION);
    annotations.remove(crate::POLICY_ANNOTATION);
    annotations
}

/// `metadata.<field>` of a template as a string map ([`Resources::read`] rejected non-strings).
fn string_entries(template: &Mapping, field: &str) -> BTreeMap<String, String> {
    let Some(Node::Map(map)) = template.get("metadata").and_then(|m| m.get(field)) else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.as_str()?.to_owned())))
        .collect()
}
