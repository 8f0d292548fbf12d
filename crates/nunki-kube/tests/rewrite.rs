#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Rewrites: snapshots of the rewritten YAML, idempotence, the Coordinator, conflicts,
//! policy annotations and per-workload access.

mod common;

use nunki_kube::{
    INITDATA_ANNOTATION, KubeError, POLICY_ANNOTATION, Resources, RewriteOptions, WorkloadRef,
};
use nunki_policy::WorkloadKind;

fn opts() -> RewriteOptions {
    RewriteOptions::new("ghcr.io/nunki/initializer:v1@sha256:abc")
}

fn rewrite(text: &str, options: &RewriteOptions) -> Resources {
    let mut r = Resources::from_str("in.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    r.rewrite(options).unwrap_or_else(|e| panic!("{e}"));
    r
}

fn rewrite_err(text: &str) -> KubeError {
    let mut r = Resources::from_str("in.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    r.rewrite(&opts()).unwrap_err()
}

const DEPLOYMENT: &str = r#"# a comment that the rewrite drops
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        keep: "yes"
    spec:
      containers:
      - name: web
        image: "nginx@sha256:0123"
        args: ["--listen", "on"]
        volumeMounts:
        - name: data
          mountPath: /data
        someFutureField: {x: 1}
      - name: sidecar
        image: busybox
      volumes:
      - name: data
        emptyDir: {}
      tolerations: [{key: k, operator: Exists}]
      futurePodField: true
"#;

const DEPLOYMENT_REWRITTEN: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
      annotations:
        keep: "yes"
    spec:
      containers:
      - name: web
        image: nginx@sha256:0123
        args:
        - --listen
        - "on"
        volumeMounts:
        - name: data
          mountPath: /data
        - name: tls-certs
          mountPath: /tls-config
        someFutureField:
          x: 1
      - name: sidecar
        image: busybox
        volumeMounts:
        - name: tls-certs
          mountPath: /tls-config
      volumes:
      - name: data
        emptyDir: {}
      - name: tls-certs
        emptyDir: {}
      tolerations:
      - key: k
        operator: Exists
      futurePodField: true
      runtimeClassName: kata-cc-isolation
      initContainers:
      - name: nunki-initializer
        image: ghcr.io/nunki/initializer:v1@sha256:abc
        env:
        - name: COORDINATOR_HOST
          value: coordinator
        volumeMounts:
        - name: tls-certs
          mountPath: /tls-config
"#;

#[test]
fn deployment_snapshot() {
    let text = DEPLOYMENT.replace("        someFutureField: {x: 1}\n", "");
    let want = DEPLOYMENT_REWRITTEN.replace("        someFutureField:\n          x: 1\n", "");
    let r = rewrite(&text, &opts());
    assert_eq!(r.to_combined_yaml().unwrap(), want);
}

#[test]
fn unknown_container_fields_are_errors_even_when_they_look_harmless() {
    let e = Resources::from_str("in.yaml", DEPLOYMENT).unwrap_err();
    assert_eq!(e.diagnostics().len(), 1);
    assert_eq!(
        e.diagnostics()[0].path,
        "spec.template.spec.containers[0].someFutureField"
    );
}

#[test]
fn rewriting_twice_is_byte_identical() {
    let text = DEPLOYMENT.replace("        someFutureField: {x: 1}\n", "");
    let first = rewrite(&text, &opts()).to_combined_yaml().unwrap();
    let second = rewrite(&first, &opts()).to_combined_yaml().unwrap();
    assert_eq!(first, second);
    // And reading the rewritten text, then rewriting, leaves its tree unchanged, so
    // `write_in_place` would not touch the file.
    let r = rewrite(&first, &opts());
    assert!(
        r.rendered_files()
            .unwrap()
            .iter()
            .all(|(_, _, changed)| !changed)
    );
}

#[test]
fn every_kind_is_rewritten_idempotently() {
    let files = common::yaml_files_below(&common::genpolicy_tests());
    for f in files {
        let mut r = Resources::read(std::slice::from_ref(&f)).unwrap();
        r.rewrite(&opts()).unwrap();
        for w in r.workloads() {
            let spec = w.pod_input().spec;
            let init = spec.init_containers.as_ref().unwrap();
            assert_eq!(init[0].name, "nunki-initializer", "{}", f.display());
            assert_eq!(
                init.iter()
                    .filter(|c| c.name == "nunki-initializer")
                    .count(),
                1
            );
            for c in init.iter().chain(&spec.containers) {
                let mounts = c.volume_mounts.as_ref().unwrap();
                assert_eq!(
                    mounts
                        .iter()
                        .filter(|m| m.name == "tls-certs" && m.mount_path == "/tls-config")
                        .count(),
                    1,
                    "{}: container {}",
                    f.display(),
                    c.name
                );
            }
        }
        let once = r.to_combined_yaml().unwrap();
        let mut again = Resources::from_str(&f, &once).unwrap();
        again.rewrite(&opts()).unwrap();
        assert_eq!(again.to_combined_yaml().unwrap(), once, "{}", f.display());
    }
}

#[test]
fn a_previous_initializer_is_updated_in_place_and_moved_first() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  initContainers:\n  - name: setup\n    image: busybox\n  - name: nunki-initializer\n    image: old:0\n    resources: {limits: {memory: 64Mi}}\n    env:\n    - name: OTHER\n      value: x\n    - name: COORDINATOR_HOST\n      valueFrom: {configMapKeyRef: {name: c, key: k}}\n  containers: [{name: c, image: x}]\n";
    let mut o = opts();
    o.coordinator_host = "coordinator.nunki:7777".to_owned();
    let r = rewrite(text, &o);
    let spec = r.workloads()[0].pod_input().spec;
    let init = spec.init_containers.unwrap();
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["nunki-initializer", "setup"]);
    let i = &init[0];
    assert_eq!(
        i.image.as_deref(),
        Some("ghcr.io/nunki/initializer:v1@sha256:abc")
    );
    assert!(
        i.resources.is_some(),
        "user settings on the Initializer are kept"
    );
    let env: Vec<(String, Option<String>, bool)> = i
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone(), e.value_from.is_some()))
        .collect();
    assert_eq!(
        env,
        [
            ("OTHER".to_owned(), Some("x".to_owned()), false),
            (
                "COORDINATOR_HOST".to_owned(),
                Some("coordinator.nunki:7777".to_owned()),
                false
            ),
        ]
    );
}

