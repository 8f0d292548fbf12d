//! Verification of SEV-SNP evidence: report signature, the ARK → ASK/ASVK → VCEK/VLEK chain,
//! the VCEK's TCB and hardware-ID extensions, validity windows and CRLs.
//!
//! The chain of a given endorsement key is verified once and cached; later reports signed by
//! the same key cost one ECDSA P-384 verification plus cheap comparisons.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::SystemTime;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey};
use nunki_manifest::{Sha256Fingerprint, SnpProduct};
use serde::Serialize;

use super::certs::{self, CertError, CertInfo, EndorsementExtensions, KeyKind};
use super::crl::{CrlError, VerifiedCrl};
use super::report::{Report, ReportError, SIG_ALGO_ECDSA_P384_SHA384, SIGNED_LEN, SigningKey};
use super::roots;
use super::tcb::{TcbLayout, TcbVersion};
use crate::time_util::{rfc3339, unix_seconds};

/// Maximum number of verified endorsement keys (and CRLs) kept in memory.
const CACHE_LIMIT: usize = 1024;

/// Why evidence was rejected. Each variant names the failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The report could not be parsed.
    #[error("report: {0}")]
    Report(#[from] ReportError),
    /// SIGNATURE_ALGO is not ECDSA P-384/SHA-384.
    #[error("report SIGNATURE_ALGO is {0}, only 1 (ECDSA P-384 with SHA-384) is defined")]
    SignatureAlgorithm(u32),
    /// KEY_INFO names no usable signing key.
    #[error(
        "report KEY_INFO.SIGNING_KEY is {0:?}; only VCEK (0) and VLEK (1) signed reports can be verified"
    )]
    SigningKey(SigningKey),
    /// The report names one key type, the certificate is the other.
    #[error(
        "report says it was signed by the {report:?}, but the supplied certificate is a {cert:?}"
    )]
    SignerMismatch {
        /// From KEY_INFO.
        report: SignerKind,
        /// From the certificate's subject.
        cert: SignerKind,
    },
    /// A certificate problem.
    #[error("{0}")]
    Certificate(#[from] CertError),
    /// The ARK is not one of the trusted roots.
    #[error(
        "ARK {subject:?} with SHA-256 {fingerprint} is not trusted: it is not a built-in AMD root{hint}"
    )]
    UntrustedRoot {
        /// Fingerprint of the offered ARK.
        fingerprint: Sha256Fingerprint,
        /// Subject of the offered ARK.
        subject: String,
        /// How to fix it.
        hint: String,
    },
    /// The chain supplied has an unexpected shape.
    #[error("certificate chain: {0}")]
    Chain(String),
    /// Product disagreement between report, certificate and root.
    #[error("product mismatch: {0}")]
    Product(String),
    /// A certificate is outside its validity window at the verification time.
    #[error("{which}: not valid at {now} (valid {not_before} .. {not_after})")]
    Validity {
        /// Which certificate.
        which: String,
        /// Verification time.
        now: String,
        /// notBefore.
        not_before: String,
        /// notAfter.
        not_after: String,
    },
    /// CRL problem.
    #[error("{0}")]
    Crl(#[from] CrlError),
    /// A certificate is listed in the CRL.
    #[error("{which} (serial {serial}) is revoked by the CRL")]
    Revoked {
        /// Which certificate.
        which: String,
        /// Its serial.
        serial: String,
    },
    /// A VCEK TCB extension does not equal REPORTED_TCB.
    #[error("{ext}: certificate has {cert}, report REPORTED_TCB has {report}")]
    TcbMismatch {
        /// Extension name (blSPL, ...).
        ext: &'static str,
        /// Certificate value.
        cert: u8,
        /// Report value.
        report: u8,
    },
    /// hwID does not equal CHIP_ID.
    #[error("VCEK hwID {cert} does not equal report CHIP_ID {report}")]
    ChipId {
        /// Certificate hwID (hex).
        cert: String,
        /// Report CHIP_ID (hex).
        report: String,
    },
    /// A must-be-zero (or must-be-one) field of the report has the wrong value.
    #[error("report: {0}")]
    Reserved(String),
    /// The ECDSA signature over the report does not verify.
    #[error(
        "report signature: ECDSA P-384 signature over bytes 0x000..0x2A0 does not verify with the {0:?} key"
    )]
    ReportSignature(SignerKind),
}

