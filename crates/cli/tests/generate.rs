//! `nunki generate` through the binary: manifest, annotations, idempotence, placeholders,
//! missing images; and tampering after generation, judged by the simulated Kata agent with the
//! generated policy (the agent builds its requests independently of the generator).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Output};

use nunki_kube::{INITDATA_ANNOTATION, POLICY_ANNOTATION, Resources};
use nunki_policy::{ConfigSources, PodInput, PolicyDocument};
use nunki_runner::agent::{AgentError, ImageConfigs, SandboxContext, SimulatedAgent};

const DEMO: &str = concat!("ghcr.io/nunki/nunki-demo:v", env!("CARGO_PKG_VERSION"));
const COORDINATOR: &str = concat!(
    "ghcr.io/nunki/nunki-coordinator:v",
    env!("CARGO_PKG_VERSION")
);

fn app_yaml() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: coordinator
  namespace: default
spec:
  selector:
    matchLabels: {{app: coordinator}}
  template:
    metadata:
      labels: {{app: coordinator}}
      annotations:
        nunki.edgeless.systems/pod-role: coordinator
    spec:
      containers:
        - name: coordinator
          image: {COORDINATOR}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: default
data:
  mode: "on"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: default
spec:
  selector:
    matchLabels: {{app: app}}
  template:
    metadata:
      labels: {{app: app}}
    spec:
      containers:
        - name: app
          image: {DEMO}
          args: ["--listen", "0.0.0.0:8443", "--name", "app"]
          env:
            - name: GREETING
              value: "yes"
            - name: MODE
              valueFrom:
                configMapKeyRef: {{name: settings, key: mode}}
          volumeMounts:
            - name: config
              mountPath: /etc/app
      volumes:
        - name: config
          configMap:
            name: settings
"#
    )
}

fn nunki(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nunki"))
        .args(args)
        .current_dir(dir)
        .env("NUNKI_SIM_DIR", dir.join("sim"))
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("resources")).unwrap();
    std::fs::write(dir.path().join("resources/app.yaml"), app_yaml()).unwrap();
    dir
}

fn policy_of(file: &Path, name: &str) -> (PodInput, PolicyDocument) {
    let (input, doc, _) = policy_and_config(file, name);
    (input, doc)
}

fn policy_and_config(file: &Path, name: &str) -> (PodInput, PolicyDocument, ConfigSources) {
    let resources = Resources::read(&[file.to_path_buf()]).unwrap();
    let w = resources
        .workloads()
        .into_iter()
        .find(|w| w.name() == name)
        .unwrap();
    let map = resources.policy_annotations(&w);
    assert_eq!(
        map.len(),
        1,
        "exactly one policy annotation: {:?}",
        map.keys()
    );
    (
        w.pod_input(),
        PolicyDocument::from_annotations(&map).unwrap().unwrap(),
        resources.config_sources().clone(),
    )
}

fn builtin_images() -> ImageConfigs {
    let config = |bin: &str| {
        serde_json::json!({"config": {"config": {
            "User": "0:0",
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": [format!("/usr/bin/{bin}")],
            "WorkingDir": "/"}},
            "passwd": "root:x:0:0:root:/root:/sbin/nologin\n", "group": "root:x:0:\n"})
    };
    let doc = serde_json::json!({"images": {
        DEMO: config("nunki-demo"),
        COORDINATOR: config("nunki-coordinator"),
        concat!("ghcr.io/nunki/nunki-initializer:v", env!("CARGO_PKG_VERSION")): config("nunki-initializer"),
    }});
    ImageConfigs::from_json(&doc.to_string()).unwrap()
}

fn admit(input: &PodInput, policy: &PolicyDocument) -> Result<(), AgentError> {
    admit_with(input, policy, &config_sources())
}

fn config_sources() -> ConfigSources {
    let mut c = ConfigSources::default();
    c.config_maps.insert(
        (Some("default".to_string()), "settings".to_string()),
        [("mode".to_string(), "on".to_string())]
            .into_iter()
            .collect(),
    );
    c
}

