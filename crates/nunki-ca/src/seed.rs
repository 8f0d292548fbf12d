//! The seed engine: one secret seed and salt from which the Coordinator derives every key and
//! secret that must survive a restart (via recovery with seed shares).
//!
//! ```text
//!  PRK = HKDF-Extract(salt = Salt (32 bytes), IKM = Seed (64 bytes))      [HKDF-SHA256]
//!    ├── root CA key          OKM = HKDF-Expand(PRK, ROOT_CA_KEY_LABEL         ‖ u32be(counter), 48)
//!    ├── history signing key  OKM = HKDF-Expand(PRK, HISTORY_SIGNING_KEY_LABEL ‖ u32be(counter), 48)
//!    └── workload secret(id)  OKM = HKDF-Expand(PRK, WORKLOAD_SECRET_LABEL     ‖ u32be(len(id)) ‖ id, 64)
//! ```
//!
//! The two keys are P-384 private scalars found by rejection sampling (see
//! [`SeedEngine::root_ca_key`]); the same seed and salt always give the same keys, so the root CA
//! keeps its subject and public key across recovery, and the history signing key can check the
//! stored history after a restart.
//!
//! The **mesh CA key is not derived**: it stays random per manifest (see
//! [`crate::generate_p384_pkcs8`]), so a recovered Coordinator has a new mesh CA but the same root.
//!
//! All labels are distinct and none is a prefix of another, so the `info` inputs of the three
//! derivations can never coincide, whatever the counter or the workload ID. Changing a label
//! changes every derived key: the labels carry a version (`v1`) for that reason, and a
//! known-answer test pins the derived bytes.
//!
//! Secrets are held in [`Zeroizing`] buffers and never printed: [`Seed`], [`Salt`] and
//! [`SeedEngine`] implement `Debug` as `[redacted]`.

use std::fmt;

use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Prk, Salt as HkdfSalt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair};
use zeroize::Zeroizing;

/// Length of the seed in bytes.
pub const SEED_LEN: usize = 64;
/// Length of the salt in bytes.
pub const SALT_LEN: usize = 32;
/// Length of a workload secret in bytes.
pub const WORKLOAD_SECRET_LEN: usize = 64;

/// HKDF `info` prefix for the root CA key (followed by a big-endian `u32` counter).
pub const ROOT_CA_KEY_LABEL: &[u8] = b"nunki/seed/v1/root-ca-key";
/// HKDF `info` prefix for the history signing key (followed by a big-endian `u32` counter).
pub const HISTORY_SIGNING_KEY_LABEL: &[u8] = b"nunki/seed/v1/history-signing-key";
/// HKDF `info` prefix for workload secrets (followed by the big-endian `u32` length of the ID and
/// the ID's UTF-8 bytes).
pub const WORKLOAD_SECRET_LABEL: &[u8] = b"nunki/seed/v1/workload-secret";
/// HKDF label of the key that wraps the mesh CA key in the shared store (so that every
/// Coordinator replica serves the same mesh CA).
pub const MESH_CA_WRAP_KEY_LABEL: &[u8] = b"nunki/seed/v1/mesh-ca-wrap-key";

/// Length of a P-384 scalar in bytes.
const P384_SCALAR_LEN: usize = 48;

/// The order n of the P-384 group, big-endian (FIPS 186-4, D.1.2.4).
const P384_ORDER: [u8; P384_SCALAR_LEN] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// How many candidates rejection sampling tries before giving up. Each candidate is rejected
/// with probability < 2^-189, so reaching this bound means the HKDF implementation is broken.
const MAX_SCALAR_ATTEMPTS: u32 = 64;

/// DER prefix of a SEC1 (RFC 5915) `ECPrivateKey` for P-384 without the optional public key:
/// `SEQUENCE (len 62) { INTEGER 1, OCTET STRING (48 bytes) <scalar>, [0] { OID secp384r1 } }`.
const SEC1_P384_PREFIX: [u8; 7] = [0x30, 0x3e, 0x02, 0x01, 0x01, 0x04, 0x30];
/// DER suffix of the same structure: `[0] { OBJECT IDENTIFIER 1.3.132.0.34 }`.
const SEC1_P384_SUFFIX: [u8; 9] = [0xa0, 0x07, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Errors of the seed engine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeedError {
    /// The operating system's random number generator failed.
    #[error("cannot generate the {what}: the operating system's random number generator failed")]
    Random {
        /// "seed" or "salt".
        what: &'static str,
    },
    /// A seed or salt of the wrong length was given.
    #[error("invalid {what}: expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// "seed" or "salt".
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// HKDF failed to expand (cannot happen for the lengths used here).
    #[error("HKDF-SHA256 expansion failed while deriving the {what}")]
    Hkdf {
        /// What was being derived.
        what: &'static str,
    },
    /// Rejection sampling found no P-384 scalar in [1, n-1] (probability < 2^-12000).
    #[error(
        "could not derive the {what}: no HKDF output in [1, n-1] after {MAX_SCALAR_ATTEMPTS} attempts"
    )]
    NoValidScalar {
        /// What was being derived.
        what: &'static str,
    },
    /// aws-lc rejected the derived P-384 key or could not encode it as PKCS#8.
    #[error("aws-lc could not build the {what} from the derived scalar: {detail}")]
    KeyEncoding {
        /// What was being derived.
        what: &'static str,
        /// aws-lc's reason.
        detail: String,
    },
}

