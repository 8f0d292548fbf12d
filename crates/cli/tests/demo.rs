//! `nunki demo` as an integration test: the real binary runs the whole workflow (generate,
//! Coordinator, set, pods with the simulated agent and Initializers, verify, HTTPS through the
//! mesh) and both attacks, and every step's outcome is checked here from its output and files.
//!
//! The demo listens on fixed loopback ports (1313, 7777, 9102, 8443, 8444); no other test uses
//! them (the others bind port 0).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::Command;

#[test]
fn demo_runs_every_step_and_refuses_both_attacks() {
    let work = tempfile::tempdir().unwrap();
    let sim = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nunki"))
        .args(["demo", "--timings", "--workdir"])
        .arg(work.path().join("ws"))
        .env("NUNKI_SIM_DIR", sim.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let ws = work.path().join("ws");

    // It says what it is.
    assert!(stdout.contains("SIMULATION"), "{stdout}");
    // generate: three policies, one of them the Coordinator's, and a manifest that parses.
    let manifest = std::fs::read(ws.join("manifest.json")).unwrap();
    let parsed = nunki_manifest::ParsedManifest::parse(&manifest).unwrap();
    assert_eq!(parsed.manifest().policies.len(), 3);
    assert_eq!(parsed.coordinator_policy_hashes().len(), 1);
    assert!(parsed.is_simulated());
    // set and verify wrote what users rely on.
    for f in [
        "coordinator-root.pem",
        "mesh-root.pem",
        "verify/mesh-root.pem",
        "verify/coordinator-root.pem",
    ] {
        assert!(ws.join(f).is_file(), "missing {f}\n{stdout}");
    }
    // The Initializers wrote certificates and keys for both pods.
    for pod in ["web", "backend"] {
        let dir = ws.join("cluster").join(pod).join("tls-config");
        for f in [
            "mesh-ca.pem",
            "certChain.pem",
            "key.pem",
            "coordinator-root-ca.pem",
        ] {
            assert!(dir.join(f).is_file(), "{pod}: missing {f}");
        }
    }
    // The HTTPS response went through web to backend over mesh mTLS (backend saw web's
    // client certificate).
    assert!(stdout.contains("| hello from web"), "{stdout}");
    assert!(
        stdout.contains("answered over mesh mTLS: hello from backend (path /, caller: web)"),
        "{stdout}"
    );
    // Attack 1: the policy refused the changed command, naming the field.
    let attack1 = stdout.split("==> attack 1").nth(1).unwrap();
    assert!(attack1.contains("refused by the pod's policy"), "{attack1}");
    assert!(attack1.contains("OCI.Process.Args"), "{attack1}");
    // Attack 2: the Coordinator refused the rogue policy because it is not in the manifest.
    let attack2 = stdout.split("==> attack 2").nth(1).unwrap();
    assert!(
        attack2.contains("refused it a mesh certificate"),
        "{attack2}"
    );
    assert!(attack2.contains("not in the manifest"), "{attack2}");
    assert!(!ws.join("cluster/web-rogue/tls-config/key.pem").exists());
    // Timings were reported, and everything was stopped (the ports are free again).
    assert!(stdout.contains("total"), "{stdout}");
    assert!(
        stdout.contains("All steps behaved as expected."),
        "{stdout}"
    );
    assert!(std::net::TcpStream::connect("127.0.0.1:1313").is_err());
}
