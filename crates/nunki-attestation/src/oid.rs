//! Every object identifier Nunki's attestation code recognises, in one place.

/// AMD's arc for SEV-SNP certificate extensions: 1.3.6.1.4.1.3704.1.
pub const AMD_ARC: &str = "1.3.6.1.4.1.3704.1";
/// VCEK/VLEK structure version (INTEGER).
pub const AMD_STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
/// Product name (IA5String, e.g. `Milan-B0`).
pub const AMD_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
/// Boot loader SPL (INTEGER).
pub const AMD_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
/// TEE SPL (INTEGER).
pub const AMD_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
/// SNP firmware SPL (INTEGER).
pub const AMD_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
/// Reserved SPL 4 (INTEGER, 0; absent on Turin).
pub const AMD_SPL4: &str = "1.3.6.1.4.1.3704.1.3.4";
/// Reserved SPL 5 (INTEGER, 0).
pub const AMD_SPL5: &str = "1.3.6.1.4.1.3704.1.3.5";
/// Reserved SPL 6 (INTEGER, 0).
pub const AMD_SPL6: &str = "1.3.6.1.4.1.3704.1.3.6";
/// Reserved SPL 7 (INTEGER, 0).
pub const AMD_SPL7: &str = "1.3.6.1.4.1.3704.1.3.7";
/// Microcode SPL (INTEGER).
pub const AMD_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
/// FMC SPL (INTEGER, Turin only).
pub const AMD_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
/// Hardware ID: the raw CHIP_ID bytes (64, or 8 on Turin), VCEK only.
pub const AMD_HWID: &str = "1.3.6.1.4.1.3704.1.4";
/// Cloud service provider ID (IA5String), VLEK only.
pub const AMD_CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";

/// RSASSA-PSS.
pub const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
/// rsaEncryption (SubjectPublicKeyInfo algorithm of AMD's RSA keys).
pub const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
/// MGF1.
pub const MGF1: &str = "1.2.840.113549.1.1.8";
/// SHA-384.
pub const SHA384: &str = "2.16.840.1.101.3.4.2.2";
/// id-ecPublicKey.
pub const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// secp384r1 (P-384).
pub const SECP384R1: &str = "1.3.132.0.34";
/// X.509 basicConstraints.
pub const BASIC_CONSTRAINTS: &str = "2.5.29.19";
/// X.509 keyUsage.
pub const KEY_USAGE: &str = "2.5.29.15";
/// X.509 subjectKeyIdentifier.
pub const SUBJECT_KEY_IDENTIFIER: &str = "2.5.29.14";
/// X.509 authorityKeyIdentifier.
pub const AUTHORITY_KEY_IDENTIFIER: &str = "2.5.29.35";
/// X.509 cRLDistributionPoints.
pub const CRL_DISTRIBUTION_POINTS: &str = "2.5.29.31";
/// X.509 cRLNumber.
pub const CRL_NUMBER: &str = "2.5.29.20";
