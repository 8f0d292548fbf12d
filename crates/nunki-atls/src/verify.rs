//! Verification of a peer's attested certificate against reference values.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use nunki_attestation::snp::validate::{SnpPolicy, ValidationErrors, validate};
use nunki_attestation::snp::verify::{
    Evidence, SnpVerifier, TrustStore, VerifiedReport, VerifyError,
};
use nunki_attestation::tdx::validate::validate as validate_tdx;
use nunki_attestation::tdx::{
    TdxCollateral, TdxPolicy, TdxValidationErrors, TdxVerifyError, VerifiedQuote,
};
use nunki_attestation::time_util::{rfc3339, unix_seconds};
use nunki_manifest::{
    HostData, ReferenceValues, ReportData, SimulatedReferenceValues, SnpReferenceValues,
    TdxReferenceValues,
};

use crate::cert::{self, CertError, PeerCert};
use crate::evidence::{EvidenceDoc, SnpEvidence, TdxEvidence};

/// Source of "now", injected so tests can pin it.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// Which HOST_DATA values are acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDataRule {
    /// Any: the application looks it up itself (the mesh API checks the manifest's policies).
    Any,
    /// One of these (e.g. the Coordinator's policy hashes).
    OneOf(Vec<HostData>),
}

/// Why a peer was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtlsError {
    /// Certificate problem (including "no evidence").
    #[error("{0}")]
    Cert(#[from] CertError),
    /// The certificate is outside its validity window.
    #[error("attested certificate not valid at {now} (valid {not_before} .. {not_after})")]
    CertTime {
        /// Now.
        now: String,
        /// notBefore.
        not_before: String,
        /// notAfter.
        not_after: String,
    },
    /// The evidence itself did not verify.
    #[error("evidence: {0}")]
    Evidence(#[from] VerifyError),
    /// The evidence does not bind this connection's key and nonce.
    #[error(
        "evidence is bound to another key or nonce (REPORT_DATA {actual}, expected SHA-512(SPKI || nonce) = {expected}): replayed or relayed evidence"
    )]
    Binding {
        /// Expected REPORT_DATA.
        expected: Box<ReportData>,
        /// Actual REPORT_DATA.
        actual: Box<ReportData>,
    },
    /// HOST_DATA not acceptable.
    #[error("HOST_DATA {actual} is not one of the expected policy hashes: {}", allowed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    HostData {
        /// Allowed values.
        allowed: Vec<HostData>,
        /// Reported value.
        actual: HostData,
    },
    /// No reference-value entry matched.
    #[error("no reference values match: {}", .0.iter().map(|(l, e)| format!("{l}: {e}")).collect::<Vec<_>>().join(" | "))]
    ReferenceValues(Vec<(String, ValidationErrors)>),
    /// The TDX evidence itself did not verify.
    #[error("TDX evidence: {0}")]
    TdxEvidence(#[from] TdxVerifyError),
    /// No `tdx` reference-value entry matched.
    #[error("no reference values match: {}", .0.iter().map(|(l, e)| format!("{l}: {e}")).collect::<Vec<_>>().join(" | "))]
    TdxReferenceValues(Vec<(String, TdxValidationErrors)>),
    /// The peer did not take part in the protocol as required.
    #[error("aTLS protocol: {0}")]
    Protocol(String),
}

/// The verified evidence of a peer.
#[derive(Debug, Clone)]
// One value per connection, moved rarely: boxing the common SNP case would only add an
// allocation per handshake.
#[allow(clippy::large_enum_variant)]
pub enum PeerReport {
    /// An SEV-SNP (or simulated) report.
    Snp(VerifiedReport),
    /// A TDX quote.
    Tdx(Box<VerifiedQuote>),
}

/// A peer whose evidence was verified and matched reference values.
#[derive(Debug, Clone)]
pub struct VerifiedPeer {
    /// The verified report or quote.
    pub report: PeerReport,
    /// Which reference-value entry matched (`snp[0]`, `tdx[0]`, `simulated[1]`, ...).
    pub matched: String,
    /// The peer's SubjectPublicKeyInfo DER (the key the evidence binds).
    pub spki: Vec<u8>,
}

impl VerifiedPeer {
    /// The peer's policy hash on Kata: HOST_DATA on SEV-SNP, the first 32 bytes of MRCONFIGID
    /// on TDX (a verified TDX peer always has the zero tail; see [`tdx_policy_hash`]).
    pub fn host_data(&self) -> HostData {
        match &self.report {
            PeerReport::Snp(r) => r.report().host_data,
            PeerReport::Tdx(q) => tdx_policy_hash(q).unwrap_or(HostData([0; 32])),
        }
    }
}

