//! The Coordinator end to end over real loopback sockets with the simulated platform:
//! set → pods get certificates (or are refused) → history → updates → restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::Arc;

use nunki_api::userapi::GetManifestsRequest;
use nunki_api::userapi::user_api_client::UserApiClient;
use nunki_atls::cert::AttestingKey;
use nunki_atls::grpc::ConnectError;
use nunki_atls::{Issuer, SimIssuer};
use nunki_coordinator::run::StoreChoice;
use nunki_manifest::{HostData, transition_chain};

mod common;
use common::*;
use nunki_testkit::{pem_certs, verify_server_leaf};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_with_the_simulated_platform() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Arc::new(AttestingKey::generate().unwrap());
    let d = Deployment::new(owner.clone(), "web.default.svc");
    let c = coordinator(
        StoreChoice::Dir(dir.path().to_path_buf()),
        d.coordinator_host_data(),
    )
    .await
    .unwrap();

    assert_eq!(http_get(c.metrics, "/healthz").await.0, 200);
    let (code, body) = http_get(c.metrics, "/readyz").await;
    assert_eq!(code, 503, "{body}");

    // Before a manifest, pods are refused (no reference values to check them against).
    assert!(
        pod(
            c.mesh_api,
            Arc::new(SimIssuer::new(sim(), d.web_host_data()))
        )
        .await
        .is_err()
    );

    // set: the CLI side attests the Coordinator against the manifest's coordinator policy.
    let ch = user_channel(c.user_api, d.coordinator_host_data(), None)
        .await
        .unwrap();
    assert_eq!(
        ch.verified_peer().unwrap().host_data(),
        d.coordinator_host_data()
    );
    let set = UserApiClient::new(ch.channel())
        .set_manifest(d.request(None))
        .await
        .unwrap()
        .into_inner();
    let (code, body) = http_get(c.metrics, "/readyz").await;
    assert_eq!(code, 200, "{body}");

    // A pod whose HOST_DATA is listed gets a certificate that chains to the root and mesh CA.
    let (web_key, cert) = pod(
        c.mesh_api,
        Arc::new(SimIssuer::new(sim(), d.web_host_data())),
    )
    .await
    .unwrap();
    assert_eq!(cert.root_ca, set.root_ca);
    assert_eq!(cert.mesh_ca, set.mesh_ca);
    verify_server_leaf(&cert.cert_chain, &set.root_ca, "web").unwrap();
    verify_server_leaf(&cert.cert_chain, &set.root_ca, "web.default.svc").unwrap();
    verify_server_leaf(&cert.cert_chain, &set.mesh_ca, "127.0.0.1").unwrap();
    assert!(verify_server_leaf(&cert.cert_chain, &set.root_ca, "backend").is_err());
    let leaf = nunki_atls::cert::parse_peer(&pem_certs(&cert.cert_chain)[0]).unwrap();
    assert_eq!(
        leaf.spki,
        web_key.spki_der(),
        "the leaf certifies the pod's own TLS key"
    );

    // A second pod of the same workload; the two complete a mutual-TLS exchange with their
    // mesh certificates, each trusting only the mesh CA.
    let (peer_key, peer_cert) = pod(
        c.mesh_api,
        Arc::new(SimIssuer::new(sim(), d.web_host_data())),
    )
    .await
    .unwrap();
    mtls_exchange(
        (&web_key, &cert.cert_chain),
        (&peer_key, &peer_cert.cert_chain),
        &set.mesh_ca,
    )
    .await;
    openssl_verify(&set.root_ca, &cert.cert_chain);

    // A pod whose HOST_DATA is not listed is refused, and the refusal is counted.
    let err = pod(
        c.mesh_api,
        Arc::new(SimIssuer::new(sim(), HostData([0x99; 32]))),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("PermissionDenied") && err.contains("not in the manifest"),
        "{err}"
    );
    // A pod with a different measurement fails attestation in the handshake.
    let bad: Arc<dyn Issuer> =
        Arc::new(SimIssuer::new(sim(), d.web_host_data()).with_measurement([3u8; 48].into()));
    assert!(pod(c.mesh_api, bad).await.is_err());
    for needle in [
        "nunki_coordinator_certificates_issued_total 2",
        r#"nunki_coordinator_attestation_failures_total{reason="unknown_policy"} 1"#,
        r#"nunki_coordinator_attestation_failures_total{reason="reference_values"} 1"#,
        "nunki_coordinator_manifests_set_total 1",
    ] {
        wait_metric(c.metrics, needle).await;
    }

    // GetManifests: the history and its chain.
    let got = UserApiClient::new(ch.channel())
        .get_manifests(GetManifestsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.manifests, vec![d.manifest.clone()]);
    assert_eq!(got.policies.len(), 2);
    let chain = transition_chain(&[&d.manifest]);
    assert_eq!(
        got.latest_transition,
        chain.last().unwrap().transition_hash.0.to_vec()
    );

    // An update by a key that is not a workload owner is refused, naming the key.
    let intruder = Arc::new(AttestingKey::generate().unwrap());
    let d2 = Deployment::new(owner.clone(), "web2.default.svc");
    let ich = user_channel(c.user_api, d.coordinator_host_data(), Some(intruder))
        .await
        .unwrap();
    let st = UserApiClient::new(ich.channel())
        .set_manifest(d2.request(None))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert!(
        st.message().contains("is not a workload owner key"),
        "{}",
        st.message()
    );
    let st = UserApiClient::new(ch.channel())
        .set_manifest(d2.request(None))
        .await
        .unwrap_err();
    assert_eq!(
        st.code(),
        tonic::Code::Unauthenticated,
        "an update without any key"
    );
    assert!(
        st.message().contains("--workload-owner-key"),
        "{}",
        st.message()
    );

    // Invalid manifests list every error.
    let och = user_channel(c.user_api, d.coordinator_host_data(), Some(owner.clone()))
        .await
        .unwrap();
    let mut bad_req = d2.request(None);
    bad_req.manifest = br#"{"Policies":{"xyz":{"SANs":[]}},"ReferenceValues":{}}"#.to_vec();
    let st = UserApiClient::new(och.channel())
        .set_manifest(bad_req)
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    assert!(st.message().lines().count() >= 3, "{}", st.message());

    // Two concurrent updates from the same base: exactly one wins.
    let base: [u8; 32] = got.latest_transition.clone().try_into().unwrap();
    let d3 = Deployment::new(owner.clone(), "web3.default.svc");
    let mut ca = UserApiClient::new(och.channel());
    let mut cb = UserApiClient::new(och.channel());
    let (a, b) = tokio::join!(
        ca.set_manifest(d2.request(Some(base))),
        cb.set_manifest(d3.request(Some(base)))
    );
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one concurrent update must win: {a:?} {b:?}"
    );
    let a_won = a.is_ok();
    let loser = a.err().or(b.err()).unwrap();
    assert_eq!(loser.code(), tonic::Code::Aborted);
    assert!(
        loser.message().contains("concurrent update"),
        "{}",
        loser.message()
    );
    let got2 = UserApiClient::new(och.channel())
        .get_manifests(GetManifestsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got2.manifests.len(), 2);
    assert_ne!(
        got2.mesh_ca, got.mesh_ca,
        "the mesh CA rotates with every manifest"
    );
    // The root CA key and subject stay: a pod certified under the new manifest verifies with
    // the root PEM users saved after the first `set`.
    let winner = if a_won { &d2 } else { &d3 };
    let (_, cert2) = pod(
        c.mesh_api,
        Arc::new(SimIssuer::new(sim(), winner.web_host_data())),
    )
    .await
    .unwrap();
    verify_server_leaf(&cert2.cert_chain, &set.root_ca, "web").unwrap();
    assert!(
        verify_server_leaf(&cert2.cert_chain, &set.mesh_ca, "web").is_err(),
        "the old mesh CA must not accept new leaves"
    );
    let refs: Vec<&[u8]> = got2.manifests.iter().map(Vec::as_slice).collect();
    assert_eq!(
        got2.latest_transition,
        transition_chain(&refs)
            .last()
            .unwrap()
            .transition_hash
            .0
            .to_vec()
    );

    // Restart over the same state dir: the history survives, the Coordinator is in recovery mode.
    c.shutdown().await;
    let c = coordinator(
        StoreChoice::Dir(dir.path().to_path_buf()),
        d.coordinator_host_data(),
    )
    .await
    .unwrap();
    let (code, body) = http_get(c.metrics, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("recovery mode"), "{body}");
    let ch = user_channel(c.user_api, d.coordinator_host_data(), Some(owner.clone()))
        .await
        .unwrap();
    let st = UserApiClient::new(ch.channel())
        .set_manifest(d.request(None))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::FailedPrecondition);
    assert!(st.message().contains("recovery mode"), "{}", st.message());
    assert!(
        pod(
            c.mesh_api,
            Arc::new(SimIssuer::new(sim(), d.web_host_data()))
        )
        .await
        .is_err()
    );
    c.shutdown().await;

    // A corrupted file in the state dir is detected on start and named.
    let manifests = walk_files(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("manifests"))
        .collect::<Vec<_>>();
    assert!(!manifests.is_empty());
    let victim = &manifests[0];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[5] ^= 1;
    std::fs::write(victim, bytes).unwrap();
    let err = coordinator(
        StoreChoice::Dir(dir.path().to_path_buf()),
        d.coordinator_host_data(),
    )
    .await
    .unwrap_err();
    let name = victim.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.contains(&name), "{err}");
}

