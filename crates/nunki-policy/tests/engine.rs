#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Our rules and engine against Kata's CreateContainer/ExecProcess/state test cases, with
//! `policy_data.containers` entries built by hand in genpolicy's shape, plus denial reasons, state,
//! tampering, and the delivery documents.
//!
//! How the entries are built: for each case directory, the pause container (index 0) and one entry
//! per container of its `pod.yaml`, as genpolicy lays them out (containerd's default mounts and
//! masked paths, the settings' mounts, annotations and sysctls, `$(default_caps)`), with the
//! image facts (entrypoint, env, working dir, user) read off that directory's *allowed* requests.
//! The generator (another module) will produce these entries for real; these hand-built ones let
//! the rules be checked on every case now.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nunki_policy::document::{
    DocumentError, INITDATA_ANNOTATION, MAX_ANNOTATIONS_BYTES, POLICY_ANNOTATION,
};
use nunki_policy::{
    AgentPolicy, Decision, PolicyDocument, PolicyError, PolicyFormat, Settings, render_policy,
};
use serde_json::{Value, json};

// ------------------------------------------------------------------------------------------
// Test data

fn testdata() -> PathBuf {
    std::env::var_os("NUNKI_TESTDATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"),
        PathBuf::from,
    )
}

fn cases(dir: &str) -> Vec<Value> {
    let path = testdata()
        .join("kata-policy/src/tools/genpolicy/tests/policy/testdata")
        .join(dir)
        .join("testcases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn case(dir: &str, description: &str) -> Value {
    cases(dir)
        .into_iter()
        .find(|c| c["description"] == description)
        .unwrap_or_else(|| panic!("{dir}: no case {description:?}"))["request"]
        .clone()
}

// ------------------------------------------------------------------------------------------
// Hand-built container entries in genpolicy's shape

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.6@sha256:3d380ca8864549e74af4b29c10f9cb0956236dfb01c40ca076fb6c37253234db";
const GID_IMAGE: &str = "ghcr.io/burgerdev/weird-images/gid:latest@sha256:bdbb485bb9e3baf381a2957b9369b6051c6113097a5f8dcee27faff17624a2c0";
const REDIS_TEST_IMAGE: &str = "quay.io/kata-containers/test-images/opstree/redis:sha256-2642c7b07713df6897fa88cbe6db85170690cf3650018ceb2ab16cfa0b4f8d48";
const BUSYBOX: &str = "quay.io/prometheus/busybox:latest";
/// The suffix genpolicy appends to generated names (Kubernetes' random-string alphabet).
const SFX: &str = "[bcdfghjklmnpqrstvwxz2456789]+";

fn mount(dest: &str, type_: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "source": source, "type_": type_, "options": options})
}

fn masked_paths() -> Value {
    json!([
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi"
    ])
}

fn readonly_paths() -> Value {
    json!([
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger"
    ])
}

fn default_caps() -> Value {
    json!({"Ambient": [], "Bounding": ["$(default_caps)"], "Effective": ["$(default_caps)"],
           "Inheritable": [], "Permitted": ["$(default_caps)"]})
}

fn namespaces() -> Value {
    json!([{"Type": "ipc", "Path": ""}, {"Type": "uts", "Path": ""}, {"Type": "mount", "Path": ""}])
}

fn settings_sysctls() -> Value {
    json!({"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"})
}

/// The pause container (index 0) for a pod whose sandbox-name regex is `sandbox`.
fn pause(sandbox: &str, uid: u32, gid: u32) -> Value {
    json!({
        "OCI": {
            "Version": "1.1.0",
            "Process": {
                "Terminal": false,
                "User": {"UID": uid, "GID": gid, "AdditionalGids": [gid], "Username": ""},
                "Args": ["/pause"],
                "Env": [PATH_ENV],
                "Cwd": "/",
                "Capabilities": default_caps(),
                "NoNewPrivileges": true
            },
            "Root": {"Path": "$(root_path)", "Readonly": true},
            "Mounts": [
                mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
                mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
                mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
                mount("/dev/shm", "bind", "/run/kata-containers/sandbox/shm", &["rbind"]),
                mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
                mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
                mount("/etc/resolv.conf", "bind", "$(sfprefix)resolv.conf$", &["rbind", "ro", "nosuid", "nodev", "noexec"])
            ],
            "Annotations": {
                "io.katacontainers.pkg.oci.bundle_path": "/run/containerd/io.containerd.runtime.v2.task/k8s.io/$(bundle-id)",
                "io.katacontainers.pkg.oci.container_type": "pod_sandbox",
                "io.kubernetes.cri.container-type": "sandbox",
                "io.kubernetes.cri.sandbox-id": "^[a-z0-9]{64}$",
                "io.kubernetes.cri.sandbox-log-directory": "^/var/log/pods/$(sandbox-namespace)_$(sandbox-name)_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                "io.kubernetes.cri.sandbox-name": sandbox,
                "io.kubernetes.cri.sandbox-namespace": "",
                "nerdctl/network-namespace": "^/var/run/netns/cni-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
            },
            "Linux": {
                "Namespaces": namespaces(),
                "MaskedPaths": masked_paths(),
                "ReadonlyPaths": readonly_paths(),
                "Devices": [],
                "Sysctl": settings_sysctls()
            }
        },
        "storages": [],
        "devices": [],
        "sandbox_pidns": false,
        "exec_commands": [],
        "runtime_anno_patterns": {}
    })
}

