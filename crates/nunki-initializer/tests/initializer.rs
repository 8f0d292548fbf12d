//! The Initializer binary against an in-process Coordinator on loopback (simulated platform).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::Duration;

use nunki_atls::SimIssuer;
use nunki_attestation::sim::SimPlatform;
use nunki_coordinator::run::{Options, start};
use nunki_manifest::HostData;
use nunki_testkit::{SimDeployment, sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializer_writes_the_mesh_files() {
    let work = tempfile::tempdir().unwrap();
    let sim_dir = work.path().join("sim");
    let platform = Arc::new(SimPlatform::open_or_create(&sim_dir).unwrap());
    let web_policy = b"web policy (initializer test)".to_vec();
    let deployment = SimDeployment::new(
        platform.reference_values(),
        b"coordinator policy (initializer test)",
    )
    .workload(&web_policy, &["web"], "");
    let c = start(Options::loopback(Arc::new(SimIssuer::new(
        platform.clone(),
        deployment.coordinator_host(),
    ))))
    .await
    .unwrap();

    // The binary retries until a manifest is set: start it first.
    let out = work.path().join("tls-config");
    let bin = env!("CARGO_BIN_EXE_nunki-initializer");
    let child = std::process::Command::new(bin)
        .env("COORDINATOR_HOST", c.mesh_api.to_string())
        .env("NUNKI_PLATFORM", "simulated")
        .env("NUNKI_SIM_DIR", &sim_dir)
        .env("NUNKI_SIM_HOST_DATA", hex::encode(sha256(&web_policy)))
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;

    deployment.set(c.user_api).await;

    let o = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("no mesh certificate yet") && log.contains("attempt"),
        "one log line per failed attempt:\n{log}"
    );
    for f in [
        "mesh-ca.pem",
        "certChain.pem",
        "key.pem",
        "coordinator-root-ca.pem",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(out.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o400
    );
    // The leaf certifies the key the Initializer wrote.
    let key_pem = std::fs::read_to_string(out.join("key.pem")).unwrap();
    let (label, der) = der::pem::decode_vec(key_pem.as_bytes()).unwrap();
    assert_eq!(label, "PRIVATE KEY");
    let key = nunki_atls::cert::AttestingKey::from_pkcs8(&der).unwrap();
    let chain = nunki_attestation::snp::certs::pem_or_der_certs(
        &std::fs::read(out.join("certChain.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(chain.len(), 2);
    let leaf = nunki_atls::cert::parse_peer(&chain[0].clone().into()).unwrap();
    assert_eq!(leaf.spki, key.spki_der());
    c.shutdown().await;
}

#[tokio::test]
async fn unlisted_policy_gives_up_with_the_reason() {
    let platform = Arc::new(
        SimPlatform::generate(
            nunki_manifest::SnpProduct::Genoa,
            std::time::SystemTime::now(),
        )
        .unwrap(),
    );
    let c = start(Options::loopback(Arc::new(SimIssuer::new(
        platform.clone(),
        HostData([1; 32]),
    ))))
    .await
    .unwrap();
    let err = nunki_initializer::request(
        &c.mesh_api.to_string(),
        Arc::new(SimIssuer::new(platform, HostData([2; 32]))),
        &nunki_initializer::RequestOptions {
            attempts: Some(2),
            base_delay: Duration::from_millis(10),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("gave up after 2 attempts"),
        "{err}"
    );
    c.shutdown().await;
}
