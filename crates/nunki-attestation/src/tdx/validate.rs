//! Validation of a verified TDX quote against reference values.
//!
//! [`TdxPolicy`] holds every check; `None` (or an empty list) leaves a value unchecked, which
//! only the debugging CLI uses. The TCB status is always checked: `UpToDate` passes, any other
//! status only when listed by name. Policies built from a manifest entry
//! ([`TdxPolicy::from_reference_values`]) check everything and require the Intel root. All
//! failures are collected, each naming the field, the expected and the actual value.

use std::fmt;

use crate::fmt_util::join;

use nunki_manifest::{
    HostData, Measurement, Piid, ReportData, TdAttributes, TdxReferenceValues, TdxTcbStatus,
    TdxXfam,
};

use super::verify::{TdxRootKind, VerifiedQuote};

/// All checks applied to a verified quote.
#[derive(Debug, Clone, Default)]
pub struct TdxPolicy {
    /// Require the built-in Intel root (manifest entries always do).
    pub require_intel_root: bool,
    /// Allowed MRTD values (any may match).
    pub mr_td: Option<Vec<Measurement>>,
    /// Expected RTMR0..3.
    pub rtmrs: Option<[Measurement; 4]>,
    /// Expected MRSEAM.
    pub mr_seam: Option<Measurement>,
    /// Expected XFAM.
    pub xfam: Option<TdxXfam>,
    /// Expected TD_ATTRIBUTES.
    pub td_attributes: Option<TdAttributes>,
    /// Lowest acceptable TCB evaluation data number.
    pub minimum_tcb_evaluation_data_number: Option<u32>,
    /// Statuses accepted besides `UpToDate`.
    pub allowed_tcb_statuses: Vec<TdxTcbStatus>,
    /// Allowed PIIDs; empty = any.
    pub allowed_piids: Vec<Piid>,
    /// Require MRCONFIGID to hold a policy hash (last 16 bytes zero).
    pub require_policy_hash: bool,
    /// Expected policy hash (first 32 bytes of MRCONFIGID).
    pub policy_hash: Option<HostData>,
    /// Expected REPORT_DATA.
    pub report_data: Option<ReportData>,
}

impl TdxPolicy {
    /// The checks a manifest `ReferenceValues.tdx[]` entry demands (Intel root only).
    ///
    /// The policy hash and REPORT_DATA are per connection: add them with
    /// [`TdxPolicy::expecting`] (the aTLS verifier checks the key binding itself).
    pub fn from_reference_values(rv: &TdxReferenceValues) -> Self {
        Self {
            require_intel_root: true,
            mr_td: Some(vec![rv.mr_td]),
            rtmrs: Some(rv.rtmrs),
            mr_seam: Some(rv.mr_seam),
            xfam: Some(rv.xfam),
            td_attributes: Some(rv.td_attributes),
            minimum_tcb_evaluation_data_number: Some(rv.minimum_tcb_evaluation_data_number),
            allowed_tcb_statuses: rv.allowed_tcb_statuses.clone(),
            allowed_piids: rv.allowed_piids.clone(),
            require_policy_hash: true,
            policy_hash: None,
            report_data: None,
        }
    }

    /// Adds the per-connection expectations.
    pub fn expecting(
        mut self,
        policy_hash: Option<HostData>,
        report_data: Option<ReportData>,
    ) -> Self {
        self.policy_hash = policy_hash;
        self.report_data = report_data;
        self
    }

    fn accepts(&self, s: TdxTcbStatus) -> bool {
        s == TdxTcbStatus::UpToDate
            || (s != TdxTcbStatus::Revoked && self.allowed_tcb_statuses.contains(&s))
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdxValidationError {
    /// Not the Intel root.
    #[error("Root: quote chains to a pinned test root {0}, reference values require Intel's")]
    Root(String),
    /// MRTD not allowed.
    #[error("MrTd: quote has {actual}, allowed: {}", join(expected))]
    MrTd {
        /// Allowed.
        expected: Vec<Measurement>,
        /// Actual.
        actual: Measurement,
    },
    /// An RTMR differs.
    #[error("Rtmrs[{index}]: quote has {actual}, expected {expected}")]
    Rtmr {
        /// 0..3.
        index: usize,
        /// Expected.
        expected: Measurement,
        /// Actual.
        actual: Measurement,
    },
    /// MRSEAM differs.
    #[error("MrSeam: quote has {actual}, expected {expected}")]
    MrSeam {
        /// Expected.
        expected: Measurement,
        /// Actual.
        actual: Measurement,
    },
    /// XFAM differs.
    #[error("Xfam: quote has {actual}, expected {expected}")]
    Xfam {
        /// Expected.
        expected: TdxXfam,
        /// Actual.
        actual: TdxXfam,
    },
    /// TD_ATTRIBUTES differ.
    #[error("TdAttributes: quote has {actual}, expected {expected}")]
    TdAttributes {
        /// Expected.
        expected: TdAttributes,
        /// Actual.
        actual: TdAttributes,
    },
    /// MRCONFIGID is not a zero-padded policy hash, or not the expected one.
    #[error("MRCONFIGID: {0}")]
    MrConfigId(String),
    /// TCB status not allowed.
    #[error(
        "AllowedTcbStatuses: TCB status is {status}{}; accepted: UpToDate{}",
        advisories(advisory_ids),
        allowed.iter().map(|s| format!(", {s}")).collect::<String>()
    )]
    TcbStatus {
        /// Actual.
        status: TdxTcbStatus,
        /// Advisories of the matched levels.
        advisory_ids: Vec<String>,
        /// Allowed besides UpToDate.
        allowed: Vec<TdxTcbStatus>,
    },
    /// Collateral older than required.
    #[error(
        "MinimumTcbEvaluationDataNumber: collateral has TCB evaluation data number {actual}, reference values need >= {minimum}"
    )]
    TcbEvaluationDataNumber {
        /// Actual.
        actual: u32,
        /// Minimum.
        minimum: u32,
    },
    /// Platform not allowed.
    #[error("AllowedPIIDs: PCK certificate PIID {} is not allowed: {}", actual.map_or_else(|| "(none: Processor CA certificate)".to_string(), |p| p.to_string()), join(allowed))]
    Piid {
        /// Allowed.
        allowed: Vec<Piid>,
        /// Actual.
        actual: Option<Piid>,
    },
    /// REPORT_DATA mismatch.
    #[error("REPORT_DATA: quote has {actual}, expected {expected}")]
    ReportData {
        /// Expected.
        expected: ReportData,
        /// Actual.
        actual: ReportData,
    },
}

