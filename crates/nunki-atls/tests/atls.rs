//! aTLS over real loopback sockets with the simulated platform: the happy paths and the attacks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use nunki_atls::cert::{AttestingKey, report_data};
use nunki_atls::issuer::Issuer;
use nunki_atls::verify::{AtlsError, system_clock};
use nunki_atls::{
    AttestedClientConfig, AttestingCertResolver, ClientIdentity, HostDataRule, PeerSlot,
    ReferenceVerifier, SimIssuer, mutual_server_config, user_server_config,
};
use nunki_attestation::sim::SimPlatform;
use nunki_attestation::snp::verify::VerifyError;
use nunki_manifest::{HostData, SimulatedReferenceValues, SnpProduct};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const POLICY: HostData = HostData([0x11; 32]);

fn sim() -> Arc<SimPlatform> {
    static P: OnceLock<Arc<SimPlatform>> = OnceLock::new();
    P.get_or_init(|| Arc::new(SimPlatform::generate(SnpProduct::Genoa, SystemTime::now()).unwrap()))
        .clone()
}

fn other_sim() -> Arc<SimPlatform> {
    static P: OnceLock<Arc<SimPlatform>> = OnceLock::new();
    P.get_or_init(|| Arc::new(SimPlatform::generate(SnpProduct::Genoa, SystemTime::now()).unwrap()))
        .clone()
}

fn rv() -> SimulatedReferenceValues {
    sim().reference_values()
}

fn verifier(rv: SimulatedReferenceValues, rule: HostDataRule) -> Arc<ReferenceVerifier> {
    Arc::new(ReferenceVerifier::new(&[], &[rv], rule, system_clock()).unwrap())
}

fn issuer(host: HostData) -> Arc<dyn Issuer> {
    Arc::new(SimIssuer::new(sim(), host))
}

/// A loopback listener and a TLS acceptor with `config`; the address to dial.
async fn listen(config: ServerConfig) -> (String, TcpListener, tokio_rustls::TlsAcceptor) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (
        addr,
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    )
}

/// Serves one connection with `config`, answers "ping" with "pong", returns the peer's certificates.
async fn serve_once(
    config: ServerConfig,
) -> (
    String,
    tokio::task::JoinHandle<Result<Option<Vec<Vec<u8>>>, String>>,
) {
    let (addr, listener, acceptor) = listen(config).await;
    let h = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.ok();
        Ok(tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.to_vec()).collect()))
    });
    (addr, h)
}

async fn ping(cfg: &AttestedClientConfig, addr: &str) -> Result<(), std::io::Error> {
    let mut s = cfg.connect(addr).await?;
    s.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"pong");
    Ok(())
}

fn server(host: HostData) -> ServerConfig {
    let r = Arc::new(AttestingCertResolver::new(issuer(host), system_clock()).unwrap());
    user_server_config(r).unwrap()
}

