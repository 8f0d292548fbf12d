//! Pod-name patterns: the names Kubernetes controllers give to the pods of a workload.

use crate::input::{PodInput, WorkloadKind};

/// The characters of the random suffixes Kubernetes generates (`utilrand.String`).
pub(crate) const SUFFIX: &str = "[bcdfghjklmnpqrstvwxz2456789]+";

/// Escapes regex meta characters. `-` stays as it is (it is literal outside a class), so a
/// name such as `web-0` appears unchanged, as in genpolicy's output.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '.'
                | '+'
                | '*'
                | '?'
                | '('
                | ')'
                | '|'
                | '['
                | ']'
                | '{'
                | '}'
                | '^'
                | '$'
                | '#'
                | '&'
                | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The regex (without anchors) of the names of the pods this resource creates, or `None` when
/// the resource has neither a name nor a generateName.
pub(crate) fn sandbox_name_regex(input: &PodInput) -> Option<String> {
    let base = if !input.name.is_empty() {
        escape(&input.name)
    } else {
        let prefix = input.generate_name.as_deref().filter(|p| !p.is_empty())?;
        format!("{}{SUFFIX}", escape(prefix))
    };
    let job = |job_name: &str| format!("{job_name}(-[0-9]+)?-{SUFFIX}");
    Some(match input.kind {
        WorkloadKind::Pod => base,
        // <deployment>-<pod-template-hash>-<suffix>
        WorkloadKind::Deployment => format!("{base}-{SUFFIX}-{SUFFIX}"),
        WorkloadKind::ReplicaSet
        | WorkloadKind::ReplicationController
        | WorkloadKind::DaemonSet => format!("{base}-{SUFFIX}"),
        WorkloadKind::StatefulSet => format!("{base}-[0-9]+"),
        // <job>[-<index>]-<suffix>
        WorkloadKind::Job => job(&base),
        // The CronJob's jobs are named <cronjob>-<scheduled time in minutes>.
        WorkloadKind::CronJob => job(&format!("{base}-[0-9]+")),
    })
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
    use k8s_openapi::api::core::v1::PodSpec;
    use std::collections::BTreeMap;

    fn input(kind: WorkloadKind, name: &str, generate_name: Option<&str>) -> PodInput {
        PodInput {
            kind,
            name: name.to_owned(),
            generate_name: generate_name.map(str::to_owned),
            namespace: None,
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            spec: PodSpec::default(),
        }
    }

    fn matches(kind: WorkloadKind, name: &str, pod_name: &str) -> bool {
        let pattern = sandbox_name_regex(&input(kind, name, None)).unwrap();
        regex::Regex::new(&format!("^{pattern}$"))
            .unwrap()
            .is_match(pod_name)
    }

    #[test]
    fn pod_names_per_kind() {
        assert!(matches(WorkloadKind::Pod, "web", "web"));
        assert!(!matches(WorkloadKind::Pod, "web", "web-x"));
        assert!(matches(
            WorkloadKind::Deployment,
            "web",
            "web-7c56d66754-pq9qp"
        ));
        assert!(!matches(WorkloadKind::Deployment, "web", "web-pq9qp"));
        assert!(matches(
            WorkloadKind::ReplicaSet,
            "web-7c56d66754",
            "web-7c56d66754-pq9qp"
        ));
        assert!(matches(WorkloadKind::DaemonSet, "agent", "agent-x2b4z"));
        assert!(matches(
            WorkloadKind::ReplicationController,
            "rc",
            "rc-x2b4z"
        ));
        assert!(matches(WorkloadKind::StatefulSet, "db", "db-0"));
        assert!(matches(WorkloadKind::StatefulSet, "db", "db-12"));
        assert!(!matches(WorkloadKind::StatefulSet, "db", "db-x"));
        assert!(matches(WorkloadKind::Job, "batch", "batch-x2b4z"));
        assert!(matches(WorkloadKind::Job, "batch", "batch-3-x2b4z"));
        assert!(matches(
            WorkloadKind::CronJob,
            "nightly",
            "nightly-28930140-x2b4z"
        ));
        assert!(!matches(WorkloadKind::CronJob, "nightly", "nightly-x2b4z"));
        // Vowels never appear in generated suffixes.
        assert!(!matches(WorkloadKind::DaemonSet, "agent", "agent-aaaaa"));
    }

    #[test]
    fn names_are_escaped() {
        assert!(matches(WorkloadKind::Pod, "a.b", "a.b"));
        assert!(!matches(WorkloadKind::Pod, "a.b", "axb"));
        assert_eq!(
            escape("policy-redis-deployment-6674f9448-xjrzf"),
            "policy-redis-deployment-6674f9448-xjrzf"
        );
        assert_eq!(escape("a.b*c"), "a\\.b\\*c");
    }

    #[test]
    fn generate_name() {
        let pattern = sandbox_name_regex(&input(WorkloadKind::Pod, "", Some("dummy"))).unwrap();
        let re = regex::Regex::new(&format!("^{pattern}$")).unwrap();
        assert!(re.is_match("dummysfx"));
        assert!(!re.is_match("xyzdummy"));
        assert!(sandbox_name_regex(&input(WorkloadKind::Pod, "", None)).is_none());
    }
}
