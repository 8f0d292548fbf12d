//! Workload secrets: a manifest entry's `WorkloadSecretID` yields a 64-byte secret from the
//! Coordinator's seed, delivered with the mesh certificate and written as
//! `workload-secret-seed` (hex, 0400). Same ID → same secret; other ID → other secret; no ID →
//! no file. Real Coordinator, real aTLS on loopback, simulated platform.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use nunki_atls::SimIssuer;
use nunki_attestation::sim::SimPlatform;
use nunki_coordinator::run::{Options, start};
use nunki_initializer::{RequestOptions, request, write_files};
use nunki_manifest::HostData;
use nunki_testkit::{SimDeployment, sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_secrets_follow_the_id() {
    let work = tempfile::tempdir().unwrap();
    let platform = Arc::new(SimPlatform::open_or_create(&work.path().join("sim")).unwrap());
    let pods: [(&[u8], &str); 4] = [
        (b"web a", "apps/v1/Deployment/default/web"),
        (b"web b", "apps/v1/Deployment/default/web"),
        (b"backend", "apps/v1/Deployment/default/backend"),
        (b"no id", ""),
    ];
    let deployment = pods.iter().fold(
        SimDeployment::new(
            platform.reference_values(),
            b"coordinator (workload secret test)",
        ),
        |d, (policy, id)| d.workload(policy, &["pod"], id),
    );
    let c = start(Options::loopback(Arc::new(SimIssuer::new(
        platform.clone(),
        deployment.coordinator_host(),
    ))))
    .await
    .unwrap();
    deployment.set(c.user_api).await;

    let opts = RequestOptions {
        attempts: Some(3),
        base_delay: Duration::from_millis(100),
        ..RequestOptions::default()
    };
    let mut secrets = Vec::new();
    for (i, (policy, _)) in pods.iter().enumerate() {
        let issuer = Arc::new(SimIssuer::new(platform.clone(), HostData(sha256(policy))));
        let files = request(&c.mesh_api.to_string(), issuer, &opts)
            .await
            .unwrap();
        let out = work.path().join(format!("pod{i}"));
        write_files(&out, &files).unwrap();
        let path = out.join("workload-secret-seed");
        if pods[i].1.is_empty() {
            assert!(!path.exists(), "no WorkloadSecretID, no secret file");
            secrets.push(None);
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 128, "hex of 64 bytes: {text}");
        assert!(hex::decode(&text).is_ok());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert!(
            !format!("{files:?}").contains(&text),
            "Debug must not show the secret"
        );
        secrets.push(Some(text));
    }
    assert_eq!(secrets[0], secrets[1], "same ID, same secret");
    assert_ne!(secrets[0], secrets[2], "other ID, other secret");
    c.shutdown().await;
}
