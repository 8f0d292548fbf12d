//! TDX quotes (versions 4 and 5): a typed view of the fields Nunki checks and shows.
//!
//! Decoding is done by `dcap-qvl` (the same decoder its verifier uses, so what we show is what
//! was verified); this module adds the checks that make a byte string a TDX ECDSA quote we can
//! verify, the PCK chain in DER, and the offsets of the signed range and of the trailing bytes
//! that quote buffers often carry.

use dcap_qvl::quote::{Quote, Report};
use nunki_manifest::{HostData, Measurement, ReportData, TdAttributes, TdxXfam};
use serde::Serialize;

/// Intel's QE vendor ID (`939a7233-f79c-4ca9-940a-0db3957f0607`).
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// TEE type of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Attestation key type: ECDSA P-256 with SHA-256.
pub const ATTESTATION_KEY_ECDSA_P256: u16 = 2;
/// Certification data type of a PEM PCK certificate chain.
pub const CERT_DATA_PCK_CHAIN: u16 = 5;
/// Length of the quote header.
pub const HEADER_LEN: usize = 48;
/// Largest quote accepted (real ones are about 5 KiB, padded buffers up to 8 KiB).
pub const MAX_QUOTE_LEN: usize = 64 * 1024;

/// Why bytes are not a TDX quote Nunki can verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// Empty or oversized input.
    #[error("quote is {0} bytes; a TDX quote has 1 to {MAX_QUOTE_LEN}")]
    Length(usize),
    /// The decoder refused it.
    #[error("not a decodable quote: {0}")]
    Decode(String),
    /// Not version 4 or 5.
    #[error("quote version {0} is not supported: TDX quotes are version 4 or 5")]
    Version(u16),
    /// Not a TDX quote.
    #[error("TEE type {0:#x} is not TDX (0x81); SGX quotes are not accepted")]
    TeeType(u32),
    /// Not an ECDSA P-256 attestation key.
    #[error("attestation key type {0} is not ECDSA P-256 (2)")]
    KeyType(u16),
    /// A QE from another vendor.
    #[error("QE vendor ID {0} is not Intel's (939a7233f79c4ca9940a0db3957f0607)")]
    Vendor(String),
    /// The PCK chain is not embedded as PEM.
    #[error(
        "certification data type {0} carries no PCK certificate chain (type 5 expected); the host's quote generation must embed it"
    )]
    CertDataType(u16),
    /// The embedded PCK chain could not be read.
    #[error("embedded PCK certificate chain: {0}")]
    PckChain(String),
}

/// Layout of the TD report body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TdBody {
    /// TDX 1.0 (584 bytes; v4, or v5 body type 2).
    #[serde(rename = "TDX 1.0")]
    Td10,
    /// TDX 1.5 (648 bytes; v5 body type 3).
    #[serde(rename = "TDX 1.5")]
    Td15,
    /// TDX 1.5 with service-TD extensions (v5 body type 4).
    #[serde(rename = "TDX 1.5ex")]
    Td15Ex,
}

/// The quote header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuoteHeader {
    /// 4 or 5.
    pub version: u16,
    /// 2 = ECDSA P-256.
    pub attestation_key_type: u16,
    /// 0x81 = TDX.
    pub tee_type: u32,
    /// QE security version (reserved in TDX quotes).
    pub qe_svn: u16,
    /// PCE security version (reserved in TDX quotes).
    pub pce_svn: u16,
    /// QE vendor ID (hex).
    #[serde(with = "hex_bytes")]
    pub qe_vendor_id: [u8; 16],
    /// Vendor-specific user data (hex; Intel: the QE ID's first bytes).
    #[serde(with = "hex_bytes")]
    pub user_data: [u8; 20],
}

/// The TD report: what the TDX module measured about the TD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdReport {
    /// TEE_TCB_SVN: byte 0 module SVN, byte 1 module major version, bytes 2.. platform SVNs.
    #[serde(with = "hex_bytes")]
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: measurement of the TDX module.
    pub mr_seam: Measurement,
    /// MRSIGNERSEAM: signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: Measurement,
    /// SEAMATTRIBUTES.
    #[serde(with = "hex_bytes")]
    pub seam_attributes: [u8; 8],
    /// TDATTRIBUTES (byte 0 bit 0: DEBUG).
    pub td_attributes: TdAttributes,
    /// XFAM.
    pub xfam: TdxXfam,
    /// MRTD: measurement of the initial TD memory (firmware).
    pub mr_td: Measurement,
    /// MRCONFIGID: set by the host at launch; Nunki's policy hash, zero-padded.
    pub mr_config_id: Measurement,
    /// MROWNER.
    pub mr_owner: Measurement,
    /// MROWNERCONFIG.
    pub mr_owner_config: Measurement,
    /// RTMR0..3.
    pub rtmrs: [Measurement; 4],
    /// REPORTDATA: chosen by the TD (aTLS: SHA-512(SPKI || nonce)).
    pub report_data: ReportData,
    /// TEE_TCB_SVN2 (TDX 1.5): the current module TCB after a TD-preserving update.
    #[serde(with = "hex_opt", skip_serializing_if = "Option::is_none")]
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// MRSERVICETD (TDX 1.5): hash of bound service TDs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_service_td: Option<Measurement>,
}

