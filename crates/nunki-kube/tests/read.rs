#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Reading: files and directories, documents and Lists, kinds, ConfigMaps and Secrets, typed
//! pod specs with unknown-field detection, errors with file/line/path, hostile input.

mod common;

use std::path::PathBuf;

use nunki_kube::{KubeError, Node, Resources};
use nunki_policy::WorkloadKind;

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - name: c
    image: busybox
";

fn read_str(text: &str) -> Resources {
    match Resources::from_str("in.yaml", text) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

fn read_err(text: &str) -> KubeError {
    match Resources::from_str("in.yaml", text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn multi_document_files_skip_empty_documents_and_expand_lists() {
    let text = format!(
        "---\n---\n# only a comment\n---\n{POD}---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {{name: s}}\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {{name: d, namespace: ns}}\n  spec:\n    template:\n      spec:\n        containers: [{{name: c, image: x}}]\n---\n"
    );
    let r = read_str(&text);
    let w = r.workloads();
    assert_eq!(w.len(), 2);
    assert_eq!(
        (w[0].kind(), w[0].name(), w[0].document(), w[0].list_item()),
        (WorkloadKind::Pod, "p", 0, None)
    );
    assert_eq!(
        (
            w[1].kind(),
            w[1].name(),
            w[1].namespace(),
            w[1].document(),
            w[1].list_item()
        ),
        (WorkloadKind::Deployment, "d", Some("ns"), 1, Some(1))
    );
    // The List stays one document in the output.
    let out = r.to_combined_yaml().unwrap();
    assert_eq!(out.matches("---\n").count(), 1, "{out}");
    assert!(out.contains("kind: List"));
}

#[test]
fn every_workload_kind_has_its_pod_template_found() {
    let template = "    template:\n      metadata:\n        labels: {app: x}\n      spec:\n        containers:\n        - name: main\n          image: img\n";
    let mut text = String::from(POD);
    for (api, kind) in [
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "ReplicaSet"),
        ("v1", "ReplicationController"),
        ("batch/v1", "Job"),
    ] {
        text.push_str(&format!(
            "---\napiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {}\nspec:\n{template}",
            kind.to_lowercase()
        ));
    }
    text.push_str(
        "---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: cron\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - name: job\n            image: jobimg\n",
    );
    let r = read_str(&text);
    let got: Vec<(WorkloadKind, String, String)> = r
        .workloads()
        .iter()
        .map(|w| {
            let input = w.pod_input();
            (
                w.kind(),
                w.name().to_owned(),
                input.spec.containers[0].name.clone(),
            )
        })
        .collect();
    let want = [
        (WorkloadKind::Pod, "p", "c"),
        (WorkloadKind::Deployment, "deployment", "main"),
        (WorkloadKind::StatefulSet, "statefulset", "main"),
        (WorkloadKind::DaemonSet, "daemonset", "main"),
        (WorkloadKind::ReplicaSet, "replicaset", "main"),
        (
            WorkloadKind::ReplicationController,
            "replicationcontroller",
            "main",
        ),
        (WorkloadKind::Job, "job", "main"),
        (WorkloadKind::CronJob, "cron", "job"),
    ]
    .map(|(k, n, c)| (k, n.to_owned(), c.to_owned()));
    assert_eq!(got, want);
    // Template labels reach the generator (for fieldRef metadata.labels['app']).
    assert_eq!(r.workloads()[1].pod_input().labels["app"], "x");
}

#[test]
fn missing_pod_template_is_an_error_with_path() {
    let e = read_err(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  jobTemplate:\n    spec: {}\n",
    );
    assert_eq!(
        e.to_string(),
        "in.yaml: CronJob c (document 1): spec.jobTemplate.spec.template: required: the pod template is missing"
    );
}

#[test]
fn config_maps_and_secrets_are_collected() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: ns}\ndata:\n  a: '1'\n  b: two\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  key: YmFyCg==\n  both: b2xk\nstringData:\n  both: new\n  plain: text\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: empty}\n";
    let r = read_str(text);
    let c = r.config_sources();
    let cm = c.config_map(Some("ns"), "cm").unwrap();
    assert_eq!(cm.get("a").map(String::as_str), Some("1"));
    assert_eq!(cm.get("b").map(String::as_str), Some("two"));
    assert!(c.config_map(Some("other"), "cm").is_none());
    assert!(c.config_map(None, "empty").unwrap().is_empty());
    // Namespace-less resources are found from any namespace.
    let s = c.secret(Some("ns"), "s").unwrap();
    assert_eq!(s.get("key").map(String::as_str), Some("bar\n"));
    assert_eq!(
        s.get("both").map(String::as_str),
        Some("new"),
        "stringData wins"
    );
    assert_eq!(s.get("plain").map(String::as_str), Some("text"));
    assert!(r.workloads().is_empty());
}

