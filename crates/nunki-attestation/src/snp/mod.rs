//! AMD SEV-SNP: report codec, certificates, roots, CRLs, verification and validation.

pub mod certs;
pub mod crl;
pub mod guest;
pub mod kds;
pub mod report;
pub mod roots;
pub mod tcb;
pub mod validate;
pub mod verify;
