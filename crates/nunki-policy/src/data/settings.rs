//! Per-container generator settings, with genpolicy's default values.
//!
//! These are the container-related sections of genpolicy's settings (`pause_container`,
//! `other_container`, `volumes`, `mount_destinations`, the generation-time part of
//! `devices.vfio`) plus the few values of `common`, `kata_config` and `cluster_config` the
//! container data depends on. The sections that are copied into `policy_data` as they are
//! (`common`, `sandbox`, `request_defaults`, `devices`, `cluster_config`) live in
//! [`crate::settings`]; keep the shared values (capability lists, pause image, emptyDir type)
//! equal on both sides.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{LinuxDevice, Mount, Root};

/// What the generator needs to know besides the pod and its images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSettings {
    /// Fragment applied to the pause container (container 0).
    pub pause_container: ContainerFragment,
    /// Fragment applied to every other container.
    pub other_container: ContainerFragment,
    /// Mount and storage templates for volumes.
    pub volumes: VolumeTemplates,
    /// Settings mounts that are kept even when no volume mount asks for them.
    pub mount_destinations: Vec<String>,
    /// VFIO / GPU pass-through.
    pub vfio: VfioSettings,
    /// OCI runtime spec version the runtime announces (`kata_config.oci_version`).
    pub oci_version: String,
    /// Whether ConfigMap and Secret volumes get a storage (`kata_config`).
    pub enable_configmap_secret_storages: bool,
    /// The cluster's pause image (`cluster_config.pause_container_image`).
    pub pause_container_image: String,
    /// Whether images are pulled inside the guest (`cluster_config.guest_pull`).
    pub guest_pull: bool,
    /// How emptyDir volumes are provided (`cluster_config.emptydir_type`).
    pub emptydir_type: EmptyDirType,
    /// containerd's capabilities of an unprivileged container (`common.default_caps`).
    pub default_caps: Vec<String>,
    /// Capabilities of a privileged container (`common.privileged_caps`).
    pub privileged_caps: Vec<String>,
}

/// How emptyDir volumes (other than `medium: Memory`) reach the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmptyDirType {
    /// A host directory shared over virtio-fs.
    #[serde(rename = "shared-fs")]
    SharedFs,
    /// A block device encrypted with an ephemeral key inside the guest.
    #[serde(rename = "block-encrypted")]
    BlockEncrypted,
    /// A plain block device.
    #[serde(rename = "block-plain")]
    BlockPlain,
}

/// An OCI fragment merged into the generated container data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerFragment {
    /// Root file system (the path macro; `Readonly` is taken from the pod spec).
    #[serde(rename = "Root")]
    pub root: Root,
    /// Mounts that replace a containerd default with the same destination or are appended.
    #[serde(rename = "Mounts", default)]
    pub mounts: Vec<Mount>,
    /// Annotations added unless the pod sets the same key.
    #[serde(rename = "Annotations", default)]
    pub annotations: BTreeMap<String, String>,
    /// Process additions.
    #[serde(rename = "Process", default)]
    pub process: ProcessFragment,
    /// Linux additions.
    #[serde(rename = "Linux", default)]
    pub linux: LinuxFragment,
}

/// Process fields of a fragment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessFragment {
    /// Arguments appended when missing.
    #[serde(rename = "Args", default)]
    pub args: Vec<String>,
    /// Environment entries appended when missing.
    #[serde(rename = "Env", default)]
    pub env: Vec<String>,
}

/// Linux fields of a fragment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinuxFragment {
    /// Sysctls always allowed.
    #[serde(rename = "Sysctl", default)]
    pub sysctl: BTreeMap<String, String>,
    /// Masked paths replacing containerd's defaults when not empty.
    #[serde(rename = "MaskedPaths", default)]
    pub masked_paths: Vec<String>,
    /// Read-only paths replacing containerd's defaults when not empty.
    #[serde(rename = "ReadonlyPaths", default)]
    pub readonly_paths: Vec<String>,
    /// Devices always added.
    #[serde(rename = "Devices", default)]
    pub devices: Vec<LinuxDevice>,
}