macro_rules! secret_bytes {
    ($name:ident, $len:expr, $what:literal, $doc:literal) => {
        #[doc = $doc]
        ///
        /// The bytes are zeroized on drop; `Debug` prints `[redacted]`.
        #[derive(Clone)]
        pub struct $name(Zeroizing<[u8; $len]>);

        impl $name {
            /// Fresh random bytes from the operating system's RNG (aws-lc `SystemRandom`).
            ///
            /// # Errors
            /// [`SeedError::Random`] if the RNG fails.
            pub fn generate() -> Result<Self, SeedError> {
                let mut bytes = Zeroizing::new([0u8; $len]);
                SystemRandom::new()
                    .fill(bytes.as_mut())
                    .map_err(|_| SeedError::Random { what: $what })?;
                Ok(Self(bytes))
            }

            /// Takes exactly the right number of bytes (e.g. decrypted from a seed share).
            ///
            /// # Errors
            /// [`SeedError::InvalidLength`] for any other length.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, SeedError> {
                let mut out = Zeroizing::new([0u8; $len]);
                if bytes.len() != $len {
                    return Err(SeedError::InvalidLength {
                        what: $what,
                        expected: $len,
                        actual: bytes.len(),
                    });
                }
                out.copy_from_slice(bytes);
                Ok(Self(out))
            }

            /// The secret bytes. Do not log them.
            #[must_use]
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_bytes!(
    Seed,
    SEED_LEN,
    "seed",
    "The 64-byte secret seed from which the root CA key, the history signing key and workload secrets are derived."
);
secret_bytes!(
    Salt,
    SALT_LEN,
    "salt",
    "The 32-byte HKDF salt used with the [`Seed`]."
);

/// Output length marker for aws-lc's HKDF expand.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Derives keys and secrets from a [`Seed`] and [`Salt`] (HKDF-SHA256, see the module docs).
pub struct SeedEngine {
    prk: Prk,
}

impl fmt::Debug for SeedEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeedEngine([redacted])")
    }
}

impl SeedEngine {
    /// HKDF-Extract with `salt` as salt and `seed` as input keying material.
    #[must_use]
    pub fn new(seed: &Seed, salt: &Salt) -> Self {
        let prk = HkdfSalt::new(HKDF_SHA256, salt.as_bytes()).extract(seed.as_bytes());
        Self { prk }
    }

    /// The root CA's P-384 private key as PKCS#8 v1 DER, for [`crate::Ca::new`].
    ///
    /// Deterministic: the same seed and salt always give the same key. The scalar is the first
    /// `HKDF-Expand(PRK, ROOT_CA_KEY_LABEL ‖ u32be(counter), 48)` for counter = 0, 1, … that lies
    /// in [1, n-1] (n the P-384 order). Rejection sampling keeps the distribution exactly
    /// uniform over [1, n-1] (no modular-reduction bias); since n > 2^384 - 2^190, a candidate is
    /// rejected with probability below 2^-189, so in practice counter 0 is always taken.
    ///
    /// # Errors
    /// [`SeedError`] if HKDF or aws-lc fails (not expected with valid inputs).
    pub fn root_ca_key(&self) -> Result<Zeroizing<Vec<u8>>, SeedError> {
        self.p384_key(ROOT_CA_KEY_LABEL, "root CA key")
    }

    /// The history signing P-384 private key as PKCS#8 v1 DER (ECDSA P-384/SHA-384 signatures of
    /// the latest transition). Derived like [`Self::root_ca_key`] with
    /// [`HISTORY_SIGNING_KEY_LABEL`].
    ///
    /// # Errors
    /// [`SeedError`] if HKDF or aws-lc fails (not expected with valid inputs).
    pub fn history_signing_key(&self) -> Result<Zeroizing<Vec<u8>>, SeedError> {
        self.p384_key(HISTORY_SIGNING_KEY_LABEL, "history signing key")
    }

