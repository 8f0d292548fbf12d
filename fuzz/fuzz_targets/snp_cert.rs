//! Certificate handling: `CertInfo::from_der`, `EndorsementExtensions::from_cert` and
//! `pem_or_der_certs` on arbitrary bytes must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nunki_attestation::snp::certs::{CertInfo, EndorsementExtensions, pem_or_der_certs};

fn exercise(info: &CertInfo) {
    let _ = EndorsementExtensions::from_cert(info);
    let _ = info.require_amd_profile();
    let _ = info.serial_hex();
    let _ = info.check_validity(0);
    // Self-signature check: exercises RSA key and signature parsing on fuzzed bytes.
    let _ = info.verify_issued_by(info);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = CertInfo::from_der("fuzz", data) {
        exercise(&info);
    }
    if let Ok(ders) = pem_or_der_certs(data) {
        for der in &ders {
            if let Ok(info) = CertInfo::from_der("fuzz PEM", der) {
                exercise(&info);
            }
        }
    }
});