fn advisories(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" (advisories {})", ids.join(", "))
    }
}

/// Every failed check of one validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxValidationErrors(pub Vec<TdxValidationError>);

impl fmt::Display for TdxValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::fmt_util::write_all(f, &self.0)
    }
}

impl std::error::Error for TdxValidationErrors {}

/// Applies `policy` to `verified`, collecting every failure.
pub fn validate(verified: &VerifiedQuote, policy: &TdxPolicy) -> Result<(), TdxValidationErrors> {
    let td = &verified.quote().td;
    let tcb = verified.tcb();
    let mut errs = Vec::new();
    if policy.require_intel_root && verified.root() != TdxRootKind::Intel {
        errs.push(TdxValidationError::Root(
            verified.root_fingerprint().to_string(),
        ));
    }
    if let Some(allowed) = &policy.mr_td
        && !allowed.contains(&td.mr_td)
    {
        errs.push(TdxValidationError::MrTd {
            expected: allowed.clone(),
            actual: td.mr_td,
        });
    }
    if let Some(expected) = &policy.rtmrs {
        for (index, (e, a)) in expected.iter().zip(td.rtmrs.iter()).enumerate() {
            if e != a {
                errs.push(TdxValidationError::Rtmr {
                    index,
                    expected: *e,
                    actual: *a,
                });
            }
        }
    }
    if let Some(e) = policy.mr_seam
        && e != td.mr_seam
    {
        errs.push(TdxValidationError::MrSeam {
            expected: e,
            actual: td.mr_seam,
        });
    }
    if let Some(e) = policy.xfam
        && e != td.xfam
    {
        errs.push(TdxValidationError::Xfam {
            expected: e,
            actual: td.xfam,
        });
    }
    if let Some(e) = policy.td_attributes
        && e != td.td_attributes
    {
        errs.push(TdxValidationError::TdAttributes {
            expected: e,
            actual: td.td_attributes,
        });
    }
    if policy.require_policy_hash || policy.policy_hash.is_some() {
        match td.policy_hash() {
            Err(tail) => errs.push(TdxValidationError::MrConfigId(format!(
                "{} does not hold a policy hash: its last 16 bytes must be zero, are {}",
                td.mr_config_id,
                hex::encode(tail)
            ))),
            Ok(h) => {
                if let Some(expected) = policy.policy_hash
                    && expected != h
                {
                    errs.push(TdxValidationError::MrConfigId(format!(
                        "policy hash {h} (first 32 bytes), expected {expected}"
                    )));
                }
            }
        }
    }
    if !policy.accepts(tcb.status) {
        errs.push(TdxValidationError::TcbStatus {
            status: tcb.status,
            advisory_ids: tcb.advisory_ids.clone(),
            allowed: policy.allowed_tcb_statuses.clone(),
        });
    }
    if let Some(minimum) = policy.minimum_tcb_evaluation_data_number
        && tcb.tcb_evaluation_data_number < minimum
    {
        errs.push(TdxValidationError::TcbEvaluationDataNumber {
            actual: tcb.tcb_evaluation_data_number,
            minimum,
        });
    }
    if !policy.allowed_piids.is_empty()
        && !verified
            .pck()
            .piid
            .is_some_and(|p| policy.allowed_piids.contains(&p))
    {
        errs.push(TdxValidationError::Piid {
            allowed: policy.allowed_piids.clone(),
            actual: verified.pck().piid,
        });
    }
    if let Some(d) = policy.report_data
        && d != td.report_data
    {
        errs.push(TdxValidationError::ReportData {
            expected: d,
            actual: td.report_data,
        });
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(TdxValidationErrors(errs))
    }
}
