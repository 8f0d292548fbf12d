#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `nunki-coordinator --store`: documented in `--help`, `dir` by default, and `kubernetes`
//! outside a cluster fails at once, before anything else, saying what it needs.

use std::process::{Command, Output};

fn coordinator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nunki-coordinator"))
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("NUNKI_STORE")
        .env_remove("NUNKI_STORE_NAMESPACE")
        .output()
        .unwrap()
}

#[test]
fn help_documents_the_store_flags() {
    let out = coordinator(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--store <STORE>",
        "[default: dir]",
        "kubernetes",
        "ConfigMaps",
        "--store-namespace <NAMESPACE>",
        "service-account namespace file",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
}

#[test]
fn kubernetes_outside_a_cluster_fails_first_with_the_reason() {
    // --platform snp would fail too (no /dev/sev-guest here): the store is checked first.
    let out = coordinator(&["--platform", "snp", "--store", "kubernetes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--store kubernetes"), "{err}");
    assert!(err.contains("in-cluster"), "{err}");
    assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
    assert!(err.contains("--store dir"), "{err}");
}

#[test]
fn store_namespace_needs_the_kubernetes_store() {
    let out = coordinator(&["--platform", "snp", "--store-namespace", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--store-namespace only applies to --store kubernetes"),
        "{err}"
    );
    let out = coordinator(&["--platform", "snp", "--store", "floppy"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("possible values: dir, kubernetes"), "{err}");
}