    /// The 64-byte workload secret for a manifest entry's `WorkloadSecretID`:
    /// `HKDF-Expand(PRK, WORKLOAD_SECRET_LABEL ‖ u32be(len(id)) ‖ id, 64)`. The length prefix keeps
    /// different IDs from producing the same `info`.
    ///
    /// # Errors
    /// [`SeedError::Hkdf`] if the ID is longer than 4 GiB or HKDF fails (not expected).
    pub fn workload_secret(
        &self,
        id: &str,
    ) -> Result<Zeroizing<[u8; WORKLOAD_SECRET_LEN]>, SeedError> {
        let what = "workload secret";
        let id_len = u32::try_from(id.len()).map_err(|_| SeedError::Hkdf { what })?;
        let id_len = id_len.to_be_bytes();
        let mut out = Zeroizing::new([0u8; WORKLOAD_SECRET_LEN]);
        self.expand(
            &[WORKLOAD_SECRET_LABEL, &id_len, id.as_bytes()],
            out.as_mut(),
            what,
        )?;
        Ok(out)
    }

    /// The 32-byte AES-256-GCM key that wraps the mesh CA key in the store:
    /// `HKDF-Expand(PRK, MESH_CA_WRAP_KEY_LABEL, 32)`.
    ///
    /// # Errors
    /// [`SeedError::Hkdf`] if HKDF fails (not expected).
    pub fn mesh_ca_wrap_key(&self) -> Result<Zeroizing<[u8; 32]>, SeedError> {
        let mut out = Zeroizing::new([0u8; 32]);
        self.expand(&[MESH_CA_WRAP_KEY_LABEL], out.as_mut(), "mesh CA wrap key")?;
        Ok(out)
    }

    fn expand(&self, info: &[&[u8]], out: &mut [u8], what: &'static str) -> Result<(), SeedError> {
        self.prk
            .expand(info, Len(out.len()))
            .and_then(|okm| okm.fill(out))
            .map_err(|_| SeedError::Hkdf { what })
    }

    fn p384_key(&self, label: &[u8], what: &'static str) -> Result<Zeroizing<Vec<u8>>, SeedError> {
        let mut scalar = Zeroizing::new([0u8; P384_SCALAR_LEN]);
        let mut found = false;
        for counter in 0..MAX_SCALAR_ATTEMPTS {
            self.expand(&[label, &counter.to_be_bytes()], scalar.as_mut(), what)?;
            if p384_scalar_in_range(&scalar) {
                found = true;
                break;
            }
        }
        if !found {
            return Err(SeedError::NoValidScalar { what });
        }
        p384_pkcs8_from_scalar(&scalar).map_err(|detail| SeedError::KeyEncoding { what, detail })
    }
}

/// Whether a big-endian 48-byte scalar lies in [1, n-1] for the P-384 order n.
///
/// Runs in time independent of the scalar's value (full-width borrow chain for `scalar < n`,
/// OR of all bytes for `scalar != 0`), so the check does not leak key bits through timing.
#[must_use]
pub(crate) fn p384_scalar_in_range(scalar: &[u8; P384_SCALAR_LEN]) -> bool {
    // scalar - n, from the least significant byte; a final borrow means scalar < n.
    let mut borrow: u16 = 0;
    let mut any_nonzero: u8 = 0;
    for (s, n) in scalar.iter().rev().zip(P384_ORDER.iter().rev()) {
        let diff = u16::from(*s)
            .wrapping_sub(u16::from(*n))
            .wrapping_sub(borrow);
        borrow = (diff >> 8) & 1;
        any_nonzero |= *s;
    }
    borrow == 1 && any_nonzero != 0
}

