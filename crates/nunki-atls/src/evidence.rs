//! The evidence document carried in an aTLS certificate extension: one versioned DER encoding.
//!
//! ```text
//! EvidenceDoc ::= SEQUENCE {
//!     version        INTEGER (1),
//!     report         OCTET STRING,            -- SEV-SNP ATTESTATION_REPORT, 0x4A0 bytes
//!     endorsementKey OCTET STRING,            -- VCEK or VLEK, DER
//!     chain          SEQUENCE OF OCTET STRING,-- ASK/ASVK and ARK, DER (may be empty)
//!     crl            [0] IMPLICIT OCTET STRING OPTIONAL -- ARK-signed CRL, DER
//! }
//! ```

use der::asn1::OctetString;
use der::{Decode, Encode, Sequence};

/// Current (and only) version.
pub const VERSION: u8 = 1;
/// Upper bound for an encoded document; real ones are about 5 KiB.
pub const MAX_LEN: usize = 64 * 1024;

/// Decoding problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// Too large to be evidence.
    #[error("evidence document is {0} bytes, more than the 64 KiB limit")]
    TooLarge(usize),
    /// Not DER of the expected shape.
    #[error("evidence document is not valid DER: {0}")]
    Der(String),
    /// Unknown version.
    #[error("evidence document version {0} is not supported (expected 1)")]
    Version(u8),
}

#[derive(Clone, Debug, Sequence)]
struct Wire {
    version: u8,
    report: OctetString,
    endorsement_key: OctetString,
    chain: Vec<OctetString>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    crl: Option<OctetString>,
}

/// SEV-SNP evidence: report, endorsement key, chain and optional CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceDoc {
    /// The raw report.
    pub report: Vec<u8>,
    /// VCEK or VLEK (DER).
    pub endorsement_key: Vec<u8>,
    /// Intermediate and ARK (DER); empty means "use the built-in AMD chain".
    pub chain: Vec<Vec<u8>>,
    /// ARK-signed CRL (DER).
    pub crl: Option<Vec<u8>>,
}

fn octets(v: &[u8]) -> Result<OctetString, EvidenceError> {
    OctetString::new(v.to_vec()).map_err(|e| EvidenceError::Der(e.to_string()))
}

impl EvidenceDoc {
    /// DER encoding.
    pub fn encode(&self) -> Result<Vec<u8>, EvidenceError> {
        Wire {
            version: VERSION,
            report: octets(&self.report)?,
            endorsement_key: octets(&self.endorsement_key)?,
            chain: self
                .chain
                .iter()
                .map(|c| octets(c))
                .collect::<Result<_, _>>()?,
            crl: self.crl.as_deref().map(octets).transpose()?,
        }
        .to_der()
        .map_err(|e| EvidenceError::Der(e.to_string()))
    }

    /// Decodes (strict DER, no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_LEN {
            return Err(EvidenceError::TooLarge(bytes.len()));
        }
        let w = Wire::from_der(bytes).map_err(|e| EvidenceError::Der(e.to_string()))?;
        if w.version != VERSION {
            return Err(EvidenceError::Version(w.version));
        }
        Ok(EvidenceDoc {
            report: w.report.into_bytes().into_vec(),
            endorsement_key: w.endorsement_key.into_bytes().into_vec(),
            chain: w
                .chain
                .into_iter()
                .map(|c| c.into_bytes().into_vec())
                .collect(),
            crl: w.crl.map(|c| c.into_bytes().into_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_crl() {
        let mut d = EvidenceDoc {
            report: vec![1; 0x4A0],
            endorsement_key: vec![2; 100],
            chain: vec![vec![3; 10], vec![4; 20]],
            crl: None,
        };
        assert_eq!(EvidenceDoc::decode(&d.encode().unwrap()).unwrap(), d);
        d.crl = Some(vec![5; 7]);
        assert_eq!(EvidenceDoc::decode(&d.encode().unwrap()).unwrap(), d);
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        assert!(EvidenceDoc::decode(b"").is_err());
        assert!(EvidenceDoc::decode(&[0x30, 0x80]).is_err());
        let d = EvidenceDoc {
            report: vec![1],
            endorsement_key: vec![],
            chain: vec![],
            crl: None,
        };
        let mut enc = d.encode().unwrap();
        enc.push(0);
        assert!(EvidenceDoc::decode(&enc).is_err());
        assert!(matches!(
            EvidenceDoc::decode(&vec![0; MAX_LEN + 1]),
            Err(EvidenceError::TooLarge(_))
        ));
    }
}
