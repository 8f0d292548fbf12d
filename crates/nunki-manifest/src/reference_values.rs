//! Reference values for SEV-SNP and for the simulated SNP platform.
//!
//! These are the security documents a manifest owner writes. Parsing is strict: unknown fields
//! are errors and every value that decides trust (product, measurement, minimum TCB) must be
//! present. Optional fields default to the *strict* choice (debug refused, VMPL 0).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::{ChipId, IdKeyDigest, Measurement, Sha256Fingerprint};
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
}
