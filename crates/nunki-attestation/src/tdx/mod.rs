//! Intel TDX: quote decoding, collateral, verification (through `dcap-qvl`) and validation
//! against manifest reference values, Intel PCS URLs, and the guest side (configfs-tsm).

pub mod collateral;
#[cfg(feature = "hw")]
pub mod guest;
pub mod pcs;
pub mod quote;
pub mod roots;
pub mod validate;
pub mod verify;

pub use collateral::{CollateralError, CollateralInfo, CollateralParts, TdxCollateral};
pub use quote::{QuoteError, TdQuote};
pub use validate::{TdxPolicy, TdxValidationError, TdxValidationErrors};
pub use verify::{DcapStep, TdxRootKind, TdxVerifier, TdxVerifyError, VerifiedQuote};
