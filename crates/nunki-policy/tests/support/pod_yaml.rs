//! A small test-only loader: Kubernetes YAML → `PodInput`s and `ConfigSources`.
//!
//! The real reader is `nunki-kube`; this one only handles what the test data uses.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Pod, PodSpec, PodTemplateSpec, ReplicationController, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nunki_policy::{ConfigSources, PodInput, WorkloadKind};
use serde::Deserialize;

const POLICY_ANNOTATIONS: &[&str] = &[
    "io.katacontainers.config.hypervisor.cc_init_data",
    "io.katacontainers.config.agent.policy",
];

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    kind: Option<String>,
}

/// Pods and config sources of one or more YAML files.
#[derive(Debug, Default)]
pub struct Loaded {
    pub pods: Vec<PodInput>,
    pub sources: ConfigSources,
}

fn documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    docs.push(&text[start..]);
    docs.into_iter().filter(|d| !d.trim().is_empty()).collect()
}

fn from_template(kind: WorkloadKind, meta: ObjectMeta, template: PodTemplateSpec) -> PodInput {
    let template_meta = template.metadata.unwrap_or_default();
    pod_input(kind, meta, template_meta, template.spec.unwrap_or_default())
}

fn pod_input(
    kind: WorkloadKind,
    meta: ObjectMeta,
    pod_meta: ObjectMeta,
    spec: PodSpec,
) -> PodInput {
    let mut annotations = pod_meta.annotations.unwrap_or_default();
    for key in POLICY_ANNOTATIONS {
        annotations.remove(*key);
    }
    PodInput {
        kind,
        name: meta.name.unwrap_or_default(),
        generate_name: meta.generate_name,
        namespace: meta.namespace,
        annotations,
        labels: pod_meta.labels.unwrap_or_default(),
        spec,
    }
}

fn parse<T: serde::de::DeserializeOwned>(doc: &str, kind: &str) -> T {
    serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

/// Parses YAML texts (multi-document). Panics on anything unexpected: test data only.
pub fn load(texts: &[&str]) -> Loaded {
    let mut out = Loaded::default();
    for text in texts {
        for doc in documents(text) {
            let header: Header = serde_saphyr::from_str(doc).expect("YAML header");
            let kind = header.kind.unwrap_or_default();
            match kind.as_str() {
                "Pod" => {
                    let pod: Pod = parse(doc, &kind);
                    let meta = pod.metadata.clone();
                    out.pods.push(pod_input(
                        WorkloadKind::Pod,
                        meta.clone(),
                        meta,
                        pod.spec.unwrap_or_default(),
                    ));
                }
                "Deployment" => {
                    let d: Deployment = parse(doc, &kind);
                    let spec = d.spec.unwrap_or_default();
                    out.pods.push(from_template(
                        WorkloadKind::Deployment,
                        d.metadata,
                        spec.template,
                    ));
                }
                "StatefulSet" => {
                    let d: StatefulSet = parse(doc, &kind);
                    let spec = d.spec.unwrap_or_default();
                    out.pods.push(from_template(
                        WorkloadKind::StatefulSet,
                        d.metadata,
                        spec.template,
                    ));
                }
                "DaemonSet" => {
                    let d: DaemonSet = parse(doc, &kind);
                    let spec = d.spec.unwrap_or_default();
                    out.pods.push(from_template(
                        WorkloadKind::DaemonSet,
                        d.metadata,
                        spec.template,
                    ));
                }
                "ReplicaSet" => {
                    let d: ReplicaSet = parse(doc, &kind);
                    let spec = d.spec.unwrap_or_default();
                    out.pods.push(from_template(
                        WorkloadKind::ReplicaSet,
                        d.metadata,
                        spec.template.unwrap_or_default(),
                    ));
                }
                "ReplicationController" => {
                    let d: ReplicationController = parse(doc, &kind);
                    let spec = d.spec.unwrap_or_default();
                    out.pods.push(from_template(
                        WorkloadKind::ReplicationController,
                        d.metadata,
                        spec.template.unwrap_or_default(),
                    ));
                }
                "Job" => {
                    let d: Job = parse(doc, &kind);
                    let spec = d.spec.unwrap_or_default();
                    out.pods
                        .push(from_template(WorkloadKind::Job, d.metadata, spec.template));
                }
                "CronJob" => {
                    let d: CronJob = parse(doc, &kind);
                    let template = d
                        .spec
                        .unwrap_or_default()
                        .job_template
                        .spec
                        .unwrap_or_default()
                        .template;
                    out.pods
                        .push(from_template(WorkloadKind::CronJob, d.metadata, template));
                }
                "ConfigMap" => {
                    let cm: ConfigMap = parse(doc, &kind);
                    out.sources.config_maps.insert(
                        (cm.metadata.namespace, cm.metadata.name.unwrap_or_default()),
                        cm.data.unwrap_or_default(),
                    );
                }
                "Secret" => {
                    let s: Secret = parse(doc, &kind);
                    let mut data: BTreeMap<String, String> = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8(v.0).expect("UTF-8 secret")))
                        .collect();
                    data.extend(s.string_data.unwrap_or_default());
                    out.sources.secrets.insert(
                        (s.metadata.namespace, s.metadata.name.unwrap_or_default()),
                        data,
                    );
                }
                other => panic!("test loader: unsupported kind {other:?}"),
            }
        }
    }
    out
}
