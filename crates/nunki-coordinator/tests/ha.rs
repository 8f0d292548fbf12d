//! Three Coordinator replicas on loopback sharing one store: set on one, issue on all (same
//! mesh CA); an update on another is followed by all; a restarted replica recovers from a
//! ready peer without `nunki recover`; with all replicas gone a manual recovery is needed,
//! works, and the others follow it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nunki_api::userapi::user_api_client::UserApiClient;
use nunki_api::userapi::{
    GetAuditLogRequest, RecoverRequest, RecoverResponse, SetManifestResponse,
};
use nunki_atls::cert::AttestingKey;
use nunki_atls::verify::system_clock;
use nunki_atls::{Issuer, SimIssuer};
use nunki_coordinator::run::{Options, Running, StoreChoice, start};
use nunki_coordinator::state::Status;
use nunki_coordinator::store::{MemStore, Store};
use nunki_manifest::{AuditOperation, AuditOutcome, Sha256Fingerprint, check_audit_chain};
use tonic::Code;

mod common;
use common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    store: Arc<dyn Store>,
    mesh: Vec<SocketAddr>,
    d: Deployment,
}

impl Cluster {
    /// Starts replica `i` on its fixed mesh port (its peers know it by that address). A
    /// restarted replica can find the port briefly taken (an outgoing connection's ephemeral
    /// port, a socket still closing); then it tries again for up to 5 s.
    async fn replica(&self, i: usize) -> Running {
        self.start_replica(i, self.mesh.iter().map(ToString::to_string).collect())
            .await
    }

    /// Replica `i` with these peers (none: it never gets the seed from another replica).
    async fn start_replica(&self, i: usize, peers: Vec<String>) -> Running {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = start(Options {
                issuer: Arc::new(SimIssuer::new(sim(), self.d.coordinator_host_data())),
                store: StoreChoice::Open(self.store.clone()),
                user_api: any,
                mesh_api: self.mesh[i],
                metrics: any,
                clock: system_clock(),
                peers: peers.clone(),
            })
            .await;
            match r {
                Ok(r) => return r,
                Err(e) if e.contains("in use") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("replica {i}: {e}"),
            }
        }
    }
}

