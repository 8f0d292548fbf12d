//! The node- and cluster-side facts of one simulated pod: ids, names and addresses that the API
//! server, the kubelet, containerd and CNI would choose.

use std::collections::BTreeMap;

use nunki_policy::{ConfigSources, PodInput, WorkloadKind};

use super::rng::{NAME_ALPHABET, Rng, os_seed};

/// How containerd fills `io.kubernetes.cri.image-name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageNameStyle {
    /// The image exactly as written in the pod spec (containerd ≥ 2.1 with a kubelet that sends
    /// `UserSpecifiedImage`).
    #[default]
    AsWritten,
    /// The name containerd stored the pulled image under (`repo@digest` or `repo:tag`), as older
    /// containerd releases do.
    Normalized,
}

/// Everything about one simulated pod that is not in its spec.
#[derive(Debug, Clone)]
pub struct SandboxContext {
    /// The sandbox (pause container) id: 64 hex characters.
    pub sandbox_id: String,
    /// The pod's name as the API server names it for the workload kind.
    pub pod_name: String,
    /// The pod's namespace (`default` when the resource has none).
    pub namespace: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The network namespace CNI created: `/var/run/netns/cni-<uuid>`.
    pub netns_path: String,
    /// The pod's hostname (`spec.hostname` or the pod name; the node name with host networking).
    pub hostname: String,
    /// The pod's IP address.
    pub pod_ip: String,
    /// The node's IP address.
    pub host_ip: String,
    /// The node's name.
    pub node_name: String,
    /// The ClusterIP of the `kubernetes` service in `default`.
    pub kubernetes_service_ip: String,
    /// The cluster DNS server (written into the pod's resolv.conf).
    pub cluster_dns_ip: String,
    /// The cluster domain.
    pub cluster_domain: String,
    /// The node's allocatable CPU in millicores (the value of `limits.cpu` when none is set).
    pub node_allocatable_millicpu: u64,
    /// The node's allocatable memory in bytes.
    pub node_allocatable_memory: u64,
    /// The sandbox image containerd is configured with (`io.kubernetes.cri.podsandbox.image-name`).
    pub sandbox_image: String,
    /// The OCI runtime-spec version containerd writes into every spec.
    pub oci_version: String,
    /// How containerd spells the image name annotation.
    pub image_name_style: ImageNameStyle,
    /// The shm size of the sandbox in bytes (containerd's default: 64 MiB).
    pub shm_size: u64,
    /// ConfigMaps and Secrets in the cluster, for `env`/`envFrom` references.
    pub config_sources: ConfigSources,
    /// Container id (64 hex characters) per container name; filled for every container of the
    /// pod, missing ones are derived from `seed`.
    pub container_ids: BTreeMap<String, String>,
    /// Seed for the remaining random choices (shared-file suffixes, exec ids).
    pub seed: u64,
}

impl SandboxContext {
    /// A random but valid context for `pod`.
    pub fn random(pod: &PodInput) -> Self {
        Self::from_seed(pod, os_seed())
    }

    /// The context `random` would make with this seed: the same seed gives the same ids.
    pub fn from_seed(pod: &PodInput, seed: u64) -> Self {
        let mut rng = Rng::derived(seed, "context");
        let pod_name = pod_name(pod, &mut rng);
        let host_network = pod.spec.host_network.unwrap_or(false);
        let node_name = "nunki-local-node".to_owned();
        let hostname = if host_network {
            node_name.clone()
        } else {
            pod_hostname(pod.spec.hostname.as_deref(), &pod_name)
        };
        let sandbox_id = rng.hex(64);
        let pod_uid = rng.uuid();
        let netns_path = format!("/var/run/netns/cni-{}", rng.uuid());
        let last = rng.next_u64() % 250 + 2;
        let pod_ip = format!("10.244.0.{last}");
        let mut container_ids = BTreeMap::new();
        let init = pod.spec.init_containers.iter().flatten();
        for c in init.chain(pod.spec.containers.iter()) {
            container_ids.insert(c.name.clone(), rng.hex(64));
        }
        Self {
            sandbox_id,
            pod_name,
            namespace: pod
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_owned()),
            pod_uid,
            netns_path,
            hostname,
            pod_ip: if host_network {
                "192.168.49.2".to_owned()
            } else {
                pod_ip
            },
            host_ip: "192.168.49.2".to_owned(),
            node_name,
            kubernetes_service_ip: "10.96.0.1".to_owned(),
            cluster_dns_ip: "10.96.0.10".to_owned(),
            cluster_domain: "cluster.local".to_owned(),
            node_allocatable_millicpu: 4000,
            node_allocatable_memory: 8 * 1024 * 1024 * 1024,
            sandbox_image: "registry.k8s.io/pause:3.10".to_owned(),
            oci_version: "1.1.0".to_owned(),
            image_name_style: ImageNameStyle::default(),
            shm_size: 64 * 1024 * 1024,
            config_sources: ConfigSources::default(),
            container_ids,
            seed,
        }
    }

    /// Uses these ConfigMaps and Secrets for `env`/`envFrom` references.
    pub fn with_config_sources(mut self, sources: ConfigSources) -> Self {
        self.config_sources = sources;
        self
    }

    /// The container id of container `name` (derived from the seed if none was assigned).
    pub fn container_id(&self, name: &str) -> String {
        self.container_ids
            .get(name)
            .cloned()
            .unwrap_or_else(|| Rng::derived(self.seed, &format!("container-id/{name}")).hex(64))
    }

    /// The kubelet's log directory of the pod.
    pub(crate) fn log_directory(&self) -> String {
        format!(
            "/var/log/pods/{}_{}_{}",
            self.namespace, self.pod_name, self.pod_uid
        )
    }
}

