//! TDX collateral: Intel's signed TCB Info and QE Identity, the PCK and root CA CRLs, and the
//! issuer chains that sign them.
//!
//! The JSON form is the one of `dcap-qvl`'s `QuoteCollateralV3` (and its shipped vectors):
//! `tcb_info` and `qe_identity` hold the *exact* signed JSON text (the signature covers those
//! bytes, so they are never re-serialised), signatures and CRLs are hex, issuer chains PEM.
//! The same bytes travel inside aTLS evidence, so a verifier needs no network.

use std::fmt;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time_util::rfc3339;

/// Largest collateral document accepted (real ones are 15 to 25 KiB).
pub const MAX_COLLATERAL_LEN: usize = 256 * 1024;

/// Why collateral is unusable (before any signature is checked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollateralError {
    /// Not JSON of the expected shape.
    #[error("collateral JSON: {0}")]
    Json(String),
    /// A field has a malformed value.
    #[error("collateral field {field}: {reason}")]
    Field {
        /// Field name as in the JSON form.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A PCS response could not be taken apart.
    #[error("PCS response {what}: {reason}")]
    Pcs {
        /// Which response.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Collateral for one quote (one FMSPC and PCK CA), with its digest computed once.
///
/// Read the fields through `Deref` (`c.tcb_info`); to change one, take the parts out with
/// [`TdxCollateral::into_parts`] and build anew, so the digest always matches the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TdxCollateral {
    parts: CollateralParts,
    digest: [u8; 32],
}

impl std::ops::Deref for TdxCollateral {
    type Target = CollateralParts;

    fn deref(&self) -> &CollateralParts {
        &self.parts
    }
}

/// The fields of [`TdxCollateral`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollateralParts {
    /// PEM chain of the PCK CRL's issuer (PCK Platform or Processor CA, then the root).
    pub pck_crl_issuer_chain: String,
    /// Root CA CRL (DER).
    pub root_ca_crl: Vec<u8>,
    /// PCK CRL (DER).
    pub pck_crl: Vec<u8>,
    /// PEM chain of the TCB Info signer ("Intel SGX TCB Signing", then the root).
    pub tcb_info_issuer_chain: String,
    /// The exact signed `tcbInfo` JSON text.
    pub tcb_info: String,
    /// ECDSA P-256 signature over `tcb_info` (r || s).
    pub tcb_info_signature: Vec<u8>,
    /// PEM chain of the QE Identity signer.
    pub qe_identity_issuer_chain: String,
    /// The exact signed `enclaveIdentity` JSON text.
    pub qe_identity: String,
    /// ECDSA P-256 signature over `qe_identity` (r || s).
    pub qe_identity_signature: Vec<u8>,
}

impl fmt::Debug for TdxCollateral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TdxCollateral")
            .field("sha256", &hex::encode(self.digest()))
            .field("tcb_info_len", &self.tcb_info.len())
            .field("qe_identity_len", &self.qe_identity.len())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pck_certificate_chain: Option<serde_json::Value>,
}

fn unhex(field: &'static str, s: &str) -> Result<Vec<u8>, CollateralError> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(s).map_err(|e| CollateralError::Field {
        field,
        reason: format!("not hex: {e}"),
    })
}