#[test]
fn the_coordinator_gets_no_initializer() {
    let text = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: coordinator}\nspec:\n  template:\n    metadata:\n      annotations:\n        nunki.edgeless.systems/pod-role: coordinator\n    spec:\n      runtimeClassName: kata-qemu-snp\n      initContainers:\n      - name: nunki-initializer\n        image: stale\n      containers: [{name: coordinator, image: c}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: other\n  annotations: {nunki.edgeless.systems/pod-role: worker}\nspec:\n  containers: [{name: c, image: x}]\n";
    let r = rewrite(text, &opts());
    let w = r.workloads();
    assert!(w[0].is_coordinator());
    assert!(!w[1].is_coordinator());
    let spec = w[0].pod_input().spec;
    assert!(
        spec.init_containers.is_none(),
        "a stale Initializer is removed"
    );
    assert!(spec.volumes.is_none());
    assert!(spec.containers[0].volume_mounts.is_none());
    assert_eq!(
        spec.runtime_class_name.as_deref(),
        Some("kata-qemu-snp"),
        "a kata-* class is kept"
    );
    assert!(w[1].pod_input().spec.init_containers.is_some());
    assert_eq!(
        w[0].pod_input()
            .annotations
            .get("nunki.edgeless.systems/pod-role")
            .map(String::as_str),
        Some("coordinator")
    );
}

#[test]
fn role_annotation_on_the_workload_instead_of_the_template_is_a_warning() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: coordinator\n  annotations: {nunki.edgeless.systems/pod-role: coordinator}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: x}]\n";
    let r = Resources::from_str("in.yaml", text).unwrap();
    assert!(!r.workloads()[0].is_coordinator());
    assert_eq!(r.warnings().len(), 1);
    assert!(
        r.warnings()[0]
            .message
            .contains("spec.template.metadata.annotations")
    );
}