#[test]
fn bad_base64_in_a_secret_names_secret_and_key() {
    let e = read_err(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: prod}\ndata:\n  ok: YQ==\n  password: not*base64\n",
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("in.yaml: Secret prod/creds (document 1): data.password: not valid base64"),
        "{msg}"
    );
}

#[test]
fn non_string_config_map_value_is_an_error() {
    let e =
        read_err("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata:\n  port: 8080\n");
    assert_eq!(e.diagnostics()[0].path, "data.port");
}

#[test]
fn binary_secret_value_is_a_warning_not_an_error() {
    // 0xff 0xfe is not UTF-8.
    let r = read_str(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bin}\ndata:\n  blob: //4=\n  text: aGk=\n",
    );
    let s = r.config_sources().secret(None, "bin").unwrap();
    assert_eq!(s.keys().collect::<Vec<_>>(), ["text"]);
    assert_eq!(r.warnings().len(), 1);
    assert_eq!(r.warnings()[0].path, "data.blob");
}

#[test]
fn other_kinds_pass_through_unchanged() {
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  zeta: 1\n  alpha: [b, a]\n  ports:\n  - port: 443\n    targetPort: web\n---\napiVersion: batch.volcano.sh/v1alpha1\nkind: Job\nmetadata: {name: vc}\nspec:\n  tasks: [{template: {spec: {containers: [{name: x, comand: y}]}}}]\n";
    let r = read_str(text);
    assert!(
        r.workloads().is_empty(),
        "a CRD named Job is not a workload"
    );
    // A warning says why the CRD Job gets no policy.
    assert_eq!(r.warnings().len(), 1, "{:?}", r.warnings());
    assert!(
        r.warnings()[0]
            .message
            .contains("batch.volcano.sh/v1alpha1")
    );
    let docs = nunki_kube::parse_documents("x".as_ref(), text).unwrap();
    let out = r.to_combined_yaml().unwrap();
    assert_eq!(
        nunki_kube::parse_documents("x".as_ref(), &out).unwrap(),
        docs
    );
    // Key order kept.
    let zeta = out.find("zeta").unwrap();
    assert!(
        zeta < out.find("alpha").unwrap()
            && out.find("alpha").unwrap() < out.find("ports").unwrap()
    );
}

#[test]
fn unknown_field_in_a_container_is_an_error_with_path_and_suggestion() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx\n        comand: [sh]\n";
    let e = read_err(text);
    let d = &e.diagnostics()[0];
    assert_eq!(d.file, PathBuf::from("in.yaml"));
    assert_eq!(d.resource, "Deployment web (document 1)");
    assert_eq!(d.path, "spec.template.spec.containers[0].comand");
    assert!(
        d.message
            .starts_with("unknown field; did you mean \"command\"?"),
        "{}",
        d.message
    );
    assert!(
        e.to_string().starts_with(
            "in.yaml: Deployment web (document 1): spec.template.spec.containers[0].comand: unknown field; did you mean \"command\"?"
        ),
        "{e}"
    );
}