/// Templates for the mounts and storages of volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeTemplates {
    /// emptyDir shared from the host (`shared-fs`).
    #[serde(rename = "emptyDir")]
    pub empty_dir: VolumeTemplate,
    /// emptyDir on an encrypted block device (`block-encrypted`).
    #[serde(rename = "emptyDir_encrypted")]
    pub empty_dir_encrypted: VolumeTemplate,
    /// emptyDir on a plain block device (`block-plain`).
    #[serde(rename = "emptyDir_plain")]
    pub empty_dir_plain: VolumeTemplate,
    /// emptyDir with `medium: Memory` (tmpfs in the guest).
    #[serde(rename = "emptyDir_memory")]
    pub empty_dir_memory: VolumeTemplate,
    /// ConfigMap and Secret volumes.
    #[serde(rename = "configMap")]
    pub config_map: VolumeTemplate,
    /// Volumes declared by the image config (`Volumes`).
    pub image_volume: VolumeTemplate,
}

/// One volume template (genpolicy's field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeTemplate {
    /// Mount type.
    #[serde(default)]
    pub mount_type: String,
    /// Mount source prefix (regex); the volume or file name and `$` are appended.
    #[serde(default)]
    pub mount_source: String,
    /// Storage mount point; with a trailing `/` the volume name and `$` are appended.
    #[serde(default)]
    pub mount_point: String,
    /// Storage driver.
    #[serde(default)]
    pub driver: String,
    /// Storage driver options.
    #[serde(default)]
    pub driver_options: Vec<String>,
    /// Storage source.
    #[serde(default)]
    pub source: String,
    /// Storage file system type (for image volumes: the mount type).
    #[serde(default)]
    pub fstype: String,
    /// Storage options (for ConfigMaps and image volumes: the mount options).
    #[serde(default)]
    pub options: Vec<String>,
    /// Storage `shared` flag.
    #[serde(default)]
    pub shared: bool,
}

/// VFIO device pass-through (only the generation-time values; `device_path` is also in
/// `policy_data.devices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfioSettings {
    /// Path prefix of VFIO devices in the container.
    pub device_path: String,
    /// Regex of the CDI annotation keys the runtime adds for VFIO devices.
    pub anno_key_regex: String,
    /// Regex of the CDI annotation values of NVIDIA GPUs.
    pub gpu_anno_value_regex: String,
    /// Device type of NVIDIA GPUs passed through with VFIO (GPU kernel driver variant).
    pub gpu_gk_device_type: String,
    /// Resource limits that request NVIDIA pass-through GPUs.
    pub pgpu_resource_keys: Vec<String>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn bind(destination: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: destination.to_owned(),
        source: source.to_owned(),
        type_: "bind".to_owned(),
        options: strings(options),
    }
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const BUNDLE_PATH: &str = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/$(bundle-id)";
const SANDBOX_ID: &str = "^[a-z0-9]{64}$";
const SHM: &str = "/run/kata-containers/sandbox/shm";

/// containerd's default capabilities of an unprivileged container.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Capabilities of a privileged container.
pub const PRIVILEGED_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The cluster's default pause image (genpolicy's default `pause_container_image`).
pub const DEFAULT_PAUSE_IMAGE: &str = "mcr.microsoft.com/oss/kubernetes/pause:3.6";