fn client_err(cfg: &AttestedClientConfig) -> AtlsError {
    match cfg.slot.get() {
        Some(Err(e)) => e,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

#[tokio::test]
async fn server_attestation_succeeds_and_exposes_the_report() {
    let (addr, h) = serve_once(server(POLICY)).await;
    let cfg = AttestedClientConfig::new(
        Some(verifier(rv(), HostDataRule::OneOf(vec![POLICY]))),
        ClientIdentity::None,
    )
    .unwrap();
    ping(&cfg, &addr).await.unwrap();
    let peer = cfg.slot.verified().unwrap();
    assert_eq!(peer.host_data(), POLICY);
    assert_eq!(peer.matched, "simulated[0]");
    assert!(h.await.unwrap().unwrap().is_none());
}

#[tokio::test]
async fn untrusted_root_is_refused() {
    let (addr, _h) = serve_once(server(POLICY)).await;
    let cfg = AttestedClientConfig::new(
        Some(verifier(other_sim().reference_values(), HostDataRule::Any)),
        ClientIdentity::None,
    )
    .unwrap();
    let err = ping(&cfg, &addr).await.unwrap_err();
    assert!(err.to_string().contains("not trusted"), "{err}");
    assert!(matches!(
        client_err(&cfg),
        AtlsError::Evidence(VerifyError::UntrustedRoot { .. })
    ));
}

#[tokio::test]
async fn measurement_and_tcb_mismatch_are_refused() {
    let bad_measurement: Arc<dyn Issuer> =
        Arc::new(SimIssuer::new(sim(), POLICY).with_measurement([9u8; 48].into()));
    let r = Arc::new(AttestingCertResolver::new(bad_measurement, system_clock()).unwrap());
    let (addr, _h) = serve_once(user_server_config(r).unwrap()).await;
    let cfg = AttestedClientConfig::new(
        Some(verifier(rv(), HostDataRule::Any)),
        ClientIdentity::None,
    )
    .unwrap();
    assert!(ping(&cfg, &addr).await.is_err());
    let err = client_err(&cfg).to_string();
    assert!(err.contains("TrustedMeasurement"), "{err}");

    let (addr, _h) = serve_once(server(POLICY)).await;
    let mut strict = rv();
    strict.minimum_tcb.snp += 1;
    let cfg = AttestedClientConfig::new(
        Some(verifier(strict, HostDataRule::Any)),
        ClientIdentity::None,
    )
    .unwrap();
    assert!(ping(&cfg, &addr).await.is_err());
    let err = client_err(&cfg).to_string();
    assert!(err.contains("MinimumTCB.SNPVersion"), "{err}");
}

#[tokio::test]
async fn unlisted_host_data_is_refused() {
    let (addr, _h) = serve_once(server(HostData([0x22; 32]))).await;
    let cfg = AttestedClientConfig::new(
        Some(verifier(rv(), HostDataRule::OneOf(vec![POLICY]))),
        ClientIdentity::None,
    )
    .unwrap();
    assert!(ping(&cfg, &addr).await.is_err());
    assert!(matches!(client_err(&cfg), AtlsError::HostData { .. }));
}

#[tokio::test]
async fn plain_tls_server_without_evidence_is_refused() {
    let key = AttestingKey::generate().unwrap();
    let plain = key.certify(None, None, SystemTime::now()).unwrap();
    let config = ServerConfig::builder_with_provider(nunki_atls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(plain)));
    let (addr, _h) = serve_once(config).await;
    let cfg = AttestedClientConfig::new(
        Some(verifier(rv(), HostDataRule::Any)),
        ClientIdentity::None,
    )
    .unwrap();
    let err = ping(&cfg, &addr).await.unwrap_err();
    assert!(err.to_string().contains("no attestation evidence"), "{err}");
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[tokio::test]
async fn replayed_certificate_with_an_old_nonce_is_refused() {
    // The server holds the key, but presents evidence made for an earlier connection's nonce.
    let key = AttestingKey::generate().unwrap();
    let old_nonce = [0x42u8; 32];
    let replayed = key
        .certify(
            Some(issuer(POLICY).as_ref()),
            Some(&old_nonce),
            SystemTime::now(),
        )
        .unwrap();
    let config = ServerConfig::builder_with_provider(nunki_atls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(replayed)));
    let (addr, _h) = serve_once(config).await;
    let cfg = AttestedClientConfig::new(
        Some(verifier(rv(), HostDataRule::Any)),
        ClientIdentity::None,
    )
    .unwrap();
    assert!(ping(&cfg, &addr).await.is_err());
    assert!(
        matches!(client_err(&cfg), AtlsError::Binding { .. }),
        "{:?}",
        cfg.slot.get()
    );
}

#[derive(Debug)]
struct MisBound {
    presented: AttestingKey,
    bound_to: Vec<u8>,
}

impl ResolvesServerCert for MisBound {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let n = hello.alpn().and_then(nunki_atls::nonce::from_alpn)?;
        // Fresh evidence for the right nonce, but bound to another key than the one presented.
        let doc = issuer(POLICY)
            .issue(&report_data(&self.bound_to, &n))
            .ok()?;
        self.presented
            .certify_with_evidence(Some(&doc), SystemTime::now())
            .ok()
    }
}

#[tokio::test]
async fn evidence_bound_to_another_key_is_refused() {
    let other = AttestingKey::generate().unwrap();
    let config = ServerConfig::builder_with_provider(nunki_atls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(MisBound {
            presented: AttestingKey::generate().unwrap(),
            bound_to: other.spki_der(),
        }));
    let (addr, _h) = serve_once(config).await;
    let cfg = AttestedClientConfig::new(
        Some(verifier(rv(), HostDataRule::Any)),
        ClientIdentity::None,
    )
    .unwrap();
    assert!(ping(&cfg, &addr).await.is_err());
    assert!(matches!(client_err(&cfg), AtlsError::Binding { .. }));
}

async fn mutual(
    identity: ClientIdentity,
    rule: HostDataRule,
) -> (Result<(), std::io::Error>, PeerSlot) {
    let r = Arc::new(AttestingCertResolver::new(issuer(POLICY), system_clock()).unwrap());
    let (config, slot) = mutual_server_config(r, verifier(rv(), rule)).unwrap();
    let (addr, h) = serve_once(config).await;
    let cfg = AttestedClientConfig::new(None, identity).unwrap();
    let r = ping(&cfg, &addr).await;
    let _ = h.await;
    (r, slot)
}

