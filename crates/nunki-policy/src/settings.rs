//! Our defaults for the non-container sections of `policy_data`.
//!
//! The values are facts taken from Kata's `genpolicy-settings.json` (kata-containers 4.1.0), written
//! here as typed Rust. The serialized form of [`Settings`] is also the format of the override file:
//! a JSON object that is merged into the defaults (RFC 7396 merge patch), or a JSON array of RFC 6902
//! operations (the format of genpolicy's `genpolicy-settings.d` drop-ins).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::{PatchError, apply_json_patch};

/// Settings for the sections of `policy_data` that do not depend on the pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Path and regex macros, capability sets.
    pub common: CommonData,
    /// What `CreateSandboxRequest` may carry.
    pub sandbox: SandboxData,
    /// Per-request knobs (env regexes, CopyFile paths, exec allow-lists, network limits, streams).
    pub request_defaults: RequestDefaults,
    /// Device passthrough settings.
    pub devices: Devices,
    /// Facts about the target cluster.
    pub cluster_config: ClusterConfig,
    /// Facts about the Kata runtime.
    pub kata_config: KataConfig,
}

/// `policy_data.common`: macros that the rules substitute at evaluation time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonData {
    /// Regex of the directory of files shared with the guest.
    pub cpath: String,
    /// Root file system of a container; contains `$(bundle-id)`.
    pub root_path: String,
    /// Regex prefix of a shared file; contains `$(cpath)` and `$(bundle-id)`.
    pub sfprefix: String,
    /// Directory of the sandbox's block-device storages.
    pub spath: String,
    /// Regex of an IPv4 address.
    pub ipv4_a: String,
    /// Regex of a port number.
    pub ip_p: String,
    /// Regex of a service name as Kubernetes writes it into environment variable names.
    pub svc_name_downward_env: String,
    /// Regex of a DNS label (host names).
    pub dns_label: String,
    /// Capabilities of an unprivileged container (`$(default_caps)`).
    pub default_caps: Vec<String>,
    /// Capabilities of a privileged container (`$(privileged_caps)`).
    pub privileged_caps: Vec<String>,
}

/// `policy_data.sandbox`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxData {
    /// Storages a `CreateSandboxRequest` may carry (each compared field by field).
    pub storages: Vec<AgentStorage>,
}

/// The agent's `Storage` message as the policy compares it; every field is always written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentStorage {
    /// Storage driver (`ephemeral`, `local`, `blk`, ...).
    pub driver: String,
    /// Driver options.
    pub driver_options: Vec<String>,
    /// Source (device, path or regex).
    pub source: String,
    /// File system type.
    pub fstype: String,
    /// Mount options.
    pub options: Vec<String>,
    /// Mount point in the guest (path or regex).
    pub mount_point: String,
    /// `FSGroup` message, or `null`.
    pub fs_group: Option<FsGroup>,
    /// Whether the storage is shared between containers.
    #[serde(default)]
    pub shared: bool,
}

/// The agent's `FSGroup` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsGroup {
    /// Group ID.
    pub group_id: u32,
    /// `types.FSGroupChangePolicy` as an integer (0 = Always, 1 = OnRootMismatch).
    pub group_change_policy: u32,
}