impl Default for ContainerSettings {
    fn default() -> Self {
        let sysctl = annotations(&[
            ("net.ipv4.ip_unprivileged_port_start", "0"),
            ("net.ipv4.ping_group_range", "0 2147483647"),
        ]);
        let pause_container = ContainerFragment {
            root: Root {
                path: "$(root_path)".to_owned(),
                readonly: true,
            },
            mounts: vec![
                bind("/dev/shm", SHM, &["rbind"]),
                bind(
                    "/etc/resolv.conf",
                    "",
                    &["rbind", "ro", "nosuid", "nodev", "noexec"],
                ),
            ],
            annotations: annotations(&[
                ("io.kubernetes.cri.container-type", "sandbox"),
                ("io.kubernetes.cri.sandbox-id", SANDBOX_ID),
                (
                    "io.kubernetes.cri.sandbox-log-directory",
                    "^/var/log/pods/$(sandbox-namespace)_$(sandbox-name)_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                ),
                ("io.katacontainers.pkg.oci.container_type", "pod_sandbox"),
                ("io.kubernetes.cri.sandbox-namespace", "default"),
                ("io.katacontainers.pkg.oci.bundle_path", BUNDLE_PATH),
            ]),
            process: ProcessFragment {
                args: strings(&["/pause"]),
                env: Vec::new(),
            },
            linux: LinuxFragment {
                sysctl: sysctl.clone(),
                masked_paths: strings(&[
                    "/proc/acpi",
                    "/proc/asound",
                    "/proc/kcore",
                    "/proc/keys",
                    "/proc/latency_stats",
                    "/proc/timer_list",
                    "/proc/timer_stats",
                    "/proc/sched_debug",
                    "/sys/firmware",
                    "/proc/scsi",
                ]),
                readonly_paths: strings(&[
                    "/proc/bus",
                    "/proc/fs",
                    "/proc/irq",
                    "/proc/sys",
                    "/proc/sysrq-trigger",
                ]),
                devices: Vec::new(),
            },
        };
        let other_container = ContainerFragment {
            root: Root {
                path: "$(root_path)".to_owned(),
                readonly: false,
            },
            mounts: vec![
                bind("/etc/hosts", "", &["rbind", "rprivate", "rw"]),
                bind("/dev/termination-log", "", &["rbind", "rprivate", "rw"]),
                bind("/etc/hostname", "", &["rbind", "rprivate"]),
                bind("/etc/resolv.conf", "", &["rbind", "rprivate"]),
                bind("/dev/shm", SHM, &["rbind"]),
                bind(
                    "/var/run/secrets/kubernetes.io/serviceaccount",
                    "",
                    &["rbind", "rprivate", "ro"],
                ),
                bind(
                    "/var/run/secrets/azure/tokens",
                    "$(sfprefix)tokens$",
                    &["rbind", "rprivate", "ro"],
                ),
            ],
            annotations: annotations(&[
                ("io.katacontainers.pkg.oci.bundle_path", BUNDLE_PATH),
                ("io.kubernetes.cri.sandbox-id", SANDBOX_ID),
                ("io.katacontainers.pkg.oci.container_type", "pod_container"),
                ("io.kubernetes.cri.container-type", "container"),
            ]),
            process: ProcessFragment::default(),
            linux: LinuxFragment {
                sysctl,
                ..LinuxFragment::default()
            },
        };
        let volumes = VolumeTemplates {
            empty_dir: VolumeTemplate {
                mount_type: "local".to_owned(),
                mount_source: "^$(cpath)/$(sandbox-id)/rootfs/local/".to_owned(),
                mount_point: "^$(cpath)/$(sandbox-id)/rootfs/local/".to_owned(),
                driver: "local".to_owned(),
                driver_options: Vec::new(),
                source: "local".to_owned(),
                fstype: "local".to_owned(),
                options: strings(&["mode=0777"]),
                shared: false,
            },
            empty_dir_encrypted: VolumeTemplate {
                mount_type: "bind".to_owned(),
                mount_source: String::new(),
                mount_point: "$(spath)/$(b64_device_id)".to_owned(),
                driver: String::new(),
                driver_options: strings(&["encryption_key=ephemeral", "create_filesystem"]),
                source: String::new(),
                fstype: "ext4".to_owned(),
                options: Vec::new(),
                shared: true,
            },
            empty_dir_plain: VolumeTemplate {
                mount_type: "bind".to_owned(),
                mount_source: String::new(),
                mount_point: "$(spath)/$(b64_device_id)".to_owned(),
                driver: String::new(),
                driver_options: strings(&["create_filesystem"]),
                source: String::new(),
                fstype: "ext4".to_owned(),
                options: strings(&["discard"]),
                shared: true,
            },
            empty_dir_memory: VolumeTemplate {
                mount_type: "bind".to_owned(),
                mount_source: "^/run/kata-containers/sandbox/ephemeral/".to_owned(),
                mount_point: "^/run/kata-containers/sandbox/ephemeral/".to_owned(),
                driver: "ephemeral".to_owned(),
                driver_options: Vec::new(),
                source: "tmpfs".to_owned(),
                fstype: "tmpfs".to_owned(),
                options: Vec::new(),
                shared: false,
            },
            config_map: VolumeTemplate {
                mount_type: "bind".to_owned(),
                mount_source: "$(sfprefix)".to_owned(),
                mount_point: "$(sfprefix)".to_owned(),
                driver: "local".to_owned(),
                driver_options: Vec::new(),
                source: String::new(),
                fstype: "bind".to_owned(),
                options: strings(&["rbind", "rprivate", "ro"]),
                shared: false,
            },
            image_volume: VolumeTemplate {
                mount_type: "bind".to_owned(),
                mount_source: "$(sfprefix)".to_owned(),
                mount_point: String::new(),
                driver: "local".to_owned(),
                driver_options: Vec::new(),
                source: "local".to_owned(),
                fstype: "bind".to_owned(),
                options: strings(&["rbind", "rprivate", "rw"]),
                shared: false,
            },
        };
        Self {
            pause_container,
            other_container,
            volumes,
            mount_destinations: strings(&[
                "/sys/fs/cgroup",
                "/etc/hosts",
                "/dev/termination-log",
                "/etc/hostname",
                "/etc/resolv.conf",
                "/dev/shm",
                "/var/run/secrets/kubernetes.io/serviceaccount",
                "/var/run/secrets/azure/tokens",
            ]),
            vfio: VfioSettings {
                device_path: "/dev/vfio/devices/vfio".to_owned(),
                anno_key_regex: "^cdi\\.k8s\\.io/vfio[0-9]+$".to_owned(),
                gpu_anno_value_regex: "^nvidia\\.com/gpu=[0-9]+$".to_owned(),
                gpu_gk_device_type: "vfio-pci-gk".to_owned(),
                pgpu_resource_keys: strings(&["nvidia.com/pgpu"]),
            },
            oci_version: "1.1.0".to_owned(),
            enable_configmap_secret_storages: false,
            pause_container_image: DEFAULT_PAUSE_IMAGE.to_owned(),
            guest_pull: true,
            emptydir_type: EmptyDirType::BlockEncrypted,
            default_caps: strings(DEFAULT_CAPS),
            privileged_caps: strings(PRIVILEGED_CAPS),
        }
    }
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

    /// The defaults equal the container sections of upstream's `genpolicy-settings.json`
    /// (read from the shared test data, never copied into the repository).
    #[test]
    fn defaults_match_genpolicy_settings() {
        let dir = std::env::var("NUNKI_TESTDATA")
            .unwrap_or_else(|_| format!("{}/../../../shared/testdata", env!("CARGO_MANIFEST_DIR")));
        let path = format!("{dir}/kata-policy/src/tools/genpolicy/genpolicy-settings.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let upstream: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ours = ContainerSettings::default();

        let fragment = |v: &serde_json::Value| -> ContainerFragment {
            serde_json::from_value(v.clone()).unwrap()
        };
        // Upstream's fragments carry `Process.NoNewPrivileges`, which the generator takes from
        // the pod spec instead; drop it before comparing.
        let mut pause = upstream["pause_container"].clone();
        pause["Process"]
            .as_object_mut()
            .unwrap()
            .remove("NoNewPrivileges");
        assert_eq!(fragment(&pause), ours.pause_container);
        assert_eq!(fragment(&upstream["other_container"]), ours.other_container);
        let volumes: VolumeTemplates = serde_json::from_value(upstream["volumes"].clone()).unwrap();
        assert_eq!(volumes, ours.volumes);
        let destinations: Vec<String> =
            serde_json::from_value(upstream["mount_destinations"].clone()).unwrap();
        assert_eq!(destinations, ours.mount_destinations);

        let vfio = &upstream["devices"]["vfio"];
        assert_eq!(vfio["device_path"], ours.vfio.device_path.as_str());
        assert_eq!(vfio["anno_key_regex"], ours.vfio.anno_key_regex.as_str());
        assert_eq!(
            vfio["nvidia"]["gpu_anno_value_regex"],
            ours.vfio.gpu_anno_value_regex.as_str()
        );
        assert_eq!(
            vfio["nvidia"]["gpu_gk_device_type"],
            ours.vfio.gpu_gk_device_type.as_str()
        );
        assert_eq!(
            vfio["nvidia"]["pgpu_resource_keys"],
            serde_json::json!(ours.vfio.pgpu_resource_keys)
        );
        assert_eq!(
            upstream["kata_config"]["oci_version"],
            ours.oci_version.as_str()
        );
        assert_eq!(
            upstream["kata_config"]["enable_configmap_secret_storages"],
            ours.enable_configmap_secret_storages
        );
        let cluster = &upstream["cluster_config"];
        assert_eq!(
            cluster["pause_container_image"],
            ours.pause_container_image.as_str()
        );
        assert_eq!(cluster["guest_pull"], ours.guest_pull);
        assert_eq!(
            cluster["emptydir_type"],
            serde_json::to_value(ours.emptydir_type).unwrap()
        );
        assert_eq!(
            upstream["common"]["default_caps"],
            serde_json::json!(ours.default_caps)
        );
        assert_eq!(
            upstream["common"]["privileged_caps"],
            serde_json::json!(ours.privileged_caps)
        );
    }

    #[test]
    fn settings_round_trip_and_reject_unknown_fields() {
        let ours = ContainerSettings::default();
        let json = serde_json::to_string(&ours).unwrap();
        let back: ContainerSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ours);
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value["surprise"] = serde_json::json!(1);
        let err = serde_json::from_value::<ContainerSettings>(value).unwrap_err();
        assert!(err.to_string().contains("surprise"));
    }
}
