//! The agent's request types in their serde form.
//!
//! Field names and shapes follow the Kata agent protobufs (`agent.proto`, `oci.proto`) as the
//! agent serializes them for its policy: every field present, unset messages as `null`,
//! repeated fields as arrays, enums as integers, and a proto field named `type` spelled
//! `type_`. OCI fields keep their capitalized proto names (`Process`, `UID`, `OOMScoreAdj`).

use std::collections::BTreeMap;

use serde::Serialize;

/// `grpc.Spec` (oci.proto).
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Spec {
    pub version: String,
    pub process: Process,
    pub root: Root,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    pub hooks: Option<()>,
    pub annotations: BTreeMap<String, String>,
    pub linux: Linux,
    pub solaris: Option<()>,
    pub windows: Option<()>,
}

/// `grpc.Process`.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Process {
    pub terminal: bool,
    pub console_size: Option<()>,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// `None` serializes as `null`: exec processes carry no capabilities.
    pub capabilities: Option<Capabilities>,
    pub rlimits: Vec<()>,
    pub no_new_privileges: bool,
    pub apparmor_profile: String,
    #[serde(rename = "OOMScoreAdj")]
    pub oom_score_adj: i64,
    pub selinux_label: String,
}

/// `grpc.User`.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub(crate) struct User {
    #[serde(rename = "UID")]
    pub uid: u32,
    #[serde(rename = "GID")]
    pub gid: u32,
    #[serde(rename = "AdditionalGids")]
    pub additional_gids: Vec<u32>,
    #[serde(rename = "Username")]
    pub username: String,
}

/// `grpc.LinuxCapabilities`.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub inheritable: Vec<String>,
    pub permitted: Vec<String>,
    pub ambient: Vec<String>,
}

/// `grpc.Root`.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Root {
    pub path: String,
    pub readonly: bool,
}

/// `grpc.Mount`.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub(crate) struct Mount {
    pub destination: String,
    pub source: String,
    #[serde(rename = "type_")]
    pub type_: String,
    pub options: Vec<String>,
}

/// `grpc.Linux`.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Linux {
    #[serde(rename = "UIDMappings")]
    pub uid_mappings: Vec<()>,
    #[serde(rename = "GIDMappings")]
    pub gid_mappings: Vec<()>,
    pub sysctl: BTreeMap<String, String>,
    pub resources: Resources,
    pub cgroups_path: String,
    pub namespaces: Vec<Namespace>,
    pub devices: Vec<()>,
    pub seccomp: Option<()>,
    pub rootfs_propagation: String,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub mount_label: String,
    pub intel_rdt: Option<()>,
}

/// `grpc.LinuxNamespace`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Namespace {
    #[serde(rename = "Type")]
    pub kind: String,
    pub path: String,
}

/// `grpc.LinuxResources`, after the Kata runtime dropped what it does not pass on.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Resources {
    #[serde(rename = "Devices")]
    pub devices: Vec<()>,
    #[serde(rename = "Memory")]
    pub memory: Option<Memory>,
    #[serde(rename = "CPU")]
    pub cpu: Option<Cpu>,
    #[serde(rename = "Pids")]
    pub pids: Option<()>,
    #[serde(rename = "BlockIO")]
    pub block_io: Option<()>,
    #[serde(rename = "HugepageLimits")]
    pub hugepage_limits: Vec<()>,
    #[serde(rename = "Network")]
    pub network: Option<()>,
}

/// `grpc.LinuxMemory`.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Memory {
    #[serde(rename = "Limit")]
    pub limit: i64,
    #[serde(rename = "Reservation")]
    pub reservation: i64,
    #[serde(rename = "Swap")]
    pub swap: i64,
    #[serde(rename = "Kernel")]
    pub kernel: i64,
    #[serde(rename = "KernelTCP")]
    pub kernel_tcp: i64,
    #[serde(rename = "Swappiness")]
    pub swappiness: u64,
    #[serde(rename = "DisableOOMKiller")]
    pub disable_oom_killer: bool,
}

/// `grpc.LinuxCPU`.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Cpu {
    pub shares: u64,
    pub quota: i64,
    pub period: u64,
    pub realtime_runtime: i64,
    pub realtime_period: u64,
    pub cpus: String,
    pub mems: String,
}

/// `grpc.Storage` (agent.proto).
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub(crate) struct Storage {
    pub driver: String,
    pub driver_options: Vec<String>,
    pub source: String,
    pub fstype: String,
    pub options: Vec<String>,
    pub mount_point: String,
    pub fs_group: Option<FsGroup>,
    pub shared: bool,
}

/// `grpc.FSGroup`; `group_change_policy` is the enum `FSGroupChangePolicy` as an integer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct FsGroup {
    pub group_id: u32,
    pub group_change_policy: i32,
}

/// `grpc.Device` (agent.proto).
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub(crate) struct Device {
    pub id: String,
    #[serde(rename = "type_")]
    pub type_: String,
    pub vm_path: String,
    pub container_path: String,
    pub options: Vec<String>,
}

/// `grpc.CreateContainerRequest`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CreateContainerRequest {
    pub container_id: String,
    pub exec_id: String,
    pub string_user: Option<()>,
    pub devices: Vec<Device>,
    pub storages: Vec<Storage>,
    #[serde(rename = "OCI")]
    pub oci: Spec,
    pub sandbox_pidns: bool,
    pub shared_mounts: Vec<()>,
    pub stdin_port: u32,
    pub stdout_port: u32,
    pub stderr_port: u32,
}

/// `grpc.CreateSandboxRequest`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CreateSandboxRequest {
    pub hostname: String,
    pub dns: Vec<String>,
    pub storages: Vec<Storage>,
    pub sandbox_pidns: bool,
    pub sandbox_id: String,
    pub guest_hook_path: String,
    pub kernel_modules: Vec<()>,
}

/// `grpc.ExecProcessRequest`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExecProcessRequest {
    pub container_id: String,
    pub exec_id: String,
    pub string_user: Option<()>,
    pub process: Process,
    pub stdin_port: u32,
    pub stdout_port: u32,
    pub stderr_port: u32,
}