impl TdxCollateral {
    /// Parses the JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CollateralError> {
        if bytes.len() > MAX_COLLATERAL_LEN {
            return Err(CollateralError::Json(format!(
                "{} bytes, more than the {MAX_COLLATERAL_LEN}-byte limit",
                bytes.len()
            )));
        }
        let w: Wire =
            serde_json::from_slice(bytes).map_err(|e| CollateralError::Json(e.to_string()))?;
        if w.pck_certificate_chain.is_some() {
            return Err(CollateralError::Field {
                field: "pck_certificate_chain",
                reason:
                    "not used: Nunki verifies the PCK chain embedded in the quote; remove the field"
                        .into(),
            });
        }
        let c = CollateralParts {
            pck_crl_issuer_chain: w.pck_crl_issuer_chain,
            root_ca_crl: unhex("root_ca_crl", &w.root_ca_crl)?,
            pck_crl: unhex("pck_crl", &w.pck_crl)?,
            tcb_info_issuer_chain: w.tcb_info_issuer_chain,
            tcb_info: w.tcb_info,
            tcb_info_signature: unhex("tcb_info_signature", &w.tcb_info_signature)?,
            qe_identity_issuer_chain: w.qe_identity_issuer_chain,
            qe_identity: w.qe_identity,
            qe_identity_signature: unhex("qe_identity_signature", &w.qe_identity_signature)?,
        };
        for (field, sig) in [
            ("tcb_info_signature", &c.tcb_info_signature),
            ("qe_identity_signature", &c.qe_identity_signature),
        ] {
            if sig.len() != 64 {
                return Err(CollateralError::Field {
                    field,
                    reason: format!("{} bytes; an ECDSA P-256 r || s has 64", sig.len()),
                });
            }
        }
        Ok(TdxCollateral::new(c))
    }

    /// Wraps `parts`, computing the digest.
    pub fn new(parts: CollateralParts) -> Self {
        let digest = parts_digest(&parts);
        Self { parts, digest }
    }

    /// The fields, to modify and rebuild.
    pub fn into_parts(self) -> CollateralParts {
        self.parts
    }

    /// The JSON form (pretty, stable field order).
    pub fn to_json(&self) -> Vec<u8> {
        let w = Wire {
            pck_crl_issuer_chain: self.pck_crl_issuer_chain.clone(),
            root_ca_crl: hex::encode(&self.root_ca_crl),
            pck_crl: hex::encode(&self.pck_crl),
            tcb_info_issuer_chain: self.tcb_info_issuer_chain.clone(),
            tcb_info: self.tcb_info.clone(),
            tcb_info_signature: hex::encode(&self.tcb_info_signature),
            qe_identity_issuer_chain: self.qe_identity_issuer_chain.clone(),
            qe_identity: self.qe_identity.clone(),
            qe_identity_signature: hex::encode(&self.qe_identity_signature),
            pck_certificate_chain: None,
        };
        let mut out = serde_json::to_vec_pretty(&w).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// SHA-256 over every field (length-prefixed), identifying this collateral in caches.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Builds collateral from Intel PCS (or PCCS) responses: the TCB Info and QE Identity
    /// bodies (`{"tcbInfo": {...}, "signature": "..."}`), the URL-encoded issuer-chain headers,
    /// and the two CRLs (DER).
    #[allow(clippy::too_many_arguments)]
    pub fn from_pcs_responses(
        tcb_info_body: &[u8],
        tcb_info_issuer_chain: &str,
        qe_identity_body: &[u8],
        qe_identity_issuer_chain: &str,
        pck_crl: Vec<u8>,
        pck_crl_issuer_chain: &str,
        root_ca_crl: Vec<u8>,
    ) -> Result<Self, CollateralError> {
        let (tcb_info, tcb_info_signature) = split_signed(tcb_info_body, "tcbInfo")?;
        let (qe_identity, qe_identity_signature) =
            split_signed(qe_identity_body, "enclaveIdentity")?;
        let chain = |what: &'static str, h: &str| {
            let text = percent_decode(h).ok_or_else(|| CollateralError::Pcs {
                what,
                reason: "issuer chain header is not valid percent-encoded UTF-8".into(),
            })?;
            if !text.contains("-----BEGIN CERTIFICATE-----") {
                return Err(CollateralError::Pcs {
                    what,
                    reason: "issuer chain header holds no PEM certificate".into(),
                });
            }
            Ok(text)
        };
        Ok(TdxCollateral::new(CollateralParts {
            pck_crl_issuer_chain: chain("PCK CRL", pck_crl_issuer_chain)?,
            root_ca_crl: der_crl(root_ca_crl),
            pck_crl: der_crl(pck_crl),
            tcb_info_issuer_chain: chain("TCB Info", tcb_info_issuer_chain)?,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: chain("QE Identity", qe_identity_issuer_chain)?,
            qe_identity,
            qe_identity_signature,
        }))
    }

    /// The dates and numbers a verifier checks and a person wants to see.
    pub fn info(&self) -> Result<CollateralInfo, CollateralError> {
        let tcb: dcap_qvl::TcbInfo =
            serde_json::from_str(&self.tcb_info).map_err(|e| CollateralError::Field {
                field: "tcb_info",
                reason: format!("not a TCB Info: {e}"),
            })?;
        let qe: dcap_qvl::QeIdentity =
            serde_json::from_str(&self.qe_identity).map_err(|e| CollateralError::Field {
                field: "qe_identity",
                reason: format!("not a QE Identity: {e}"),
            })?;
        let date = |field: &'static str, s: &str| {
            crate::time_util::parse_rfc3339(s)
                .map(crate::time_util::unix_seconds)
                .map_err(|reason| CollateralError::Field { field, reason })
        };
        Ok(CollateralInfo {
            tcb_info_id: tcb.id.clone(),
            tcb_info_version: tcb.version,
            fmspc: tcb.fmspc.to_ascii_lowercase(),
            pce_id: tcb.pce_id.to_ascii_lowercase(),
            tcb_info_window: Window {
                from: date("tcb_info", &tcb.issue_date)?,
                until: date("tcb_info", &tcb.next_update)?,
            },
            tcb_evaluation_data_number: tcb.tcb_evaluation_data_number,
            qe_identity_id: qe.id.clone(),
            qe_identity_window: Window {
                from: date("qe_identity", &qe.issue_date)?,
                until: date("qe_identity", &qe.next_update)?,
            },
            qe_tcb_evaluation_data_number: qe.tcb_evaluation_data_number,
            root_ca_crl: crl_info("root_ca_crl", &self.root_ca_crl)?,
            pck_crl: crl_info("pck_crl", &self.pck_crl)?,
        })
    }

    /// Converts to `dcap-qvl`'s type (without a PCK chain: the quote's own is verified).
    pub(crate) fn to_dcap(&self) -> dcap_qvl::QuoteCollateralV3 {
        dcap_qvl::QuoteCollateralV3 {
            pck_crl_issuer_chain: self.pck_crl_issuer_chain.clone(),
            root_ca_crl: self.root_ca_crl.clone(),
            pck_crl: self.pck_crl.clone(),
            tcb_info_issuer_chain: self.tcb_info_issuer_chain.clone(),
            tcb_info: self.tcb_info.clone(),
            tcb_info_signature: self.tcb_info_signature.clone(),
            qe_identity_issuer_chain: self.qe_identity_issuer_chain.clone(),
            qe_identity: self.qe_identity.clone(),
            qe_identity_signature: self.qe_identity_signature.clone(),
            pck_certificate_chain: None,
        }
    }
}

