#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The generator's behaviour on pod specs of our own: what ends up in `policy_data.containers`,
//! and the errors (with YAML paths) for what cannot.

#[path = "support/pod_yaml.rs"]
mod pod_yaml;

use nunki_policy::data::{ContainerPolicy, ContainerSettings, EmptyDirType};
use nunki_policy::{
    GenerateError, ImageConfig, ImageInfo, PolicyGenerator, Settings, generate_policy,
    generate_policy_data,
};
use serde_json::json;

const IMAGES: &str = r#"{"images": {
  "registry.example/app:1": {"config": {"architecture": "amd64", "os": "linux", "config": {
      "Entrypoint": ["/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "MODE=prod"],
      "WorkingDir": "/srv"}}, "passwd": null, "group": null},
  "registry.example/user:1": {"config": {"config": {"User": "1000", "Entrypoint": ["/run"]}},
      "passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/false\n",
      "group": "root:x:0:\napp:x:1000:app\naudio:x:29:app\n"},
  "registry.example/named:1": {"config": {"config": {"User": "ghost", "Cmd": ["x"]}},
      "passwd": "root:x:0:0::/root:/bin/sh\n", "group": null},
  "registry.example/volumes:1": {"config": {"config": {"Cmd": ["x"],
      "Volumes": {"/data": {}, "//cache//dir": {}, "/mnt/yaml": {}}}}},
  "registry.example/nocmd:1": {"config": {"config": {}}},
  "busybox": {"config": {"config": {"Cmd": ["sh"]}}}
}}"#;

fn images() -> ImageInfo {
    ImageInfo::from_json(IMAGES).unwrap()
}

fn generator() -> PolicyGenerator {
    PolicyGenerator::new(Settings::default()).unwrap()
}

fn try_gen_with(
    generator: &PolicyGenerator,
    yaml: &str,
) -> Result<Vec<ContainerPolicy>, GenerateError> {
    let loaded = pod_yaml::load(&[yaml]);
    generator.containers(&loaded.pods[0], &images(), &loaded.sources)
}

fn try_gen(yaml: &str) -> Result<Vec<ContainerPolicy>, GenerateError> {
    try_gen_with(&generator(), yaml)
}

fn containers(yaml: &str) -> Vec<ContainerPolicy> {
    try_gen(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn err(yaml: &str) -> String {
    try_gen(yaml).unwrap_err().to_string()
}

fn pod(containers: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n{containers}")
}

fn mount<'a>(c: &'a ContainerPolicy, destination: &str) -> Vec<&'a nunki_policy::data::Mount> {
    c.oci
        .mounts
        .iter()
        .filter(|m| m.destination == destination)
        .collect()
}

#[test]
fn containers_are_pause_then_init_reversed_then_app() {
    let c = containers(&pod(
        "  initContainers:\n  - {name: init1, image: busybox}\n  - {name: init2, image: busybox}\n  containers:\n  - {name: a, image: busybox}\n  - {name: b, image: busybox}\n",
    ));
    let names: Vec<&str> = c
        .iter()
        .map(|c| {
            c.oci
                .annotations
                .get("io.kubernetes.cri.container-name")
                .map_or("(pause)", String::as_str)
        })
        .collect();
    assert_eq!(names, ["(pause)", "init2", "init1", "a", "b"]);
    assert_eq!(
        c[0].oci.annotations["io.kubernetes.cri.container-type"],
        "sandbox"
    );
    assert_eq!(
        c[3].oci.annotations["io.kubernetes.cri.container-type"],
        "container"
    );
    // The pause image is built in: no image-info entry needed.
    assert_eq!(c[0].oci.process.args, ["/pause"]);
    assert!(c[0].oci.process.no_new_privileges);
    assert!(c[0].oci.root.readonly);
}

#[test]
fn command_line_follows_containerd() {
    let app = |fields: &str| {
        let c = containers(&pod(&format!(
            "  containers:\n  - name: app\n    image: registry.example/app:1\n{fields}"
        )));
        c[1].oci.process.args.clone()
    };
    assert_eq!(app(""), ["/app", "--serve"]);
    assert_eq!(app("    args: [--debug]\n"), ["/app", "--debug"]);
    assert_eq!(app("    command: [/bin/sh]\n"), ["/bin/sh"]);
    assert_eq!(app("    command: []\n    args: []\n"), ["/app", "--serve"]);
    assert_eq!(
        app("    command: [/bin/sh]\n    args: [-c, ls]\n"),
        ["/bin/sh", "-c", "ls"]
    );
    let e = err(&pod(
        "  containers:\n  - {name: app, image: registry.example/nocmd:1}\n",
    ));
    assert!(e.contains("spec.containers[0]: no command"), "{e}");
}

#[test]
fn environment_and_expansion() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: prod
  labels: {tier: front}
  annotations: {team: blue}
