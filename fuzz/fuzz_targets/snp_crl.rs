//! CRL handling: `VerifiedCrl::verify` against the real Genoa ARK on arbitrary bytes must never
//! panic. (A forged signature is not expected to be found; the parser is what is exercised.)
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nunki_attestation::snp::certs::{CertInfo, pem_or_der_certs};
use nunki_attestation::snp::crl::VerifiedCrl;

/// AMD's Genoa bundle as built into nunki-attestation: ASK, then ARK.
const GENOA_PEM: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/nunki-attestation/roots/ask_ark_genoa.pem"
));

static ARK: LazyLock<CertInfo> = LazyLock::new(|| {
    let ders = pem_or_der_certs(GENOA_PEM).expect("Genoa bundle is PEM");
    let ark = ders.get(1).expect("Genoa bundle holds ASK and ARK");
    CertInfo::from_der("ARK", ark).expect("Genoa ARK parses")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(crl) = VerifiedCrl::verify(data, &ARK) {
        assert_eq!(crl.ark_fingerprint, ARK.fingerprint);
        let _ = crl.check_time(0);
        let _ = crl.check_time(i64::MAX);
        let _ = crl.is_revoked("0");
    }
});
