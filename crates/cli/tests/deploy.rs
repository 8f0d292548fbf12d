//! The deployment files under `deploy/`: they pass the typed round-trip, `nunki generate`
//! recognises the Coordinator (policy in the pod template, `Role: "coordinator"` in the
//! manifest) and is idempotent on them, the simulated Kata agent admits the Coordinator pod
//! with that policy, the RBAC is the least the Kubernetes store needs, and the Containerfiles
//! build images with the config the policies assume.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nunki_kube::{Node, Resources};
use nunki_policy::PolicyDocument;
use nunki_runner::agent::{ImageConfigs, SandboxContext, SimulatedAgent};

const COORDINATOR: &str = concat!(
    "ghcr.io/nunki/nunki-coordinator:v",
    env!("CARGO_PKG_VERSION")
);
const INITIALIZER: &str = concat!(
    "ghcr.io/nunki/nunki-initializer:v",
    env!("CARGO_PKG_VERSION")
);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

/// `deploy/` copied to a fresh directory (generate rewrites in place).
fn copy_of_deploy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("deploy")).unwrap();
    for entry in std::fs::read_dir(deploy()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(
                entry.path(),
                dir.path().join("deploy").join(entry.file_name()),
            )
            .unwrap();
        }
    }
    dir
}

fn nunki(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nunki"))
        .args(args)
        .current_dir(dir)
        .env("NUNKI_SIM_DIR", dir.join("sim"))
        .output()
        .unwrap()
}

fn ok(out: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    (stdout, stderr)
}

/// Every file below `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn all_yaml() -> Vec<PathBuf> {
    vec![
        deploy().join("coordinator.yaml"),
        deploy().join("examples/runtimeclasses.yaml"),
    ]
}

#[test]
fn deployment_yaml_passes_the_typed_round_trip() {
    let resources = Resources::read(&all_yaml()).unwrap();
    assert_eq!(resources.warnings(), &[], "read warnings");
    assert_eq!(resources.typed_round_trip(), vec![], "typed round-trip");
    // Every document is one k8s-openapi knows, so the check covered all of them.
    let mut kinds = Vec::new();
    for file in all_yaml() {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in nunki_kube::parse_documents(&file, &text).unwrap() {
            kinds.push(doc.get_str("kind").unwrap().to_owned());
        }
    }
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Deployment",
            "Service",
            "Service",
            "Service",
            "Service",
            "RuntimeClass",
            "RuntimeClass"
        ]
    );
}

