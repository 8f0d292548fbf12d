//! Helpers shared by unit tests.

use nunki_manifest::{ParsedManifest, PolicyHash};

/// Manifest bytes with these `(policy hash, role)` entries and one simulated reference value.
pub fn manifest_bytes(policies: &[(&PolicyHash, &str)], note: &str) -> Vec<u8> {
    let mut p = serde_json::Map::new();
    for (i, (h, role)) in policies.iter().enumerate() {
        p.insert(
            h.to_hex(),
            serde_json::json!({ "SANs": [format!("w{i}")], "Role": role, "WorkloadSecretID": note }),
        );
    }
    let v = serde_json::json!({
        "Policies": p,
        "ReferenceValues": { "simulated": [{
            "RootFingerprint": "11".repeat(32),
            "ProductName": "Milan",
            "TrustedMeasurement": "22".repeat(48),
            "MinimumTCB": { "BootloaderVersion": 1, "TEEVersion": 2, "SNPVersion": 3, "MicrocodeVersion": 4 }
        }] }
    });
    serde_json::to_vec_pretty(&v).unwrap()
}

/// [`manifest_bytes`], parsed.
pub fn manifest(policies: &[(&PolicyHash, &str)]) -> ParsedManifest {
    ParsedManifest::parse(&manifest_bytes(policies, "")).unwrap()
}
