//! Creating and updating `manifest.json` from generated policies (`nunki generate`).
//!
//! The draft works on JSON rather than the validated types: a manifest being generated may still
//! hold [placeholders](crate::placeholder) that only its owner can fill in, and edits the owner
//! made (SANs, workload secret IDs, reference values, seed-share keys) must survive a re-run.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::digest::{PolicyHash, Sha256Fingerprint};
use crate::manifest::Role;
use crate::placeholder::placeholder;
use crate::reference_values::{SimulatedReferenceValues, SnpProduct};

/// One pod template whose policy was generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedWorkload {
    /// Hash of the policy document the runtime will put into HOST_DATA.
    pub policy_hash: PolicyHash,
    /// Resource name; the default SANs are `[name, "*"]`.
    pub name: String,
    /// Default workload secret ID (`<group>/<version>/<kind>/<namespace>/<name>`).
    pub workload_secret_id: String,
    /// Coordinator or ordinary workload.
    pub role: Role,
    /// Where it came from, for messages (`resources/web.yaml: Deployment web`).
    pub source: String,
}

/// Which reference values a new manifest gets.
#[derive(Debug, Clone)]
pub enum ReferenceChoice {
    /// Keep the existing manifest's reference values (an error when there is none).
    Keep,
    /// The local simulated platform.
    Simulated(Box<SimulatedReferenceValues>),
    /// SEV-SNP hardware of this product line, with placeholders for what only the owner knows.
    Snp(SnpProduct),
}

/// Which workload owner keys the manifest lists.
#[derive(Debug, Clone)]
pub enum OwnerKeys {
    /// Add these digests to the ones already listed.
    Add(Vec<Sha256Fingerprint>),
    /// No owner keys: the deployment can never be updated.
    Disabled,
}

/// What changed, for the command's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DraftReport {
    /// Entries created with default SANs and secret ID: `(hash, source)`.
    pub added: Vec<(PolicyHash, String)>,
    /// Entries carried over from the old manifest (same hash, or same workload with a new hash).
    pub kept: Vec<(PolicyHash, String)>,
    /// Old entries whose workload no longer exists.
    pub removed: Vec<String>,
    /// Paths of placeholders the owner must fill in before `nunki set`.
    pub placeholders: Vec<String>,
}

/// Why a manifest could not be drafted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DraftError {
    /// The existing manifest is not JSON or not an object.
    #[error("existing manifest is not usable: {0}; fix it or delete it to start over")]
    Existing(String),
    /// No reference values anywhere.
    #[error(
        "no reference values: the manifest has none yet, choose them with --reference-values simulated|snp-milan|snp-genoa|snp-turin"
    )]
    NoReferenceValues,
    /// Two workloads have the same policy (so the same identity).
    #[error(
        "{first} and {second} have the same policy {hash}, so the Coordinator could not tell them apart; make them differ (names, images, arguments)"
    )]
    DuplicatePolicy {
        /// The shared hash.
        hash: PolicyHash,
        /// The first workload.
        first: String,
        /// The second workload.
        second: String,
    },
}

/// A policy entry in the schema's key order.
#[derive(Serialize)]
struct OutEntry {
    #[serde(rename = "SANs")]
    sans: Value,
    #[serde(rename = "WorkloadSecretID")]
    workload_secret_id: Value,
    #[serde(rename = "Role")]
    role: &'static str,
}

#[derive(Serialize)]
struct Out<'a> {
    #[serde(rename = "Policies")]
    policies: &'a BTreeMap<String, OutEntry>,
    #[serde(rename = "ReferenceValues")]
    reference_values: &'a Value,
    #[serde(rename = "WorkloadOwnerKeyDigests")]
    workload_owner_key_digests: &'a [String],
    #[serde(rename = "SeedshareOwnerPubKeys")]
    seedshare_owner_pub_keys: &'a [Value],
}

