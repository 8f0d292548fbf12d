//! Every TDX quote of `shared/testdata/tdx` gives exactly the outcome its README and
//! `expected.json` state, with time pinned.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod tdx_common;

use nunki_attestation::tdx::validate::validate;
use nunki_attestation::tdx::{DcapStep, TdQuote, TdxPolicy, TdxVerifier, TdxVerifyError};
use nunki_manifest::TdxTcbStatus;
use serde_json::Value;
use tdx_common::{QUOTES, pairing, read};

fn expected() -> Value {
    serde_json::from_slice(&read("expected.json")).unwrap()
}

#[test]
fn parsed_fields_match_expected_json() {
    let exp = expected();
    let quotes = exp["quotes"].as_object().unwrap();
    assert_eq!(quotes.len(), 7);
    for (name, e) in quotes {
        let raw = read(name);
        assert_eq!(raw.len() as u64, e["size"].as_u64().unwrap(), "{name}");
        let q = TdQuote::parse(&raw).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(
            u64::from(q.header.version),
            e["header"]["version"].as_u64().unwrap()
        );
        assert_eq!(
            hex::encode(q.header.qe_vendor_id),
            e["header"]["qe_vendor_id"].as_str().unwrap()
        );
        if let Some(t) = e["trailing_bytes_after_signature_data"].as_u64() {
            assert_eq!(q.trailing_bytes as u64, t, "{name}: trailing bytes");
        }
        let td = &e["td_report"];
        let s = |k: &str| td[k].as_str().unwrap().to_string();
        assert_eq!(hex::encode(q.td.tee_tcb_svn), s("tee_tcb_svn"), "{name}");
        assert_eq!(q.td.mr_seam.to_hex(), s("mr_seam"), "{name}");
        assert_eq!(q.td.mr_signer_seam.to_hex(), s("mr_signer_seam"));
        assert_eq!(hex::encode(q.td.seam_attributes), s("seam_attributes"));
        assert_eq!(q.td.td_attributes.to_hex(), s("td_attributes"), "{name}");
        assert_eq!(q.td.xfam.to_hex(), s("xfam"));
        assert_eq!(q.td.mr_td.to_hex(), s("mr_td"), "{name}");
        assert_eq!(q.td.mr_config_id.to_hex(), s("mr_config_id"));
        assert_eq!(q.td.mr_owner.to_hex(), s("mr_owner"));
        assert_eq!(q.td.mr_owner_config.to_hex(), s("mr_owner_config"));
        for i in 0..4 {
            assert_eq!(
                q.td.rtmrs[i].to_hex(),
                s(&format!("rtmr{i}")),
                "{name} rtmr{i}"
            );
        }
        assert_eq!(q.td.report_data.to_hex(), s("report_data"), "{name}");
        match td.get("tee_tcb_svn2") {
            Some(v) => {
                assert_eq!(hex::encode(q.td.tee_tcb_svn2.unwrap()), v.as_str().unwrap());
                assert_eq!(q.td.mr_service_td.unwrap().to_hex(), s("mr_servicetd"));
            }
            None => assert!(q.td.tee_tcb_svn2.is_none(), "{name}: a TDX 1.0 body"),
        }
        assert_eq!(q.td.debug(), name == "trustee/tdx_quote_4.dat", "{name}");
        let qe = &e["qe_report"];
        assert_eq!(
            hex::encode(q.qe_report.mr_signer),
            qe["mrsigner"].as_str().unwrap()
        );
        assert_eq!(
            u64::from(q.qe_report.isv_svn),
            qe["isvsvn"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(q.pck_chain.len(), 3, "{name}: PCK, PCK CA, root");
        assert_eq!(
            hex::encode(nunki_manifest::sha256(q.pck_chain.last().unwrap())),
            "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3",
            "{name}: the root in the quote is the Intel SGX Root CA"
        );
    }
}

fn verify(name: &'static str) -> Result<nunki_attestation::tdx::VerifiedQuote, TdxVerifyError> {
    let p = pairing(name);
    TdxVerifier::intel().verify(&p.raw, &p.collateral, p.now)
}

#[test]
fn dcap_qvl_quote_is_up_to_date() {
    let v = verify("dcap-qvl/tdx_quote").unwrap();
    let t = v.tcb();
    assert_eq!(t.status, TdxTcbStatus::UpToDate);
    assert_eq!(t.platform_status, TdxTcbStatus::UpToDate);
    assert_eq!(t.qe_status, TdxTcbStatus::UpToDate);
    assert!(t.advisory_ids.is_empty());
    assert_eq!(t.tcb_date, "2024-03-13T00:00:00Z");
    assert_eq!(t.tcb_evaluation_data_number, 17);
    assert_eq!(v.pck().fmspc, "b0c06f000000");
    assert_eq!(v.quote().header.version, 4);
    // UpToDate passes the status check without naming any status.
    validate(&v, &TdxPolicy::default()).unwrap();
}

#[test]
fn outdated_quote_matches_no_tcb_level() {
    let err = verify("dcap-qvl/tdx_quote_outdated").unwrap_err();
    assert_eq!(err.step(), Some(DcapStep::TcbLevel), "{err}");
    assert!(
        err.to_string().contains("No matching TCB level found"),
        "{err}"
    );
}

#[test]
fn spr_e4_quote_matches_no_tcb_level_despite_trailing_junk() {
    let p = pairing("go-tdx-guest/tdx_prod_quote_SPR_E4.dat");
    assert!(p.raw.ends_with(b"extra bytes(only for testing purpose)\n"));
    let err = verify("go-tdx-guest/tdx_prod_quote_SPR_E4.dat").unwrap_err();
    assert_eq!(err.step(), Some(DcapStep::TcbLevel), "{err}");
}

#[test]
fn debug_td_is_refused() {
    let err = verify("trustee/tdx_quote_4.dat").unwrap_err();
    assert!(matches!(err, TdxVerifyError::Debug(_)), "{err}");
    assert!(
        err.to_string().contains("debug TDs are always refused"),
        "{err}"
    );
}

#[test]
fn v5_sample_is_up_to_date() {
    let v = verify("go-tdx-guest/quote_v5_sample.dat").unwrap();
    assert_eq!(v.quote().header.version, 5);
    assert_eq!(v.tcb().status, TdxTcbStatus::UpToDate);
    assert_eq!(v.tcb().platform_status, TdxTcbStatus::UpToDate);
    assert_eq!(v.tcb().qe_status, TdxTcbStatus::UpToDate);
    assert!(v.tcb().advisory_ids.is_empty());
    assert_eq!(v.tcb().tcb_date, "2024-11-13T00:00:00Z");
}

#[test]
fn trustee_v5_quote_matches_no_tcb_level() {
    let err = verify("trustee/tdx_quote_5.dat").unwrap_err();
    assert_eq!(err.step(), Some(DcapStep::TcbLevel), "{err}");
}

#[test]
fn quote_6_has_no_pck_crl_valid_in_its_window() {
    // README: OutOfDate, but no PCK CRL of the test data is valid between 2025-10-28 and
    // 2025-11-26, so full verification must fail closed on the CRL. The OutOfDate appraisal
    // itself is shown with a test PKI in tdx_tamper.rs.
    let err = verify("trustee/tdx_quote_6.dat").unwrap_err();
    assert!(
        matches!(
            err,
            TdxVerifyError::Stale {
                what: "the PCK CRL",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn every_quote_has_its_outcome() {
    // One table, so a new vector without an expectation fails here.
    for name in QUOTES {
        let outcome = match verify(name) {
            Ok(v) => format!("{}", v.tcb().status),
            Err(TdxVerifyError::Debug(_)) => "debug".into(),
            Err(TdxVerifyError::Stale { what, .. }) => format!("stale {what}"),
            Err(e) => format!("{:?}", e.step().unwrap()),
        };
        let want = match name {
            "dcap-qvl/tdx_quote" | "go-tdx-guest/quote_v5_sample.dat" => "UpToDate",
            "trustee/tdx_quote_4.dat" => "debug",
            "trustee/tdx_quote_6.dat" => "stale the PCK CRL",
            _ => "TcbLevel",
        };
        assert_eq!(outcome, want, "{name}");
    }
}

#[test]
fn time_outside_the_window_is_refused_naming_the_item() {
    let p = pairing("dcap-qvl/tdx_quote");
    let v = TdxVerifier::intel();
    let err = v
        .verify(
            &p.raw,
            &p.collateral,
            tdx_common::at("2025-07-20T00:00:00Z"),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            TdxVerifyError::Stale {
                what: "the TCB Info",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("2025-07-19T10:16:03Z"), "{err}");
    let err = v
        .verify(
            &p.raw,
            &p.collateral,
            tdx_common::at("2025-06-19T10:20:00Z"),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            TdxVerifyError::Stale {
                what: "the QE Identity",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn cached_verdict_still_checks_signature_and_time() {
    let p = pairing("dcap-qvl/tdx_quote");
    let v = TdxVerifier::intel();
    v.verify(&p.raw, &p.collateral, p.now).unwrap();
    // Same TD, second quote: served from the cache, still correct.
    let again = v.verify(&p.raw, &p.collateral, p.now).unwrap();
    assert_eq!(again.tcb().status, TdxTcbStatus::UpToDate);
    // A changed REPORT_DATA hits the same cache entry, and its signature no longer verifies.
    let q = TdQuote::parse(&p.raw).unwrap();
    let rd = 48 + 520;
    assert_eq!(&p.raw[rd..rd + 64], q.td.report_data.0.as_slice());
    let mut forged = p.raw.clone();
    forged[rd] ^= 1;
    let err = v.verify(&forged, &p.collateral, p.now).unwrap_err();
    assert_eq!(err.step(), Some(DcapStep::QuoteSignature), "{err}");
    // And a cached verdict is not served outside its window.
    let err = v
        .verify(
            &p.raw,
            &p.collateral,
            tdx_common::at("2025-07-19T11:00:00Z"),
        )
        .unwrap_err();
    assert!(matches!(err, TdxVerifyError::Stale { .. }), "{err}");
}
