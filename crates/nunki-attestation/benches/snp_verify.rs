//! SEV-SNP report verification: our verifier against the bare ECDSA floor and the `sev` crate.
//!
//! All rows use the real Genoa vector `shared/testdata/snp/genoa-oak-v5` (report.bin and
//! vcek.der) and the Genoa ARK/ASK from `shared/testdata/snp/amd/ask_ark_genoa.pem`, with
//! "now" pinned to 2025-09-15T00:00:00Z (inside the VCEK's validity window). What each row
//! times is written next to it below and in BENCHMARKS.md.
//!
//! Run with `cargo bench -p nunki-attestation --bench snp_verify`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_debug_implementations
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::SystemTime;

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use criterion::{Criterion, criterion_group, criterion_main};
use nunki_attestation::snp::certs::{CertInfo, pem_or_der_certs};
use nunki_attestation::snp::report::SIGNED_LEN;
use nunki_attestation::snp::tcb::TcbLayout;
use nunki_attestation::snp::validate::{RootRequirement, SnpPolicy, validate};
use nunki_attestation::time_util::parse_rfc3339;
use nunki_attestation::{Evidence, Report, SnpVerifier, TrustStore};
use nunki_manifest::{SnpMinimumTcb, SnpProduct};
use sev::certs::snp::{Certificate as SevCertificate, Chain as SevChain, Verifiable};
use sev::firmware::guest::AttestationReport as SevReport;
use sev::parser::ByteParser;

/// `$NUNKI_TESTDATA`, else `shared/testdata` beside the checkout (as `tests/common` does).
fn testdata() -> PathBuf {
    if let Some(d) = std::env::var_os("NUNKI_TESTDATA") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata")
}