/// Two pods talk mutual TLS with their mesh certificates over loopback (rustls both ends).
async fn mtls_exchange(
    server: (&AttestingKey, &[u8]),
    client: (&AttestingKey, &[u8]),
    mesh_ca: &[u8],
) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in pem_certs(mesh_ca) {
            r.add(c).unwrap();
        }
        Arc::new(r)
    };
    let key =
        |k: &AttestingKey| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.pkcs8_der().unwrap()));
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        nunki_atls::provider(),
    )
    .build()
    .unwrap();
    let server_cfg = rustls::ServerConfig::builder_with_provider(nunki_atls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(pem_certs(server.1), key(server.0))
        .unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(nunki_atls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(pem_certs(client.1), key(client.0))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg))
            .accept(tcp)
            .await
            .unwrap();
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(b"world").await.unwrap();
        tls.shutdown().await.ok();
        buf
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client_cfg))
        .connect(ServerName::try_from("web").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"world");
    assert_eq!(&srv.await.unwrap(), b"hello");
}

/// `openssl verify` accepts the issued chain against the root (skipped without openssl).
fn openssl_verify(root_pem: &[u8], chain_pem: &[u8]) {
    let Ok(out) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        eprintln!("openssl not found; skipping the OpenSSL check");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let certs = nunki_attestation::snp::certs::pem_or_der_certs(chain_pem).unwrap();
    let root = dir.path().join("root.pem");
    let leaf = dir.path().join("leaf.pem");
    let inter = dir.path().join("intermediate.pem");
    std::fs::write(&root, root_pem).unwrap();
    std::fs::write(&leaf, nunki_attestation::snp::certs::to_pem(&certs[0])).unwrap();
    std::fs::write(&inter, nunki_attestation::snp::certs::to_pem(&certs[1])).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&inter)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The server records a refused handshake after the client has seen it fail; poll briefly.