#[test]
fn runtime_class_choice() {
    let pod = |class: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  {class}\n  containers: [{{name: c, image: x}}]\n"
        )
    };
    let class_after = |text: &str, o: &RewriteOptions| {
        let r = rewrite(text, o);
        (
            r.workloads()[0]
                .pod_input()
                .spec
                .runtime_class_name
                .unwrap(),
            r.warnings().len(),
        )
    };
    let mut forced = opts();
    forced.runtime_class = Some("kata-cc-custom".to_owned());
    assert_eq!(
        class_after(&pod(""), &opts()),
        ("kata-cc-isolation".to_owned(), 0)
    );
    assert_eq!(
        class_after(&pod("runtimeClassName: kata-qemu-snp"), &opts()),
        ("kata-qemu-snp".to_owned(), 0)
    );
    assert_eq!(
        class_after(&pod("runtimeClassName: runc"), &opts()),
        ("kata-cc-isolation".to_owned(), 1)
    );
    assert_eq!(
        class_after(&pod("runtimeClassName: kata"), &opts()),
        ("kata-cc-isolation".to_owned(), 1)
    );
    assert_eq!(
        class_after(&pod("runtimeClassName: kata-qemu-snp"), &forced),
        ("kata-cc-custom".to_owned(), 0)
    );
    assert_eq!(
        class_after(&pod(""), &forced),
        ("kata-cc-custom".to_owned(), 0)
    );
}

#[test]
fn conflicting_tls_volume_or_mount_is_an_error() {
    let base = |extra_volume: &str, extra_mount: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  volumes:\n  - name: v\n    emptyDir: {{}}\n{extra_volume}  containers:\n  - name: c\n    image: x\n    volumeMounts:\n    - {{name: v, mountPath: /v}}\n{extra_mount}"
        )
    };
    let cases = [
        (
            base("  - name: tls-certs\n    configMap: {name: mine}\n", ""),
            "spec.volumes[1]",
            "reserved",
        ),
        (
            base("", "    - {name: v, mountPath: /tls-config/}\n"),
            "spec.containers[0].volumeMounts[1]",
            "mount this volume elsewhere",
        ),
        (
            base(
                "  - name: tls-certs\n    emptyDir: {}\n",
                "    - {name: tls-certs, mountPath: /certs}\n",
            ),
            "spec.containers[0].volumeMounts[1]",
            "change it to that path",
        ),
    ];
    for (text, path, msg) in cases {
        let e = rewrite_err(&text);
        let d = &e.diagnostics()[0];
        assert_eq!(d.path, path, "{e}");
        assert!(d.message.contains(msg), "{e}");
    }
    // A matching existing volume and mount are fine and not duplicated.
    let ok = base(
        "  - name: tls-certs\n    emptyDir: {medium: Memory}\n",
        "    - {name: tls-certs, mountPath: /tls-config, readOnly: true}\n",
    );
    let r = rewrite(&ok, &opts());
    let spec = r.workloads()[0].pod_input().spec;
    assert_eq!(spec.volumes.as_ref().unwrap().len(), 2);
    assert_eq!(spec.containers[0].volume_mounts.as_ref().unwrap().len(), 2);
}

