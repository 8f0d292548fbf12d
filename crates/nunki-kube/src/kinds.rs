//! Which resources Nunki handles and where their pod template lives.

use nunki_policy::WorkloadKind;

/// What a resource is to Nunki.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Carries a pod template and gets a policy.
    Workload(WorkloadKind),
    /// A core ConfigMap, read for `env`/`envFrom`/volume references.
    ConfigMap,
    /// A core Secret, read like a ConfigMap.
    Secret,
    /// `kind: List` (or `FooList`) whose `items` are resources in their own right.
    List,
    /// Everything else: passed through untouched.
    Other,
}

/// Splits `apiVersion` into group and version; the core group is `""`.
pub(crate) fn group_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// Classifies by `apiVersion` and `kind`. A workload kind name in another API group (say a
/// CRD `Job` of a batch scheduler) is not a Kubernetes workload and passes through.
pub(crate) fn classify(api_version: &str, kind: &str, has_items: bool) -> Class {
    let (group, _) = group_version(api_version);
    if let Some(w) = WorkloadKind::from_kind(kind) {
        let group_ok = match w {
            WorkloadKind::Pod | WorkloadKind::ReplicationController => group.is_empty(),
            WorkloadKind::Deployment
            | WorkloadKind::StatefulSet
            | WorkloadKind::DaemonSet
            | WorkloadKind::ReplicaSet => group == "apps" || group == "extensions",
            WorkloadKind::Job | WorkloadKind::CronJob => group == "batch",
        };
        return if group_ok {
            Class::Workload(w)
        } else {
            Class::Other
        };
    }
    match (group, kind) {
        ("", "ConfigMap") => Class::ConfigMap,
        ("", "Secret") => Class::Secret,
        (_, k) if has_items && k.ends_with("List") => Class::List,
        _ => Class::Other,
    }
}

/// Mapping keys from a workload resource to its pod template (which holds `metadata` and
/// `spec`). A Pod is its own template.
pub(crate) fn template_keys(kind: WorkloadKind) -> &'static [&'static str] {
    match kind {
        WorkloadKind::Pod => &[],
        WorkloadKind::Deployment
        | WorkloadKind::StatefulSet
        | WorkloadKind::DaemonSet
        | WorkloadKind::ReplicaSet
        | WorkloadKind::ReplicationController
        | WorkloadKind::Job => &["spec", "template"],
        WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template"],
    }
}

/// The API group to write in a workload secret ID: the group, or `core` for the core group.
pub(crate) fn group_for_id(api_version: &str) -> &str {
    match group_version(api_version).0 {
        "" => "core",
        g => g,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_checks_the_group() {
        assert_eq!(
            classify("v1", "Pod", false),
            Class::Workload(WorkloadKind::Pod)
        );
        assert_eq!(
            classify("apps/v1", "Deployment", false),
            Class::Workload(WorkloadKind::Deployment)
        );
        assert_eq!(
            classify("batch/v1", "CronJob", false),
            Class::Workload(WorkloadKind::CronJob)
        );
        assert_eq!(
            classify("batch.volcano.sh/v1alpha1", "Job", false),
            Class::Other
        );
        assert_eq!(classify("apps/v1", "Pod", false), Class::Other);
        assert_eq!(classify("v1", "ConfigMap", false), Class::ConfigMap);
        assert_eq!(classify("example.com/v1", "Secret", false), Class::Other);
        assert_eq!(classify("v1", "List", true), Class::List);
        assert_eq!(classify("apps/v1", "DeploymentList", true), Class::List);
        assert_eq!(classify("v1", "List", false), Class::Other);
        assert_eq!(classify("v1", "Service", false), Class::Other);
    }

    #[test]
    fn ids_use_core_for_the_core_group() {
        assert_eq!(group_for_id("v1"), "core");
        assert_eq!(group_for_id("apps/v1"), "apps");
        assert_eq!(group_version("batch/v1"), ("batch", "v1"));
        assert_eq!(group_version("v1"), ("", "v1"));
    }
}
