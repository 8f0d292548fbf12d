//! Reference values for SEV-SNP, Intel TDX and the simulated SNP platform.
//!
//! These are the security documents a manifest owner writes. Parsing is strict: unknown fields
//! are errors and every value that decides trust (product, measurement, minimum TCB) must be
//! present. Optional fields default to the *strict* choice (debug refused, VMPL 0).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::{
    ChipId, IdKeyDigest, Measurement, Piid, Sha256Fingerprint, TdAttributes, TdxXfam,
};
use crate::strict;

/// An AMD EPYC product line with its own SEV-SNP root of trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SnpProduct {
    /// 3rd generation EPYC (Zen 3).
    Milan,
    /// 4th generation EPYC (Zen 4), including Siena and Bergamo.
    Genoa,
    /// 5th generation EPYC (Zen 5).
    Turin,
}

impl SnpProduct {
    /// All products with built-in roots.
    pub const ALL: [SnpProduct; 3] = [SnpProduct::Milan, SnpProduct::Genoa, SnpProduct::Turin];

    /// The name AMD uses in certificate names and KDS paths.
    pub fn name(self) -> &'static str {
        match self {
            SnpProduct::Milan => "Milan",
            SnpProduct::Genoa => "Genoa",
            SnpProduct::Turin => "Turin",
        }
    }

    /// Whether the TCB_VERSION uses the Turin layout (with an FMC component).
    pub fn has_fmc(self) -> bool {
        matches!(self, SnpProduct::Turin)
    }
}

impl fmt::Display for SnpProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A product name that is not Milan, Genoa or Turin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SNP product {0:?}: expected one of milan, genoa, turin")]
pub struct UnknownProduct(pub String);

impl FromStr for SnpProduct {
    type Err = UnknownProduct;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "milan" => Ok(SnpProduct::Milan),
            "genoa" => Ok(SnpProduct::Genoa),
            "turin" => Ok(SnpProduct::Turin),
            _ => Err(UnknownProduct(s.to_string())),
        }
    }
}

/// Minimum security patch levels. Applied component-wise to the current, committed, reported
/// and launch TCB of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpMinimumTcb {
    /// Minimum boot loader SPL.
    #[serde(rename = "BootloaderVersion")]
    pub bootloader: u8,
    /// Minimum TEE (PSP OS) SPL.
    #[serde(rename = "TEEVersion")]
    pub tee: u8,
    /// Minimum SNP firmware SPL.
    #[serde(rename = "SNPVersion")]
    pub snp: u8,
    /// Minimum microcode SPL.
    #[serde(rename = "MicrocodeVersion")]
    pub microcode: u8,
    /// Minimum FMC SPL (Turin only; must be absent for other products).
    #[serde(
        rename = "FMCVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fmc: Option<u8>,
}

/// Which guest policies are acceptable. The migration agent is always refused. The default is
/// the strict choice: debug refused, any ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpGuestPolicy {
    /// Minimum ABI major version the guest policy must require.
    #[serde(rename = "MinimumABIMajor", default)]
    pub minimum_abi_major: u8,
    /// Minimum ABI minor version (compared together with the major version).
    #[serde(rename = "MinimumABIMinor", default)]
    pub minimum_abi_minor: u8,
    /// Accept guests launched with the DEBUG policy bit (their memory is readable by the host).
    #[serde(rename = "AllowDebug", default)]
    pub allow_debug: bool,
}

/// One acceptable SEV-SNP configuration (`ReferenceValues.snp[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpReferenceValues {
    /// Product whose AMD root must sign the endorsement key.
    #[serde(rename = "ProductName", deserialize_with = "strict::string_enum")]
    pub product: SnpProduct,
    /// Launch measurement of the guest firmware, kernel and command line.
    #[serde(rename = "TrustedMeasurement")]
    pub trusted_measurement: Measurement,
    /// Minimum TCB.
    #[serde(rename = "MinimumTCB", deserialize_with = "strict::map_only")]
    pub minimum_tcb: SnpMinimumTcb,
    /// Guest policy requirements.
    #[serde(rename = "GuestPolicy", default, deserialize_with = "strict::map_only")]
    pub guest_policy: SnpGuestPolicy,
    /// Chip IDs allowed to run the guest; empty means any chip.
    #[serde(rename = "AllowedChipIDs", default)]
    pub allowed_chip_ids: Vec<ChipId>,
    /// SHA-384 digests of allowed ID-block keys; empty means the ID key is not checked.
    #[serde(rename = "AllowedIDKeyDigests", default)]
    pub allowed_id_key_digests: Vec<IdKeyDigest>,
    /// The VMPL the report must have been requested from (default 0).
    #[serde(rename = "VMPL", default)]
    pub vmpl: u32,
}

