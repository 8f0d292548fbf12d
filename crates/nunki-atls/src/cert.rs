//! Attested certificates: a short-lived self-signed certificate for a fresh key whose extension
//! carries evidence bound to that key and a nonce.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use nunki_manifest::ReportData;
use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::SignatureScheme;
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
    key: Key,
    /// SubjectPublicKeyInfo DER, computed once: every certificate and REPORT_DATA needs it.
    spki: Vec<u8>,
    signing: Arc<dyn rustls::sign::SigningKey>,
}

/// The two ways to hold the key: a fresh P-256 key kept as the crypto library's own key
/// object (generated once, never serialised and parsed back), or a loaded PKCS#8 key of any
/// algorithm rcgen and rustls support.
#[derive(Debug)]
enum Key {
    P256(Arc<P256Key>),
    Loaded(KeyPair),
}

impl AttestingKey {
    /// A fresh P-256 key.
    ///
    /// One key generation; the same key object signs the self-signed certificate and the TLS
    /// handshake. (Generating through rcgen and loading into rustls cost two PKCS#8 round
    /// trips, each re-deriving the public key to check it, and a failed RSA parse: about
    /// 3 % of the CPU time of an issuance under load.)
    pub fn generate() -> Result<Self, CertError> {
        let key = Arc::new(P256Key::generate()?);
        let spki = rcgen::PublicKeyData::subject_public_key_info(key.as_ref());
        Ok(Self {
            signing: Arc::new(P256Tls(key.clone())),
            key: Key::P256(key),
            spki,
        })
    }

    /// Uses an existing key (PKCS#8 DER): for example a workload owner key or an Initializer's key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CertError> {
        let key =
            KeyPair::try_from(der).map_err(|e| CertError::Build(format!("private key: {e}")))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = crate::provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| CertError::Build(format!("private key: {e}")))?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        Ok(Self {
            key: Key::Loaded(key),
            spki,
            signing,
        })
    }

    /// SubjectPublicKeyInfo DER of the key.
    pub fn spki_der(&self) -> Vec<u8> {
        self.spki.clone()
    }

    /// PKCS#8 DER of the private key (for the Initializer to write `key.pem`).
    pub fn pkcs8_der(&self) -> Result<Vec<u8>, CertError> {
        match &self.key {
            Key::P256(k) => k
                .pair
                .to_pkcs8v1()
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| CertError::Build("cannot serialise the P-256 key as PKCS#8".into())),
            Key::Loaded(k) => Ok(k.serialize_der()),
        }
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
                let rd = report_data(&self.spki, nonce);
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
        let cert = match &self.key {
            Key::P256(k) => params.self_signed(k.as_ref()),
            Key::Loaded(k) => params.self_signed(k),
        }
        .map_err(|e| CertError::Build(e.to_string()))?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            self.signing.clone(),
        )))
    }
}

/// An ECDSA P-256 key that signs both X.509 (through rcgen) and TLS 1.3 CertificateVerify
/// (through rustls): both take the ASN.1 (DER) signature encoding with SHA-256.
struct P256Key {
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for P256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key pair's own Debug prints only the public key; keep it that way explicitly.
        f.debug_struct("P256Key")
            .field("public_key", &self.pair.public_key())
            .finish()
    }
}

impl P256Key {
    fn generate() -> Result<Self, CertError> {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|_| CertError::Build("cannot generate a P-256 key".into()))?;
        Ok(Self { pair })
    }

    fn sign_der(&self, msg: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        // aws-lc-rs ignores the random source and uses its own.
        let sig = self.pair.sign(&aws_lc_rs::rand::SystemRandom::new(), msg)?;
        Ok(sig.as_ref().to_vec())
    }
}

impl rcgen::PublicKeyData for P256Key {
    fn der_bytes(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for P256Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_der(msg)
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

/// The rustls face of a [`P256Key`]: chooses ECDSA P-256 with SHA-256 and signs with it.
#[derive(Debug, Clone)]
struct P256Tls(Arc<P256Key>);

impl rustls::sign::SigningKey for P256Tls {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(self.clone()) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ECDSA
    }

    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        Some(rcgen::PublicKeyData::subject_public_key_info(self.0.as_ref()).into())
    }
}

impl rustls::sign::Signer for P256Tls {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.0
            .sign_der(message)
            .map_err(|_| rustls::Error::General("ECDSA P-256 signing failed".into()))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

    /// The uncompressed point inside a P-256 SPKI.
    fn point(spki: &[u8]) -> Vec<u8> {
        let (_, info) =
            x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).expect("SPKI parses");
        info.subject_public_key.data.to_vec()
    }

    #[test]
    fn a_generated_key_signs_its_certificate_and_the_handshake_with_one_key() {
        let key = AttestingKey::generate().unwrap();
        let pk = point(&key.spki_der());
        assert_eq!(pk.len(), 65, "uncompressed P-256 point");

        // The self-signed certificate names this key and its signature verifies with it.
        let ck = key.certify(None, None, SystemTime::now()).unwrap();
        let (_, cert) = X509Certificate::from_der(ck.cert[0].as_ref()).unwrap();
        assert_eq!(cert.public_key().raw, key.spki_der().as_slice());
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &pk)
            .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
            .expect("certificate self-signature verifies");

        // The TLS signer signs with the same key; a changed message does not verify.
        let signer = ck
            .key
            .choose_scheme(&[
                SignatureScheme::RSA_PSS_SHA256,
                SignatureScheme::ECDSA_NISTP256_SHA256,
            ])
            .expect("P-256 offered");
        assert_eq!(signer.scheme(), SignatureScheme::ECDSA_NISTP256_SHA256);
        let sig = signer.sign(b"transcript").unwrap();
        let vk = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &pk);
        vk.verify(b"transcript", &sig).unwrap();
        assert!(vk.verify(b"transcripT", &sig).is_err());

        // rustls can check that certificate and key belong together.
        assert!(ck.keys_match().is_ok());

        // Nothing else is offered: no signer.
        assert!(
            ck.key
                .choose_scheme(&[SignatureScheme::ECDSA_NISTP384_SHA384])
                .is_none()
        );
    }

    #[test]
    fn a_generated_key_round_trips_through_pkcs8() {
        let key = AttestingKey::generate().unwrap();
        let loaded = AttestingKey::from_pkcs8(&key.pkcs8_der().unwrap()).unwrap();
        assert_eq!(loaded.spki_der(), key.spki_der());
        let other = AttestingKey::generate().unwrap();
        assert_ne!(other.spki_der(), key.spki_der());
    }
}