fn admit_with(
    input: &PodInput,
    policy: &PolicyDocument,
    config: &ConfigSources,
) -> Result<(), AgentError> {
    let mut agent = SimulatedAgent::new(&policy.policy_text).unwrap();
    let ctx = SandboxContext::random(input).with_config_sources(config.clone());
    agent.run_pod(input, &builtin_images(), &ctx).map(|_| ())
}

#[test]
fn generate_writes_policies_manifest_and_is_idempotent() {
    let dir = setup();
    let out = nunki(dir.path(), &["generate", "resources/"]);
    let text = ok(&out);
    assert!(text.contains("(new, coordinator)"), "{text}");
    let manifest = std::fs::read(dir.path().join("manifest.json")).unwrap();
    let parsed = nunki_manifest::ParsedManifest::parse(&manifest).unwrap();
    assert_eq!(parsed.manifest().policies.len(), 2);
    assert!(parsed.is_simulated());
    assert_eq!(parsed.manifest().workload_owner_key_digests.len(), 1);
    assert!(dir.path().join("workload-owner.pem").is_file());

    let file = dir.path().join("resources/app.yaml");
    let (input, doc) = policy_of(&file, "app");
    let entry = parsed
        .policy(&doc.hash)
        .expect("the app's policy hash is in the manifest");
    assert_eq!(entry.sans, ["app", "*"]);
    assert_eq!(entry.workload_secret_id, "apps/v1/Deployment/default/app");
    // The Initializer is first and everything mounts the TLS volume.
    let init = input.spec.init_containers.as_ref().unwrap();
    assert_eq!(init[0].name, "nunki-initializer");
    assert_eq!(
        input.spec.runtime_class_name.as_deref(),
        Some("kata-cc-isolation")
    );
    // YAML 1.1 strings stay strings.
    let yaml = std::fs::read_to_string(&file).unwrap();
    assert!(yaml.contains("\"yes\"") || yaml.contains("'yes'"), "{yaml}");
    assert!(yaml.contains("\"on\"") || yaml.contains("'on'"), "{yaml}");

    // A second run changes nothing.
    let before = (yaml.clone(), manifest.clone());
    ok(&nunki(dir.path(), &["generate", "resources/"]));
    let after = (
        std::fs::read_to_string(&file).unwrap(),
        std::fs::read(dir.path().join("manifest.json")).unwrap(),
    );
    assert_eq!(before, after);

    // The untampered pod is admitted by its own policy.
    admit(&input, &doc).unwrap();
}

