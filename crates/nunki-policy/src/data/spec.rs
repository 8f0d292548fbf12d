//! The shape of `policy_data.containers[]`: genpolicy's `ContainerPolicy`, field for field.
//!
//! Field names follow what the Kata agent sends (`OCI.Process.User.UID`, `type_`, …) and what
//! genpolicy writes. Fields are declared in sorted key order, so serializing these structs
//! directly gives the same bytes as serializing them through `serde_json::Value` (whose objects
//! are sorted), which is what `render_policy` does. Empty `Mounts`, `Annotations`, `Args`,
//! `Env`, `Cwd` and `Sysctl` are omitted, as genpolicy does.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Everything the policy allows for one container of the pod (index 0 is the pause container).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPolicy {
    /// Compared with `CreateContainerRequest.OCI`.
    #[serde(rename = "OCI")]
    pub oci: KataSpec,
    /// Compared with `CreateContainerRequest.devices`.
    pub devices: Vec<Device>,
    /// Command lines that `ExecProcessRequest` may run in this container (exec probes, hooks).
    pub exec_commands: Vec<Vec<String>>,
    /// Annotation key regex → value regex for annotations the runtime may add.
    pub runtime_anno_patterns: BTreeMap<String, String>,
    /// Compared with `CreateContainerRequest.sandbox_pidns`.
    pub sandbox_pidns: bool,
    /// Compared with `CreateContainerRequest.storages`.
    pub storages: Vec<Storage>,
}

/// The OCI runtime spec subset the policy checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KataSpec {
    /// Annotations (values are regexes for some keys, literal for others, as the rules decide).
    #[serde(
        rename = "Annotations",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Linux-specific settings.
    #[serde(rename = "Linux")]
    pub linux: Linux,
    /// Mounts on top of the root file system.
    #[serde(rename = "Mounts", default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// The container process.
    #[serde(rename = "Process")]
    pub process: Process,
    /// The root file system.
    #[serde(rename = "Root")]
    pub root: Root,
    /// OCI runtime spec version the runtime announces.
    #[serde(rename = "Version")]
    pub version: String,
}

/// `OCI.Process`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Command line.
    #[serde(rename = "Args", default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Capability sets; `["$(default_caps)"]` or `["$(privileged_caps)"]` stand for the settings'
    /// lists.
    #[serde(rename = "Capabilities")]
    pub capabilities: Capabilities,
    /// Working directory.
    #[serde(rename = "Cwd", default, skip_serializing_if = "String::is_empty")]
    pub cwd: String,
    /// Environment (`NAME=value`; order does not matter to the rules).
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `no_new_privs`.
    #[serde(rename = "NoNewPrivileges")]
    pub no_new_privileges: bool,
    /// Whether the process gets a terminal.
    #[serde(rename = "Terminal")]
    pub terminal: bool,
    /// User and groups.
    #[serde(rename = "User")]
    pub user: User,
}

/// `OCI.Process.User`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Supplementary groups (a set; serialized sorted).
    #[serde(rename = "AdditionalGids")]
    pub additional_gids: BTreeSet<u32>,
    /// Primary group id.
    #[serde(rename = "GID")]
    pub gid: u32,
    /// User id.
    #[serde(rename = "UID")]
    pub uid: u32,
    /// Always empty: the runtime resolves names before it sends the request.
    #[serde(rename = "Username")]
    pub username: String,
}

/// `OCI.Process.Capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Ambient set.
    #[serde(rename = "Ambient")]
    pub ambient: Vec<String>,
    /// Bounding set.
    #[serde(rename = "Bounding")]
    pub bounding: Vec<String>,
    /// Effective set.
    #[serde(rename = "Effective")]
    pub effective: Vec<String>,
    /// Inheritable set.
    #[serde(rename = "Inheritable")]
    pub inheritable: Vec<String>,
    /// Permitted set.
    #[serde(rename = "Permitted")]
    pub permitted: Vec<String>,
}

/// `OCI.Root`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Path regex (`$(root_path)`).
    #[serde(rename = "Path")]
    pub path: String,
    /// Read-only root file system.
    #[serde(rename = "Readonly", default)]
    pub readonly: bool,
}

/// One entry of `OCI.Mounts` (the agent's `Mount` field names, including `type_`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Path in the container.
    pub destination: String,
    /// Mount options, compared in order.
    pub options: Vec<String>,
    /// Source, literal or a regex with macros such as `$(sfprefix)`.
    #[serde(default)]
    pub source: String,
    /// Mount type.
    pub type_: String,
}

/// `OCI.Linux`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Linux {
    /// Devices created in the container.
    #[serde(rename = "Devices")]
    pub devices: Vec<LinuxDevice>,
    /// Paths masked in the container.
    #[serde(rename = "MaskedPaths")]
    pub masked_paths: Vec<String>,
    /// Namespaces created for the container.
    #[serde(rename = "Namespaces")]
    pub namespaces: Vec<Namespace>,
    /// Paths made read-only in the container.
    #[serde(rename = "ReadonlyPaths")]
    pub readonly_paths: Vec<String>,
    /// Allowed sysctls.
    #[serde(rename = "Sysctl", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
}

/// `OCI.Linux.Namespaces[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Path of a namespace to join; empty for a new one.
    #[serde(rename = "Path")]
    pub path: String,
    /// `ipc`, `uts`, `mount`, …
    #[serde(rename = "Type")]
    pub type_: String,
}

/// `OCI.Linux.Devices[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxDevice {
    /// Path in the container.
    #[serde(rename = "Path")]
    pub path: String,
    /// Device type (empty: any).
    #[serde(rename = "Type")]
    pub type_: String,
}

/// The agent's `Storage` message (all fields always present: the rules compare with `==`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    /// Storage driver (`local`, `ephemeral`, `blk`, …).
    pub driver: String,
    /// Driver options.
    pub driver_options: Vec<String>,
    /// Group ownership to apply, `null` when none.
    pub fs_group: Option<FsGroup>,
    /// File system type.
    pub fstype: String,
    /// Mount point in the guest (literal or regex with macros).
    pub mount_point: String,
    /// Mount options.
    pub options: Vec<String>,
    /// Whether the storage is shared between containers.
    pub shared: bool,
    /// Source (literal or regex).
    pub source: String,
}

/// The agent's `FSGroup` message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsGroup {
    /// `FSGroupChangePolicy` as its number (0 = `Always`).
    pub group_change_policy: i32,
    /// Group id.
    pub group_id: u32,
}

/// The agent's `Device` message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Path in the container.
    pub container_path: String,
    /// Device id (empty: not checked).
    pub id: String,
    /// Options.
    pub options: Vec<String>,
    /// Device type.
    pub type_: String,
    /// Path in the VM.
    pub vm_path: String,
}