/// A workload container, described by what its pod.yaml and image say.
struct Workload {
    name: &'static str,
    image: &'static str,
    sandbox: String,
    args: Vec<&'static str>,
    env: Vec<String>,
    cwd: &'static str,
    uid: u32,
    gid: u32,
    gids: Vec<u32>,
    volume_mounts: Vec<Value>,
    storages: Vec<Value>,
    devices: Vec<Value>,
    exec: Vec<Vec<&'static str>>,
    anno_patterns: Value,
}

impl Workload {
    fn new(name: &'static str, image: &'static str, sandbox: &str) -> Self {
        Self {
            name,
            image,
            sandbox: sandbox.to_string(),
            args: vec!["/pause"],
            env: vec![PATH_ENV.to_string(), "HOSTNAME=$(host-name)".to_string()],
            cwd: "/",
            uid: 65535,
            gid: 0,
            gids: vec![0],
            volume_mounts: vec![],
            storages: vec![],
            devices: vec![],
            exec: vec![],
            anno_patterns: json!({
                "^io\\.kubernetes\\.container\\.terminationMessagePath$": "^/.*$",
                "^io\\.kubernetes\\.container\\.terminationMessagePolicy$": "^(File|FallbackToLogsOnError)$"
            }),
        }
    }

    fn user(mut self, uid: u32, gid: u32, gids: &[u32]) -> Self {
        self.uid = uid;
        self.gid = gid;
        self.gids = gids.to_vec();
        self
    }

    fn build(&self) -> Value {
        let image = if self.image.contains(':') {
            self.image.to_string()
        } else {
            format!("{}:latest", self.image)
        };
        let mut mounts = vec![
            mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
            mount(
                "/dev",
                "tmpfs",
                "tmpfs",
                &["nosuid", "strictatime", "mode=755", "size=65536k"],
            ),
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            ),
            mount(
                "/dev/mqueue",
                "mqueue",
                "mqueue",
                &["nosuid", "noexec", "nodev"],
            ),
            mount(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            ),
            mount(
                "/sys/fs/cgroup",
                "cgroup",
                "cgroup",
                &["nosuid", "noexec", "nodev", "relatime", "ro"],
            ),
        ];
        mounts.extend(self.volume_mounts.iter().cloned());
        mounts.extend([
            mount(
                "/etc/hosts",
                "bind",
                "$(sfprefix)hosts$",
                &["rbind", "rprivate", "rw"],
            ),
            mount(
                "/dev/termination-log",
                "bind",
                "$(sfprefix)termination-log$",
                &["rbind", "rprivate", "rw"],
            ),
            mount(
                "/etc/hostname",
                "bind",
                "$(sfprefix)hostname$",
                &["rbind", "rprivate", "rw"],
            ),
            mount(
                "/etc/resolv.conf",
                "bind",
                "$(sfprefix)resolv.conf$",
                &["rbind", "rprivate", "rw"],
            ),
            mount(
                "/dev/shm",
                "bind",
                "/run/kata-containers/sandbox/shm",
                &["rbind"],
            ),
            mount(
                "/var/run/secrets/kubernetes.io/serviceaccount",
                "bind",
                "$(sfprefix)serviceaccount$",
                &["rbind", "rprivate", "ro"],
            ),
            mount(
                "/var/run/secrets/azure/tokens",
                "bind",
                "$(sfprefix)tokens$",
                &["rbind", "rprivate", "ro"],
            ),
        ]);
        json!({
            "OCI": {
                "Version": "1.1.0",
                "Process": {
                    "Terminal": false,
                    "User": {"UID": self.uid, "GID": self.gid, "AdditionalGids": self.gids, "Username": ""},
                    "Args": self.args,
                    "Env": self.env,
                    "Cwd": self.cwd,
                    "Capabilities": default_caps(),
                    "NoNewPrivileges": false
                },
                "Root": {"Path": "$(root_path)", "Readonly": false},
                "Mounts": mounts,
                "Annotations": {
                    "io.katacontainers.pkg.oci.bundle_path": "/run/containerd/io.containerd.runtime.v2.task/k8s.io/$(bundle-id)",
                    "io.katacontainers.pkg.oci.container_type": "pod_container",
                    "io.kubernetes.cri.container-name": self.name,
                    "io.kubernetes.cri.container-type": "container",
                    "io.kubernetes.cri.image-name": image,
                    "io.kubernetes.cri.sandbox-id": "^[a-z0-9]{64}$",
                    "io.kubernetes.cri.sandbox-name": self.sandbox,
                    "io.kubernetes.cri.sandbox-namespace": ""
                },
                "Linux": {
                    "Namespaces": namespaces(),
                    "MaskedPaths": masked_paths(),
                    "ReadonlyPaths": readonly_paths(),
                    "Devices": [],
                    "Sysctl": settings_sysctls()
                }
            },
            "storages": self.storages,
            "devices": self.devices,
            "sandbox_pidns": false,
            "exec_commands": self.exec,
            "runtime_anno_patterns": self.anno_patterns
        })
    }
}

/// genpolicy's block-encrypted emptyDir storage (settings `volumes.emptyDir_encrypted`).
fn encrypted_empty_dir(fs_group: Value) -> Value {
    json!({"driver": "", "driver_options": ["encryption_key=ephemeral", "create_filesystem"],
           "source": "", "fstype": "ext4", "options": [], "mount_point": "$(spath)/$(b64_device_id)",
           "fs_group": fs_group, "shared": true})
}