#[test]
fn generate_recognises_the_coordinator_and_is_idempotent() {
    let dir = copy_of_deploy();
    let args = [
        "generate",
        "-m",
        "manifest.json",
        "--reference-values",
        "snp-genoa",
        "deploy/",
    ];
    let (stdout, stderr) = ok(&nunki(dir.path(), &args));
    assert!(
        stdout.contains("Deployment default/coordinator (document 4)"),
        "{stdout}"
    );
    assert!(stdout.contains("(new, coordinator)"), "{stdout}");
    assert!(!stderr.contains("warning"), "{stderr}");
    // The snp reference values are placeholders until filled in, so read the JSON as such.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let policies = manifest["Policies"].as_object().unwrap();
    assert_eq!(policies.len(), 1, "{policies:?}");
    let (hash, entry) = policies.iter().next().unwrap();
    assert_eq!(entry["Role"], "coordinator");
    assert_eq!(
        entry["WorkloadSecretID"],
        "apps/v1/Deployment/default/coordinator"
    );

    // The policy is in the pod template, and its hash is the manifest's.
    let file = dir.path().join("deploy/coordinator.yaml");
    let resources = Resources::read(std::slice::from_ref(&file)).unwrap();
    let workloads = resources.workloads();
    assert_eq!(workloads.len(), 1);
    let w = &workloads[0];
    assert!(w.is_coordinator());
    let doc = PolicyDocument::from_annotations(&resources.policy_annotations(w))
        .unwrap()
        .unwrap();
    assert_eq!(doc.hash.to_string(), *hash);
    // The Coordinator gets no Initializer and keeps its Kata runtime class.
    let input = w.pod_input();
    assert!(
        input
            .spec
            .init_containers
            .as_ref()
            .is_none_or(Vec::is_empty)
    );
    assert_eq!(
        input.spec.runtime_class_name.as_deref(),
        Some("kata-qemu-snp")
    );
    // The simulated Kata agent runs the pod under that policy, with the image config the
    // Containerfile produces.
    let images = ImageConfigs::from_json(
        &serde_json::json!({"images": {COORDINATOR: {
            "config": {"config": {
                "User": "0:0",
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Entrypoint": ["/usr/bin/nunki-coordinator"],
                "WorkingDir": "/"}},
            "passwd": "root:x:0:0:root:/root:/sbin/nologin\n", "group": "root:x:0:\n"}}})
        .to_string(),
    )
    .unwrap();
    let mut agent = SimulatedAgent::new(&doc.policy_text).unwrap();
    agent
        .run_pod(&input, &images, &SandboxContext::random(&input))
        .unwrap();

    // A second run changes nothing.
    let before = snapshot(dir.path());
    let (stdout, stderr) = ok(&nunki(
        dir.path(),
        &args[..3]
            .iter()
            .chain(&args[5..])
            .copied()
            .collect::<Vec<_>>(),
    ));
    assert!(stdout.contains("(kept, coordinator)"), "{stdout}");
    assert!(!stdout.contains("wrote"), "{stdout}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn generate_warns_about_fields_kubernetes_would_drop() {
    let dir = copy_of_deploy();
    let file = dir.path().join("deploy/coordinator.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    // A typo in a Service and in the Role, neither of which is a workload.
    let text = text
        .replacen(
            "publishNotReadyAddresses: true",
            "publishNotReadyAdresses: true",
            1,
        )
        .replacen("    verbs: [", "    verb: [", 1);
    std::fs::write(&file, text).unwrap();
    let (_, stderr) = ok(&nunki(
        dir.path(),
        &["generate", "--reference-values", "snp-genoa", "deploy/"],
    ));
    assert!(
        stderr.contains(
            "deploy/coordinator.yaml: Service default/coordinator (document 5): spec.publishNotReadyAdresses: unknown field; did you mean \"publishNotReadyAddresses\"?"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("Role default/coordinator (document 2): rules[0].verb: unknown field; did you mean \"verbs\"?"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("warning: ").count(), 2, "{stderr}");
}

/// The Role grants exactly what the Kubernetes store uses, in its own namespace.
#[test]
fn rbac_is_the_least_the_store_needs() {
    let file = deploy().join("coordinator.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let docs = nunki_kube::parse_documents(&file, &text).unwrap();
    let by_kind = |kind: &str| -> Vec<&Node> {
        docs.iter()
            .filter(|d| d.get_str("kind") == Some(kind))
            .collect()
    };
    assert!(by_kind("ClusterRole").is_empty() && by_kind("ClusterRoleBinding").is_empty());
    let role = by_kind("Role")[0];
    let rules = serde_json::to_value(role.get("rules").unwrap()).unwrap();
    assert_eq!(
        rules,
        serde_json::json!([{"apiGroups": [""], "resources": ["configmaps"],
            "verbs": ["get", "list", "watch", "create", "update"]}])
    );
    let binding = serde_json::to_value(by_kind("RoleBinding")[0]).unwrap();
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "coordinator", "namespace": "default"}])
    );
    assert_eq!(binding["roleRef"]["kind"], "Role");
    let deployment = serde_json::to_value(by_kind("Deployment")[0]).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "coordinator");
    let env = &pod["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&serde_json::json!({"name": "NUNKI_STORE", "value": "kubernetes"})),
        "{env}"
    );
    assert!(
        env.as_array().unwrap().contains(
            &serde_json::json!({"name": "NUNKI_PEERS", "value": "coordinator-peers:7777"})
        ),
        "{env}"
    );
}