#[test]
fn unknown_fields_that_change_what_runs_are_errors_all_reported() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostPid: true\n  initContainers:\n  - name: i\n    image: x\n    securityContext: {privilegd: true}\n  containers:\n  - name: c\n    image: x\n    env: [{name: A, valu: b}]\n    volumeMounts: [{name: v, mountpath: /x}]\n  volumes:\n  - name: v\n    emptyDirr: {}\n";
    let e = read_err(text);
    let got: Vec<(&str, bool)> = e
        .diagnostics()
        .iter()
        .map(|d| (d.path.as_str(), d.message.contains("did you mean")))
        .collect();
    assert_eq!(
        got,
        [
            ("spec.hostPid", true),
            ("spec.initContainers[0].securityContext.privilegd", true),
            ("spec.containers[0].env[0].valu", true),
            ("spec.containers[0].volumeMounts[0].mountpath", true),
            ("spec.volumes[0].emptyDirr", true),
        ]
    );
    let hostpid = &e.diagnostics()[0].message;
    assert!(hostpid.contains("\"hostPID\""), "{hostpid}");
}

#[test]
fn unknown_scheduling_fields_are_warnings_and_kept() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeSelectr: {disk: ssd}\n  tolerations: [{key: k, operater: Exists}]\n  futureField: 1\n  containers: [{name: c, image: x}]\n";
    let r = read_str(text);
    let paths: Vec<&str> = r.warnings().iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.nodeSelectr",
            "spec.tolerations[0].operater",
            "spec.futureField"
        ]
    );
    assert!(r.warnings()[0].message.contains("\"nodeSelector\""));
    // Kept in the output.
    let out = r.to_combined_yaml().unwrap();
    assert!(
        out.contains("nodeSelectr:")
            && out.contains("operater: Exists")
            && out.contains("futureField: 1")
    );
}

#[test]
fn wrong_types_are_errors_with_path() {
    let cases = [
        (
            "command: sleep",
            "spec.containers[0].command",
            "invalid type: string \"sleep\"",
        ),
        (
            "ports: [{containerPort: http}]",
            "spec.containers[0].ports[0].containerPort",
            "invalid type",
        ),
        (
            "securityContext: {runAsUser: -1.5}",
            "spec.containers[0].securityContext.runAsUser",
            "invalid type",
        ),
        (
            "args: [[a]]",
            "spec.containers[0].args[0]",
            "invalid type: sequence",
        ),
    ];
    for (field, path, msg) in cases {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: c\n    image: x\n    {field}\n"
        );
        let e = read_err(&text);
        let d = &e.diagnostics()[0];
        assert_eq!(d.path, path, "{field}");
        assert!(d.message.contains(msg), "{field}: {}", d.message);
    }
    let e = read_err(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: 'true'\n  containers: [{name: c}]\n",
    );
    assert_eq!(e.diagnostics()[0].path, "spec.hostNetwork");
}

#[test]
fn missing_containers_and_names_are_errors() {
    let e = read_err("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n");
    assert_eq!(e.diagnostics()[0].path, "spec.containers");
    let e = read_err(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{image: x}]\n",
    );
    assert_eq!(e.diagnostics()[0].path, "spec.containers[0].name");
    let e = read_err("apiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: c}]\n");
    assert_eq!(e.diagnostics()[0].path, "metadata.name");
}

#[test]
fn non_string_annotations_are_errors() {
    let e = read_err(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    enabled: true\nspec:\n  containers: [{name: c}]\n",
    );
    let d = &e.diagnostics()[0];
    assert_eq!(d.path, "metadata.annotations.enabled");
    assert!(d.message.contains("quote it"));
}

#[test]
fn generate_name_only_pods_are_supported() {
    let r = read_str(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  generateName: worker-\nspec:\n  containers: [{name: c, image: x}]\n",
    );
    let w = &r.workloads()[0];
    assert_eq!(w.name(), "");
    assert_eq!(w.generate_name(), Some("worker-"));
    let input = w.pod_input();
    assert_eq!(input.name, "");
    assert_eq!(input.generate_name.as_deref(), Some("worker-"));
    assert_eq!(w.workload_secret_id(), "core/v1/Pod/default/worker-");
}

