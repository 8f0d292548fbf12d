//! Verification of TDX quotes with their collateral.
//!
//! `dcap-qvl` does the DCAP work: the PCK chain to the root with both CRLs, the QE report
//! signature and binding, the quote signature, the TCB Info and QE Identity signatures and
//! their signer chains, TCB level matching and the TDX module identity. Around it this module
//! adds what Nunki needs: the root pinned by SHA-256 fingerprint (with its own error), debug
//! TDs refused up front, collateral freshness checked with typed errors naming the item and its
//! window, an injected "now", and `dcap-qvl`'s errors mapped to the step that failed.
//!
//! The first quote of a TD under given collateral costs a full verification. Its verdict is
//! cached under a digest of everything that verdict depends on (collateral, root, header, the
//! TD report except REPORT_DATA, and the signature data except the quote signature), together
//! with the time window in which every piece of collateral and every certificate is valid.
//! Later quotes from the same TD (new REPORT_DATA for every aTLS handshake) then cost one
//! ECDSA P-256 verification of the quote signature plus hashing.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::SystemTime;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey};
use dcap_qvl::configs::RustCryptoConfig;
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::{Policy, QuoteClaims};
use nunki_manifest::{Piid, Sha256Fingerprint, TdxTcbStatus};
use serde::Serialize;

use super::collateral::{CollateralError, CollateralInfo, TdxCollateral, Window};
use super::quote::{QuoteError, TdQuote};
use super::roots;
use crate::time_util::{rfc3339, unix_seconds};

/// Most verdicts kept in memory.
const CACHE_LIMIT: usize = 1024;

/// Which step of `dcap-qvl`'s verification failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DcapStep {
    /// The TCB Info signature.
    TcbInfoSignature,
    /// The QE Identity signature.
    QeIdentitySignature,
    /// A certificate chain (PCK, TCB Info or QE Identity signer) or its revocation check.
    CertificateChain,
    /// A certificate is listed in a CRL.
    CertificateRevoked,
    /// A CRL could not be used.
    Crl,
    /// The QE report signature by the PCK key.
    QeReportSignature,
    /// QE REPORTDATA does not bind the attestation key.
    QeReportData,
    /// The QE report does not match the QE Identity.
    QeIdentity,
    /// The quote signature by the attestation key.
    QuoteSignature,
    /// The FMSPC of the TCB Info is not the platform's.
    Fmspc,
    /// No TCB level of the TCB Info is met by the platform.
    TcbLevel,
    /// The platform TCB is revoked.
    TcbRevoked,
    /// The TDX module identity (MRSIGNERSEAM, SEAMATTRIBUTES, module TCB).
    TdxModule,
    /// TD attributes (debug, service TDs) refused.
    TdAttributes,
    /// Collateral dates.
    Expired,
    /// Anything else.
    Other,
}

impl DcapStep {
    /// Classifies a `dcap-qvl` error by its message chain.
    fn classify(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        let has = |s: &str| m.contains(s);
        if has("signature is invalid for tcb_info") {
            DcapStep::TcbInfoSignature
        } else if has("signature is invalid for qe_identity") {
            DcapStep::QeIdentitySignature
        } else if has("signature is invalid for qe_report") {
            DcapStep::QeReportSignature
        } else if has("qe report hash mismatch") || has("qe auth data") {
            DcapStep::QeReportData
        } else if has("isv enclave report signature") {
            DcapStep::QuoteSignature
        } else if has("certrevoked") {
            DcapStep::CertificateRevoked
        } else if has("crl") {
            DcapStep::Crl
        } else if has("failed to verify certificate chain") || has("certificate chain") {
            DcapStep::CertificateChain
        } else if has("fmspc mismatch") {
            DcapStep::Fmspc
        } else if has("tcb status is invalid: revoked") {
            DcapStep::TcbRevoked
        } else if has("tdx module") {
            DcapStep::TdxModule
        } else if has("no matching tcb level") || has("tcb level") {
            DcapStep::TcbLevel
        } else if has("debug") || has("service td") || has("td attributes") {
            DcapStep::TdAttributes
        } else if has("qe identity") || has("mrsigner") || has("isvprodid") {
            DcapStep::QeIdentity
        } else if has("expired") || has("in the future") {
            DcapStep::Expired
        } else {
            DcapStep::Other
        }
    }

