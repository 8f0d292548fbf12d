//! The Nunki manifest: schema and validation, digest newtypes, reference values and the
//! hash-chained manifest history.
//!
//! This crate does no I/O. Everything that is hashed or signed elsewhere is represented here with
//! fixed-size newtypes so that a wrong length is a parse error, not a runtime surprise.

pub mod audit;
pub mod digest;
pub mod draft;
pub mod history;
pub mod manifest;
pub mod placeholder;
pub mod reference_values;
pub mod san;
mod strict;

pub use audit::{
    AUDIT_GENESIS, AuditError, AuditOperation, AuditOutcome, AuditRecord, check_audit_chain,
};
pub use digest::{
    ChipId, DigestParseError, HostData, IdKeyDigest, ManifestHash, Measurement, PolicyHash,
    ReportData, Sha256Fingerprint, TransitionHash, sha256,
};
pub use history::{ChainEntry, Transition, TransitionLengthError, transition_chain};
pub use manifest::{
    Manifest, ManifestError, ManifestErrorKind, ManifestErrors, ParsedManifest, PolicyEntry,
    ReferenceValues, Role, UnknownRole,
};
pub use reference_values::{
    SimulatedReferenceValues, SnpGuestPolicy, SnpMinimumTcb, SnpProduct, SnpReferenceValues,
    UnknownProduct,
};
pub use san::{San, SanError};