#[test]
fn bad_yaml_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n",
    );
    let e = Resources::read(std::slice::from_ref(&path)).unwrap_err();
    match &e {
        KubeError::Yaml {
            path: p,
            line,
            column,
            ..
        } => {
            assert_eq!(p, &path);
            // The parser points at the bracket that is never closed.
            assert_eq!((*line, *column), (Some(4), Some(9)), "{e}");
            assert!(column.is_some());
        }
        other => panic!("{other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}:4:9: invalid YAML: ", path.display())),
        "{msg}"
    );

    let e = read_err("a: 1\nb:\n\tc: 2\n");
    assert!(matches!(e, KubeError::Yaml { line: Some(3), .. }), "{e}");
    let e = read_err("a: 1\na: 2\n");
    assert!(
        matches!(e, KubeError::Yaml { line: Some(2), .. }),
        "duplicate keys: {e}"
    );
}

#[test]
fn a_document_that_is_not_a_mapping_is_an_error() {
    let e = read_err(&format!("{POD}---\n- a\n- b\n"));
    assert_eq!(e.diagnostics()[0].resource, "document 2");
}

#[test]
fn documents_without_kind_pass_through_with_a_warning() {
    let r = read_str("replicas: 3\nimage: {tag: latest}\n");
    assert!(r.workloads().is_empty());
    assert_eq!(r.warnings().len(), 1);
}

#[test]
fn directories_are_read_sorted_and_not_recursively() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "b.yml", &POD.replace("name: p", "name: from-b"));
    common::write(
        dir.path(),
        "a.yaml",
        &POD.replace("name: p", "name: from-a"),
    );
    common::write(dir.path(), "notes.txt", "not yaml: [");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    common::write(
        &dir.path().join("sub"),
        "c.yaml",
        &POD.replace("name: p", "name: from-sub"),
    );
    let extra = common::write(
        &dir.path().join("sub"),
        "explicit.txt",
        &POD.replace("name: p", "name: explicit"),
    );
    // The directory twice and one of its files again: each file is read once.
    let r = Resources::read(&[
        dir.path().to_owned(),
        extra,
        dir.path().join("a.yaml"),
        dir.path().to_owned(),
    ])
    .unwrap();
    let names: Vec<String> = r.workloads().iter().map(|w| w.name().to_owned()).collect();
    assert_eq!(names, ["from-a", "from-b", "explicit"]);

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Resources::read(&[empty.path().to_owned()]),
        Err(KubeError::EmptyDirectory { .. })
    ));
    assert!(matches!(
        Resources::read(&[dir.path().join("missing.yaml")]),
        Err(KubeError::Read { .. })
    ));
}

#[test]
fn yaml_1_1_scalars_are_read_like_kubectl() {
    let docs = nunki_kube::parse_documents(
        "x".as_ref(),
        "a: yes\nb: on\nc: 0644\nd: '0644'\ne: ~\nf: 1.5\ng: 18446744073709551615\n1: int key\n",
    )
    .unwrap();
    let m = docs[0].as_map().unwrap();
    assert_eq!(m.get("a"), Some(&Node::Bool(true)));
    assert_eq!(m.get("b"), Some(&Node::Bool(true)));
    assert_eq!(
        m.get("c"),
        Some(&Node::Int(420)),
        "leading-zero integers are octal in YAML 1.1"
    );
    assert_eq!(m.get("d"), Some(&Node::from("0644")));
    assert_eq!(m.get("e"), Some(&Node::Null));
    assert_eq!(m.get("f"), Some(&Node::Float(1.5)));
    assert_eq!(m.get("g"), Some(&Node::UInt(u64::MAX)));
    assert_eq!(m.get("1"), Some(&Node::from("int key")));
}