fn vfio_gpu() -> Value {
    json!({"id": "", "type_": "vfio-pci-gk", "vm_path": "", "container_path": "/dev/vfio/devices/vfio", "options": []})
}

fn gid_workload(sandbox: &str) -> Workload {
    let mut w = Workload::new("gid", GID_IMAGE, sandbox).user(2, 1, &[1]);
    w.args = vec!["/entrypoint.sh"];
    w
}

fn redis_workload(image: &'static str, sandbox: &str) -> Workload {
    let mut w = Workload::new(
        if image == REDIS_TEST_IMAGE {
            "dummy"
        } else {
            "redis"
        },
        image,
        sandbox,
    );
    w.args = vec!["/usr/bin/entrypoint.sh"];
    w.cwd = "/data";
    w.env = vec![
        PATH_ENV.to_string(),
        "REDIS_PORT=6379".to_string(),
        "HOSTNAME=$(host-name)".to_string(),
    ];
    // The image declares VOLUME /data and /node-conf.
    w.volume_mounts = vec![
        mount(
            "/data",
            "bind",
            "$(sfprefix)data$",
            &["rbind", "rprivate", "rw"],
        ),
        mount(
            "/node-conf",
            "bind",
            "$(sfprefix)node-conf$",
            &["rbind", "rprivate", "rw"],
        ),
    ];
    w
}

fn busybox(name: &'static str, sandbox: &str, probe: &'static str) -> Workload {
    let mut w = Workload::new(name, BUSYBOX, sandbox).user(0, 0, &[0, 10]);
    w.args = vec!["sleep", "3600"];
    w.exec = vec![vec![probe]];
    w
}

/// `policy_data.containers` for each case directory, built as described at the top.
fn containers_for(dir: &str) -> Value {
    let one = |sb: &str, w: Workload| json!([pause(sb, 65535, 65535), w.build()]);
    match dir {
        "createcontainer/cgroup_mount_extras" | "createcontainer/gid" => {
            one("^gid-experiment$", gid_workload("^gid-experiment$"))
        }
        "createcontainer/env_vars" => {
            let mut w = gid_workload("^gid-experiment$");
            w.env.push("TEST_VAR1=test-value1".to_string());
            one("^gid-experiment$", w)
        }
        "createcontainer/generate_name" => {
            let sb = format!("^dummy{SFX}$");
            one(&sb, Workload::new("dummy", PAUSE_IMAGE, &sb))
        }
        "createcontainer/gpu_vfio_cdi" => {
            let mut w = Workload::new("gpu-container", PAUSE_IMAGE, "^gpu-test-pod$");
            w.devices = vec![vfio_gpu(), vfio_gpu()];
            w.anno_patterns["^cdi\\.k8s\\.io/vfio[0-9]+$"] = json!("^nvidia\\.com/gpu=[0-9]+$");
            one("^gpu-test-pod$", w)
        }
        "createcontainer/ignored_fields" => one(
            "^policy-ignored-fields$",
            Workload::new("redis", PAUSE_IMAGE, "^policy-ignored-fields$"),
        ),
        "createcontainer/network_namespace" => {
            one("^dummy$", Workload::new("dummy", PAUSE_IMAGE, "^dummy$"))
        }
        "createcontainer/security_context/fsgroup" => {
            let mut w = Workload::new("dummy", PAUSE_IMAGE, "^dummy$").user(65535, 0, &[0, 1000]);
            w.volume_mounts = vec![mount("/mnt", "bind", "", &["rbind", "rprivate", "rw"])];
            w.storages = vec![encrypted_empty_dir(
                json!({"group_id": 1000, "group_change_policy": 0}),
            )];
            one("^dummy$", w)
        }
        "createcontainer/security_context/runas" => json!([
            pause("^dummy$", 65534, 65534),
            redis_workload(REDIS_TEST_IMAGE, "^dummy$")
                .user(65534, 65534, &[65534])
                .build()
        ]),
        "createcontainer/security_context/supplemental_groups" => json!([
            pause("^dummy$", 65534, 65534),
            redis_workload(REDIS_TEST_IMAGE, "^dummy$")
                .user(65534, 65534, &[65532, 65533, 65534])
                .build()
        ]),
        "createcontainer/volumes/config_map" => {
            let mut w = Workload::new("dummy", PAUSE_IMAGE, "^dummy$");
            w.volume_mounts = vec![mount(
                "/config",
                "bind",
                "$(sfprefix)config$",
                &["rbind", "rprivate", "ro"],
            )];
            one("^dummy$", w)
        }
        "createcontainer/volumes/container_image" => one(
            "^redis$",
            redis_workload("quay.io/opstree/redis", "^redis$").user(1000, 1000, &[1000]),
        ),
        "createcontainer/volumes/emptydir" => {
            let mut w = Workload::new("dummy", PAUSE_IMAGE, "^dummy$");
            w.volume_mounts = vec![
                mount("/mnt/test", "bind", "", &["rbind", "rprivate", "rw"]),
                mount("/mnt/test2", "bind", "", &["rbind", "rprivate", "rw"]),
                mount("/mnt/test3", "bind", "", &["rbind", "rprivate", "ro"]),
                mount("/mnt/test4", "bind", "", &["rbind", "rprivate", "rw"]),
            ];
            w.storages = vec![encrypted_empty_dir(Value::Null); 4];
            one("^dummy$", w)
        }
        "state/createcontainer" => one(
            "^policy-redis-deployment-6674f9448-xjrzf$",
            Workload::new(
                "redis",
                PAUSE_IMAGE,
                "^policy-redis-deployment-6674f9448-xjrzf$",
            ),
        ),
        "state/execprocess" => {
            let mut first = busybox("first-test-container", "^busybox$", "test1");
            first
                .env
                .push("CONTAINER_NAME=first-test-container".to_string());
            let mut second = busybox("second-test-container", "^busybox$", "test2");
            second
                .env
                .push("CONTAINER_NAME=second-test-container".to_string());
            json!([pause("^busybox$", 0, 0), first.build(), second.build()])
        }
        "state/execprocessdeployment" => {
            let sb = format!("^execprocessnamed-{SFX}-{SFX}$");
            one(&sb, busybox("execprocessnamed", &sb, "/bin/true"))
        }
        other => panic!("no hand-built containers for {other}"),
    }
}

