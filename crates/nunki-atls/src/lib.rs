//! Attested TLS (aTLS) on rustls.
//!
//! The side that wants evidence sends a fresh 32-byte nonce: a client in its ALPN list
//! (`atls:v1:nonce:<hex>` next to `h2`), a server in the distinguished name of its
//! CertificateRequest. The other side answers with a short-lived self-signed certificate whose
//! extension ([`oid::EVIDENCE`]) carries its evidence, with
//! `REPORT_DATA = SHA-512(SubjectPublicKeyInfo DER || nonce)`. The verifier checks the evidence
//! against a set of reference values (any entry may match) and hands the verified report to the
//! application. TLS's own CertificateVerify proves possession of the key the evidence binds.

pub mod cert;
pub mod client;
pub mod evidence;
pub mod grpc;
pub mod issuer;
pub mod nonce;
pub mod oid;
pub mod server;
pub mod verify;

pub use client::{AttestedClientConfig, ClientIdentity, ServerVerification};
pub use evidence::EvidenceDoc;
pub use issuer::{Issuer, SimIssuer};
pub use server::{AttestingCertResolver, mutual_server_config, user_server_config};
pub use verify::{AtlsError, Clock, HostDataRule, PeerSlot, ReferenceVerifier, VerifiedPeer};

/// The ALPN protocol gRPC runs on.
pub const ALPN_H2: &[u8] = b"h2";

/// Installs aws-lc-rs as the process-wide rustls provider (idempotent).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