#[test]
fn seed_era_annotation_hashes_the_policy_text() {
    let dir = setup();
    ok(&nunki(
        dir.path(),
        &["generate", "--policy-annotation", "resources/"],
    ));
    let file = dir.path().join("resources/app.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    assert!(yaml.contains(POLICY_ANNOTATION) && !yaml.contains(INITDATA_ANNOTATION));
    let (_, doc) = policy_of(&file, "app");
    assert_eq!(
        doc.hash.0,
        nunki_manifest::sha256(doc.policy_text.as_bytes())
    );
}

#[test]
fn hardware_reference_values_have_placeholders_that_set_refuses() {
    let dir = setup();
    let text = ok(&nunki(
        dir.path(),
        &["generate", "--reference-values", "snp-genoa", "resources/"],
    ));
    assert!(text.contains("placeholder"), "{text}");
    assert!(text.contains("TrustedMeasurement"), "{text}");
    let out = nunki(
        dir.path(),
        &[
            "set",
            "-c",
            "127.0.0.1:1",
            "-m",
            "manifest.json",
            "resources/",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MinimumTCB.SNPVersion") && err.contains("fill in"),
        "{err}"
    );
}

#[test]
fn a_missing_image_names_the_image_and_the_pull_command() {
    let dir = setup();
    let yaml = app_yaml().replace(DEMO, "registry.example/unknown@sha256:0000000000000000000000000000000000000000000000000000000000000000");
    std::fs::write(dir.path().join("resources/app.yaml"), &yaml).unwrap();
    let out = nunki(dir.path(), &["generate", "resources/"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("registry.example/unknown"), "{err}");
    assert!(err.contains("nunki images pull"), "{err}");
    // Nothing was written.
    assert!(!dir.path().join("manifest.json").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("resources/app.yaml")).unwrap(),
        yaml
    );
}

fn app(i: &mut PodInput) -> &mut k8s_openapi::api::core::v1::Container {
    i.spec
        .containers
        .iter_mut()
        .find(|c| c.name == "app")
        .unwrap()
}

#[test]
fn changes_after_generation_are_denied_by_the_policy() {
    let dir = setup();
    ok(&nunki(dir.path(), &["generate", "resources/"]));
    let (input, doc, config) = policy_and_config(&dir.path().join("resources/app.yaml"), "app");
    assert_eq!(
        config.config_map(Some("default"), "settings"),
        config_sources().config_map(Some("default"), "settings")
    );
    admit(&input, &doc).unwrap();

    type Tamper = Box<dyn Fn(&mut PodInput)>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "image",
            Box::new(|i| app(i).image = Some(COORDINATOR.to_string())),
        ),
        (
            "command",
            Box::new(|i| app(i).command = Some(vec!["/bin/sh".into()])),
        ),
        (
            "args",
            Box::new(|i| app(i).args = Some(vec!["--evil".into()])),
        ),
        (
            "env value",
            Box::new(|i| {
                app(i).env.as_mut().unwrap()[0].value = Some("no".into());
            }),
        ),
        (
            "extra env",
            Box::new(|i| {
                app(i)
                    .env
                    .as_mut()
                    .unwrap()
                    .push(k8s_openapi::api::core::v1::EnvVar {
                        name: "LD_PRELOAD".into(),
                        value: Some("/tmp/x.so".into()),
                        ..Default::default()
                    });
            }),
        ),
        (
            "mount path",
            Box::new(|i| {
                app(i).volume_mounts.as_mut().unwrap()[0].mount_path = "/etc".into();
            }),
        ),
        (
            "privileged",
            Box::new(|i| {
                app(i).security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
                    privileged: Some(true),
                    ..Default::default()
                });
            }),
        ),
        (
            "host network",
            Box::new(|i| i.spec.host_network = Some(true)),
        ),
        ("host PID", Box::new(|i| i.spec.host_pid = Some(true))),
    ];
    let mut missed = Vec::new();
    for (what, tamper) in &cases {
        let mut changed = input.clone();
        tamper(&mut changed);
        match admit(&changed, &doc) {
            Err(AgentError::Denied { reasons, .. }) => {
                assert!(!reasons.is_empty(), "{what}: denied without a reason");
            }
            Err(other) => missed.push(format!("{what}: not a policy denial: {other}")),
            Ok(()) => missed.push(format!("{what}: ALLOWED")),
        }
    }
    assert!(
        missed.is_empty(),
        "tampering not refused:\n{}",
        missed.join("\n")
    );

    // exec is refused by default.
    let mut agent = SimulatedAgent::new(&doc.policy_text).unwrap();
    agent
        .run_pod(
            &input,
            &builtin_images(),
            &SandboxContext::random(&input).with_config_sources(config_sources()),
        )
        .unwrap();
    assert!(matches!(
        agent.exec("app", &["/bin/sh"]),
        Err(AgentError::Denied { .. })
    ));
}

#[test]
fn policy_eval_reports_verdicts_and_exit_codes() {
    let dir = setup();
    ok(&nunki(dir.path(), &["generate", "resources/"]));
    std::fs::write(dir.path().join("start.json"), "{}").unwrap();
    std::fs::write(
        dir.path().join("setpolicy.json"),
        r#"{"policy": "package agent_policy"}"#,
    )
    .unwrap();
    let out = nunki(
        dir.path(),
        &[
            "policy",
            "eval",
            "--policy",
            "resources/app.yaml",
            "--workload",
            "app",
            "--request",
            "start.json",
            "--kind",
            "StartContainerRequest",
        ],
    );
    assert!(ok(&out).contains("allowed"));
    let out = nunki(
        dir.path(),
        &[
            "policy",
            "eval",
            "--policy",
            "resources/app.yaml",
            "--request",
            "setpolicy.json",
            "--kind",
            "SetPolicyRequest",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DENIED"));
    let out = nunki(
        dir.path(),
        &[
            "policy",
            "eval",
            "--policy",
            "resources/app.yaml",
            "--request",
            "start.json",
            "--kind",
            "NoSuchRequest",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}
