//! The workload's public key, as the SubjectPublicKeyInfo DER the leaf certificate will carry.

use aws_lc_rs::rsa::PublicEncryptingKey;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, ParsedPublicKey};
use rcgen::{
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, PublicKeyData,
    SignatureAlgorithm,
};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, Oid,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::CaError;

/// RSA moduli we issue for; webpki refuses anything below 2048 bits anyway.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The kind of a subject key; decides the leaf's key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubjectKeyKind {
    EcP256,
    EcP384,
    Rsa,
}

/// A validated subject public key whose re-encoding equals the DER it was parsed from.
#[derive(Debug, Clone)]
pub(crate) struct SubjectKey {
    kind: SubjectKeyKind,
    /// Contents of the subjectPublicKey BIT STRING.
    public_key: Vec<u8>,
}

impl SubjectKey {
    /// Parses and checks a DER SubjectPublicKeyInfo: EC P-256 or P-384 with an uncompressed
    /// point on the curve, or RSA with a 2048..=8192-bit modulus.
    pub(crate) fn from_spki_der(spki_der: &[u8]) -> Result<Self, CaError> {
        let malformed = |detail: String| CaError::MalformedSpki { detail };
        let (rest, spki) =
            SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!("{} trailing bytes", rest.len())));
        }
        if spki.subject_public_key.unused_bits != 0 {
            return Err(malformed("subjectPublicKey has unused bits".to_owned()));
        }
        let algorithm = &spki.algorithm.algorithm;
        let kind = if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| Oid::try_from(p).ok())
                .ok_or_else(|| malformed("EC key without a named curve".to_owned()))?;
            if curve == OID_EC_P256 {
                SubjectKeyKind::EcP256
            } else if curve == OID_NIST_EC_P384 {
                SubjectKeyKind::EcP384
            } else {
                return Err(CaError::UnsupportedKeyAlgorithm {
                    algorithm: format!("{algorithm} with curve {curve}"),
                });
            }
        } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
            SubjectKeyKind::Rsa
        } else {
            return Err(CaError::UnsupportedKeyAlgorithm {
                algorithm: algorithm.to_id_string(),
            });
        };
        let key = Self {
            kind,
            public_key: spki.subject_public_key.data.to_vec(),
        };
        key.check_key_material(spki_der)?;
        // The leaf must carry exactly the key the workload attested to, so refuse encodings
        // (absent RSA NULL parameters, say) that rcgen would silently normalise.
        if key.subject_public_key_info() != spki_der {
            return Err(malformed(
                "not the canonical DER encoding of this key".to_owned(),
            ));
        }
        Ok(key)
    }

    pub(crate) fn kind(&self) -> SubjectKeyKind {
        self.kind
    }

    fn check_key_material(&self, spki_der: &[u8]) -> Result<(), CaError> {
        let rejected = |detail: String| CaError::InvalidPublicKey { detail };
        let ec = |alg, point_len: usize| {
            // Uncompressed points only: webpki cannot verify with compressed ones.
            if self.public_key.len() != point_len || self.public_key.first() != Some(&0x04) {
                return Err(rejected(format!(
                    "EC point must be uncompressed ({point_len} bytes starting with 0x04)"
                )));
            }
            ParsedPublicKey::new(alg, spki_der)
                .map(drop)
                .map_err(|e| rejected(format!("EC point not on the curve: {e}")))
        };
        match self.kind {
            SubjectKeyKind::EcP256 => ec(&ECDSA_P256_SHA256_ASN1, 65),
            SubjectKeyKind::EcP384 => ec(&ECDSA_P384_SHA384_ASN1, 97),
            SubjectKeyKind::Rsa => {
                let key = PublicEncryptingKey::from_der(spki_der)
                    .map_err(|e| rejected(format!("RSA key: {e}")))?;
                let bits = key.key_size_bits();
                if !RSA_BITS.contains(&bits) {
                    return Err(rejected(format!(
                        "RSA modulus of {bits} bits, want 2048..=8192"
                    )));
                }
                Ok(())
            }
        }
    }
}