    fn describe(self) -> &'static str {
        match self {
            DcapStep::TcbInfoSignature => "TCB Info signature",
            DcapStep::QeIdentitySignature => "QE Identity signature",
            DcapStep::CertificateChain => "certificate chain",
            DcapStep::CertificateRevoked => "certificate revoked",
            DcapStep::Crl => "CRL",
            DcapStep::QeReportSignature => "QE report signature (PCK key)",
            DcapStep::QeReportData => "QE report data (attestation key binding)",
            DcapStep::QeIdentity => "QE identity",
            DcapStep::QuoteSignature => "quote signature (attestation key)",
            DcapStep::Fmspc => "FMSPC",
            DcapStep::TcbLevel => "TCB level",
            DcapStep::TcbRevoked => "TCB revoked",
            DcapStep::TdxModule => "TDX module identity",
            DcapStep::TdAttributes => "TD attributes",
            DcapStep::Expired => "collateral dates",
            DcapStep::Other => "DCAP verification",
        }
    }
}

impl std::fmt::Display for DcapStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// Why a quote was rejected. Each variant names the failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdxVerifyError {
    /// The quote could not be parsed.
    #[error("quote: {0}")]
    Quote(#[from] QuoteError),
    /// The collateral is malformed.
    #[error("{0}")]
    Collateral(#[from] CollateralError),
    /// TDATTRIBUTES.DEBUG is set.
    #[error(
        "TD_ATTRIBUTES {0}: DEBUG is set; the host can read this TD's memory and registers, so debug TDs are always refused"
    )]
    Debug(String),
    /// A piece of collateral is not valid at the verification time.
    #[error(
        "{what} is not valid at {now} (valid {window}); fetch current collateral (Intel PCS) or pass the time the collateral was meant for"
    )]
    Stale {
        /// Which item.
        what: &'static str,
        /// Verification time.
        now: String,
        /// Its window.
        window: Window,
    },
    /// The collateral is for another kind of TEE or another platform.
    #[error("collateral mismatch: {0}")]
    Mismatch(String),
    /// A chain ends in a root that is not pinned.
    #[error(
        "{which} ends in {subject:?} with SHA-256 {fingerprint}, which is not the pinned root ({pinned})"
    )]
    UntrustedRoot {
        /// Which chain.
        which: &'static str,
        /// Subject of its last certificate.
        subject: String,
        /// Fingerprint of its last certificate.
        fingerprint: Sha256Fingerprint,
        /// The pinned root's fingerprint.
        pinned: Sha256Fingerprint,
    },
    /// A `dcap-qvl` check failed.
    #[error("{step}: {reason}")]
    Dcap {
        /// Which step.
        step: DcapStep,
        /// `dcap-qvl`'s message chain.
        reason: String,
    },
    /// The root certificate itself is unusable.
    #[error("trust root: {0}")]
    Root(String),
}

impl TdxVerifyError {
    /// The `dcap-qvl` step, for errors that came from it.
    pub fn step(&self) -> Option<DcapStep> {
        match self {
            TdxVerifyError::Dcap { step, .. } => Some(*step),
            _ => None,
        }
    }
}

/// Which root a verified quote chains to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TdxRootKind {
    /// The built-in Intel SGX Root CA.
    Intel,
    /// Another root pinned explicitly (test PKIs); never accepted by manifest reference values.
    Pinned,
}

/// The TCB appraisal of a verified quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcbVerdict {
    /// Converged status (platform, TDX module, QE; TD relaunch for TDX 1.5).
    pub status: TdxTcbStatus,
    /// Intel security advisories of the matched levels.
    pub advisory_ids: Vec<String>,
    /// Platform TCB level status (with the TDX module).
    pub platform_status: TdxTcbStatus,
    /// QE TCB level status.
    pub qe_status: TdxTcbStatus,
    /// tcbDate of the matched platform level.
    pub tcb_date: String,
    /// Lower of the TCB Info's and QE Identity's `tcbEvaluationDataNumber`.
    pub tcb_evaluation_data_number: u32,
}