impl TdReport {
    /// Whether TDATTRIBUTES.DEBUG is set (the host can read the TD's memory and registers).
    pub fn debug(&self) -> bool {
        self.td_attributes.0.first().is_some_and(|b| b & 1 != 0)
    }

    /// The policy hash in MRCONFIGID: its first 32 bytes, provided the last 16 are zero.
    /// `Err` carries the non-zero tail.
    pub fn policy_hash(&self) -> Result<HostData, [u8; 16]> {
        let (head, tail) = self.mr_config_id.0.split_at(32);
        let mut out = [0u8; 32];
        out.copy_from_slice(head);
        let mut rest = [0u8; 16];
        rest.copy_from_slice(tail);
        if rest.iter().any(|b| *b != 0) {
            Err(rest)
        } else {
            Ok(HostData(out))
        }
    }
}

/// The Quoting Enclave's SGX report, signed by the PCK key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QeReport {
    /// CPUSVN.
    #[serde(with = "hex_bytes")]
    pub cpu_svn: [u8; 16],
    /// MISCSELECT.
    pub misc_select: u32,
    /// ATTRIBUTES.
    #[serde(with = "hex_bytes")]
    pub attributes: [u8; 16],
    /// MRENCLAVE.
    #[serde(with = "hex_bytes")]
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    #[serde(with = "hex_bytes")]
    pub mr_signer: [u8; 32],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// REPORTDATA: SHA-256(attestation key || QE auth data), then 32 zero bytes.
    #[serde(with = "hex_bytes")]
    pub report_data: [u8; 64],
}

/// A decoded TDX quote.
#[derive(Debug, Clone, Serialize)]
pub struct TdQuote {
    /// Header.
    pub header: QuoteHeader,
    /// Body layout.
    pub body: TdBody,
    /// TD report.
    pub td: TdReport,
    /// QE report.
    pub qe_report: QeReport,
    /// The attestation public key (x || y, hex).
    #[serde(with = "hex_bytes")]
    pub attestation_key: [u8; 64],
    /// PCK certificate chain (DER, leaf first, as embedded).
    #[serde(skip)]
    pub pck_chain: Vec<Vec<u8>>,
    /// Bytes covered by the quote signature (header, v5 body descriptor, body).
    pub signed_len: usize,
    /// Bytes after the signature data (zero padding of quote buffers), ignored.
    pub trailing_bytes: usize,
    #[serde(skip)]
    signature: [u8; 64],
}

impl TdQuote {
    /// Decodes `raw` and checks that it is a TDX ECDSA quote with an embedded PCK chain.
    pub fn parse(raw: &[u8]) -> Result<Self, QuoteError> {
        if raw.is_empty() || raw.len() > MAX_QUOTE_LEN {
            return Err(QuoteError::Length(raw.len()));
        }
        let q = Quote::parse(raw).map_err(|e| QuoteError::Decode(format!("{e:#}")))?;
        let h = &q.header;
        if h.version != 4 && h.version != 5 {
            return Err(QuoteError::Version(h.version));
        }
        if h.tee_type != TEE_TYPE_TDX {
            return Err(QuoteError::TeeType(h.tee_type));
        }
        if h.attestation_key_type != ATTESTATION_KEY_ECDSA_P256 {
            return Err(QuoteError::KeyType(h.attestation_key_type));
        }
        if h.qe_vendor_id != INTEL_QE_VENDOR_ID {
            return Err(QuoteError::Vendor(hex::encode(h.qe_vendor_id)));
        }
        let (body, td10, td15) = match &q.report {
            Report::TD10(r) => (TdBody::Td10, r, None),
            Report::TD15(r) => (TdBody::Td15, &r.base, Some(r)),
            Report::TD15Ex(r) => (TdBody::Td15Ex, &r.base.base, Some(&r.base)),
            Report::SgxEnclave(_) => return Err(QuoteError::TeeType(0)),
        };
        let auth = q.auth_data.clone().into_v3();
        if auth.certification_data.cert_type != CERT_DATA_PCK_CHAIN {
            return Err(QuoteError::CertDataType(auth.certification_data.cert_type));
        }
        let pck_chain = pck_chain_der(&auth.certification_data.body.data)?;
        let signed_len = q.signed_length();
        let sig_len = raw
            .get(signed_len..signed_len + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| QuoteError::Decode("truncated signature data length".into()))?;
        let end = signed_len
            .saturating_add(4)
            .saturating_add(usize::try_from(sig_len).unwrap_or(usize::MAX));
        let trailing_bytes = raw.len().saturating_sub(end);
        let m = |b: [u8; 48]| Measurement(b);
        let qe = &auth.qe_report;
        let qe_report = parse_qe_report(qe);
        Ok(TdQuote {
            header: QuoteHeader {
                version: h.version,
                attestation_key_type: h.attestation_key_type,
                tee_type: h.tee_type,
                qe_svn: h.qe_svn,
                pce_svn: h.pce_svn,
                qe_vendor_id: h.qe_vendor_id,
                user_data: h.user_data,
            },
            body,
            td: TdReport {
                tee_tcb_svn: td10.tee_tcb_svn,
                mr_seam: m(td10.mr_seam),
                mr_signer_seam: m(td10.mr_signer_seam),
                seam_attributes: td10.seam_attributes,
                td_attributes: TdAttributes(td10.td_attributes),
                xfam: TdxXfam(td10.xfam),
                mr_td: m(td10.mr_td),
                mr_config_id: m(td10.mr_config_id),
                mr_owner: m(td10.mr_owner),
                mr_owner_config: m(td10.mr_owner_config),
                rtmrs: [
                    m(td10.rt_mr0),
                    m(td10.rt_mr1),
                    m(td10.rt_mr2),
                    m(td10.rt_mr3),
                ],
                report_data: ReportData(td10.report_data),
                tee_tcb_svn2: td15.map(|r| r.tee_tcb_svn2),
                mr_service_td: td15.map(|r| m(r.mr_service_td)),
            },
            qe_report,
            attestation_key: auth.ecdsa_attestation_key,
            pck_chain,
            signed_len,
            trailing_bytes,
            signature: auth.ecdsa_signature,
        })
    }