spec:
  serviceAccountName: robot
  containers:
  - name: app
    image: registry.example/app:1
    tty: true
    workingDir: /work
    envFrom:
    - configMapRef: {name: settings}
      prefix: CFG_
    - secretRef: {name: creds}
    env:
    - {name: MODE, value: debug}
    - {name: GREETING, value: "hello $(CFG_who) $$(CFG_who) $(NOPE)"}
    - name: POD
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: NS
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: TIER
      valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}
    - name: TEAM
      valueFrom: {fieldRef: {fieldPath: "metadata.annotations['team']"}}
    - name: LATER
      valueFrom: {fieldRef: {fieldPath: "metadata.annotations['set-later']"}}
    - name: SA
      valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}
    - name: IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: CPU
      valueFrom: {resourceFieldRef: {resource: limits.cpu}}
    - name: KEY
      valueFrom: {configMapKeyRef: {name: settings, key: who}}
    - name: OPTIONAL
      valueFrom: {configMapKeyRef: {name: settings, key: missing, optional: true}}
    - name: EMPTY
    command: [/bin/echo]
    args: ["$(MODE)", "$$(MODE)", "$(PATH)", "$(POD)"]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: prod}
data: {who: world}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {PASSWORD: czNjcjN0}
"#;
    let c = containers(yaml);
    let p = &c[1].oci.process;
    let env: Vec<&str> = p.env.iter().map(String::as_str).collect();
    assert_eq!(
        env,
        [
            "PATH=/bin",
            "MODE=debug",
            "TERM=xterm",
            "HOSTNAME=$(host-name)",
            "CFG_who=world",
            "PASSWORD=s3cr3t",
            "GREETING=hello world $(CFG_who) $(NOPE)",
            "POD=$(sandbox-name)",
            "NS=prod",
            "TIER=front",
            "TEAM=blue",
            "LATER=$(todo-annotation)",
            "SA=robot",
            "IP=$(pod-ip)",
            "CPU=$(resource-field)",
            "KEY=world",
            "EMPTY=",
        ]
    );
    // kubelet expands $(VAR) from the pod's variables only (not the image's PATH); `$$` stays
    // escaped for the rules.
    assert_eq!(
        p.args,
        [
            "/bin/echo",
            "debug",
            "$$(MODE)",
            "$(PATH)",
            "$(sandbox-name)"
        ]
    );
    assert_eq!(p.cwd, "/work");
    assert!(p.terminal);
    assert_eq!(
        c[1].oci.annotations["io.kubernetes.cri.sandbox-namespace"],
        "prod"
    );
    assert_eq!(c[1].oci.annotations["team"], "blue");
    // Without a workingDir the image's is used; without either, "/".
    let c = containers(&pod(
        "  containers:\n  - {name: a, image: registry.example/app:1}\n  - {name: b, image: busybox}\n",
    ));
    assert_eq!(c[1].oci.process.cwd, "/srv");
    assert_eq!(c[2].oci.process.cwd, "/");
    assert_eq!(
        c[2].oci.process.env,
        [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=$(host-name)"
        ]
    );
}

#[test]
fn missing_config_sources_are_errors_naming_pod_container_and_key() {
    let base = |env: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: prod}}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: busybox\n        env:\n{env}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: prod}}\ndata: {{who: world}}\n"
        )
    };
    let e = err(&base(
        "        - name: X\n          valueFrom: {configMapKeyRef: {name: settings, key: nope}}",
    ));
    assert_eq!(
        e,
        "Deployment prod/web, container \"app\": ConfigMap \"settings\" has no key \"nope\" (spec.template.spec.containers[0].env[0].valueFrom.configMapKeyRef); add the key to the ConfigMap, or mark the reference optional"
    );
    let e = err(&base(
        "        - name: X\n          valueFrom: {configMapKeyRef: {name: other, key: who}}",
    ));
    assert!(e.contains("ConfigMap \"other\" not found"), "{e}");
    let e = err(&base(
        "        - name: X\n          valueFrom: {secretKeyRef: {name: creds, key: pw}}",
    ));
    assert!(e.contains("Secret \"creds\" not found"), "{e}");
    let e = err(&base(
        "        - name: X\n          valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}",
    ));
    assert!(e.contains("label \"app\" is not set"), "{e}");
    let e = err(&base(
        "        - name: X\n          valueFrom: {fieldRef: {fieldPath: status.podIPs}}",
    ));
    assert!(
        e.contains(
            "env[0].valueFrom.fieldRef.fieldPath: fieldRef \"status.podIPs\" is not supported"
        ),
        "{e}"
    );
    // An optional reference to a missing ConfigMap drops the variable.
    let yaml = base(
        "        - name: X\n          valueFrom: {configMapKeyRef: {name: other, key: who, optional: true}}",
    );
    assert!(
        containers(&yaml)[1]
            .oci
            .process
            .env
            .iter()
            .all(|e| !e.starts_with("X="))
    );
}

