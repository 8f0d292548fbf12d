//! What the API server and the kubelet make of a pod spec: the CRI-level sandbox and container
//! configs that they hand to containerd.
//!
//! Modelled facts (Kubernetes 1.33): the ServiceAccount admission plugin adds the
//! `kube-api-access-*` projected volume; the kubelet resolves `env`/`envFrom` (ConfigMaps,
//! Secrets, the downward API, `$(VAR)` expansion, the `kubernetes` service variables), expands
//! `$(VAR)` in command and args, adds `/etc/hosts` and the termination-log mount, passes the
//! image user when the pod sets none, adds `fsGroup` and `supplementalGroups`, and sends its
//! default masked and read-only `/proc` paths.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements, Volume};
use nunki_policy::PodInput;

use super::context::SandboxContext;
use super::error::AgentError;
use super::images::ImageConfig;
use super::quantity;
use super::rng::{NAME_ALPHABET, Rng};

/// Where the service-account token volume is mounted.
pub(crate) const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The kubelet's default masked paths (`securitycontext.defaultMaskedPaths`).
const KUBELET_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The kubelet's default read-only paths.
pub(crate) const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// CRI mount propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Propagation {
    Private,
    HostToContainer,
    Bidirectional,
}

/// What backs a mount on the host, which decides how Kata passes it into the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostSource {
    /// A disk-backed emptyDir. Kata (emptydir_mode `block-encrypted`) turns it into an encrypted
    /// block device; `device` numbers the pod's disk emptyDirs.
    EmptyDirDisk { device: usize },
    /// A memory-backed emptyDir: an `ephemeral` tmpfs inside the VM.
    EmptyDirMemory { volume: String },
    /// A host file or directory that Kata copies into the guest (ConfigMap, Secret, projected
    /// and downward-API volumes, hostPath, /etc/hosts, resolv.conf, ...).
    Copied,
    /// The sandbox's `/dev/shm`.
    SandboxShm,
    /// A host path Kata leaves alone (`/proc`, `/sys`, devices): the mount is passed unchanged.
    HostOnly(String),
}

/// One CRI mount (`runtime.Mount`).
#[derive(Debug, Clone)]
pub(crate) struct CriMount {
    pub container_path: String,
    pub host: HostSource,
    pub readonly: bool,
    pub propagation: Propagation,
}

/// CRI PID namespace mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PidMode {
    Container,
    Pod,
    Node,
}

/// CRI namespace options of the pod.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Namespaces {
    pub host_network: bool,
    pub host_ipc: bool,
    pub pid: PidMode,
}

/// The security context the kubelet sends for a container.
#[derive(Debug, Clone)]
pub(crate) struct CriSecurity {
    pub run_as_user: Option<i64>,
    pub run_as_username: String,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    /// `supplementalGroupsPolicy: Strict`: no groups from the image's /etc/group.
    pub strict_groups: bool,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    /// `capabilities.add` / `capabilities.drop` (`None`: no `capabilities` field).
    pub capabilities: Option<(Vec<String>, Vec<String>)>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

/// The container's share of CPU and memory, as the kubelet computes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CriResources {
    pub cpu_shares: u64,
    pub cpu_quota: i64,
    pub cpu_period: u64,
    pub memory_limit: i64,
    pub oom_score_adj: i64,
}

/// One CRI container config (`runtime.ContainerConfig`).
#[derive(Debug, Clone)]
pub(crate) struct CriContainer {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<CriMount>,
    pub tty: bool,
    pub security: CriSecurity,
    pub resources: CriResources,
    /// Annotations from device plugins (CDI device requests).
    pub annotations: BTreeMap<String, String>,
}

/// Pod QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub(crate) fn slice(self) -> &'static str {
        match self {
            Self::Guaranteed => "",
            Self::Burstable => "burstable-",
            Self::BestEffort => "besteffort-",
        }
    }
}

