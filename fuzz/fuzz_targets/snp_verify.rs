//! End-to-end verification: `SnpVerifier::verify` on evidence split from the fuzz input (the
//! first 0x4A0 bytes are the report, the rest the endorsement key; shorter inputs are all
//! report). Must never panic; a verifier with a warm cache and a fresh one must agree; and an
//! accepted report's signature must verify with the endorsement key's point under aws-lc-rs.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use libfuzzer_sys::fuzz_target;
use nunki_attestation::snp::certs::CertInfo;
use nunki_attestation::snp::report::{REPORT_LEN, SIGNED_LEN};
use nunki_attestation::{Evidence, SnpVerifier, TrustStore};

/// 2025-09-15T00:00:00Z, inside the validity of the real VCEKs in shared/testdata.
const NOW: u64 = 1_757_894_400;

static CACHED: LazyLock<SnpVerifier> = LazyLock::new(|| SnpVerifier::new(TrustStore::amd()));

fuzz_target!(|data: &[u8]| {
    let (report, endorsement_key) = data.split_at(data.len().min(REPORT_LEN));
    let ev = Evidence {
        report,
        endorsement_key,
        chain: None,
        crl: None,
    };
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let cached = CACHED.verify(&ev, now);
    let fresh = SnpVerifier::new(TrustStore::amd()).verify(&ev, now);
    assert_eq!(
        cached.as_ref().map(|v| v.report()),
        fresh.as_ref().map(|v| v.report()),
        "cached and fresh verifiers disagree"
    );
    if let Ok(v) = cached {
        let key = CertInfo::from_der("VCEK", endorsement_key).expect("accepted key parses");
        let sig = v
            .report()
            .signature
            .to_fixed_p384()
            .expect("accepted signature is P-384");
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &key.public_key)
            .verify(&report[..SIGNED_LEN], &sig)
            .expect("accepted report does not verify with aws-lc-rs");
    }
});
