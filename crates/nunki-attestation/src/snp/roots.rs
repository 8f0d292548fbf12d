//! AMD's SEV-SNP root certificates, built in and pinned by SHA-256 fingerprint.
//!
//! The PEM files are AMD's public `cert_chain` bundles (ASK or ASVK first, then the ARK), as
//! served by the AMD Key Distribution Service. They are compiled into the binary so that
//! verification needs no network, and each certificate is checked against the fingerprint
//! below when loaded, so a modified file cannot slip in unnoticed.

use nunki_manifest::SnpProduct;

/// A built-in bundle: product, which intermediate, PEM text, and the pinned fingerprints of the
/// intermediate and of the ARK.
#[derive(Debug)]
pub struct BuiltinBundle {
    /// Product line.
    pub product: SnpProduct,
    /// `true` for the ASVK (VLEK) bundle, `false` for the ASK (VCEK) bundle.
    pub vlek: bool,
    /// PEM text: intermediate, then ARK.
    pub pem: &'static str,
    /// SHA-256 of the intermediate's DER.
    pub intermediate_sha256: &'static str,
    /// SHA-256 of the ARK's DER.
    pub ark_sha256: &'static str,
}

/// Pinned SHA-256 fingerprint of ARK-Milan.
pub const ARK_MILAN_SHA256: &str =
    "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd";
/// Pinned SHA-256 fingerprint of ARK-Genoa.
pub const ARK_GENOA_SHA256: &str =
    "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1";
/// Pinned SHA-256 fingerprint of ARK-Turin.
pub const ARK_TURIN_SHA256: &str =
    "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a";

/// All built-in bundles.
pub const BUNDLES: [BuiltinBundle; 6] = [
    BuiltinBundle {
        product: SnpProduct::Milan,
        vlek: false,
        pem: include_str!("../../roots/ask_ark_milan.pem"),
        intermediate_sha256: "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
        ark_sha256: ARK_MILAN_SHA256,
    },
    BuiltinBundle {
        product: SnpProduct::Genoa,
        vlek: false,
        pem: include_str!("../../roots/ask_ark_genoa.pem"),
        intermediate_sha256: "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
        ark_sha256: ARK_GENOA_SHA256,
    },
    BuiltinBundle {
        product: SnpProduct::Turin,
        vlek: false,
        pem: include_str!("../../roots/ask_ark_turin.pem"),
        intermediate_sha256: "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
        ark_sha256: ARK_TURIN_SHA256,
    },
    BuiltinBundle {
        product: SnpProduct::Milan,
        vlek: true,
        pem: include_str!("../../roots/asvk_ark_milan.pem"),
        intermediate_sha256: "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
        ark_sha256: ARK_MILAN_SHA256,
    },
    BuiltinBundle {
        product: SnpProduct::Genoa,
        vlek: true,
        pem: include_str!("../../roots/asvk_ark_genoa.pem"),
        intermediate_sha256: "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
        ark_sha256: ARK_GENOA_SHA256,
    },
    BuiltinBundle {
        product: SnpProduct::Turin,
        vlek: true,
        pem: include_str!("../../roots/asvk_ark_turin.pem"),
        intermediate_sha256: "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
        ark_sha256: ARK_TURIN_SHA256,
    },
];