/// Kubernetes' limit for names built from `generateName`: the base is cut to 58 characters and
/// 5 random characters are appended.
const MAX_GENERATED_BASE: usize = 63 - 5;

fn generate_name(base: &str, rng: &mut Rng) -> String {
    let base: String = base.chars().take(MAX_GENERATED_BASE).collect();
    format!("{base}{}", rng.pick(NAME_ALPHABET, 5))
}

/// The pod name the API server ends up with for a pod created from `pod`'s resource.
fn pod_name(pod: &PodInput, rng: &mut Rng) -> String {
    let name = pod.name.as_str();
    match pod.kind {
        WorkloadKind::Pod => {
            if !name.is_empty() {
                name.to_owned()
            } else {
                let base = pod.generate_name.as_deref().unwrap_or("pod-");
                generate_name(base, rng)
            }
        }
        WorkloadKind::Deployment => {
            // The ReplicaSet is `<deployment>-<pod-template-hash>`.
            let hash = rng.pick(NAME_ALPHABET, 10);
            generate_name(&format!("{name}-{hash}-"), rng)
        }
        WorkloadKind::ReplicaSet
        | WorkloadKind::ReplicationController
        | WorkloadKind::DaemonSet
        | WorkloadKind::Job => generate_name(&format!("{name}-"), rng),
        WorkloadKind::StatefulSet => format!("{name}-0"),
        WorkloadKind::CronJob => {
            // The Job is `<cronjob>-<scheduled time in minutes since the epoch>`.
            let minutes = 29_000_000 + rng.next_u64() % 1_000_000;
            generate_name(&format!("{name}-{minutes}-"), rng)
        }
    }
}

/// The kubelet's pod hostname: `spec.hostname` or the pod name, at most 63 characters, without
/// a trailing `-` or `.`.
fn pod_hostname(spec_hostname: Option<&str>, pod_name: &str) -> String {
    let h = spec_hostname.filter(|h| !h.is_empty()).unwrap_or(pod_name);
    let h: String = h.chars().take(63).collect();
    h.trim_end_matches(['-', '.']).to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(kind: WorkloadKind, name: &str) -> PodInput {
        PodInput {
            kind,
            name: name.into(),
            generate_name: None,
            namespace: None,
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            spec: PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        }
    }

    fn is_suffix(s: &str) -> bool {
        s.bytes().all(|b| NAME_ALPHABET.contains(&b))
    }

    #[test]
    fn pod_names_follow_the_workload_kind() {
        let c = SandboxContext::from_seed(&pod(WorkloadKind::Deployment, "web"), 1);
        let parts: Vec<&str> = c.pod_name.split('-').collect();
        assert_eq!(parts.len(), 3, "{}", c.pod_name);
        assert_eq!(parts[0], "web");
        assert_eq!(parts[1].len(), 10);
        assert_eq!(parts[2].len(), 5);
        assert!(is_suffix(parts[1]) && is_suffix(parts[2]));

        let c = SandboxContext::from_seed(&pod(WorkloadKind::StatefulSet, "db"), 1);
        assert_eq!(c.pod_name, "db-0");
        let c = SandboxContext::from_seed(&pod(WorkloadKind::Pod, "single"), 1);
        assert_eq!(c.pod_name, "single");
        assert_eq!(c.hostname, "single");

        let mut p = pod(WorkloadKind::Pod, "");
        p.generate_name = Some("x".repeat(70));
        let c = SandboxContext::from_seed(&p, 1);
        assert_eq!(c.pod_name.len(), 63);
        assert!(is_suffix(&c.pod_name[58..]));

        let c = SandboxContext::from_seed(&pod(WorkloadKind::CronJob, "tick"), 1);
        let parts: Vec<&str> = c.pod_name.split('-').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[1].parse::<u64>().is_ok());
    }

    #[test]
    fn ids_have_the_real_formats_and_depend_on_the_seed() {
        let p = pod(WorkloadKind::Pod, "a");
        let c = SandboxContext::from_seed(&p, 5);
        assert_eq!(c.sandbox_id.len(), 64);
        assert!(c.sandbox_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(c.netns_path.starts_with("/var/run/netns/cni-"));
        assert_eq!(c.netns_path.len(), "/var/run/netns/cni-".len() + 36);
        assert_eq!(c.container_id("main").len(), 64);
        assert_ne!(c.container_id("main"), c.sandbox_id);
        assert_eq!(c.namespace, "default");
        let again = SandboxContext::from_seed(&p, 5);
        assert_eq!(again.sandbox_id, c.sandbox_id);
        assert_ne!(SandboxContext::from_seed(&p, 6).sandbox_id, c.sandbox_id);
        assert_ne!(
            SandboxContext::random(&p).sandbox_id,
            SandboxContext::random(&p).sandbox_id
        );
    }

    #[test]
    fn hostname_rules() {
        assert_eq!(pod_hostname(Some("custom"), "pod"), "custom");
        assert_eq!(
            pod_hostname(None, &format!("{}-x", "a".repeat(62))),
            "a".repeat(62)
        );
    }
}
