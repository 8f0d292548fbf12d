//! Platform issuers: produce evidence for a given REPORT_DATA.

use std::fmt::Debug;
use std::sync::Arc;

use nunki_attestation::sim::{SimPlatform, SimReportRequest};
use nunki_manifest::{HostData, Measurement, ReportData};

use crate::evidence::{EvidenceDoc, SnpEvidence, TdxEvidence};

/// Why evidence could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("issuing evidence: {0}")]
pub struct IssueError(pub String);

/// Produces evidence whose REPORT_DATA is `report_data`.
pub trait Issuer: Send + Sync + Debug {
    /// Creates evidence for `report_data`.
    fn issue(&self, report_data: &ReportData) -> Result<EvidenceDoc, IssueError>;
}

/// The simulated SEV-SNP platform as an issuer: a "VM" with a fixed HOST_DATA and measurement.
#[derive(Debug, Clone)]
pub struct SimIssuer {
    platform: Arc<SimPlatform>,
    host_data: HostData,
    measurement: Option<Measurement>,
}

impl SimIssuer {
    /// A simulated guest launched with `host_data` (the policy hash) and the platform's default
    /// measurement.
    pub fn new(platform: Arc<SimPlatform>, host_data: HostData) -> Self {
        Self {
            platform,
            host_data,
            measurement: None,
        }
    }

    /// Uses a different launch measurement (e.g. to simulate a modified guest image).
    pub fn with_measurement(mut self, m: Measurement) -> Self {
        self.measurement = Some(m);
        self
    }

    /// The HOST_DATA this guest reports.
    pub fn host_data(&self) -> HostData {
        self.host_data
    }
}

impl Issuer for SimIssuer {
    fn issue(&self, report_data: &ReportData) -> Result<EvidenceDoc, IssueError> {
        let e = self
            .platform
            .issue(&SimReportRequest {
                version: 5,
                report_data: *report_data,
                host_data: self.host_data,
                measurement: self.measurement,
                ..Default::default()
            })
            .map_err(|e| IssueError(e.to_string()))?;
        Ok(EvidenceDoc::Snp(SnpEvidence {
            report: e.report,
            endorsement_key: e.vcek,
            chain: e.chain,
            crl: None,
        }))
    }
}

/// A real SEV-SNP guest: reports from the PSP through configfs-tsm, with the VCEK (or VLEK) and
/// chain the host attaches to the extended report.
#[derive(Debug, Clone)]
pub struct SnpIssuer {
    base: std::path::PathBuf,
    vmpl: u32,
}

impl SnpIssuer {
    /// An issuer using the configfs-tsm directory `base` (normally
    /// [`nunki_attestation::snp::guest::TSM_REPORT_DIR`]) at VMPL 0.
    pub fn new(base: impl Into<std::path::PathBuf>) -> Self {
        Self {
            base: base.into(),
            vmpl: 0,
        }
    }
}

impl Issuer for SnpIssuer {
    fn issue(&self, report_data: &ReportData) -> Result<EvidenceDoc, IssueError> {
        let g = nunki_attestation::snp::guest::tsm_report(&self.base, &report_data.0, self.vmpl)
            .map_err(|e| IssueError(e.to_string()))?;
        let key = g.certs.vcek.or(g.certs.vlek).ok_or_else(|| {
            IssueError(
                "the host attached no VCEK or VLEK to the extended report; configure the host's SNP certificate table (e.g. `snphost import`)"
                    .into(),
            )
        })?;
        let chain = match (g.certs.ask, g.certs.ark) {
            (Some(ask), Some(ark)) => vec![ask, ark],
            _ => Vec::new(),
        };
        Ok(EvidenceDoc::Snp(SnpEvidence {
            report: g.report,
            endorsement_key: key,
            chain,
            crl: None,
        }))
    }
}

/// A real TDX guest: quotes through configfs-tsm (`hw` feature), with the collateral the binary
/// fetched from Intel PCS attached so that verifiers need no network.
#[derive(Debug, Clone)]
pub struct TdxIssuer {
    base: std::path::PathBuf,
    collateral: Arc<std::sync::RwLock<Option<Vec<u8>>>>,
}

impl TdxIssuer {
    /// An issuer using the configfs-tsm directory `base`, with no collateral yet.
    pub fn new(base: impl Into<std::path::PathBuf>) -> Self {
        Self {
            base: base.into(),
            collateral: Arc::default(),
        }
    }