async fn wait_ready(r: &Running, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if matches!(r.coordinator.status(), Status::Ready(_)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not become ready: {:?}", r.coordinator.status());
}

fn latest(r: &Running) -> Option<nunki_manifest::TransitionHash> {
    match r.coordinator.status() {
        Status::Ready(s) => Some(s.latest.hash),
        _ => None,
    }
}

fn mesh_spki(pem: &[u8]) -> Vec<u8> {
    let der = nunki_attestation::snp::certs::pem_or_der_certs(pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
    cert.public_key().raw.to_vec()
}

async fn set(
    r: &Running,
    d: &Deployment,
    key: Option<Arc<AttestingKey>>,
) -> Result<SetManifestResponse, tonic::Status> {
    let ch = user_channel(r.user_api, d.coordinator_host_data(), key)
        .await
        .unwrap();
    UserApiClient::new(ch.channel())
        .set_manifest(d.request(None))
        .await
        .map(tonic::Response::into_inner)
}

/// `Recover` on replica `r` with the seed-share owner key as client certificate.
async fn recover(
    r: &Running,
    d: &Deployment,
    owner: &Arc<AttestingKey>,
    seed: &nunki_ca::Seed,
    salt: &nunki_ca::Salt,
    force: bool,
) -> Result<RecoverResponse, tonic::Status> {
    let ch = user_channel(r.user_api, d.coordinator_host_data(), Some(owner.clone()))
        .await
        .unwrap();
    UserApiClient::new(ch.channel())
        .recover(RecoverRequest {
            seed: seed.as_bytes().to_vec(),
            salt: salt.as_bytes().to_vec(),
            force,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_store() {
    let owner = Arc::new(AttestingKey::generate().unwrap());
    let owner_digest = Sha256Fingerprint(sha256(&owner.spki_der()));
    let (ss_private, ss_public) = nunki_ca::generate_seedshare_owner_key().unwrap();
    let ss_tls = Arc::new(AttestingKey::from_pkcs8(&ss_private).unwrap());
    let mk = |v: &str| Deployment::build(vec![owner_digest], vec![hex::encode(&ss_public)], v);
    let cluster = Cluster {
        store: Arc::new(MemStore::default()),
        mesh: (0..3)
            .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
            .collect(),
        d: mk("v1"),
    };
    let d2 = mk("v2");
    let web =
        |d: &Deployment| Arc::new(SimIssuer::new(sim(), d.web_host_data())) as Arc<dyn Issuer>;

    let mut r = Vec::new();
    for i in 0..3 {
        r.push(cluster.replica(i).await);
    }
    // Set on replica 0; 1 and 2 get the seed from it and serve the same manifest and mesh CA.
    let first = set(&r[0], &cluster.d, None).await.unwrap();
    let shares = nunki_ca::SeedShareDocument::parse(&first.seed_share_document).unwrap();
    let (seed, salt) = shares.decrypt(&ss_private).unwrap();
    for (i, replica) in r.iter().enumerate() {
        wait_ready(replica, &format!("replica {i}")).await;
        let (_, cert) = pod(replica.mesh_api, web(&cluster.d)).await.unwrap();
        assert_eq!(
            mesh_spki(&cert.mesh_ca),
            mesh_spki(&first.mesh_ca),
            "replica {i}"
        );
        assert_eq!(
            mesh_spki(&cert.root_ca),
            mesh_spki(&first.root_ca),
            "replica {i}"
        );
    }

    // An update on replica 1 is followed by 0 and 2 (new manifest, new shared mesh CA).
    let second = set(&r[1], &d2, Some(owner.clone())).await.unwrap();
    assert_ne!(mesh_spki(&second.mesh_ca), mesh_spki(&first.mesh_ca));
    let target = latest(&r[1]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while r.iter().any(|x| latest(x) != Some(target)) {
        assert!(
            Instant::now() < deadline,
            "replicas did not follow the update"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, replica) in r.iter().enumerate() {
        let (_, cert) = pod(replica.mesh_api, web(&d2)).await.unwrap();
        assert_eq!(
            mesh_spki(&cert.mesh_ca),
            mesh_spki(&second.mesh_ca),
            "replica {i}"
        );
        // The old web policy is no longer in the manifest.
        assert!(pod(replica.mesh_api, web(&cluster.d)).await.is_err());
    }

    // Replica 2 restarts: it recovers from a peer by itself, with the same mesh CA.
    let old = r.pop().unwrap();
    old.shutdown().await;
    let restarted = cluster.replica(2).await;
    wait_ready(&restarted, "restarted replica 2").await;
    let (_, cert) = pod(restarted.mesh_api, web(&d2)).await.unwrap();
    assert_eq!(mesh_spki(&cert.mesh_ca), mesh_spki(&second.mesh_ca));
    // A manual recovery of a ready replica is refused.
    let st = recover(&restarted, &d2, &ss_tls, &seed, &salt, false)
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::FailedPrecondition, "{}", st.message());
    r.push(restarted);

    // The audit log names the peer recoveries.
    let ch = user_channel(r[0].user_api, d2.coordinator_host_data(), None)
        .await
        .unwrap();
    let log = UserApiClient::new(ch.channel())
        .get_audit_log(GetAuditLogRequest {})
        .await
        .unwrap()
        .into_inner();
    let records = check_audit_chain(&log.records).unwrap();
    let peer_recoveries = records
        .iter()
        .filter(|(_, x)| {
            x.operation == AuditOperation::Recover
                && x.outcome == AuditOutcome::Accepted
                && x.peer.is_some()
        })
        .count();
    assert!(peer_recoveries >= 3, "{records:#?}");

    // All replicas gone: the first one back stays in recovery mode (no ready peer) until a
    // seed-share owner recovers it; the others then recover from it.
    for x in r.drain(..) {
        x.shutdown().await;
    }
    let a = cluster.replica(0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        matches!(a.coordinator.status(), Status::Recovery { .. }),
        "{:?}",
        a.coordinator.status()
    );
    assert!(pod(a.mesh_api, web(&d2)).await.is_err());
    let rec = recover(&a, &d2, &ss_tls, &seed, &salt, false)
        .await
        .unwrap();
    assert_eq!(mesh_spki(&rec.root_ca), mesh_spki(&first.root_ca));
    assert_ne!(mesh_spki(&rec.mesh_ca), mesh_spki(&second.mesh_ca));
    let b = cluster.replica(1).await;
    wait_ready(&b, "replica 1 after the manual recovery").await;
    let (_, cert) = pod(b.mesh_api, web(&d2)).await.unwrap();
    assert_eq!(mesh_spki(&cert.mesh_ca), mesh_spki(&rec.mesh_ca));

    // An owner recovers a third replica that has no peers configured while 0 and 1 are ready:
    // its recovery makes a new mesh CA, and the ready replicas switch to it (one mesh CA).
    let transition = latest(&a).unwrap();
    let mesh_key_at = nunki_coordinator::history::History::mesh_key_location(&transition).unwrap();
    let retired_blob = cluster.store.get(&mesh_key_at).await.unwrap().unwrap();
    let c = cluster.start_replica(2, Vec::new()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(c.coordinator.status(), Status::Recovery { .. }));
    let rec2 = recover(&c, &d2, &ss_tls, &seed, &salt, true).await.unwrap();
    assert_ne!(mesh_spki(&rec2.mesh_ca), mesh_spki(&rec.mesh_ca));
    assert_eq!(mesh_spki(&rec2.root_ca), mesh_spki(&first.root_ca));
    for (name, x) in [("replica 0", &a), ("replica 1", &b), ("replica 2", &c)] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, cert) = pod(x.mesh_api, web(&d2)).await.unwrap();
            if mesh_spki(&cert.mesh_ca) == mesh_spki(&rec2.mesh_ca) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} still issues under the old mesh CA"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Someone who can write the store puts the retired (still validly wrapped) key back: the
    // replicas refuse to go back to it.
    cluster
        .store
        .set(&mesh_key_at, &retired_blob)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, x) in [("replica 0", &a), ("replica 1", &b), ("replica 2", &c)] {
        let (_, cert) = pod(x.mesh_api, web(&d2)).await.unwrap();
        assert_eq!(
            mesh_spki(&cert.mesh_ca),
            mesh_spki(&rec2.mesh_ca),
            "{name} went back to a retired mesh CA"
        );
    }
    c.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;
}