/// Platform identity from the PCK certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PckIdentity {
    /// FMSPC (hex).
    pub fmspc: String,
    /// PCE ID (hex).
    pub pce_id: String,
    /// PCE SVN.
    pub pce_svn: u16,
    /// Platform Instance ID (Platform CA certificates only).
    pub piid: Option<Piid>,
}

/// What a full verification established, cached per TD and collateral.
#[derive(Debug)]
struct Verdict {
    tcb: TcbVerdict,
    pck: PckIdentity,
    /// Every collateral item and certificate is valid inside this window.
    window: Window,
    key: ParsedPublicKey,
}

/// A quote whose signatures, chains, CRLs and TCB were verified. Only [`TdxVerifier`] builds
/// one.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedQuote {
    quote: TdQuote,
    tcb: TcbVerdict,
    pck: PckIdentity,
    root: TdxRootKind,
    root_fingerprint: Sha256Fingerprint,
    valid_until: String,
}

impl VerifiedQuote {
    /// The decoded quote.
    pub fn quote(&self) -> &TdQuote {
        &self.quote
    }
    /// The TCB appraisal.
    pub fn tcb(&self) -> &TcbVerdict {
        &self.tcb
    }
    /// The PCK identity.
    pub fn pck(&self) -> &PckIdentity {
        &self.pck
    }
    /// Intel or a pinned test root.
    pub fn root(&self) -> TdxRootKind {
        self.root
    }
    /// SHA-256 of the root certificate.
    pub fn root_fingerprint(&self) -> Sha256Fingerprint {
        self.root_fingerprint
    }
    /// When the earliest piece of collateral or certificate expires (RFC 3339).
    pub fn valid_until(&self) -> &str {
        &self.valid_until
    }
}

/// Verifies TDX quotes against one pinned root, caching verdicts.
pub struct TdxVerifier {
    root_der: Vec<u8>,
    root_fingerprint: Sha256Fingerprint,
    root_kind: TdxRootKind,
    verdicts: RwLock<HashMap<[u8; 32], Arc<Verdict>>>,
    infos: RwLock<HashMap<[u8; 32], Arc<CollateralInfo>>>,
}

impl std::fmt::Debug for TdxVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdxVerifier")
            .field("root", &self.root_kind)
            .field("root_fingerprint", &self.root_fingerprint)
            .finish_non_exhaustive()
    }
}

impl Default for TdxVerifier {
    fn default() -> Self {
        Self::intel()
    }
}

fn cache_get<V: Clone>(map: &RwLock<HashMap<[u8; 32], V>>, k: &[u8; 32]) -> Option<V> {
    map.read().ok().and_then(|m| m.get(k).cloned())
}

fn cache_put<V>(map: &RwLock<HashMap<[u8; 32], V>>, k: [u8; 32], v: V) {
    if let Ok(mut m) = map.write() {
        if m.len() >= CACHE_LIMIT {
            m.clear();
        }
        m.insert(k, v);
    }
}

/// Accepts every appraisal: Nunki applies its own policy to the claims afterwards.
struct ClaimsOnly;

impl Policy for ClaimsOnly {
    fn validate(&self, _claims: &QuoteClaims) -> anyhow::Result<()> {
        Ok(())
    }
}

fn status(s: dcap_qvl::TcbStatus) -> TdxTcbStatus {
    use dcap_qvl::TcbStatus as D;
    match s {
        D::UpToDate => TdxTcbStatus::UpToDate,
        D::SWHardeningNeeded => TdxTcbStatus::SWHardeningNeeded,
        D::ConfigurationNeeded => TdxTcbStatus::ConfigurationNeeded,
        D::ConfigurationAndSWHardeningNeeded => TdxTcbStatus::ConfigurationAndSWHardeningNeeded,
        D::OutOfDate => TdxTcbStatus::OutOfDate,
        D::OutOfDateConfigurationNeeded => TdxTcbStatus::OutOfDateConfigurationNeeded,
        D::TDRelaunchAdvised => TdxTcbStatus::TDRelaunchAdvised,
        D::TDRelaunchAdvisedConfigurationNeeded => {
            TdxTcbStatus::TDRelaunchAdvisedConfigurationNeeded
        }
        D::Revoked => TdxTcbStatus::Revoked,
    }
}

