//! Real AMD SEV-SNP reports from `shared/testdata/snp`: parsing, verification and the negative
//! cases the foundation issue demands.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use nunki_attestation::snp::report::{Report, ReportError};
use nunki_attestation::snp::tcb::TcbLayout;
use nunki_attestation::snp::validate::{SnpPolicy, ValidationError, validate};
use nunki_attestation::snp::verify::{
    Evidence, RootKind, SignerKind, SnpVerifier, TrustStore, VerifyError,
};
use nunki_manifest::{SnpMinimumTcb, SnpProduct};

fn verifier() -> SnpVerifier {
    SnpVerifier::new(TrustStore::amd())
}

fn ev<'a>(v: &'a Vector) -> Evidence<'a> {
    Evidence {
        report: &v.report,
        endorsement_key: &v.cert,
        chain: None,
        crl: None,
    }
}

fn hexs(v: &serde_json::Value) -> String {
    v.as_str().unwrap().to_string()
}

fn tcb_json(t: nunki_attestation::snp::tcb::TcbVersion) -> serde_json::Value {
    let mut m =
        serde_json::json!({ "bl": t.bootloader, "tee": t.tee, "snp": t.snp, "ucode": t.microcode });
    if let Some(f) = t.fmc {
        m["fmc"] = f.into();
    }
    m
}

