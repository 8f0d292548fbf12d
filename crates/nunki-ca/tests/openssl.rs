//! The certificates as OpenSSL sees them (`openssl verify`, `openssl x509 -text`).
//! Skipped with a notice when `openssl` is not on PATH.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test helpers outside #[test] fns; a panic is a failed test"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{CaKeys, PodKey, ca_and_leaf, sans};
use nunki_ca::{Ca, Leaf};
use tempfile::TempDir;

fn openssl_available() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("NOTICE: `openssl` not found on PATH; skipping OpenSSL interop test");
    }
    found
}

/// `openssl verify` checks against the wall clock unless told otherwise: issue at real now.
fn now() -> SystemTime {
    SystemTime::now()
}

struct Files {
    dir: TempDir,
}

impl Files {
    fn new(ca: &Ca, leaves: &[(&str, &Leaf)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.pem"), ca.root_pem()).unwrap();
        std::fs::write(dir.path().join("intermediate.pem"), ca.intermediate_pem()).unwrap();
        std::fs::write(dir.path().join("mesh-ca.pem"), ca.mesh_ca_pem()).unwrap();
        for (name, leaf) in leaves {
            std::fs::write(dir.path().join(format!("{name}.pem")), &leaf.pem).unwrap();
            std::fs::write(
                dir.path().join(format!("{name}-chain.pem")),
                ca.chain_pem(leaf),
            )
            .unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn verify(files: &Files, args: &[&str]) -> Output {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    openssl(files.dir.path(), &all)
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", describe(out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .ends_with(": OK"),
        "{}",
        describe(out)
    );
}

fn assert_fails(out: &Output) {
    assert!(
        !out.status.success(),
        "unexpectedly verified: {}",
        describe(out)
    );
}

const VIA_ROOT: &[&str] = &["-CAfile", "root.pem", "-untrusted", "intermediate.pem"];
const VIA_MESH: &[&str] = &["-CAfile", "mesh-ca.pem"];

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn leaf_verifies_via_root_and_intermediate_and_via_mesh_ca() {
    if !openssl_available() {
        return;
    }
    let (ca, leaf) = ca_and_leaf(now());
    let files = Files::new(&ca, &[("leaf", &leaf)]);
    for anchors in [VIA_ROOT, VIA_MESH] {
        assert_ok(&verify(&files, &with(anchors, &["leaf.pem"])));
        assert_ok(&verify(
            &files,
            &with(anchors, &["-x509_strict", "leaf.pem"]),
        ));
        assert_ok(&verify(
            &files,
            &with(anchors, &["-purpose", "sslserver", "leaf.pem"]),
        ));
        assert_ok(&verify(
            &files,
            &with(anchors, &["-purpose", "sslclient", "leaf.pem"]),
        ));
        assert_ok(&verify(
            &files,
            &with(anchors, &["-verify_hostname", "web", "leaf.pem"]),
        ));
        assert_ok(&verify(
            &files,
            &with(
                anchors,
                &[
                    "-verify_hostname",
                    "pod-0.web.default.svc.cluster.local",
                    "leaf.pem",
                ],
            ),
        ));
        assert_ok(&verify(
            &files,
            &with(anchors, &["-verify_ip", "10.1.2.3", "leaf.pem"]),
        ));
        assert_ok(&verify(
            &files,
            &with(anchors, &["-verify_ip", "fd00::1", "leaf.pem"]),
        ));
        assert_fails(&verify(
            &files,
            &with(anchors, &["-verify_hostname", "db", "leaf.pem"]),
        ));
        assert_fails(&verify(
            &files,
            &with(anchors, &["-verify_ip", "10.1.2.4", "leaf.pem"]),
        ));
        // The bare "*" SAN is inert for OpenSSL too: it matches no single-label name.
        assert_fails(&verify(
            &files,
            &with(anchors, &["-verify_hostname", "anything", "leaf.pem"]),
        ));
    }
    // Mesh-CA trust with the certChain.pem a workload presents as untrusted extra certs.
    assert_ok(&verify(
        &files,
        &[
            "-CAfile",
            "mesh-ca.pem",
            "-untrusted",
            "leaf-chain.pem",
            "leaf.pem",
        ],
    ));
    // Trusting only the root without the intermediate fails.
    assert_fails(&verify(&files, &["-CAfile", "root.pem", "leaf.pem"]));
    // The CA certificates themselves verify under the root / as self-signed anchors.
    assert_ok(&verify(
        &files,
        &["-CAfile", "root.pem", "-x509_strict", "intermediate.pem"],
    ));
    assert_ok(&verify(
        &files,
        &["-CAfile", "mesh-ca.pem", "-x509_strict", "mesh-ca.pem"],
    ));
    assert_ok(&verify(
        &files,
        &["-CAfile", "root.pem", "-x509_strict", "root.pem"],
    ));
}

#[test]
fn foreign_leaf_fails() {
    if !openssl_available() {
        return;
    }
    let (ca, _) = ca_and_leaf(now());
    let (_, foreign_other_root) = ca_and_leaf(now());
    let files = Files::new(&ca, &[("foreign", &foreign_other_root)]);
    assert_fails(&verify(&files, &with(VIA_ROOT, &["foreign.pem"])));
    assert_fails(&verify(&files, &with(VIA_MESH, &["foreign.pem"])));
    assert_fails(&verify(
        &files,
        &with(VIA_MESH, &["-partial_chain", "foreign.pem"]),
    ));
}

#[test]
fn same_root_key_new_mesh_key_is_foreign_to_the_old_mesh_ca_but_trusted_by_the_root() {
    if !openssl_available() {
        return;
    }
    let keys = CaKeys::generate();
    let old = keys.ca(now());
    let next = CaKeys {
        root: keys.root.clone(),
        mesh: nunki_ca::generate_p384_pkcs8().unwrap(),
    }
    .ca(now());
    let leaf = next
        .issue_leaf(&PodKey::generate().spki, &sans(), now())
        .unwrap();
    let files = Files::new(&old, &[("leaf", &leaf)]);
    std::fs::write(files.path("next-intermediate.pem"), next.intermediate_pem()).unwrap();
    assert_fails(&verify(&files, &with(VIA_MESH, &["leaf.pem"])));
    assert_fails(&verify(&files, &with(VIA_ROOT, &["leaf.pem"])));
    // The old root PEM validates the new chain.
    assert_ok(&verify(
        &files,
        &[
            "-CAfile",
            "root.pem",
            "-untrusted",
            "next-intermediate.pem",
            "-x509_strict",
            "leaf.pem",
        ],
    ));
}

#[test]
fn outside_validity_fails() {
    if !openssl_available() {
        return;
    }
    let (ca, leaf) = ca_and_leaf(now());
    let files = Files::new(&ca, &[("leaf", &leaf)]);
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    let early = secs(now() - Duration::from_secs(2 * 3600));
    let late = secs(now() + Duration::from_secs(367 * 86400));
    let inside = secs(now() + Duration::from_secs(300 * 86400));
    for anchors in [VIA_ROOT, VIA_MESH] {
        let at = |t: &str| {
            let mut args = anchors.to_vec();
            args.extend(["-attime", t, "leaf.pem"]);
            verify(&files, &args)
        };
        assert_ok(&at(&inside));
        assert_fails(&at(&early));
        assert_fails(&at(&late));
    }
}

#[test]
fn x509_text_shows_sans_ekus_and_ca_profile() {
    if !openssl_available() {
        return;
    }
    let (ca, leaf) = ca_and_leaf(now());
    let files = Files::new(&ca, &[("leaf", &leaf)]);
    let text = |file: &str| {
        let out = openssl(files.dir.path(), &["x509", "-noout", "-text", "-in", file]);
        assert!(out.status.success(), "{}", describe(&out));
        String::from_utf8(out.stdout).unwrap()
    };

    let leaf_text = text("leaf.pem");
    for needle in [
        "Subject: CN = web",
        "Issuer: O = Nunki, CN = nunki mesh CA",
        "Signature Algorithm: ecdsa-with-SHA384",
        "NIST CURVE: P-256",
        "DNS:web, DNS:web.default.svc.cluster.local, DNS:*.web.default.svc.cluster.local, DNS:*, \
         IP Address:10.1.2.3, IP Address:FD00:0:0:0:0:0:0:1, URI:spiffe://nunki/ns/default/web",
        "X509v3 Key Usage: critical\n                Digital Signature\n",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "X509v3 Authority Key Identifier",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(
            leaf_text.contains(needle),
            "missing {needle:?} in\n{leaf_text}"
        );
    }
    assert!(!leaf_text.contains("Key Encipherment"), "{leaf_text}");
    assert!(!leaf_text.contains("CA:TRUE"), "{leaf_text}");

    let root_text = text("root.pem");
    for needle in [
        "Subject: O = Nunki, CN = nunki root CA",
        "Issuer: O = Nunki, CN = nunki root CA",
        "NIST CURVE: P-384",
        "CA:TRUE, pathlen:1",
        "Digital Signature, Certificate Sign, CRL Sign",
    ] {
        assert!(
            root_text.contains(needle),
            "missing {needle:?} in\n{root_text}"
        );
    }
    for file in ["intermediate.pem", "mesh-ca.pem"] {
        let t = text(file);
        assert!(t.contains("Subject: O = Nunki, CN = nunki mesh CA"), "{t}");
        assert!(t.contains("CA:TRUE, pathlen:0"), "{t}");
    }
    assert!(text("intermediate.pem").contains("Issuer: O = Nunki, CN = nunki root CA"));
    assert!(text("mesh-ca.pem").contains("Issuer: O = Nunki, CN = nunki mesh CA"));
}