async fn wait_metric(addr: SocketAddr, needle: &str) {
    let mut last = String::new();
    for _ in 0..50 {
        last = http_get(addr, "/metrics").await.1;
        if last.contains(needle) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("metric {needle:?} not found in:\n{last}");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_wrongly_attested_coordinator_is_refused() {
    let owner = Arc::new(AttestingKey::generate().unwrap());
    let d = Deployment::new(owner, "x");
    // The Coordinator runs with another policy than the manifest's coordinator entry.
    let c = coordinator(StoreChoice::Memory, HostData([0x55; 32]))
        .await
        .unwrap();
    let err = user_channel(c.user_api, d.coordinator_host_data(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Attestation { .. }), "{err}");
    assert!(err.to_string().contains("HOST_DATA"), "{err}");
    c.shutdown().await;
}

#[tokio::test]
async fn idle_connections_do_not_block_handshakes() {
    let (d, c) = deployment_and_coordinator("x").await;
    // More idle sockets than there are handshake slots: they never send a ClientHello.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(tokio::net::TcpStream::connect(c.user_api).await.unwrap());
    }
    let t = std::time::Instant::now();
    let ch = tokio::time::timeout(
        std::time::Duration::from_secs(4),
        user_channel(c.user_api, d.coordinator_host_data(), None),
    )
    .await
    .expect("a legitimate client must not wait for idle sockets")
    .unwrap();
    assert!(ch.verified_peer().is_some());
    assert!(t.elapsed() < std::time::Duration::from_secs(4));
    drop(idle);
    c.shutdown().await;
}

/// A call on a channel whose connection is gone fails with Unavailable and the channel says why
/// (the client never reconnects: answers must come over the attested connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_after_the_connection_is_gone_says_so() {
    let (d, c) = deployment_and_coordinator("web.default.svc").await;
    let ch = user_channel(c.user_api, d.coordinator_host_data(), None)
        .await
        .unwrap();
    UserApiClient::new(ch.channel())
        .set_manifest(d.request(None))
        .await
        .unwrap();
    assert!(ch.failure().is_none());
    c.shutdown().await;
    let st = UserApiClient::new(ch.channel())
        .get_manifests(GetManifestsRequest {})
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unavailable, "{st:?}");
    assert!(
        st.message().contains("not reconnecting"),
        "{}",
        st.message()
    );
    assert!(
        matches!(ch.failure(), Some(ConnectError::ConnectionLost { .. })),
        "{:?}",
        ch.failure()
    );
}