/// One acceptable configuration of the *simulated* SNP platform (`ReferenceValues.simulated[]`).
///
/// Identical to [`SnpReferenceValues`] plus the SHA-256 fingerprint of the simulated ARK, which is
/// the only way a simulated root is ever trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedReferenceValues {
    /// SHA-256 of the DER encoding of the simulated ARK certificate.
    #[serde(rename = "RootFingerprint")]
    pub root_fingerprint: Sha256Fingerprint,
    /// Product layout the simulated platform imitates.
    #[serde(rename = "ProductName", deserialize_with = "strict::string_enum")]
    pub product: SnpProduct,
    /// Launch measurement.
    #[serde(rename = "TrustedMeasurement")]
    pub trusted_measurement: Measurement,
    /// Minimum TCB.
    #[serde(rename = "MinimumTCB", deserialize_with = "strict::map_only")]
    pub minimum_tcb: SnpMinimumTcb,
    /// Guest policy requirements.
    #[serde(rename = "GuestPolicy", default, deserialize_with = "strict::map_only")]
    pub guest_policy: SnpGuestPolicy,
    /// Chip IDs allowed; empty means any.
    #[serde(rename = "AllowedChipIDs", default)]
    pub allowed_chip_ids: Vec<ChipId>,
    /// Allowed ID-key digests; empty means not checked.
    #[serde(rename = "AllowedIDKeyDigests", default)]
    pub allowed_id_key_digests: Vec<IdKeyDigest>,
    /// Required VMPL (default 0).
    #[serde(rename = "VMPL", default)]
    pub vmpl: u32,
}

impl SimulatedReferenceValues {
    /// The hardware-independent part, as an SNP entry.
    pub fn as_snp(&self) -> SnpReferenceValues {
        SnpReferenceValues {
            product: self.product,
            trusted_measurement: self.trusted_measurement,
            minimum_tcb: self.minimum_tcb,
            guest_policy: self.guest_policy,
            allowed_chip_ids: self.allowed_chip_ids.clone(),
            allowed_id_key_digests: self.allowed_id_key_digests.clone(),
            vmpl: self.vmpl,
        }
    }
}

/// A TCB status as Intel's TCB Info and QE Identity name it.
///
/// `UpToDate` is always accepted; every other status only where a `tdx` entry lists it in
/// `AllowedTcbStatuses`. `Revoked` can be written but never accepted (manifest validation
/// refuses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TdxTcbStatus {
    /// The platform and QE are at the latest TCB level.
    UpToDate,
    /// Up to date, but software mitigations are advised (see the advisories).
    SWHardeningNeeded,
    /// Up to date, but the platform configuration needs changes (see the advisories).
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// A newer TCB level exists: the platform misses security fixes.
    OutOfDate,
    /// Out of date and the configuration needs changes.
    OutOfDateConfigurationNeeded,
    /// TDX 1.5: the TD runs on an updated module but was launched on an older one.
    TDRelaunchAdvised,
    /// TD relaunch advised and the configuration needs changes.
    TDRelaunchAdvisedConfigurationNeeded,
    /// The platform's keys are revoked; never accepted.
    Revoked,
}

impl TdxTcbStatus {
    /// Every status, in Intel's order.
    pub const ALL: [TdxTcbStatus; 9] = [
        TdxTcbStatus::UpToDate,
        TdxTcbStatus::SWHardeningNeeded,
        TdxTcbStatus::ConfigurationNeeded,
        TdxTcbStatus::ConfigurationAndSWHardeningNeeded,
        TdxTcbStatus::OutOfDate,
        TdxTcbStatus::OutOfDateConfigurationNeeded,
        TdxTcbStatus::TDRelaunchAdvised,
        TdxTcbStatus::TDRelaunchAdvisedConfigurationNeeded,
        TdxTcbStatus::Revoked,
    ];