/// Which key signed a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SignerKind {
    /// Versioned Chip Endorsement Key (per chip and TCB).
    Vcek,
    /// Versioned Loaded Endorsement Key (per cloud provider).
    Vlek,
}

impl std::fmt::Display for SignerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignerKind::Vcek => "VCEK",
            SignerKind::Vlek => "VLEK",
        })
    }
}

/// Which kind of root a verified report chains to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RootKind {
    /// A genuine AMD root (built in).
    Amd,
    /// A simulated root, trusted only because its fingerprint was pinned.
    Simulated,
}

/// SEV-SNP evidence as it arrives: report plus endorsement key and optional chain and CRL.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// The 0x4A0-byte report.
    pub report: &'a [u8],
    /// The VCEK or VLEK certificate (DER).
    pub endorsement_key: &'a [u8],
    /// Intermediate (ASK/ASVK) and optionally ARK, DER, in any order. `None`: built-in AMD.
    pub chain: Option<&'a [Vec<u8>]>,
    /// A DER CRL signed by the ARK.
    pub crl: Option<&'a [u8]>,
}

/// The trusted roots: the built-in AMD ARKs and any pinned simulated ARKs.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    amd: bool,
    simulated: Vec<Sha256Fingerprint>,
}

impl TrustStore {
    /// Trusts the built-in AMD roots (Milan, Genoa, Turin).
    pub fn amd() -> Self {
        Self {
            amd: true,
            simulated: Vec::new(),
        }
    }

    /// Trusts nothing (add simulated roots explicitly).
    pub fn none() -> Self {
        Self::default()
    }

    /// Additionally trusts the simulated ARK with this SHA-256 fingerprint.
    pub fn with_simulated_root(mut self, fingerprint: Sha256Fingerprint) -> Self {
        if !self.simulated.contains(&fingerprint) {
            self.simulated.push(fingerprint);
        }
        self
    }

    /// Whether AMD roots are trusted.
    pub fn trusts_amd(&self) -> bool {
        self.amd
    }

    /// The pinned simulated root fingerprints.
    pub fn simulated_roots(&self) -> &[Sha256Fingerprint] {
        &self.simulated
    }
}

/// The built-in AMD certificates, parsed and checked once per process.
#[derive(Debug)]
struct BuiltinRoot {
    product: SnpProduct,
    ark: Arc<CertInfo>,
    ask: Arc<CertInfo>,
    asvk: Arc<CertInfo>,
}

fn load_builtin() -> Result<Vec<BuiltinRoot>, String> {
    let mut out: Vec<BuiltinRoot> = Vec::new();
    for product in SnpProduct::ALL {
        let mut ark: Option<Arc<CertInfo>> = None;
        let (mut ask, mut asvk) = (None, None);
        for b in roots::BUNDLES.iter().filter(|b| b.product == product) {
            let ders = certs::pem_or_der_certs(b.pem.as_bytes())?;
            let [i_der, a_der] = ders.as_slice() else {
                return Err(format!(
                    "built-in {product} bundle must hold 2 certificates"
                ));
            };
            let which = if b.vlek { "ASVK" } else { "ASK" };
            let i = CertInfo::from_der(&format!("built-in {which}-{product}"), i_der)
                .map_err(|e| e.to_string())?;
            let a = CertInfo::from_der(&format!("built-in ARK-{product}"), a_der)
                .map_err(|e| e.to_string())?;
            if i.fingerprint.to_hex() != b.intermediate_sha256
                || a.fingerprint.to_hex() != b.ark_sha256
            {
                return Err(format!(
                    "built-in {product} certificates do not match their pinned SHA-256 fingerprints"
                ));
            }
            check_ark(&a, product).map_err(|e| e.to_string())?;
            check_intermediate(&i, &a, product, b.vlek).map_err(|e| e.to_string())?;
            ark = Some(Arc::new(a));
            if b.vlek {
                asvk = Some(Arc::new(i));
            } else {
                ask = Some(Arc::new(i));
            }
        }
        let (Some(ask), Some(asvk)) = (ask, asvk) else {
            return Err(format!("built-in roots lack an intermediate for {product}"));
        };
        let ark = ark.ok_or_else(|| format!("built-in roots lack ARK-{product}"))?;
        out.push(BuiltinRoot {
            product,
            ark,
            ask,
            asvk,
        });
    }
    Ok(out)
}

