//! AMD certificate revocation lists: signed by the ARK, listing revoked ASK/ASVK serials.

use nunki_manifest::Sha256Fingerprint;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::certs::{self, CertError, CertInfo, SigAlg};
use crate::time_util::rfc3339;

/// A CRL problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrlError {
    /// Not a DER CRL.
    #[error("CRL: not a valid DER X.509 CRL: {0}")]
    Parse(String),
    /// Not issued by the ARK of this chain.
    #[error("CRL: issuer {actual:?} is not the ARK {expected:?}")]
    Issuer {
        /// ARK subject.
        expected: String,
        /// CRL issuer.
        actual: String,
    },
    /// Signature or algorithm problem.
    #[error("CRL: {0}")]
    Signature(CertError),
    /// thisUpdate in the future.
    #[error("CRL: thisUpdate {this_update} is after the verification time {now}")]
    NotYetValid {
        /// thisUpdate.
        this_update: String,
        /// Verification time.
        now: String,
    },
    /// No nextUpdate: such a CRL would never go stale (AMD's always carry one).
    #[error("CRL: has no nextUpdate, so its freshness cannot be judged")]
    NoNextUpdate,
    /// Past nextUpdate: a stale CRL cannot prove that nothing was revoked since.
    #[error(
        "CRL: stale, nextUpdate {next_update} is before the verification time {now}; fetch a current CRL"
    )]
    Stale {
        /// nextUpdate.
        next_update: String,
        /// Verification time.
        now: String,
    },
}

/// A CRL whose signature was verified against an ARK.
#[derive(Debug, Clone)]
pub struct VerifiedCrl {
    /// SHA-256 of the CRL DER.
    pub fingerprint: Sha256Fingerprint,
    /// The ARK that signed it.
    pub ark_fingerprint: Sha256Fingerprint,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: Option<i64>,
    /// Revoked serials as hex without leading zeros.
    pub revoked: Vec<String>,
}

impl VerifiedCrl {
    /// Parses `der` and checks it was issued and signed by `ark`.
    pub fn verify(der: &[u8], ark: &CertInfo) -> Result<Self, CrlError> {
        let (_, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| CrlError::Parse(e.to_string()))?;
        let tbs = &crl.tbs_cert_list;
        if tbs.issuer.as_raw() != ark.subject_raw.as_slice() {
            return Err(CrlError::Issuer {
                expected: ark.subject.clone(),
                actual: tbs.issuer.to_string(),
            });
        }
        let alg = certs::SigAlg::from(&crl.signature_algorithm);
        if matches!(alg, SigAlg::Other(_)) || tbs.signature != crl.signature_algorithm {
            return Err(CrlError::Signature(CertError::Profile {
                which: "CRL".into(),
                reason:
                    "signature algorithm must be RSASSA-PSS SHA-384 (salt 48) and match the TBS"
                        .into(),
            }));
        }
        certs::verify_pss_sha384("CRL", &alg, tbs.as_ref(), &crl.signature_value.data, ark)
            .map_err(CrlError::Signature)?;
        Ok(VerifiedCrl {
            fingerprint: certs::fingerprint(der),
            ark_fingerprint: ark.fingerprint,
            this_update: tbs.this_update.timestamp(),
            next_update: tbs.next_update.map(|t| t.timestamp()),
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| certs::serial_hex(r.raw_serial()))
                .collect(),
        })
    }

    /// Checks that the CRL is current at `now`.
    pub fn check_time(&self, now: i64) -> Result<(), CrlError> {
        if now < self.this_update {
            return Err(CrlError::NotYetValid {
                this_update: rfc3339(self.this_update),
                now: rfc3339(now),
            });
        }
        let Some(next) = self.next_update else {
            return Err(CrlError::NoNextUpdate);
        };
        if now > next {
            return Err(CrlError::Stale {
                next_update: rfc3339(next),
                now: rfc3339(now),
            });
        }
        Ok(())
    }

    /// Whether a serial (hex without leading zeros) is listed.
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        self.revoked.iter().any(|s| s == serial_hex)
    }
}

/// Accepts a CRL as DER or as PEM (`X509 CRL` block) and returns the DER.
pub fn crl_der_from_pem_or_der(input: &[u8]) -> Result<Vec<u8>, CrlError> {
    let is_pem = std::str::from_utf8(input).is_ok_and(|t| t.contains("-----BEGIN"));
    if !is_pem {
        return Ok(input.to_vec());
    }
    for p in x509_parser::pem::Pem::iter_from_buffer(input) {
        let p = p.map_err(|e| CrlError::Parse(format!("invalid PEM: {e}")))?;
        if p.label == "X509 CRL" {
            return Ok(p.contents);
        }
    }
    Err(CrlError::Parse("PEM input holds no X509 CRL block".into()))
}