#[test]
fn hostile_input_is_refused_without_panicking() {
    // Too deep.
    let deep = format!("a: {}1{}\n", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(read_err(&deep), KubeError::Yaml { .. }));
    let deep_block: String = (0..500).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    assert!(matches!(read_err(&deep_block), KubeError::Yaml { .. }));
    // Alias bomb ("billion laughs").
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    assert!(matches!(read_err(&bomb), KubeError::Yaml { .. }));
    // Non-finite floats have no JSON form; integers beyond 64 bits become floats (as in kubectl).
    assert!(matches!(read_err("a: .inf\n"), KubeError::Yaml { .. }));
    assert!(matches!(read_err("a: 1e400\n"), KubeError::Yaml { .. }));
    let big =
        nunki_kube::parse_documents("x".as_ref(), "a: 123456789012345678901234567890\n").unwrap();
    assert_eq!(big[0].get("a"), Some(&Node::Float(1.2345678901234568e29)));
    // Not UTF-8.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("latin1.yaml");
    std::fs::write(&p, b"a: \xe9\n").unwrap();
    assert!(matches!(
        Resources::read(&[p]),
        Err(KubeError::NotUtf8 { offset: 3, .. })
    ));
}

#[test]
fn oversized_input_is_refused() {
    let big = "#".repeat(nunki_kube::MAX_FILE_BYTES as usize + 1);
    assert!(matches!(
        Resources::from_str("big.yaml", &big),
        Err(KubeError::TooLarge { .. })
    ));
}

#[test]
fn all_kata_genpolicy_test_pods_read_without_error() {
    let root = common::genpolicy_tests();
    let files = common::yaml_files_below(&root);
    assert!(
        files.len() >= 28,
        "expected the genpolicy test YAML under {}",
        root.display()
    );
    let mut workloads = 0;
    let mut warnings = Vec::new();
    for f in &files {
        let r = Resources::read(std::slice::from_ref(f)).unwrap_or_else(|e| panic!("{e}"));
        warnings.extend(r.warnings().iter().map(|w| w.to_string()));
        workloads += r.workloads().len();
    }
    // The only finding: an unquoted sysctl value (genpolicy reads it as a string too).
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("createcontainer/sysctls/pod.yaml: Pod policy-redis-deployment-6674f9448-xjrzf (document 1): spec.securityContext.sysctls[0].value: an integer where Kubernetes expects a string"),
        "{}",
        warnings[0]
    );
    // 23 policy test pods + 4 pods in the CLI test inputs (config_map.yaml holds one too).
    assert_eq!(workloads, 27);
    // The CLI test inputs with their ConfigMap/Secret together.
    let gen_dir = root.join("generate/testdata");
    let r = Resources::read(&[gen_dir]).unwrap();
    let c = r.config_sources();
    assert_eq!(c.secret(None, "secret-sample").unwrap()["key"], "bar\n");
    assert!(c.config_map(None, "configmap-sample").is_some());
}

#[test]
fn a_repeated_config_map_is_a_warning_and_the_later_one_wins() {
    let r = read_str(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {k: old}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {k: new}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: other}\ndata: {k: elsewhere}\n",
    );
    assert_eq!(
        r.config_sources().config_map(None, "cm").unwrap()["k"],
        "new"
    );
    assert_eq!(
        r.config_sources().config_map(Some("other"), "cm").unwrap()["k"],
        "elsewhere"
    );
    assert_eq!(r.warnings().len(), 1);
    assert_eq!(r.warnings()[0].resource, "ConfigMap cm (document 2)");
}

#[test]
fn statefulset_claim_templates_become_pod_volumes() {
    let yaml = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
        - name: db
          image: registry.example/db@sha256:0000000000000000000000000000000000000000000000000000000000000000
          volumeMounts:
            - name: data
              mountPath: /var/lib/db
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests:
            storage: 1Gi
"#;
    let resources = nunki_kube::Resources::from_str("db.yaml", yaml).unwrap();
    let workloads = resources.workloads();
    let spec = &workloads[0].pod_input().spec;
    let volumes = spec.volumes.as_ref().unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].name, "data");
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data"
    );
}