#[tokio::test]
async fn mutual_atls_verifies_the_client() {
    let pod = HostData([0x33; 32]);
    let key = Arc::new(AttestingKey::generate().unwrap());
    let (r, slot) = mutual(
        ClientIdentity::Attested {
            key: key.clone(),
            issuer: issuer(pod),
        },
        HostDataRule::Any,
    )
    .await;
    r.unwrap();
    let peer = slot.verified().unwrap();
    assert_eq!(peer.host_data(), pod);
    assert_eq!(peer.spki, key.spki_der());
}

#[tokio::test]
async fn mutual_atls_refuses_clients_without_valid_evidence() {
    // No certificate at all.
    let (r, slot) = mutual(ClientIdentity::None, HostDataRule::Any).await;
    assert!(r.is_err());
    assert!(slot.get().is_none());
    // A certificate without evidence.
    let key = Arc::new(AttestingKey::generate().unwrap());
    let (r, slot) = mutual(ClientIdentity::Key(key.clone()), HostDataRule::Any).await;
    assert!(r.is_err());
    assert!(matches!(slot.get(), Some(Err(AtlsError::Cert(_)))));
    // Evidence from an untrusted (other simulated) root.
    let foreign: Arc<dyn Issuer> = Arc::new(SimIssuer::new(other_sim(), POLICY));
    let (r, slot) = mutual(
        ClientIdentity::Attested {
            key: key.clone(),
            issuer: foreign,
        },
        HostDataRule::Any,
    )
    .await;
    assert!(r.is_err());
    assert!(matches!(slot.get(), Some(Err(AtlsError::Evidence(_)))));
    // HOST_DATA outside the allowed set.
    let (r, slot) = mutual(
        ClientIdentity::Attested {
            key,
            issuer: issuer(HostData([0x44; 32])),
        },
        HostDataRule::OneOf(vec![POLICY]),
    )
    .await;
    assert!(r.is_err());
    assert!(matches!(slot.get(), Some(Err(AtlsError::HostData { .. }))));
}

#[tokio::test]
async fn user_api_sees_the_optional_client_key() {
    let key = Arc::new(AttestingKey::generate().unwrap());
    let (addr, h) = serve_once(server(POLICY)).await;
    let cfg = AttestedClientConfig::new(
        Some(verifier(rv(), HostDataRule::Any)),
        ClientIdentity::Key(key.clone()),
    )
    .unwrap();
    ping(&cfg, &addr).await.unwrap();
    let certs = h.await.unwrap().unwrap().unwrap();
    let peer =
        nunki_atls::cert::parse_peer(&rustls::pki_types::CertificateDer::from(certs[0].clone()))
            .unwrap();
    assert_eq!(peer.spki, key.spki_der());
}

#[test]
fn empty_reference_values_fail_closed() {
    assert!(ReferenceVerifier::new(&[], &[], HostDataRule::Any, system_clock()).is_err());
    assert!(
        ReferenceVerifier::new(&[], &[rv()], HostDataRule::OneOf(vec![]), system_clock()).is_err()
    );
}

#[tokio::test]
async fn capture_mode_verifies_after_the_handshake() {
    let (addr, _h) = serve_once(server(POLICY)).await;
    let cfg = AttestedClientConfig::with_mode(
        nunki_atls::ServerVerification::Capture,
        ClientIdentity::None,
    )
    .unwrap();
    ping(&cfg, &addr).await.unwrap();
    assert!(
        cfg.slot.get().is_none(),
        "nothing is verified before verify_captured"
    );
    let ok = cfg
        .verify_captured(&verifier(rv(), HostDataRule::OneOf(vec![POLICY])))
        .unwrap();
    assert_eq!(ok.host_data(), POLICY);
    let err = cfg
        .verify_captured(&verifier(other_sim().reference_values(), HostDataRule::Any))
        .unwrap_err();
    assert!(matches!(err, AtlsError::Evidence(_)));
}

/// A resumed TLS session skips the client's certificate, and with it the evidence: neither
/// server configuration may issue tickets or keep sessions to resume.
#[test]
fn no_server_configuration_allows_resumption() {
    let r = Arc::new(AttestingCertResolver::new(issuer(POLICY), system_clock()).unwrap());
    let (mutual, _) = mutual_server_config(r.clone(), verifier(rv(), HostDataRule::Any)).unwrap();
    let user = user_server_config(r).unwrap();
    for (name, c) in [("mutual", &mutual), ("user", &user)] {
        assert_eq!(c.send_tls13_tickets, 0, "{name}: tickets");
        assert!(!c.ticketer.enabled(), "{name}: ticketer");
        assert!(!c.session_storage.can_cache(), "{name}: session cache");
    }
}

