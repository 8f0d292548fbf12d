//! TDX quote verification with cached collateral, against the floor of the two ECDSA P-256
//! verifications a quote needs (attestation key over header + TD report, PCK key over the QE
//! report), measured in the same run with aws-lc-rs.
//!
//! Vector: `shared/testdata/tdx/dcap-qvl/tdx_quote` with its collateral, "now" pinned to
//! 2025-07-01T00:00:00Z. Run with `cargo bench -p nunki-attestation --bench tdx_verify`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_debug_implementations
)]

#[path = "../tests/tdx_common/mod.rs"]
mod tdx_common;

use std::hint::black_box;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use criterion::{Criterion, criterion_group, criterion_main};
use nunki_attestation::tdx::{TdQuote, TdxVerifier};
use x509_parser::prelude::FromDer;

fn bench(c: &mut Criterion) {
    let p = tdx_common::pairing("dcap-qvl/tdx_quote");
    let q = TdQuote::parse(&p.raw).unwrap();
    let mut ak = vec![4u8];
    ak.extend_from_slice(&q.attestation_key);
    let (_, leaf) =
        x509_parser::certificate::X509Certificate::from_der(q.pck_leaf().unwrap()).unwrap();
    let pck_key = leaf.public_key().subject_public_key.data.to_vec();
    let qe_start = q.signed_len + 4 + 128 + 6;
    let qe_report = p.raw[qe_start..qe_start + 384].to_vec();
    let qe_sig = p.raw[qe_start + 384..qe_start + 448].to_vec();
    let signed = p.raw[..q.signed_len].to_vec();
    let quote_sig = q.signature().to_vec();

    let mut g = c.benchmark_group("tdx_verify");
    // Floor: the two ECDSA P-256 verifications (keys parsed each time, as a cold verifier must).
    g.bench_function("floor_two_p256_verifications", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &ak)
                .verify(black_box(&signed), &quote_sig)
                .unwrap();
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &pck_key)
                .verify(black_box(&qe_report), &qe_sig)
                .unwrap();
        })
    });
    // Ours, collateral and this TD's verdict cached: parse, freshness, root pins, cache key,
    // one quote signature.
    let warm = TdxVerifier::intel();
    warm.verify(&p.raw, &p.collateral, p.now).unwrap();
    g.bench_function("nunki_cached_collateral", |b| {
        b.iter(|| {
            warm.verify(black_box(&p.raw), &p.collateral, p.now)
                .unwrap()
        })
    });
    // Ours, nothing cached: the full dcap-qvl verification (RustCrypto) every time.
    g.sample_size(20);
    g.bench_function("nunki_cold_full_dcap_qvl", |b| {
        b.iter(|| {
            TdxVerifier::intel()
                .verify(black_box(&p.raw), &p.collateral, p.now)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