/// `policy_data.request_defaults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDefaults {
    /// CreateContainerRequest knobs.
    #[serde(rename = "CreateContainerRequest")]
    pub create_container: CreateContainerDefaults,
    /// Regexes (prefixes) of paths the host may copy files to.
    #[serde(rename = "CopyFileRequest")]
    pub copy_file: Vec<String>,
    /// Commands the host may run in every container.
    #[serde(rename = "ExecProcessRequest")]
    pub exec_process: ExecProcessDefaults,
    /// Route restrictions.
    #[serde(rename = "UpdateRoutesRequest")]
    pub update_routes: UpdateRoutesDefaults,
    /// Interface restrictions.
    #[serde(rename = "UpdateInterfaceRequest")]
    pub update_interface: UpdateInterfaceDefaults,
    /// ARP neighbour restrictions.
    #[serde(rename = "AddARPNeighborsRequest")]
    pub add_arp_neighbors: AddArpNeighborsDefaults,
    /// Whether the host may close a process's stdin.
    #[serde(rename = "CloseStdinRequest")]
    pub close_stdin: bool,
    /// Whether the host may read container and exec output (container logs).
    #[serde(rename = "ReadStreamRequest")]
    pub read_stream: bool,
    /// Whether the host may change ephemeral mounts.
    #[serde(rename = "UpdateEphemeralMountsRequest")]
    pub update_ephemeral_mounts: bool,
    /// Whether the host may write to a process's stdin.
    #[serde(rename = "WriteStreamRequest")]
    pub write_stream: bool,
    /// Whether the host may read diagnostic data.
    #[serde(rename = "GetDiagnosticDataRequest")]
    pub get_diagnostic_data: bool,
}

/// `request_defaults.CreateContainerRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContainerDefaults {
    /// Environment variables matching one of these regexes are always allowed (service links etc.).
    pub allow_env_regex: Vec<String>,
}

/// `request_defaults.ExecProcessRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecProcessDefaults {
    /// Deprecated genpolicy field, kept so that old settings files still parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<String>>,
    /// Exact argument vectors allowed in every container.
    pub allowed_commands: Vec<Vec<String>>,
    /// Regexes a space-joined command line must match completely.
    pub regex: Vec<String>,
}

/// `request_defaults.UpdateRoutesRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoutesDefaults {
    /// Devices no route may use.
    pub forbidden_device_names: Vec<String>,
    /// Loopback address regexes.
    pub forbidden_source_regex: Vec<String>,
}

/// `request_defaults.UpdateInterfaceRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateInterfaceDefaults {
    /// Bit mask of the interface flags the host may set (IFF_NOARP).
    pub allow_raw_flags: u32,
    /// Interface names the host may not configure.
    pub forbidden_names: Vec<String>,
    /// Hardware addresses the host may not configure.
    pub forbidden_hw_addrs: Vec<String>,
}

/// `request_defaults.AddARPNeighborsRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddArpNeighborsDefaults {
    /// Devices no neighbour may use.
    pub forbidden_device_names: Vec<String>,
    /// Address regexes no neighbour may use.
    pub forbidden_cidrs_regex: Vec<String>,
    /// Allowed neighbour states (NUD_*).
    pub allowed_states: Vec<u32>,
}

/// `devices` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Devices {
    /// VFIO passthrough (GPUs).
    pub vfio: VfioDevices,
}

/// `devices.vfio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfioDevices {
    /// Container path prefix of VFIO devices; the runtime appends the device number.
    pub device_path: String,
    /// Regex of CDI annotation keys that name a VFIO device (generation only).
    pub anno_key_regex: String,
    /// NVIDIA specifics.
    pub nvidia: VfioNvidiaDevices,
}

/// `devices.vfio.nvidia` (generation only; not written into `policy_data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfioNvidiaDevices {
    /// Regex of CDI annotation values that name an NVIDIA GPU.
    pub gpu_anno_value_regex: String,
    /// Device type of a passed-through NVIDIA GPU.
    pub gpu_gk_device_type: String,
    /// Resource names whose limits request passthrough GPUs.
    pub pgpu_resource_keys: Vec<String>,
}

/// `cluster_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The pause image of the target cluster (container 0 of every policy).
    pub pause_container_image: String,
    /// Whether the guest pulls images itself.
    pub guest_pull: bool,
    /// How emptyDir volumes appear: `shared-fs`, `block-encrypted` or `block-plain`.
    pub emptydir_type: String,
    /// cgroup v2 mount options that newer kernels add.
    #[serde(default)]
    pub cgroup_mount_extras_allowed: Vec<String>,
}