#[test]
fn errors_name_the_yaml_path() {
    let e = err(&pod(
        "  containers:\n  - {name: a, image: busybox}\n  - name: b\n    image: busybox\n    volumeMounts:\n    - {name: data, mountPath: /data}\n",
    ));
    assert_eq!(
        e,
        "Pod web: spec.containers[1].volumeMounts[0]: volume \"data\" not defined in spec.volumes"
    );
    let e = err(&pod(
        "  containers:\n  - {name: a, image: quay.io/unknown:1}\n",
    ));
    assert!(e.starts_with("Pod web: spec.containers[0].image: image \"quay.io/unknown:1\" is not in the image-info file"), "{e}");
    assert!(e.contains("nunki images pull"), "{e}");
    let e = err(&pod(
        "  containers:\n  - name: a\n    image: busybox\n    volumeMounts:\n    - {name: n, mountPath: /n}\n  volumes:\n  - name: n\n    nfs: {server: x, path: /}\n",
    ));
    assert_eq!(
        e,
        "Pod web: spec.volumes[0]: volume \"n\" of this type is not supported"
    );
    let e = err(&pod(
        "  containers:\n  - name: a\n    image: busybox\n    volumeMounts:\n    - {name: c, mountPath: /etc/x.conf, subPath: x.conf}\n  volumes:\n  - name: c\n    configMap: {name: c}\n",
    ));
    assert!(
        e.contains("spec.containers[0].volumeMounts[0].subPath: subPath"),
        "{e}"
    );
    let e = err(&pod(
        "  hostPID: true\n  containers:\n  - {name: a, image: busybox}\n",
    ));
    assert!(e.contains("spec.hostPID: hostPID: true"), "{e}");
    let e = err(&pod(
        "  containers:\n  - {name: a, image: registry.example/named:1}\n",
    ));
    assert!(
        e.contains("the image's user \"ghost\" is not in its /etc/passwd"),
        "{e}"
    );
    let e = err(&pod(
        "  securityContext: {runAsUser: -5}\n  containers:\n  - {name: a, image: busybox}\n",
    ));
    assert!(e.contains("spec.securityContext: runAsUser -5"), "{e}");
    let e = err(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - name: a\n            image: busybox\n            volumeMounts: [{name: x, mountPath: /x}]\n",
    );
    assert!(
        e.contains("spec.jobTemplate.spec.template.spec.containers[0].volumeMounts[0]"),
        "{e}"
    );
}

#[test]
fn image_users_with_guest_pull_must_be_pinned() {
    let e = err(&pod(
        "  containers:\n  - {name: a, image: registry.example/user:1}\n",
    ));
    assert!(
        e.contains("runs as UID 1000, GID 1000, groups [29, 1000]"),
        "{e}"
    );
    assert!(
        e.contains("spec.containers[0].securityContext: runAsUser: 1000 runAsGroup: 1000"),
        "{e}"
    );
    assert!(e.contains("supplementalGroups: [29]"), "{e}");
    let c = containers(&pod(
        "  securityContext: {supplementalGroups: [29]}\n  containers:\n  - name: a\n    image: registry.example/user:1\n    securityContext: {runAsUser: 1000, runAsGroup: 1000}\n",
    ));
    let user = &c[1].oci.process.user;
    assert_eq!((user.uid, user.gid), (1000, 1000));
    assert_eq!(
        user.additional_gids.iter().copied().collect::<Vec<_>>(),
        [29, 1000]
    );
    // Without guest pull, containerd resolves the image's user itself.
    let mut settings = Settings::default();
    settings.cluster_config.guest_pull = false;
    let generator = PolicyGenerator::new(settings).unwrap();
    let c = try_gen_with(
        &generator,
        &pod("  containers:\n  - {name: a, image: registry.example/user:1}\n"),
    )
    .unwrap();
    assert_eq!(c[1].oci.process.user.uid, 1000);
}

#[test]
fn capabilities_and_privileges() {
    let c = containers(&pod(
        "  containers:\n  - {name: plain, image: busybox}\n  - name: added\n    image: busybox\n    securityContext:\n      capabilities: {add: [NET_ADMIN], drop: [MKNOD]}\n      allowPrivilegeEscalation: false\n  - name: minimal\n    image: busybox\n    securityContext:\n      capabilities: {drop: [ALL], add: [net_bind_service]}\n",
    ));
    assert_eq!(c[1].oci.process.capabilities.bounding, ["$(default_caps)"]);
    assert!(!c[1].oci.process.no_new_privileges);
    let added = &c[2].oci.process.capabilities;
    assert!(added.bounding.contains(&"CAP_NET_ADMIN".to_owned()));
    assert!(!added.bounding.contains(&"CAP_MKNOD".to_owned()));
    assert_eq!(added.bounding, added.permitted);
    assert!(added.ambient.is_empty() && added.inheritable.is_empty());
    assert!(c[2].oci.process.no_new_privileges);
    assert_eq!(
        c[3].oci.process.capabilities.effective,
        ["CAP_NET_BIND_SERVICE"]
    );
    // The pause container keeps read-only sysfs when nobody is privileged.
    assert_eq!(mount(&c[0], "/sys")[0].options.last().unwrap(), "ro");

    let c = containers(&pod(
        "  containers:\n  - name: p\n    image: busybox\n    securityContext: {privileged: true, capabilities: {drop: [ALL]}}\n",
    ));
    let p = &c[1];
    assert_eq!(p.oci.process.capabilities.bounding, ["$(privileged_caps)"]);
    assert!(p.oci.linux.masked_paths.is_empty() && p.oci.linux.readonly_paths.is_empty());
    assert_eq!(mount(p, "/sys")[0].options.last().unwrap(), "rw");
    assert_eq!(mount(p, "/sys/fs/cgroup")[0].options.last().unwrap(), "rw");
    // A privileged container makes the pause container's sysfs writable too.
    assert_eq!(mount(&c[0], "/sys")[0].options.last().unwrap(), "rw");
}

