//! The Nunki manifest: digest newtypes and reference values.
//!
//! This crate does no I/O. Everything that is hashed or signed elsewhere is represented here with
//! fixed-size newtypes so that a wrong length is a parse error, not a runtime surprise.

pub mod digest;
pub mod reference_values;

pub use digest::{
    ChipId, DigestParseError, HostData, IdKeyDigest, Measurement, PolicyHash, ReportData,
    Sha256Fingerprint,
};
pub use reference_values::{
    SimulatedReferenceValues, SnpGuestPolicy, SnpMinimumTcb, SnpProduct, SnpReferenceValues,
    UnknownProduct,
};
