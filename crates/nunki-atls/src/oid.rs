//! Object identifiers used by aTLS, in one place.

/// Certificate extension carrying a DER [`crate::EvidenceDoc`] (SEV-SNP report, endorsement key,
/// chain and optional CRL; or a TDX quote with its collateral). In the same private arc as Contrast's aTLS extensions, with its own
/// number because the encoding differs.
pub const EVIDENCE: &[u64] = &[1, 3, 9901, 5, 1];

/// Dotted form of [`EVIDENCE`].
pub const EVIDENCE_STR: &str = "1.3.9901.5.1";