#[test]
fn every_vector_verifies_and_matches_expected_json() {
    let verifier = verifier();
    for v in vectors() {
        let e = &v.exp;
        let verified = verifier
            .verify(&ev(&v), v.now())
            .unwrap_or_else(|err| panic!("{}: {err}", v.name));
        let r = verified.report();
        let ctx = &v.name;
        assert_eq!(
            verified.product().name(),
            e["product"].as_str().unwrap(),
            "{ctx}"
        );
        assert_eq!(verified.root(), RootKind::Amd, "{ctx}");
        let signer = match e["signing_key"].as_str().unwrap() {
            "VCEK" => SignerKind::Vcek,
            _ => SignerKind::Vlek,
        };
        assert_eq!(verified.signer(), signer, "{ctx}");
        assert_eq!(
            u64::from(r.version),
            e["report_version"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            u64::from(r.guest_svn),
            e["guest_svn"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(format!("{:#x}", r.policy.0), hexs(&e["policy"]), "{ctx}");
        assert_eq!(
            r.policy.debug(),
            e["policy_debug"].as_bool().unwrap(),
            "{ctx}"
        );
        assert_eq!(r.policy.smt(), e["policy_smt"].as_bool().unwrap(), "{ctx}");
        assert_eq!(
            r.policy.migrate_ma(),
            e["policy_migrate_ma"].as_bool().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            format!("{}.{}", r.policy.abi_major(), r.policy.abi_minor()),
            hexs(&e["policy_abi"]),
            "{ctx}"
        );
        assert_eq!(u64::from(r.vmpl), e["vmpl"].as_u64().unwrap(), "{ctx}");
        assert_eq!(
            u64::from(r.signature_algo),
            e["sig_algo"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            format!("{:#x}", r.platform_info.0),
            hexs(&e["platform_info"]),
            "{ctx}"
        );
        assert_eq!(
            format!("{:#x}", r.key_info.0),
            hexs(&e["signer_info"]),
            "{ctx}"
        );
        assert_eq!(hex::encode(r.family_id), hexs(&e["family_id"]), "{ctx}");
        assert_eq!(hex::encode(r.image_id), hexs(&e["image_id"]), "{ctx}");
        assert_eq!(r.report_data.to_hex(), hexs(&e["report_data"]), "{ctx}");
        assert_eq!(r.measurement.to_hex(), hexs(&e["measurement"]), "{ctx}");
        assert_eq!(r.host_data.to_hex(), hexs(&e["host_data"]), "{ctx}");
        assert_eq!(r.id_key_digest.to_hex(), hexs(&e["id_key_digest"]), "{ctx}");
        assert_eq!(
            r.author_key_digest.to_hex(),
            hexs(&e["author_key_digest"]),
            "{ctx}"
        );
        assert_eq!(hex::encode(r.report_id), hexs(&e["report_id"]), "{ctx}");
        assert_eq!(r.chip_id.to_hex(), hexs(&e["chip_id"]), "{ctx}");
        assert_eq!(
            hex::encode(r.reported_tcb.0),
            hexs(&e["reported_tcb_raw_le_hex"]),
            "{ctx}"
        );
        let [current, committed, reported, launch] = verified.tcbs();
        assert_eq!(tcb_json(current.1), e["current_tcb"], "{ctx}");
        assert_eq!(tcb_json(committed.1), e["committed_tcb"], "{ctx}");
        assert_eq!(tcb_json(reported.1), e["reported_tcb"], "{ctx}");
        assert_eq!(tcb_json(launch.1), e["launch_tcb"], "{ctx}");
        assert_eq!(
            r.current_version.to_string(),
            hexs(&e["current_fw"]),
            "{ctx}"
        );
        assert_eq!(
            r.committed_version.to_string(),
            hexs(&e["committed_fw"]),
            "{ctx}"
        );
        let mit = |m: Option<u64>| m.map(|x| format!("{x:#x}"));
        assert_eq!(
            mit(r.launch_mit_vector),
            e["launch_mit_vector"].as_str().map(String::from),
            "{ctx}"
        );
        assert_eq!(
            mit(r.current_mit_vector),
            e["current_mit_vector"].as_str().map(String::from),
            "{ctx}"
        );
        let cpuid = r.cpuid.map(|c| vec![c.family, c.model, c.stepping]);
        let want: Option<Vec<u8>> =
            serde_json::from_value(e["cpuid_fam_mod_step"].clone()).unwrap();
        assert_eq!(cpuid, want, "{ctx}");
        let ext = verified.endorsement();
        assert_eq!(ext.product_name, hexs(&e["cert_product_name"]), "{ctx}");
        assert_eq!(
            ext.struct_version,
            e["cert_struct_version"].as_u64(),
            "{ctx}"
        );
        assert_eq!(
            ext.hwid.as_ref().map(hex::encode),
            e["cert_hwid"].as_str().map(String::from),
            "{ctx}"
        );
        assert_eq!(
            ext.csp_id.clone(),
            e["cert_csp_id"].as_str().map(String::from),
            "{ctx}"
        );
        // The re-encoding is exact for every real report (reserved bytes are zero).
        assert_eq!(&r.encode()[..0x2A0], &v.report[..0x2A0], "{ctx}");
    }
}

#[test]
fn sev_crate_oracle_agrees_on_fields() {
    use sev::firmware::guest::AttestationReport;
    use sev::parser::ByteParser;
    for v in vectors() {
        let theirs =
            AttestationReport::from_bytes(&v.report).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let ours = Report::parse(&v.report).unwrap();
        assert_eq!(
            theirs.measurement.as_slice(),
            ours.measurement.as_bytes(),
            "{}",
            v.name
        );
        assert_eq!(
            theirs.report_data.as_slice(),
            ours.report_data.as_bytes(),
            "{}",
            v.name
        );
        assert_eq!(
            theirs.host_data.as_slice(),
            ours.host_data.as_bytes(),
            "{}",
            v.name
        );
        assert_eq!(
            theirs.chip_id.as_slice(),
            ours.chip_id.as_bytes(),
            "{}",
            v.name
        );
        assert_eq!(theirs.vmpl, ours.vmpl, "{}", v.name);
        assert_eq!(theirs.version, ours.version, "{}", v.name);
    }
}

#[test]
fn hex_and_binary_inputs_agree() {
    let v = vector("milan-virtee-v2");
    let text = std::fs::read(snp_dir().join("milan-virtee-v2/report.hex")).unwrap();
    let (parsed, bytes) = Report::parse_binary_or_hex(&text).unwrap();
    assert_eq!(bytes, v.report);
    let (again, _) = Report::parse_binary_or_hex(&bytes).unwrap();
    assert_eq!(parsed, again);
}

#[test]
fn every_single_bit_flip_in_the_signed_region_fails() {
    let verifier = verifier();
    // Exhaustive for one vector of each report version, sampled for the rest.
    for v in vectors() {
        let now = v.now();
        let exhaustive = matches!(
            v.name.as_str(),
            "milan-gsg-v2" | "milan-oak-v3" | "turin-oak-v5"
        );
        let step = if exhaustive { 1 } else { 37 };
        for bit in (0..0x2A0 * 8).step_by(step) {
            let mut bad = v.report.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let e = Evidence {
                report: &bad,
                ..ev(&v)
            };
            assert!(
                verifier.verify(&e, now).is_err(),
                "{}: flipping bit {bit} was accepted",
                v.name
            );
        }
    }
}

#[test]
fn signature_tampering_fails() {
    let verifier = verifier();
    let v = vector("genoa-oak-v5");
    for off in [0x2A0, 0x2C0, 0x2E7, 0x2E8, 0x300, 0x32F] {
        let mut bad = v.report.clone();
        bad[off] ^= 0x01;
        let err = verifier
            .verify(
                &Evidence {
                    report: &bad,
                    ..ev(&v)
                },
                v.now(),
            )
            .unwrap_err();
        // Low 48 bytes of R (0x2A0..0x2D0) and S (0x2E8..0x318) are the scalars; the rest must be zero.
        let in_scalar = (0x2A0..0x2D0).contains(&off) || (0x2E8..0x318).contains(&off);
        if in_scalar {
            assert!(
                matches!(err, VerifyError::ReportSignature(_)),
                "offset {off:#x}: {err}"
            );
        } else {
            assert!(
                matches!(err, VerifyError::Reserved(_)),
                "offset {off:#x}: {err}"
            );
        }
    }
}

#[test]
fn endorsement_key_of_another_vector_fails() {
    let verifier = verifier();
    let all = vectors();
    let genoa_oak = all.iter().find(|v| v.name == "genoa-oak-v5").unwrap();
    let genoa_azure = all.iter().find(|v| v.name == "genoa-azure-v3").unwrap();
    let err = verifier
        .verify(
            &Evidence {
                endorsement_key: &genoa_azure.cert,
                ..ev(genoa_oak)
            },
            genoa_oak.now(),
        )
        .unwrap_err();
    // Different chip and TCB: the VCEK binding or the signature must fail.
    assert!(
        matches!(
            err,
            VerifyError::TcbMismatch { .. }
                | VerifyError::ChipId { .. }
                | VerifyError::ReportSignature(_)
        ),
        "{err}"
    );
    let milan = all.iter().find(|v| v.name == "milan-oak-v3").unwrap();
    let err = verifier
        .verify(
            &Evidence {
                endorsement_key: &milan.cert,
                ..ev(genoa_oak)
            },
            genoa_oak.now(),
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::Product(_)), "{err}");
}

#[test]
fn wrong_products_chain_fails() {
    let verifier = verifier();
    let v = vector("milan-oak-v3");
    let genoa = chain_pem("ask_ark_genoa.pem");
    let err = verifier
        .verify(
            &Evidence {
                chain: Some(&genoa),
                ..ev(&v)
            },
            v.now(),
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::Product(_)), "{err}");
    // Genoa's ASK with Milan's ARK: the ASK's signature does not verify under the ARK.
    let milan = chain_pem("ask_ark_milan.pem");
    let mixed = vec![genoa[0].clone(), milan[1].clone()];
    let err = verifier
        .verify(
            &Evidence {
                chain: Some(&mixed),
                ..ev(&v)
            },
            v.now(),
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::Certificate(_)), "{err}");
    // The correct explicit chain works, in either order.
    let reversed = vec![milan[1].clone(), milan[0].clone()];
    verifier
        .verify(
            &Evidence {
                chain: Some(&milan),
                ..ev(&v)
            },
            v.now(),
        )
        .unwrap();
    verifier
        .verify(
            &Evidence {
                chain: Some(&reversed),
                ..ev(&v)
            },
            v.now(),
        )
        .unwrap();
    // A VCEK with the ASVK chain: the VCEK is not issued by the ASVK.
    let asvk = chain_pem("asvk_ark_milan.pem");
    assert!(
        verifier
            .verify(
                &Evidence {
                    chain: Some(&asvk),
                    ..ev(&v)
                },
                v.now()
            )
            .is_err()
    );
}

#[test]
fn validity_window_is_enforced_against_injected_time() {
    let verifier = verifier();
    let vlek = vector("milan-aws-vlek-v3");
    verifier
        .verify(&ev(&vlek), at("2025-06-01T00:00:00Z"))
        .unwrap();
    let err = verifier
        .verify(&ev(&vlek), at("2026-11-27T00:00:00Z"))
        .unwrap_err();
    match err {
        VerifyError::Validity { which, .. } => assert_eq!(which, "VLEK"),
        other => panic!("{other}"),
    }
    let err = verifier
        .verify(&ev(&vlek), at("2024-12-01T00:00:00Z"))
        .unwrap_err();
    assert!(matches!(err, VerifyError::Validity { .. }), "{err}");
}

#[test]
fn version_and_signature_algorithm_are_checked() {
    let verifier = verifier();
    let v = vector("genoa-oak-v5");
    let mut bad = v.report.clone();
    bad[0] = 1;
    let err = verifier
        .verify(
            &Evidence {
                report: &bad,
                ..ev(&v)
            },
            v.now(),
        )
        .unwrap_err();
    assert_eq!(err, VerifyError::Report(ReportError::UnsupportedVersion(1)));
    let mut bad = v.report.clone();
    bad[0x34] = 0;
    let err = verifier
        .verify(
            &Evidence {
                report: &bad,
                ..ev(&v)
            },
            v.now(),
        )
        .unwrap_err();
    assert_eq!(err, VerifyError::SignatureAlgorithm(0));
}

#[test]
fn vlek_signed_report_needs_a_vlek() {
    let verifier = verifier();
    let vlek = vector("milan-aws-vlek-v3");
    let vcek = vector("milan-oak-v3");
    let now = at("2025-06-01T00:00:00Z");
    let err = verifier
        .verify(
            &Evidence {
                endorsement_key: &vcek.cert,
                ..ev(&vlek)
            },
            now,
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::SignerMismatch { .. }), "{err}");
}

