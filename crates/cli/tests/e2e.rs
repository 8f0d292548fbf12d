//! End to end with the real parts: an in-process Coordinator (the library the
//! `nunki-coordinator` binary wraps) on loopback, the real `nunki` binary for `set` and
//! `verify`, and a simulated pod that gets its mesh certificate over mutual aTLS. The pod's
//! certificate must verify with the `verify/mesh-root.pem` that `nunki verify` wrote.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::SystemTime;

use nunki_api::meshapi::NewMeshCertRequest;
use nunki_api::meshapi::mesh_api_client::MeshApiClient;
use nunki_atls::cert::AttestingKey;
use nunki_atls::grpc::{Target, connect};
use nunki_atls::{ClientIdentity, ServerVerification, SimIssuer};
use nunki_attestation::sim::SimPlatform;
use nunki_coordinator::run::{Options, StoreChoice, start};
use nunki_manifest::{HostData, SnpProduct};
use nunki_testkit::{SimDeployment, sha256, verify_server_leaf};

async fn nunki(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_nunki"))
            .args(&args)
            .env("NUNKI_SIM_DIR", "/nonexistent/not-used")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_pod_certificate_verify_with_real_binaries() {
    let platform = Arc::new(SimPlatform::generate(SnpProduct::Genoa, SystemTime::now()).unwrap());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    // The deployment: a coordinator policy and a web policy, both as documents on disk.
    let coordinator_policy = b"package agent_policy\n# coordinator (e2e)\n".to_vec();
    let web_policy = b"package agent_policy\n# web (e2e)\n".to_vec();
    std::fs::create_dir(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/coordinator.rego"), &coordinator_policy).unwrap();
    std::fs::write(dir.join("policies/web.rego"), &web_policy).unwrap();
    let manifest = SimDeployment::new(platform.reference_values(), &coordinator_policy)
        .workload(&web_policy, &["web", "127.0.0.1"], "")
        .manifest();
    let manifest_path = dir.join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_json_bytes()).unwrap();

    let c = start(Options {
        store: StoreChoice::Dir(dir.join("state")),
        ..Options::loopback(Arc::new(SimIssuer::new(
            platform.clone(),
            HostData(sha256(&coordinator_policy)),
        )))
    })
    .await
    .unwrap();
    let user = c.user_api.to_string();
    let s = |p: &Path| p.display().to_string();

    // nunki set
    let o = nunki(vec![
        "set".into(),
        "-c".into(),
        user.clone(),
        "-m".into(),
        s(&manifest_path),
        "--policies".into(),
        s(&dir.join("policies")),
        "--workspace".into(),
        s(dir),
        "--timeout".into(),
        "10".into(),
    ])
    .await;
    assert!(o.status.success(), "{}", show(&o));
    assert!(dir.join("coordinator-root.pem").exists() && dir.join("mesh-root.pem").exists());

    // A simulated pod with the web policy gets its certificate.
    let key = Arc::new(AttestingKey::generate().unwrap());
    let identity = ClientIdentity::Attested {
        key: key.clone(),
        issuer: Arc::new(SimIssuer::new(
            platform.clone(),
            HostData(sha256(&web_policy)),
        )),
    };
    let ch = connect(&Target::new(
        c.mesh_api.to_string(),
        ServerVerification::None,
        identity,
    ))
    .await
    .unwrap();
    let cert = MeshApiClient::new(ch.channel())
        .new_mesh_cert(NewMeshCertRequest {})
        .await
        .unwrap()
        .into_inner();

    // nunki verify, against the local manifest.
    let out = dir.join("verify");
    let o = nunki(vec![
        "verify".into(),
        "-c".into(),
        user.clone(),
        "-o".into(),
        s(&out),
        "-m".into(),
        s(&manifest_path),
    ])
    .await;
    assert!(o.status.success(), "{}", show(&o));
    for f in [
        "coordinator-root.pem",
        "mesh-root.pem",
        "manifests/manifest.0.json",
        "history.json",
    ] {
        assert!(out.join(f).exists(), "verify/{f} missing");
    }
    assert_eq!(
        std::fs::read(out.join("manifests/manifest.0.json")).unwrap(),
        std::fs::read(&manifest_path).unwrap()
    );
    for p in [&coordinator_policy, &web_policy] {
        assert_eq!(
            std::fs::read(out.join("policies").join(hex::encode(sha256(p)))).unwrap(),
            *p
        );
    }
    let mesh_root = std::fs::read(out.join("mesh-root.pem")).unwrap();
    let coordinator_root = std::fs::read(out.join("coordinator-root.pem")).unwrap();
    assert_eq!(mesh_root, std::fs::read(dir.join("mesh-root.pem")).unwrap());

    // The pod's certificate verifies with what `nunki verify` wrote: rustls and OpenSSL.
    verify_server_leaf(&cert.cert_chain, &mesh_root, "web").unwrap();
    verify_server_leaf(&cert.cert_chain, &coordinator_root, "127.0.0.1").unwrap();
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok()
    {
        let certs = nunki_attestation::snp::certs::pem_or_der_certs(&cert.cert_chain).unwrap();
        std::fs::write(
            dir.join("leaf.pem"),
            nunki_attestation::snp::certs::to_pem(&certs[0]),
        )
        .unwrap();
        let o = std::process::Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", "-CAfile"])
            .arg(out.join("mesh-root.pem"))
            .arg(dir.join("leaf.pem"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", show(&o));
    }

    // A Coordinator run with another policy than the manifest's coordinator entry is refused,
    // naming the failing check.
    c.shutdown().await;
    let impostor = start(Options::loopback(Arc::new(SimIssuer::new(
        platform.clone(),
        HostData([0x66; 32]),
    ))))
    .await
    .unwrap();
    let o = nunki(vec![
        "verify".into(),
        "-c".into(),
        impostor.user_api.to_string(),
        "-o".into(),
        s(&dir.join("verify2")),
        "-m".into(),
        s(&manifest_path),
        "--timeout".into(),
        "5".into(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let text = show(&o);
    assert!(text.contains("HOST_DATA"), "{text}");
    impostor.shutdown().await;
}

/// `nunki set` writes the seed shares; after a restart `nunki recover` brings the Coordinator
/// back with the same root CA, and `nunki verify --log` shows the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_restart_recover_verify_log_with_real_binary() {
    let platform = Arc::new(SimPlatform::generate(SnpProduct::Genoa, SystemTime::now()).unwrap());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let s = |p: &Path| p.display().to_string();
    let pem = |label: &str, der: &[u8]| {
        use base64::Engine as _;
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let (private, public) = nunki_ca::generate_seedshare_owner_key().unwrap();
    std::fs::write(
        dir.join("seedshare-owner.pem"),
        pem("PRIVATE KEY", &private),
    )
    .unwrap();
    let (stranger, _) = nunki_ca::generate_seedshare_owner_key().unwrap();
    std::fs::write(dir.join("stranger.pem"), pem("PRIVATE KEY", &stranger)).unwrap();

    let coordinator_policy = b"package agent_policy\n# coordinator (recover)\n".to_vec();
    std::fs::create_dir(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/c.rego"), &coordinator_policy).unwrap();
    let manifest = SimDeployment::new(platform.reference_values(), &coordinator_policy)
        .seedshare_owner(&public)
        .manifest();
    let manifest_path = dir.join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_json_bytes()).unwrap();
    let options = || Options {
        store: StoreChoice::Dir(dir.join("state")),
        ..Options::loopback(Arc::new(SimIssuer::new(
            platform.clone(),
            HostData(sha256(&coordinator_policy)),
        )))
    };

    let c = start(options()).await.unwrap();
    let o = nunki(vec![
        "set".into(),
        "-c".into(),
        c.user_api.to_string(),
        "-m".into(),
        s(&manifest_path),
        "--policies".into(),
        s(&dir.join("policies")),
        "--workspace".into(),
        s(dir),
    ])
    .await;
    assert!(o.status.success(), "{}", show(&o));
    assert!(show(&o).contains("seed-shares.json"), "{}", show(&o));
    let root_before = std::fs::read(dir.join("coordinator-root.pem")).unwrap();
    c.shutdown().await;

    let c = start(options()).await.unwrap();
    let user = c.user_api.to_string();
    let verify = |extra: &[&str]| {
        let mut a: Vec<String> = vec![
            "verify".into(),
            "-c".into(),
            user.clone(),
            "-o".into(),
            s(&dir.join("verify")),
            "-m".into(),
            s(&manifest_path),
        ];
        a.extend(extra.iter().map(ToString::to_string));
        nunki(a)
    };
    let o = verify(&[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(show(&o).contains("recovery mode"), "{}", show(&o));

    let recover = |key: &str| {
        nunki(vec![
            "recover".into(),
            "-c".into(),
            user.clone(),
            "--seedshare-owner-key".into(),
            s(&dir.join(key)),
            "--seed".into(),
            s(&dir.join("seed-shares.json")),
            "-m".into(),
            s(&manifest_path),
            "--workspace".into(),
            s(dir),
        ])
    };
    // A key without a share: refused locally, naming the shares' owners.
    let o = recover("stranger.pem").await;
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        show(&o).contains("no share for the owner key"),
        "{}",
        show(&o)
    );

    let o = recover("seedshare-owner.pem").await;
    assert!(o.status.success(), "{}", show(&o));
    assert!(show(&o).contains("unchanged"), "{}", show(&o));
    let root_after = std::fs::read(dir.join("coordinator-root.pem")).unwrap();
    let spki = |pem: &[u8]| {
        let der = nunki_attestation::snp::certs::pem_or_der_certs(pem).unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
        c.public_key().raw.to_vec()
    };
    assert_eq!(spki(&root_before), spki(&root_after));

    let o = verify(&["--log"]).await;
    assert!(o.status.success(), "{}", show(&o));
    let out = show(&o);
    assert!(out.contains("history-key signature checked"), "{out}");
    assert!(out.contains("audit log      2 records"), "{out}");
    assert!(out.contains("Recover"), "{out}");
    assert!(dir.join("verify/audit-log.json").exists());
    assert!(dir.join("verify/history-key.pem").exists());

    // Recovering a ready Coordinator is refused.
    let o = recover("seedshare-owner.pem").await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(show(&o).contains("not in recovery mode"), "{}", show(&o));
    c.shutdown().await;

    // seed-shares.json lost: after the next restart the Coordinator's own copy is used.
    std::fs::remove_file(dir.join("seed-shares.json")).unwrap();
    let c = start(options()).await.unwrap();
    let o = nunki(vec![
        "recover".into(),
        "-c".into(),
        c.user_api.to_string(),
        "--seedshare-owner-key".into(),
        s(&dir.join("seedshare-owner.pem")),
        "--seed".into(),
        s(&dir.join("seed-shares.json")),
        "-m".into(),
        s(&manifest_path),
        "--workspace".into(),
        s(dir),
    ])
    .await;
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        show(&o).contains("using the seed shares the Coordinator keeps"),
        "{}",
        show(&o)
    );
    c.shutdown().await;
}
