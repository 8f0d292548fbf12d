//! The Intel SGX Root CA, built in and pinned by SHA-256 fingerprint.
//!
//! Every TDX (and SGX) PCK certificate, TCB Info and QE Identity signer chains to this one
//! self-signed P-256 certificate (valid until 2049-12-31). It is public:
//! `https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.cer`.

use nunki_manifest::Sha256Fingerprint;

/// DER of the Intel SGX Root CA.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("../../roots/intel_sgx_root_ca.der");

/// Pinned SHA-256 of [`INTEL_SGX_ROOT_CA_DER`].
pub const INTEL_SGX_ROOT_CA_SHA256: &str =
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";

/// Where Intel publishes the root CA's CRL (its CRL distribution point).
pub const INTEL_SGX_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// The pinned fingerprint, parsed.
pub fn intel_root_fingerprint() -> Sha256Fingerprint {
    INTEL_SGX_ROOT_CA_SHA256
        .parse()
        .unwrap_or(Sha256Fingerprint([0; 32]))
}

/// Whether the built-in certificate still matches its pinned fingerprint.
pub fn builtin_root_intact() -> bool {
    Sha256Fingerprint(nunki_manifest::sha256(INTEL_SGX_ROOT_CA_DER)) == intel_root_fingerprint()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_root_matches_its_pin_and_names_intel() {
        assert!(builtin_root_intact());
        use x509_parser::prelude::FromDer;
        let (_, c) =
            x509_parser::certificate::X509Certificate::from_der(INTEL_SGX_ROOT_CA_DER).unwrap();
        assert_eq!(
            c.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "Intel SGX Root CA"
        );
        assert_eq!(c.subject(), c.issuer());
    }
}
