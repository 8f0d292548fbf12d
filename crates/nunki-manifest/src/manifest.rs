//! The manifest document: schema, strict parsing with every problem collected, and a
//! deterministic writer.
//!
//! The exact bytes a user wrote are what is hashed, stored and compared, so parsing keeps them
//! and never re-serialises. Structural problems (bad JSON, unknown or missing fields, wrong types)
//! stop parsing at the first one, because nothing after them can be trusted to line up; every
//! semantic problem after that is collected, so an owner can fix a document in one pass.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{ManifestHash, PolicyHash, Sha256Fingerprint, sha256};
use crate::reference_values::{
    SimulatedReferenceValues, SnpProduct, SnpReferenceValues, TdxReferenceValues, TdxTcbStatus,
};
use crate::san::{San, SanError};
use crate::strict::{self, MapOnly};

/// Longest excerpt of user input repeated inside an error message.
const MAX_QUOTED: usize = 80;

/// The manifest: which workloads may join, on which platforms, and who may change it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Manifest {
    /// Policy hash (what the runtime puts into HOST_DATA) to the identity of that workload.
    #[serde(rename = "Policies")]
    pub policies: BTreeMap<PolicyHash, PolicyEntry>,
    /// Acceptable hardware (or simulated) configurations; evidence must match any one entry.
    #[serde(rename = "ReferenceValues")]
    pub reference_values: ReferenceValues,
    /// SHA-256 of the P-384 SubjectPublicKeyInfo DER of each key allowed to update the manifest.
    #[serde(rename = "WorkloadOwnerKeyDigests")]
    pub workload_owner_key_digests: Vec<Sha256Fingerprint>,
    /// Hex of the DER PKCS#1 RSA public key of each seed-share owner, as written.
    #[serde(rename = "SeedshareOwnerPubKeys")]
    pub seedshare_owner_pub_keys: Vec<String>,
}

/// The identity a workload with a given policy hash receives.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PolicyEntry {
    /// Subject alternative names of the workload's mesh certificate (see [`San`]).
    #[serde(rename = "SANs")]
    pub sans: Vec<String>,
    /// Identifier the workload secret is derived from; empty means none.
    #[serde(rename = "WorkloadSecretID")]
    pub workload_secret_id: String,
    /// What the workload is to the mesh.
    #[serde(rename = "Role")]
    pub role: Role,
}

/// The role of a policy entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Role {
    /// An ordinary workload (`""`).
    #[default]
    None,
    /// The Coordinator (`"coordinator"`): clients attest it with this policy hash.
    Coordinator,
}

impl Role {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "",
            Role::Coordinator => "coordinator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role string that is neither `""` nor `"coordinator"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected \"\" or \"coordinator\"")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    // Case-sensitive on purpose: the manifest is hashed byte-exactly, so one spelling only.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Ok(Role::None),
            "coordinator" => Ok(Role::Coordinator),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Reference values per platform (`ReferenceValues`); each list may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceValues {
    /// SEV-SNP configurations.
    #[serde(default, deserialize_with = "strict::vec_map_only")]
    pub snp: Vec<SnpReferenceValues>,
    /// Intel TDX configurations.
    #[serde(default, deserialize_with = "strict::vec_map_only")]
    pub tdx: Vec<TdxReferenceValues>,
    /// Simulated-platform configurations; never mixed with real hardware.
    #[serde(default, deserialize_with = "strict::vec_map_only")]
    pub simulated: Vec<SimulatedReferenceValues>,
}

impl Manifest {
    /// Deterministic pretty JSON (2-space indent, schema key order, trailing newline).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising these types cannot fail: every map key is a string and no Serialize impl
        // reports an error. Were it ever to, the empty output fails parsing (fail closed).
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// A manifest that passed every check, with the exact bytes it was parsed from.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    manifest: Manifest,
    raw: Vec<u8>,
    hash: ManifestHash,
}

impl ParsedManifest {
    /// Parses and validates a manifest, collecting every problem.
    pub fn parse(bytes: &[u8]) -> Result<ParsedManifest, ManifestErrors> {
        // Placeholders written by `nunki generate` come first: every one is named at once, and
        // the typed parse below would only report the first as a bad hex string or number.
        let placeholders = crate::placeholder::find(bytes);
        if !placeholders.is_empty() {
            return Err(ManifestErrors(
                placeholders
                    .into_iter()
                    .map(|(path, what)| ManifestError {
                        path,
                        kind: ManifestErrorKind::Placeholder { what },
                    })
                    .collect(),
            ));
        }
        let raw = deserialize_raw(bytes).map_err(|e| ManifestErrors(vec![e]))?;
        let mut errors = Vec::new();
        let manifest = validate(raw, &mut errors);
        if !errors.is_empty() {
            return Err(ManifestErrors(errors));
        }
        Ok(ParsedManifest {
            manifest,
            raw: bytes.to_vec(),
            hash: ManifestHash::of_manifest_bytes(bytes),
        })
    }

    /// Writes `manifest` with [`Manifest::to_json_bytes`] and parses the result.
    pub fn from_manifest(manifest: &Manifest) -> Result<ParsedManifest, ManifestErrors> {
        ParsedManifest::parse(&manifest.to_json_bytes())
    }

    /// The validated document.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The exact bytes that were parsed (and hashed).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// SHA-256 of [`raw`](Self::raw).
    pub fn hash(&self) -> ManifestHash {
        self.hash
    }

    /// Policy hashes with `Role: "coordinator"`, in ascending order (never empty).
    pub fn coordinator_policy_hashes(&self) -> Vec<PolicyHash> {
        self.manifest
            .policies
            .iter()
            .filter(|(_, e)| e.role == Role::Coordinator)
            .map(|(h, _)| *h)
            .collect()
    }

    /// The entry for a policy hash, if the manifest lists it.
    pub fn policy(&self, hash: &PolicyHash) -> Option<&PolicyEntry> {
        self.manifest.policies.get(hash)
    }

    /// Whether the manifest trusts the simulated platform (and then nothing else).
    pub fn is_simulated(&self) -> bool {
        !self.manifest.reference_values.simulated.is_empty()
    }

    /// The document and its exact bytes.
    pub fn into_parts(self) -> (Manifest, Vec<u8>) {
        (self.manifest, self.raw)
    }
}

impl fmt::Debug for ParsedManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The raw bytes as a list of numbers would drown the rest; the hash identifies them.
        f.debug_struct("ParsedManifest")
            .field("hash", &self.hash)
            .field("raw_len", &self.raw.len())
            .field("manifest", &self.manifest)
            .finish()
    }
}

impl ManifestHash {
    /// SHA-256 of the exact bytes of a manifest.
    pub fn of_manifest_bytes(raw: &[u8]) -> ManifestHash {
        ManifestHash(sha256(raw))
    }
}

/// One problem in a manifest: where (a JSON path such as `$.Policies["ab…"].SANs[0]`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// JSON path of the offending value, starting at `$`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub kind: ManifestErrorKind,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind)
    }
}

impl std::error::Error for ManifestError {}