#[test]
fn minimum_tcb_names_the_component_and_tcb() {
    let verifier = verifier();
    let v = vector("milan-virtee-v2");
    let verified = verifier.verify(&ev(&v), v.now()).unwrap();
    let policy = SnpPolicy {
        minimum_tcb: Some(SnpMinimumTcb {
            bootloader: 3,
            tee: 0,
            snp: 22,
            microcode: 115,
            fmc: None,
        }),
        ..Default::default()
    };
    let errs = validate(&verified, &policy).unwrap_err();
    let lines: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
    assert_eq!(errs.0.len(), 4, "{lines:?}");
    assert!(
        lines.contains(
            &"MinimumTCB.SNPVersion: reported TCB has 8, manifest needs >= 22".to_string()
        ),
        "{lines:?}"
    );
    for e in &errs.0 {
        assert!(matches!(
            e,
            ValidationError::Tcb {
                component: "SNPVersion",
                actual: 8,
                minimum: 22,
                ..
            }
        ));
    }
    // Exactly at the minimum passes.
    let ok = SnpPolicy {
        minimum_tcb: Some(SnpMinimumTcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        }),
        ..Default::default()
    };
    validate(&verified, &ok).unwrap();
}

#[test]
fn reported_tcb_and_current_tcb_are_checked_separately() {
    // milan-trustee-v2-idblock: REPORTED ucode 115, CURRENT ucode 206.
    let verifier = verifier();
    let v = vector("milan-trustee-v2-idblock");
    let verified = verifier.verify(&ev(&v), v.now()).unwrap();
    let policy = SnpPolicy {
        minimum_tcb: Some(SnpMinimumTcb {
            bootloader: 0,
            tee: 0,
            snp: 0,
            microcode: 200,
            fmc: None,
        }),
        ..Default::default()
    };
    let errs = validate(&verified, &policy).unwrap_err();
    let tcbs: Vec<&str> = errs
        .0
        .iter()
        .map(|e| match e {
            ValidationError::Tcb { tcb, .. } => *tcb,
            _ => "other",
        })
        .collect();
    assert!(
        tcbs.contains(&"reported") && !tcbs.contains(&"current"),
        "{tcbs:?}"
    );
}