#[test]
fn read_only_root_and_settings_mounts() {
    let c = containers(&pod(
        "  containers:\n  - name: a\n    image: busybox\n    terminationMessagePath: /tmp/last-words\n    securityContext: {readOnlyRootFilesystem: true}\n",
    ));
    let a = &c[1];
    assert!(a.oci.root.readonly);
    assert_eq!(a.oci.root.path, "$(root_path)");
    assert_eq!(
        mount(a, "/etc/hostname")[0].options,
        ["rbind", "rprivate", "ro"]
    );
    assert_eq!(
        mount(a, "/etc/resolv.conf")[0].source,
        "$(sfprefix)resolv.conf$"
    );
    assert_eq!(
        mount(a, "/tmp/last-words")[0].source,
        "$(sfprefix)last-words$"
    );
    assert!(mount(a, "/dev/termination-log").is_empty());
    // /dev/shm comes from the sandbox, not a per-container tmpfs.
    let shm = mount(a, "/dev/shm");
    assert_eq!(shm.len(), 1);
    assert_eq!(shm[0].source, "/run/kata-containers/sandbox/shm");
    assert_eq!(
        mount(a, "/var/run/secrets/kubernetes.io/serviceaccount")[0].options,
        ["rbind", "rprivate", "ro"]
    );
}

#[test]
fn volumes() {
    let yaml = pod(r#"  securityContext: {fsGroup: 2000}
  containers:
  - name: a
    image: registry.example/volumes:1
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: ram, mountPath: /ram, readOnly: true}
    - {name: config, mountPath: /etc/app}
    - {name: secret, mountPath: /etc/secret}
    - {name: token, mountPath: /var/run/token}
    - {name: info, mountPath: /etc/podinfo}
    - {name: dev, mountPath: /dev/fuse}
    - {name: host, mountPath: /host-logs, mountPropagation: Bidirectional}
    - {name: claim, mountPath: /claim, readOnly: true}
    - {name: scratch, mountPath: /mnt/yaml}
    - {name: ram, mountPath: /per-pod, subPathExpr: "$(POD)"}
  volumes:
  - {name: scratch, emptyDir: {}}
  - name: ram
    emptyDir: {medium: Memory}
  - {name: config, configMap: {name: c}}
  - {name: secret, secret: {secretName: s}}
  - {name: token, projected: {sources: [{serviceAccountToken: {path: token}}]}}
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
  - {name: dev, hostPath: {path: /dev/fuse}}
  - {name: host, hostPath: {path: /var/log}}
  - {name: claim, persistentVolumeClaim: {claimName: data}}
"#);
    let c = containers(&yaml);
    let a = &c[1];
    let scratch = mount(a, "/scratch");
    assert_eq!(scratch.len(), 1);
    assert_eq!(
        (scratch[0].type_.as_str(), scratch[0].source.as_str()),
        ("bind", "")
    );
    let ram = mount(a, "/ram")[0];
    assert_eq!(ram.source, "^/run/kata-containers/sandbox/ephemeral/ram$");
    assert_eq!(ram.options, ["rbind", "rprivate", "ro"]);
    assert_eq!(mount(a, "/etc/app")[0].source, "$(sfprefix)app$");
    assert_eq!(mount(a, "/etc/app")[0].options, ["rbind", "rprivate", "ro"]);
    assert_eq!(mount(a, "/etc/secret")[0].source, "$(sfprefix)secret$");
    assert_eq!(
        mount(a, "/var/run/token")[0].options,
        ["rbind", "rprivate", "ro"]
    );
    assert_eq!(mount(a, "/etc/podinfo")[0].source, "$(sfprefix)podinfo$");
    let dev = mount(a, "/dev/fuse")[0];
    assert_eq!(
        (dev.source.as_str(), dev.options.as_slice()),
        (
            "/dev/fuse",
            &["rbind".to_owned(), "rprivate".to_owned(), "rw".to_owned()][..]
        )
    );
    let host = mount(a, "/host-logs")[0];
    assert_eq!(host.source, "$(sfprefix)host\\-logs$");
    assert_eq!(host.options, ["rbind", "rshared", "rw"]);
    assert_eq!(mount(a, "/claim")[0].options, ["rbind", "rprivate", "ro"]);
    let per_pod = mount(a, "/per-pod")[0];
    assert_eq!(per_pod.source, "$(sfprefix)per-pod$");
    // Image volumes: normalized, and skipped where the pod mounts something.
    assert_eq!(mount(a, "/data")[0].source, "$(sfprefix)data$");
    assert_eq!(
        mount(a, "/cache/dir")[0].options,
        ["rbind", "rprivate", "rw"]
    );
    assert_eq!(mount(a, "/mnt/yaml").len(), 1);
    assert_eq!(mount(a, "/mnt/yaml")[0].source, "");
    // One storage per guest emptyDir mount (not for subPathExpr): two block, one tmpfs.
    let drivers: Vec<(&str, &str)> = a
        .storages
        .iter()
        .map(|s| (s.driver.as_str(), s.fstype.as_str()))
        .collect();
    assert_eq!(
        drivers,
        [("", "ext4"), ("ephemeral", "tmpfs"), ("", "ext4")]
    );
    let block = &a.storages[0];
    assert_eq!(block.fs_group.as_ref().map(|g| g.group_id), Some(2000));
    assert_eq!(
        block.driver_options,
        ["encryption_key=ephemeral", "create_filesystem"]
    );
    assert_eq!(block.mount_point, "$(spath)/$(b64_device_id)");
    assert!(block.shared);
    let tmpfs = &a.storages[1];
    assert_eq!(tmpfs.options, ["fsgid=2000"]);
    assert_eq!(
        tmpfs.mount_point,
        "^/run/kata-containers/sandbox/ephemeral/ram$"
    );
    assert!(tmpfs.fs_group.is_none());

    // shared-fs emptyDirs: two acceptable sources, no storage.
    let mut settings = Settings::default();
    settings.cluster_config.emptydir_type = "shared-fs".to_owned();
    let c = try_gen_with(&PolicyGenerator::new(settings).unwrap(), &yaml).unwrap();
    let scratch = mount(&c[1], "/scratch");
    assert_eq!(scratch.len(), 2);
    assert_eq!(scratch[0].source, "^$(cpath)/sandbox-[0-9a-f]{16}-scratch$");
    assert_eq!(scratch[1].source, "$(sfprefix)scratch$");
    assert_eq!(c[1].storages.len(), 1);

    // ConfigMap storages when enabled.
    let mut settings = Settings::default();
    settings.kata_config.enable_configmap_secret_storages = true;
    let c = try_gen_with(&PolicyGenerator::new(settings).unwrap(), &yaml).unwrap();
    assert!(
        c[1].storages
            .iter()
            .any(|s| s.mount_point == "$(sfprefix)app$" && s.fstype == "bind")
    );
}

