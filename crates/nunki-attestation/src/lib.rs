//! Attestation evidence for Nunki: AMD SEV-SNP report parsing, verification against the AMD
//! (or pinned simulated) roots, validation against reference values, and the simulated SNP
//! platform that lets the whole product run without TEE hardware; Intel TDX quotes verified
//! with their collateral through `dcap-qvl` against the pinned Intel SGX Root CA ([`tdx`]).
//!
//! This crate performs no network I/O; collateral fetchers (AMD KDS, Intel PCS) are injected
//! through [`snp::kds::HttpGet`]. Time is always passed in by the caller.

mod fmt_util;
pub mod oid;
pub mod sim;
pub mod snp;
pub mod tdx;
pub mod time_util;

pub use snp::report::{Report, ReportError};
pub use snp::validate::{SnpPolicy, ValidationError, ValidationErrors};
pub use snp::verify::{
    Evidence, RootKind, SignerKind, SnpVerifier, TrustStore, VerifiedReport, VerifyError,
};