fn sha256(data: &[u8]) -> Sha256Fingerprint {
    Sha256Fingerprint(nunki_manifest::sha256(data))
}

fn last_cert_of(which: &'static str, pem: &str) -> Result<Vec<u8>, TdxVerifyError> {
    crate::snp::certs::pem_or_der_certs(pem.as_bytes())
        .ok()
        .and_then(|v| v.into_iter().last())
        .ok_or_else(|| {
            TdxVerifyError::Collateral(CollateralError::Field {
                field: which,
                reason: "holds no PEM certificate".into(),
            })
        })
}

fn subject_of(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "an unparsable certificate".into())
}

impl TdxVerifier {
    /// A verifier trusting only the built-in Intel SGX Root CA (pinned by SHA-256).
    pub fn intel() -> Self {
        Self::build(
            roots::INTEL_SGX_ROOT_CA_DER.to_vec(),
            sha256(roots::INTEL_SGX_ROOT_CA_DER),
            TdxRootKind::Intel,
        )
    }

    /// A verifier trusting only `root_der` (a test PKI's root). Quotes it verifies report
    /// [`TdxRootKind::Pinned`], which manifest reference values never accept.
    pub fn with_pinned_root(root_der: Vec<u8>) -> Self {
        let fp = sha256(&root_der);
        let kind = if fp == roots::intel_root_fingerprint() {
            TdxRootKind::Intel
        } else {
            TdxRootKind::Pinned
        };
        Self::build(root_der, fp, kind)
    }

    fn build(root_der: Vec<u8>, root_fingerprint: Sha256Fingerprint, kind: TdxRootKind) -> Self {
        Self {
            root_der,
            root_fingerprint,
            root_kind: kind,
            verdicts: RwLock::new(HashMap::new()),
            infos: RwLock::new(HashMap::new()),
        }
    }

    /// The pinned root's fingerprint.
    pub fn root_fingerprint(&self) -> Sha256Fingerprint {
        self.root_fingerprint
    }

    /// Verifies `raw` (a quote, trailing bytes allowed) with `collateral` at `now`.
    pub fn verify(
        &self,
        raw: &[u8],
        collateral: &TdxCollateral,
        now: SystemTime,
    ) -> Result<VerifiedQuote, TdxVerifyError> {
        let now = unix_seconds(now);
        if self.root_kind == TdxRootKind::Intel && !roots::builtin_root_intact() {
            return Err(TdxVerifyError::Root(
                "the built-in Intel SGX Root CA does not match its pinned SHA-256 fingerprint"
                    .into(),
            ));
        }
        let quote = TdQuote::parse(raw)?;
        if quote.td.debug() {
            return Err(TdxVerifyError::Debug(quote.td.td_attributes.to_hex()));
        }
        let info = self.info(collateral)?;
        check_fresh(&info, now)?;
        if info.tcb_info_id != "TDX" || info.qe_identity_id != "TD_QE" {
            return Err(TdxVerifyError::Mismatch(format!(
                "TCB Info id {:?} and QE Identity id {:?}; a TDX quote needs \"TDX\" and \"TD_QE\"",
                info.tcb_info_id, info.qe_identity_id
            )));
        }
        self.check_roots(&quote, collateral)?;
        let key = cache_key(raw, &quote, collateral, &self.root_fingerprint);
        let cached = key.and_then(|k| cache_get(&self.verdicts, &k));
        let verdict = match cached {
            Some(v) if v.window.contains(now) => {
                let signed = raw.get(..quote.signed_len).ok_or_else(|| {
                    TdxVerifyError::Quote(QuoteError::Decode("truncated signed range".into()))
                })?;
                v.key
                    .verify_sig(signed, quote.signature())
                    .map_err(|_| TdxVerifyError::Dcap {
                        step: DcapStep::QuoteSignature,
                        reason: "ECDSA P-256 signature over the header and TD report does not verify with the attestation key".into(),
                    })?;
                v
            }
            _ => {
                let v = Arc::new(self.full(raw, &quote, collateral, now)?);
                if let Some(k) = key {
                    cache_put(&self.verdicts, k, v.clone());
                }
                v
            }
        };
        Ok(VerifiedQuote {
            quote,
            tcb: verdict.tcb.clone(),
            pck: verdict.pck.clone(),
            root: self.root_kind,
            root_fingerprint: self.root_fingerprint,
            valid_until: rfc3339(verdict.window.until),
        })
    }