impl PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    /// Only the key part (algorithm OID and curve) of the rcgen algorithm matters here: it is
    /// what rcgen writes into the SubjectPublicKeyInfo.
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self.kind {
            SubjectKeyKind::EcP256 => &PKCS_ECDSA_P256_SHA256,
            SubjectKeyKind::EcP384 => &PKCS_ECDSA_P384_SHA384,
            SubjectKeyKind::Rsa => &PKCS_RSA_SHA256,
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
        ECDSA_P521_SHA512_ASN1_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair,
        KeyPair,
    };

    use super::*;

    fn ec_spki(alg: &'static EcdsaSigningAlgorithm) -> Vec<u8> {
        let key = EcdsaKeyPair::generate(alg).unwrap();
        key.public_key().as_der().unwrap().as_ref().to_vec()
    }

    fn rsa_spki(size: KeySize) -> Vec<u8> {
        let key = RsaKeyPair::generate(size).unwrap();
        key.public_key().as_der().unwrap().as_ref().to_vec()
    }

    fn expect_malformed(der: &[u8]) {
        let err = SubjectKey::from_spki_der(der).unwrap_err();
        assert!(matches!(err, CaError::MalformedSpki { .. }), "{err:?}");
    }

    #[test]
    fn accepts_p256_p384_and_rsa_and_round_trips() {
        for (der, kind) in [
            (
                ec_spki(&ECDSA_P256_SHA256_ASN1_SIGNING),
                SubjectKeyKind::EcP256,
            ),
            (
                ec_spki(&ECDSA_P384_SHA384_ASN1_SIGNING),
                SubjectKeyKind::EcP384,
            ),
            (rsa_spki(KeySize::Rsa2048), SubjectKeyKind::Rsa),
        ] {
            let key = SubjectKey::from_spki_der(&der).unwrap();
            assert_eq!(key.kind(), kind);
            assert_eq!(key.subject_public_key_info(), der);
        }
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let good = ec_spki(&ECDSA_P256_SHA256_ASN1_SIGNING);
        expect_malformed(b"");
        expect_malformed(b"\x30");
        expect_malformed(b"\x30\x00");
        expect_malformed(b"hello world");
        for len in 0..good.len() {
            expect_malformed(&good[..len]);
        }
        let mut trailing = good.clone();
        trailing.push(0);
        expect_malformed(&trailing);
        // Every single-byte corruption is an error or (rarely) another valid key, never a panic.
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                let _ = SubjectKey::from_spki_der(&bad);
            }
        }
    }

    #[test]
    fn rejects_unsupported_algorithms() {
        let p521 = ec_spki(&ECDSA_P521_SHA512_ASN1_SIGNING);
        let err = SubjectKey::from_spki_der(&p521).unwrap_err();
        assert!(
            matches!(err, CaError::UnsupportedKeyAlgorithm { .. }),
            "{err:?}"
        );

        let ed = Ed25519KeyPair::generate().unwrap();
        let ed_spki = ed.public_key().as_der().unwrap();
        let err = SubjectKey::from_spki_der(ed_spki.as_ref()).unwrap_err();
        assert!(
            matches!(err, CaError::UnsupportedKeyAlgorithm { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_point_not_on_curve() {
        let mut der = ec_spki(&ECDSA_P256_SHA256_ASN1_SIGNING);
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let err = SubjectKey::from_spki_der(&der).unwrap_err();
        assert!(matches!(err, CaError::InvalidPublicKey { .. }), "{err:?}");
    }

    #[test]
    fn rejects_compressed_point() {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let point = key.public_key().as_ref().to_vec();
        let mut compressed = vec![0x02 | (point[64] & 1)];
        compressed.extend_from_slice(&point[1..33]);
        // SEQUENCE { SEQUENCE { ecPublicKey, prime256v1 }, BIT STRING (33 bytes) }
        let mut der = vec![0x30, 0x39, 0x30, 0x13, 0x06, 0x07];
        der.extend_from_slice(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]);
        der.extend_from_slice(&[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
        der.extend_from_slice(&[0x03, 0x22, 0x00]);
        der.extend_from_slice(&compressed);
        let err = SubjectKey::from_spki_der(&der).unwrap_err();
        assert!(matches!(err, CaError::InvalidPublicKey { .. }), "{err:?}");
    }

    #[test]
    fn rejects_short_rsa() {
        // aws-lc no longer generates 1024-bit keys; a fixed 1024-bit public key will do.
        let modulus = [0xc5u8; 128];
        let rsa_pub = {
            let mut v = vec![0x30, 0x81, 0x89, 0x02, 0x81, 0x81, 0x00];
            v.extend_from_slice(&modulus);
            v.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
            v
        };
        let mut der = vec![0x30, 0x81, 0x9f, 0x30, 0x0d, 0x06, 0x09];
        der.extend_from_slice(&[
            0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ]);
        der.extend_from_slice(&[0x03, 0x81, 0x8d, 0x00]);
        der.extend_from_slice(&rsa_pub);
        let err = SubjectKey::from_spki_der(&der).unwrap_err();
        assert!(matches!(err, CaError::InvalidPublicKey { .. }), "{err:?}");
    }

    #[test]
    fn rejects_rsa_without_null_parameters() {
        let der = rsa_spki(KeySize::Rsa2048);
        // Drop the NULL (05 00) from the AlgorithmIdentifier and fix up the lengths.
        let null_at = der.windows(2).position(|w| w == [0x05, 0x00]).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x22]);
        let mut bad = der.clone();
        bad.drain(null_at..null_at + 2);
        bad[2..4].copy_from_slice(&0x0120u16.to_be_bytes());
        bad[5] -= 2; // inner AlgorithmIdentifier length
        let err = SubjectKey::from_spki_der(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                CaError::MalformedSpki { .. } | CaError::InvalidPublicKey { .. }
            ),
            "{err:?}"
        );
    }
}