#[test]
fn turin_fmc_is_required_in_reference_values() {
    let verifier = verifier();
    let v = vector("turin-oak-v5");
    let verified = verifier.verify(&ev(&v), v.now()).unwrap();
    assert_eq!(verified.layout(), TcbLayout::Turin);
    let no_fmc = SnpPolicy {
        minimum_tcb: Some(SnpMinimumTcb {
            bootloader: 1,
            tee: 0,
            snp: 2,
            microcode: 71,
            fmc: None,
        }),
        ..Default::default()
    };
    let errs = validate(&verified, &no_fmc).unwrap_err();
    assert!(matches!(errs.0[0], ValidationError::FmcSpec(_)));
    let with_fmc = SnpPolicy {
        minimum_tcb: Some(SnpMinimumTcb {
            bootloader: 1,
            tee: 0,
            snp: 2,
            microcode: 71,
            fmc: Some(0),
        }),
        ..Default::default()
    };
    validate(&verified, &with_fmc).unwrap();
    let too_high = SnpPolicy {
        minimum_tcb: Some(SnpMinimumTcb {
            bootloader: 1,
            tee: 0,
            snp: 2,
            microcode: 71,
            fmc: Some(1),
        }),
        ..Default::default()
    };
    let errs = validate(&verified, &too_high).unwrap_err();
    assert_eq!(errs.0.len(), 4);
    assert!(
        errs.to_string()
            .contains("MinimumTCB.FMCVersion: current TCB has 0, manifest needs >= 1")
    );
}