    fn info(&self, c: &TdxCollateral) -> Result<Arc<CollateralInfo>, TdxVerifyError> {
        let k = c.digest();
        if let Some(i) = cache_get(&self.infos, &k) {
            return Ok(i);
        }
        let i = Arc::new(c.info()?);
        cache_put(&self.infos, k, i.clone());
        Ok(i)
    }

    /// Every chain must end in the pinned root, so the failure names the chain instead of
    /// surfacing as a generic path-building error.
    fn check_roots(&self, quote: &TdQuote, c: &TdxCollateral) -> Result<(), TdxVerifyError> {
        let pck_root = quote
            .pck_chain
            .last()
            .cloned()
            .ok_or(TdxVerifyError::Quote(QuoteError::PckChain("empty".into())))?;
        let chains = [
            ("the quote's PCK certificate chain", pck_root),
            (
                "the TCB Info issuer chain",
                last_cert_of("tcb_info_issuer_chain", &c.tcb_info_issuer_chain)?,
            ),
            (
                "the QE Identity issuer chain",
                last_cert_of("qe_identity_issuer_chain", &c.qe_identity_issuer_chain)?,
            ),
            (
                "the PCK CRL issuer chain",
                last_cert_of("pck_crl_issuer_chain", &c.pck_crl_issuer_chain)?,
            ),
        ];
        for (which, der) in chains {
            let fp = sha256(&der);
            if fp != self.root_fingerprint {
                return Err(TdxVerifyError::UntrustedRoot {
                    which,
                    subject: subject_of(&der),
                    fingerprint: fp,
                    pinned: self.root_fingerprint,
                });
            }
        }
        Ok(())
    }

    fn full(
        &self,
        raw: &[u8],
        quote: &TdQuote,
        collateral: &TdxCollateral,
        now: i64,
    ) -> Result<Verdict, TdxVerifyError> {
        let now_secs = u64::try_from(now).map_err(|_| TdxVerifyError::Stale {
            what: "the verification time",
            now: rfc3339(now),
            window: Window { from: 0, until: 0 },
        })?;
        let claims = QuoteVerifier::<RustCryptoConfig>::new_with_config(self.root_der.clone())
            .verify_with_policy(raw, collateral.to_dcap(), now_secs, &ClaimsOnly)
            .map_err(|e| {
                let reason = format!("{e:#}");
                TdxVerifyError::Dcap {
                    step: DcapStep::classify(&reason),
                    reason,
                }
            })?;
        let mut ak = [0x04u8; 65];
        if let Some(dst) = ak.get_mut(1..) {
            dst.copy_from_slice(&quote.attestation_key);
        }
        let key = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, ak).map_err(|e| {
            TdxVerifyError::Dcap {
                step: DcapStep::QuoteSignature,
                reason: format!("attestation key is not a P-256 point: {e}"),
            }
        })?;
        let pck = &claims.platform.pck;
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ok(Verdict {
            tcb: TcbVerdict {
                status: status(claims.tcb.status),
                advisory_ids: claims.tcb.advisory_ids.clone(),
                platform_status: status(claims.platform.tcb_level.tcb_status),
                qe_status: status(claims.qe.tcb_level.tcb_status),
                tcb_date: claims.platform.tcb_level.tcb_date.clone(),
                tcb_evaluation_data_number: claims.tcb.eval_data_number,
            },
            pck: PckIdentity {
                fmspc: hex::encode(pck.fmspc),
                pce_id: hex::encode(&pck.pce_id),
                pce_svn: pck.pce_svn,
                piid: pck.platform_instance_id.map(Piid),
            },
            window: Window {
                from: to_i64(claims.latest_issue_date),
                until: to_i64(claims.earliest_expiration_date),
            },
            key,
        })
    }
}