/// The gRPC client keeps its last handshake flight for its first call; a client that connects
/// and never calls must still let the server finish the handshake, within the hold's limit
/// (not after the server's handshake timeout, and not never).
#[tokio::test]
async fn a_client_that_never_calls_completes_the_handshake() {
    let (addr, listener, acceptor) = listen(server(POLICY)).await;
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let started = std::time::Instant::now();
        let tls = acceptor.accept(tcp).await.map_err(|e| e.to_string());
        (tls.map(|_| ()), started.elapsed())
    });
    let channel = nunki_atls::grpc::connect(&nunki_atls::grpc::Target::new(
        addr,
        nunki_atls::ServerVerification::None,
        ClientIdentity::None,
    ))
    .await
    .unwrap();
    let (tls, took) = tokio::time::timeout(std::time::Duration::from_secs(5), accepted)
        .await
        .expect("the server's handshake completes without a call")
        .unwrap();
    tls.unwrap();
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    drop(channel);
}

/// A gRPC client that refuses the server's evidence tells the server so with an alert (its
/// last handshake bytes are kept below TLS; a refusal must still send them).
#[tokio::test]
async fn a_refused_server_hears_the_alert() {
    let (addr, listener, acceptor) = listen(server(POLICY)).await;
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match acceptor.accept(tcp).await {
            Ok(mut tls) => {
                // TLS 1.3: the server may finish first; the alert then ends the first read.
                let mut b = [0u8; 1];
                tls.read(&mut b)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    });
    let wrong = verifier(rv(), HostDataRule::OneOf(vec![HostData([0x77; 32])]));
    let r = nunki_atls::grpc::connect(&nunki_atls::grpc::Target::new(
        addr,
        nunki_atls::ServerVerification::Verify(wrong),
        ClientIdentity::None,
    ))
    .await;
    assert!(r.is_err(), "the client refuses the server");
    let server_saw = accepted.await.unwrap().unwrap_err();
    assert!(server_saw.contains("alert"), "{server_saw}");
}

/// A server whose certificate (with valid evidence) is bound to one key while it signs the
/// handshake with another: it does not hold the attested key.
#[derive(Debug)]
struct SignsWithAnotherKey {
    inner: Arc<AttestingCertResolver>,
    key: Arc<dyn rustls::sign::SigningKey>,
}

impl ResolvesServerCert for SignsWithAnotherKey {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let attested = self.inner.resolve(hello)?;
        Some(Arc::new(CertifiedKey::new(
            attested.cert.clone(),
            self.key.clone(),
        )))
    }
}

fn server_without_the_attested_key() -> ServerConfig {
    let other = AttestingKey::generate()
        .unwrap()
        .certify(None, None, SystemTime::now())
        .unwrap();
    let inner = Arc::new(AttestingCertResolver::new(issuer(POLICY), system_clock()).unwrap());
    ServerConfig::builder_with_provider(nunki_atls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SignsWithAnotherKey {
            inner,
            key: other.key.clone(),
        }))
}

/// The rustls error inside an I/O error from a handshake.
fn rustls_error(e: &std::io::Error) -> Option<rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

#[tokio::test]
async fn the_handshake_signature_is_checked_unless_the_server_is_trusted_for_nothing() {
    let bad_signature = |e: &std::io::Error| {
        matches!(
            rustls_error(e),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature
            ))
        )
    };
    // Verified during the handshake: the evidence is fine, the CertificateVerify is not, and
    // the verified peer is never published.
    let (addr, _h) = serve_once(server_without_the_attested_key()).await;
    let cfg = AttestedClientConfig::new(
        Some(verifier(rv(), HostDataRule::Any)),
        ClientIdentity::None,
    )
    .unwrap();
    let err = ping(&cfg, &addr).await.unwrap_err();
    assert!(bad_signature(&err), "{err}");
    assert!(cfg.slot.get().is_none(), "{:?}", cfg.slot.get());
    // Captured for later verification: refused all the same, and nothing is captured.
    let (addr, _h) = serve_once(server_without_the_attested_key()).await;
    let cfg = AttestedClientConfig::with_mode(
        nunki_atls::ServerVerification::Capture,
        ClientIdentity::None,
    )
    .unwrap();
    let err = ping(&cfg, &addr).await.unwrap_err();
    assert!(bad_signature(&err), "{err}");
    let err = cfg
        .verify_captured(&verifier(rv(), HostDataRule::Any))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no server certificate was captured"),
        "{err}"
    );
    // A client that attests nothing about the server (the Initializer) does not check the
    // signature of a key it does not trust anyway: the handshake completes.
    let (addr, _h) = serve_once(server_without_the_attested_key()).await;
    let cfg = AttestedClientConfig::new(None, ClientIdentity::None).unwrap();
    ping(&cfg, &addr).await.unwrap();
}