/// `kata_config`: facts about the Kata runtime (not part of `policy_data` itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KataConfig {
    /// The OCI version the runtime sends (`OCI.Version`).
    pub oci_version: String,
    /// Whether ConfigMaps and Secrets arrive as storages instead of shared files.
    #[serde(default)]
    pub enable_configmap_secret_storages: bool,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The override file could not be read.
    #[error("policy settings: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The override is not JSON.
    #[error("policy settings: {what} is not valid JSON: {source}")]
    Json {
        /// Which override.
        what: String,
        /// The parser error.
        source: serde_json::Error,
    },
    /// An RFC 6902 operation failed.
    #[error("policy settings: {what}: {source}")]
    Patch {
        /// Which override.
        what: String,
        /// The failed operation.
        source: PatchError,
    },
    /// The overridden settings do not have the expected shape.
    #[error(
        "policy settings: after applying {what}, the settings are invalid: {source} (write keys and types exactly as in `Settings::default()`)"
    )]
    Shape {
        /// Which override.
        what: String,
        /// The deserialization error.
        source: serde_json::Error,
    },
    /// An override is neither a JSON object nor an array of patch operations.
    #[error(
        "policy settings: {what} must be a JSON object (merged into the defaults) or an array of RFC 6902 operations"
    )]
    Kind {
        /// Which override.
        what: String,
    },
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            common: CommonData {
                cpath: "/run/kata-containers/shared/containers(?:/passthrough)?".into(),
                root_path: "/run/kata-containers/$(bundle-id)/rootfs".into(),
                sfprefix: "^$(cpath)/(watchable/)?$(bundle-id)-[a-z0-9]{16}-".into(),
                spath: "/run/kata-containers/sandbox/storage".into(),
                ipv4_a: "(([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.){3}([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])".into(),
                ip_p: "[0-9]{1,5}".into(),
                svc_name_downward_env: "[A-Z](?:[A-Z0-9_]{0,61}[A-Z0-9])?".into(),
                dns_label: "[a-zA-Z0-9_\\.\\-]+".into(),
                default_caps: strings(crate::data::settings::DEFAULT_CAPS),
                privileged_caps: strings(crate::data::settings::PRIVILEGED_CAPS),
            },
            sandbox: SandboxData {
                storages: vec![AgentStorage {
                    driver: "ephemeral".into(),
                    driver_options: vec![],
                    source: "shm".into(),
                    fstype: "tmpfs".into(),
                    options: strings(&["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"]),
                    mount_point: "/run/kata-containers/sandbox/shm".into(),
                    fs_group: None,
                    shared: false,
                }],
            },
            request_defaults: RequestDefaults {
                create_container: CreateContainerDefaults {
                    allow_env_regex: strings(&[
                        "^HOSTNAME=$(dns_label)$",
                        "^$(svc_name_downward_env)_PORT_$(ip_p)_(TCP|UDP)=(tcp|udp)://$(ipv4_a):$(ip_p)$",
                        "^$(svc_name_downward_env)_PORT_$(ip_p)_(TCP|UDP)_PROTO=(tcp|udp)$",
                        "^$(svc_name_downward_env)_PORT_$(ip_p)_(TCP|UDP)_PORT=$(ip_p)$",
                        "^$(svc_name_downward_env)_PORT_$(ip_p)_(TCP|UDP)_ADDR=$(ipv4_a)$",
                        "^$(svc_name_downward_env)_SERVICE_HOST=$(ipv4_a)$",
                        "^$(svc_name_downward_env)_SERVICE_PORT=$(ip_p)$",
                        "^$(svc_name_downward_env)_SERVICE_PORT_$(dns_label)=$(ip_p)$",
                        "^$(svc_name_downward_env)_PORT=(tcp|udp)://$(ipv4_a):$(ip_p)$",
                        "^JOB_COMPLETION_INDEX=[0-9]+$",
                        "^AZURE_CLIENT_ID=[A-Fa-f0-9-]*$",
                        "^AZURE_TENANT_ID=[A-Fa-f0-9-]*$",
                        "^AZURE_FEDERATED_TOKEN_FILE=/var/run/secrets/azure/tokens/azure-identity-token$",
                        "^AZURE_AUTHORITY_HOST=https://login\\.microsoftonline\\.com/$",
                        "^TERM=xterm$",
                    ]),
                },
                copy_file: strings(&["$(sfprefix)"]),
                exec_process: ExecProcessDefaults {
                    commands: None,
                    allowed_commands: vec![],
                    regex: vec![],
                },
                update_routes: UpdateRoutesDefaults {
                    forbidden_device_names: strings(&["lo"]),
                    forbidden_source_regex: strings(&[
                        "^(?:0{0,4}:){0,7}0{0,3}1$",
                        "^127\\.(?:[0-9]{1,3}\\.){2}[0-9]{1,3}$",
                    ]),
                },
                update_interface: UpdateInterfaceDefaults {
                    allow_raw_flags: 128,
                    forbidden_names: strings(&["lo"]),
                    forbidden_hw_addrs: strings(&["00:00:00:00:00:00"]),
                },
                add_arp_neighbors: AddArpNeighborsDefaults {
                    forbidden_device_names: strings(&["lo"]),
                    forbidden_cidrs_regex: strings(&["^127\\.(?:[0-9]{1,3}\\.){2}[0-9]{1,3}$"]),
                    allowed_states: vec![2, 128],
                },
                close_stdin: false,
                read_stream: false,
                update_ephemeral_mounts: false,
                write_stream: false,
                get_diagnostic_data: false,
            },
            devices: Devices {
                vfio: VfioDevices {
                    device_path: "/dev/vfio/devices/vfio".into(),
                    anno_key_regex: "^cdi\\.k8s\\.io/vfio[0-9]+$".into(),
                    nvidia: VfioNvidiaDevices {
                        gpu_anno_value_regex: "^nvidia\\.com/gpu=[0-9]+$".into(),
                        gpu_gk_device_type: "vfio-pci-gk".into(),
                        pgpu_resource_keys: strings(&["nvidia.com/pgpu"]),
                    },
                },
            },
            cluster_config: ClusterConfig {
                pause_container_image: "mcr.microsoft.com/oss/kubernetes/pause:3.6".into(),
                guest_pull: true,
                emptydir_type: "block-encrypted".into(),
                cgroup_mount_extras_allowed: strings(&["nsdelegate", "memory_recursiveprot"]),
            },
            kata_config: KataConfig {
                oci_version: "1.1.0".into(),
                enable_configmap_secret_storages: false,
            },
        }
    }
}

