//! Validation of a verified report against reference values.
//!
//! [`SnpPolicy`] holds every check; fields set to `None` (or empty lists) are not checked, which
//! only the debugging CLI uses. Policies built from manifest reference values
//! ([`SnpPolicy::from_reference_values`]) always check measurement, TCB, guest policy, VMPL
//! and the kind of root. All failures are collected, each naming the check, the expected and
//! the actual value.

use std::fmt;

use crate::fmt_util::join;

use nunki_manifest::{
    ChipId, HostData, IdKeyDigest, Measurement, ReportData, Sha256Fingerprint,
    SimulatedReferenceValues, SnpMinimumTcb, SnpProduct, SnpReferenceValues,
};

use super::verify::{RootKind, VerifiedReport};

/// Which root a policy requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootRequirement {
    /// A genuine AMD root.
    Amd,
    /// The simulated root with this fingerprint.
    Simulated(Sha256Fingerprint),
}

/// All checks applied to a verified report.
#[derive(Debug, Clone, Default)]
pub struct SnpPolicy {
    /// Required root.
    pub root: Option<RootRequirement>,
    /// Required product.
    pub product: Option<SnpProduct>,
    /// Allowed launch measurements (any may match); `None` = unchecked.
    pub measurements: Option<Vec<Measurement>>,
    /// Expected HOST_DATA.
    pub host_data: Option<HostData>,
    /// Expected REPORT_DATA.
    pub report_data: Option<ReportData>,
    /// Minimum TCB applied to current, committed, reported and launch TCB.
    pub minimum_tcb: Option<SnpMinimumTcb>,
    /// Accept the DEBUG policy bit.
    pub allow_debug: bool,
    /// Minimum ABI (major, minor) the guest policy must name.
    pub minimum_abi: Option<(u8, u8)>,
    /// Required VMPL.
    pub vmpl: Option<u32>,
    /// Allowed chip IDs; empty = any.
    pub allowed_chip_ids: Vec<ChipId>,
    /// Allowed ID-key digests; empty = any.
    pub allowed_id_key_digests: Vec<IdKeyDigest>,
}

impl SnpPolicy {
    /// The checks a manifest `ReferenceValues.snp[]` entry demands (AMD roots only).
    ///
    /// HOST_DATA and REPORT_DATA are per connection: add them with [`SnpPolicy::expecting`]
    /// or check them separately (the aTLS verifier checks the key binding itself).
    pub fn from_reference_values(rv: &SnpReferenceValues) -> Self {
        Self {
            root: Some(RootRequirement::Amd),
            product: Some(rv.product),
            measurements: Some(vec![rv.trusted_measurement]),
            host_data: None,
            report_data: None,
            minimum_tcb: Some(rv.minimum_tcb),
            allow_debug: rv.guest_policy.allow_debug,
            minimum_abi: Some((
                rv.guest_policy.minimum_abi_major,
                rv.guest_policy.minimum_abi_minor,
            )),
            vmpl: Some(rv.vmpl),
            allowed_chip_ids: rv.allowed_chip_ids.clone(),
            allowed_id_key_digests: rv.allowed_id_key_digests.clone(),
        }
    }

    /// The checks a manifest `ReferenceValues.simulated[]` entry demands (that simulated root only).
    pub fn from_simulated(rv: &SimulatedReferenceValues) -> Self {
        Self {
            root: Some(RootRequirement::Simulated(rv.root_fingerprint)),
            ..Self::from_reference_values(&rv.as_snp())
        }
    }