const DIRS: &[&str] = &[
    "createcontainer/cgroup_mount_extras",
    "createcontainer/env_vars",
    "createcontainer/generate_name",
    "createcontainer/gid",
    "createcontainer/gpu_vfio_cdi",
    "createcontainer/ignored_fields",
    "createcontainer/network_namespace",
    "createcontainer/security_context/fsgroup",
    "createcontainer/security_context/runas",
    "createcontainer/security_context/supplemental_groups",
    "createcontainer/volumes/config_map",
    "createcontainer/volumes/container_image",
    "createcontainer/volumes/emptydir",
    "state/createcontainer",
    "state/execprocess",
    "state/execprocessdeployment",
];

fn policy_with(containers: Value) -> String {
    render_policy(&Settings::default().policy_data(containers))
}

fn engine_for(dir: &str) -> AgentPolicy {
    AgentPolicy::new(&policy_with(containers_for(dir))).unwrap()
}

fn assert_denied_for(d: &Decision, needles: &[&str]) {
    assert!(!d.allowed, "expected a denial, got {d:?}");
    assert!(
        d.reasons
            .iter()
            .any(|r| needles.iter().all(|n| r.contains(n))),
        "no reason contains all of {needles:?}: {:#?}",
        d.reasons
    );
}

// ------------------------------------------------------------------------------------------
// Kata's cases with hand-built entries

#[test]
fn kata_cases_with_hand_built_containers_match() {
    let mut total = 0;
    let mut misses = Vec::new();
    for dir in DIRS {
        let mut engine = engine_for(dir);
        for c in cases(dir) {
            total += 1;
            let kind = c["kind"].as_str().unwrap();
            let d = engine.evaluate(kind, &c["request"]).unwrap();
            if d.allowed != c["allowed"].as_bool().unwrap() {
                misses.push(format!(
                    "{dir}: {}: expected {}, got {d:?}",
                    c["description"], c["allowed"]
                ));
            }
        }
    }
    println!(
        "hand-built container cases: {} of {total} match",
        total - misses.len()
    );
    assert!(misses.is_empty(), "{misses:#?}");
    assert_eq!(total, 65);
}

#[test]
fn denial_reasons_name_the_failed_field() {
    let dir = "createcontainer/volumes/emptydir";
    let mut e = engine_for(dir);
    let d = e
        .evaluate(
            "CreateContainerRequest",
            &case(dir, "volumeMount: invalid fstype"),
        )
        .unwrap();
    assert_denied_for(
        &d,
        &[
            "CreateContainerRequest: container \"dummy\": storages: got",
            "invalid_fstype",
        ],
    );

    let d = e
        .evaluate(
            "CreateContainerRequest",
            &case(dir, "volumeMount: invalid mount destination(s) - mismatch"),
        )
        .unwrap();
    assert_denied_for(
        &d,
        &["container \"dummy\": OCI.Mounts: got", "/mnt/unexpected"],
    );

    let dir = "createcontainer/security_context/runas";
    let mut e = engine_for(dir);
    let d = e
        .evaluate(
            "CreateContainerRequest",
            &case(dir, "Incorrect User.UID for security context"),
        )
        .unwrap();
    assert_denied_for(
        &d,
        &["sandbox (pause) container: OCI.Process.User.UID: got 0, policy allows 65534"],
    );

    let dir = "createcontainer/gpu_vfio_cdi";
    let mut e = engine_for(dir);
    let d = e
        .evaluate(
            "CreateContainerRequest",
            &case(
                dir,
                "Invalid: Hot-plug - CDI annotation with non-numeric suffix",
            ),
        )
        .unwrap();
    assert_denied_for(
        &d,
        &[
            "container \"gpu-container\": OCI.Annotations: unexpected",
            "cdi.k8s.io/vfioABC",
        ],
    );
    assert_denied_for(&d, &["container \"gpu-container\": devices: got"]);

    let dir = "createcontainer/generate_name";
    let mut e = engine_for(dir);
    let d = e
        .evaluate(
            "CreateContainerRequest",
            &case(dir, "generated name with invalid prefix (xyzdummy)"),
        )
        .unwrap();
    assert_denied_for(&d, &["io.kubernetes.cri.sandbox-name: got \"xyzdummy\""]);
}