/// A client of ours that connects and never calls does not keep the Coordinator from shutting
/// down: it holds its first bytes for its first call only for a few milliseconds. (Held for
/// ever, the server would wait for its HTTP/2 preface, and tonic's graceful drain with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_calls_does_not_block_shutdown() {
    let (d, c) = deployment_and_coordinator("x").await;
    let held = user_channel(c.user_api, d.coordinator_host_data(), None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tokio::time::timeout(std::time::Duration::from_secs(3), c.shutdown())
        .await
        .expect("shutdown must not wait for a client that never calls");
    let st = UserApiClient::new(held.channel())
        .get_manifests(GetManifestsRequest {})
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unavailable, "{st:?}");
}

/// A TLS client that stays silent after the handshake is cut off after
/// `FIRST_BYTES_TIMEOUT`: it neither keeps its connection slot nor blocks a shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_client_is_cut_off() {
    let (_, c) = deployment_and_coordinator("x").await;
    let cfg = nunki_atls::AttestedClientConfig::with_mode(
        nunki_atls::ServerVerification::None,
        nunki_atls::ClientIdentity::None,
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(c.user_api).await.unwrap();
    let mut silent = tokio_rustls::TlsConnector::from(cfg.config.clone())
        .connect(
            rustls::pki_types::ServerName::try_from("coordinator").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let limit = nunki_coordinator::server::FIRST_BYTES_TIMEOUT + std::time::Duration::from_secs(5);
    // The server closes the connection (the read ends) once the time is up.
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        limit,
        tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut buf),
    )
    .await
    .expect("the server must close a silent connection");
    assert!(
        t.elapsed()
            >= nunki_coordinator::server::FIRST_BYTES_TIMEOUT - std::time::Duration::from_secs(1)
    );
    tokio::time::timeout(std::time::Duration::from_secs(3), c.shutdown())
        .await
        .expect("nothing left to drain");
}