fn builtin() -> Result<&'static [BuiltinRoot], VerifyError> {
    static ROOTS: OnceLock<Result<Vec<BuiltinRoot>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(load_builtin)
        .as_deref()
        .map_err(|e| VerifyError::Chain(format!("built-in AMD roots are corrupt: {e}")))
}

/// The SHA-256 fingerprint of the built-in ARK of `product`.
pub fn builtin_ark_fingerprint(product: SnpProduct) -> Sha256Fingerprint {
    let hex = match product {
        SnpProduct::Milan => roots::ARK_MILAN_SHA256,
        SnpProduct::Genoa => roots::ARK_GENOA_SHA256,
        SnpProduct::Turin => roots::ARK_TURIN_SHA256,
    };
    hex.parse().unwrap_or(Sha256Fingerprint([0; 32]))
}

fn check_ark(ark: &CertInfo, product: SnpProduct) -> Result<(), VerifyError> {
    ark.require_amd_profile()?;
    let want = format!("ARK-{product}");
    if ark.subject_cn.as_deref() != Some(want.as_str()) {
        return Err(ark
            .profile(format!(
                "subject CN must be {want}, is {:?}",
                ark.subject_cn
            ))
            .into());
    }
    if !ark.is_ca {
        return Err(ark
            .profile("basicConstraints must mark it as a CA".into())
            .into());
    }
    ark.verify_issued_by(ark)?;
    Ok(())
}

fn check_intermediate(
    inter: &CertInfo,
    ark: &CertInfo,
    product: SnpProduct,
    vlek: bool,
) -> Result<(), VerifyError> {
    inter.require_amd_profile()?;
    let want = if vlek {
        format!("SEV-VLEK-{product}")
    } else {
        format!("SEV-{product}")
    };
    if inter.subject_cn.as_deref() != Some(want.as_str()) {
        return Err(inter
            .profile(format!(
                "subject CN must be {want}, is {:?}",
                inter.subject_cn
            ))
            .into());
    }
    if !inter.is_ca {
        return Err(inter
            .profile("basicConstraints must mark it as a CA".into())
            .into());
    }
    inter.verify_issued_by(ark)?;
    Ok(())
}

/// An endorsement key whose chain to a trusted root was verified.
#[derive(Debug)]
struct EndorsedKey {
    product: SnpProduct,
    signer: SignerKind,
    root: RootKind,
    root_fingerprint: Sha256Fingerprint,
    ext: EndorsementExtensions,
    /// Decoded once when the chain is verified, so cached reports skip point decoding.
    key: ParsedPublicKey,
    /// (name, notBefore, notAfter) of VCEK, intermediate, ARK.
    windows: Vec<(String, i64, i64)>,
    /// (name, serial hex) of the certificates a CRL from the ARK may revoke.
    serials: Vec<(String, String)>,
    ark: Arc<CertInfo>,
}

/// A report whose signature, chain and certificate bindings were verified. Only
/// [`SnpVerifier::verify`] can build one.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    report: Report,
    product: SnpProduct,
    signer: SignerKind,
    root: RootKind,
    root_fingerprint: Sha256Fingerprint,
    endorsement: EndorsementExtensions,
    crl_checked: bool,
}

