//! Server side of aTLS: answers a client's ALPN nonce with an attested certificate and, for
//! mutual aTLS, challenges the client with its own nonce in the CertificateRequest.

use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DistinguishedName, ServerConfig};

use crate::cert::{AttestingKey, parse_peer};
use crate::issuer::Issuer;
use crate::nonce::{self, NONCE_LEN};
use crate::verify::{AtlsError, Clock, PeerSlot, ReferenceVerifier, to_rustls_error};

/// Answers each ClientHello: an attested certificate for the client's nonce, or a plain
/// self-signed certificate when the client sent none (it then cannot rely on this server).
pub struct AttestingCertResolver {
    key: Arc<AttestingKey>,
    issuer: Arc<dyn Issuer>,
    clock: Clock,
    plain: Mutex<Option<Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for AttestingCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestingCertResolver")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl AttestingCertResolver {
    /// A resolver with a fresh P-256 key and `issuer` for evidence.
    pub fn new(issuer: Arc<dyn Issuer>, clock: Clock) -> Result<Self, AtlsError> {
        Ok(Self {
            key: Arc::new(AttestingKey::generate()?),
            issuer,
            clock,
            plain: Mutex::new(None),
        })
    }

    fn plain(&self) -> Option<Arc<CertifiedKey>> {
        let mut g = self.plain.lock().ok()?;
        if g.is_none() {
            *g = self.key.certify(None, None, (self.clock)()).ok();
        }
        g.clone()
    }
}

impl AttestingCertResolver {
    /// The certificate for a connection: attested for `nonce`, or the plain one without.
    /// Producing evidence may block (hardware issuers); call it off the async workers.
    pub fn certified_for(
        &self,
        nonce: Option<[u8; NONCE_LEN]>,
    ) -> Result<Arc<CertifiedKey>, AtlsError> {
        match nonce {
            Some(n) => {
                Ok(self
                    .key
                    .certify(Some(self.issuer.as_ref()), Some(&n), (self.clock)())?)
            }
            None => self
                .plain()
                .ok_or_else(|| AtlsError::Protocol("cannot build the server certificate".into())),
        }
    }
}

/// A resolver that always answers with one prepared certificate (for configurations built per
/// connection after the ClientHello was read).
#[derive(Debug)]
pub struct FixedCert(pub Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl ResolvesServerCert for AttestingCertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let nonce = client_hello.alpn().and_then(nonce::from_alpn);
        match nonce {
            Some(n) => match self
                .key
                .certify(Some(self.issuer.as_ref()), Some(&n), (self.clock)())
            {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot create attested server certificate");
                    None
                }
            },
            None => self.plain(),
        }
    }
}

fn base(
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>, AtlsError> {
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| AtlsError::Protocol(e.to_string()))
}

fn finish(mut c: ServerConfig) -> ServerConfig {
    c.alpn_protocols = vec![crate::ALPN_H2.to_vec()];
    // No resumption of any kind: a resumed session would skip the client's certificate, and
    // with it the evidence. No tickets, and no session cache (rustls's default keeps one of
    // 256 entries in every configuration, i.e. per connection here, for nothing).
    c.send_tls13_tickets = 0;
    c.session_storage = no_session_storage();
    c
}

fn no_session_storage() -> Arc<dyn rustls::server::StoresServerSessions> {
    static NONE: std::sync::OnceLock<Arc<rustls::server::NoServerSessionStorage>> =
        std::sync::OnceLock::new();
    NONE.get_or_init(|| Arc::new(rustls::server::NoServerSessionStorage {}))
        .clone()
}

/// Server configuration of the user API: the server attests itself; a client certificate is
/// requested but optional and not attested (its key identifies a workload owner).
pub fn user_server_config(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, AtlsError> {
    let provider = crate::provider();
    let c = base(provider.clone())?
        .with_client_cert_verifier(Arc::new(OptionalClientKey { provider }))
        .with_cert_resolver(resolver);
    Ok(finish(c))
}

/// Per-connection server configuration for mutual aTLS: a fresh nonce goes into the
/// CertificateRequest, the client must answer with evidence matching `verifier`. The result
/// (the verified peer) is left in the returned slot.
pub fn mutual_server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    verifier: Arc<ReferenceVerifier>,
) -> Result<(ServerConfig, PeerSlot), AtlsError> {
    let provider = crate::provider();
    let n =
        nonce::fresh().map_err(|_| AtlsError::Protocol("no randomness for the nonce".into()))?;
    let dn = nonce::to_dn(&n).map_err(|e| AtlsError::Protocol(format!("nonce DN: {e}")))?;
    let slot = PeerSlot::default();
    let v = AttestedClientVerifier {
        verifier,
        nonce: n,
        hints: vec![DistinguishedName::from(dn)],
        slot: slot.clone(),
        provider: provider.clone(),
    };
    let c = base(provider)?
        .with_client_cert_verifier(Arc::new(v))
        .with_cert_resolver(resolver);
    Ok((finish(c), slot))
}

#[derive(Debug)]
struct OptionalClientKey {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for OptionalClientKey {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Only the key matters (authorisation by SPKI digest); CertificateVerify proves possession.
        Ok(ClientCertVerified::assertion())
    }
    handshake_signature_checks!();
}

#[derive(Debug)]
struct AttestedClientVerifier {
    verifier: Arc<ReferenceVerifier>,
    nonce: [u8; NONCE_LEN],
    hints: Vec<DistinguishedName>,
    slot: PeerSlot,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AttestedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = parse_peer(end_entity)
            .map_err(AtlsError::from)
            .and_then(|peer| self.verifier.verify(&peer, &self.nonce));
        self.slot.set(result.clone());
        match result {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(e) => {
                tracing::info!(error = %e, "client attestation refused");
                Err(to_rustls_error(&e))
            }
        }
    }
    handshake_signature_checks!();
}