#[test]
fn debug_policy_is_refused_unless_allowed() {
    let verifier = verifier();
    let v = vector("milan-gsg-v2");
    let verified = verifier.verify(&ev(&v), v.now()).unwrap();
    let errs = validate(&verified, &SnpPolicy::default()).unwrap_err();
    assert!(
        matches!(
            errs.0.as_slice(),
            [ValidationError::Debug { policy: 0xb0000 }]
        ),
        "{errs}"
    );
    validate(
        &verified,
        &SnpPolicy {
            allow_debug: true,
            ..Default::default()
        },
    )
    .unwrap();
    // A non-debug vector passes the default policy.
    let ok = vector("milan-virtee-v2");
    validate(
        &verifier.verify(&ev(&ok), ok.now()).unwrap(),
        &SnpPolicy::default(),
    )
    .unwrap();
}

#[test]
fn vmpl_measurement_data_chip_and_id_key_checks() {
    let verifier = verifier();
    let vlek = vector("milan-aws-vlek-v3");
    let verified = verifier
        .verify(&ev(&vlek), at("2025-06-01T00:00:00Z"))
        .unwrap();
    let errs = validate(
        &verified,
        &SnpPolicy {
            vmpl: Some(0),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        errs.to_string(),
        "VMPL: report was requested at VMPL 1, reference values require 0"
    );
    validate(
        &verified,
        &SnpPolicy {
            vmpl: Some(1),
            ..Default::default()
        },
    )
    .unwrap();

    let v = vector("milan-trustee-v2-idblock");
    let verified = verifier.verify(&ev(&v), v.now()).unwrap();
    let r = verified.report().clone();
    let good = SnpPolicy {
        measurements: Some(vec![[0u8; 48].into(), r.measurement]),
        host_data: Some(r.host_data),
        report_data: Some(r.report_data),
        allowed_chip_ids: vec![r.chip_id],
        allowed_id_key_digests: vec![r.id_key_digest],
        minimum_abi: Some((0, 31)),
        product: Some(SnpProduct::Milan),
        ..Default::default()
    };
    validate(&verified, &good).unwrap();
    let mut m = r.measurement;
    m.0[0] ^= 1;
    let mut h = r.host_data;
    h.0[31] ^= 1;
    let mut d = r.report_data;
    d.0[63] ^= 1;
    let mut c = r.chip_id;
    c.0[0] ^= 1;
    let mut k = r.id_key_digest;
    k.0[0] ^= 1;
    let bad = SnpPolicy {
        measurements: Some(vec![m]),
        host_data: Some(h),
        report_data: Some(d),
        allowed_chip_ids: vec![c],
        allowed_id_key_digests: vec![k],
        minimum_abi: Some((0, 32)),
        product: Some(SnpProduct::Genoa),
        ..Default::default()
    };
    let errs = validate(&verified, &bad).unwrap_err();
    assert_eq!(errs.0.len(), 7, "{errs}");
    let text = errs.to_string();
    for needle in [
        "TrustedMeasurement",
        "HOST_DATA",
        "REPORT_DATA",
        "AllowedChipIDs",
        "AllowedIDKeyDigests",
        "MinimumABI",
        "ProductName",
    ] {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
}

#[test]
fn manifest_reference_values_require_an_amd_root() {
    let verifier = verifier();
    let v = vector("genoa-oak-v5");
    let verified = verifier.verify(&ev(&v), v.now()).unwrap();
    let r = verified.report();
    let rv: nunki_manifest::SnpReferenceValues = serde_json::from_value(serde_json::json!({
        "ProductName": "Genoa",
        "TrustedMeasurement": r.measurement.to_hex(),
        "MinimumTCB": { "BootloaderVersion": 10, "TEEVersion": 0, "SNPVersion": 25, "MicrocodeVersion": 84 }
    }))
    .unwrap();
    validate(&verified, &SnpPolicy::from_reference_values(&rv)).unwrap();
    let sim = nunki_manifest::SimulatedReferenceValues {
        root_fingerprint: verified.root_fingerprint(),
        product: rv.product,
        trusted_measurement: rv.trusted_measurement,
        minimum_tcb: rv.minimum_tcb,
        guest_policy: rv.guest_policy,
        allowed_chip_ids: vec![],
        allowed_id_key_digests: vec![],
        vmpl: 0,
    };
    // A simulated entry never accepts a real report, even with the AMD fingerprint pinned.
    let errs = validate(&verified, &SnpPolicy::from_simulated(&sim)).unwrap_err();
    assert!(
        matches!(errs.0.as_slice(), [ValidationError::Root { .. }]),
        "{errs}"
    );
}

#[test]
fn crls_are_checked_when_supplied() {
    let verifier = verifier();
    let milan_crl = std::fs::read(snp_dir().join("amd/crl_milan_2022-05-09.der")).unwrap();
    let genoa_crl = std::fs::read(snp_dir().join("amd/crl_genoa_2022-10-31.der")).unwrap();
    let v = vector("milan-gsg-v2");
    let inside = at("2023-01-15T00:00:00Z");
    let ok = verifier
        .verify(
            &Evidence {
                crl: Some(&milan_crl),
                ..ev(&v)
            },
            inside,
        )
        .unwrap();
    assert!(ok.crl_checked());
    // Stale CRL (after nextUpdate) fails closed.
    let err = verifier
        .verify(
            &Evidence {
                crl: Some(&milan_crl),
                ..ev(&v)
            },
            v.now() + std::time::Duration::from_secs(400 * 86400),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Crl(nunki_attestation::snp::crl::CrlError::Stale { .. })
        ),
        "{err}"
    );
    // Another product's CRL is not issued by this ARK.
    let err = verifier
        .verify(
            &Evidence {
                crl: Some(&genoa_crl),
                ..ev(&v)
            },
            inside,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Crl(nunki_attestation::snp::crl::CrlError::Issuer { .. })
        ),
        "{err}"
    );
    // A tampered CRL fails its signature.
    let mut bad = milan_crl.clone();
    let n = bad.len();
    bad[n - 10] ^= 1;
    let err = verifier
        .verify(
            &Evidence {
                crl: Some(&bad),
                ..ev(&v)
            },
            inside,
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::Crl(_)), "{err}");
    // Garbage is a parse error, not a panic.
    let err = verifier
        .verify(
            &Evidence {
                crl: Some(b"not a crl"),
                ..ev(&v)
            },
            inside,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Crl(nunki_attestation::snp::crl::CrlError::Parse(_))
        ),
        "{err}"
    );
}

