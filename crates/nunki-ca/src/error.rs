//! Errors of the CA.

use std::fmt;
use std::time::SystemTime;

/// Which of the two CA keys an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKeyRole {
    /// The root CA key (stable across manifests).
    Root,
    /// The mesh CA key (signs workload leaves; shared by intermediate and mesh CA).
    Mesh,
}

impl fmt::Display for CaKeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Root => "root",
            Self::Mesh => "mesh",
        })
    }
}

/// Everything that can go wrong while building the CA or issuing a leaf.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A CA key is not a PKCS#8 DER encoded P-384 private key.
    #[error("{role} CA key is not a PKCS#8 DER P-384 private key: {detail}")]
    InvalidCaKey {
        /// Which key.
        role: CaKeyRole,
        /// What the key parser said.
        detail: String,
    },
    /// Generating a fresh P-384 key failed.
    #[error("generating a P-384 key failed")]
    KeyGeneration,
    /// The system random number generator failed.
    #[error("the random number generator failed while drawing a serial number")]
    Randomness,
    /// The subject public key is not well-formed DER SubjectPublicKeyInfo.
    #[error("malformed SubjectPublicKeyInfo: {detail}")]
    MalformedSpki {
        /// What is wrong with it.
        detail: String,
    },
    /// The subject public key uses an algorithm or curve we do not issue for.
    #[error("unsupported subject key algorithm {algorithm} (supported: EC P-256, EC P-384, RSA)")]
    UnsupportedKeyAlgorithm {
        /// Dotted OID of the algorithm (and curve, if any).
        algorithm: String,
    },
    /// The subject public key parses but is not an acceptable key.
    #[error("subject public key rejected: {detail}")]
    InvalidPublicKey {
        /// Why it was rejected.
        detail: String,
    },
    /// A subject alternative name cannot go into a certificate.
    #[error("invalid subject alternative name {san:?}: {reason}")]
    InvalidSan {
        /// The SAN as given.
        san: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A validity bound cannot be expressed in a certificate.
    #[error("time {time:?} gives a {bound} outside the years 1950..=9999")]
    TimeOutOfRange {
        /// The injected `now`.
        time: SystemTime,
        /// Which bound overflowed (`notBefore` or `notAfter`).
        bound: &'static str,
    },
    /// rcgen failed to encode or sign a certificate.
    #[error("signing the {certificate} certificate failed: {detail}")]
    Signing {
        /// Which certificate (`root`, `intermediate`, `mesh CA`, `leaf`).
        certificate: &'static str,
        /// What rcgen said.
        detail: String,
    },
}