impl Settings {
    /// The defaults with one override applied: a JSON object is merged into the defaults
    /// (RFC 7396: objects merge key by key, `null` deletes, anything else replaces), a JSON array
    /// is a list of RFC 6902 operations. `what` names the override in errors (e.g. a file name).
    pub fn with_override(self, what: &str, override_json: &str) -> Result<Self, SettingsError> {
        let patch: Value =
            serde_json::from_str(override_json).map_err(|source| SettingsError::Json {
                what: what.to_string(),
                source,
            })?;
        self.with_override_value(what, &patch)
    }

    /// Like [`Settings::with_override`], for an already parsed override.
    pub fn with_override_value(self, what: &str, patch: &Value) -> Result<Self, SettingsError> {
        let mut doc = self.to_value();
        match patch {
            Value::Object(_) => merge_patch(&mut doc, patch),
            Value::Array(_) => {
                doc = apply_json_patch(doc, patch).map_err(|source| SettingsError::Patch {
                    what: what.to_string(),
                    source,
                })?;
            }
            _ => {
                return Err(SettingsError::Kind {
                    what: what.to_string(),
                });
            }
        }
        serde_json::from_value(doc).map_err(|source| SettingsError::Shape {
            what: what.to_string(),
            source,
        })
    }

    /// The defaults with the override file at `path` applied.
    pub fn from_override_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::default().with_override(&path.display().to_string(), &text)
    }

    /// Applies every `*.json` file of `dir`, in file-name order (genpolicy's drop-in directory).
    pub fn with_drop_ins(mut self, dir: &Path) -> Result<Self, SettingsError> {
        let read_err = |source| SettingsError::Read {
            path: dir.display().to_string(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
                path: path.display().to_string(),
                source,
            })?;
            self = self.with_override(&path.display().to_string(), &text)?;
        }
        Ok(self)
    }

    /// The settings as JSON, in the override-file format.
    pub fn to_value(&self) -> Value {
        to_json(self)
    }

    /// `policy_data` for these settings and the given `containers` array, in genpolicy's shape:
    /// `containers, common, sandbox, request_defaults, devices, cluster_config`. Generation-only
    /// fields (`kata_config`, the VFIO annotation regexes and NVIDIA knobs) are left out.
    pub fn policy_data(&self, containers: Value) -> Value {
        json!({
            "containers": containers,
            "common": to_json(&self.common),
            "sandbox": to_json(&self.sandbox),
            "request_defaults": to_json(&self.request_defaults),
            "devices": {"vfio": {"device_path": self.devices.vfio.device_path, "nvidia": {}}},
            "cluster_config": to_json(&self.cluster_config),
        })
    }
}

