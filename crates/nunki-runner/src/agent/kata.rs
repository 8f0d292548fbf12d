//! What the Kata runtime (Go shim, confidential-computing configuration) sends to the agent for
//! a containerd spec.
//!
//! Modelled on `src/runtime/virtcontainers/kata_agent.go` (`startSandbox`, `createContainer`,
//! `constrainGRPCSpec`, `handleShm`, `handleEphemeralStorage`, `handleBlkOCIMounts`),
//! `fs_share_linux.go` (files copied into the guest when the hypervisor shares no filesystem)
//! and `pkg/katautils/create.go`, with the settings of the `qemu-snp` class: guest image pull,
//! `shared_fs = none`, `emptydir_mode = block-encrypted`, `disable_guest_seccomp = true`.

use std::collections::BTreeMap;

use base64::Engine;

use super::containerd::CtrSpec;
use super::context::SandboxContext;
use super::kubelet::{CriSandbox, HostSource};
use super::oci::{
    CreateContainerRequest, CreateSandboxRequest, ExecProcessRequest, FsGroup, Process, Spec,
    Storage,
};
use super::rng::Rng;

const SHARED_DIR: &str = "/run/kata-containers/shared/containers";
const SANDBOX_SHM: &str = "/run/kata-containers/sandbox/shm";
const EPHEMERAL_DIR: &str = "/run/kata-containers/sandbox/ephemeral";
const STORAGE_DIR: &str = "/run/kata-containers/sandbox/storage";
const BUNDLE_DIR: &str = "/run/containerd/io.containerd.runtime.v2.task/k8s.io";

/// Whether a container is the sandbox (pause) container or a workload container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerType {
    Sandbox,
    Workload,
}

