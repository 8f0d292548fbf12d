//! Offline validation of whole resources: each document (and each `List` item) is read as its
//! typed `k8s_openapi` struct and re-serialised, and every field that does not come back the
//! same is reported with its YAML path: a misspelled field that Kubernetes would drop, a value
//! of the wrong type, a number where a string belongs. Pod specs are checked more strictly when
//! reading ([`Resources::read`]); this covers everything else `generate` writes.

use std::collections::HashMap;

use k8s_openapi::api::{
    admissionregistration, apps, autoscaling, batch, coordination, core, discovery, networking,
    node, policy, rbac, scheduling, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;

use crate::error::Diagnostic;
use crate::kinds::{self, Class};
use crate::node::Node;
use crate::resources::{Loc, Resources, describe, join_path, resource_prefix};
use crate::typed::{self, Diff, DiffKind, Finding};

/// Reads `node` as `T` and describes what did not survive.
fn check<T>(node: &Node, prefix: &str) -> Vec<(String, String)>
where
    T: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize,
{
    let what = format!("a {}", T::KIND);
    match typed::convert::<T>(node, prefix, &what) {
        Err(Finding { path, message, .. }) => {
            vec![(
                path,
                format!("cannot be read as {what} {}: {message}", T::API_VERSION),
            )]
        }
        Ok((_, diffs, suggestions)) => diffs
            .into_iter()
            .map(|d| describe_diff(d, &what, &suggestions))
            .collect(),
    }
}

fn describe_diff(d: Diff, what: &str, suggestions: &HashMap<String, String>) -> (String, String) {
    let message = match d.kind {
        DiffKind::Dropped => {
            let hint = suggestions
                .get(&d.path)
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            format!(
                "unknown field{hint} ({what} has no such field: Kubernetes drops it, or refuses the object under strict field validation)"
            )
        }
        DiffKind::Changed | DiffKind::Coerced => d.detail,
    };
    (d.path, message)
}

/// The check for a resource of `api_version` and `kind`, if `k8s_openapi` knows the kind.
macro_rules! dispatch {
    ($node:expr, $prefix:expr, $api:expr, $kind:expr; $($t:ty),+ $(,)?) => {{
        let mut found = None;
        $(
            if found.is_none()
                && $api == <$t as k8s_openapi::Resource>::API_VERSION
                && $kind == <$t as k8s_openapi::Resource>::KIND
            {
                found = Some(check::<$t>($node, $prefix));
            }
        )+
        found
    }};
}

/// Findings for one resource, or None if its kind is not one `k8s_openapi` knows (a custom
/// resource: nothing to check against).
fn check_resource(node: &Node, prefix: &str) -> Option<Vec<(String, String)>> {
    let api = node.get_str("apiVersion").unwrap_or("");
    let kind = node.get_str("kind").unwrap_or("");
    dispatch!(node, prefix, api, kind;
        core::v1::ConfigMap, core::v1::Secret, core::v1::Service, core::v1::ServiceAccount,
        core::v1::Namespace, core::v1::Pod, core::v1::PodTemplate,
        core::v1::PersistentVolumeClaim, core::v1::PersistentVolume,
        core::v1::ReplicationController, core::v1::Endpoints, core::v1::LimitRange,
        core::v1::ResourceQuota,
        apps::v1::Deployment, apps::v1::StatefulSet, apps::v1::DaemonSet, apps::v1::ReplicaSet,
        apps::v1::ControllerRevision,
        batch::v1::Job, batch::v1::CronJob,
        rbac::v1::Role, rbac::v1::RoleBinding, rbac::v1::ClusterRole,
        rbac::v1::ClusterRoleBinding,
        node::v1::RuntimeClass,
        networking::v1::Ingress, networking::v1::IngressClass, networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
        autoscaling::v1::HorizontalPodAutoscaler, autoscaling::v2::HorizontalPodAutoscaler,
        storage::v1::StorageClass, storage::v1::CSIDriver,
        scheduling::v1::PriorityClass,
        coordination::v1::Lease,
        discovery::v1::EndpointSlice,
        admissionregistration::v1::ValidatingWebhookConfiguration,
        admissionregistration::v1::MutatingWebhookConfiguration,
        apiextensions::v1::CustomResourceDefinition,
    )
}

impl Resources {
    /// Reads every resource as it would be written (documents and `List` items) into its
    /// typed `k8s_openapi` struct, re-serialises it, and reports each field that does not
    /// survive, with file, resource and YAML path. Pod specs of workloads are left out: reading
    /// already checked them ([`Resources::warnings`] and errors), and the rewrite adds only
    /// fields Kubernetes knows. Kinds `k8s_openapi` does not know (custom resources) are not
    /// checked.
    pub fn typed_round_trip(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for (file_index, file) in self.files.iter().enumerate() {
            for (doc, node) in file.docs.iter().enumerate() {
                let api = node.get_str("apiVersion").unwrap_or("");
                let kind = node.get_str("kind").unwrap_or("");
                let items = node.get("items").and_then(Node::as_seq);
                let resources: Vec<(Loc, &Node)> =
                    match (kinds::classify(api, kind, items.is_some()), items) {
                        (Class::List, Some(items)) => items
                            .iter()
                            .enumerate()
                            .map(|(i, n)| {
                                let loc = Loc {
                                    file: file_index,
                                    doc,
                                    item: Some(i),
                                };
                                (loc, n)
                            })
                            .collect(),
                        _ => vec![(
                            Loc {
                                file: file_index,
                                doc,
                                item: None,
                            },
                            node,
                        )],
                    };
                for (loc, node) in resources {
                    let prefix = resource_prefix(loc);
                    let Some(findings) = check_resource(node, &prefix) else {
                        continue;
                    };
                    let skip = self
                        .workloads
                        .iter()
                        .find(|w| w.loc == loc)
                        .map(|w| join_path(&prefix, kinds::template_keys(w.kind)))
                        .map(|t| join_path(&t, &["spec"]));
                    let meta = node.get("metadata");
                    let resource = describe(
                        node.get_str("kind").unwrap_or(""),
                        meta.and_then(|m| m.get_str("namespace")),
                        meta.and_then(|m| m.get_str("name")).unwrap_or(""),
                        meta.and_then(|m| m.get_str("generateName")),
                        doc,
                    );
                    for (path, message) in findings {
                        if skip
                            .as_deref()
                            .is_some_and(|s| path == s || path.starts_with(&format!("{s}.")))
                        {
                            continue;
                        }
                        out.push(Diagnostic {
                            file: file.path.clone(),
                            resource: resource.clone(),
                            path,
                            message,
                        });
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(yaml: &str) -> Vec<(String, String)> {
        Resources::from_str("in.yaml", yaml)
            .unwrap()
            .typed_round_trip()
            .into_iter()
            .map(|d| (d.path, d.message))
            .collect()
    }

    #[test]
    fn clean_resources_have_no_findings() {
        let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: s, creationTimestamp: null, labels: {a: b}}
spec:
  selector: {a: b}
  ports: [{name: p, port: 1313, targetPort: userapi}, {port: 7777, targetPort: 7777}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get, create]}]
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: kata-qemu-snp}
handler: kata-qemu-snp
overhead: {podFixed: {memory: 160Mi, cpu: 250m}}
---
apiVersion: example.com/v1
kind: Whatever
spec: {anything: [1, 2]}
"#;
        assert_eq!(findings(yaml), vec![]);
    }

    #[test]
    fn typos_and_wrong_types_are_reported_with_their_path() {
        let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: s, lables: {a: b}}
spec:
  ports: [{port: 1313, protocl: TCP}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rb}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
subjects: [{kind: ServiceAccount, name: sa, namespace: 7}]
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: sa}
  automountServiceAccountTokn: false
"#;
        let got = findings(yaml);
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metadata.lables",
                "spec.ports[0].protocl",
                "subjects[0].namespace",
                "items[0].automountServiceAccountTokn",
            ],
            "{got:?}"
        );
        assert!(
            got[0].1.contains("did you mean \"labels\"?"),
            "{}",
            got[0].1
        );
        assert!(
            got[0].1.contains("a Service has no such field"),
            "{}",
            got[0].1
        );
        assert!(got[1].1.contains("\"protocol\""), "{}", got[1].1);
        assert!(got[2].1.contains("write \"7\""), "{}", got[2].1);
        assert!(got[3].1.contains("\"automountServiceAccountToken\""));
    }

    #[test]
    fn workload_pod_specs_are_left_to_the_reader_but_the_rest_is_checked() {
        let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  replicas: 1
  selectr: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}, anotations: {}}
    spec:
      schedulerNam: x
      containers: [{name: c, image: i}]
"#;
        let res = Resources::from_str("in.yaml", yaml).unwrap();
        // The pod spec typo is a read warning ...
        assert!(
            res.warnings()
                .iter()
                .any(|w| w.path == "spec.template.spec.schedulerNam")
        );
        // ... and not reported twice.
        let paths: Vec<String> = res.typed_round_trip().into_iter().map(|d| d.path).collect();
        assert_eq!(paths, ["spec.selectr", "spec.template.metadata.anotations"]);
    }

    #[test]
    fn a_wrong_type_stops_the_resource_with_a_path() {
        let got = findings(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\nspec:\n  replicas: many\n  selector: {}\n  template: {spec: {containers: [{name: c, image: i}]}}\n",
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "spec.replicas");
        assert!(
            got[0]
                .1
                .starts_with("cannot be read as a StatefulSet apps/v1"),
            "{}",
            got[0].1
        );
    }
}