    /// Intel's spelling.
    pub fn name(self) -> &'static str {
        match self {
            TdxTcbStatus::UpToDate => "UpToDate",
            TdxTcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TdxTcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TdxTcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TdxTcbStatus::OutOfDate => "OutOfDate",
            TdxTcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TdxTcbStatus::TDRelaunchAdvised => "TDRelaunchAdvised",
            TdxTcbStatus::TDRelaunchAdvisedConfigurationNeeded => {
                "TDRelaunchAdvisedConfigurationNeeded"
            }
            TdxTcbStatus::Revoked => "Revoked",
        }
    }
}

impl fmt::Display for TdxTcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A TCB status name Intel does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TCB status {name:?}: expected one of {list}", name = .0, list = TdxTcbStatus::ALL.map(TdxTcbStatus::name).join(", "))]
pub struct UnknownTcbStatus(pub String);

impl FromStr for TdxTcbStatus {
    type Err = UnknownTcbStatus;

    // Exact spelling only: the manifest is hashed byte-exactly and Intel's names are fixed.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TdxTcbStatus::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTcbStatus(s.to_string()))
    }
}

/// One acceptable Intel TDX configuration (`ReferenceValues.tdx[]`).
///
/// Every measurement is compared exactly. The pod's policy hash is not listed here: it is the
/// first 32 bytes of MRCONFIGID (the remaining 16 must be zero) and is looked up in
/// `Policies`, as HOST_DATA is for SEV-SNP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxReferenceValues {
    /// MRTD: the measurement of the TD's initial memory (TDVF firmware).
    #[serde(rename = "MrTd")]
    pub mr_td: Measurement,
    /// RTMR0..RTMR3: runtime measurement registers (firmware configuration, kernel, command
    /// line, ...), exactly four.
    #[serde(rename = "Rtmrs")]
    pub rtmrs: [Measurement; 4],
    /// MRSEAM: the measurement of the TDX module.
    #[serde(rename = "MrSeam")]
    pub mr_seam: Measurement,
    /// XFAM, as the 8 bytes of the TD report.
    #[serde(rename = "Xfam")]
    pub xfam: TdxXfam,
    /// TD_ATTRIBUTES, as the 8 bytes of the TD report; DEBUG must be clear.
    #[serde(rename = "TdAttributes")]
    pub td_attributes: TdAttributes,
    /// Lowest acceptable `tcbEvaluationDataNumber` of the TCB Info and QE Identity: refuses
    /// collateral older than Intel's TCB recovery event with this number.
    #[serde(rename = "MinimumTcbEvaluationDataNumber")]
    pub minimum_tcb_evaluation_data_number: u32,
    /// TCB statuses accepted besides `UpToDate`, by Intel's name (e.g. `OutOfDate`).
    #[serde(
        rename = "AllowedTcbStatuses",
        default,
        deserialize_with = "strict::vec_string_enum"
    )]
    pub allowed_tcb_statuses: Vec<TdxTcbStatus>,
    /// Platform Instance IDs allowed to run the TD; empty means any platform.
    #[serde(rename = "AllowedPIIDs", default)]
    pub allowed_piids: Vec<Piid>,
}

impl TdxReferenceValues {
    /// Whether `status` is acceptable under this entry.
    pub fn accepts_status(&self, status: TdxTcbStatus) -> bool {
        status == TdxTcbStatus::UpToDate
            || (status != TdxTcbStatus::Revoked && self.allowed_tcb_statuses.contains(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "ProductName": "Genoa",
            "TrustedMeasurement": "ab".repeat(48),
            "MinimumTCB": { "BootloaderVersion": 9, "TEEVersion": 0, "SNPVersion": 23, "MicrocodeVersion": 72 },
            "AllowedChipIDs": []
        })
    }

    #[test]
    fn parses_design_example_with_strict_defaults() {
        let rv: SnpReferenceValues = serde_json::from_value(sample()).unwrap();
        assert_eq!(rv.product, SnpProduct::Genoa);
        assert_eq!(rv.minimum_tcb.snp, 23);
        assert!(!rv.guest_policy.allow_debug);
        assert_eq!(rv.vmpl, 0);
    }