impl VerifiedReport {
    /// The parsed report.
    pub fn report(&self) -> &Report {
        &self.report
    }
    /// The product whose root verified it.
    pub fn product(&self) -> SnpProduct {
        self.product
    }
    /// VCEK or VLEK.
    pub fn signer(&self) -> SignerKind {
        self.signer
    }
    /// AMD or simulated root.
    pub fn root(&self) -> RootKind {
        self.root
    }
    /// SHA-256 of the ARK.
    pub fn root_fingerprint(&self) -> Sha256Fingerprint {
        self.root_fingerprint
    }
    /// The endorsement key's AMD extensions.
    pub fn endorsement(&self) -> &EndorsementExtensions {
        &self.endorsement
    }
    /// Whether a CRL was checked.
    pub fn crl_checked(&self) -> bool {
        self.crl_checked
    }
    /// The TCB layout of the verified product.
    pub fn layout(&self) -> TcbLayout {
        TcbLayout::for_product(self.product)
    }
    /// The four TCBs, decoded with the verified product's layout.
    pub fn tcbs(&self) -> [(&'static str, TcbVersion); 4] {
        self.report.tcbs(self.layout())
    }
}

/// Verifies SEV-SNP evidence against a [`TrustStore`], caching verified chains.
#[derive(Debug)]
pub struct SnpVerifier {
    trust: TrustStore,
    keys: RwLock<HashMap<[u8; 32], Arc<EndorsedKey>>>,
    crls: RwLock<HashMap<[u8; 32], Arc<VerifiedCrl>>>,
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

impl SnpVerifier {
    /// A verifier trusting `trust`.
    pub fn new(trust: TrustStore) -> Self {
        Self {
            trust,
            keys: RwLock::new(HashMap::new()),
            crls: RwLock::new(HashMap::new()),
        }
    }

    /// The trust store.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// Verifies `evidence` at time `now`.
    pub fn verify(
        &self,
        evidence: &Evidence<'_>,
        now: SystemTime,
    ) -> Result<VerifiedReport, VerifyError> {
        let now = unix_seconds(now);
        let report = Report::parse(evidence.report)?;
        if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(VerifyError::SignatureAlgorithm(report.signature_algo));
        }
        let report_signer = match report.key_info.signing_key() {
            SigningKey::Vcek => SignerKind::Vcek,
            SigningKey::Vlek => SignerKind::Vlek,
            other => return Err(VerifyError::SigningKey(other)),
        };
        check_must_be_zero(&report, evidence.report)?;
        let key = self.endorsed_key(evidence)?;
        if report.version < 3 && key.product.has_fmc() {
            return Err(VerifyError::Product(format!(
                "a version {} report cannot come from {} (its firmware writes v3 or later)",
                report.version, key.product
            )));
        }
        if key.signer != report_signer {
            return Err(VerifyError::SignerMismatch {
                report: report_signer,
                cert: key.signer,
            });
        }
        if let Some(cpuid) = report.cpuid_product() {
            let p = cpuid?;
            if p != key.product {
                return Err(VerifyError::Product(format!(
                    "report CPUID says {p}, the {:?} is for {} ({:?})",
                    key.signer, key.product, key.ext.product_name
                )));
            }
        }
        check_windows(&key, now)?;
        let crl_checked = match evidence.crl {
            Some(der) => {
                let crl = self.verified_crl(der, &key.ark)?;
                crl.check_time(now)?;
                for (which, serial) in &key.serials {
                    if crl.is_revoked(serial) {
                        return Err(VerifyError::Revoked {
                            which: which.clone(),
                            serial: serial.clone(),
                        });
                    }
                }
                true
            }
            None => false,
        };
        check_tcb_and_chip(&report, &key)?;
        let fixed = report.signature.to_fixed_p384().ok_or_else(|| {
            VerifyError::Reserved(
                "signature R or S has non-zero bytes above the 48 bytes of a P-384 scalar".into(),
            )
        })?;
        let signed = evidence
            .report
            .get(..SIGNED_LEN)
            .ok_or(VerifyError::Report(ReportError::Length(
                evidence.report.len(),
            )))?;
        key.key
            .verify_sig(signed, &fixed)
            .map_err(|_| VerifyError::ReportSignature(key.signer))?;
        Ok(VerifiedReport {
            report,
            product: key.product,
            signer: key.signer,
            root: key.root,
            root_fingerprint: key.root_fingerprint,
            endorsement: key.ext.clone(),
            crl_checked,
        })
    }