#[test]
fn annotations_and_names() {
    let yaml = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: data}
spec:
  template:
    metadata:
      annotations:
        io.katacontainers.config.hypervisor.cc_init_data: old-policy
        note: kept
    spec:
      hostNetwork: true
      containers:
      - {name: db, image: busybox}
"#;
    let c = containers(yaml);
    let pause = &c[0].oci;
    assert_eq!(
        pause.annotations["io.kubernetes.cri.sandbox-name"],
        "^db-[0-9]+$"
    );
    assert_eq!(
        pause.annotations["io.kubernetes.cri.sandbox-namespace"],
        "data"
    );
    assert!(pause.annotations["nerdctl/network-namespace"].starts_with("^/var/run/netns/cnitest-"));
    assert!(
        !pause
            .annotations
            .contains_key("io.kubernetes.cri.container-name")
    );
    assert!(
        !pause
            .annotations
            .contains_key("io.kubernetes.cri.image-name")
    );
    let types: Vec<&str> = pause
        .linux
        .namespaces
        .iter()
        .map(|n| n.type_.as_str())
        .collect();
    assert_eq!(types, ["ipc", "mount"]);
    let db = &c[1].oci;
    assert_eq!(
        db.annotations["io.kubernetes.cri.image-name"],
        "busybox:latest"
    );
    assert_eq!(db.annotations["note"], "kept");
    assert!(
        !db.annotations
            .contains_key("io.katacontainers.config.hypervisor.cc_init_data")
    );
    let types: Vec<&str> = db
        .linux
        .namespaces
        .iter()
        .map(|n| n.type_.as_str())
        .collect();
    assert_eq!(types, ["ipc", "uts", "mount"]);
    assert!(
        c[1].runtime_anno_patterns
            .contains_key("^io\\.kubernetes\\.container\\.terminationMessagePath$")
    );
    assert!(c[0].runtime_anno_patterns.is_empty());
    let re = regex::Regex::new(&db.annotations["io.kubernetes.cri.sandbox-name"]).unwrap();
    assert!(re.is_match("db-3") && !re.is_match("db-x"));
}

