//! A manifest with SEV-SNP and TDX entries admits evidence matching either entry and nothing
//! else (real vectors from `shared/testdata`, time pinned).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nunki_atls::verify::AtlsError;
use nunki_atls::{
    EvidenceDoc, HostDataRule, PeerReport, ReferenceVerifier, SnpEvidence, TdxEvidence,
};
use nunki_attestation::tdx::TdQuote;
use nunki_attestation::time_util::parse_rfc3339;
use nunki_manifest::{
    HostData, Measurement, ReferenceValues, SnpGuestPolicy, SnpMinimumTcb, SnpProduct,
    SnpReferenceValues, TdxReferenceValues,
};

fn testdata() -> PathBuf {
    std::env::var_os("NUNKI_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"))
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(testdata().join(rel)).unwrap()
}

/// Milan report with an ID block (VCEK valid 2023-01-24..2030-01-24).
fn snp_evidence() -> EvidenceDoc {
    EvidenceDoc::Snp(SnpEvidence {
        report: read("snp/milan-trustee-v2-idblock/report.bin"),
        endorsement_key: read("snp/milan-trustee-v2-idblock/vcek.der"),
        chain: vec![],
        crl: None,
    })
}

fn snp_rv() -> SnpReferenceValues {
    SnpReferenceValues {
        product: SnpProduct::Milan,
        trusted_measurement: "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c".parse().unwrap(),
        minimum_tcb: SnpMinimumTcb { bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc: None },
        guest_policy: SnpGuestPolicy::default(),
        allowed_chip_ids: vec![],
        allowed_id_key_digests: vec![],
        vmpl: 0,
    }
}

/// dcap-qvl's UpToDate quote with its collateral (valid 2025-06-19..2025-07-19).
fn tdx_evidence() -> EvidenceDoc {
    EvidenceDoc::Tdx(TdxEvidence {
        quote: read("tdx/dcap-qvl/tdx_quote"),
        collateral: Some(read("tdx/dcap-qvl/tdx_quote_collateral.json")),
    })
}

fn tdx_rv() -> TdxReferenceValues {
    let q = TdQuote::parse(&read("tdx/dcap-qvl/tdx_quote")).unwrap();
    TdxReferenceValues {
        mr_td: q.td.mr_td,
        rtmrs: q.td.rtmrs,
        mr_seam: q.td.mr_seam,
        xfam: q.td.xfam,
        td_attributes: q.td.td_attributes,
        minimum_tcb_evaluation_data_number: 17,
        allowed_tcb_statuses: vec![],
        allowed_piids: vec![],
    }
}

fn verifier(rv: ReferenceValues, rule: HostDataRule) -> ReferenceVerifier {
    let now = parse_rfc3339("2025-07-01T00:00:00Z").unwrap();
    ReferenceVerifier::for_reference_values(&rv, rule, Arc::new(move || now)).unwrap()
}

fn mixed(snp: SnpReferenceValues, tdx: TdxReferenceValues) -> ReferenceValues {
    ReferenceValues {
        snp: vec![snp],
        tdx: vec![tdx],
        simulated: vec![],
    }
}

#[test]
fn mixed_manifest_admits_either_platform() {
    let v = verifier(mixed(snp_rv(), tdx_rv()), HostDataRule::Any);
    let snp = v.appraise(&snp_evidence()).unwrap();
    assert_eq!(snp.matched, "snp[0]");
    assert!(matches!(snp.report, PeerReport::Snp(_)));
    let tdx = v.appraise(&tdx_evidence()).unwrap();
    assert_eq!(tdx.matched, "tdx[0]");
    assert!(matches!(tdx.report, PeerReport::Tdx(_)));
    // The TD's policy hash is MRCONFIGID's first 32 bytes (all zero in this quote).
    assert_eq!(tdx.host_data(), HostData([0; 32]));
}

#[test]
fn mixed_manifest_admits_nothing_else() {
    // Each platform is judged only by its own entries: a changed TDX entry refuses the TD even
    // though the SNP entry matches SNP evidence, and the other way round.
    let mut bad_tdx = tdx_rv();
    bad_tdx.rtmrs[1].0[0] ^= 1;
    let v = verifier(mixed(snp_rv(), bad_tdx), HostDataRule::Any);
    v.appraise(&snp_evidence()).unwrap();
    let err = v.appraise(&tdx_evidence()).unwrap_err();
    assert!(matches!(err, AtlsError::TdxReferenceValues(_)), "{err}");
    assert!(
        err.to_string().contains("tdx[0]: Rtmrs[1]: quote has"),
        "{err}"
    );

    let mut bad_snp = snp_rv();
    bad_snp.trusted_measurement = Measurement([7; 48]);
    let v = verifier(mixed(bad_snp, tdx_rv()), HostDataRule::Any);
    v.appraise(&tdx_evidence()).unwrap();
    let err = v.appraise(&snp_evidence()).unwrap_err();
    assert!(
        err.to_string().contains("snp[0]: TrustedMeasurement"),
        "{err}"
    );

    // One platform only: the other's evidence has nothing to match.
    let only_snp = verifier(
        ReferenceValues {
            snp: vec![snp_rv()],
            ..ReferenceValues::default()
        },
        HostDataRule::Any,
    );
    let err = only_snp.appraise(&tdx_evidence()).unwrap_err();
    assert!(err.to_string().contains("no tdx entry"), "{err}");
    let only_tdx = verifier(
        ReferenceValues {
            tdx: vec![tdx_rv()],
            ..ReferenceValues::default()
        },
        HostDataRule::Any,
    );
    let err = only_tdx.appraise(&snp_evidence()).unwrap_err();
    assert!(
        err.to_string().contains("no snp or simulated entry"),
        "{err}"
    );

    // The policy hash rule applies to TDX as to SNP.
    let v = verifier(
        mixed(snp_rv(), tdx_rv()),
        HostDataRule::OneOf(vec![HostData([5; 32])]),
    );
    let err = v.appraise(&tdx_evidence()).unwrap_err();
    assert!(matches!(err, AtlsError::HostData { .. }), "{err}");

    // TDX evidence without collateral is refused (verifiers do no network I/O).
    let v = verifier(mixed(snp_rv(), tdx_rv()), HostDataRule::Any);
    let bare = EvidenceDoc::Tdx(TdxEvidence {
        quote: read("tdx/dcap-qvl/tdx_quote"),
        collateral: None,
    });
    let err = v.appraise(&bare).unwrap_err();
    assert!(err.to_string().contains("carries no collateral"), "{err}");
}

#[test]
fn tdx_evidence_survives_the_certificate_extension() {
    // Quote + collateral fit in one evidence document and decode back unchanged.
    let doc = tdx_evidence();
    let enc = doc.encode().unwrap();
    assert!(
        enc.len() < nunki_atls::evidence::MAX_LEN,
        "{} bytes",
        enc.len()
    );
    assert_eq!(EvidenceDoc::decode(&enc).unwrap(), doc);
}
