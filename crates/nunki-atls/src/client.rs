//! Client side of aTLS: sends a nonce in ALPN and verifies the server's evidence; optionally
//! presents a client certificate (a plain key, or an attested one answering the server's nonce).

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureScheme};

use crate::cert::{AttestingKey, PeerCert, parse_peer};
use crate::issuer::Issuer;
use crate::nonce::{self, NONCE_LEN};
use crate::verify::{
    AtlsError, Clock, PeerSlot, ReferenceVerifier, VerifiedPeer, system_clock, to_rustls_error,
};

/// What the client presents when the server asks for a certificate.
#[derive(Debug, Clone, Default)]
pub enum ClientIdentity {
    /// No client certificate.
    #[default]
    None,
    /// A self-signed certificate for this key (e.g. a workload owner key); no evidence.
    Key(Arc<AttestingKey>),
    /// An attested certificate: evidence from `issuer`, bound to `key` and the server's nonce.
    Attested {
        /// The TLS key.
        key: Arc<AttestingKey>,
        /// The platform issuer.
        issuer: Arc<dyn Issuer>,
    },
}

/// How the client treats the server's certificate.
#[derive(Debug, Clone)]
pub enum ServerVerification {
    /// The server's evidence must match these reference values during the handshake.
    Verify(Arc<ReferenceVerifier>),
    /// Accept the handshake but keep the parsed certificate, to verify it later against
    /// reference values that arrive over the connection (`nunki verify` without a local
    /// manifest). Nothing received may be trusted before [`AttestedClientConfig::verify_captured`]
    /// succeeds.
    Capture,
    /// Do not attest the server (the Initializer: what it receives is checked by its peers).
    None,
}

/// A per-connection client configuration with its nonce and result slot.
#[derive(Debug, Clone)]
pub struct AttestedClientConfig {
    /// The rustls configuration (use it for exactly one connection).
    pub config: Arc<ClientConfig>,
    /// Where the server verification result is left.
    pub slot: PeerSlot,
    /// The nonce sent in ALPN.
    pub nonce: [u8; NONCE_LEN],
    captured: Arc<std::sync::Mutex<Option<PeerCert>>>,
}

impl AttestedClientConfig {
    /// Builds a configuration. With `verifier`, the server must present evidence that matches
    /// it; with `None` the server is not attested (only for clients that get everything they
    /// rely on from elsewhere, like the Initializer, whose certificates are checked by peers).
    pub fn new(
        verifier: Option<Arc<ReferenceVerifier>>,
        identity: ClientIdentity,
    ) -> Result<Self, AtlsError> {
        let mode = match verifier {
            Some(v) => ServerVerification::Verify(v),
            None => ServerVerification::None,
        };
        Self::with_mode(mode, identity)
    }

    /// Builds a configuration with an explicit server-verification mode.
    pub fn with_mode(
        mode: ServerVerification,
        identity: ClientIdentity,
    ) -> Result<Self, AtlsError> {
        let verifier = match &mode {
            ServerVerification::Verify(v) => Some(v.clone()),
            _ => None,
        };
        let capture = matches!(mode, ServerVerification::Capture);
        let captured = Arc::new(std::sync::Mutex::new(None));
        let nonce = nonce::fresh()
            .map_err(|_| AtlsError::Protocol("no randomness for the nonce".into()))?;
        let provider = crate::provider();
        let slot = PeerSlot::default();
        let clock = verifier.as_ref().map_or_else(system_clock, |v| {
            let v = v.clone();
            Arc::new(move || v.now()) as Clock
        });
        let server_verifier = Arc::new(AtlsServerVerifier {
            checks_server_key: !matches!(mode, ServerVerification::None),
            verifier,
            capture: capture.then(|| captured.clone()),
            nonce,
            slot: slot.clone(),
            pending: std::sync::Mutex::new(None),
            provider: provider.clone(),
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| AtlsError::Protocol(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(server_verifier);
        let mut config = match identity {
            ClientIdentity::None => builder.with_no_client_auth(),
            other => builder.with_client_cert_resolver(Arc::new(ClientCertResolver {
                identity: other,
                clock,
            })),
        };
        // A nonce asks the server for evidence; a client that will not check it saves the
        // server that work.
        config.alpn_protocols = if matches!(mode, ServerVerification::None) {
            vec![crate::ALPN_H2.to_vec()]
        } else {
            vec![nonce::encode(&nonce), crate::ALPN_H2.to_vec()]
        };
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            config: Arc::new(config),
            slot,
            nonce,
            captured,
        })
    }

    /// In [`ServerVerification::Capture`] mode: verifies the captured server certificate now,
    /// against `verifier`, and records the result in the slot.
    pub fn verify_captured(&self, verifier: &ReferenceVerifier) -> Result<VerifiedPeer, AtlsError> {
        let peer = self
            .captured
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .ok_or_else(|| AtlsError::Protocol("no server certificate was captured".into()))?;
        let r = verifier.verify(&peer, &self.nonce);
        self.slot.set(r.clone());
        r
    }

    /// Connects over TCP and completes the handshake. On a verification failure the error
    /// carries the failing check.
    pub async fn connect(
        &self,
        addr: &str,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("nunki-coordinator")
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        match connector.connect(name, tcp).await {
            Ok(s) => Ok(s),
            Err(e) => match self.slot.get() {
                Some(Err(atls)) => Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    atls,
                )),
                _ => Err(e),
            },
        }
    }
}

