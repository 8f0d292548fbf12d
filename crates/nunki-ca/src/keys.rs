//! The two P-384 CA keys: generation and loading from PKCS#8.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair};
use rcgen::{KeyPair, PKCS_ECDSA_P384_SHA384, PublicKeyData, SignatureAlgorithm, SigningKey};
use rustls::pki_types::PrivatePkcs8KeyDer;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{CaError, CaKeyRole};

/// Generates a fresh P-384 private key as PKCS#8 v1 DER, suitable for [`crate::Ca::new`].
///
/// # Errors
/// [`CaError::KeyGeneration`] if aws-lc fails to generate or serialise the key.
pub fn generate_p384_pkcs8() -> Result<Zeroizing<Vec<u8>>, CaError> {
    // aws-lc's `Document` zeroizes itself on drop; our copy is zeroized by `Zeroizing`.
    let document =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &SystemRandom::new())
            .map_err(|_| CaError::KeyGeneration)?;
    Ok(Zeroizing::new(document.as_ref().to_vec()))
}

/// A P-384 CA signing key. Wipes rcgen's copy of the PKCS#8 bytes on drop.
pub(crate) struct CaKey(KeyPair);

impl CaKey {
    /// Loads a PKCS#8 DER P-384 key; any other key type or encoding is an error.
    pub(crate) fn from_pkcs8(pkcs8_der: &[u8], role: CaKeyRole) -> Result<Self, CaError> {
        let der = PrivatePkcs8KeyDer::from(pkcs8_der);
        KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ECDSA_P384_SHA384)
            .map(Self)
            .map_err(|e| CaError::InvalidCaKey {
                role,
                detail: e.to_string(),
            })
    }
}

impl Drop for CaKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaKey(P-384, [elided])")
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, KeyPair as _};

    use super::*;

    #[test]
    fn generated_key_loads_as_p384() {
        let pkcs8 = generate_p384_pkcs8().unwrap();
        let key = CaKey::from_pkcs8(&pkcs8, CaKeyRole::Root).unwrap();
        assert_eq!(key.algorithm(), &PKCS_ECDSA_P384_SHA384);
        let aws = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &pkcs8).unwrap();
        assert_eq!(key.der_bytes(), aws.public_key().as_ref());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            *generate_p384_pkcs8().unwrap(),
            *generate_p384_pkcs8().unwrap()
        );
    }

    #[test]
    fn p256_key_is_rejected() {
        let p256 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .unwrap();
        let err = CaKey::from_pkcs8(p256.as_ref(), CaKeyRole::Mesh).unwrap_err();
        assert!(
            matches!(
                err,
                CaError::InvalidCaKey {
                    role: CaKeyRole::Mesh,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_is_rejected() {
        for bytes in [&b""[..], b"\x30\x03\x02\x01\x00", b"not a key at all"] {
            let err = CaKey::from_pkcs8(bytes, CaKeyRole::Root).unwrap_err();
            assert!(matches!(
                err,
                CaError::InvalidCaKey {
                    role: CaKeyRole::Root,
                    ..
                }
            ));
        }
    }

    #[test]
    fn debug_does_not_leak() {
        let pkcs8 = generate_p384_pkcs8().unwrap();
        let key = CaKey::from_pkcs8(&pkcs8, CaKeyRole::Root).unwrap();
        assert_eq!(format!("{key:?}"), "CaKey(P-384, [elided])");
    }
}