/// What is wrong at a [`ManifestError`]'s path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestErrorKind {
    /// The bytes are not JSON, or end too early.
    #[error("invalid JSON: {reason} at line {line} column {column}")]
    Syntax {
        /// What the JSON parser reported.
        reason: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// JSON, but not the manifest schema: unknown or missing field, wrong type, bad value.
    #[error("{reason} at line {line} column {column}")]
    Schema {
        /// What the deserializer reported.
        reason: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A `Policies` key that is not a SHA-256 in lowercase hex.
    #[error("key must be 64 lowercase hex characters (a SHA-256)")]
    InvalidPolicyHash,
    /// The same `Policies` key twice (JSON parsers disagree on which one wins).
    #[error("key appears more than once; merge the entries into one")]
    DuplicatePolicyHash,
    /// A policy entry without SANs.
    #[error("must list at least one SAN (a DNS name, \"*\", an IP address or a URI)")]
    EmptySans,
    /// A SAN that is not a DNS name, IP address or URI.
    #[error(
        "{san} is not a valid SAN: {reason}; use a DNS name (RFC 1123, optionally with a leading \"*.\"), \"*\", an IP address or a URI with a scheme such as spiffe://…"
    )]
    InvalidSan {
        /// The SAN as a JSON string (shortened when long).
        san: String,
        /// Why it was refused.
        reason: SanError,
    },
    /// A `Role` other than `""` and `"coordinator"`.
    #[error("must be \"\" (a workload) or \"coordinator\", not {role}")]
    InvalidRole {
        /// The role as a JSON string (shortened when long).
        role: String,
    },
    /// A `WorkloadSecretID` with a character outside printable ASCII, or a space.
    #[error("must be printable ASCII without spaces; found {found:?} at index {position}")]
    InvalidWorkloadSecretId {
        /// Zero-based character position.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// No policy has `Role: "coordinator"`.
    #[error(
        "no policy has Role \"coordinator\": add the Coordinator's policy with \"Role\": \"coordinator\" so clients can attest it"
    )]
    MissingCoordinator,
    /// `snp`, `tdx` and `simulated` are all empty.
    #[error(
        "no reference values: add at least one snp, tdx or simulated entry (an empty set is refused, never read as \"trust anything\")"
    )]
    NoReferenceValues,
    /// A `tdx` entry whose `TdAttributes` has the DEBUG bit set.
    #[error(
        "DEBUG (bit 0) is set: a debug TD's memory and CPU state are readable by the host, so debug TDs are always refused; clear the bit"
    )]
    TdxDebugAttribute,
    /// `Revoked` in a `tdx` entry's `AllowedTcbStatuses`.
    #[error("Revoked is never accepted (the platform's keys are compromised); remove it")]
    TdxRevokedStatus,
    /// Simulated entries next to snp or tdx entries.
    #[error(
        "simulated entries must not be mixed with snp or tdx entries (the simulated platform proves the protocol, not isolation); keep only one kind"
    )]
    MixedPlatforms,
    /// A Turin entry without `MinimumTCB.FMCVersion`.
    #[error("required because ProductName is Turin: set the minimum FMC security patch level")]
    FmcVersionRequired,
    /// `MinimumTCB.FMCVersion` on a product without an FMC.
    #[error(
        "must be absent because ProductName is {product} (only Turin's TCB has an FMC component)"
    )]
    FmcVersionNotAllowed {
        /// The entry's product.
        product: SnpProduct,
    },
    /// A `WorkloadOwnerKeyDigests` entry that is not a SHA-256 in hex.
    #[error("must be 64 hex characters, the SHA-256 of a P-384 SubjectPublicKeyInfo DER: {reason}")]
    InvalidKeyDigest {
        /// What is wrong with it.
        reason: String,
    },
    /// A `SeedshareOwnerPubKeys` entry that is not a usable RSA public key.
    #[error("must be the hex of a DER PKCS#1 RSAPublicKey: {reason}")]
    InvalidSeedshareKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A value `nunki generate` could not know and left for the owner to fill in.
    #[error("placeholder left by `nunki generate`: fill in {what}")]
    Placeholder {
        /// What belongs here.
        what: String,
    },
    /// The same key digest or seed-share key twice.
    #[error("duplicate of entry {first}; remove it")]
    DuplicateEntry {
        /// Index of the first occurrence.
        first: usize,
    },
}

/// Every problem found in a manifest (never empty when returned by [`ParsedManifest::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl ManifestErrors {
    /// The problems, in document order.
    pub fn iter(&self) -> std::slice::Iter<'_, ManifestError> {
        self.0.iter()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

impl IntoIterator for ManifestErrors {
    type Item = ManifestError;
    type IntoIter = std::vec::IntoIter<ManifestError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ManifestErrors {
    type Item = &'a ManifestError;
    type IntoIter = std::slice::Iter<'a, ManifestError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

// ---------------------------------------------------------------------------------------------
// Raw shape: what serde reads before validation. Values whose problems should be collected
// rather than abort parsing (policy keys, roles, SANs, key strings) stay strings here.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(rename = "Policies")]
    policies: RawPolicies,
    #[serde(rename = "ReferenceValues", deserialize_with = "strict::map_only")]
    reference_values: ReferenceValues,
    #[serde(rename = "WorkloadOwnerKeyDigests", default)]
    workload_owner_key_digests: Vec<String>,
    #[serde(rename = "SeedshareOwnerPubKeys", default)]
    seedshare_owner_pub_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyEntry {
    #[serde(rename = "SANs")]
    sans: Vec<String>,
    #[serde(rename = "WorkloadSecretID", default)]
    workload_secret_id: String,
    #[serde(rename = "Role", default)]
    role: String,
}

/// `Policies` in document order, duplicates kept so they can be reported.
struct RawPolicies(Vec<(String, RawPolicyEntry)>);

impl<'de> Deserialize<'de> for RawPolicies {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PoliciesVisitor;

        impl<'de> Visitor<'de> for PoliciesVisitor {
            type Value = RawPolicies;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object from policy hash to policy entry")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPolicies, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let MapOnly(entry) = map.next_value::<MapOnly<RawPolicyEntry>>()?;
                    entries.push((key, entry));
                }
                Ok(RawPolicies(entries))
            }
        }

        deserializer.deserialize_map(PoliciesVisitor)
    }
}

fn deserialize_raw(bytes: &[u8]) -> Result<RawManifest, ManifestError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw =
        serde_path_to_error::deserialize::<_, MapOnly<RawManifest>>(&mut de).map_err(|e| {
            let path = format_serde_path(e.path());
            serde_error(path, &e.into_inner())
        })?;
    // Trailing data after the document would be hashed but never read: refuse it.
    de.end().map_err(|e| serde_error("$".to_string(), &e))?;
    Ok(raw.0)
}

fn serde_error(path: String, e: &serde_json::Error) -> ManifestError {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let reason = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    let kind = match e.classify() {
        serde_json::error::Category::Data => ManifestErrorKind::Schema {
            reason,
            line,
            column,
        },
        _ => ManifestErrorKind::Syntax {
            reason,
            line,
            column,
        },
    };
    ManifestError { path, kind }
}