/// The CRI sandbox config (`runtime.PodSandboxConfig`).
#[derive(Debug, Clone)]
pub(crate) struct CriSandbox {
    pub hostname: String,
    pub log_directory: String,
    pub namespaces: Namespaces,
    pub sysctls: BTreeMap<String, String>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub privileged: bool,
    /// `(cpu period, cpu quota, cpu shares, memory limit)` of the whole pod.
    pub resources: (u64, i64, u64, i64),
    /// Pod annotations that containerd passes to the runtime (`pod_annotations` of the Kata
    /// runtime handler: `io.katacontainers.*`).
    pub passthrough_annotations: BTreeMap<String, String>,
    /// The lines of the pod's resolv.conf.
    pub dns: Vec<String>,
    pub qos: Qos,
}

/// The pod after admission: the containers and volumes the kubelet sees.
#[derive(Debug, Clone)]
pub(crate) struct AdmittedPod {
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
}

/// Applies the API server's defaulting and admission that change what runs: the
/// ServiceAccount token volume and `terminationMessagePath` (see [`validate`] for validation).
pub(crate) fn admit(pod: &PodInput, ctx: &SandboxContext) -> AdmittedPod {
    let spec = &pod.spec;
    let mut volumes = spec.volumes.clone().unwrap_or_default();
    let mut init_containers = spec.init_containers.clone().unwrap_or_default();
    let mut containers = spec.containers.clone();
    let automount = spec.automount_service_account_token != Some(false);
    let all = init_containers.iter_mut().chain(containers.iter_mut());
    let mut token_volume = None;
    for c in all {
        if c.termination_message_path
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            c.termination_message_path = Some("/dev/termination-log".into());
        }
        if !automount {
            continue;
        }
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        if mounts.iter().any(|m| m.mount_path == SERVICE_ACCOUNT_MOUNT) {
            continue;
        }
        let name = token_volume
            .get_or_insert_with(|| {
                let suffix = Rng::derived(ctx.seed, "kube-api-access").pick(NAME_ALPHABET, 5);
                format!("kube-api-access-{suffix}")
            })
            .clone();
        mounts.push(k8s_openapi::api::core::v1::VolumeMount {
            name,
            mount_path: SERVICE_ACCOUNT_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if let Some(name) = token_volume {
        volumes.push(Volume {
            name,
            projected: Some(Default::default()),
            ..Default::default()
        });
    }
    AdmittedPod {
        init_containers,
        containers,
        volumes,
    }
}

/// The API server's validation rules that the simulation would otherwise let through.
pub(crate) fn validate(spec: &k8s_openapi::api::core::v1::PodSpec) -> Result<(), AgentError> {
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in all {
        let privileged = c
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false);
        for m in c.volume_mounts.iter().flatten() {
            if m.mount_propagation.as_deref() == Some("Bidirectional") && !privileged {
                return Err(AgentError::InvalidPod(format!(
                    "container {:?} volumeMount {:?}: Bidirectional mount propagation is \
                     available only to privileged containers (the API server refuses the pod)",
                    c.name, m.mount_path
                )));
            }
        }
    }
    Ok(())
}

/// The resource names of passthrough GPUs that the NVIDIA sandbox device plugin hands out.
const GPU_RESOURCES: [&str; 1] = ["nvidia.com/pgpu"];

/// Device-plugin annotations of a container: for each passthrough GPU it was allocated, the CDI
/// annotation `cdi.k8s.io/vfio<IOMMU group>: nvidia.com/gpu=<index>` (cold-plugged into the
/// VM). `next_gpu` numbers the node's GPUs across the pod's containers.
fn device_annotations(
    c: &Container,
    next_gpu: &mut u64,
) -> Result<BTreeMap<String, String>, AgentError> {
    let mut out = BTreeMap::new();
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    for name in GPU_RESOURCES {
        let Some(q) = limits.and_then(|l| l.get(name)) else {
            continue;
        };
        let count = q.0.trim().parse::<u64>().map_err(|_| {
            AgentError::InvalidPod(format!(
                "container {:?}: {name} must be a whole number, got {:?}",
                c.name, q.0
            ))
        })?;
        for _ in 0..count {
            out.insert(
                format!("cdi.k8s.io/vfio{}", *next_gpu + 1),
                format!("nvidia.com/gpu={next_gpu}"),
            );
            *next_gpu += 1;
        }
    }
    Ok(out)
}

fn resources_of(c: &Container) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let get = |r: Option<&ResourceRequirements>, limits: bool, name: &str| {
        let map = r.and_then(|r| {
            if limits {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        })?;
        quantity::parse(&map.get(name)?.0)
    };
    let r = c.resources.as_ref();
    let cpu_limit = get(r, true, "cpu");
    let mem_limit = get(r, true, "memory");
    // Requests default to limits.
    let cpu_request = get(r, false, "cpu").or(cpu_limit);
    let mem_request = get(r, false, "memory").or(mem_limit);
    (cpu_request, cpu_limit, mem_request, mem_limit)
}

/// The pod's QoS class.
pub(crate) fn qos(pod: &AdmittedPod) -> Qos {
    let all: Vec<&Container> = pod
        .init_containers
        .iter()
        .chain(pod.containers.iter())
        .collect();
    let res: Vec<_> = all.iter().map(|c| resources_of(c)).collect();
    if res
        .iter()
        .all(|(a, b, c, d)| a.is_none() && b.is_none() && c.is_none() && d.is_none())
    {
        return Qos::BestEffort;
    }
    let guaranteed = res
        .iter()
        .all(|(cr, cl, mr, ml)| cl.is_some() && ml.is_some() && cr == cl && mr == ml);
    if guaranteed {
        Qos::Guaranteed
    } else {
        Qos::Burstable
    }
}

fn milli_cpu_to_shares(milli: u64) -> u64 {
    (milli * 1024 / 1000).max(2)
}

fn container_resources(c: &Container, qos: Qos, ctx: &SandboxContext) -> CriResources {
    let (cpu_req, cpu_lim, mem_req, mem_lim) = resources_of(c);
    let period = 100_000u64;
    let milli_req = cpu_req.map_or(0, |v| (v * 1000.0).ceil() as u64);
    let quota = cpu_lim.map_or(0, |v| ((v * 1000.0).ceil() as i64) * period as i64 / 1000);
    let oom_score_adj = match qos {
        Qos::Guaranteed => -997,
        Qos::BestEffort => 1000,
        Qos::Burstable => {
            let capacity = ctx.node_allocatable_memory.max(1) as f64;
            let adj = 1000 - ((1000.0 * mem_req.unwrap_or(0.0)) / capacity) as i64;
            adj.clamp(3, 999)
        }
    };
    CriResources {
        cpu_shares: milli_cpu_to_shares(milli_req),
        cpu_quota: quota,
        cpu_period: period,
        memory_limit: mem_lim.map_or(0, |v| v as i64),
        oom_score_adj,
    }
}

fn namespaces(pod: &PodInput) -> Namespaces {
    let spec = &pod.spec;
    Namespaces {
        host_network: spec.host_network.unwrap_or(false),
        host_ipc: spec.host_ipc.unwrap_or(false),
        pid: if spec.host_pid.unwrap_or(false) {
            PidMode::Node
        } else if spec.share_process_namespace.unwrap_or(false) {
            PidMode::Pod
        } else {
            PidMode::Container
        },
    }
}

/// The pod's sandbox config.
pub(crate) fn sandbox(pod: &PodInput, admitted: &AdmittedPod, ctx: &SandboxContext) -> CriSandbox {
    let psc = pod.spec.security_context.clone().unwrap_or_default();
    let mut supplemental_groups = Vec::new();
    if let Some(g) = psc.fs_group {
        supplemental_groups.push(g);
    }
    supplemental_groups.extend(psc.supplemental_groups.iter().flatten());
    let sysctls = psc
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    let privileged = admitted
        .init_containers
        .iter()
        .chain(admitted.containers.iter())
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        });
    let qos = qos(admitted);
    let (mut cpu_req, mut cpu_lim, mut mem_lim) = (0.0, Some(0.0), Some(0.0));
    for c in &admitted.containers {
        let (cr, cl, _, ml) = resources_of(c);
        cpu_req += cr.unwrap_or(0.0);
        cpu_lim = cpu_lim.zip(cl).map(|(a, b)| a + b);
        mem_lim = mem_lim.zip(ml).map(|(a, b)| a + b);
    }
    let period = 100_000u64;
    let quota = cpu_lim.map_or(0, |v| ((v * 1000.0).ceil() as i64) * period as i64 / 1000);
    let shares = milli_cpu_to_shares((cpu_req * 1000.0).ceil() as u64);
    let passthrough_annotations = pod
        .annotations
        .iter()
        .filter(|(k, _)| k.starts_with("io.katacontainers."))
        .filter(|(k, _)| {
            k.as_str() != "io.katacontainers.config.agent.policy"
                && k.as_str() != "io.katacontainers.config.hypervisor.cc_init_data"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let ns = &ctx.namespace;
    let domain = &ctx.cluster_domain;
    let dns = vec![
        format!("search {ns}.svc.{domain} svc.{domain} {domain}"),
        format!("nameserver {}", ctx.cluster_dns_ip),
        "options ndots:5".to_owned(),
        String::new(),
    ];
    CriSandbox {
        hostname: ctx.hostname.clone(),
        log_directory: ctx.log_directory(),
        namespaces: namespaces(pod),
        sysctls,
        run_as_user: psc.run_as_user,
        run_as_group: psc.run_as_group,
        supplemental_groups,
        privileged,
        resources: (period, quota, shares, mem_lim.map_or(0, |v| v as i64)),
        passthrough_annotations,
        dns,
        qos,
    }
}

/// How a pod volume is backed on the node.
#[derive(Debug, Clone)]
enum VolumeBacking {
    DiskEmptyDir { device: usize },
    MemoryEmptyDir,
    Files,
    HostPath(String),
}

fn volume_backings(volumes: &[Volume]) -> Result<BTreeMap<String, VolumeBacking>, AgentError> {
    let mut out = BTreeMap::new();
    let mut devices = 0;
    for v in volumes {
        let backing = if let Some(e) = &v.empty_dir {
            match e.medium.as_deref().unwrap_or("") {
                "" => {
                    devices += 1;
                    VolumeBacking::DiskEmptyDir {
                        device: devices - 1,
                    }
                }
                "Memory" => VolumeBacking::MemoryEmptyDir,
                other => {
                    return Err(AgentError::UnsupportedVolume {
                        volume: v.name.clone(),
                        kind: format!("emptyDir with medium {other}"),
                    });
                }
            }
        } else if v.config_map.is_some()
            || v.secret.is_some()
            || v.projected.is_some()
            || v.downward_api.is_some()
        {
            VolumeBacking::Files
        } else if let Some(h) = &v.host_path {
            VolumeBacking::HostPath(h.path.clone())
        } else {
            return Err(AgentError::UnsupportedVolume {
                volume: v.name.clone(),
                kind: volume_kind(v).to_owned(),
            });
        };
        out.insert(v.name.clone(), backing);
    }
    Ok(out)
}

fn volume_kind(v: &Volume) -> &'static str {
    if v.persistent_volume_claim.is_some() {
        "persistentVolumeClaim"
    } else if v.csi.is_some() {
        "csi"
    } else if v.ephemeral.is_some() {
        "ephemeral"
    } else if v.image.is_some() {
        "image"
    } else if v.nfs.is_some() {
        "nfs"
    } else {
        "unknown volume source"
    }
}

fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn host_path_source(path: &str) -> HostSource {
    let p = clean(path);
    let under = |prefix: &str| p == prefix || p.starts_with(&format!("{prefix}/"));
    if under("/proc") || under("/sys") || under("/dev") {
        HostSource::HostOnly(p)
    } else {
        HostSource::Copied
    }
}

fn container_mounts(
    c: &Container,
    backings: &BTreeMap<String, VolumeBacking>,
    env: &BTreeMap<String, String>,
) -> Result<Vec<CriMount>, AgentError> {
    let mut mounts = Vec::new();
    let mut mounts_hosts = false;
    for vm in c.volume_mounts.iter().flatten() {
        let backing = backings.get(&vm.name).ok_or_else(|| {
            AgentError::InvalidPod(format!(
                "container {:?} mounts volume {:?}, which the pod does not define",
                c.name, vm.name
            ))
        })?;
        let sub_path = match (&vm.sub_path, &vm.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(e)) if !e.is_empty() => expand(e, |k| env.get(k).cloned()),
            _ => String::new(),
        };
        // A subPath is bind-mounted from the kubelet's volume-subpaths directory, which Kata
        // treats as an ordinary host directory.
        let host = match backing {
            VolumeBacking::DiskEmptyDir { device } if sub_path.is_empty() => {
                HostSource::EmptyDirDisk { device: *device }
            }
            VolumeBacking::MemoryEmptyDir if sub_path.is_empty() => HostSource::EmptyDirMemory {
                volume: vm.name.clone(),
            },
            VolumeBacking::HostPath(p) => host_path_source(&format!("{p}/{sub_path}")),
            _ => HostSource::Copied,
        };
        // The kubelet mounts volumes whose plugin says "must mount read-only" (configMap,
        // secret, projected, downwardAPI: atomically written file sets) read-only whatever
        // the volumeMount says.
        let readonly = vm.read_only.unwrap_or(false) || matches!(backing, VolumeBacking::Files);
        match vm.recursive_read_only.as_deref() {
            Some("Enabled") => {
                return Err(AgentError::InvalidPod(format!(
                    "container {:?} mount {:?}: recursiveReadOnly: Enabled needs a runtime with \
                     recursive read-only mounts, which the Kata runtime does not offer; use \
                     IfPossible or readOnly",
                    c.name, vm.mount_path
                )));
            }
            Some("IfPossible") | Some("Disabled") | None => {}
            Some(other) => {
                return Err(AgentError::InvalidPod(format!(
                    "container {:?} mount {:?}: unknown recursiveReadOnly {other:?}",
                    c.name, vm.mount_path
                )));
            }
        }
        let propagation = match vm.mount_propagation.as_deref() {
            None | Some("None") => Propagation::Private,
            Some("HostToContainer") => Propagation::HostToContainer,
            Some("Bidirectional") => Propagation::Bidirectional,
            Some(other) => {
                return Err(AgentError::InvalidPod(format!(
                    "container {:?} mount {:?}: unknown mountPropagation {other:?}",
                    c.name, vm.mount_path
                )));
            }
        };
        if clean(&vm.mount_path) == "/etc/hosts" {
            mounts_hosts = true;
        }
        mounts.push(CriMount {
            container_path: vm.mount_path.clone(),
            host,
            readonly,
            propagation,
        });
    }
    if !mounts_hosts {
        mounts.push(CriMount {
            container_path: "/etc/hosts".into(),
            host: HostSource::Copied,
            readonly: false,
            propagation: Propagation::Private,
        });
    }
    if let Some(path) = c
        .termination_message_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        mounts.push(CriMount {
            container_path: path.into(),
            host: HostSource::Copied,
            readonly: false,
            propagation: Propagation::Private,
        });
    }
    Ok(mounts)
}