#[test]
fn genoa_crl_lists_the_old_ask_but_not_the_current_one() {
    let ark = nunki_attestation::snp::certs::CertInfo::from_der(
        "ARK",
        &chain_pem("ask_ark_genoa.pem")[1],
    )
    .unwrap();
    let der = std::fs::read(snp_dir().join("amd/crl_genoa_2022-10-31.der")).unwrap();
    let crl = nunki_attestation::snp::crl::VerifiedCrl::verify(&der, &ark).unwrap();
    assert!(crl.is_revoked("20001"));
    assert!(!crl.is_revoked("20002"));
}

#[test]
fn turin_vcek_alone_verifies_to_the_turin_root() {
    let verifier = verifier();
    let cert =
        load_cert(&std::fs::read(snp_dir().join("turin-virtee-vcek-only/vcek.der")).unwrap());
    let (product, signer, root, ext) = verifier
        .verify_endorsement_key(&cert, None, at("2026-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(
        (product, signer, root),
        (SnpProduct::Turin, SignerKind::Vcek, RootKind::Amd)
    );
    assert_eq!(
        ext.hwid.map(hex::encode).as_deref(),
        Some("1e550a8ee5cf9f4d")
    );
    assert_eq!((ext.fmc_spl, ext.bl_spl, ext.ucode_spl), (Some(0), 0, 9));
    let genoa = chain_pem("ask_ark_genoa.pem");
    assert!(
        verifier
            .verify_endorsement_key(&cert, Some(&genoa), at("2026-01-01T00:00:00Z"))
            .is_err()
    );
}

#[test]
fn untrusted_store_rejects_amd() {
    let v = vector("genoa-oak-v5");
    let verifier = SnpVerifier::new(TrustStore::none());
    assert!(matches!(
        verifier.verify(&ev(&v), v.now()).unwrap_err(),
        VerifyError::Chain(_)
    ));
    let chain = chain_pem("ask_ark_genoa.pem");
    let err = verifier
        .verify(
            &Evidence {
                chain: Some(&chain),
                ..ev(&v)
            },
            v.now(),
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn cached_verification_still_checks_time_and_report() {
    let verifier = verifier();
    let v = vector("genoa-oak-v5");
    for _ in 0..3 {
        verifier.verify(&ev(&v), v.now()).unwrap();
    }
    let err = verifier
        .verify(&ev(&v), at("2040-01-01T00:00:00Z"))
        .unwrap_err();
    assert!(matches!(err, VerifyError::Validity { .. }));
    let mut bad = v.report.clone();
    bad[0x90] ^= 0x80;
    assert!(
        verifier
            .verify(
                &Evidence {
                    report: &bad,
                    ..ev(&v)
                },
                v.now()
            )
            .is_err()
    );
}

#[test]
fn must_be_zero_fields_are_enforced_before_the_signature() {
    let verifier = verifier();
    let v = vector("genoa-oak-v5");
    let cases: [(usize, u8, &str); 5] = [
        (0x48, 0x02, "MASK_CHIP_KEY"),
        (0x49, 0x01, "reserved bits 5..31"),
        (0x0A, 0x02, "bit 17"),
        (0x0B, 0x04, "bits 26..63"),
        (0x4C, 0x01, "reserved bytes 0x04c..0x050"),
    ];
    for (off, mask, needle) in cases {
        let mut bad = v.report.clone();
        bad[off] ^= mask;
        let err = verifier
            .verify(
                &Evidence {
                    report: &bad,
                    ..ev(&v)
                },
                v.now(),
            )
            .unwrap_err();
        assert!(matches!(err, VerifyError::Reserved(_)), "{off:#x}: {err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let mut bad = v.report.clone();
    bad[0x300] = 0x01; // top bytes of R (beyond 48) must be zero
    bad[0x2A0 + 60] = 0x01;
    let err = verifier
        .verify(
            &Evidence {
                report: &bad,
                ..ev(&v)
            },
            v.now(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("P-384 scalar"), "{err}");
}

#[test]
fn v2_report_with_a_turin_vcek_is_refused() {
    let verifier = verifier();
    let v2 = vector("milan-gsg-v2");
    let turin = vector("turin-oak-v5");
    let err = verifier
        .verify(
            &Evidence {
                endorsement_key: &turin.cert,
                ..ev(&v2)
            },
            turin.now(),
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::Product(_)), "{err}");
}