fn to_json<T: Serialize>(value: &T) -> Value {
    // Plain structs of strings, numbers and vectors always serialize; `Null` would only hide
    // a bug that the tests of the defaults catch.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target_map) = target {
        for (key, value) in patch_map {
            if value.is_null() {
                target_map.remove(key);
            } else {
                merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn defaults_round_trip_through_json() {
        let s = Settings::default();
        let back: Settings = serde_json::from_value(s.to_value()).unwrap();
        assert_eq!(s, back);
    }

    #[test]
    fn merge_override_changes_one_value_and_keeps_the_rest() {
        let s = Settings::default()
            .with_override(
                "test",
                r#"{"request_defaults": {"ReadStreamRequest": true}, "kata_config": {"oci_version": "1.2.0"}}"#,
            )
            .unwrap();
        assert!(s.request_defaults.read_stream);
        assert_eq!(s.kata_config.oci_version, "1.2.0");
        assert_eq!(s.common, Settings::default().common);
    }

    #[test]
    fn rfc6902_override_and_unknown_keys() {
        let s = Settings::default()
            .with_override(
                "drop-in",
                r#"[{"op": "replace", "path": "/cluster_config/guest_pull", "value": false},
                    {"op": "add", "path": "/request_defaults/ExecProcessRequest/allowed_commands/-", "value": ["ls"]}]"#,
            )
            .unwrap();
        assert!(!s.cluster_config.guest_pull);
        assert_eq!(
            s.request_defaults.exec_process.allowed_commands,
            vec![vec!["ls".to_string()]]
        );

        let err = Settings::default()
            .with_override("typo.json", r#"{"request_defaults": {"ReadStream": true}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("typo.json"), "{err}");
        assert!(err.to_string().contains("ReadStream"), "{err}");

        let err = Settings::default()
            .with_override(
                "bad.json",
                r#"[{"op": "replace", "path": "/nope/x", "value": 1}]"#,
            )
            .unwrap_err();
        assert!(err.to_string().contains("/nope/x"), "{err}");
    }

    #[test]
    fn policy_data_has_genpolicy_shape() {
        let pd = Settings::default().policy_data(json!([]));
        let keys: Vec<&str> = pd.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "containers",
            "common",
            "sandbox",
            "request_defaults",
            "devices",
            "cluster_config",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert_eq!(keys.len(), 6);
        assert_eq!(
            pd["devices"],
            json!({"vfio": {"device_path": "/dev/vfio/devices/vfio", "nvidia": {}}})
        );
        // Sandbox storages are compared as whole objects: every field must be present.
        assert_eq!(pd["sandbox"]["storages"][0]["shared"], json!(false));
        assert_eq!(pd["sandbox"]["storages"][0]["fs_group"], Value::Null);
        assert!(
            pd["request_defaults"]["ExecProcessRequest"]
                .get("commands")
                .is_none()
        );
    }
}