/// The `CreateSandboxRequest` of the pod.
pub(crate) fn create_sandbox(sandbox: &CriSandbox, ctx: &SandboxContext) -> CreateSandboxRequest {
    let shm = Storage {
        driver: "ephemeral".into(),
        driver_options: Vec::new(),
        source: "shm".into(),
        fstype: "tmpfs".into(),
        options: ["noexec", "nosuid", "nodev", "mode=1777"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain(std::iter::once(format!("size={}", ctx.shm_size)))
            .collect(),
        mount_point: SANDBOX_SHM.into(),
        fs_group: None,
        shared: false,
    };
    CreateSandboxRequest {
        hostname: sandbox.hostname.chars().take(64).collect(),
        dns: sandbox.dns.clone(),
        storages: vec![shm],
        sandbox_pidns: false,
        sandbox_id: ctx.sandbox_id.clone(),
        guest_hook_path: String::new(),
        kernel_modules: Vec::new(),
    }
}

/// Go's `json.Marshal` escapes `<`, `>` and `&` in strings.
fn go_json(value: &serde_json::Value) -> String {
    serde_json::to_string(value)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// The PCI path of the `device`-th block emptyDir of the pod.
fn block_device_path(device: usize) -> String {
    format!("02/{:02x}", device + 1)
}

fn basename(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// The `CreateContainerRequest` for a containerd spec.
pub(crate) fn create_container(
    ctr: CtrSpec,
    container_id: &str,
    kind: ContainerType,
    image_name: &str,
    fs_group: Option<i64>,
    ctx: &SandboxContext,
) -> CreateContainerRequest {
    let CtrSpec { mut spec, sources } = ctr;
    let mut rng = Rng::derived(ctx.seed, &format!("shared-files/{container_id}"));

    // katautils: the policy annotations never reach the agent; the runtime adds its own.
    spec.annotations
        .remove("io.katacontainers.config.agent.policy");
    spec.annotations
        .remove("io.katacontainers.config.hypervisor.cc_init_data");
    if kind == ContainerType::Sandbox {
        let netns = if spec.linux.namespaces.iter().any(|n| n.kind == "network") {
            ctx.netns_path.clone()
        } else {
            String::new()
        };
        spec.annotations
            .insert("nerdctl/network-namespace".into(), netns);
    }
    spec.annotations.insert(
        "io.katacontainers.pkg.oci.bundle_path".into(),
        format!("{BUNDLE_DIR}/{container_id}"),
    );
    spec.annotations.insert(
        "io.katacontainers.pkg.oci.container_type".into(),
        match kind {
            ContainerType::Sandbox => "pod_sandbox",
            ContainerType::Workload => "pod_container",
        }
        .into(),
    );

    // The rootfs: pulled inside the guest. The storage carries the container's annotations.
    let rootfs = format!("/run/kata-containers/{container_id}/rootfs");
    let metadata: BTreeMap<&String, &String> = spec.annotations.iter().collect();
    let pull = serde_json::json!({ "metadata": metadata });
    let mut storages = vec![Storage {
        driver: "image_guest_pull".into(),
        driver_options: vec![format!("image_guest_pull={}", go_json(&pull))],
        source: match kind {
            ContainerType::Sandbox => "pause".into(),
            ContainerType::Workload => image_name.to_owned(),
        },
        fstype: "overlay".into(),
        options: Vec::new(),
        mount_point: rootfs.clone(),
        fs_group: None,
        shared: false,
    }];
    spec.root.path = rootfs;

    let gid = fs_group.filter(|g| *g != 0).map(|g| g as u32);
    let mut ephemeral = Vec::new();
    let mut blocks = Vec::new();
    for (m, source) in spec.mounts.iter_mut().zip(sources.iter()) {
        match source {
            HostSource::Copied if m.type_ == "bind" && m.destination != "/dev/shm" => {
                m.source = format!(
                    "{SHARED_DIR}/{container_id}-{}-{}",
                    rng.hex(16),
                    basename(&m.destination)
                );
            }
            HostSource::EmptyDirMemory { volume } => {
                m.source = format!("{EPHEMERAL_DIR}/{volume}");
                m.type_ = "bind".into();
                ephemeral.push(Storage {
                    driver: "ephemeral".into(),
                    source: "tmpfs".into(),
                    fstype: "tmpfs".into(),
                    options: gid.map(|g| vec![format!("fsgid={g}")]).unwrap_or_default(),
                    mount_point: m.source.clone(),
                    ..Default::default()
                });
            }
            HostSource::EmptyDirDisk { device } => {
                let pci = block_device_path(*device);
                let mount_point = format!(
                    "{STORAGE_DIR}/{}",
                    base64::engine::general_purpose::URL_SAFE.encode(pci.as_bytes())
                );
                m.source.clone_from(&mount_point);
                blocks.push(Storage {
                    driver: "blk".into(),
                    driver_options: vec![
                        "encryption_key=ephemeral".into(),
                        "create_filesystem".into(),
                    ],
                    source: pci,
                    fstype: "ext4".into(),
                    options: Vec::new(),
                    mount_point,
                    fs_group: gid.map(|group_id| FsGroup {
                        group_id,
                        group_change_policy: 0,
                    }),
                    shared: true,
                });
            }
            _ => {}
        }
        // handleShm: the container's /dev/shm is the sandbox's.
        if m.destination == "/dev/shm" && m.type_ != "ephemeral" {
            m.type_ = "bind".into();
            m.options = vec!["rbind".into()];
            m.source = SANDBOX_SHM.into();
        }
    }
    storages.extend(ephemeral);
    storages.extend(blocks);

    // handlePidNamespace: a PID namespace with a path means "share the sandbox's".
    let sandbox_pidns = spec
        .linux
        .namespaces
        .iter()
        .any(|n| n.kind == "pid" && !n.path.is_empty());
    constrain(&mut spec);

    CreateContainerRequest {
        container_id: container_id.to_owned(),
        exec_id: container_id.to_owned(),
        string_user: None,
        devices: Vec::new(),
        storages,
        oci: spec,
        sandbox_pidns,
        shared_mounts: Vec::new(),
        stdin_port: 0,
        stdout_port: 0,
        stderr_port: 0,
    }
}

/// `constrainGRPCSpec` (plus the PID namespace removal of `handlePidNamespace`).
fn constrain(spec: &mut Spec) {
    spec.hooks = None;
    spec.linux.seccomp = None;
    let r = &mut spec.linux.resources;
    r.devices.clear();
    r.pids = None;
    r.block_io = None;
    r.network = None;
    if let Some(cpu) = &mut r.cpu {
        cpu.cpus.clear();
        cpu.mems.clear();
    }
    spec.linux
        .namespaces
        .retain(|n| !matches!(n.kind.as_str(), "cgroup" | "network" | "time" | "pid"));
    for n in &mut spec.linux.namespaces {
        n.path.clear();
    }
}

/// The `ExecProcessRequest` for running `argv` in a created container (`kubectl exec`): the
/// container's user, environment and working directory, no capabilities.
pub(crate) fn exec_process(
    container_id: &str,
    process: &Process,
    argv: &[String],
    tty: bool,
    exec_id: String,
) -> ExecProcessRequest {
    ExecProcessRequest {
        container_id: container_id.to_owned(),
        exec_id,
        string_user: None,
        process: Process {
            terminal: tty,
            console_size: None,
            user: super::oci::User {
                username: String::new(),
                ..process.user.clone()
            },
            args: argv.to_vec(),
            env: process.env.clone(),
            cwd: process.cwd.clone(),
            capabilities: None,
            rlimits: Vec::new(),
            no_new_privileges: false,
            apparmor_profile: String::new(),
            oom_score_adj: 0,
            selinux_label: String::new(),
        },
        stdin_port: 0,
        stdout_port: 0,
        stderr_port: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_json_escapes_html_characters() {
        let v = serde_json::json!({"b": "<&>", "a": 1});
        assert_eq!(go_json(&v), r#"{"a":1,"b":"\u003c\u0026\u003e"}"#);
    }

    #[test]
    fn block_paths_encode_like_kata() {
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE.encode("00/00"),
            "MDAvMDA="
        );
        assert_eq!(block_device_path(0), "02/01");
        assert_eq!(
            basename("/var/run/secrets/kubernetes.io/serviceaccount"),
            "serviceaccount"
        );
        assert_eq!(basename("/etc/hosts"), "hosts");
    }
}