/// Reference values for SNP hardware of `product`, with placeholders for the launch measurement
/// and minimum TCB.
pub fn snp_template(product: SnpProduct) -> Value {
    let mut tcb = serde_json::Map::new();
    for (field, what) in [
        (
            "BootloaderVersion",
            "minimum boot loader SPL of your machines (a number)",
        ),
        ("TEEVersion", "minimum TEE SPL of your machines (a number)"),
        (
            "SNPVersion",
            "minimum SNP firmware SPL of your machines (a number)",
        ),
        (
            "MicrocodeVersion",
            "minimum microcode SPL of your machines (a number)",
        ),
    ] {
        tcb.insert(field.to_string(), Value::String(placeholder(what)));
    }
    if product.has_fmc() {
        tcb.insert(
            "FMCVersion".to_string(),
            Value::String(placeholder("minimum FMC SPL of your machines (a number)")),
        );
    }
    serde_json::json!({
        "snp": [{
            "ProductName": product.name(),
            "TrustedMeasurement": placeholder(
                "launch measurement of your Kata guest image (96 hex characters; `nunki report show` prints it from a report)"
            ),
            "MinimumTCB": Value::Object(tcb),
            "GuestPolicy": {"MinimumABIMajor": 0, "MinimumABIMinor": 0, "AllowDebug": false},
            "AllowedChipIDs": [],
            "AllowedIDKeyDigests": [],
            "VMPL": 0
        }]
    })
}

/// Builds the new manifest bytes from the old ones (if any) and the generated workloads.
/// `seedshare_owners` (hex of PKCS#1 RSA public keys) are added to `SeedshareOwnerPubKeys`
/// unless already listed.
pub fn update(
    existing: Option<&[u8]>,
    workloads: &[GeneratedWorkload],
    reference: &ReferenceChoice,
    owner_keys: &OwnerKeys,
    seedshare_owners: &[String],
) -> Result<(Vec<u8>, DraftReport), DraftError> {
    let old = match existing {
        Some(bytes) => {
            let v: Value = serde_json::from_slice(bytes)
                .map_err(|e| DraftError::Existing(format!("invalid JSON: {e}")))?;
            match v {
                Value::Object(map) => map,
                _ => return Err(DraftError::Existing("not a JSON object".to_string())),
            }
        }
        None => serde_json::Map::new(),
    };
    let old_policies = match old.get("Policies") {
        Some(Value::Object(p)) => p.clone(),
        Some(_) => {
            return Err(DraftError::Existing(
                "Policies is not an object".to_string(),
            ));
        }
        None => serde_json::Map::new(),
    };

    let mut report = DraftReport::default();
    let mut policies: BTreeMap<String, OutEntry> = BTreeMap::new();
    let mut sources: BTreeMap<String, &str> = BTreeMap::new();
    let mut used_old: Vec<String> = Vec::new();
    for w in workloads {
        let key = w.policy_hash.to_string();
        if let Some(first) = sources.get(&key) {
            return Err(DraftError::DuplicatePolicy {
                hash: w.policy_hash,
                first: (*first).to_string(),
                second: w.source.clone(),
            });
        }
        sources.insert(key.clone(), &w.source);
        // The same policy as before, or the same workload (by its default secret ID) with a
        // changed policy: keep the owner's SANs and secret ID.
        let previous = old_policies
            .get(&key)
            .map(|e| (key.clone(), e))
            .or_else(|| {
                old_policies.iter().find_map(|(k, e)| {
                    (!used_old.contains(k)
                        && !workloads.iter().any(|o| o.policy_hash.to_string() == *k)
                        && e.get("WorkloadSecretID").and_then(Value::as_str)
                            == Some(w.workload_secret_id.as_str()))
                    .then(|| (k.clone(), e))
                })
            });
        let (sans, secret_id) = match previous {
            Some((old_key, entry)) => {
                used_old.push(old_key);
                report.kept.push((w.policy_hash, w.source.clone()));
                (
                    entry
                        .get("SANs")
                        .cloned()
                        .unwrap_or_else(|| default_sans(&w.name)),
                    entry
                        .get("WorkloadSecretID")
                        .cloned()
                        .unwrap_or_else(|| Value::String(w.workload_secret_id.clone())),
                )
            }
            None => {
                report.added.push((w.policy_hash, w.source.clone()));
                (
                    default_sans(&w.name),
                    Value::String(w.workload_secret_id.clone()),
                )
            }
        };
        policies.insert(
            key,
            OutEntry {
                sans,
                workload_secret_id: secret_id,
                role: w.role.as_str(),
            },
        );
    }
    for (k, e) in &old_policies {
        if !used_old.contains(k) && !policies.contains_key(k) {
            let id = e
                .get("WorkloadSecretID")
                .and_then(Value::as_str)
                .unwrap_or_default();
            report.removed.push(if id.is_empty() {
                k.clone()
            } else {
                format!("{k} ({id})")
            });
        }
    }

    let reference_values = match reference {
        ReferenceChoice::Keep => match old.get("ReferenceValues") {
            Some(v @ Value::Object(_)) => v.clone(),
            _ => return Err(DraftError::NoReferenceValues),
        },
        ReferenceChoice::Simulated(values) => {
            serde_json::json!({ "simulated": [values] })
        }
        ReferenceChoice::Snp(product) => snp_template(*product),
    };

    let mut digests: Vec<String> = match owner_keys {
        OwnerKeys::Disabled => Vec::new(),
        OwnerKeys::Add(new) => {
            let mut all: Vec<String> = old
                .get("WorkloadOwnerKeyDigests")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            all.extend(new.iter().map(ToString::to_string));
            all
        }
    };
    digests.sort();
    digests.dedup();
    let mut seedshare: Vec<Value> = old
        .get("SeedshareOwnerPubKeys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for key in seedshare_owners {
        let listed = seedshare
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(key)));
        if !listed {
            seedshare.push(Value::String(key.to_ascii_lowercase()));
        }
    }

    let out = Out {
        policies: &policies,
        reference_values: &reference_values,
        workload_owner_key_digests: &digests,
        seedshare_owner_pub_keys: &seedshare,
    };
    let mut bytes = serde_json::to_vec_pretty(&out)
        .map_err(|e| DraftError::Existing(format!("cannot serialise: {e}")))?;
    bytes.push(b'\n');
    report.placeholders = crate::placeholder::find(&bytes)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    Ok((bytes, report))
}