    /// The quote signature (r || s, big-endian).
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The PCK leaf certificate (DER).
    pub fn pck_leaf(&self) -> Option<&[u8]> {
        self.pck_chain.first().map(Vec::as_slice)
    }
}

/// Reads the fields of a 384-byte SGX report (the QE report).
fn parse_qe_report(r: &[u8; 384]) -> QeReport {
    fn arr<const N: usize>(r: &[u8], at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = r.get(at..at + N) {
            out.copy_from_slice(src);
        }
        out
    }
    QeReport {
        cpu_svn: arr(r, 0),
        misc_select: u32::from_le_bytes(arr(r, 16)),
        attributes: arr(r, 48),
        mr_enclave: arr(r, 64),
        mr_signer: arr(r, 128),
        isv_prod_id: u16::from_le_bytes(arr(r, 256)),
        isv_svn: u16::from_le_bytes(arr(r, 258)),
        report_data: arr(r, 320),
    }
}

/// The PEM chain of certification data type 5, as DER (Intel appends a NUL byte).
fn pck_chain_der(pem: &[u8]) -> Result<Vec<Vec<u8>>, QuoteError> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| QuoteError::PckChain("not UTF-8 PEM text".into()))?
        .trim_end_matches('\0');
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(QuoteError::PckChain("no PEM CERTIFICATE block".into()));
    }
    let certs =
        crate::snp::certs::pem_or_der_certs(text.as_bytes()).map_err(QuoteError::PckChain)?;
    if certs.len() < 2 {
        return Err(QuoteError::PckChain(format!(
            "{} certificate(s); expected the PCK certificate, the PCK CA and the root",
            certs.len()
        )));
    }
    Ok(certs)
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer, const N: usize>(
        v: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

mod hex_opt {
    pub fn serialize<S: serde::Serializer, const N: usize>(
        v: &Option<[u8; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_hash_needs_a_zero_tail() {
        let mut td = TdReport {
            tee_tcb_svn: [0; 16],
            mr_seam: Measurement([0; 48]),
            mr_signer_seam: Measurement([0; 48]),
            seam_attributes: [0; 8],
            td_attributes: TdAttributes([0; 8]),
            xfam: TdxXfam([0; 8]),
            mr_td: Measurement([0; 48]),
            mr_config_id: Measurement([0; 48]),
            mr_owner: Measurement([0; 48]),
            mr_owner_config: Measurement([0; 48]),
            rtmrs: [Measurement([0; 48]); 4],
            report_data: ReportData([0; 64]),
            tee_tcb_svn2: None,
            mr_service_td: None,
        };
        td.mr_config_id.0[..32].copy_from_slice(&[7; 32]);
        assert_eq!(td.policy_hash(), Ok(HostData([7; 32])));
        td.mr_config_id.0[47] = 1;
        assert!(td.policy_hash().is_err());
        assert!(!td.debug());
        td.td_attributes.0[0] = 1;
        assert!(td.debug());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(TdQuote::parse(&[]), Err(QuoteError::Length(0))));
        assert!(TdQuote::parse(&[4, 0, 2, 0]).is_err());
        assert!(TdQuote::parse(&[0xff; 700]).is_err());
        assert!(matches!(
            TdQuote::parse(&vec![0; MAX_QUOTE_LEN + 1]),
            Err(QuoteError::Length(_))
        ));
    }

    #[test]
    fn pem_chain_needs_two_certificates() {
        assert!(pck_chain_der(b"\xff\xfe").is_err());
        assert!(pck_chain_der(b"hello").is_err());
    }
}
