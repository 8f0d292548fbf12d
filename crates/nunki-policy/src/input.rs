//! What the generator gets from a Kubernetes resource: the pod template and its context.
//!
//! `nunki-kube` builds these from YAML; the policy generator and the simulated Kata agent read
//! them. Kept here (the lower crate) so that both sides share one definition.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;

/// The Kubernetes kinds that carry a pod template and therefore get a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
    Job,
    CronJob,
}

impl WorkloadKind {
    /// The Kubernetes `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::ReplicaSet => "ReplicaSet",
            Self::ReplicationController => "ReplicationController",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
        }
    }

    /// Parses a Kubernetes `kind` string; `None` for kinds without a pod template.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "Pod" => Self::Pod,
            "Deployment" => Self::Deployment,
            "StatefulSet" => Self::StatefulSet,
            "DaemonSet" => Self::DaemonSet,
            "ReplicaSet" => Self::ReplicaSet,
            "ReplicationController" => Self::ReplicationController,
            "Job" => Self::Job,
            "CronJob" => Self::CronJob,
            _ => return None,
        })
    }
}

/// One pod template, as the policy generator sees it.
#[derive(Debug, Clone)]
pub struct PodInput {
    /// The kind of the resource that holds the template.
    pub kind: WorkloadKind,
    /// `metadata.name` of the resource (empty for a Pod that only has `generateName`).
    pub name: String,
    /// `metadata.generateName` of a Pod, if set.
    pub generate_name: Option<String>,
    /// `metadata.namespace` of the resource; `None` means "whatever namespace it is applied to".
    pub namespace: Option<String>,
    /// The pod template's annotations, without the policy annotations themselves.
    pub annotations: BTreeMap<String, String>,
    /// The pod template's labels (read by `env[].valueFrom.fieldRef: metadata.labels['…']`).
    pub labels: BTreeMap<String, String>,
    /// The pod spec (after Nunki's rewrites: Initializer, volume, runtime class).
    pub spec: PodSpec,
}

/// ConfigMaps and Secrets from all input files, for resolving `env` and `envFrom` references.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// `(namespace, name)` → data. A resource without a namespace is stored under `None`.
    pub config_maps: BTreeMap<(Option<String>, String), BTreeMap<String, String>>,
    /// `(namespace, name)` → decoded data (`data` base64-decoded, merged with `stringData`).
    pub secrets: BTreeMap<(Option<String>, String), BTreeMap<String, String>>,
}

impl ConfigSources {
    /// The ConfigMap `name` as seen from a pod in `namespace`: an exact namespace match first,
    /// then one without a namespace (which lands in the pod's namespace when applied together).
    pub fn config_map(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&BTreeMap<String, String>> {
        lookup(&self.config_maps, namespace, name)
    }

    /// The Secret `name` as seen from a pod in `namespace` (same rule as [`Self::config_map`]).
    pub fn secret(&self, namespace: Option<&str>, name: &str) -> Option<&BTreeMap<String, String>> {
        lookup(&self.secrets, namespace, name)
    }
}

fn lookup<'a>(
    map: &'a BTreeMap<(Option<String>, String), BTreeMap<String, String>>,
    namespace: Option<&str>,
    name: &str,
) -> Option<&'a BTreeMap<String, String>> {
    map.get(&(namespace.map(str::to_owned), name.to_owned()))
        .or_else(|| map.get(&(None, name.to_owned())))
}