    /// Sets (or refreshes) the collateral JSON attached to every quote.
    pub fn set_collateral(&self, json: Vec<u8>) {
        if let Ok(mut c) = self.collateral.write() {
            *c = Some(json);
        }
    }

    /// A quote for `report_data`, without collateral (to learn the platform's FMSPC).
    pub fn quote(&self, report_data: &ReportData) -> Result<Vec<u8>, IssueError> {
        #[cfg(feature = "hw")]
        {
            nunki_attestation::tdx::guest::tsm_quote(&self.base, &report_data.0)
                .map_err(|e| IssueError(e.to_string()))
        }
        #[cfg(not(feature = "hw"))]
        {
            let _ = (report_data, &self.base);
            Err(IssueError(NO_HW.into()))
        }
    }
}

#[cfg(not(feature = "hw"))]
const NO_HW: &str = "TDX quotes need the configfs-tsm guest code: this binary was built without the `hw` feature (cargo build --features hw)";

impl Issuer for TdxIssuer {
    fn issue(&self, report_data: &ReportData) -> Result<EvidenceDoc, IssueError> {
        let quote = self.quote(report_data)?;
        let collateral = self.collateral.read().ok().and_then(|c| c.clone());
        if collateral.is_none() {
            tracing::warn!("issuing TDX evidence without collateral: verifiers will refuse it");
        }
        Ok(EvidenceDoc::Tdx(TdxEvidence { quote, collateral }))
    }
}

/// Which platform a binary attests with, as chosen by its flags.
#[derive(Debug, Clone)]
pub enum PlatformChoice {
    /// The simulated platform persisted in `dir`, as a guest with this HOST_DATA.
    Simulated {
        /// Platform directory.
        dir: std::path::PathBuf,
        /// The guest's HOST_DATA (its policy hash).
        host_data: HostData,
        /// A launch measurement other than the platform's default.
        measurement: Option<Measurement>,
    },
    /// SEV-SNP hardware through configfs-tsm.
    Snp,
    /// Intel TDX hardware through configfs-tsm (`hw` feature); the caller attaches collateral
    /// ([`TdxIssuer::set_collateral`]) before serving.
    Tdx,
}

/// Opens the issuer the Coordinator and the Initializer share.
pub fn open_issuer(choice: PlatformChoice) -> Result<Arc<dyn Issuer>, IssueError> {
    match choice {
        PlatformChoice::Simulated {
            dir,
            host_data,
            measurement,
        } => {
            let platform = Arc::new(SimPlatform::open_or_create(&dir).map_err(|e| {
                IssueError(format!("simulated platform at {}: {e}", dir.display()))
            })?);
            tracing::warn!(root = %platform.root_fingerprint(), "SIMULATED platform: attestation proves the protocol, not isolation");
            let mut i = SimIssuer::new(platform, host_data);
            if let Some(m) = measurement {
                i = i.with_measurement(m);
            }
            Ok(Arc::new(i))
        }
        PlatformChoice::Snp => {
            let base = std::path::Path::new(nunki_attestation::snp::guest::TSM_REPORT_DIR);
            if !base.is_dir() {
                return Err(IssueError(format!(
                    "{} does not exist; this is not an SEV-SNP guest with configfs-tsm (Linux 6.7+, sev-guest module)",
                    base.display()
                )));
            }
            Ok(Arc::new(SnpIssuer::new(base)))
        }
        PlatformChoice::Tdx => Ok(Arc::new(open_tdx_issuer()?)),
    }
}

/// Opens the TDX issuer (configfs-tsm with the `tdx_guest` provider).
pub fn open_tdx_issuer() -> Result<TdxIssuer, IssueError> {
    #[cfg(feature = "hw")]
    {
        let base = std::path::Path::new(nunki_attestation::tdx::guest::TSM_REPORT_DIR);
        if !base.is_dir() {
            return Err(IssueError(format!(
                "{} does not exist; this is not a TDX guest with configfs-tsm (Linux 6.7+, tdx_guest module)",
                base.display()
            )));
        }
        Ok(TdxIssuer::new(base))
    }
    #[cfg(not(feature = "hw"))]
    {
        Err(IssueError(NO_HW.into()))
    }
}
