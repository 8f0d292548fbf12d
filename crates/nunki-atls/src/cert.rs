//! Attested certificates: a short-lived self-signed certificate for a fresh key whose extension
//! carries evidence bound to that key and a nonce.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use nunki_manifest::ReportData;
use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::evidence::EvidenceDoc;
use crate::issuer::Issuer;
use crate::oid;

/// Problems building or reading an attested certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Key or certificate generation failed.
    #[error("attested certificate: {0}")]
    Build(String),
    /// The peer's certificate is malformed.
    #[error("peer certificate: {0}")]
    Parse(String),
    /// The peer's certificate has no evidence extension.
    #[error(
        "peer certificate carries no attestation evidence (extension {}); is this a plain TLS server?",
        oid::EVIDENCE_STR
    )]
    NoEvidence,
}

/// REPORT_DATA binding a public key and a nonce: `SHA-512(SPKI DER || nonce)`.
pub fn report_data(spki_der: &[u8], nonce: &[u8]) -> ReportData {
    let mut ctx = digest::Context::new(&digest::SHA512);
    ctx.update(spki_der);
    ctx.update(nonce);
    let d = ctx.finish();
    let mut out = [0u8; 64];
    out.copy_from_slice(d.as_ref());
    ReportData(out)
}

/// A key pair that answers aTLS challenges.
#[derive(Debug)]
pub struct AttestingKey {
    key: KeyPair,
    signing: Arc<dyn rustls::sign::SigningKey>,
}

impl AttestingKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CertError::Build(e.to_string()))?;
        Self::from_key(key)
    }

    /// Uses an existing key (PKCS#8 DER): for example a workload owner key or an Initializer's key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CertError> {
        let key =
            KeyPair::try_from(der).map_err(|e| CertError::Build(format!("private key: {e}")))?;
        Self::from_key(key)
    }

    fn from_key(key: KeyPair) -> Result<Self, CertError> {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = crate::provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| CertError::Build(format!("private key: {e}")))?;
        Ok(Self { key, signing })
    }

    /// SubjectPublicKeyInfo DER of the key.
    pub fn spki_der(&self) -> Vec<u8> {
        use rcgen::PublicKeyData;
        self.key.subject_public_key_info()
    }

    /// PKCS#8 DER of the private key (for the Initializer to write `key.pem`).
    pub fn pkcs8_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    /// A self-signed certificate for this key, with evidence for `nonce` when `issuer` is given.
    pub fn certify(
        &self,
        issuer: Option<&dyn Issuer>,
        nonce: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<Arc<CertifiedKey>, CertError> {
        let doc = match (issuer, nonce) {
            (Some(issuer), Some(nonce)) => {
                let rd = report_data(&self.spki_der(), nonce);
                Some(
                    issuer
                        .issue(&rd)
                        .map_err(|e| CertError::Build(e.to_string()))?,
                )
            }
            _ => None,
        };
        self.certify_with_evidence(doc.as_ref(), now)
    }

    /// A self-signed certificate for this key carrying exactly `evidence` (no binding is
    /// computed here: tests use it to build replayed or mis-bound certificates).
    pub fn certify_with_evidence(
        &self,
        evidence: Option<&EvidenceDoc>,
        now: SystemTime,
    ) -> Result<Arc<CertifiedKey>, CertError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "nunki aTLS");
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(2 * 3600)).into();
        if let Some(doc) = evidence {
            let enc = doc.encode().map_err(|e| CertError::Build(e.to_string()))?;
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(oid::EVIDENCE, enc));
        }
        let cert = params
            .self_signed(&self.key)
            .map_err(|e| CertError::Build(e.to_string()))?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            self.signing.clone(),
        )))
    }
}

/// What the verifier needs from a peer certificate.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// The evidence extension, if any.
    pub evidence: Option<EvidenceDoc>,
    /// notBefore / notAfter (Unix seconds).
    pub validity: (i64, i64),
}

/// Parses a peer's end-entity certificate.
pub fn parse_peer(cert: &CertificateDer<'_>) -> Result<PeerCert, CertError> {
    let (rest, x) =
        X509Certificate::from_der(cert.as_ref()).map_err(|e| CertError::Parse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::Parse("trailing bytes".into()));
    }
    let mut evidence = None;
    for ext in x.extensions() {
        if ext.oid.to_id_string() == oid::EVIDENCE_STR {
            if evidence.is_some() {
                return Err(CertError::Parse("evidence extension appears twice".into()));
            }
            evidence =
                Some(EvidenceDoc::decode(ext.value).map_err(|e| CertError::Parse(e.to_string()))?);
        }
    }
    Ok(PeerCert {
        spki: x.public_key().raw.to_vec(),
        evidence,
        validity: (
            x.validity().not_before.timestamp(),
            x.validity().not_after.timestamp(),
        ),
    })
}