/// Builds PKCS#8 v1 DER for the P-384 key with the given scalar (which must be in [1, n-1]):
/// SEC1 `ECPrivateKey` DER without the public key, which aws-lc parses (computing the public
/// point), then aws-lc's PKCS#8 export.
fn p384_pkcs8_from_scalar(scalar: &[u8; P384_SCALAR_LEN]) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut sec1 = Zeroizing::new(Vec::with_capacity(
        SEC1_P384_PREFIX.len() + P384_SCALAR_LEN + SEC1_P384_SUFFIX.len(),
    ));
    sec1.extend_from_slice(&SEC1_P384_PREFIX);
    sec1.extend_from_slice(scalar);
    sec1.extend_from_slice(&SEC1_P384_SUFFIX);
    let key = EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_ASN1_SIGNING, &sec1)
        .map_err(|e| e.to_string())?;
    let document = key
        .to_pkcs8v1()
        .map_err(|_| "PKCS#8 export failed".to_string())?;
    Ok(Zeroizing::new(document.as_ref().to_vec()))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};

    use super::*;

    fn scalar_from(bytes: &[u8]) -> [u8; P384_SCALAR_LEN] {
        bytes.try_into().unwrap()
    }

    fn n_plus(delta: i8) -> [u8; P384_SCALAR_LEN] {
        // Adds a small signed delta to n (big-endian, with carry/borrow).
        let mut out = P384_ORDER;
        let mut carry = i16::from(delta);
        for byte in out.iter_mut().rev() {
            let v = i16::from(*byte) + carry;
            *byte = v.rem_euclid(256) as u8;
            carry = v.div_euclid(256);
            if carry == 0 {
                break;
            }
        }
        out
    }

    #[test]
    fn range_check_boundaries() {
        let zero = [0u8; P384_SCALAR_LEN];
        let mut one = zero;
        one[P384_SCALAR_LEN - 1] = 1;
        let max = [0xffu8; P384_SCALAR_LEN];
        assert!(!p384_scalar_in_range(&zero), "0 is not a valid scalar");
        assert!(p384_scalar_in_range(&one), "1 is valid");
        assert!(p384_scalar_in_range(&n_plus(-1)), "n-1 is valid");
        assert!(p384_scalar_in_range(&n_plus(-2)), "n-2 is valid");
        assert!(!p384_scalar_in_range(&P384_ORDER), "n is out of range");
        assert!(!p384_scalar_in_range(&n_plus(1)), "n+1 is out of range");
        assert!(!p384_scalar_in_range(&max), "2^384-1 is out of range");
        // A value just under n in the high half but bigger in a low byte.
        let mut high_equal = P384_ORDER;
        high_equal[30] = 0xff;
        assert!(!p384_scalar_in_range(&high_equal));
        let mut high_less = P384_ORDER;
        high_less[0] = 0xfe;
        high_less[47] = 0xff;
        assert!(p384_scalar_in_range(&high_less));
    }

    #[test]
    fn boundary_scalars_build_keys_with_that_scalar() {
        let mut one = [0u8; P384_SCALAR_LEN];
        one[P384_SCALAR_LEN - 1] = 1;
        for scalar in [one, n_plus(-1)] {
            let pkcs8 = p384_pkcs8_from_scalar(&scalar).unwrap();
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &pkcs8).unwrap();
            let bin: EcPrivateKeyBin<'_> = key.private_key().as_be_bytes().unwrap();
            assert_eq!(bin.as_ref(), scalar.as_slice());
        }
    }

    #[test]
    fn aws_lc_rejects_out_of_range_scalars() {
        // Our range check is what matters, but aws-lc agreeing confirms the order constant.
        for scalar in [[0u8; P384_SCALAR_LEN], P384_ORDER, [0xff; P384_SCALAR_LEN]] {
            assert!(p384_pkcs8_from_scalar(&scalar).is_err());
        }
    }

    #[test]
    fn derived_scalar_is_first_in_range_hkdf_output() {
        let engine = SeedEngine::new(
            &Seed::from_bytes(&[7; SEED_LEN]).unwrap(),
            &Salt::from_bytes(&[9; SALT_LEN]).unwrap(),
        );
        let mut expected = [0u8; P384_SCALAR_LEN];
        engine
            .expand(
                &[ROOT_CA_KEY_LABEL, &0u32.to_be_bytes()],
                &mut expected,
                "t",
            )
            .unwrap();
        assert!(p384_scalar_in_range(&expected));
        let pkcs8 = engine.root_ca_key().unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &pkcs8).unwrap();
        let bin: EcPrivateKeyBin<'_> = key.private_key().as_be_bytes().unwrap();
        assert_eq!(bin.as_ref(), scalar_from(&expected).as_slice());
    }

    #[test]
    fn secrets_are_held_in_zeroizing_buffers() {
        // Structural check: these bindings only compile while the fields wrap `Zeroizing`.
        let seed = Seed::from_bytes(&[1; SEED_LEN]).unwrap();
        let salt = Salt::from_bytes(&[2; SALT_LEN]).unwrap();
        let _: &Zeroizing<[u8; SEED_LEN]> = &seed.0;
        let _: &Zeroizing<[u8; SALT_LEN]> = &salt.0;
        let engine = SeedEngine::new(&seed, &salt);
        let _: Zeroizing<Vec<u8>> = engine.root_ca_key().unwrap();
        let _: Zeroizing<[u8; WORKLOAD_SECRET_LEN]> = engine.workload_secret("x").unwrap();
    }

    #[test]
    fn labels_are_prefix_free() {
        let labels = [
            ROOT_CA_KEY_LABEL,
            HISTORY_SIGNING_KEY_LABEL,
            WORKLOAD_SECRET_LABEL,
        ];
        for (i, a) in labels.iter().enumerate() {
            for (j, b) in labels.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "{a:?} is a prefix of {b:?}");
                }
            }
        }
    }
}