fn parts_digest(p: &CollateralParts) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [
        p.pck_crl_issuer_chain.as_bytes(),
        &p.root_ca_crl,
        &p.pck_crl,
        p.tcb_info_issuer_chain.as_bytes(),
        p.tcb_info.as_bytes(),
        &p.tcb_info_signature,
        p.qe_identity_issuer_chain.as_bytes(),
        p.qe_identity.as_bytes(),
        &p.qe_identity_signature,
    ] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A validity window in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Start (issueDate, thisUpdate).
    pub from: i64,
    /// End (nextUpdate).
    pub until: i64,
}

impl Window {
    /// Whether `now` lies inside.
    pub fn contains(&self, now: i64) -> bool {
        self.from <= now && now <= self.until
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} .. {}", rfc3339(self.from), rfc3339(self.until))
    }
}

/// Dates and identifiers read from a CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrlInfo {
    /// Issuer common name.
    pub issuer: String,
    /// thisUpdate .. nextUpdate.
    pub window: Window,
    /// Number of revoked serials.
    pub revoked: usize,
}

/// What [`TdxCollateral::info`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollateralInfo {
    /// `tcbInfo.id` ("TDX").
    pub tcb_info_id: String,
    /// `tcbInfo.version` (3 for TDX).
    pub tcb_info_version: u8,
    /// FMSPC the TCB Info is for (lowercase hex).
    pub fmspc: String,
    /// PCE ID (lowercase hex).
    pub pce_id: String,
    /// issueDate .. nextUpdate of the TCB Info.
    pub tcb_info_window: Window,
    /// `tcbInfo.tcbEvaluationDataNumber`.
    pub tcb_evaluation_data_number: u32,
    /// `enclaveIdentity.id` ("TD_QE").
    pub qe_identity_id: String,
    /// issueDate .. nextUpdate of the QE Identity.
    pub qe_identity_window: Window,
    /// `enclaveIdentity.tcbEvaluationDataNumber`.
    pub qe_tcb_evaluation_data_number: u32,
    /// The root CA CRL.
    pub root_ca_crl: CrlInfo,
    /// The PCK CRL.
    pub pck_crl: CrlInfo,
}