#[test]
fn coordinator_ports_probes_and_services() {
    let file = deploy().join("coordinator.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let docs: Vec<serde_json::Value> = nunki_kube::parse_documents(&file, &text)
        .unwrap()
        .iter()
        .map(|d| serde_json::to_value(d).unwrap())
        .collect();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"][nunki_kube::POD_ROLE_ANNOTATION],
        nunki_kube::COORDINATOR_ROLE
    );
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"], COORDINATOR,
        "deploy/ must use the built-in image of this version"
    );
    let ports: Vec<u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [1313, 7777, 9102]);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert_eq!(
        c["resources"]["requests"]["memory"],
        c["resources"]["limits"]["memory"]
    );
    let services: BTreeMap<String, (Vec<u64>, bool)> = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .map(|s| {
            let ports = s["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["port"].as_u64().unwrap())
                .collect();
            let not_ready = s["spec"]["publishNotReadyAddresses"] == true;
            (
                s["metadata"]["name"].as_str().unwrap().to_owned(),
                (ports, not_ready),
            )
        })
        .collect();
    assert_eq!(
        services,
        BTreeMap::from([
            ("coordinator".to_owned(), (vec![1313, 7777], true)),
            ("coordinator-ready".to_owned(), (vec![1313, 7777], false)),
            ("coordinator-metrics".to_owned(), (vec![9102], false)),
            ("coordinator-peers".to_owned(), (vec![7777], true)),
        ])
    );
}

/// The final stage of each Containerfile gives the image the config `nunki generate` assumes
/// for Nunki's own images, and the build uses the committed lock file.
#[test]
fn containerfiles_match_the_built_in_image_configs() {
    for (component, reference) in [("coordinator", COORDINATOR), ("initializer", INITIALIZER)] {
        let path = deploy().join(format!("images/Containerfile.{component}"));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .collect();
        let build = lines
            .iter()
            .position(|l| l.starts_with("RUN cargo build"))
            .unwrap();
        assert_eq!(
            lines[build],
            format!("RUN cargo build --release --locked -p nunki-{component} \\"),
        );
        let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
        assert!(
            lines[..last_from]
                .iter()
                .any(|l| l.starts_with("FROM ") && l.ends_with(" AS build"))
        );
        let final_stage: Vec<&str> = lines[last_from + 1..].to_vec();
        let instruction = |name: &str| -> Vec<&str> {
            final_stage
                .iter()
                .filter(|l| l.starts_with(&format!("{name} ")))
                .copied()
                .collect()
        };
        assert_eq!(
            instruction("ENTRYPOINT"),
            [format!("ENTRYPOINT [\"/usr/bin/nunki-{component}\"]")],
            "{component}"
        );
        assert_eq!(instruction("USER"), ["USER 0:0"]);
        assert_eq!(instruction("WORKDIR"), ["WORKDIR /"]);
        assert!(instruction("ENV").is_empty() && instruction("CMD").is_empty());
        assert_eq!(
            instruction("COPY"),
            ["COPY --from=build /out/ /"],
            "{component}"
        );
        assert!(text.contains(&format!("ghcr.io/nunki/nunki-{component}:v<version>")));
        assert!(reference.starts_with(&format!("ghcr.io/nunki/nunki-{component}:v")));
        assert!(text.contains("SOURCE_DATE_EPOCH"));
        let ignore = deploy().join(format!("images/Containerfile.{component}.dockerignore"));
        assert!(
            std::fs::read_to_string(ignore)
                .unwrap()
                .lines()
                .any(|l| l == "target/")
        );
    }
    // The default of --initializer-image follows the scheme.
    let help = nunki(&repo(), &["generate", "--help"]);
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains(&format!("[default: {INITIALIZER}]")),
        "{help}"
    );
}
