//! The evidence document carried in an aTLS certificate extension: one versioned DER encoding,
//! whose version says the platform.
//!
//! ```text
//! SnpEvidenceDoc ::= SEQUENCE {
//!     version        INTEGER (1),
//!     report         OCTET STRING,            -- SEV-SNP ATTESTATION_REPORT, 0x4A0 bytes
//!     endorsementKey OCTET STRING,            -- VCEK or VLEK, DER
//!     chain          SEQUENCE OF OCTET STRING,-- ASK/ASVK and ARK, DER (may be empty)
//!     crl            [0] IMPLICIT OCTET STRING OPTIONAL -- ARK-signed CRL, DER
//! }
//!
//! TdxEvidenceDoc ::= SEQUENCE {
//!     version        INTEGER (2),
//!     quote          OCTET STRING,            -- TDX quote v4 or v5 (PCK chain inside)
//!     collateral     [0] IMPLICIT OCTET STRING OPTIONAL -- collateral JSON (dcap-qvl form)
//! }
//! ```

use der::asn1::OctetString;
use der::{Decode, Encode, Sequence, Tagged};

/// Version of the SEV-SNP document.
pub const VERSION: u8 = 1;
/// Version of the TDX document.
pub const VERSION_TDX: u8 = 2;
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
    #[error("evidence document version {0} is not supported (expected 1, SEV-SNP, or 2, TDX)")]
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

#[derive(Clone, Debug, Sequence)]
struct TdxWire {
    version: u8,
    quote: OctetString,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    collateral: Option<OctetString>,
}

/// Evidence of one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceDoc {
    /// AMD SEV-SNP (and the simulated platform).
    Snp(SnpEvidence),
    /// Intel TDX.
    Tdx(TdxEvidence),
}

/// Intel TDX evidence: the quote and, so that verifiers need no network, its collateral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxEvidence {
    /// The quote (trailing padding allowed).
    pub quote: Vec<u8>,
    /// Collateral in its JSON form ([`nunki_attestation::tdx::TdxCollateral::to_json`]).
    pub collateral: Option<Vec<u8>>,
}

/// SEV-SNP evidence: report, endorsement key, chain and optional CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpEvidence {
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
        match self {
            EvidenceDoc::Snp(e) => e.encode(),
            EvidenceDoc::Tdx(e) => TdxWire {
                version: VERSION_TDX,
                quote: octets(&e.quote)?,
                collateral: e.collateral.as_deref().map(octets).transpose()?,
            }
            .to_der()
            .map_err(|e| EvidenceError::Der(e.to_string())),
        }
    }

    /// Decodes (strict DER, no trailing bytes), dispatching on the version.
    pub fn decode(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_LEN {
            return Err(EvidenceError::TooLarge(bytes.len()));
        }
        match peek_version(bytes)? {
            VERSION => SnpEvidence::decode(bytes).map(EvidenceDoc::Snp),
            VERSION_TDX => {
                let w = TdxWire::from_der(bytes).map_err(|e| EvidenceError::Der(e.to_string()))?;
                Ok(EvidenceDoc::Tdx(TdxEvidence {
                    quote: w.quote.into_bytes().into_vec(),
                    collateral: w.collateral.map(|c| c.into_bytes().into_vec()),
                }))
            }
            v => Err(EvidenceError::Version(v)),
        }
    }
}

/// The first element of the outer SEQUENCE, which every version starts with.
fn peek_version(bytes: &[u8]) -> Result<u8, EvidenceError> {
    let der = |e: der::Error| EvidenceError::Der(e.to_string());
    let outer = der::asn1::AnyRef::from_der(bytes).map_err(der)?;
    if outer.tag() != der::Tag::Sequence {
        return Err(EvidenceError::Der(format!(
            "expected a SEQUENCE, found {}",
            outer.tag()
        )));
    }
    let mut reader = der::SliceReader::new(outer.value()).map_err(der)?;
    u8::decode(&mut reader).map_err(der)
}

impl SnpEvidence {
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
        Ok(SnpEvidence {
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
        let mut d = SnpEvidence {
            report: vec![1; 0x4A0],
            endorsement_key: vec![2; 100],
            chain: vec![vec![3; 10], vec![4; 20]],
            crl: None,
        };
        assert_eq!(
            EvidenceDoc::decode(&d.encode().unwrap()).unwrap(),
            EvidenceDoc::Snp(d.clone())
        );
        d.crl = Some(vec![5; 7]);
        assert_eq!(
            EvidenceDoc::decode(&d.encode().unwrap()).unwrap(),
            EvidenceDoc::Snp(d)
        );
    }

    #[test]
    fn tdx_round_trip_and_version_dispatch() {
        let mut d = EvidenceDoc::Tdx(TdxEvidence {
            quote: vec![7; 5006],
            collateral: None,
        });
        assert_eq!(EvidenceDoc::decode(&d.encode().unwrap()).unwrap(), d);
        if let EvidenceDoc::Tdx(t) = &mut d {
            t.collateral = Some(b"{}".to_vec());
        }
        let enc = d.encode().unwrap();
        assert_eq!(EvidenceDoc::decode(&enc).unwrap(), d);
        // The version byte decides the shape: a TDX body labelled 1 is not SNP evidence.
        let mut relabelled = enc.clone();
        let at = 2 + relabelled
            .windows(3)
            .position(|w| w == [0x02, 0x01, VERSION_TDX])
            .unwrap();
        relabelled[at] = VERSION;
        assert!(matches!(
            EvidenceDoc::decode(&relabelled),
            Err(EvidenceError::Der(_))
        ));
        relabelled[at] = 9;
        assert_eq!(
            EvidenceDoc::decode(&relabelled),
            Err(EvidenceError::Version(9))
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        assert!(EvidenceDoc::decode(b"").is_err());
        assert!(EvidenceDoc::decode(&[0x30, 0x80]).is_err());
        let d = SnpEvidence {
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