fn crl_info(field: &'static str, der: &[u8]) -> Result<CrlInfo, CollateralError> {
    use x509_parser::prelude::FromDer;
    let (rest, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| CollateralError::Field {
            field,
            reason: format!("not a DER CRL: {e}"),
        })?;
    if !rest.is_empty() {
        return Err(CollateralError::Field {
            field,
            reason: format!("{} trailing bytes after the CRL", rest.len()),
        });
    }
    let next = crl.next_update().ok_or_else(|| CollateralError::Field {
        field,
        reason: "the CRL has no nextUpdate, so its freshness cannot be judged".into(),
    })?;
    let issuer = crl
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok(CrlInfo {
        issuer,
        window: Window {
            from: crl.last_update().timestamp(),
            until: next.timestamp(),
        },
        revoked: crl.iter_revoked_certificates().count(),
    })
}

/// PCCS serves CRLs hex-encoded, PCS as DER; accept both.
fn der_crl(body: Vec<u8>) -> Vec<u8> {
    if body.first() == Some(&0x30) {
        return body;
    }
    match std::str::from_utf8(&body)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
    {
        Some(der) if der.first() == Some(&0x30) => der,
        _ => body,
    }
}

/// Splits `{"<key>": {...}, "signature": "<hex>"}` into the exact text of the value and the
/// decoded signature.
pub fn split_signed(body: &[u8], key: &'static str) -> Result<(String, Vec<u8>), CollateralError> {
    let map: std::collections::BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body)
        .map_err(|e| CollateralError::Pcs {
            what: key,
            reason: format!("not a JSON object: {e}"),
        })?;
    let value = map.get(key).ok_or_else(|| CollateralError::Pcs {
        what: key,
        reason: format!("no {key:?} member"),
    })?;
    let sig: String = map
        .get("signature")
        .ok_or_else(|| CollateralError::Pcs {
            what: key,
            reason: "no \"signature\" member".into(),
        })
        .and_then(|raw| {
            serde_json::from_str(raw.get()).map_err(|e| CollateralError::Pcs {
                what: key,
                reason: format!("signature is not a string: {e}"),
            })
        })?;
    let sig = hex::decode(&sig).map_err(|e| CollateralError::Pcs {
        what: key,
        reason: format!("signature is not hex: {e}"),
    })?;
    Ok((value.get().to_string(), sig))
}

/// Decodes `%XX` escapes (PCS URL-encodes its issuer-chain headers).
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let h = bytes.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("-----BEGIN%20CERT%0A").as_deref(),
            Some("-----BEGIN CERT\n")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    }

    #[test]
    fn split_keeps_the_exact_signed_text() {
        let body = br#"{"tcbInfo":{"b":1, "a" :[2,3]},"signature":"0a0b"}"#;
        let (text, sig) = split_signed(body, "tcbInfo").unwrap();
        assert_eq!(text, r#"{"b":1, "a" :[2,3]}"#);
        assert_eq!(sig, vec![0x0a, 0x0b]);
        assert!(split_signed(b"[]", "tcbInfo").is_err());
        assert!(split_signed(br#"{"tcbInfo":{}}"#, "tcbInfo").is_err());
        assert!(split_signed(br#"{"signature":"00"}"#, "tcbInfo").is_err());
        assert!(split_signed(br#"{"tcbInfo":{},"signature":"xy"}"#, "tcbInfo").is_err());
    }

    #[test]
    fn json_form_names_the_bad_field() {
        let w = serde_json::json!({
            "pck_crl_issuer_chain": "", "root_ca_crl": "zz", "pck_crl": "", "tcb_info_issuer_chain": "",
            "tcb_info": "{}", "tcb_info_signature": "", "qe_identity_issuer_chain": "",
            "qe_identity": "{}", "qe_identity_signature": ""
        });
        let err = TdxCollateral::from_json(w.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("root_ca_crl"), "{err}");
        let mut w2 = w.clone();
        w2["root_ca_crl"] = "00".into();
        let err = TdxCollateral::from_json(w2.to_string().as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("tcb_info_signature: 0 bytes"),
            "{err}"
        );
        let mut w3 = w.clone();
        w3["extra"] = 1.into();
        assert!(TdxCollateral::from_json(w3.to_string().as_bytes()).is_err());
    }

    #[test]
    fn der_crl_accepts_hex_from_pccs() {
        assert_eq!(der_crl(vec![0x30, 1]), vec![0x30, 1]);
        assert_eq!(der_crl(b"3001\n".to_vec()), vec![0x30, 1]);
        assert_eq!(der_crl(b"zz".to_vec()), b"zz".to_vec());
    }
}
