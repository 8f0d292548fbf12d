//! Fixed-size digest and identifier newtypes with lowercase-hex text forms.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a hex string could not become a digest newtype.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// The string had the wrong number of hex characters.
    #[error("{what}: expected {expected} hex characters ({bytes} bytes), got {actual}")]
    Length {
        /// Name of the newtype.
        what: &'static str,
        /// Expected number of hex characters.
        expected: usize,
        /// Expected number of bytes.
        bytes: usize,
        /// Number of characters received.
        actual: usize,
    },
    /// The string contained a character that is not hex.
    #[error("{what}: not a hex string: {reason}")]
    NotHex {
        /// Name of the newtype.
        what: &'static str,
        /// What the hex decoder reported.
        reason: String,
    },
}

macro_rules! digest_newtype {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Builds the value from a byte slice of exactly `LEN` bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, DigestParseError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| DigestParseError::Length {
                    what: stringify!($name),
                    expected: 2 * $len,
                    bytes: $len,
                    actual: 2 * bytes.len(),
                })?;
                Ok(Self(arr))
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// True when every byte is zero.
            pub fn is_zero(&self) -> bool {
                self.0.iter().all(|b| *b == 0)
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(value: [u8; $len]) -> Self {
                Self(value)
            }
        }

        impl FromStr for $name {
            type Err = DigestParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                if s.len() != 2 * $len {
                    return Err(DigestParseError::Length {
                        what: stringify!($name),
                        expected: 2 * $len,
                        bytes: $len,
                        actual: s.len(),
                    });
                }
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).map_err(|e| DigestParseError::NotHex {
                    what: stringify!($name),
                    reason: e.to_string(),
                })?;
                Ok(Self(out))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

digest_newtype!(
    /// SHA-256 of a pod's Kata agent policy (or initdata); what the runtime puts into HOST_DATA.
    PolicyHash, 32
);
digest_newtype!(
    /// The 32-byte HOST_DATA field of an SNP report.
    HostData, 32
);
digest_newtype!(
    /// The 48-byte SNP launch MEASUREMENT (or a TDX MRTD).
    Measurement, 48
);
digest_newtype!(
    /// The 64-byte REPORT_DATA field chosen by the guest.
    ReportData, 64
);
digest_newtype!(
    /// The 64-byte CHIP_ID of an AMD processor.
    ChipId, 64
);
digest_newtype!(
    /// SHA-384 digest of an SNP ID or author public key.
    IdKeyDigest, 48
);
digest_newtype!(
    /// SHA-256 fingerprint of a DER certificate or public key.
    Sha256Fingerprint, 32
);

digest_newtype!(
    /// The 8-byte TDX XFAM (extended features available to the TD), as stored in a TD report.
    TdxXfam, 8
);
digest_newtype!(
    /// The 8-byte TDX TD_ATTRIBUTES, as stored in a TD report (byte 0 bit 0 is DEBUG).
    TdAttributes, 8
);
digest_newtype!(
    /// The 16-byte Platform Instance ID of an Intel PCK certificate (multi-package platforms).
    Piid, 16
);
digest_newtype!(
    /// SHA-256 of the exact bytes of a manifest document, as stored and transmitted.
    ManifestHash, 32
);
digest_newtype!(
    /// SHA-256 of a manifest history transition (`manifest hash || previous transition hash`).
    TransitionHash, 32
);

/// SHA-256 of `data`, through aws-lc.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    // A SHA-256 digest is always 32 bytes; zipping avoids a panicking slice copy.
    for (o, b) in out.iter_mut().zip(digest.as_ref()) {
        *o = *b;
    }
    out
}

impl From<PolicyHash> for HostData {
    fn from(value: PolicyHash) -> Self {
        HostData(value.0)
    }
}

impl From<HostData> for PolicyHash {
    fn from(value: HostData) -> Self {
        PolicyHash(value.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wrong_length_names_type_and_lengths() {
        let err = "abcd".parse::<Measurement>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Measurement: expected 96 hex characters (48 bytes), got 4"
        );
    }

    #[test]
    fn non_hex_is_rejected() {
        let s = "zz".repeat(32);
        let err = s.parse::<PolicyHash>().unwrap_err();
        assert!(matches!(
            err,
            DigestParseError::NotHex {
                what: "PolicyHash",
                ..
            }
        ));
    }

    #[test]
    fn serde_uses_lowercase_hex() {
        let h = PolicyHash([0xAB; 32]);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        let back: PolicyHash = serde_json::from_str(&json.to_uppercase()).unwrap();
        assert_eq!(back, h);
        assert!(serde_json::from_str::<PolicyHash>("\"ab\"").is_err());
    }

    proptest! {
        #[test]
        fn hex_roundtrip(bytes in proptest::array::uniform32(any::<u8>())) {
            let h = Sha256Fingerprint(bytes);
            prop_assert_eq!(h.to_string().parse::<Sha256Fingerprint>().unwrap(), h);
        }

        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = s.parse::<ReportData>();
        }
    }
}