#[test]
fn exec_commands_devices_gpus_and_sysctls() {
    let yaml = pod(r#"  shareProcessNamespace: true
  securityContext:
    sysctls: [{name: net.core.somaxconn, value: "1024"}]
  containers:
  - name: a
    image: busybox
    livenessProbe: {exec: {command: [cat, /tmp/healthy]}}
    readinessProbe: {httpGet: {port: 80}}
    startupProbe: {exec: {command: [/bin/true]}}
    lifecycle:
      postStart: {exec: {command: [/hook, start]}}
      preStop: {exec: {command: [/hook, stop]}}
    volumeDevices: [{name: raw, devicePath: /dev/xvda}]
    resources: {limits: {nvidia.com/pgpu: "2"}}
  volumes:
  - {name: raw, persistentVolumeClaim: {claimName: raw}}
"#);
    let c = containers(&yaml);
    let a = &c[1];
    assert_eq!(
        a.exec_commands,
        vec![
            vec!["cat", "/tmp/healthy"],
            vec!["/bin/true"],
            vec!["/hook", "start"],
            vec!["/hook", "stop"]
        ]
    );
    assert!(a.sandbox_pidns && !c[0].sandbox_pidns);
    let devices: Vec<(&str, &str)> = a
        .devices
        .iter()
        .map(|d| (d.container_path.as_str(), d.type_.as_str()))
        .collect();
    assert_eq!(
        devices,
        [
            ("/dev/xvda", ""),
            ("/dev/vfio/devices/vfio", "vfio-pci-gk"),
            ("/dev/vfio/devices/vfio", "vfio-pci-gk")
        ]
    );
    assert_eq!(a.oci.linux.devices[0].path, "/dev/xvda");
    assert_eq!(
        a.runtime_anno_patterns["^cdi\\.k8s\\.io/vfio[0-9]+$"],
        "^nvidia\\.com/gpu=[0-9]+$"
    );
    assert_eq!(a.oci.linux.sysctl["net.core.somaxconn"], "1024");
    assert_eq!(
        a.oci.linux.sysctl["net.ipv4.ping_group_range"],
        "0 2147483647"
    );
    assert_eq!(c[0].oci.linux.sysctl["net.core.somaxconn"], "1024");

    let e = err(&pod(
        "  containers:\n  - name: a\n    image: busybox\n    volumeDevices: [{name: raw, devicePath: /dev/vfio/devices/vfio0}]\n  volumes:\n  - {name: raw, persistentVolumeClaim: {claimName: raw}}\n",
    ));
    assert!(
        e.contains("volumeDevices[0].devicePath: \"/dev/vfio/devices/vfio0\" is reserved"),
        "{e}"
    );
    let e = err(&pod(
        "  containers:\n  - name: a\n    image: busybox\n    resources: {limits: {nvidia.com/pgpu: 500m}}\n",
    ));
    assert!(
        e.contains("resources.limits[nvidia.com/pgpu]: \"500m\" is not a whole number"),
        "{e}"
    );
}

#[test]
fn policy_text_is_deterministic_and_has_genpolicy_shape() {
    let yaml = pod("  containers:\n  - {name: a, image: registry.example/app:1}\n");
    let loaded = pod_yaml::load(&[&yaml]);
    let settings = Settings::default();
    let first = generate_policy(&loaded.pods[0], &images(), &loaded.sources, &settings).unwrap();
    let second = generate_policy(&loaded.pods[0], &images(), &loaded.sources, &settings).unwrap();
    assert_eq!(first, second);
    assert!(first.starts_with(nunki_policy::RULES));
    let data =
        generate_policy_data(&loaded.pods[0], &images(), &loaded.sources, &settings).unwrap();
    let keys: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "containers",
        "common",
        "sandbox",
        "request_defaults",
        "devices",
        "cluster_config",
    ] {
        assert!(keys.contains(&key), "{key}");
    }
    let entry = &data["containers"][1];
    let mut entry_keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    entry_keys.sort_unstable();
    assert_eq!(
        entry_keys,
        [
            "OCI",
            "devices",
            "exec_commands",
            "runtime_anno_patterns",
            "sandbox_pidns",
            "storages"
        ]
    );
    assert_eq!(
        entry["OCI"]["Process"]["User"],
        json!({"UID": 0, "GID": 0, "AdditionalGids": [0], "Username": ""})
    );
    // Empty lists that genpolicy omits are omitted; the agent's names are used.
    let pause = &data["containers"][0]["OCI"];
    assert!(pause.get("Mounts").is_some() && pause["Process"].get("Env").is_some());
    assert!(pause["Linux"].get("Sysctl").is_some());
    assert_eq!(
        pause["Mounts"][0],
        json!({"destination": "/proc", "source": "proc", "type_": "proc", "options": ["nosuid", "noexec", "nodev"]})
    );
}