    /// Verifies only the chain of an endorsement key (no report), e.g. to check a VCEK fetched
    /// from KDS, including its validity window at `now`.
    pub fn verify_endorsement_key(
        &self,
        endorsement_key: &[u8],
        chain: Option<&[Vec<u8>]>,
        now: SystemTime,
    ) -> Result<(SnpProduct, SignerKind, RootKind, EndorsementExtensions), VerifyError> {
        let now = unix_seconds(now);
        let key = self.endorsed_key(&Evidence {
            report: &[],
            endorsement_key,
            chain,
            crl: None,
        })?;
        check_windows(&key, now)?;
        Ok((key.product, key.signer, key.root, key.ext.clone()))
    }

    fn verified_crl(&self, der: &[u8], ark: &CertInfo) -> Result<Arc<VerifiedCrl>, VerifyError> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(der);
        ctx.update(ark.fingerprint.as_bytes());
        let k = to32(ctx.finish());
        if let Some(c) = cache_get(&self.crls, &k) {
            return Ok(c);
        }
        let crl = Arc::new(VerifiedCrl::verify(der, ark)?);
        cache_put(&self.crls, k, crl.clone());
        Ok(crl)
    }

    fn endorsed_key(&self, ev: &Evidence<'_>) -> Result<Arc<EndorsedKey>, VerifyError> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&(ev.endorsement_key.len() as u64).to_le_bytes());
        ctx.update(ev.endorsement_key);
        match ev.chain {
            Some(chain) => {
                for c in chain {
                    ctx.update(&(c.len() as u64).to_le_bytes());
                    ctx.update(c);
                }
            }
            None => ctx.update(b"built-in"),
        }
        let k = to32(ctx.finish());
        if let Some(key) = cache_get(&self.keys, &k) {
            return Ok(key);
        }
        let key = Arc::new(self.verify_chain(ev)?);
        cache_put(&self.keys, k, key.clone());
        Ok(key)
    }