fn check_fresh(info: &CollateralInfo, now: i64) -> Result<(), TdxVerifyError> {
    for (what, w) in [
        ("the TCB Info", info.tcb_info_window),
        ("the QE Identity", info.qe_identity_window),
        ("the PCK CRL", info.pck_crl.window),
        ("the root CA CRL", info.root_ca_crl.window),
    ] {
        if !w.contains(now) {
            return Err(TdxVerifyError::Stale {
                what,
                now: rfc3339(now),
                window: w,
            });
        }
    }
    Ok(())
}

/// Offset of REPORT_DATA inside the signed range: header, the v5 body descriptor, then 520
/// bytes of TD report before it.
fn report_data_offset(quote: &TdQuote) -> usize {
    let descriptor = if quote.header.version == 5 { 6 } else { 0 };
    super::quote::HEADER_LEN + descriptor + 520
}

/// Digest of everything a verdict depends on, or `None` when the layout is not the expected
/// one (then nothing is cached).
fn cache_key(
    raw: &[u8],
    quote: &TdQuote,
    collateral: &TdxCollateral,
    root: &Sha256Fingerprint,
) -> Option<[u8; 32]> {
    let rd = report_data_offset(quote);
    let signed = raw.get(..quote.signed_len)?;
    let (before, rest) = (signed.get(..rd)?, signed.get(rd..)?);
    if rest.get(..64)? != quote.td.report_data.0.as_slice() {
        return None;
    }
    let after = rest.get(64..)?;
    let sig_len = usize::try_from(u32::from_le_bytes(
        raw.get(quote.signed_len..quote.signed_len + 4)?
            .try_into()
            .ok()?,
    ))
    .ok()?;
    let sig_data = raw.get(quote.signed_len + 4..quote.signed_len + 4 + sig_len)?;
    let unsigned_part = sig_data.get(64..)?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&collateral.digest());
    ctx.update(root.as_bytes());
    for part in [before, after, unsigned_part] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Some(out)
}

/// The process-wide verifier trusting Intel's root (verdict cache shared by all callers).
pub fn shared_intel_verifier() -> &'static TdxVerifier {
    static V: OnceLock<TdxVerifier> = OnceLock::new();
    V.get_or_init(TdxVerifier::intel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcap_messages_map_to_steps() {
        for (m, step) in [
            (
                "Signature is invalid for tcb_info in quote_collateral",
                DcapStep::TcbInfoSignature,
            ),
            (
                "Signature is invalid for qe_identity in quote_collateral",
                DcapStep::QeIdentitySignature,
            ),
            (
                "Signature is invalid for qe_report in quote",
                DcapStep::QeReportSignature,
            ),
            ("QE report hash mismatch", DcapStep::QeReportData),
            (
                "ISV enclave report signature is invalid",
                DcapStep::QuoteSignature,
            ),
            ("No matching TCB level found", DcapStep::TcbLevel),
            (
                "Failed to verify certificate chain: UnknownIssuer",
                DcapStep::CertificateChain,
            ),
            (
                "Failed to verify certificate chain: CertRevoked",
                DcapStep::CertificateRevoked,
            ),
            ("TCB status is invalid: Revoked", DcapStep::TcbRevoked),
            ("Fmspc mismatch", DcapStep::Fmspc),
            ("Debug mode is enabled", DcapStep::TdAttributes),
            ("something new", DcapStep::Other),
        ] {
            assert_eq!(DcapStep::classify(m), step, "{m}");
        }
    }
}
