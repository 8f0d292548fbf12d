#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Kata's genpolicy test cases that need no container data from images: policy_data from our
//! `Settings` with `containers: []` (or, for `createcontainer/sysctls`, the hand-derived pause
//! container entry), our rules, one engine per directory, cases evaluated in order.

use std::path::PathBuf;

use nunki_policy::{AgentPolicy, Settings, render_policy};
use serde_json::{Value, json};

fn testdata() -> PathBuf {
    std::env::var_os("NUNKI_TESTDATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"),
        PathBuf::from,
    )
}

fn cases_dir() -> PathBuf {
    testdata().join("kata-policy/src/tools/genpolicy/tests/policy/testdata")
}

fn read_json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Runs every case of `dir` on one engine; returns (cases, mismatches).
fn run_dir(dir: &str, containers: Value) -> (usize, Vec<String>) {
    let policy = render_policy(&Settings::default().policy_data(containers));
    let mut engine = AgentPolicy::new(&policy).unwrap();
    let cases = read_json(cases_dir().join(dir).join("testcases.json"));
    let cases = cases.as_array().unwrap();
    let mut misses = Vec::new();
    for case in cases {
        let kind = case["kind"].as_str().unwrap();
        let want = case["allowed"].as_bool().unwrap();
        let decision = engine.evaluate(kind, &case["request"]).unwrap();
        if decision.allowed != want {
            misses.push(format!(
                "{dir}: {:?}: expected allowed={want}, got {decision:?}",
                case["description"]
            ));
        }
        if !decision.allowed {
            // Every denial explains itself with the request kind and a field.
            assert!(
                !decision.reasons.is_empty(),
                "{dir}: {:?}",
                case["description"]
            );
            for r in &decision.reasons {
                assert!(r.starts_with(&format!("{kind}: ")), "{r}");
            }
        }
    }
    (cases.len(), misses)
}

#[test]
fn settings_only_cases_match() {
    let mut total = 0;
    let mut misses = Vec::new();
    for dir in [
        "copyfile",
        "createsandbox",
        "updateroutes",
        "updateinterface",
        "addarpneighbors",
    ] {
        let (n, m) = run_dir(dir, json!([]));
        total += n;
        misses.extend(m);
    }
    println!(
        "settings-only cases: {} of {total} match",
        total - misses.len()
    );
    assert!(misses.is_empty(), "{misses:#?}");
    assert_eq!(total, 41);
}

#[test]
fn sysctls_cases_match_with_the_derived_pause_container() {
    let containers = read_json(
        testdata().join("kata-policy/derived/createcontainer-sysctls.policy_data.containers.json"),
    );
    let (n, misses) = run_dir("createcontainer/sysctls", containers);
    println!("createcontainer/sysctls: {} of {n} match", n - misses.len());
    assert!(misses.is_empty(), "{misses:#?}");
    assert_eq!(n, 2);
}

#[test]
fn denied_sysctl_names_the_field() {
    let containers = read_json(
        testdata().join("kata-policy/derived/createcontainer-sysctls.policy_data.containers.json"),
    );
    let policy = render_policy(&Settings::default().policy_data(containers));
    let mut engine = AgentPolicy::new(&policy).unwrap();
    let cases = read_json(cases_dir().join("createcontainer/sysctls/testcases.json"));
    let denied = cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["allowed"] == json!(false))
        .unwrap();
    let d = engine
        .evaluate("CreateContainerRequest", &denied["request"])
        .unwrap();
    assert!(!d.allowed);
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("OCI.Linux.Sysctl")
                && r.contains("net.ipv4.conf.all.src_valid_mark")),
        "{:#?}",
        d.reasons
    );
}

#[test]
fn upstream_oci_version_drop_in_applies_and_changes_the_verdict() {
    let drop_ins = testdata().join("kata-policy/src/tools/genpolicy/drop-in-examples");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        drop_ins.join("20-oci-1.2.0-drop-in.json"),
        dir.path().join("20-oci-1.2.0-drop-in.json"),
    )
    .unwrap();
    let settings = Settings::default().with_drop_ins(dir.path()).unwrap();
    assert_eq!(settings.kata_config.oci_version, "1.2.0");

    // The derived pause entry says Version 1.1.0, so the runtime's 1.1.0 request still passes;
    // an entry generated with the new version refuses it and says why.
    let mut containers = read_json(
        testdata().join("kata-policy/derived/createcontainer-sysctls.policy_data.containers.json"),
    );
    containers[0]["OCI"]["Version"] = json!(settings.kata_config.oci_version);
    let mut engine = AgentPolicy::new(&render_policy(&settings.policy_data(containers))).unwrap();
    let cases = read_json(cases_dir().join("createcontainer/sysctls/testcases.json"));
    let d = engine
        .evaluate("CreateContainerRequest", &cases[0]["request"])
        .unwrap();
    assert!(!d.allowed);
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("OCI.Version: got \"1.1.0\", policy allows \"1.2.0\"")),
        "{:#?}",
        d.reasons
    );

    // Drop-ins that patch the container templates are not ours to apply: a clear error.
    let err = Settings::default()
        .with_override(
            "10-non-coco-drop-in.json",
            &std::fs::read_to_string(drop_ins.join("10-non-coco-drop-in.json")).unwrap(),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("10-non-coco-drop-in.json"),
        "{err}"
    );
}