/// The policy hash in a TDX quote's MRCONFIGID, or an error when its last 16 bytes are not
/// zero (then it holds no policy hash and the peer is refused).
pub fn tdx_policy_hash(q: &VerifiedQuote) -> Result<HostData, AtlsError> {
    let td = &q.quote().td;
    td.policy_hash().map_err(|tail| {
        AtlsError::Protocol(format!(
            "MRCONFIGID {} holds no policy hash: bytes 32..48 must be zero, are {}",
            td.mr_config_id,
            hex::encode(tail)
        ))
    })
}

/// Where a TLS verifier leaves its result for the application.
///
/// The verifier records its result when it checks the certificate, which is *before* TLS checks
/// the peer's CertificateVerify (possession of the key). Trust an `Ok` only after the handshake
/// completed; after a failed handshake the slot explains the failure but proves nothing.
#[derive(Debug, Clone, Default)]
pub struct PeerSlot(Arc<Mutex<Option<Result<VerifiedPeer, AtlsError>>>>);

impl PeerSlot {
    /// Records a result.
    pub fn set(&self, r: Result<VerifiedPeer, AtlsError>) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(r);
        }
    }
    /// The recorded result, if any.
    pub fn get(&self) -> Option<Result<VerifiedPeer, AtlsError>> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
    /// The verified peer, if verification succeeded.
    pub fn verified(&self) -> Option<VerifiedPeer> {
        self.get().and_then(Result::ok)
    }
}

/// Verifies attested certificates against a set of reference values (any entry may match).
pub struct ReferenceVerifier {
    snp: SnpVerifier,
    policies: Vec<(String, SnpPolicy)>,
    tdx_policies: Vec<(String, TdxPolicy)>,
    host_data: HostDataRule,
    clock: Clock,
}

impl std::fmt::Debug for ReferenceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceVerifier")
            .field(
                "policies",
                &self
                    .policies
                    .iter()
                    .map(|(l, _)| l)
                    .chain(self.tdx_policies.iter().map(|(l, _)| l))
                    .collect::<Vec<_>>(),
            )
            .field("host_data", &self.host_data)
            .finish_non_exhaustive()
    }
}

impl ReferenceVerifier {
    /// A verifier for SEV-SNP and simulated reference values (see
    /// [`ReferenceVerifier::for_reference_values`] for all platforms). Fails closed: no entries
    /// is an error.
    pub fn new(
        snp: &[SnpReferenceValues],
        simulated: &[SimulatedReferenceValues],
        host_data: HostDataRule,
        clock: Clock,
    ) -> Result<Self, AtlsError> {
        Self::with_tdx(snp, &[], simulated, host_data, clock)
    }

    /// A verifier for a manifest's `ReferenceValues` (SNP, TDX and simulated entries; evidence
    /// matching any one entry is accepted). Fails closed: no entries is an error.
    pub fn for_reference_values(
        rv: &ReferenceValues,
        host_data: HostDataRule,
        clock: Clock,
    ) -> Result<Self, AtlsError> {
        Self::with_tdx(&rv.snp, &rv.tdx, &rv.simulated, host_data, clock)
    }

    fn with_tdx(
        snp: &[SnpReferenceValues],
        tdx: &[TdxReferenceValues],
        simulated: &[SimulatedReferenceValues],
        host_data: HostDataRule,
        clock: Clock,
    ) -> Result<Self, AtlsError> {
        if snp.is_empty() && simulated.is_empty() && tdx.is_empty() {
            return Err(AtlsError::Protocol(
                "no reference values: refusing to trust any evidence".into(),
            ));
        }
        if let HostDataRule::OneOf(v) = &host_data
            && v.is_empty()
        {
            return Err(AtlsError::Protocol(
                "no acceptable HOST_DATA values (no coordinator policy in the manifest?)".into(),
            ));
        }
        let mut trust = if snp.is_empty() {
            TrustStore::none()
        } else {
            TrustStore::amd()
        };
        let mut policies = Vec::new();
        for (i, rv) in snp.iter().enumerate() {
            policies.push((format!("snp[{i}]"), SnpPolicy::from_reference_values(rv)));
        }
        for (i, rv) in simulated.iter().enumerate() {
            trust = trust.with_simulated_root(rv.root_fingerprint);
            policies.push((format!("simulated[{i}]"), SnpPolicy::from_simulated(rv)));
        }
        let tdx_policies = tdx
            .iter()
            .enumerate()
            .map(|(i, rv)| (format!("tdx[{i}]"), TdxPolicy::from_reference_values(rv)))
            .collect();
        Ok(Self {
            snp: SnpVerifier::new(trust),
            policies,
            tdx_policies,
            host_data,
            clock,
        })
    }