#[derive(Debug)]
struct AtlsServerVerifier {
    /// Whether the server's certificate counts for anything (not [`ServerVerification::None`]);
    /// only then is its CertificateVerify checked.
    checks_server_key: bool,
    verifier: Option<Arc<ReferenceVerifier>>,
    capture: Option<Arc<std::sync::Mutex<Option<PeerCert>>>>,
    nonce: [u8; NONCE_LEN],
    slot: PeerSlot,
    /// What the certificate check accepted, published (to `slot` or `capture`) only once the
    /// server has proved with its CertificateVerify that it holds the certificate's key.
    pending: std::sync::Mutex<Option<Accepted>>,
    provider: Arc<CryptoProvider>,
}

/// A server certificate accepted by [`AtlsServerVerifier::verify_server_cert`], waiting for the
/// handshake signature.
#[derive(Debug)]
enum Accepted {
    Captured(PeerCert),
    Verified(Box<VerifiedPeer>),
}

impl AtlsServerVerifier {
    fn set_pending(&self, a: Accepted) {
        if let Ok(mut g) = self.pending.lock() {
            *g = Some(a);
        }
    }

    /// Publishes what was accepted, now that the server holds the key.
    fn publish(&self) {
        let accepted = self.pending.lock().ok().and_then(|mut g| g.take());
        match accepted {
            Some(Accepted::Captured(peer)) => {
                if let Some(Ok(mut g)) = self.capture.as_ref().map(|c| c.lock()) {
                    *g = Some(peer);
                }
            }
            Some(Accepted::Verified(peer)) => self.slot.set(Ok(*peer)),
            None => {}
        }
    }
}

impl ServerCertVerifier for AtlsServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.capture.is_some() {
            let peer = parse_peer(end_entity).map_err(|e| to_rustls_error(&AtlsError::from(e)))?;
            if peer.evidence.is_none() {
                return Err(to_rustls_error(&AtlsError::Cert(
                    crate::cert::CertError::NoEvidence,
                )));
            }
            self.set_pending(Accepted::Captured(peer));
            return Ok(ServerCertVerified::assertion());
        }
        let Some(verifier) = &self.verifier else {
            return Ok(ServerCertVerified::assertion());
        };
        let result = parse_peer(end_entity)
            .map_err(AtlsError::from)
            .and_then(|peer| verifier.verify(&peer, &self.nonce));
        match result {
            Ok(peer) => {
                self.set_pending(Accepted::Verified(Box::new(peer)));
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => {
                tracing::warn!(error = %e, "server attestation failed");
                self.slot.set(Err(e.clone()));
                Err(to_rustls_error(&e))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Not reached: the configuration offers TLS 1.3 only. Refused should it ever be.
        let _ = (message, cert, dss);
        Err(rustls::Error::General(
            "aTLS speaks TLS 1.3 only; a TLS 1.2 handshake signature is refused".into(),
        ))
    }

    /// The server's CertificateVerify. Checked whenever the server's certificate counts for
    /// something (its evidence is verified now or, captured, later): it proves that the server
    /// holds the key the evidence binds, and only then is the verified or captured certificate
    /// published. With [`ServerVerification::None`] the certificate counts for nothing, and
    /// neither does a signature by its key (anyone can make a key and sign with it), so the
    /// check is skipped: it would cost a P-256 verification on every Initializer connection
    /// and add no assurance.
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.checks_server_key {
            return Ok(HandshakeSignatureValid::assertion());
        }
        let valid = rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )?;
        self.publish();
        Ok(valid)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

struct ClientCertResolver {
    identity: ClientIdentity,
    clock: Clock,
}

impl std::fmt::Debug for ClientCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertResolver")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl ResolvesClientCert for ClientCertResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let now = (self.clock)();
        let result = match &self.identity {
            ClientIdentity::None => return None,
            ClientIdentity::Key(key) => key.certify(None, None, now),
            ClientIdentity::Attested { key, issuer } => {
                let Some(n) = nonce::from_dns(root_hint_subjects) else {
                    tracing::warn!("server asked for a client certificate without an aTLS nonce");
                    return None;
                };
                key.certify(Some(issuer.as_ref()), Some(&n), now)
            }
        };
        match result {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the client certificate");
                None
            }
        }
    }

    fn has_certs(&self) -> bool {
        !matches!(self.identity, ClientIdentity::None)
    }
}