#[test]
fn container_settings_follow_the_settings() {
    let mut settings = Settings::default();
    settings.cluster_config.pause_container_image = "registry.example/pause:9".to_owned();
    settings.cluster_config.emptydir_type = "block-plain".to_owned();
    settings.kata_config.oci_version = "1.2.1".to_owned();
    settings.common.default_caps = vec!["CAP_KILL".to_owned()];
    let generator = PolicyGenerator::new(settings.clone()).unwrap();
    let cs = generator.container_settings();
    assert_eq!(cs.pause_container_image, "registry.example/pause:9");
    assert_eq!(cs.emptydir_type, EmptyDirType::BlockPlain);
    let c = try_gen_with(
        &generator,
        &pod("  containers:\n  - {name: a, image: busybox}\n"),
    )
    .unwrap();
    assert_eq!(c[1].oci.version, "1.2.1");
    assert_eq!(c[1].oci.process.capabilities.bounding, ["$(default_caps)"]);
    // The configured pause image falls back to the built-in pause config when the image-info
    // file has no entry for it.
    assert_eq!(c[0].oci.process.args, ["/pause"]);
    assert_eq!(c[0].oci.process.user.uid, 65535);
    // An unknown emptyDir type is refused.
    settings.cluster_config.emptydir_type = "tmpfs".to_owned();
    let e = PolicyGenerator::new(settings).unwrap_err().to_string();
    assert!(e.contains("emptydir_type \"tmpfs\""), "{e}");
    let mut custom = ContainerSettings::default();
    custom.mount_destinations.clear();
    let generator = PolicyGenerator::with_container_settings(Settings::default(), custom).unwrap();
    let c = try_gen_with(
        &generator,
        &pod("  containers:\n  - {name: a, image: busybox}\n"),
    )
    .unwrap();
    assert!(mount(&c[1], "/etc/hosts").is_empty());
}

#[test]
fn builtin_images_need_no_file_entry() {
    let yaml = pod(
        "  initContainers:\n  - {name: initializer, image: ghcr.io/nunki/initializer:v1}\n  containers:\n  - {name: a, image: busybox}\n",
    );
    let loaded = pod_yaml::load(&[&yaml]);
    let images = images();
    let e = generator()
        .containers(&loaded.pods[0], &images, &loaded.sources)
        .unwrap_err();
    assert!(
        e.to_string().contains("ghcr.io/nunki/initializer:v1"),
        "{e}"
    );
    let images = images.with_builtin(
        "ghcr.io/nunki/initializer:v1",
        ImageConfig {
            entrypoint: Some(vec!["/initializer".to_owned()]),
            ..ImageConfig::default()
        },
    );
    let c = generator()
        .containers(&loaded.pods[0], &images, &loaded.sources)
        .unwrap();
    assert_eq!(c[1].oci.process.args, ["/initializer"]);
}