    /// Current time from the injected clock.
    pub fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// Verifies a parsed peer certificate for a connection that used `nonce`.
    pub fn verify(&self, peer: &PeerCert, nonce: &[u8]) -> Result<VerifiedPeer, AtlsError> {
        let evidence = peer
            .evidence
            .as_ref()
            .ok_or(AtlsError::Cert(CertError::NoEvidence))?;
        let now = self.now();
        let secs = unix_seconds(now);
        let (nb, na) = peer.validity;
        if secs < nb || secs > na {
            return Err(AtlsError::CertTime {
                now: rfc3339(secs),
                not_before: rfc3339(nb),
                not_after: rfc3339(na),
            });
        }
        let expected = cert::report_data(&peer.spki, nonce);
        self.check(evidence, Some(expected), &peer.spki, now)
    }

    /// Checks evidence that is bound to no connection (reports and quotes from files, tests):
    /// everything [`ReferenceVerifier::verify`] checks except the REPORT_DATA binding.
    pub fn appraise(&self, evidence: &EvidenceDoc) -> Result<VerifiedPeer, AtlsError> {
        self.check(evidence, None, &[], self.now())
    }

    fn check(
        &self,
        evidence: &EvidenceDoc,
        expected: Option<ReportData>,
        spki: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedPeer, AtlsError> {
        match evidence {
            EvidenceDoc::Snp(e) => self.verify_snp(e, expected, spki, now),
            EvidenceDoc::Tdx(e) => self.verify_tdx(e, expected, spki, now),
        }
    }

    fn check_host_data(&self, hd: HostData) -> Result<(), AtlsError> {
        if let HostDataRule::OneOf(allowed) = &self.host_data
            && !allowed.contains(&hd)
        {
            return Err(AtlsError::HostData {
                allowed: allowed.clone(),
                actual: hd,
            });
        }
        Ok(())
    }

    fn verify_snp(
        &self,
        evidence: &SnpEvidence,
        expected: Option<ReportData>,
        spki: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedPeer, AtlsError> {
        if self.policies.is_empty() {
            return Err(AtlsError::Protocol(
                "the peer sent SEV-SNP evidence, but the reference values list no snp or simulated entry".into(),
            ));
        }
        let chain = (!evidence.chain.is_empty()).then_some(evidence.chain.as_slice());
        let verified = self.snp.verify(
            &Evidence {
                report: &evidence.report,
                endorsement_key: &evidence.endorsement_key,
                chain,
                crl: evidence.crl.as_deref(),
            },
            now,
        )?;
        let actual = verified.report().report_data;
        if let Some(expected) = expected
            && actual != expected
        {
            return Err(AtlsError::Binding {
                expected: Box::new(expected),
                actual: Box::new(actual),
            });
        }
        self.check_host_data(verified.report().host_data)?;
        let mut failures = Vec::new();
        for (label, policy) in &self.policies {
            match validate(&verified, policy) {
                Ok(()) => {
                    return Ok(VerifiedPeer {
                        report: PeerReport::Snp(verified),
                        matched: label.clone(),
                        spki: spki.to_vec(),
                    });
                }
                Err(e) => failures.push((label.clone(), e)),
            }
        }
        Err(AtlsError::ReferenceValues(failures))
    }

    fn verify_tdx(
        &self,
        evidence: &TdxEvidence,
        expected: Option<ReportData>,
        spki: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedPeer, AtlsError> {
        if self.tdx_policies.is_empty() {
            return Err(AtlsError::Protocol(
                "the peer sent TDX evidence, but the reference values list no tdx entry".into(),
            ));
        }
        let json = evidence.collateral.as_deref().ok_or_else(|| {
            AtlsError::Protocol(
                "the TDX evidence carries no collateral; the attester must attach it (Intel PCS TCB Info, QE Identity and CRLs)".into(),
            )
        })?;
        let collateral = TdxCollateral::from_json(json).map_err(TdxVerifyError::from)?;
        let verified = nunki_attestation::tdx::verify::shared_intel_verifier().verify(
            &evidence.quote,
            &collateral,
            now,
        )?;
        let actual = verified.quote().td.report_data;
        if let Some(expected) = expected
            && actual != expected
        {
            return Err(AtlsError::Binding {
                expected: Box::new(expected),
                actual: Box::new(actual),
            });
        }
        self.check_host_data(tdx_policy_hash(&verified)?)?;
        let mut failures = Vec::new();
        for (label, policy) in &self.tdx_policies {
            match validate_tdx(&verified, policy) {
                Ok(()) => {
                    return Ok(VerifiedPeer {
                        report: PeerReport::Tdx(Box::new(verified)),
                        matched: label.clone(),
                        spki: spki.to_vec(),
                    });
                }
                Err(e) => failures.push((label.clone(), e)),
            }
        }
        Err(AtlsError::TdxReferenceValues(failures))
    }
}

pub(crate) fn to_rustls_error(e: &AtlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(e.clone()),
    )))
}
