//! Platform issuers: produce evidence for a given REPORT_DATA.

use std::fmt::Debug;
use std::sync::Arc;

use nunki_attestation::sim::{SimPlatform, SimReportRequest};
use nunki_manifest::{HostData, Measurement, ReportData};

use crate::evidence::EvidenceDoc;

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
        Ok(EvidenceDoc {
            report: e.report,
            endorsement_key: e.vcek,
            chain: e.chain,
            crl: None,
        })
    }
}