#[test]
fn tampered_args_env_image_and_privileges_are_denied() {
    let dir = "state/execprocessdeployment";
    let good = case(
        dir,
        "create container request for deployment's only container",
    );
    assert!(
        engine_for(dir)
            .evaluate("CreateContainerRequest", &good)
            .unwrap()
            .allowed
    );

    let check = |mutate: &dyn Fn(&mut Value), needles: &[&str]| {
        let mut req = good.clone();
        mutate(&mut req);
        let d = engine_for(dir)
            .evaluate("CreateContainerRequest", &req)
            .unwrap();
        assert_denied_for(&d, needles);
    };

    check(
        &|r| r["OCI"]["Process"]["Args"] = json!(["sh", "-c", "evil"]),
        &[
            r#"CreateContainerRequest: container "execprocessnamed": OCI.Process.Args: got ["sh","-c","evil"], policy allows ["sleep","3600"]"#,
        ],
    );
    check(
        &|r| {
            r["OCI"]["Process"]["Env"]
                .as_array_mut()
                .unwrap()
                .push(json!("LD_PRELOAD=/tmp/x.so"))
        },
        &["OCI.Process.Env: got unexpected [\"LD_PRELOAD=/tmp/x.so\"]"],
    );
    check(
        &|r| r["OCI"]["Process"]["Env"][0] = json!("PATH=/evil/bin"),
        &["OCI.Process.Env", "PATH=/evil/bin"],
    );
    // A different image pulled by the guest, with the annotation left alone ...
    check(
        &|r| r["storages"][0]["source"] = json!("quay.io/evil/busybox:latest"),
        &[
            "image: got [\"quay.io/evil/busybox:latest\"]",
            "policy allows \"quay.io/prometheus/busybox:latest\"",
        ],
    );
    // ... or the same repository at another tag.
    check(
        &|r| {
            r["storages"][0]["source"] = json!("quay.io/prometheus/busybox:1.36");
            r["OCI"]["Annotations"]["io.kubernetes.cri.image-name"] =
                json!("quay.io/prometheus/busybox:1.36");
        },
        &["image: got"],
    );
    // privileged: all capabilities, rw sysfs, nothing masked.
    check(
        &|r| {
            let all = json!(Settings::default().common.privileged_caps);
            for k in ["Bounding", "Effective", "Permitted"] {
                r["OCI"]["Process"]["Capabilities"][k] = all.clone();
            }
            r["OCI"]["Linux"]["MaskedPaths"] = json!([]);
            r["OCI"]["Linux"]["ReadonlyPaths"] = json!([]);
        },
        &["OCI.Process.Capabilities"],
    );
    check(
        &|r| r["OCI"]["Linux"]["MaskedPaths"] = json!([]),
        &["OCI.Linux.MaskedPaths: missing"],
    );
    // Host IPC namespace: the ipc entry disappears; host PID: a shared pid namespace appears.
    check(
        &|r| {
            r["OCI"]["Linux"]["Namespaces"]
                .as_array_mut()
                .unwrap()
                .remove(0);
        },
        &["OCI.Linux.Namespaces"],
    );
    check(
        &|r| r["sandbox_pidns"] = json!(true),
        &["sandbox_pidns: got true, policy allows false"],
    );
    check(
        &|r| r["OCI"]["Root"]["Readonly"] = json!(true),
        &["OCI.Root.Readonly"],
    );
    check(
        &|r| {
            r["OCI"]["Mounts"].as_array_mut().unwrap().push(json!({"destination": "/host", "source": "/", "type_": "bind", "options": ["rbind", "rw"]}))
        },
        &["OCI.Mounts: got", "/host"],
    );
    check(
        &|r| r["OCI"]["Hooks"] = json!({"Prestart": [{"Path": "/bin/sh"}]}),
        &["OCI.Hooks: must be empty"],
    );
    check(
        &|r| r["OCI"]["Annotations"]["io.kubernetes.cri.container-name"] = json!("other"),
        &["container \"other\": no such container in the policy"],
    );
}

#[test]
fn state_ops_are_applied_only_when_allowed() {
    let dir = "state/execprocess";
    let first = case(dir, "create container request for first container");
    let mut e = engine_for(dir);
    assert_eq!(e.state(), &json!({}));

    // Denied: nothing is pinned, not even the sandbox name.
    let mut bad = first.clone();
    bad["OCI"]["Process"]["Args"] = json!(["sh"]);
    assert!(!e.evaluate("CreateContainerRequest", &bad).unwrap().allowed);
    assert_eq!(e.state(), &json!({}));

    let d = e.evaluate("CreateContainerRequest", &first).unwrap();
    assert!(d.allowed, "{d:?}");
    let id = first["container_id"].as_str().unwrap();
    assert_eq!(
        e.state(),
        &json!({"sandbox_name": "busybox", "namespace": "default", "network_namespace": "", "containers": {id: 1}})
    );

    // The namespace is pinned now: the same container from another namespace is refused.
    let mut moved = case(dir, "create container request for second container");
    moved["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-namespace"] = json!("other");
    let d = e.evaluate("CreateContainerRequest", &moved).unwrap();
    assert_denied_for(
        &d,
        &["state: namespace was pinned to \"default\" by an earlier request, got \"other\""],
    );

    // A container ID cannot be reused for another policy container until it is removed.
    let mut reuse = case(dir, "create container request for second container");
    reuse["container_id"] = json!(id);
    let d = e.evaluate("CreateContainerRequest", &reuse).unwrap();
    assert_denied_for(
        &d,
        &[
            "state: container_id: container_id",
            "already belongs to policy container 1",
        ],
    );
    assert!(
        e.evaluate("RemoveContainerRequest", &json!({"container_id": id}))
            .unwrap()
            .allowed
    );
    assert_eq!(e.state()["containers"], json!({}));
    assert!(
        e.evaluate("CreateContainerRequest", &reuse)
            .unwrap()
            .allowed
    );
    assert_eq!(e.state()["containers"], json!({id: 2}));

    // Removing an unknown container is harmless and changes nothing.
    assert!(
        e.evaluate("RemoveContainerRequest", &json!({"container_id": "nope"}))
            .unwrap()
            .allowed
    );
    assert_eq!(e.state()["containers"], json!({id: 2}));
}