/// Upstream genpolicy's CLI cases (`tests/generate/testdata`): a Pod that references a
/// ConfigMap or Secret key fails without the file that defines it and succeeds with it.
#[test]
fn upstream_config_reference_cases() {
    let dir = std::env::var("NUNKI_TESTDATA")
        .unwrap_or_else(|_| format!("{}/../../../shared/testdata", env!("CARGO_MANIFEST_DIR")));
    let dir = format!("{dir}/kata-policy/src/tools/genpolicy/tests/generate/testdata");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
    let fixtures = format!(
        "{}/tests/fixtures/kata-images.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let images = ImageInfo::read(std::path::Path::new(&fixtures)).unwrap();
    let generate = |files: &[&str]| {
        let texts: Vec<String> = files.iter().map(|f| read(f)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let loaded = pod_yaml::load(&refs);
        generator().containers(&loaded.pods[0], &images, &loaded.sources)
    };

    let c = generate(&["simple_pod.yaml"]).unwrap();
    assert_eq!(c[1].oci.process.args, ["/bin/sh", "-c", "echo hello"]);

    let e = generate(&["pod_with_config_map_ref.yaml"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ConfigMap \"configmap-sample\" not found"),
        "{e}"
    );
    let c = generate(&["pod_with_config_map_ref.yaml", "config_map.yaml"]).unwrap();
    assert!(
        c[1].oci
            .process
            .env
            .contains(&"ENV_FROM_CONFIGMAP=YmFyCg==".to_owned())
    );

    let e = generate(&["pod_with_secret_ref.yaml"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("Secret \"secret-sample\" not found"), "{e}");
    let c = generate(&["pod_with_secret_ref.yaml", "secret.yaml"]).unwrap();
    let env = &c[1].oci.process.env;
    assert!(env.contains(&"ENV_FROM_SECRET=bar\n".to_owned()), "{env:?}");
    assert!(
        env.contains(&"SERVICE_ACCOUNT=default".to_owned()),
        "{env:?}"
    );
    assert!(
        env.contains(&"POD_NAMESPACE=$(sandbox-namespace)".to_owned()),
        "{env:?}"
    );
    assert!(
        env.contains(&"ISTIO_META_NODE_NAME=$(node-name)".to_owned()),
        "{env:?}"
    );
}

mod no_panics {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Capabilities, ConfigMapVolumeSource, Container, DownwardAPIVolumeSource,
        EmptyDirVolumeSource, EnvVar, HostPathVolumeSource, NFSVolumeSource, PodSecurityContext,
        PodSpec, ProjectedVolumeSource, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    };
    use nunki_policy::{ConfigSources, PodInput, WorkloadKind};
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[$()a-zA-Z0-9/ .é-]{0,10}").unwrap()
    }

    fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => proptest::string::string_regex("(/[a-z.-]{1,6}){1,3}").unwrap(),
            1 => Just("/".to_owned()),
            1 => Just(String::new()),
            1 => Just("/a//b//".to_owned()),
            1 => Just("/..".to_owned()),
            1 => Just("relative".to_owned()),
            1 => Just("/dev".to_owned()),
            1 => text(),
        ]
    }

    fn volume(name: String) -> impl Strategy<Value = Volume> {
        (0..8usize, path(), prop::option::of(text())).prop_map(move |(kind, host, medium)| {
            let mut v = Volume {
                name: name.clone(),
                ..Volume::default()
            };
            match kind {
                0 => {
                    v.empty_dir = Some(EmptyDirVolumeSource {
                        medium,
                        ..EmptyDirVolumeSource::default()
                    });
                }
                1 => v.config_map = Some(ConfigMapVolumeSource::default()),
                2 => v.secret = Some(SecretVolumeSource::default()),
                3 => v.projected = Some(ProjectedVolumeSource::default()),
                4 => v.downward_api = Some(DownwardAPIVolumeSource::default()),
                5 => {
                    v.host_path = Some(HostPathVolumeSource {
                        path: host,
                        ..HostPathVolumeSource::default()
                    });
                }
                6 => v.nfs = Some(NFSVolumeSource::default()),
                _ => {}
            }
            v
        })
    }

    fn container() -> impl Strategy<Value = Container> {
        (
            prop::sample::select(vec![
                "busybox",
                "busybox",
                "registry.example/app:1",
                "registry.example/app:1",
                "registry.example/user:1",
                "registry.example/volumes:1",
                "registry.example/volumes:1",
                "registry.example/named:1",
                "registry.example/nocmd:1",
                "unknown",
            ]),
            prop::option::of(prop::collection::vec(text(), 0..3)),
            prop::option::of(prop::collection::vec(text(), 0..3)),
            prop::collection::vec((text(), prop::option::of(text())), 0..4),
            prop::collection::vec(
                (
                    prop_oneof![8 => 0..2usize, 1 => Just(2usize)],
                    path(),
                    prop::option::weighted(0.1, text()),
                ),
                0..3,
            ),
            (
                prop::option::of(-2i64..70_000),
                prop::option::of(any::<bool>()),
                prop::collection::vec(
                    prop::sample::select(vec!["ALL", "all", "NET_ADMIN", ""]),
                    0..3,
                ),
                prop::option::of(path()),
            ),
        )
            .prop_map(
                |(image, command, args, env, mounts, (uid, privileged, caps, termination))| {
                    Container {
                        name: "c".to_owned(),
                        image: Some(image.to_owned()),
                        command,
                        args,
                        env: Some(
                            env.into_iter()
                                .map(|(name, value)| EnvVar {
                                    name,
                                    value,
                                    ..EnvVar::default()
                                })
                                .collect(),
                        ),
                        volume_mounts: Some(
                            mounts
                                .into_iter()
                                .map(|(v, mount_path, sub_path_expr)| VolumeMount {
                                    name: format!("v{v}"),
                                    mount_path,
                                    sub_path_expr,
                                    ..VolumeMount::default()
                                })
                                .collect(),
                        ),
                        termination_message_path: termination,
                        security_context: Some(SecurityContext {
                            run_as_user: uid,
                            run_as_group: uid,
                            privileged,
                            capabilities: Some(Capabilities {
                                add: Some(caps.iter().map(|c| (*c).to_owned()).collect()),
                                drop: Some(caps.iter().rev().map(|c| (*c).to_owned()).collect()),
                            }),
                            ..SecurityContext::default()
                        }),
                        ..Container::default()
                    }
                },
            )
    }

    fn pod() -> impl Strategy<Value = PodInput> {
        (
            prop::sample::select(vec![
                WorkloadKind::Pod,
                WorkloadKind::Deployment,
                WorkloadKind::CronJob,
            ]),
            text(),
            prop::collection::vec(container(), 1..4),
            prop::collection::vec(container(), 0..2),
            volume("v0".to_owned()),
            volume("v1".to_owned()),
            prop::option::of(-1i64..70_000),
        )
            .prop_map(
                |(kind, name, containers, init, v0, v1, fs_group)| PodInput {
                    kind,
                    name,
                    generate_name: None,
                    namespace: None,
                    annotations: Default::default(),
                    labels: Default::default(),
                    spec: PodSpec {
                        containers,
                        init_containers: Some(init),
                        volumes: Some(vec![v0, v1]),
                        security_context: Some(PodSecurityContext {
                            fs_group,
                            ..PodSecurityContext::default()
                        }),
                        ..PodSpec::default()
                    },
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Arbitrary combinations of the fields the generator reads give a policy or an error,
        /// never a panic; a generated policy always renders.
        #[test]
        fn generation_never_panics(input in pod()) {
            let generator = generator();
            match generator.policy(&input, &images(), &ConfigSources::default()) {
                Ok(text) => prop_assert!(text.contains("policy_data := ")),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}

/// The container settings' own defaults agree with the shared values of `Settings::default()`,
/// so code that uses `ContainerSettings::default()` directly gets the same policy.
#[test]
fn container_setting_defaults_agree_with_settings_defaults() {
    assert_eq!(
        ContainerSettings::for_settings(&Settings::default()).unwrap(),
        ContainerSettings::default()
    );
}