    fn verify_chain(&self, ev: &Evidence<'_>) -> Result<EndorsedKey, VerifyError> {
        let leaf = CertInfo::from_der("VCEK/VLEK", ev.endorsement_key)?;
        let signer = match leaf.subject_cn.as_deref() {
            Some("SEV-VCEK") => SignerKind::Vcek,
            Some("SEV-VLEK") => SignerKind::Vlek,
            other => {
                return Err(leaf
                    .profile(format!(
                        "subject CN must be SEV-VCEK or SEV-VLEK, is {other:?}"
                    ))
                    .into());
            }
        };
        let mut leaf = leaf;
        leaf.which = match signer {
            SignerKind::Vcek => "VCEK".into(),
            SignerKind::Vlek => "VLEK".into(),
        };
        leaf.require_amd_profile()?;
        if leaf.key_kind != KeyKind::EcP384 {
            return Err(leaf
                .profile(format!(
                    "public key must be EC P-384, is {:?}",
                    leaf.key_kind
                ))
                .into());
        }
        let ext = EndorsementExtensions::from_cert(&leaf)?;
        let product = ext.product;
        let vlek = signer == SignerKind::Vlek;
        let (inter, ark, root) = match ev.chain {
            None => {
                if !self.trust.amd {
                    return Err(VerifyError::Chain(
                        "no chain supplied and the built-in AMD roots are not trusted here".into(),
                    ));
                }
                let b = builtin()?
                    .iter()
                    .find(|b| b.product == product)
                    .ok_or_else(|| VerifyError::Chain(format!("no built-in root for {product}")))?;
                let inter = if vlek { b.asvk.clone() } else { b.ask.clone() };
                (inter, b.ark.clone(), RootKind::Amd)
            }
            Some(chain) => self.resolve_chain(chain, product, vlek)?,
        };
        leaf.verify_issued_by(&inter)?;
        let windows = vec![
            (leaf.which.clone(), leaf.not_before, leaf.not_after),
            (inter.which.clone(), inter.not_before, inter.not_after),
            (ark.which.clone(), ark.not_before, ark.not_after),
        ];
        let serials = vec![
            (inter.which.clone(), inter.serial_hex()),
            (leaf.which.clone(), leaf.serial_hex()),
        ];
        Ok(EndorsedKey {
            product,
            signer,
            root,
            root_fingerprint: ark.fingerprint,
            ext,
            key: ParsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, &leaf.public_key)
                .map_err(|e| leaf.profile(format!("EC P-384 public key is invalid: {e}")))?,
            windows,
            serials,
            ark,
        })
    }

    /// Interprets a supplied chain: an intermediate and (optionally) the ARK.
    fn resolve_chain(
        &self,
        chain: &[Vec<u8>],
        product: SnpProduct,
        vlek: bool,
    ) -> Result<(Arc<CertInfo>, Arc<CertInfo>, RootKind), VerifyError> {
        let inter_name = if vlek { "ASVK" } else { "ASK" };
        let mut parsed = chain
            .iter()
            .enumerate()
            .map(|(i, der)| CertInfo::from_der(&format!("chain certificate #{}", i + 1), der))
            .collect::<Result<Vec<_>, _>>()?;
        let (ark_idx, inter_idx) = match parsed.as_slice() {
            [one] if one.issuer_raw != one.subject_raw => (None, 0),
            [a, b] => match (a.issuer_raw == a.subject_raw, b.issuer_raw == b.subject_raw) {
                (false, true) => (Some(1), 0),
                (true, false) => (Some(0), 1),
                _ => {
                    return Err(VerifyError::Chain(format!(
                        "expected one {inter_name} and one self-signed ARK"
                    )));
                }
            },
            _ => {
                return Err(VerifyError::Chain(format!(
                    "expected the {inter_name} and the ARK (2 certificates), got {}",
                    parsed.len()
                )));
            }
        };
        let mut inter = parsed.swap_remove(inter_idx);
        inter.which = inter_name.into();
        let supplied_ark = ark_idx.map(|_| {
            let mut a = parsed.swap_remove(0);
            a.which = "ARK".into();
            a
        });
        let (ark, root) = match supplied_ark {
            None => {
                if !self.trust.amd {
                    return Err(VerifyError::Chain(
                        "the chain has no ARK and the built-in AMD roots are not trusted here"
                            .into(),
                    ));
                }
                let b = builtin()?
                    .iter()
                    .find(|b| b.product == product)
                    .ok_or_else(|| VerifyError::Chain(format!("no built-in root for {product}")))?;
                (b.ark.clone(), RootKind::Amd)
            }
            Some(ark) => self.trusted_ark(ark, product)?,
        };
        check_intermediate(&inter, &ark, product, vlek)?;
        if root == RootKind::Amd {
            // AMD has one current ASK and ASVK per product; pinning them rejects older,
            // revoked intermediates (e.g. Genoa's ASK 0x20001) even when no CRL is supplied.
            let b = builtin()?
                .iter()
                .find(|b| b.product == product)
                .ok_or_else(|| VerifyError::Chain(format!("no built-in root for {product}")))?;
            let pinned = if vlek { &b.asvk } else { &b.ask };
            if inter.fingerprint != pinned.fingerprint {
                return Err(VerifyError::Chain(format!(
                    "{} (serial {}, SHA-256 {}) is not AMD's current {} certificate (SHA-256 {})",
                    inter.which,
                    inter.serial_hex(),
                    inter.fingerprint,
                    pinned.subject_cn.as_deref().unwrap_or("intermediate"),
                    pinned.fingerprint
                )));
            }
        }
        Ok((Arc::new(inter), ark, root))
    }

    fn trusted_ark(
        &self,
        ark: CertInfo,
        product: SnpProduct,
    ) -> Result<(Arc<CertInfo>, RootKind), VerifyError> {
        if self.trust.amd {
            for b in builtin()? {
                if b.ark.fingerprint == ark.fingerprint {
                    if b.product != product {
                        return Err(VerifyError::Product(format!(
                            "the certificate is for {product}, but the chain's ARK is ARK-{}",
                            b.product
                        )));
                    }
                    return Ok((b.ark.clone(), RootKind::Amd));
                }
            }
        }
        if self.trust.simulated.contains(&ark.fingerprint) {
            let named = ark
                .subject_cn
                .as_deref()
                .and_then(|cn| cn.strip_prefix("ARK-"))
                .and_then(|p| p.parse::<SnpProduct>().ok());
            if named != Some(product) {
                return Err(VerifyError::Product(format!(
                    "the certificate is for {product}, but the simulated ARK is {:?}",
                    ark.subject_cn
                )));
            }
            check_ark(&ark, product)?;
            return Ok((Arc::new(ark), RootKind::Simulated));
        }
        let hint = if self.trust.simulated.is_empty() {
            "; if this is a simulated platform, pin its root fingerprint (nunki sim show)"
                .to_string()
        } else {
            format!(
                " and not one of the pinned simulated roots ({})",
                self.trust
                    .simulated
                    .iter()
                    .map(|f| f.to_hex())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Err(VerifyError::UntrustedRoot {
            fingerprint: ark.fingerprint,
            subject: ark.subject,
            hint,
        })
    }
}

/// Fields the ABI says must be zero (or one) are checked, as go-sev-guest does: a report
/// that violates them did not come from conforming firmware.
fn check_must_be_zero(report: &Report, raw: &[u8]) -> Result<(), VerifyError> {
    let ki = report.key_info.0;
    if ki >> 5 != 0 {
        return Err(VerifyError::Reserved(format!(
            "KEY_INFO {ki:#x}: reserved bits 5..31 must be zero"
        )));
    }
    if report.key_info.mask_chip_key() {
        return Err(VerifyError::Reserved(
            "KEY_INFO.MASK_CHIP_KEY is set: firmware does not sign such reports".into(),
        ));
    }
    let policy = report.policy.0;
    if (policy >> 17) & 1 != 1 {
        return Err(VerifyError::Reserved(format!(
            "POLICY {policy:#x}: bit 17 is reserved and must be one"
        )));
    }
    if policy >> 26 != 0 {
        return Err(VerifyError::Reserved(format!(
            "POLICY {policy:#x}: bits 26..63 are reserved and must be zero"
        )));
    }
    for range in super::report::reserved_ranges(report.version) {
        if range.start >= SIGNED_LEN {
            continue;
        }
        if raw
            .get(range.clone())
            .is_some_and(|b| b.iter().any(|x| *x != 0))
        {
            return Err(VerifyError::Reserved(format!(
                "reserved bytes {:#05x}..{:#05x} must be zero",
                range.start, range.end
            )));
        }
    }
    Ok(())
}

fn check_windows(key: &EndorsedKey, now: i64) -> Result<(), VerifyError> {
    for (which, nb, na) in &key.windows {
        if now < *nb || now > *na {
            return Err(VerifyError::Validity {
                which: which.clone(),
                now: rfc3339(now),
                not_before: rfc3339(*nb),
                not_after: rfc3339(*na),
            });
        }
    }
    Ok(())
}

fn to32(d: digest::Digest) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn check_tcb_and_chip(report: &Report, key: &EndorsedKey) -> Result<(), VerifyError> {
    let tcb = report
        .reported_tcb
        .decode(TcbLayout::for_product(key.product));
    let e = &key.ext;
    let pairs = [
        ("blSPL", e.bl_spl, tcb.bootloader),
        ("teeSPL", e.tee_spl, tcb.tee),
        ("snpSPL", e.snp_spl, tcb.snp),
        ("ucodeSPL", e.ucode_spl, tcb.microcode),
    ];
    for (ext, cert, rep) in pairs {
        if cert != rep {
            return Err(VerifyError::TcbMismatch {
                ext,
                cert,
                report: rep,
            });
        }
    }
    if let (Some(cert), Some(rep)) = (e.fmc_spl, tcb.fmc)
        && cert != rep
    {
        return Err(VerifyError::TcbMismatch {
            ext: "fmcSPL",
            cert,
            report: rep,
        });
    }
    if key.signer == SignerKind::Vcek {
        let chip = report.chip_id.as_bytes();
        // A host may launch with MASK_CHIP_ID, which zeroes CHIP_ID; then there is nothing to
        // compare (and AllowedChipIDs can never match).
        let masked = chip.iter().all(|b| *b == 0);
        if !masked {
            let hwid = e.hwid.as_deref().unwrap_or_default();
            let expected_len = if key.product.has_fmc() { 8 } else { 64 };
            let (head, tail) = chip.split_at(expected_len.min(chip.len()));
            if hwid.len() != expected_len || hwid != head || tail.iter().any(|b| *b != 0) {
                return Err(VerifyError::ChipId {
                    cert: hex::encode(hwid),
                    report: hex::encode(chip),
                });
            }
        }
    }
    Ok(())
}