    #[test]
    fn unknown_field_is_an_error() {
        let mut v = sample();
        v["TrustedMeasurment"] = serde_json::json!("00");
        let err = serde_json::from_value::<SnpReferenceValues>(v).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown field `TrustedMeasurment`"),
            "{err}"
        );
    }

    #[test]
    fn missing_measurement_is_an_error() {
        let mut v = sample();
        v.as_object_mut().unwrap().remove("TrustedMeasurement");
        let err = serde_json::from_value::<SnpReferenceValues>(v).unwrap_err();
        assert!(err.to_string().contains("TrustedMeasurement"), "{err}");
    }

    #[test]
    fn missing_tcb_component_is_an_error() {
        let mut v = sample();
        v["MinimumTCB"]
            .as_object_mut()
            .unwrap()
            .remove("SNPVersion");
        assert!(serde_json::from_value::<SnpReferenceValues>(v).is_err());
    }

    #[test]
    fn product_names_parse_case_insensitively() {
        assert_eq!("turin".parse::<SnpProduct>().unwrap(), SnpProduct::Turin);
        assert!("venice".parse::<SnpProduct>().is_err());
    }

    fn tdx_sample() -> serde_json::Value {
        serde_json::json!({
            "MrTd": "11".repeat(48),
            "Rtmrs": ["21".repeat(48), "22".repeat(48), "23".repeat(48), "24".repeat(48)],
            "MrSeam": "33".repeat(48),
            "Xfam": "e742060000000000",
            "TdAttributes": "0000001000000000",
            "MinimumTcbEvaluationDataNumber": 17,
            "AllowedTcbStatuses": ["OutOfDate"],
            "AllowedPIIDs": []
        })
    }

    #[test]
    fn tdx_entry_parses_and_accepts_statuses_by_name() {
        let rv: TdxReferenceValues = serde_json::from_value(tdx_sample()).unwrap();
        assert_eq!(rv.rtmrs[3], Measurement([0x24; 48]));
        assert_eq!(rv.td_attributes.0, [0, 0, 0, 0x10, 0, 0, 0, 0]);
        assert!(rv.accepts_status(TdxTcbStatus::UpToDate));
        assert!(rv.accepts_status(TdxTcbStatus::OutOfDate));
        assert!(!rv.accepts_status(TdxTcbStatus::SWHardeningNeeded));
        let mut revoked = rv.clone();
        revoked.allowed_tcb_statuses.push(TdxTcbStatus::Revoked);
        assert!(!revoked.accepts_status(TdxTcbStatus::Revoked));
        // Round trip through the manifest spelling.
        let back: TdxReferenceValues =
            serde_json::from_value(serde_json::to_value(&rv).unwrap()).unwrap();
        assert_eq!(back, rv);
    }

    #[test]
    fn tdx_missing_values_are_errors() {
        for field in [
            "MrTd",
            "Rtmrs",
            "MrSeam",
            "Xfam",
            "TdAttributes",
            "MinimumTcbEvaluationDataNumber",
        ] {
            let mut v = tdx_sample();
            v.as_object_mut().unwrap().remove(field);
            let err = serde_json::from_value::<TdxReferenceValues>(v).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let mut v = tdx_sample();
        v["Rtmrs"].as_array_mut().unwrap().pop();
        assert!(serde_json::from_value::<TdxReferenceValues>(v).is_err());
        let mut v = tdx_sample();
        v["AllowedTcbStatuses"] = serde_json::json!(["outofdate"]);
        let err = serde_json::from_value::<TdxReferenceValues>(v).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `outofdate`"),
            "{err}"
        );
    }

    #[test]
    fn tcb_status_names_round_trip() {
        for s in TdxTcbStatus::ALL {
            assert_eq!(s.name().parse::<TdxTcbStatus>().unwrap(), s);
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.name())
            );
        }
        let err = "Uptodate".parse::<TdxTcbStatus>().unwrap_err();
        assert!(
            err.to_string().contains("UpToDate, SWHardeningNeeded"),
            "{err}"
        );
    }
}