#[test]
fn exec_is_denied_unless_listed() {
    let dir = "state/execprocess";
    let mut e = engine_for(dir);
    let first = case(dir, "create container request for first container");
    assert!(
        e.evaluate("CreateContainerRequest", &first)
            .unwrap()
            .allowed
    );
    let id = first["container_id"].clone();
    let mut exec = case(
        dir,
        "test exec process in first container with correct args",
    );

    // The container's own command is not an exec the policy lists.
    exec["process"]["Args"] = json!(["sleep", "3600"]);
    let d = e.evaluate("ExecProcessRequest", &exec).unwrap();
    assert_denied_for(
        &d,
        &[
            r#"ExecProcessRequest: container "first-test-container": process.Args: got ["sleep","3600"], policy allows [["test1"]]"#,
        ],
    );

    // A shell is allowed only once the settings list it, and then in every container.
    exec["process"]["Args"] = json!(["sh"]);
    assert!(!e.evaluate("ExecProcessRequest", &exec).unwrap().allowed);
    let settings = Settings::default()
        .with_override(
            "test",
            r#"{"request_defaults": {"ExecProcessRequest": {"allowed_commands": [["sh"]]}}}"#,
        )
        .unwrap();
    let mut e =
        AgentPolicy::new(&render_policy(&settings.policy_data(containers_for(dir)))).unwrap();
    assert!(
        e.evaluate("CreateContainerRequest", &first)
            .unwrap()
            .allowed
    );
    exec["process"]["Terminal"] = json!(true);
    let d = e.evaluate("ExecProcessRequest", &exec).unwrap();
    assert!(d.allowed, "{d:?}");

    // Exec into a container that was never created under this policy.
    exec["container_id"] = json!("0123");
    let d = e.evaluate("ExecProcessRequest", &exec).unwrap();
    assert_denied_for(
        &d,
        &[
            "container_id \"0123\": container_id: no container with this ID was created under this policy",
        ],
    );
    assert_eq!(e.state()["containers"], json!({id.as_str().unwrap(): 1}));
}

#[test]
fn default_allowed_and_denied_kinds() {
    let mut e = AgentPolicy::new(&policy_with(json!([]))).unwrap();
    for kind in [
        "StartContainerRequest",
        "WaitProcessRequest",
        "SignalProcessRequest",
        "StatsContainerRequest",
        "DestroySandboxRequest",
        "GuestDetailsRequest",
        "OnlineCPUMemRequest",
        "TtyWinResizeRequest",
        "GetOOMEventRequest",
        "RemoveStaleVirtiofsShareMountsRequest",
    ] {
        assert!(e.evaluate(kind, &json!({})).unwrap().allowed, "{kind}");
    }
    let d = e
        .evaluate(
            "SetPolicyRequest",
            &json!({"policy": "package agent_policy\ndefault ExecProcessRequest := true"}),
        )
        .unwrap();
    assert_denied_for(&d, &["SetPolicyRequest: the policy is fixed at launch"]);
    for kind in [
        "ReadStreamRequest",
        "WriteStreamRequest",
        "CloseStdinRequest",
        "UpdateEphemeralMountsRequest",
        "GetDiagnosticDataRequest",
    ] {
        let d = e.evaluate(kind, &json!({"container_id": "x"})).unwrap();
        assert_denied_for(&d, &[&format!("{kind}: request_defaults.{kind} is false")]);
    }
    for kind in [
        "ListInterfacesRequest",
        "SetIPTablesRequest",
        "UpdateContainerRequest",
        "PauseContainerRequest",
        "ReseedRandomDevRequest",
        "SetGuestDateTimeRequest",
    ] {
        let d = e.evaluate(kind, &json!({})).unwrap();
        assert_denied_for(&d, &[&format!("{kind}: denied")]);
    }

    // Log streaming can be switched on in the settings.
    let settings = Settings::default()
        .with_override("t", r#"{"request_defaults": {"ReadStreamRequest": true}}"#)
        .unwrap();
    let mut e = AgentPolicy::new(&render_policy(&settings.policy_data(json!([])))).unwrap();
    assert!(e.evaluate("ReadStreamRequest", &json!({})).unwrap().allowed);
    assert!(
        !e.evaluate("WriteStreamRequest", &json!({}))
            .unwrap()
            .allowed
    );
}

#[test]
fn loopback_routes_and_addresses_are_denied() {
    let mut e = AgentPolicy::new(&policy_with(json!([]))).unwrap();
    let d = e
        .evaluate(
            "UpdateRoutesRequest",
            &json!({"routes": {"Routes": [{"dest": "127.0.0.0/8", "device": "eth0"}]}}),
        )
        .unwrap();
    assert_denied_for(
        &d,
        &["routes.Routes[0].dest: \"127.0.0.0/8\" is a loopback address"],
    );
    let d = e
        .evaluate(
            "UpdateInterfaceRequest",
            &json!({"interface": {"name": "eth0", "IPAddresses": [{"address": "127.0.0.1"}]}}),
        )
        .unwrap();
    assert_denied_for(
        &d,
        &["interface.IPAddresses[0]: \"127.0.0.1\" is a loopback address"],
    );
}

#[test]
fn engine_errors_are_explicit() {
    let mut e = AgentPolicy::new(&policy_with(json!([]))).unwrap();
    let err = e.evaluate("FooRequest", &json!({})).unwrap_err();
    assert!(matches!(err, PolicyError::UnknownKind { .. }));
    assert!(
        err.to_string().contains("CreateContainerRequest")
            && err.to_string().contains("WriteStreamRequest"),
        "{err}"
    );

    let err = e
        .evaluate("CopyFileRequest", &json!({"path": 7}))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("request field path: expected a string"),
        "{err}"
    );

    let err = AgentPolicy::new("package agent_policy\nx := ").unwrap_err();
    assert!(matches!(err, PolicyError::Parse { .. }), "{err}");
    let err = AgentPolicy::new("package other\nx := 1").unwrap_err();
    assert!(err.to_string().contains("data.other"), "{err}");

    // A rule returning something the agent cannot use is an error, not a silent allow.
    let mut e = AgentPolicy::new("package agent_policy\nCopyFileRequest := \"yes\"").unwrap();
    let err = e.evaluate("CopyFileRequest", &json!({})).unwrap_err();
    assert!(matches!(err, PolicyError::Result { .. }), "{err}");

    // ops that cannot be applied are an error too.
    let mut e = AgentPolicy::new(
        "package agent_policy\nCopyFileRequest := {\"allowed\": true, \"ops\": [{\"op\": \"remove\", \"path\": \"/pstate/x\"}]}",
    )
    .unwrap();
    let err = e.evaluate("CopyFileRequest", &json!({})).unwrap_err();
    assert!(matches!(err, PolicyError::State { .. }), "{err}");

    // A policy without a rule for the kind denies it (the agent would fail the call).
    let mut e = AgentPolicy::new("package agent_policy\nx := 1").unwrap();
    let d = e.evaluate("CopyFileRequest", &json!({})).unwrap();
    assert_denied_for(&d, &["has no rule data.agent_policy.CopyFileRequest"]);
}