fn default_sans(name: &str) -> Value {
    serde_json::json!([name, "*"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParsedManifest;

    fn hash(b: u8) -> PolicyHash {
        PolicyHash::from([b; 32])
    }

    fn workload(b: u8, name: &str, role: Role) -> GeneratedWorkload {
        GeneratedWorkload {
            policy_hash: hash(b),
            name: name.to_string(),
            workload_secret_id: format!("apps/v1/Deployment/default/{name}"),
            role,
            source: format!("Deployment {name}"),
        }
    }

    fn sim() -> ReferenceChoice {
        let rv: SimulatedReferenceValues = serde_json::from_value(serde_json::json!({
            "RootFingerprint": "11".repeat(32),
            "ProductName": "Genoa",
            "TrustedMeasurement": "22".repeat(48),
            "MinimumTCB": {"BootloaderVersion": 1, "TEEVersion": 0, "SNPVersion": 2, "MicrocodeVersion": 3}
        }))
        .unwrap();
        ReferenceChoice::Simulated(Box::new(rv))
    }

    #[test]
    fn new_manifest_is_valid_and_rerun_is_identical() {
        let ws = [
            workload(1, "coordinator", Role::Coordinator),
            workload(2, "web", Role::None),
        ];
        let keys = OwnerKeys::Add(vec![Sha256Fingerprint::from([7; 32])]);
        let (bytes, report) = update(None, &ws, &sim(), &keys, &[]).unwrap();
        assert_eq!(report.added.len(), 2);
        let parsed = ParsedManifest::parse(&bytes).unwrap();
        assert_eq!(parsed.policy(&hash(2)).unwrap().sans, ["web", "*"]);
        let (again, report) =
            update(Some(&bytes), &ws, &ReferenceChoice::Keep, &keys, &[]).unwrap();
        assert_eq!(again, bytes);
        assert_eq!(report.kept.len(), 2);
    }

    #[test]
    fn user_edits_survive_a_policy_change_and_stale_entries_go() {
        let ws = [
            workload(1, "coordinator", Role::Coordinator),
            workload(2, "web", Role::None),
            workload(3, "old", Role::None),
        ];
        let (bytes, _) = update(None, &ws, &sim(), &OwnerKeys::Disabled, &[]).unwrap();
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        v["Policies"][hash(2).to_string()]["SANs"] = serde_json::json!(["web.example.com"]);
        let edited = serde_json::to_vec(&v).unwrap();
        // web's pod changed (new hash 4); "old" is gone.
        let ws2 = [
            workload(1, "coordinator", Role::Coordinator),
            workload(4, "web", Role::None),
        ];
        let (bytes2, report) = update(
            Some(&edited),
            &ws2,
            &ReferenceChoice::Keep,
            &OwnerKeys::Disabled,
            &[],
        )
        .unwrap();
        let parsed = ParsedManifest::parse(&bytes2).unwrap();
        assert_eq!(parsed.policy(&hash(4)).unwrap().sans, ["web.example.com"]);
        assert!(parsed.policy(&hash(2)).is_none());
        assert!(parsed.policy(&hash(3)).is_none());
        assert_eq!(report.removed.len(), 1, "{report:?}");
        assert!(parsed.manifest().workload_owner_key_digests.is_empty());
    }

    #[test]
    fn hardware_template_has_placeholders_that_parse_refuses() {
        let ws = [workload(1, "coordinator", Role::Coordinator)];
        let (bytes, report) = update(
            None,
            &ws,
            &ReferenceChoice::Snp(SnpProduct::Turin),
            &OwnerKeys::Disabled,
            &[],
        )
        .unwrap();
        assert_eq!(report.placeholders.len(), 6, "{report:?}");
        let errs = ParsedManifest::parse(&bytes).unwrap_err();
        let text = errs.to_string();
        assert!(
            text.contains("$.ReferenceValues.snp[0].TrustedMeasurement"),
            "{text}"
        );
        assert!(text.contains("MinimumTCB.FMCVersion"), "{text}");
        assert_eq!(errs.len(), 6);
    }

    #[test]
    fn duplicate_policies_and_missing_reference_values_are_errors() {
        let ws = [workload(1, "a", Role::None), workload(1, "b", Role::None)];
        assert!(matches!(
            update(None, &ws, &sim(), &OwnerKeys::Disabled, &[]),
            Err(DraftError::DuplicatePolicy { .. })
        ));
        let ws = [workload(1, "a", Role::Coordinator)];
        assert_eq!(
            update(None, &ws, &ReferenceChoice::Keep, &OwnerKeys::Disabled, &[]),
            Err(DraftError::NoReferenceValues)
        );
        assert!(matches!(
            update(Some(b"[1]"), &ws, &sim(), &OwnerKeys::Disabled, &[]),
            Err(DraftError::Existing(_))
        ));
    }

    #[test]
    fn seedshare_owners_are_added_once_and_kept() {
        let ws = [workload(1, "coordinator", Role::Coordinator)];
        let (bytes, _) = update(
            None,
            &ws,
            &sim(),
            &OwnerKeys::Disabled,
            &["AABB".to_string()],
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["SeedshareOwnerPubKeys"], serde_json::json!(["aabb"]));
        // Again with the same key and a second one: listed once each, old order kept.
        let (bytes, _) = update(
            Some(&bytes),
            &ws,
            &ReferenceChoice::Keep,
            &OwnerKeys::Disabled,
            &["aabb".to_string(), "ccdd".to_string()],
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["SeedshareOwnerPubKeys"],
            serde_json::json!(["aabb", "ccdd"])
        );
        // Without new keys the list stays.
        let (bytes, _) = update(
            Some(&bytes),
            &ws,
            &ReferenceChoice::Keep,
            &OwnerKeys::Disabled,
            &[],
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["SeedshareOwnerPubKeys"].as_array().unwrap().len(), 2);
    }
}