    /// Adds the per-connection expectations.
    pub fn expecting(
        mut self,
        host_data: Option<HostData>,
        report_data: Option<ReportData>,
    ) -> Self {
        self.host_data = host_data;
        self.report_data = report_data;
        self
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Wrong kind of root.
    #[error("Root: report chains to {actual}, reference values require {expected}")]
    Root {
        /// Required.
        expected: String,
        /// Actual.
        actual: String,
    },
    /// Wrong product.
    #[error("ProductName: report is from {actual}, reference values require {expected}")]
    Product {
        /// Required.
        expected: SnpProduct,
        /// Actual.
        actual: SnpProduct,
    },
    /// Measurement not allowed.
    #[error("TrustedMeasurement: report has {actual}, allowed: {}", join(expected))]
    Measurement {
        /// Allowed.
        expected: Vec<Measurement>,
        /// Actual.
        actual: Measurement,
    },
    /// HOST_DATA mismatch.
    #[error("HOST_DATA: report has {actual}, expected {expected}")]
    HostData {
        /// Expected.
        expected: HostData,
        /// Actual.
        actual: HostData,
    },
    /// REPORT_DATA mismatch.
    #[error("REPORT_DATA: report has {actual}, expected {expected}")]
    ReportData {
        /// Expected.
        expected: ReportData,
        /// Actual.
        actual: ReportData,
    },
    /// A TCB component below the minimum.
    #[error("MinimumTCB.{component}: {tcb} TCB has {actual}, manifest needs >= {minimum}")]
    Tcb {
        /// Which TCB (current, committed, reported, launch).
        tcb: &'static str,
        /// Component name as in the manifest (SNPVersion, ...).
        component: &'static str,
        /// Actual.
        actual: u8,
        /// Minimum.
        minimum: u8,
    },
    /// FMCVersion given for a product without FMC, or missing for Turin.
    #[error("MinimumTCB.FMCVersion: {0}")]
    FmcSpec(String),
    /// Debug guest.
    #[error(
        "GuestPolicy.AllowDebug: report's guest policy 0x{policy:x} has DEBUG set (host can read guest memory); reference values do not allow debug"
    )]
    Debug {
        /// Raw policy.
        policy: u64,
    },
    /// Migration agent allowed by the guest policy.
    #[error(
        "GuestPolicy: report's guest policy 0x{policy:x} allows a migration agent (MIGRATE_MA); never accepted"
    )]
    MigrationAgent {
        /// Raw policy.
        policy: u64,
    },
    /// ABI too old.
    #[error(
        "GuestPolicy.MinimumABI: report's guest policy requires ABI {actual_major}.{actual_minor}, reference values need >= {major}.{minor}"
    )]
    Abi {
        /// Required major.
        major: u8,
        /// Required minor.
        minor: u8,
        /// Actual major.
        actual_major: u8,
        /// Actual minor.
        actual_minor: u8,
    },
    /// Wrong VMPL.
    #[error("VMPL: report was requested at VMPL {actual}, reference values require {expected}")]
    Vmpl {
        /// Required.
        expected: u32,
        /// Actual.
        actual: u32,
    },
    /// Chip not allowed.
    #[error(
        "AllowedChipIDs: report CHIP_ID {actual} is not allowed: {}",
        join(allowed)
    )]
    ChipId {
        /// Allowed.
        allowed: Vec<ChipId>,
        /// Actual.
        actual: ChipId,
    },
    /// ID key not allowed.
    #[error(
        "AllowedIDKeyDigests: report ID_KEY_DIGEST {actual} is not allowed: {}",
        join(allowed)
    )]
    IdKey {
        /// Allowed.
        allowed: Vec<IdKeyDigest>,
        /// Actual.
        actual: IdKeyDigest,
    },
}

/// Every failed check of one validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::fmt_util::write_all(f, &self.0)
    }
}

impl std::error::Error for ValidationErrors {}