fn format_serde_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;

    let mut out = String::from("$");
    let mut in_policies = false;
    for (depth, segment) in path.iter().enumerate() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                // Policy hashes are data, not field names: always bracketed, as in our own paths.
                let is_policy_key = depth == 1 && in_policies;
                if !is_policy_key && is_identifier(key) {
                    out.push('.');
                    out.push_str(key);
                } else {
                    out.push_str(&format!("[{}]", quote(key)));
                }
                in_policies = depth == 0 && key == "Policies";
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `s` as a JSON string literal, shortened to [`MAX_QUOTED`] characters.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        if i == MAX_QUOTED {
            out.push('…');
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// Validation: turns the raw shape into a Manifest, pushing every problem found.

fn validate(raw: RawManifest, errors: &mut Vec<ManifestError>) -> Manifest {
    let policies = validate_policies(raw.policies, errors);
    validate_reference_values(&raw.reference_values, errors);
    let workload_owner_key_digests = validate_key_digests(&raw.workload_owner_key_digests, errors);
    validate_seedshare_keys(&raw.seedshare_owner_pub_keys, errors);
    Manifest {
        policies,
        reference_values: raw.reference_values,
        workload_owner_key_digests,
        seedshare_owner_pub_keys: raw.seedshare_owner_pub_keys,
    }
}

fn push(errors: &mut Vec<ManifestError>, path: String, kind: ManifestErrorKind) {
    errors.push(ManifestError { path, kind });
}

fn validate_policies(
    raw: RawPolicies,
    errors: &mut Vec<ManifestError>,
) -> BTreeMap<PolicyHash, PolicyEntry> {
    let mut policies = BTreeMap::new();
    let mut seen = HashSet::new();
    // Counted on the raw role so a coordinator entry with a mistyped key is not also reported
    // as a missing coordinator.
    let mut has_coordinator = false;
    for (key, entry) in raw.0 {
        let path = format!("$.Policies[{}]", quote(&key));
        let hash = parse_policy_hash(&key);
        if hash.is_none() {
            push(errors, path.clone(), ManifestErrorKind::InvalidPolicyHash);
        }
        if !seen.insert(key.clone()) {
            push(errors, path.clone(), ManifestErrorKind::DuplicatePolicyHash);
        }
        has_coordinator |= entry.role == Role::Coordinator.as_str();
        let entry = validate_policy_entry(&path, entry, errors);
        if let Some(hash) = hash {
            policies.insert(hash, entry);
        }
    }
    if !has_coordinator {
        push(
            errors,
            "$.Policies".to_string(),
            ManifestErrorKind::MissingCoordinator,
        );
    }
    policies
}

fn parse_policy_hash(key: &str) -> Option<PolicyHash> {
    // The newtype accepts uppercase and surrounding space; a map key must have one spelling.
    let canonical = key.len() == 2 * PolicyHash::LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !canonical {
        return None;
    }
    key.parse().ok()
}

fn validate_policy_entry(
    path: &str,
    raw: RawPolicyEntry,
    errors: &mut Vec<ManifestError>,
) -> PolicyEntry {
    if raw.sans.is_empty() {
        push(errors, format!("{path}.SANs"), ManifestErrorKind::EmptySans);
    }
    for (i, san) in raw.sans.iter().enumerate() {
        if let Err(reason) = San::parse(san) {
            push(
                errors,
                format!("{path}.SANs[{i}]"),
                ManifestErrorKind::InvalidSan {
                    san: quote(san),
                    reason,
                },
            );
        }
    }
    let role = raw.role.parse::<Role>().unwrap_or_else(|_| {
        push(
            errors,
            format!("{path}.Role"),
            ManifestErrorKind::InvalidRole {
                role: quote(&raw.role),
            },
        );
        Role::None
    });
    if let Some((position, found)) = raw
        .workload_secret_id
        .chars()
        .enumerate()
        .find(|(_, c)| !matches!(c, '!'..='~'))
    {
        push(
            errors,
            format!("{path}.WorkloadSecretID"),
            ManifestErrorKind::InvalidWorkloadSecretId { position, found },
        );
    }
    PolicyEntry {
        sans: raw.sans,
        workload_secret_id: raw.workload_secret_id,
        role,
    }
}

fn validate_reference_values(rv: &ReferenceValues, errors: &mut Vec<ManifestError>) {
    let real = !rv.snp.is_empty() || !rv.tdx.is_empty();
    if !real && rv.simulated.is_empty() {
        push(
            errors,
            "$.ReferenceValues".to_string(),
            ManifestErrorKind::NoReferenceValues,
        );
    }
    if real && !rv.simulated.is_empty() {
        push(
            errors,
            "$.ReferenceValues.simulated".to_string(),
            ManifestErrorKind::MixedPlatforms,
        );
    }
    for (i, e) in rv.snp.iter().enumerate() {
        check_fmc(
            &format!("$.ReferenceValues.snp[{i}]"),
            e.product,
            e.minimum_tcb.fmc,
            errors,
        );
    }
    for (i, e) in rv.tdx.iter().enumerate() {
        let path = format!("$.ReferenceValues.tdx[{i}]");
        if e.td_attributes.0.first().is_some_and(|b| b & 1 != 0) {
            push(
                errors,
                format!("{path}.TdAttributes"),
                ManifestErrorKind::TdxDebugAttribute,
            );
        }
        if let Some(j) = e
            .allowed_tcb_statuses
            .iter()
            .position(|s| *s == TdxTcbStatus::Revoked)
        {
            push(
                errors,
                format!("{path}.AllowedTcbStatuses[{j}]"),
                ManifestErrorKind::TdxRevokedStatus,
            );
        }
    }
    for (i, e) in rv.simulated.iter().enumerate() {
        check_fmc(
            &format!("$.ReferenceValues.simulated[{i}]"),
            e.product,
            e.minimum_tcb.fmc,
            errors,
        );
    }
}

fn check_fmc(
    entry_path: &str,
    product: SnpProduct,
    fmc: Option<u8>,
    errors: &mut Vec<ManifestError>,
) {
    let path = format!("{entry_path}.MinimumTCB.FMCVersion");
    match (product.has_fmc(), fmc) {
        (true, None) => push(errors, path, ManifestErrorKind::FmcVersionRequired),
        (false, Some(_)) => push(
            errors,
            path,
            ManifestErrorKind::FmcVersionNotAllowed { product },
        ),
        _ => {}
    }
}

fn validate_key_digests(raw: &[String], errors: &mut Vec<ManifestError>) -> Vec<Sha256Fingerprint> {
    let mut out = Vec::new();
    let mut first_index = HashMap::new();
    for (i, s) in raw.iter().enumerate() {
        let path = format!("$.WorkloadOwnerKeyDigests[{i}]");
        match parse_key_digest(s) {
            Ok(digest) => {
                match first_index.entry(digest) {
                    Entry::Occupied(o) => push(
                        errors,
                        path,
                        ManifestErrorKind::DuplicateEntry { first: *o.get() },
                    ),
                    Entry::Vacant(v) => {
                        v.insert(i);
                    }
                }
                out.push(digest);
            }
            Err(reason) => push(errors, path, ManifestErrorKind::InvalidKeyDigest { reason }),
        }
    }
    out
}

fn parse_key_digest(s: &str) -> Result<Sha256Fingerprint, String> {
    let expected = 2 * Sha256Fingerprint::LEN;
    let len = s.chars().count();
    if len != expected {
        return Err(format!("got {len} characters"));
    }
    // Checked here because the newtype would quietly trim surrounding whitespace.
    if let Some(c) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("{c:?} is not a hex digit"));
    }
    s.parse()
        .map_err(|e: crate::DigestParseError| e.to_string())
}

fn validate_seedshare_keys(raw: &[String], errors: &mut Vec<ManifestError>) {
    let mut first_index: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, s) in raw.iter().enumerate() {
        let path = format!("$.SeedshareOwnerPubKeys[{i}]");
        match parse_seedshare_key(s) {
            Ok(der) => match first_index.entry(der) {
                Entry::Occupied(o) => push(
                    errors,
                    path,
                    ManifestErrorKind::DuplicateEntry { first: *o.get() },
                ),
                Entry::Vacant(v) => {
                    v.insert(i);
                }
            },
            Err(reason) => push(
                errors,
                path,
                ManifestErrorKind::InvalidSeedshareKey { reason },
            ),
        }
    }
}