// ------------------------------------------------------------------------------------------
// Delivery documents

#[test]
fn initdata_round_trip_and_hash() {
    let text = policy_with(containers_for("state/execprocess"));
    let doc = PolicyDocument::initdata(&text).unwrap();
    assert_eq!(doc.format, PolicyFormat::Initdata);
    assert_eq!(doc.annotation_key, INITDATA_ANNOTATION);
    let toml_text = std::str::from_utf8(&doc.document_bytes).unwrap();
    assert!(
        toml_text.starts_with("version = \"0.1.0\"\nalgorithm = \"sha256\"\n"),
        "{toml_text:.80}"
    );
    assert!(toml_text.contains("[data]"));
    assert_eq!(doc.hash.0, nunki_manifest::sha256(&doc.document_bytes));
    assert_ne!(doc.hash.0, nunki_manifest::sha256(text.as_bytes()));

    let annotations =
        BTreeMap::from([(doc.annotation_key.to_string(), doc.annotation_value.clone())]);
    let back = PolicyDocument::from_annotations(&annotations)
        .unwrap()
        .unwrap();
    assert_eq!(back, doc);
    assert_eq!(back.policy_text, text);
    // The decoded policy is the one we evaluate.
    assert!(AgentPolicy::new(&back.policy_text).is_ok());

    // One byte more in the policy gives another hash.
    let other = PolicyDocument::initdata(&format!("{text} ")).unwrap();
    assert_ne!(other.hash, doc.hash);
}

#[test]
fn legacy_round_trip_and_conflicts() {
    let text = policy_with(json!([]));
    let doc = PolicyDocument::legacy(&text);
    assert_eq!(doc.annotation_key, POLICY_ANNOTATION);
    assert_eq!(doc.hash.0, nunki_manifest::sha256(text.as_bytes()));
    let mut annotations =
        BTreeMap::from([(doc.annotation_key.to_string(), doc.annotation_value.clone())]);
    assert_eq!(
        PolicyDocument::from_annotations(&annotations)
            .unwrap()
            .unwrap(),
        doc
    );

    // Both present with the same policy: initdata wins. Different policies: error.
    let init = PolicyDocument::initdata(&text).unwrap();
    annotations.insert(
        init.annotation_key.to_string(),
        init.annotation_value.clone(),
    );
    assert_eq!(
        PolicyDocument::from_annotations(&annotations)
            .unwrap()
            .unwrap()
            .format,
        PolicyFormat::Initdata
    );
    annotations.insert(
        POLICY_ANNOTATION.to_string(),
        PolicyDocument::legacy("package agent_policy").annotation_value,
    );
    assert!(matches!(
        PolicyDocument::from_annotations(&annotations),
        Err(DocumentError::Conflict)
    ));

    assert_eq!(
        PolicyDocument::from_annotations(&BTreeMap::new()).unwrap(),
        None
    );
    let bad = BTreeMap::from([(INITDATA_ANNOTATION.to_string(), "not base64!".to_string())]);
    assert!(matches!(
        PolicyDocument::from_annotations(&bad),
        Err(DocumentError::Base64 { .. })
    ));
}

#[test]
fn gzip_bomb_is_refused() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..17 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 100 * 1024);
    use base64::Engine as _;
    let value = base64::engine::general_purpose::STANDARD.encode(bomb);
    let err = PolicyDocument::decode_initdata(&value).unwrap_err();
    assert!(matches!(err, DocumentError::TooLarge { .. }), "{err}");
}