/// Applies `policy` to `verified`, collecting every failure.
pub fn validate(verified: &VerifiedReport, policy: &SnpPolicy) -> Result<(), ValidationErrors> {
    let r = verified.report();
    let mut errs = Vec::new();
    if let Some(root) = &policy.root {
        let ok = match root {
            RootRequirement::Amd => verified.root() == RootKind::Amd,
            RootRequirement::Simulated(fp) => {
                verified.root() == RootKind::Simulated && verified.root_fingerprint() == *fp
            }
        };
        if !ok {
            let describe = |kind: RootKind, fp: Sha256Fingerprint| match kind {
                RootKind::Amd => format!("the AMD root {fp}"),
                RootKind::Simulated => format!("the simulated root {fp}"),
            };
            errs.push(ValidationError::Root {
                expected: match root {
                    RootRequirement::Amd => "a genuine AMD root".to_string(),
                    RootRequirement::Simulated(fp) => describe(RootKind::Simulated, *fp),
                },
                actual: describe(verified.root(), verified.root_fingerprint()),
            });
        }
    }
    if let Some(p) = policy.product
        && p != verified.product()
    {
        errs.push(ValidationError::Product {
            expected: p,
            actual: verified.product(),
        });
    }
    if let Some(ms) = &policy.measurements
        && !ms.contains(&r.measurement)
    {
        errs.push(ValidationError::Measurement {
            expected: ms.clone(),
            actual: r.measurement,
        });
    }
    if let Some(h) = policy.host_data
        && h != r.host_data
    {
        errs.push(ValidationError::HostData {
            expected: h,
            actual: r.host_data,
        });
    }
    if let Some(d) = policy.report_data
        && d != r.report_data
    {
        errs.push(ValidationError::ReportData {
            expected: d,
            actual: r.report_data,
        });
    }
    if let Some(min) = policy.minimum_tcb {
        check_tcb(verified, &min, &mut errs);
    }
    if r.policy.debug() && !policy.allow_debug {
        errs.push(ValidationError::Debug { policy: r.policy.0 });
    }
    if r.policy.migrate_ma() {
        errs.push(ValidationError::MigrationAgent { policy: r.policy.0 });
    }
    if let Some((major, minor)) = policy.minimum_abi
        && (r.policy.abi_major(), r.policy.abi_minor()) < (major, minor)
    {
        errs.push(ValidationError::Abi {
            major,
            minor,
            actual_major: r.policy.abi_major(),
            actual_minor: r.policy.abi_minor(),
        });
    }
    if let Some(v) = policy.vmpl
        && v != r.vmpl
    {
        errs.push(ValidationError::Vmpl {
            expected: v,
            actual: r.vmpl,
        });
    }
    if !policy.allowed_chip_ids.is_empty() && !policy.allowed_chip_ids.contains(&r.chip_id) {
        errs.push(ValidationError::ChipId {
            allowed: policy.allowed_chip_ids.clone(),
            actual: r.chip_id,
        });
    }
    if !policy.allowed_id_key_digests.is_empty()
        && !policy.allowed_id_key_digests.contains(&r.id_key_digest)
    {
        errs.push(ValidationError::IdKey {
            allowed: policy.allowed_id_key_digests.clone(),
            actual: r.id_key_digest,
        });
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errs))
    }
}

fn check_tcb(verified: &VerifiedReport, min: &SnpMinimumTcb, errs: &mut Vec<ValidationError>) {
    let turin = verified.product().has_fmc();
    match (turin, min.fmc) {
        (true, None) => errs.push(ValidationError::FmcSpec(
            "missing: Turin reference values must set FMCVersion".into(),
        )),
        (false, Some(_)) => errs.push(ValidationError::FmcSpec(format!(
            "set, but {} has no FMC component; remove it",
            verified.product()
        ))),
        _ => {}
    }
    for (name, tcb) in verified.tcbs() {
        let mut comps = vec![
            ("BootloaderVersion", tcb.bootloader, min.bootloader),
            ("TEEVersion", tcb.tee, min.tee),
            ("SNPVersion", tcb.snp, min.snp),
            ("MicrocodeVersion", tcb.microcode, min.microcode),
        ];
        if let (Some(actual), Some(minimum)) = (tcb.fmc, min.fmc) {
            comps.push(("FMCVersion", actual, minimum));
        }
        for (component, actual, minimum) in comps {
            if actual < minimum {
                errs.push(ValidationError::Tcb {
                    tcb: name,
                    component,
                    actual,
                    minimum,
                });
            }
        }
    }
}