#[test]
fn set_policy_annotation_creates_maps_and_replaces_the_other_key() {
    let text = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: backup}\nspec:\n  schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: x}]\n";
    let mut r = rewrite(text, &opts());
    let w = r.workloads().remove(0);
    assert!(r.policy_annotations(&w).is_empty());
    r.set_policy_annotation(&w, POLICY_ANNOTATION, "cG9saWN5")
        .unwrap();
    assert_eq!(
        r.policy_annotations(&w).into_iter().collect::<Vec<_>>(),
        [(POLICY_ANNOTATION.to_string(), "cG9saWN5".to_string())]
    );
    r.set_policy_annotation(&w, INITDATA_ANNOTATION, "aW5pdGRhdGE=")
        .unwrap();
    assert_eq!(
        r.policy_annotations(&w).into_iter().collect::<Vec<_>>(),
        [(INITDATA_ANNOTATION.to_string(), "aW5pdGRhdGE=".to_string())]
    );
    let out = r.to_combined_yaml().unwrap();
    assert!(
        out.contains("      template:\n        metadata:\n          annotations:\n            io.katacontainers.config.hypervisor.cc_init_data: aW5pdGRhdGE=\n        spec:\n"),
        "{out}"
    );
    assert!(!out.contains(POLICY_ANNOTATION));
    // The generator never sees the policy annotations.
    assert!(r.workloads()[0].pod_input().annotations.is_empty());
    // Setting again is idempotent.
    r.set_policy_annotation(&w, INITDATA_ANNOTATION, "aW5pdGRhdGE=")
        .unwrap();
    assert_eq!(r.to_combined_yaml().unwrap(), out);

    assert!(matches!(
        r.set_policy_annotation(&w, "example.com/other", "x"),
        Err(KubeError::NotAPolicyAnnotation { .. })
    ));
    let other = Resources::from_str("other.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  containers: [{name: c, image: x}]\n").unwrap();
    let foreign: WorkloadRef = other.workloads().remove(0);
    assert!(matches!(
        r.set_policy_annotation(&foreign, INITDATA_ANNOTATION, "x"),
        Err(KubeError::UnknownWorkload(_))
    ));
}

#[test]
fn pod_input_reflects_the_rewritten_tree_without_policy_annotations() {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: prod\n  annotations:\n    a: b\n    {POLICY_ANNOTATION}: old\nspec:\n  containers: [{{name: c, image: x}}]\n"
    );
    let r = rewrite(&text, &opts());
    let w = &r.workloads()[0];
    let input = w.pod_input();
    assert_eq!(input.kind, WorkloadKind::Pod);
    assert_eq!(input.name, "p");
    assert_eq!(input.namespace.as_deref(), Some("prod"));
    assert_eq!(
        input.annotations.into_iter().collect::<Vec<_>>(),
        [("a".to_owned(), "b".to_owned())]
    );
    assert_eq!(
        input.spec.runtime_class_name.as_deref(),
        Some("kata-cc-isolation")
    );
    assert_eq!(
        input.spec.init_containers.unwrap()[0].name,
        "nunki-initializer"
    );
}

#[test]
fn workload_secret_ids() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: prod}\nspec:\n  containers: [{name: c, image: x}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: x}]\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: backup, namespace: ops}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: c, image: x}]\n";
    let r = Resources::from_str("in.yaml", text).unwrap();
    let ids: Vec<String> = r
        .workloads()
        .iter()
        .map(WorkloadRef::workload_secret_id)
        .collect();
    assert_eq!(
        ids,
        [
            "core/v1/Pod/prod/db",
            "apps/v1/Deployment/default/web",
            "batch/v1/CronJob/ops/backup"
        ]
    );
}

#[test]
fn list_items_are_rewritten_in_place() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n  spec:\n    containers: [{name: c, image: x}]\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: cm}\n  data: {k: v}\n";
    let mut r = rewrite(text, &opts());
    let w = r.workloads().remove(0);
    assert_eq!(w.list_item(), Some(0));
    r.set_policy_annotation(&w, INITDATA_ANNOTATION, "x")
        .unwrap();
    let out = r.to_combined_yaml().unwrap();
    let docs = nunki_kube::parse_documents("o".as_ref(), &out).unwrap();
    assert_eq!(docs.len(), 1);
    let item = &docs[0].get("items").unwrap().as_seq().unwrap()[0];
    assert_eq!(
        item.get_path(&["metadata", "annotations", INITDATA_ANNOTATION])
            .and_then(|n| n.as_str()),
        Some("x")
    );
    assert_eq!(
        item.get_path(&["spec", "runtimeClassName"])
            .and_then(|n| n.as_str()),
        Some("kata-cc-isolation")
    );
}
