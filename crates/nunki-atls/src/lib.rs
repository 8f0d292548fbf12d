//! Attested TLS (aTLS) on rustls.
//!
//! The side that wants evidence sends a fresh 32-byte nonce: a client in its ALPN list
//! (`atls:v1:nonce:<hex>` next to `h2`), a server in the distinguished name of its
//! CertificateRequest. The other side answers with a short-lived self-signed certificate whose
//! extension ([`oid::EVIDENCE`]) carries its evidence, with
//! `REPORT_DATA = SHA-512(SubjectPublicKeyInfo DER || nonce)`. The verifier checks the evidence
//! against a set of reference values (any entry may match) and hands the verified report to the
//! application. TLS's own CertificateVerify proves possession of the key the evidence binds.

/// The handshake-signature methods of a rustls certificate verifier, delegated to rustls with
/// the verifier's `provider` (its signature algorithms). aTLS decides whom to trust from the
/// certificate's evidence; the TLS signatures themselves are checked as in any TLS connection.
/// (The client's server verifier has its own: it skips the check when it trusts the server for
/// nothing, and publishes what it verified only after the check.)
macro_rules! handshake_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

pub mod cert;
pub mod client;
pub mod coalesce;
pub mod evidence;
pub mod grpc;
pub mod issuer;
pub mod nonce;
pub mod oid;
pub mod server;
pub mod verify;

pub use client::{AttestedClientConfig, ClientIdentity, ServerVerification};
pub use evidence::{EvidenceDoc, SnpEvidence, TdxEvidence};
pub use issuer::{
    Issuer, PlatformChoice, SimIssuer, SnpIssuer, TdxIssuer, open_issuer, open_tdx_issuer,
};
pub use server::{AttestingCertResolver, FixedCert, mutual_server_config, user_server_config};
pub use verify::{
    AtlsError, Clock, HostDataRule, PeerReport, PeerSlot, ReferenceVerifier, VerifiedPeer,
};

/// The ALPN protocol gRPC runs on.
pub const ALPN_H2: &[u8] = b"h2";

/// The rustls crypto provider of every aTLS connection: aws-lc-rs, built once per process.
///
/// AES-128-GCM with SHA-256 is preferred: its transcript hash and HKDF run on the SHA
/// extensions most CPUs have, while SHA-384 runs in software (measured in BENCHMARKS.md).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<std::sync::Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            use rustls::crypto::aws_lc_rs::cipher_suite;
            let mut p = rustls::crypto::aws_lc_rs::default_provider();
            p.cipher_suites = vec![
                cipher_suite::TLS13_AES_128_GCM_SHA256,
                cipher_suite::TLS13_AES_256_GCM_SHA384,
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ];
            std::sync::Arc::new(p)
        })
        .clone()
}