/// The variables of the `kubernetes` service in `default`, which every pod gets.
fn service_env(ctx: &SandboxContext) -> BTreeMap<String, String> {
    let ip = &ctx.kubernetes_service_ip;
    [
        ("KUBERNETES_SERVICE_HOST", ip.clone()),
        ("KUBERNETES_SERVICE_PORT", "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443".into()),
        ("KUBERNETES_PORT", format!("tcp://{ip}:443")),
        ("KUBERNETES_PORT_443_TCP", format!("tcp://{ip}:443")),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp".into()),
        ("KUBERNETES_PORT_443_TCP_PORT", "443".into()),
        ("KUBERNETES_PORT_443_TCP_ADDR", ip.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`, an unknown `$(VAR)` stays as written.
pub(crate) fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(rest.get(..pos).unwrap_or(""));
        let after = rest.get(pos + 1..).unwrap_or("");
        let mut chars = after.chars();
        match chars.next() {
            None => {
                out.push('$');
                rest = "";
            }
            Some('$') => {
                out.push('$');
                rest = after.get(1..).unwrap_or("");
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = after.get(1..close).unwrap_or("");
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = after.get(close + 1..).unwrap_or("");
                }
                None => {
                    out.push_str("$(");
                    rest = after.get(1..).unwrap_or("");
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = after.get(c.len_utf8()..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

fn quoted_key<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let inner = path
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    inner
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn field_ref(pod: &PodInput, ctx: &SandboxContext, path: &str) -> Option<String> {
    if let Some(k) = quoted_key(path, "metadata.labels") {
        return Some(pod.labels.get(k).cloned().unwrap_or_default());
    }
    if let Some(k) = quoted_key(path, "metadata.annotations") {
        return Some(pod.annotations.get(k).cloned().unwrap_or_default());
    }
    Some(match path {
        "metadata.name" => ctx.pod_name.clone(),
        "metadata.namespace" => ctx.namespace.clone(),
        "metadata.uid" => ctx.pod_uid.clone(),
        "metadata.labels" => format_map(&pod.labels),
        "metadata.annotations" => format_map(&pod.annotations),
        "spec.nodeName" => ctx.node_name.clone(),
        "spec.serviceAccountName" => pod
            .spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.clone(),
        _ => return None,
    })
}

fn resource_ref(
    admitted: &AdmittedPod,
    own: &Container,
    ctx: &SandboxContext,
    sel: &k8s_openapi::api::core::v1::ResourceFieldSelector,
) -> Result<String, String> {
    let target = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => own,
        Some(n) => admitted
            .init_containers
            .iter()
            .chain(admitted.containers.iter())
            .find(|c| c.name == n)
            .ok_or_else(|| format!("resourceFieldRef names unknown container {n:?}"))?,
    };
    let divisor = match &sel.divisor {
        Some(d) => quantity::parse(&d.0)
            .filter(|v| *v > 0.0)
            .ok_or_else(|| format!("invalid divisor {:?}", d.0))?,
        None => 1.0,
    };
    let (cpu_req, cpu_lim, mem_req, mem_lim) = resources_of(target);
    let node_cpu = ctx.node_allocatable_millicpu as f64 / 1000.0;
    let node_mem = ctx.node_allocatable_memory as f64;
    let node_storage = 100.0 * 1024.0 * 1024.0 * 1024.0;
    let storage = |limits: bool| {
        let r = target.resources.as_ref();
        let map = r.and_then(|r| {
            if limits {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        });
        map.and_then(|m| m.get("ephemeral-storage"))
            .and_then(|q| quantity::parse(&q.0))
    };
    let value = match sel.resource.as_str() {
        "limits.cpu" => cpu_lim.unwrap_or(node_cpu),
        "requests.cpu" => cpu_req.unwrap_or(0.0),
        "limits.memory" => mem_lim.unwrap_or(node_mem),
        "requests.memory" => mem_req.unwrap_or(0.0),
        "limits.ephemeral-storage" => storage(true).unwrap_or(node_storage),
        "requests.ephemeral-storage" => storage(false).or(storage(true)).unwrap_or(0.0),
        other => return Err(format!("unsupported resourceFieldRef resource {other:?}")),
    };
    // The kubelet rounds up (CPU in millicores against the divisor's millicores).
    let v = if sel.resource.ends_with(".cpu") {
        ((value * 1000.0).round() / (divisor * 1000.0)).ceil()
    } else {
        (value / divisor).ceil()
    };
    Ok(format!("{}", v as i64))
}

fn container_env(
    pod: &PodInput,
    admitted: &AdmittedPod,
    c: &Container,
    ctx: &SandboxContext,
) -> Result<BTreeMap<String, String>, AgentError> {
    let ns = Some(ctx.namespace.as_str());
    let err = |variable: &str, reason: String| AgentError::Env {
        container: c.name.clone(),
        variable: variable.to_owned(),
        reason,
    };
    let services = service_env(ctx);
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, what, name, optional) = if let Some(r) = &from.config_map_ref {
            (
                ctx.config_sources.config_map(ns, &r.name),
                "ConfigMap",
                &r.name,
                r.optional.unwrap_or(false),
            )
        } else if let Some(r) = &from.secret_ref {
            (
                ctx.config_sources.secret(ns, &r.name),
                "Secret",
                &r.name,
                r.optional.unwrap_or(false),
            )
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    env.insert(format!("{prefix}{k}"), v.clone());
                }
            }
            None if optional => {}
            None => {
                return Err(err(
                    &format!("envFrom {what} {name}"),
                    format!("{what} {name:?} not found in namespace {:?}", ctx.namespace),
                ));
            }
        }
    }
    for var in c.env.iter().flatten() {
        let value = if let Some(v) = var.value.as_deref().filter(|v| !v.is_empty()) {
            expand(v, |k| env.get(k).or_else(|| services.get(k)).cloned())
        } else if let Some(src) = &var.value_from {
            if let Some(f) = &src.field_ref {
                field_ref(pod, ctx, &f.field_path).ok_or_else(|| {
                    err(
                        &var.name,
                        format!("unsupported fieldRef path {:?}", f.field_path),
                    )
                })?
            } else if let Some(r) = &src.resource_field_ref {
                resource_ref(admitted, c, ctx, r).map_err(|e| err(&var.name, e))?
            } else if let Some(r) = &src.config_map_key_ref {
                match ctx
                    .config_sources
                    .config_map(ns, &r.name)
                    .map(|d| d.get(&r.key))
                {
                    Some(Some(v)) => v.clone(),
                    _ if r.optional.unwrap_or(false) => continue,
                    Some(None) => {
                        return Err(err(
                            &var.name,
                            format!("key {:?} not found in ConfigMap {:?}", r.key, r.name),
                        ));
                    }
                    None => {
                        return Err(err(
                            &var.name,
                            format!(
                                "ConfigMap {:?} not found in namespace {:?}",
                                r.name, ctx.namespace
                            ),
                        ));
                    }
                }
            } else if let Some(r) = &src.secret_key_ref {
                match ctx
                    .config_sources
                    .secret(ns, &r.name)
                    .map(|d| d.get(&r.key))
                {
                    Some(Some(v)) => v.clone(),
                    _ if r.optional.unwrap_or(false) => continue,
                    Some(None) => {
                        return Err(err(
                            &var.name,
                            format!("key {:?} not found in Secret {:?}", r.key, r.name),
                        ));
                    }
                    None => {
                        return Err(err(
                            &var.name,
                            format!(
                                "Secret {:?} not found in namespace {:?}",
                                r.name, ctx.namespace
                            ),
                        ));
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.insert(var.name.clone(), value);
    }
    for (k, v) in services {
        env.entry(k).or_insert(v);
    }
    Ok(env)
}

fn security(
    pod: &PodInput,
    c: &Container,
    image: &ImageConfig,
    groups: &[i64],
) -> Result<CriSecurity, AgentError> {
    let psc = pod.spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let mut run_as_user = sc.run_as_user.or(psc.run_as_user);
    let run_as_group = sc.run_as_group.or(psc.run_as_group);
    let mut run_as_username = String::new();
    if run_as_user.is_none() {
        // The kubelet asks the runtime for the image user (its part before ':').
        let user = image.user.split(':').next().unwrap_or("");
        if user.is_empty() {
            run_as_user = Some(0);
        } else if let Ok(uid) = user.parse::<i64>() {
            run_as_user = Some(uid);
        } else {
            run_as_username = user.to_owned();
        }
    }
    let strict_groups = match psc.supplemental_groups_policy.as_deref() {
        None | Some("Merge") => false,
        Some("Strict") => true,
        Some(other) => {
            return Err(AgentError::InvalidPod(format!(
                "unknown supplementalGroupsPolicy {other:?}"
            )));
        }
    };
    let privileged = sc.privileged.unwrap_or(false);
    let unmasked = sc.proc_mount.as_deref() == Some("Unmasked");
    let (masked_paths, readonly_paths) = if unmasked {
        (Vec::new(), Vec::new())
    } else {
        (
            KUBELET_MASKED_PATHS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        )
    };
    Ok(CriSecurity {
        run_as_user,
        run_as_username,
        run_as_group,
        supplemental_groups: groups.to_vec(),
        strict_groups,
        privileged,
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        capabilities: sc
            .capabilities
            .map(|caps| (caps.add.unwrap_or_default(), caps.drop.unwrap_or_default())),
        masked_paths,
        readonly_paths,
    })
}

/// The CRI configs of the pod's init containers and containers, in start order.
pub(crate) fn containers(
    pod: &PodInput,
    admitted: &AdmittedPod,
    images: &dyn Fn(&str, &str) -> Result<ImageConfig, AgentError>,
    ctx: &SandboxContext,
) -> Result<Vec<CriContainer>, AgentError> {
    let backings = volume_backings(&admitted.volumes)?;
    let psc = pod.spec.security_context.clone().unwrap_or_default();
    let mut groups = Vec::new();
    if let Some(g) = psc.fs_group {
        groups.push(g);
    }
    groups.extend(psc.supplemental_groups.iter().flatten());
    let qos = qos(admitted);
    let mut next_gpu = 0;
    let mut out = Vec::new();
    for c in admitted
        .init_containers
        .iter()
        .chain(admitted.containers.iter())
    {
        let image_ref = c.image.clone().unwrap_or_default();
        let image = images(&c.name, &image_ref)?;
        let env = container_env(pod, admitted, c, ctx)?;
        let lookup = |k: &str| env.get(k).cloned();
        let command = c
            .command
            .iter()
            .flatten()
            .map(|s| expand(s, lookup))
            .collect();
        let args = c.args.iter().flatten().map(|s| expand(s, lookup)).collect();
        out.push(CriContainer {
            name: c.name.clone(),
            image: image_ref,
            command,
            args,
            working_dir: c.working_dir.clone().unwrap_or_default(),
            mounts: container_mounts(c, &backings, &env)?,
            envs: env.into_iter().collect(),
            tty: c.tty.unwrap_or(false),
            security: security(pod, c, &image, &groups)?,
            resources: container_resources(c, qos, ctx),
            annotations: device_annotations(c, &mut next_gpu)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let map: BTreeMap<String, String> = [("A".to_owned(), "x".to_owned())].into();
        let f = |k: &str| map.get(k).cloned();
        assert_eq!(expand("$(A)-$(B)", f), "x-$(B)");
        assert_eq!(expand("$$(A)", f), "$(A)");
        assert_eq!(expand("a$", f), "a$");
        assert_eq!(expand("$(A", f), "$(A");
        assert_eq!(expand("$Aé$é", f), "$Aé$é");
        assert_eq!(expand("no vars", f), "no vars");
    }

    #[test]
    fn host_paths_under_proc_sys_and_dev_stay_on_the_host() {
        assert_eq!(
            host_path_source("/sys/fs/cgroup/"),
            HostSource::HostOnly("/sys/fs/cgroup".into())
        );
        assert_eq!(
            host_path_source("/dev/kvm"),
            HostSource::HostOnly("/dev/kvm".into())
        );
        assert_eq!(host_path_source("/data/../srv"), HostSource::Copied);
        assert_eq!(host_path_source("/system"), HostSource::Copied);
    }

    #[test]
    fn label_keys_are_parsed_from_field_paths() {
        assert_eq!(
            quoted_key("metadata.labels['a/b']", "metadata.labels"),
            Some("a/b")
        );
        assert_eq!(
            quoted_key("metadata.labels[\"x\"]", "metadata.labels"),
            Some("x")
        );
        assert_eq!(quoted_key("metadata.labels", "metadata.labels"), None);
    }
}
