//! The history signing key: ECDSA P-384/SHA-384 signatures over the Coordinator's latest
//! transition (and the head of its audit log), made with the key the seed derives
//! ([`crate::SeedEngine::history_signing_key`]).
//!
//! What is signed is domain-separated so a signature of one kind can never be replayed as
//! another:
//!
//! ```text
//!   latest transition:  "nunki/history/latest-transition/v1\0" ‖ transition hash (32 bytes)
//!   audit log head:     "nunki/history/audit-head/v1\0"        ‖ record hash (32 bytes)
//! ```
//!
//! Signatures are ASN.1 DER (`ECDSA-Sig-Value`); the public key is a SubjectPublicKeyInfo DER,
//! which `nunki verify` receives from the attested Coordinator and writes as
//! `verify/history-key.pem`.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};

/// Prefix of the signed message for a latest transition.
pub const LATEST_TRANSITION_CONTEXT: &[u8] = b"nunki/history/latest-transition/v1\0";
/// Prefix of the signed message for an audit log head.
pub const AUDIT_HEAD_CONTEXT: &[u8] = b"nunki/history/audit-head/v1\0";

/// Errors of history signing and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryKeyError {
    /// The private key is not a P-384 PKCS#8 key.
    #[error("the history signing key is not a P-384 PKCS#8 key: {0}")]
    InvalidPrivateKey(String),
    /// The public key is not a P-384 SubjectPublicKeyInfo.
    #[error("the history public key is not a P-384 SubjectPublicKeyInfo: {0}")]
    InvalidPublicKey(String),
    /// aws-lc could not sign.
    #[error("signing with the history key failed")]
    Sign,
    /// The signature is missing.
    #[error("the {what} carries no signature (written by a Coordinator without its history key?)")]
    Unsigned {
        /// What was checked.
        what: &'static str,
    },
    /// The signature does not verify.
    #[error(
        "the signature of the {what} does not verify with the history key: the record was \
         altered, or the key (seed and salt) belongs to another deployment"
    )]
    BadSignature {
        /// What was checked.
        what: &'static str,
    },
}

/// What a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// The latest transition hash.
    LatestTransition,
    /// The hash of the newest audit record.
    AuditHead,
}

impl Signed {
    fn context(self) -> &'static [u8] {
        match self {
            Signed::LatestTransition => LATEST_TRANSITION_CONTEXT,
            Signed::AuditHead => AUDIT_HEAD_CONTEXT,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Signed::LatestTransition => "latest transition",
            Signed::AuditHead => "audit log head",
        }
    }

    fn message(self, hash: &[u8; 32]) -> Vec<u8> {
        let ctx = self.context();
        let mut m = Vec::with_capacity(ctx.len() + hash.len());
        m.extend_from_slice(ctx);
        m.extend_from_slice(hash);
        m
    }
}

/// The history signing key pair.
pub struct HistoryKey {
    key: EcdsaKeyPair,
    public: Vec<u8>,
}

impl std::fmt::Debug for HistoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryKey")
            .field("public", &hex::encode(&self.public))
            .finish_non_exhaustive()
    }
}

impl HistoryKey {
    /// Loads the key from PKCS#8 DER (as [`crate::SeedEngine::history_signing_key`] returns it).
    ///
    /// # Errors
    /// [`HistoryKeyError::InvalidPrivateKey`].
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, HistoryKeyError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, der)
            .map_err(|e| HistoryKeyError::InvalidPrivateKey(e.to_string()))?;
        let public = key
            .public_key()
            .as_der()
            .map_err(|e| HistoryKeyError::InvalidPrivateKey(e.to_string()))?
            .as_ref()
            .to_vec();
        Ok(Self { key, public })
    }

    /// SubjectPublicKeyInfo DER of the public key.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public
    }

    /// Signs `hash` as `what`.
    ///
    /// # Errors
    /// [`HistoryKeyError::Sign`].
    pub fn sign(&self, what: Signed, hash: &[u8; 32]) -> Result<Vec<u8>, HistoryKeyError> {
        let sig = self
            .key
            .sign(&SystemRandom::new(), &what.message(hash))
            .map_err(|_| HistoryKeyError::Sign)?;
        Ok(sig.as_ref().to_vec())
    }

    /// Verifies a signature with this key's public half.
    ///
    /// # Errors
    /// As [`verify_history_signature`].
    pub fn verify(
        &self,
        what: Signed,
        hash: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), HistoryKeyError> {
        verify_history_signature(&self.public, what, hash, signature)
    }
}