/// Decodes and checks a seed-share owner key, returning its DER.
fn parse_seedshare_key(s: &str) -> Result<Vec<u8>, String> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{PublicEncryptingKey, PublicKey};

    let der = hex::decode(s).map_err(|e| format!("not hex ({e})"))?;
    if der.is_empty() {
        return Err("it is empty".to_string());
    }
    // aws-lc parses PKCS#1 and falls back to SubjectPublicKeyInfo; requiring the re-encoding to
    // equal the input pins the format to canonical PKCS#1 DER.
    let key = PublicKey::from_der(&der).map_err(|e| format!("not an RSA public key ({e})"))?;
    if key.as_ref() != der.as_slice() {
        return Err(
            "this is an RSA key, but not in PKCS#1 RSAPublicKey DER (a SubjectPublicKeyInfo? \
             export with `openssl rsa -RSAPublicKey_out -outform DER`)"
                .to_string(),
        );
    }
    // Seed shares are encrypted to this key with RSA-OAEP: it must be acceptable for that.
    let spki = key
        .as_der()
        .map_err(|_| "the key cannot be re-encoded".to_string())?;
    let enc = PublicEncryptingKey::from_der(spki.as_ref()).map_err(|e| {
        format!("the key is not usable for RSA-OAEP ({e}); use a 3072- to 8192-bit key")
    })?;
    // The Coordinator refuses to encrypt seed shares to smaller keys (nunki_ca's minimum).
    const MIN_BITS: usize = 3072;
    if enc.key_size_bits() < MIN_BITS {
        return Err(format!(
            "the key has {} bits; seed-share owner keys need at least {MIN_BITS} \
             (`nunki generate` creates RSA-4096 keys)",
            enc.key_size_bits()
        ));
    }
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference_values::{SnpGuestPolicy, SnpMinimumTcb};
    use crate::{ChipId, Measurement};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const EXAMPLE: &str = include_str!("../testdata/example-manifest.json");
    /// `sha256sum testdata/example-manifest.json`
    const EXAMPLE_SHA256: &str = "cfb71b6a2df67651fefe25700495550c884a40660c9f02d8d0f35ba228dc6fc1";
    const RSA2048_PKCS1: &str = include_str!("../testdata/rsa2048.pkcs1.hex");
    const RSA3072_PKCS1: &str = include_str!("../testdata/rsa3072.pkcs1.hex");
    const RSA2048_SPKI: &str = include_str!("../testdata/rsa2048.spki.hex");
    const RSA1024_PKCS1: &str = include_str!("../testdata/rsa1024.pkcs1.hex");
    const COORDINATOR: &str = "7a9dcc4f9779040769e196a609287d84a1afa2db16bee093d2dc9c16984fb019";
    const WEB: &str = "3fac7a6378ce84b9738e2d30151c64e0c226de73df9c44f1133ab2d6216ee572";
    const OWNER_DIGEST: &str = "7adb6715d57135098a74aea3a4c6ea91e12f5daf383e5c8812df7d0fff4359ad";

    fn example() -> Value {
        serde_json::from_str(EXAMPLE).unwrap()
    }

    fn parse_value(v: &Value) -> Result<ParsedManifest, ManifestErrors> {
        ParsedManifest::parse(&serde_json::to_vec(v).unwrap())
    }

    /// `(path, message)` of every error.
    fn errors(v: &Value) -> Vec<(String, String)> {
        parse_value(v)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.path, e.kind.to_string()))
            .collect()
    }

    fn only_error(v: &Value) -> ManifestError {
        let errs = parse_value(v).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs}");
        errs.0.into_iter().next().unwrap()
    }

    fn only_error_str(s: &str) -> ManifestError {
        let errs = ParsedManifest::parse(s.as_bytes()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs}");
        errs.0.into_iter().next().unwrap()
    }

    fn web_path() -> String {
        format!("$.Policies[\"{WEB}\"]")
    }

    fn simulated_entry() -> Value {
        json!({
            "RootFingerprint": "11".repeat(32),
            "ProductName": "Milan",
            "TrustedMeasurement": "22".repeat(48),
            "MinimumTCB": { "BootloaderVersion": 1, "TEEVersion": 2, "SNPVersion": 3, "MicrocodeVersion": 4 }
        })
    }

    // --- accepted documents ---------------------------------------------------------------

    #[test]
    fn design_example_parses_with_real_values() {
        let parsed = ParsedManifest::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(parsed.raw(), EXAMPLE.as_bytes());
        assert_eq!(parsed.hash().to_hex(), EXAMPLE_SHA256);
        let coordinator: PolicyHash = COORDINATOR.parse().unwrap();
        let web: PolicyHash = WEB.parse().unwrap();
        assert_eq!(parsed.coordinator_policy_hashes(), vec![coordinator]);
        assert_eq!(
            parsed.policy(&web).unwrap(),
            &PolicyEntry {
                sans: vec![
                    "web".into(),
                    "*".into(),
                    "203.0.113.34".into(),
                    "spiffe://acme.com/billing/payments".into()
                ],
                workload_secret_id: "apps/v1/Deployment/default/web".into(),
                role: Role::None,
            }
        );
        assert_eq!(parsed.policy(&coordinator).unwrap().role, Role::Coordinator);
        assert!(parsed.policy(&PolicyHash([0; 32])).is_none());
        assert!(!parsed.is_simulated());
        let m = parsed.manifest();
        assert_eq!(m.reference_values.snp.len(), 1);
        let snp = &m.reference_values.snp[0];
        assert_eq!(snp.product, SnpProduct::Genoa);
        assert_eq!(
            snp.minimum_tcb,
            SnpMinimumTcb {
                bootloader: 9,
                tee: 0,
                snp: 23,
                microcode: 72,
                fmc: None
            }
        );
        assert_eq!(
            m.workload_owner_key_digests,
            vec![OWNER_DIGEST.parse::<Sha256Fingerprint>().unwrap()]
        );
        assert_eq!(m.seedshare_owner_pub_keys, vec![RSA3072_PKCS1.to_string()]);
    }

    #[test]
    fn simulated_only_manifest_parses() {
        let mut v = example();
        v["ReferenceValues"] = json!({ "simulated": [simulated_entry()] });
        let parsed = parse_value(&v).unwrap();
        assert!(parsed.is_simulated());
        assert_eq!(
            parsed.manifest().reference_values.simulated[0].root_fingerprint,
            Sha256Fingerprint([0x11; 32])
        );
    }

    #[test]
    fn optional_fields_default() {
        let v = json!({
            "Policies": { COORDINATOR: { "SANs": ["coordinator"], "Role": "coordinator" },
                          WEB: { "SANs": ["web"] } },
            "ReferenceValues": { "simulated": [simulated_entry()] }
        });
        let parsed = parse_value(&v).unwrap();
        let m = parsed.manifest();
        let web = &m.policies[&WEB.parse().unwrap()];
        assert_eq!(web.workload_secret_id, "");
        assert_eq!(web.role, Role::None);
        assert!(m.reference_values.snp.is_empty());
        assert!(m.reference_values.tdx.is_empty());
        assert!(m.workload_owner_key_digests.is_empty());
        assert!(m.seedshare_owner_pub_keys.is_empty());
    }

    #[test]
    fn turin_with_fmc_is_accepted() {
        let mut v = example();
        v["ReferenceValues"]["snp"][0]["ProductName"] = json!("Turin");
        v["ReferenceValues"]["snp"][0]["MinimumTCB"]["FMCVersion"] = json!(1);
        let parsed = parse_value(&v).unwrap();
        assert_eq!(
            parsed.manifest().reference_values.snp[0].minimum_tcb.fmc,
            Some(1)
        );
    }

    #[test]
    fn several_coordinators_are_allowed() {
        let mut v = example();
        v["Policies"][WEB]["Role"] = json!("coordinator");
        let parsed = parse_value(&v).unwrap();
        assert_eq!(
            parsed.coordinator_policy_hashes(),
            vec![WEB.parse().unwrap(), COORDINATOR.parse().unwrap()]
        );
    }

    // --- exact bytes ------------------------------------------------------------------------

    #[test]
    fn hash_is_over_the_exact_bytes() {
        let pretty = ParsedManifest::parse(EXAMPLE.as_bytes()).unwrap();
        let compact_bytes = serde_json::to_vec(&example()).unwrap();
        let compact = ParsedManifest::parse(&compact_bytes).unwrap();
        assert_eq!(pretty.manifest(), compact.manifest());
        assert_ne!(pretty.hash(), compact.hash());
        assert_eq!(compact.raw(), compact_bytes.as_slice());
        assert_eq!(compact.hash(), ManifestHash(sha256(&compact_bytes)));

        // One extra trailing newline is whitespace to JSON and a different manifest to us.
        let newline = ParsedManifest::parse(format!("{EXAMPLE}\n").as_bytes()).unwrap();
        assert_eq!(newline.manifest(), pretty.manifest());
        assert_ne!(newline.hash(), pretty.hash());
    }

    // --- writer -------------------------------------------------------------------------------

    #[test]
    fn to_json_bytes_round_trips_and_is_deterministic() {
        let parsed = ParsedManifest::parse(EXAMPLE.as_bytes()).unwrap();
        let bytes = parsed.manifest().to_json_bytes();
        assert_eq!(bytes, parsed.manifest().to_json_bytes());
        assert!(bytes.ends_with(b"}\n"));
        let again = ParsedManifest::parse(&bytes).unwrap();
        assert_eq!(again.manifest(), parsed.manifest());
        // Writing what we wrote is a fixed point.
        assert_eq!(again.manifest().to_json_bytes(), bytes);
        assert_eq!(
            ParsedManifest::from_manifest(parsed.manifest())
                .unwrap()
                .raw(),
            bytes.as_slice()
        );
    }

    #[test]
    fn to_json_bytes_exact_layout() {
        let mut policies = BTreeMap::new();
        policies.insert(
            PolicyHash([0xbb; 32]),
            PolicyEntry {
                sans: vec!["web".into()],
                workload_secret_id: String::new(),
                role: Role::None,
            },
        );
        policies.insert(
            PolicyHash([0xaa; 32]),
            PolicyEntry {
                sans: vec!["coordinator".into(), "*".into()],
                workload_secret_id: "apps/v1/StatefulSet/default/coordinator".into(),
                role: Role::Coordinator,
            },
        );
        let m = Manifest {
            policies,
            reference_values: ReferenceValues {
                snp: vec![SnpReferenceValues {
                    product: SnpProduct::Genoa,
                    trusted_measurement: Measurement([0x01; 48]),
                    minimum_tcb: SnpMinimumTcb {
                        bootloader: 9,
                        tee: 0,
                        snp: 23,
                        microcode: 72,
                        fmc: None,
                    },
                    guest_policy: SnpGuestPolicy::default(),
                    allowed_chip_ids: vec![ChipId([0x02; 64])],
                    allowed_id_key_digests: vec![],
                    vmpl: 0,
                }],
                tdx: vec![],
                simulated: vec![],
            },
            workload_owner_key_digests: vec![Sha256Fingerprint([0xcc; 32])],
            seedshare_owner_pub_keys: vec![],
        };
        let expected = format!(
            r#"{{
  "Policies": {{
    "{aa}": {{
      "SANs": [
        "coordinator",
        "*"
      ],
      "WorkloadSecretID": "apps/v1/StatefulSet/default/coordinator",
      "Role": "coordinator"
    }},
    "{bb}": {{
      "SANs": [
        "web"
      ],
      "WorkloadSecretID": "",
      "Role": ""
    }}
  }},
  "ReferenceValues": {{
    "snp": [
      {{
        "ProductName": "Genoa",
        "TrustedMeasurement": "{m}",
        "MinimumTCB": {{
          "BootloaderVersion": 9,
          "TEEVersion": 0,
          "SNPVersion": 23,
          "MicrocodeVersion": 72
        }},
        "GuestPolicy": {{
          "MinimumABIMajor": 0,
          "MinimumABIMinor": 0,
          "AllowDebug": false
        }},
        "AllowedChipIDs": [
          "{chip}"
        ],
        "AllowedIDKeyDigests": [],
        "VMPL": 0
      }}
    ],
    "tdx": [],
    "simulated": []
  }},
  "WorkloadOwnerKeyDigests": [
    "{cc}"
  ],
  "SeedshareOwnerPubKeys": []
}}
"#,
            aa = "aa".repeat(32),
            bb = "bb".repeat(32),
            cc = "cc".repeat(32),
            m = "01".repeat(48),
            chip = "02".repeat(64),
        );
        assert_eq!(String::from_utf8(m.to_json_bytes()).unwrap(), expected);
        assert_eq!(
            ParsedManifest::parse(expected.as_bytes())
                .unwrap()
                .manifest(),
            &m
        );
    }

    // --- serde-level errors: one, with path and position ------------------------------------

    #[test]
    fn syntax_error_reports_line_and_column() {
        let e = only_error_str("{\n  \"Policies\": ");
        assert_eq!(e.path, "$.Policies");
        assert_eq!(
            e.kind,
            ManifestErrorKind::Syntax {
                reason: "EOF while parsing a value".into(),
                line: 2,
                column: 14
            }
        );
        assert_eq!(
            e.to_string(),
            "$.Policies: invalid JSON: EOF while parsing a value at line 2 column 14"
        );
        let e = only_error_str("");
        assert_eq!(e.path, "$");
        assert!(matches!(e.kind, ManifestErrorKind::Syntax { .. }));
        let e = only_error_str("{\"Policies\": {,}}");
        assert!(
            e.to_string()
                .contains("invalid JSON: key must be a string at line 1 column 15"),
            "{e}"
        );
    }

    #[test]
    fn trailing_data_is_refused() {
        let e = only_error_str(&format!("{EXAMPLE}x"));
        assert_eq!(e.path, "$");
        assert_eq!(
            e.to_string(),
            "$: invalid JSON: trailing characters at line 23 column 1"
        );
    }

    #[test]
    fn unknown_field_at_top_level() {
        let mut v = example();
        v["Extra"] = json!(1);
        let e = only_error(&v);
        assert_eq!(e.path, "$.Extra");
        assert!(
            matches!(&e.kind, ManifestErrorKind::Schema { reason, .. }
                if reason.starts_with("unknown field `Extra`, expected one of `Policies`")),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_in_policy_entry() {
        let mut v = example();
        v["Policies"][WEB]["Sans"] = json!(["web"]);
        let e = only_error(&v);
        assert_eq!(e.path, format!("{}.Sans", web_path()));
        assert!(
            e.to_string().contains(
                "unknown field `Sans`, expected one of `SANs`, `WorkloadSecretID`, `Role`"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_in_reference_values() {
        let mut v = example();
        v["ReferenceValues"]["sev"] = json!([]);
        let e = only_error(&v);
        assert_eq!(e.path, "$.ReferenceValues.sev");
        assert!(
            e.to_string()
                .contains("unknown field `sev`, expected one of `snp`, `tdx`, `simulated`"),
            "{e}"
        );

        let mut v = example();
        v["ReferenceValues"]["snp"][0]["APEIP"] = json!("00000000");
        let e = only_error(&v);
        assert_eq!(e.path, "$.ReferenceValues.snp[0].APEIP");

        let mut v = example();
        v["ReferenceValues"]["snp"][0]["MinimumTCB"]["UcodeVersion"] = json!(1);
        let e = only_error(&v);
        assert_eq!(e.path, "$.ReferenceValues.snp[0].MinimumTCB.UcodeVersion");

        let mut v = example();
        v["ReferenceValues"] = json!({ "simulated": [simulated_entry()] });
        v["ReferenceValues"]["simulated"][0]["GuestPolicy"] = json!({ "Debug": true });
        let e = only_error(&v);
        assert_eq!(e.path, "$.ReferenceValues.simulated[0].GuestPolicy.Debug");
    }

    #[test]
    fn wrong_types_and_missing_fields() {
        let mut v = example();
        v["Policies"][WEB]["SANs"] = json!("web");
        let e = only_error(&v);
        assert_eq!(e.path, format!("{}.SANs", web_path()));
        assert!(
            matches!(&e.kind, ManifestErrorKind::Schema { reason, .. }
            if reason == "invalid type: string \"web\", expected a sequence"),
            "{e}"
        );

        let mut v = example();
        v["WorkloadOwnerKeyDigests"] = json!([7]);
        assert_eq!(only_error(&v).path, "$.WorkloadOwnerKeyDigests[0]");

        let mut v = example();
        v["SeedshareOwnerPubKeys"] = Value::Null;
        assert_eq!(only_error(&v).path, "$.SeedshareOwnerPubKeys");

        let mut v = example();
        v["Policies"][WEB]["Role"] = Value::Null;
        assert_eq!(only_error(&v).path, format!("{}.Role", web_path()));

        let mut v = example();
        v["ReferenceValues"]["snp"][0]["TrustedMeasurement"] = json!("ab");
        let e = only_error(&v);
        assert_eq!(e.path, "$.ReferenceValues.snp[0].TrustedMeasurement");
        assert!(
            e.to_string()
                .contains("Measurement: expected 96 hex characters"),
            "{e}"
        );

        let mut v = example();
        v.as_object_mut().unwrap().remove("ReferenceValues");
        let e = only_error(&v);
        assert_eq!(e.path, "$");
        assert!(
            e.to_string().contains("missing field `ReferenceValues`"),
            "{e}"
        );

        let mut v = example();
        v["Policies"][WEB].as_object_mut().unwrap().remove("SANs");
        let e = only_error(&v);
        assert_eq!(e.path, web_path());
        assert!(e.to_string().contains("missing field `SANs`"), "{e}");

        let mut v = example();
        v["ReferenceValues"]["snp"][0]["MinimumTCB"]
            .as_object_mut()
            .unwrap()
            .remove("TEEVersion");
        let e = only_error(&v);
        assert_eq!(e.path, "$.ReferenceValues.snp[0].MinimumTCB");
        assert!(e.to_string().contains("missing field `TEEVersion`"), "{e}");

        let e = only_error_str("[]");
        assert_eq!(e.path, "$");
        assert!(e.to_string().contains("expected a JSON object"), "{e}");

        let e = only_error_str(r#"{"Policies": [], "ReferenceValues": {}}"#);
        assert_eq!(e.path, "$.Policies");
    }

    #[test]
    fn alternative_serde_encodings_are_refused() {
        // Structs spelled as arrays and enums spelled as one-key objects are serde-isms, not
        // manifest syntax.
        let mut v = example();
        v["ReferenceValues"]["snp"][0]["MinimumTCB"] = json!([9, 0, 23, 72]);
        let e = only_error(&v);
        assert_eq!(e.path, "$.ReferenceValues.snp[0].MinimumTCB");
        assert!(
            e.to_string()
                .contains("invalid type: sequence, expected a JSON object"),
            "{e}"
        );

        let mut v = example();
        v["Policies"][WEB] = json!([["web"], "", ""]);
        assert_eq!(only_error(&v).path, web_path());

        let mut v = example();
        v["ReferenceValues"] = json!([[], [], []]);
        assert_eq!(only_error(&v).path, "$.ReferenceValues");

        let mut v = example();
        let entry = v["ReferenceValues"]["snp"][0].clone();
        v["ReferenceValues"]["snp"] = json!([[
            entry["ProductName"],
            entry["TrustedMeasurement"],
            entry["MinimumTCB"]
        ]]);
        assert_eq!(only_error(&v).path, "$.ReferenceValues.snp[0]");

        let mut v = example();
        v["ReferenceValues"]["snp"][0]["ProductName"] = json!({ "Genoa": null });
        let e = only_error(&v);
        assert_eq!(e.path, "$.ReferenceValues.snp[0].ProductName");

        let mut v = example();
        v["ReferenceValues"]["snp"][0]["ProductName"] = json!("genoa");
        let e = only_error(&v);
        assert!(e.to_string().contains("unknown variant `genoa`"), "{e}");
    }

    #[test]
    fn duplicate_struct_fields_are_refused() {
        let text = EXAMPLE.replacen(
            "\"WorkloadOwnerKeyDigests\"",
            "\"SeedshareOwnerPubKeys\": [],\n  \"WorkloadOwnerKeyDigests\"",
            1,
        );
        let e = only_error_str(&text);
        assert!(
            e.to_string()
                .contains("duplicate field `SeedshareOwnerPubKeys`"),
            "{e}"
        );
        let text = EXAMPLE.replacen(
            "\"Role\": \"\"",
            "\"Role\": \"\", \"Role\": \"coordinator\"",
            1,
        );
        let e = only_error_str(&text);
        assert!(e.to_string().contains("duplicate field `Role`"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let depth = 100_000;
        let text = EXAMPLE.replacen(
            "\"tdx\": []",
            &format!("\"tdx\": {}{}", "[".repeat(depth), "]".repeat(depth)),
            1,
        );
        // Every list is typed now, so the nesting is refused at its second level; before the
        // tdx entries were typed this exercised serde_json's recursion limit.
        let e = only_error_str(&text);
        assert_eq!(e.path, "$.ReferenceValues.tdx[0]", "{e}");
        assert!(e.to_string().contains("expected a JSON object"), "{e}");
    }

    // --- collected errors -------------------------------------------------------------------

    #[test]
    fn bad_policy_hash_key() {
        let mut v = example();
        let entry = v["Policies"].as_object_mut().unwrap().remove(WEB).unwrap();
        v["Policies"]["abc"] = entry;
        let e = only_error(&v);
        assert_eq!(
            e.to_string(),
            "$.Policies[\"abc\"]: key must be 64 lowercase hex characters (a SHA-256)"
        );
        assert_eq!(e.kind, ManifestErrorKind::InvalidPolicyHash);

        for key in [
            WEB.to_uppercase(),
            format!(" {}", &WEB[1..]),
            "zz".repeat(32),
        ] {
            let mut v = example();
            let entry = v["Policies"].as_object_mut().unwrap().remove(WEB).unwrap();
            v["Policies"][key.as_str()] = entry;
            let e = only_error(&v);
            assert_eq!(e.path, format!("$.Policies[\"{key}\"]"));
            assert_eq!(e.kind, ManifestErrorKind::InvalidPolicyHash);
        }
    }

    #[test]
    fn long_and_control_keys_are_quoted_and_shortened() {
        let mut v = example();
        let entry = v["Policies"].as_object_mut().unwrap().remove(WEB).unwrap();
        let key = format!("a\"\u{1}{}", "x".repeat(500));
        v["Policies"][key.as_str()] = entry;
        let e = only_error(&v);
        assert_eq!(
            e.path,
            format!("$.Policies[\"a\\\"\\u0001{}…\"]", "x".repeat(77))
        );
    }

    #[test]
    fn duplicate_policy_hash() {
        let text = EXAMPLE.replacen(COORDINATOR, WEB, 1);
        let errs = ParsedManifest::parse(text.as_bytes()).unwrap_err();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![format!(
                "{}: key appears more than once; merge the entries into one",
                web_path()
            )]
        );
    }

    #[test]
    fn empty_sans() {
        let mut v = example();
        v["Policies"][WEB]["SANs"] = json!([]);
        let e = only_error(&v);
        assert_eq!(e.path, format!("{}.SANs", web_path()));
        assert_eq!(e.kind, ManifestErrorKind::EmptySans);
        assert_eq!(
            e.kind.to_string(),
            "must list at least one SAN (a DNS name, \"*\", an IP address or a URI)"
        );
    }

    #[test]
    fn invalid_sans_each_reported() {
        let mut v = example();
        v["Policies"][WEB]["SANs"] = json!([
            "web",
            "web server",
            "*.*.x",
            "10.0.0.256",
            "spiffe://",
            "ok.example"
        ]);
        let errs = errors(&v);
        let p = web_path();
        assert_eq!(
            errs.iter()
                .map(|(path, _)| path.clone())
                .collect::<Vec<_>>(),
            vec![
                format!("{p}.SANs[1]"),
                format!("{p}.SANs[2]"),
                format!("{p}.SANs[3]"),
                format!("{p}.SANs[4]"),
            ]
        );
        assert_eq!(
            errs[0].1,
            "\"web server\" is not a valid SAN: it contains ' '; DNS labels may contain only \
             letters, digits and '-'; use a DNS name (RFC 1123, optionally with a leading \"*.\"), \
             \"*\", an IP address or a URI with a scheme such as spiffe://…"
        );
        let e = only_error(&{
            let mut v = example();
            v["Policies"][WEB]["SANs"] = json!(["spiffe://"]);
            v
        });
        assert_eq!(
            e.kind,
            ManifestErrorKind::InvalidSan {
                san: "\"spiffe://\"".into(),
                reason: SanError::EmptyUri
            }
        );
    }

    #[test]
    fn invalid_role() {
        let mut v = example();
        v["Policies"][WEB]["Role"] = json!("admin");
        let e = only_error(&v);
        assert_eq!(
            e.to_string(),
            format!(
                "{}.Role: must be \"\" (a workload) or \"coordinator\", not \"admin\"",
                web_path()
            )
        );
    }

    #[test]
    fn missing_coordinator() {
        let mut v = example();
        v["Policies"][COORDINATOR]["Role"] = json!("");
        let e = only_error(&v);
        assert_eq!(e.path, "$.Policies");
        assert_eq!(e.kind, ManifestErrorKind::MissingCoordinator);

        // A mistyped role is reported, and then no coordinator remains.
        let mut v = example();
        v["Policies"][COORDINATOR]["Role"] = json!("Coordinator");
        let errs = errors(&v);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[1].0, "$.Policies");

        let mut v = example();
        v["Policies"] = json!({});
        assert_eq!(only_error(&v).kind, ManifestErrorKind::MissingCoordinator);
    }

    #[test]
    fn coordinator_under_a_bad_key_is_not_also_missing() {
        let mut v = example();
        let entry = v["Policies"]
            .as_object_mut()
            .unwrap()
            .remove(COORDINATOR)
            .unwrap();
        v["Policies"]["coordinator"] = entry;
        assert_eq!(only_error(&v).kind, ManifestErrorKind::InvalidPolicyHash);
    }

    #[test]
    fn invalid_workload_secret_id() {
        let mut v = example();
        v["Policies"][WEB]["WorkloadSecretID"] = json!("apps/v1/Deployment/default/my web");
        let e = only_error(&v);
        assert_eq!(
            e.to_string(),
            format!(
                "{}.WorkloadSecretID: must be printable ASCII without spaces; found ' ' at index 29",
                web_path()
            )
        );
        for bad in ["tab\there", "naïve", "nl\n"] {
            let mut v = example();
            v["Policies"][WEB]["WorkloadSecretID"] = json!(bad);
            assert!(matches!(
                only_error(&v).kind,
                ManifestErrorKind::InvalidWorkloadSecretId { .. }
            ));
        }
        let mut v = example();
        v["Policies"][WEB]["WorkloadSecretID"] = json!("!~#{}");
        parse_value(&v).unwrap();
    }

    #[test]
    fn empty_reference_values() {
        for rv in [json!({}), json!({ "snp": [], "tdx": [], "simulated": [] })] {
            let mut v = example();
            v["ReferenceValues"] = rv;
            let e = only_error(&v);
            assert_eq!(e.path, "$.ReferenceValues");
            assert_eq!(e.kind, ManifestErrorKind::NoReferenceValues);
        }
    }

    fn tdx_entry() -> Value {
        json!({
            "MrTd": "11".repeat(48),
            "Rtmrs": ["21".repeat(48), "22".repeat(48), "23".repeat(48), "00".repeat(48)],
            "MrSeam": "33".repeat(48),
            "Xfam": "e742060000000000",
            "TdAttributes": "0000001000000000",
            "MinimumTcbEvaluationDataNumber": 17
        })
    }

    #[test]
    fn tdx_entries_parse_alone_and_next_to_snp() {
        let mut v = example();
        v["ReferenceValues"]["tdx"] = json!([tdx_entry()]);
        let parsed = parse_value(&v).unwrap();
        let rv = &parsed.manifest().reference_values;
        assert_eq!(rv.snp.len(), 1);
        assert_eq!(rv.tdx.len(), 1);
        assert_eq!(rv.tdx[0].minimum_tcb_evaluation_data_number, 17);
        assert!(rv.tdx[0].allowed_tcb_statuses.is_empty());
        assert!(!parsed.is_simulated());
        let mut v = example();
        v["ReferenceValues"] = json!({ "tdx": [tdx_entry()] });
        parse_value(&v).unwrap();
    }

    #[test]
    fn tdx_entries_fail_closed() {
        // A missing trust-deciding value is a schema error at its path.
        let mut v = example();
        let mut e = tdx_entry();
        e.as_object_mut().unwrap().remove("MrSeam");
        v["ReferenceValues"]["tdx"] = json!([e]);
        let err = only_error(&v);
        assert_eq!(err.path, "$.ReferenceValues.tdx[0]");
        assert!(err.to_string().contains("missing field `MrSeam`"), "{err}");
        // A misspelt status name is refused with the list of names.
        let mut v = example();
        let mut e = tdx_entry();
        e["AllowedTcbStatuses"] = json!(["OutOfDate", "Outdated"]);
        v["ReferenceValues"]["tdx"] = json!([e]);
        let err = only_error(&v);
        assert_eq!(err.path, "$.ReferenceValues.tdx[0].AllowedTcbStatuses");
        assert!(
            err.to_string().contains("unknown variant `Outdated`"),
            "{err}"
        );
        // Three RTMRs are not four.
        let mut v = example();
        let mut e = tdx_entry();
        e["Rtmrs"].as_array_mut().unwrap().pop();
        v["ReferenceValues"]["tdx"] = json!([e]);
        assert_eq!(only_error(&v).path, "$.ReferenceValues.tdx[0].Rtmrs");
    }

    #[test]
    fn tdx_debug_and_revoked_are_refused_naming_the_field() {
        let mut v = example();
        let mut e = tdx_entry();
        e["TdAttributes"] = json!("0100001000000000");
        e["AllowedTcbStatuses"] = json!(["OutOfDate", "Revoked"]);
        v["ReferenceValues"]["tdx"] = json!([tdx_entry(), e]);
        let errs = errors(&v);
        assert_eq!(
            errs.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            vec![
                "$.ReferenceValues.tdx[1].TdAttributes",
                "$.ReferenceValues.tdx[1].AllowedTcbStatuses[1]"
            ]
        );
        assert!(
            errs[0].1.contains("debug TDs are always refused"),
            "{}",
            errs[0].1
        );
    }

    #[test]
    fn simulated_never_mixes_with_hardware() {
        let mut v = example();
        v["ReferenceValues"]["simulated"] = json!([simulated_entry()]);
        let e = only_error(&v);
        assert_eq!(e.path, "$.ReferenceValues.simulated");
        assert_eq!(e.kind, ManifestErrorKind::MixedPlatforms);

        let mut v = example();
        v["ReferenceValues"] = json!({ "tdx": [tdx_entry()], "simulated": [simulated_entry()] });
        let errs = errors(&v);
        assert_eq!(
            errs.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            vec!["$.ReferenceValues.simulated"]
        );
    }

    #[test]
    fn fmc_version_only_for_turin() {
        let mut v = example();
        v["ReferenceValues"]["snp"][0]["ProductName"] = json!("Turin");
        let e = only_error(&v);
        assert_eq!(
            e.to_string(),
            "$.ReferenceValues.snp[0].MinimumTCB.FMCVersion: required because ProductName is \
             Turin: set the minimum FMC security patch level"
        );

        let mut v = example();
        v["ReferenceValues"]["snp"][0]["MinimumTCB"]["FMCVersion"] = json!(2);
        let e = only_error(&v);
        assert_eq!(e.path, "$.ReferenceValues.snp[0].MinimumTCB.FMCVersion");
        assert_eq!(
            e.kind,
            ManifestErrorKind::FmcVersionNotAllowed {
                product: SnpProduct::Genoa
            }
        );
        assert_eq!(
            e.kind.to_string(),
            "must be absent because ProductName is Genoa (only Turin's TCB has an FMC component)"
        );

        let mut turin = simulated_entry();
        turin["ProductName"] = json!("Turin");
        let mut milan_fmc = simulated_entry();
        milan_fmc["MinimumTCB"]["FMCVersion"] = json!(0);
        let mut v = example();
        v["ReferenceValues"] = json!({ "simulated": [simulated_entry(), turin, milan_fmc] });
        let errs = errors(&v);
        assert_eq!(
            errs.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            vec![
                "$.ReferenceValues.simulated[1].MinimumTCB.FMCVersion",
                "$.ReferenceValues.simulated[2].MinimumTCB.FMCVersion"
            ]
        );
    }

    #[test]
    fn invalid_workload_owner_key_digests() {
        let mut v = example();
        v["WorkloadOwnerKeyDigests"] = json!([
            "abcd",
            format!(" {}", &OWNER_DIGEST[1..]),
            "g".repeat(64),
            OWNER_DIGEST,
        ]);
        let errs = errors(&v);
        assert_eq!(
            errs,
            vec![
                (
                    "$.WorkloadOwnerKeyDigests[0]".to_string(),
                    "must be 64 hex characters, the SHA-256 of a P-384 SubjectPublicKeyInfo DER: got 4 characters".to_string()
                ),
                (
                    "$.WorkloadOwnerKeyDigests[1]".to_string(),
                    "must be 64 hex characters, the SHA-256 of a P-384 SubjectPublicKeyInfo DER: ' ' is not a hex digit".to_string()
                ),
                (
                    "$.WorkloadOwnerKeyDigests[2]".to_string(),
                    "must be 64 hex characters, the SHA-256 of a P-384 SubjectPublicKeyInfo DER: 'g' is not a hex digit".to_string()
                ),
            ]
        );
    }

    #[test]
    fn duplicate_workload_owner_key_digests() {
        let mut v = example();
        let other = "ab".repeat(32);
        v["WorkloadOwnerKeyDigests"] = json!([
            OWNER_DIGEST,
            other,
            OWNER_DIGEST.to_uppercase(),
            OWNER_DIGEST
        ]);
        let errs = errors(&v);
        assert_eq!(
            errs,
            vec![
                (
                    "$.WorkloadOwnerKeyDigests[2]".to_string(),
                    "duplicate of entry 0; remove it".to_string()
                ),
                (
                    "$.WorkloadOwnerKeyDigests[3]".to_string(),
                    "duplicate of entry 0; remove it".to_string()
                ),
            ]
        );
    }

    #[test]
    fn invalid_seedshare_keys() {
        let mut v = example();
        v["SeedshareOwnerPubKeys"] = json!([
            "not hex",
            "",
            "3003020101",
            RSA2048_SPKI,
            RSA1024_PKCS1,
            format!("{RSA3072_PKCS1}00"),
            RSA2048_PKCS1,
            RSA3072_PKCS1.to_uppercase(),
        ]);
        let errs = parse_value(&v).unwrap_err();
        // The uppercase copy of a valid key is itself valid: hex is case-insensitive here.
        assert_eq!(errs.len(), 7, "{errs}");
        for (i, e) in errs.iter().enumerate() {
            assert_eq!(e.path, format!("$.SeedshareOwnerPubKeys[{i}]"));
            assert!(
                matches!(e.kind, ManifestErrorKind::InvalidSeedshareKey { .. }),
                "{errs}"
            );
        }
        let msg = |i: usize| errs.0[i].to_string();
        assert!(
            msg(0).starts_with(
                "$.SeedshareOwnerPubKeys[0]: must be the hex of a DER PKCS#1 RSAPublicKey: not hex"
            ),
            "{}",
            msg(0)
        );
        assert!(msg(1).ends_with("RSAPublicKey: it is empty"), "{}", msg(1));
        assert!(msg(2).contains("not an RSA public key"), "{}", msg(2));
        assert!(
            msg(3).contains("not in PKCS#1 RSAPublicKey DER"),
            "{}",
            msg(3)
        );
        assert!(msg(4).contains("not usable for RSA-OAEP"), "{}", msg(4));
        assert!(msg(5).contains("not an RSA public key"), "{}", msg(5));
        assert!(msg(6).contains("at least 3072"), "{}", msg(6));
    }

    #[test]
    fn duplicate_seedshare_keys() {
        let mut v = example();
        v["SeedshareOwnerPubKeys"] = json!([RSA3072_PKCS1, RSA3072_PKCS1.to_uppercase()]);
        let e = only_error(&v);
        assert_eq!(e.path, "$.SeedshareOwnerPubKeys[1]");
        assert_eq!(e.kind, ManifestErrorKind::DuplicateEntry { first: 0 });
    }

    #[test]
    fn every_problem_is_collected_in_document_order() {
        let text = format!(
            r#"{{
  "Policies": {{
    "abc": {{ "SANs": ["web server"], "WorkloadSecretID": "a b", "Role": "admin" }},
    "{WEB}": {{ "SANs": [] }}
  }},
  "ReferenceValues": {{
    "snp": [ {{ "ProductName": "Turin", "TrustedMeasurement": "{m}",
               "MinimumTCB": {{ "BootloaderVersion": 1, "TEEVersion": 0, "SNPVersion": 1, "MicrocodeVersion": 1 }} }} ],
    "tdx": [ {tdx} ],
    "simulated": [ {sim} ]
  }},
  "WorkloadOwnerKeyDigests": ["{OWNER_DIGEST}", "{OWNER_DIGEST}", "12"],
  "SeedshareOwnerPubKeys": ["{RSA2048_SPKI}"]
}}
"#,
            m = "00".repeat(48),
            sim = simulated_entry(),
            tdx = {
                let mut e = tdx_entry();
                e["TdAttributes"] = json!("0100000000000000");
                e
            },
        );
        let errs = ParsedManifest::parse(text.as_bytes()).unwrap_err();
        let bad = "$.Policies[\"abc\"]";
        let web = web_path();
        let expected = [
            format!("{bad}: key must be 64 lowercase hex characters (a SHA-256)"),
            format!("{bad}.SANs[0]: \"web server\" is not a valid SAN: it contains ' '; DNS labels may contain only letters, digits and '-'; use a DNS name (RFC 1123, optionally with a leading \"*.\"), \"*\", an IP address or a URI with a scheme such as spiffe://…"),
            format!("{bad}.Role: must be \"\" (a workload) or \"coordinator\", not \"admin\""),
            format!("{bad}.WorkloadSecretID: must be printable ASCII without spaces; found ' ' at index 1"),
            format!("{web}.SANs: must list at least one SAN (a DNS name, \"*\", an IP address or a URI)"),
            "$.Policies: no policy has Role \"coordinator\": add the Coordinator's policy with \"Role\": \"coordinator\" so clients can attest it".to_string(),
            "$.ReferenceValues.simulated: simulated entries must not be mixed with snp or tdx entries (the simulated platform proves the protocol, not isolation); keep only one kind".to_string(),
            "$.ReferenceValues.snp[0].MinimumTCB.FMCVersion: required because ProductName is Turin: set the minimum FMC security patch level".to_string(),
            "$.ReferenceValues.tdx[0].TdAttributes: DEBUG (bit 0) is set: a debug TD's memory and CPU state are readable by the host, so debug TDs are always refused; clear the bit".to_string(),
            "$.WorkloadOwnerKeyDigests[1]: duplicate of entry 0; remove it".to_string(),
            "$.WorkloadOwnerKeyDigests[2]: must be 64 hex characters, the SHA-256 of a P-384 SubjectPublicKeyInfo DER: got 2 characters".to_string(),
            "$.SeedshareOwnerPubKeys[0]: must be the hex of a DER PKCS#1 RSAPublicKey: this is an RSA key, but not in PKCS#1 RSAPublicKey DER (a SubjectPublicKeyInfo? export with `openssl rsa -RSAPublicKey_out -outform DER`)".to_string(),
        ];
        // Display is one error per line, in the same order.
        assert_eq!(errs.to_string(), expected.join("\n"));
    }

    #[test]
    fn role_spellings() {
        assert_eq!("".parse::<Role>().unwrap(), Role::None);
        assert_eq!("coordinator".parse::<Role>().unwrap(), Role::Coordinator);
        assert!("Coordinator".parse::<Role>().is_err());
        assert_eq!(Role::default(), Role::None);
        assert_eq!(
            serde_json::to_string(&Role::Coordinator).unwrap(),
            "\"coordinator\""
        );
        assert_eq!(serde_json::to_string(&Role::None).unwrap(), "\"\"");
    }

    // --- properties ---------------------------------------------------------------------------

    /// Parsing must never panic; whatever it accepts must survive a write and re-parse.
    fn check_no_panic(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(parsed) = ParsedManifest::parse(bytes) {
            prop_assert_eq!(parsed.raw(), bytes);
            let again = ParsedManifest::from_manifest(parsed.manifest());
            prop_assert!(again.is_ok(), "{:?}", again);
            let again = again.unwrap();
            prop_assert_eq!(again.manifest(), parsed.manifest());
        }
        Ok(())
    }

    fn arb_policy_entry() -> impl Strategy<Value = PolicyEntry> {
        let san = prop_oneof![
            Just("*".to_string()),
            "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z]{1,5}){0,3}",
            any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
            any::<[u8; 16]>().prop_map(|b| std::net::Ipv6Addr::from(b).to_string()),
            "spiffe://[a-z]{1,8}\\.com/[a-z/]{0,12}",
        ];
        (
            proptest::collection::vec(san, 1..4),
            "[!-~]{0,20}",
            any::<bool>(),
        )
            .prop_map(|(sans, workload_secret_id, coordinator)| PolicyEntry {
                sans,
                workload_secret_id,
                role: if coordinator {
                    Role::Coordinator
                } else {
                    Role::None
                },
            })
    }

    fn arb_tcb(product: SnpProduct) -> impl Strategy<Value = SnpMinimumTcb> {
        any::<[u8; 5]>().prop_map(move |b| SnpMinimumTcb {
            bootloader: b[0],
            tee: b[1],
            snp: b[2],
            microcode: b[3],
            fmc: product.has_fmc().then_some(b[4]),
        })
    }

    fn arb_product() -> impl Strategy<Value = SnpProduct> {
        prop_oneof![
            Just(SnpProduct::Milan),
            Just(SnpProduct::Genoa),
            Just(SnpProduct::Turin)
        ]
    }

    fn arb_snp() -> impl Strategy<Value = SnpReferenceValues> {
        arb_product().prop_flat_map(|product| {
            (arb_tcb(product), any::<[u8; 32]>(), any::<bool>(), 0u32..4).prop_map(
                move |(minimum_tcb, seed, allow_debug, vmpl)| {
                    let mut m = [0u8; 48];
                    m[..32].copy_from_slice(&seed);
                    SnpReferenceValues {
                        product,
                        trusted_measurement: Measurement(m),
                        minimum_tcb,
                        guest_policy: SnpGuestPolicy {
                            allow_debug,
                            ..SnpGuestPolicy::default()
                        },
                        allowed_chip_ids: vec![],
                        allowed_id_key_digests: vec![],
                        vmpl,
                    }
                },
            )
        })
    }

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        let policies = proptest::collection::btree_map(
            any::<[u8; 32]>().prop_map(PolicyHash),
            arb_policy_entry(),
            0..4,
        );
        let rv = prop_oneof![
            proptest::collection::vec(arb_snp(), 1..3).prop_map(|snp| ReferenceValues {
                snp,
                ..ReferenceValues::default()
            }),
            (
                proptest::collection::vec(arb_snp(), 1..3),
                any::<[u8; 32]>()
            )
                .prop_map(|(snp, root)| ReferenceValues {
                    simulated: snp
                        .into_iter()
                        .map(|s| SimulatedReferenceValues {
                            root_fingerprint: Sha256Fingerprint(root),
                            product: s.product,
                            trusted_measurement: s.trusted_measurement,
                            minimum_tcb: s.minimum_tcb,
                            guest_policy: s.guest_policy,
                            allowed_chip_ids: s.allowed_chip_ids,
                            allowed_id_key_digests: s.allowed_id_key_digests,
                            vmpl: s.vmpl,
                        })
                        .collect(),
                    ..ReferenceValues::default()
                }),
        ];
        let digests = proptest::collection::btree_set(any::<[u8; 32]>(), 0..3)
            .prop_map(|s| s.into_iter().map(Sha256Fingerprint).collect::<Vec<_>>());
        (
            policies,
            any::<[u8; 32]>(),
            arb_policy_entry(),
            rv,
            digests,
            any::<bool>(),
        )
            .prop_map(
                |(mut policies, coord_hash, mut coord, reference_values, digests, seedshare)| {
                    coord.role = Role::Coordinator;
                    policies.insert(PolicyHash(coord_hash), coord);
                    Manifest {
                        policies,
                        reference_values,
                        workload_owner_key_digests: digests,
                        seedshare_owner_pub_keys: if seedshare {
                            vec![RSA3072_PKCS1.to_string()]
                        } else {
                            vec![]
                        },
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            check_no_panic(&bytes)?;
        }

        #[test]
        fn json_ish_strings_never_panic(s in "[{}\\[\\]\":,. a-zA-Z0-9*/_\\\\-]{0,300}") {
            check_no_panic(s.as_bytes())?;
        }

        #[test]
        fn json_ish_with_schema_words_never_panic(
            parts in proptest::collection::vec(prop_oneof![
                Just("{".to_string()), Just("}".to_string()), Just("[".to_string()),
                Just("]".to_string()), Just(",".to_string()), Just(":".to_string()),
                Just("\"Policies\"".to_string()), Just("\"ReferenceValues\"".to_string()),
                Just("\"snp\"".to_string()), Just("\"simulated\"".to_string()),
                Just("\"tdx\"".to_string()), Just("\"SANs\"".to_string()),
                Just("\"Role\"".to_string()), Just("\"coordinator\"".to_string()),
                Just(format!("\"{COORDINATOR}\"")), Just("\"*\"".to_string()),
                Just("null".to_string()), Just("0".to_string()), Just("-1".to_string()),
                Just("1e999".to_string()), Just("\"\\ud800\"".to_string()),
            ], 0..60)
        ) {
            check_no_panic(parts.concat().as_bytes())?;
        }

        #[test]
        fn mutated_example_never_panics(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4)
        ) {
            let mut bytes = EXAMPLE.as_bytes().to_vec();
            for (at, byte, op) in edits {
                if bytes.is_empty() { break; }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => { bytes.remove(i); }
                    _ => bytes.insert(i, byte),
                }
            }
            check_no_panic(&bytes)?;
        }

        #[test]
        fn written_manifests_round_trip(m in arb_manifest()) {
            let bytes = m.to_json_bytes();
            let parsed = ParsedManifest::parse(&bytes);
            prop_assert!(parsed.is_ok(), "{}\n{}", parsed.unwrap_err(), String::from_utf8_lossy(&bytes));
            let parsed = parsed.unwrap();
            prop_assert_eq!(parsed.manifest(), &m);
            prop_assert_eq!(parsed.hash(), ManifestHash(sha256(&bytes)));
            prop_assert_eq!(parsed.manifest().to_json_bytes(), bytes);
        }
    }
}