#[test]
fn oversized_annotations_state_their_size() {
    let doc = PolicyDocument::legacy(&"x".repeat(MAX_ANNOTATIONS_BYTES));
    let err = doc.check_annotations_size(&BTreeMap::new()).unwrap_err();
    let size = POLICY_ANNOTATION.len() + doc.annotation_value.len();
    assert!(err.to_string().contains(&format!("{size} bytes")), "{err}");
    assert!(
        err.to_string().contains(&MAX_ANNOTATIONS_BYTES.to_string()),
        "{err}"
    );

    // A normal policy fits, unless other annotations fill the budget; an old policy annotation
    // on the object does not count twice.
    let doc = PolicyDocument::initdata(&policy_with(containers_for("state/execprocess"))).unwrap();
    let mut annotations = BTreeMap::from([(POLICY_ANNOTATION.to_string(), "y".repeat(200 * 1024))]);
    doc.check_annotations_size(&annotations).unwrap();
    annotations.insert("big".to_string(), "z".repeat(MAX_ANNOTATIONS_BYTES));
    assert!(matches!(
        doc.check_annotations_size(&annotations),
        Err(DocumentError::AnnotationsTooLarge { .. })
    ));
}

#[test]
fn rules_stay_compact() {
    let rules = nunki_policy::RULES;
    assert!(
        rules.len() < 40 * 1024,
        "rules.rego is {} bytes",
        rules.len()
    );
    let doc = PolicyDocument::initdata(&policy_with(json!([]))).unwrap();
    println!(
        "rules: {} bytes; settings-only initdata annotation: {} bytes",
        rules.len(),
        doc.annotation_value.len()
    );
}

#[test]
fn image_references_are_compared_normalized() {
    let dir = "state/execprocessdeployment";
    let good = case(
        dir,
        "create container request for deployment's only container",
    );
    let digest_a = format!("sha256:{}", "a".repeat(64));
    let digest_b = format!("sha256:{}", "b".repeat(64));
    let verdict = |policy_image: &str, pulled: &str| {
        let mut containers = containers_for(dir);
        containers[1]["OCI"]["Annotations"]["io.kubernetes.cri.image-name"] = json!(policy_image);
        let mut req = good.clone();
        req["storages"][0]["source"] = json!(pulled);
        req["OCI"]["Annotations"]["io.kubernetes.cri.image-name"] = json!(pulled);
        let d = AgentPolicy::new(&policy_with(containers))
            .unwrap()
            .evaluate("CreateContainerRequest", &req)
            .unwrap();
        if !d.allowed {
            assert_denied_for(&d, &["container \"execprocessnamed\": image: got"]);
        }
        d.allowed
    };
    // Docker Hub short names and the implicit latest tag.
    assert!(verdict(
        "busybox:latest",
        "docker.io/library/busybox:latest"
    ));
    assert!(verdict("busybox", "docker.io/library/busybox"));
    assert!(verdict(
        "library/busybox:1.36",
        "index.docker.io/library/busybox:1.36"
    ));
    assert!(!verdict("busybox:latest", "docker.io/library/busybox:1.36"));
    assert!(!verdict("busybox:latest", "docker.io/evil/busybox:latest"));
    assert!(!verdict(
        "busybox:latest",
        "quay.io/prometheus/busybox:latest"
    ));
    // A pinned digest must be pulled by that digest; the tag does not matter then.
    assert!(verdict(
        &format!("busybox:1.36@{digest_a}"),
        &format!("docker.io/library/busybox@{digest_a}")
    ));
    assert!(!verdict(
        &format!("busybox:1.36@{digest_a}"),
        &format!("docker.io/library/busybox@{digest_b}")
    ));
    assert!(!verdict(
        &format!("busybox:1.36@{digest_a}"),
        "docker.io/library/busybox:1.36"
    ));
    // A registry with a port is not a tag.
    assert!(verdict("localhost:5000/app", "localhost:5000/app:latest"));
    assert!(!verdict("localhost:5000/app", "localhost:5001/app:latest"));
}

#[test]
fn incomplete_settings_fail_closed() {
    let mut pd = Settings::default().policy_data(json!([]));
    pd["request_defaults"]
        .as_object_mut()
        .unwrap()
        .remove("UpdateRoutesRequest");
    pd["request_defaults"]["AddARPNeighborsRequest"]
        .as_object_mut()
        .unwrap()
        .remove("allowed_states");
    let mut e = AgentPolicy::new(&render_policy(&pd)).unwrap();
    // Requests that the complete settings allow.
    let routes = json!({"routes": {"Routes": [{"device": "eth0", "gateway": "10.0.0.1"}]}});
    let iface = json!({"interface": {"name": "eth0", "IPAddresses": [{"address": "10.0.0.2"}]}});
    let arp = json!({"neighbors": {"ARPNeighbors": [{"device": "eth0", "state": 2, "toIPAddress": {"address": "10.0.0.1"}}]}});
    let mut full = AgentPolicy::new(&policy_with(json!([]))).unwrap();
    for (kind, req, needle) in [
        (
            "UpdateRoutesRequest",
            &routes,
            "request_defaults.UpdateRoutesRequest is incomplete",
        ),
        (
            "UpdateInterfaceRequest",
            &iface,
            "request_defaults.UpdateRoutesRequest is incomplete",
        ),
        (
            "AddARPNeighborsRequest",
            &arp,
            "request_defaults.AddARPNeighborsRequest is incomplete",
        ),
    ] {
        assert!(full.evaluate(kind, req).unwrap().allowed, "{kind}");
        assert_denied_for(&e.evaluate(kind, req).unwrap(), &[needle]);
    }
}