/// Verifies `signature` over `hash` (as `what`) with the history public key `spki_der`.
///
/// # Errors
/// [`HistoryKeyError::Unsigned`] for an empty signature, [`HistoryKeyError::InvalidPublicKey`]
/// for a key that is not P-384, [`HistoryKeyError::BadSignature`] otherwise.
pub fn verify_history_signature(
    spki_der: &[u8],
    what: Signed,
    hash: &[u8; 32],
    signature: &[u8],
) -> Result<(), HistoryKeyError> {
    if signature.is_empty() {
        return Err(HistoryKeyError::Unsigned { what: what.what() });
    }
    let raw = p384_point(spki_der)?;
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, raw)
        .verify(&what.message(hash), signature)
        .map_err(|_| HistoryKeyError::BadSignature { what: what.what() })
}

/// The uncompressed point of a P-384 SubjectPublicKeyInfo (aws-lc's verifier takes the point).
fn p384_point(spki_der: &[u8]) -> Result<Vec<u8>, HistoryKeyError> {
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::SubjectPublicKeyInfo;
    const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    const SECP384R1: &str = "1.3.132.0.34";
    let bad = |m: &str| HistoryKeyError::InvalidPublicKey(m.to_string());
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| HistoryKeyError::InvalidPublicKey(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the SubjectPublicKeyInfo"));
    }
    if spki.algorithm.algorithm.to_id_string() != EC_PUBLIC_KEY {
        return Err(bad("not an EC key"));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    if curve.as_deref() != Some(SECP384R1) {
        return Err(bad("not on curve P-384"));
    }
    let point = spki.subject_public_key.data.to_vec();
    if point.len() != 97 || point.first() != Some(&4) {
        return Err(bad("not an uncompressed P-384 point"));
    }
    Ok(point)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Salt, Seed, SeedEngine};

    fn key(seed_byte: u8) -> HistoryKey {
        let seed = Seed::from_bytes(&[seed_byte; 64]).unwrap();
        let salt = Salt::from_bytes(&[1; 32]).unwrap();
        let der = SeedEngine::new(&seed, &salt).history_signing_key().unwrap();
        HistoryKey::from_pkcs8(&der).unwrap()
    }

    #[test]
    fn sign_and_verify() {
        let k = key(7);
        let h = [9u8; 32];
        let sig = k.sign(Signed::LatestTransition, &h).unwrap();
        verify_history_signature(k.public_key_der(), Signed::LatestTransition, &h, &sig).unwrap();
        // Same seed, same public key (deterministic derivation).
        assert_eq!(key(7).public_key_der(), k.public_key_der());
    }

    #[test]
    fn refuses_other_hash_kind_key_and_empty() {
        let k = key(7);
        let h = [9u8; 32];
        let sig = k.sign(Signed::LatestTransition, &h).unwrap();
        let mut other = h;
        other[31] ^= 1;
        assert!(matches!(
            k.verify(Signed::LatestTransition, &other, &sig),
            Err(HistoryKeyError::BadSignature { .. })
        ));
        // Domain separation: a transition signature is not an audit-head signature.
        assert!(matches!(
            k.verify(Signed::AuditHead, &h, &sig),
            Err(HistoryKeyError::BadSignature { .. })
        ));
        assert!(matches!(
            key(8).verify(Signed::LatestTransition, &h, &sig),
            Err(HistoryKeyError::BadSignature { .. })
        ));
        assert!(matches!(
            k.verify(Signed::LatestTransition, &h, &[]),
            Err(HistoryKeyError::Unsigned { .. })
        ));
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.verify(Signed::LatestTransition, &h, &bad).is_err());
        // Garbage public keys are errors, not panics.
        for junk in [&[][..], &[0x30, 0x00], &k.public_key_der()[..50]] {
            assert!(matches!(
                verify_history_signature(junk, Signed::LatestTransition, &h, &sig),
                Err(HistoryKeyError::InvalidPublicKey(_))
            ));
        }
    }
}