fn read(rel: &str) -> Vec<u8> {
    let p = testdata().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Everything the benchmarks need, loaded and checked once.
struct Fixture {
    report: Vec<u8>,
    vcek: Vec<u8>,
    /// The VCEK's uncompressed P-384 point.
    vcek_point: Vec<u8>,
    /// The report signature as 96-byte big-endian R || S.
    fixed_sig: [u8; 96],
    /// The Genoa ASK and ARK, DER.
    ask: Vec<u8>,
    ark: Vec<u8>,
    now: SystemTime,
    policy: SnpPolicy,
}

fn fixture() -> Fixture {
    let report = read("snp/genoa-oak-v5/report.bin");
    let vcek = read("snp/genoa-oak-v5/vcek.der");
    let parsed = Report::parse(&report).expect("genoa-oak-v5 report parses");
    let vcek_info = CertInfo::from_der("VCEK", &vcek).expect("genoa-oak-v5 VCEK parses");
    let fixed_sig = parsed.signature.to_fixed_p384().expect("P-384 signature");
    let chain = pem_or_der_certs(&read("snp/amd/ask_ark_genoa.pem")).expect("Genoa ASK/ARK PEM");
    let [ask, ark] = <[Vec<u8>; 2]>::try_from(chain).expect("ask_ark_genoa.pem holds ASK then ARK");
    let now = parse_rfc3339("2025-09-15T00:00:00Z").unwrap();

    // A realistic policy: every reference value the manifest can pin, taken from the report.
    let tcb = parsed.reported_tcb.decode(TcbLayout::MilanGenoa);
    let policy = SnpPolicy {
        root: Some(RootRequirement::Amd),
        product: Some(SnpProduct::Genoa),
        measurements: Some(vec![parsed.measurement]),
        host_data: Some(parsed.host_data),
        report_data: Some(parsed.report_data),
        minimum_tcb: Some(SnpMinimumTcb {
            bootloader: tcb.bootloader,
            tee: tcb.tee,
            snp: tcb.snp,
            microcode: tcb.microcode,
            fmc: None,
        }),
        allow_debug: false,
        minimum_abi: Some((parsed.policy.abi_major(), parsed.policy.abi_minor())),
        vmpl: Some(parsed.vmpl),
        allowed_chip_ids: vec![parsed.chip_id],
        allowed_id_key_digests: vec![parsed.id_key_digest],
    };
    Fixture {
        report,
        vcek,
        vcek_point: vcek_info.public_key,
        fixed_sig,
        ask,
        ark,
        now,
        policy,
    }
}

fn evidence<'a>(report: &'a [u8], vcek: &'a [u8]) -> Evidence<'a> {
    Evidence {
        report,
        endorsement_key: vcek,
        chain: None,
        crl: None,
    }
}

// The timed bodies, shared by the setup checks and the benchmarks so that what is checked is
// exactly what is timed.

/// Row 1: one bare ECDSA P-384/SHA-384 verification over bytes 0..0x2A0 (SHA-384 included).
fn floor(key: &UnparsedPublicKey<&[u8]>, report: &[u8], sig: &[u8; 96]) -> bool {
    key.verify(&report[..SIGNED_LEN], sig).is_ok()
}

/// Rows 2 and 3: parse + verify (signature, cached or fresh chain, bindings) + validate.
fn nunki_full(verifier: &SnpVerifier, f: &Fixture, report: &[u8]) -> bool {
    match verifier.verify(&evidence(report, &f.vcek), f.now) {
        Ok(verified) => validate(&verified, &f.policy).is_ok(),
        Err(_) => false,
    }
}

/// Row 4: `sev` parses the report and verifies its signature with an already parsed VCEK.
fn sev_report(cert: &SevCertificate, report: &[u8]) -> bool {
    match SevReport::from_bytes(report) {
        Ok(r) => (cert, &r).verify().is_ok(),
        Err(_) => false,
    }
}

/// Row 5: `sev` parses the report and verifies ARK self-signature, ARK→ASK, ASK→VCEK and the
/// report signature.
fn sev_chain(chain: &SevChain, report: &[u8]) -> bool {
    match SevReport::from_bytes(report) {
        Ok(r) => (chain, &r).verify().is_ok(),
        Err(_) => false,
    }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, f.vcek_point.as_slice());
    let sev_cert = SevCertificate::from_der(&f.vcek).expect("sev parses the VCEK");
    let sev_chain_v = SevChain::from_der(&f.ark, &f.ask, &f.vcek).expect("sev parses the chain");

    // The chain-cached verifier, warmed once: this verifies the VCEK chain (and, process-wide,
    // the built-in roots) and caches the endorsed key.
    let warm = SnpVerifier::new(TrustStore::amd());
    assert!(
        nunki_full(&warm, &f, &f.report),
        "warm-up verification failed"
    );

    // Every variant must succeed on the genuine report...
    assert!(
        floor(&key, &f.report, &f.fixed_sig),
        "floor: signature does not verify"
    );
    assert!(
        nunki_full(&warm, &f, &f.report),
        "nunki (cached) rejects the report"
    );
    assert!(
        nunki_full(&SnpVerifier::new(TrustStore::amd()), &f, &f.report),
        "nunki (cold) rejects the report"
    );
    assert!(
        sev_report(&sev_cert, &f.report),
        "sev rejects the report signature"
    );
    assert!(
        sev_chain(&sev_chain_v, &f.report),
        "sev rejects chain + report"
    );
    // ...and reject one with a flipped MEASUREMENT bit, so no variant is a no-op.
    let mut bad = f.report.clone();
    bad[0x90] ^= 1;
    assert!(
        !floor(&key, &bad, &f.fixed_sig),
        "floor accepts a tampered report"
    );
    assert!(
        !nunki_full(&warm, &f, &bad),
        "nunki (cached) accepts a tampered report"
    );
    assert!(
        !nunki_full(&SnpVerifier::new(TrustStore::amd()), &f, &bad),
        "nunki (cold) accepts a tampered report"
    );
    assert!(
        !sev_report(&sev_cert, &bad),
        "sev accepts a tampered report"
    );
    assert!(
        !sev_chain(&sev_chain_v, &bad),
        "sev (chain) accepts a tampered report"
    );

    let mut g = c.benchmark_group("snp_verify");

    g.bench_function("floor/aws-lc-rs p384 verify", |b| {
        b.iter(|| {
            assert!(floor(
                black_box(&key),
                black_box(&f.report),
                black_box(&f.fixed_sig)
            ))
        });
    });

    g.bench_function("nunki/full verify (chain cached)", |b| {
        b.iter(|| assert!(nunki_full(black_box(&warm), &f, black_box(&f.report))));
    });

    g.bench_function("nunki/full verify (cold, new verifier each time)", |b| {
        b.iter(|| {
            let verifier = SnpVerifier::new(TrustStore::amd());
            assert!(nunki_full(&verifier, &f, black_box(&f.report)));
        });
    });

    g.bench_function("sev/report signature", |b| {
        b.iter(|| assert!(sev_report(black_box(&sev_cert), black_box(&f.report))));
    });

    g.bench_function("sev/chain + report", |b| {
        b.iter(|| assert!(sev_chain(black_box(&sev_chain_v), black_box(&f.report))));
    });

    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
