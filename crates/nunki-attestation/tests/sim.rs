//! The simulated SNP platform: its reports take the real verification path, and its root is
//! trusted only when pinned.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use nunki_attestation::sim::{SimPlatform, SimReportRequest};
use nunki_attestation::snp::crl::CrlError;
use nunki_attestation::snp::report::Report;
use nunki_attestation::snp::tcb::TcbVersion;
use nunki_attestation::snp::validate::{SnpPolicy, ValidationError, validate};
use nunki_attestation::snp::verify::{Evidence, RootKind, SnpVerifier, TrustStore, VerifyError};
use nunki_manifest::{ChipId, HostData, ReportData, SnpProduct};

fn genoa() -> &'static SimPlatform {
    static P: OnceLock<SimPlatform> = OnceLock::new();
    P.get_or_init(|| SimPlatform::generate(SnpProduct::Genoa, SystemTime::now()).unwrap())
}

fn other_genoa() -> &'static SimPlatform {
    static P: OnceLock<SimPlatform> = OnceLock::new();
    P.get_or_init(|| SimPlatform::generate(SnpProduct::Genoa, SystemTime::now()).unwrap())
}

fn now() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

fn request(version: u32) -> SimReportRequest {
    SimReportRequest {
        version,
        report_data: ReportData([0x5a; 64]),
        host_data: HostData([0xa5; 32]),
        ..Default::default()
    }
}

fn pinned(p: &SimPlatform) -> SnpVerifier {
    SnpVerifier::new(TrustStore::amd().with_simulated_root(p.root_fingerprint()))
}

#[test]
fn simulated_reports_verify_with_the_pinned_root_only() {
    let p = genoa();
    for version in [3, 5] {
        let e = p.issue(&request(version)).unwrap();
        let ev = Evidence {
            report: &e.report,
            endorsement_key: &e.vcek,
            chain: Some(&e.chain),
            crl: None,
        };
        let verified = pinned(p).verify(&ev, now()).unwrap();
        assert_eq!(verified.root(), RootKind::Simulated);
        assert_eq!(verified.root_fingerprint(), p.root_fingerprint());
        assert_eq!(verified.report().version, version);
        assert_eq!(verified.report().host_data, HostData([0xa5; 32]));
        validate(
            &verified,
            &SnpPolicy::from_simulated(&p.reference_values())
                .expecting(Some(HostData([0xa5; 32])), Some(ReportData([0x5a; 64]))),
        )
        .unwrap();

        // Not pinned: rejected, with a hint.
        let err = SnpVerifier::new(TrustStore::amd())
            .verify(&ev, now())
            .unwrap_err();
        match &err {
            VerifyError::UntrustedRoot {
                fingerprint, hint, ..
            } => {
                assert_eq!(*fingerprint, p.root_fingerprint());
                assert!(hint.contains("nunki sim show"), "{hint}");
            }
            other => panic!("{other}"),
        }
        // Another simulated root pinned: rejected.
        let err = pinned(other_genoa()).verify(&ev, now()).unwrap_err();
        assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
        // Without a chain the built-in AMD ASK is used, which did not sign the simulated VCEK.
        let err = pinned(p)
            .verify(&Evidence { chain: None, ..ev }, now())
            .unwrap_err();
        assert!(matches!(err, VerifyError::Certificate(_)), "{err}");
    }
}

#[test]
fn simulated_report_is_byte_exact_and_tamper_evident() {
    let p = genoa();
    let e = p.issue(&request(5)).unwrap();
    let parsed = Report::parse(&e.report).unwrap();
    assert_eq!(parsed.encode().to_vec(), e.report);
    let verifier = pinned(p);
    for bit in (0..0x2A0 * 8).step_by(13) {
        let mut bad = e.report.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let ev = Evidence {
            report: &bad,
            endorsement_key: &e.vcek,
            chain: Some(&e.chain),
            crl: None,
        };
        assert!(verifier.verify(&ev, now()).is_err(), "bit {bit}");
    }
}

#[test]
fn a_mix_of_another_platforms_vcek_or_chain_fails() {
    let (a, b) = (genoa(), other_genoa());
    let ea = a.issue(&request(3)).unwrap();
    let eb = b.issue(&request(3)).unwrap();
    let both = SnpVerifier::new(
        TrustStore::none()
            .with_simulated_root(a.root_fingerprint())
            .with_simulated_root(b.root_fingerprint()),
    );
    // A's report with B's VCEK and chain: B's VCEK has B's chip ID and key.
    let ev = Evidence {
        report: &ea.report,
        endorsement_key: &eb.vcek,
        chain: Some(&eb.chain),
        crl: None,
    };
    assert!(both.verify(&ev, now()).is_err());
    // A's VCEK with B's chain: A's VCEK was not issued by B's ASK.
    let ev = Evidence {
        report: &ea.report,
        endorsement_key: &ea.vcek,
        chain: Some(&eb.chain),
        crl: None,
    };
    assert!(matches!(
        both.verify(&ev, now()).unwrap_err(),
        VerifyError::Certificate(_)
    ));
}

#[test]
fn simulated_crl_revokes_ask_and_vcek() {
    let p = genoa();
    let e = p.issue(&request(3)).unwrap();
    let verifier = pinned(p);
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let t1 = SystemTime::now() + Duration::from_secs(30 * 86400);
    let ev = |crl: &'static [u8]| Evidence {
        report: &e.report,
        endorsement_key: &e.vcek,
        chain: Some(&e.chain),
        crl: Some(crl),
    };
    let leak = |v: Vec<u8>| -> &'static [u8] { Box::leak(v.into_boxed_slice()) };

    let empty = leak(p.issue_crl(&[], t0, Some(t1)).unwrap());
    assert!(verifier.verify(&ev(empty), now()).unwrap().crl_checked());

    let ask_serial = nunki_attestation::snp::certs::CertInfo::from_der("ASK", p.ask_der())
        .unwrap()
        .serial;
    let revoke_ask = leak(
        p.issue_crl(&[vec![0x7f], ask_serial], t0, Some(t1))
            .unwrap(),
    );
    match verifier.verify(&ev(revoke_ask), now()).unwrap_err() {
        VerifyError::Revoked { which, serial } => {
            assert_eq!((which.as_str(), serial.as_str()), ("ASK", "10001"))
        }
        other => panic!("{other}"),
    }
    let revoke_vcek = leak(p.issue_crl(&[vec![0]], t0, Some(t1)).unwrap());
    match verifier.verify(&ev(revoke_vcek), now()).unwrap_err() {
        VerifyError::Revoked { which, .. } => assert_eq!(which, "VCEK"),
        other => panic!("{other}"),
    }
    // A CRL from another simulated ARK is not accepted for this chain.
    let foreign = leak(other_genoa().issue_crl(&[], t0, Some(t1)).unwrap());
    let err = verifier.verify(&ev(foreign), now()).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Crl(CrlError::Issuer { .. } | CrlError::Signature(_))
        ),
        "{err}"
    );
    // No nextUpdate: its freshness cannot be judged.
    let forever = leak(p.issue_crl(&[], t0, None).unwrap());
    assert!(matches!(
        verifier.verify(&ev(forever), now()).unwrap_err(),
        VerifyError::Crl(CrlError::NoNextUpdate)
    ));
    // Not yet valid.
    let future = leak(
        p.issue_crl(&[], t1, Some(t1 + Duration::from_secs(86400)))
            .unwrap(),
    );
    assert!(matches!(
        verifier.verify(&ev(future), now()).unwrap_err(),
        VerifyError::Crl(CrlError::NotYetValid { .. })
    ));
}

#[test]
fn simulated_tcb_below_minimum_names_component() {
    let p = genoa();
    let low = TcbVersion {
        fmc: None,
        bootloader: 10,
        tee: 0,
        snp: 8,
        microcode: 84,
    };
    let e = p
        .issue(&SimReportRequest {
            tcb: Some(low),
            ..request(3)
        })
        .unwrap();
    let ev = Evidence {
        report: &e.report,
        endorsement_key: &e.vcek,
        chain: Some(&e.chain),
        crl: None,
    };
    let verified = pinned(p).verify(&ev, now()).unwrap();
    let errs = validate(&verified, &SnpPolicy::from_simulated(&p.reference_values())).unwrap_err();
    assert_eq!(errs.0.len(), 4);
    assert!(
        errs.to_string()
            .contains("MinimumTCB.SNPVersion: reported TCB has 8, manifest needs >= 23"),
        "{errs}"
    );
    // A VCEK from a different TCB does not match the report.
    let other = p.issue(&request(3)).unwrap();
    let ev = Evidence {
        report: &e.report,
        endorsement_key: &other.vcek,
        chain: Some(&e.chain),
        crl: None,
    };
    assert!(matches!(
        pinned(p).verify(&ev, now()).unwrap_err(),
        VerifyError::TcbMismatch { ext: "snpSPL", .. }
    ));
}

#[test]
fn simulated_debug_and_measurement_checks() {
    let p = genoa();
    let e = p
        .issue(&SimReportRequest {
            policy: 0xb0000,
            measurement: Some([7u8; 48].into()),
            ..request(3)
        })
        .unwrap();
    let ev = Evidence {
        report: &e.report,
        endorsement_key: &e.vcek,
        chain: Some(&e.chain),
        crl: None,
    };
    let verified = pinned(p).verify(&ev, now()).unwrap();
    let errs = validate(&verified, &SnpPolicy::from_simulated(&p.reference_values())).unwrap_err();
    assert!(
        errs.0
            .iter()
            .any(|e| matches!(e, ValidationError::Debug { .. }))
    );
    assert!(
        errs.0
            .iter()
            .any(|e| matches!(e, ValidationError::Measurement { .. }))
    );
}

#[test]
fn turin_and_milan_layouts_round_trip() {
    for product in [SnpProduct::Turin, SnpProduct::Milan] {
        let p = SimPlatform::generate(product, SystemTime::now()).unwrap();
        let e = p.issue(&request(5)).unwrap();
        let ev = Evidence {
            report: &e.report,
            endorsement_key: &e.vcek,
            chain: Some(&e.chain),
            crl: None,
        };
        let verified = pinned(&p).verify(&ev, now()).unwrap();
        assert_eq!(verified.product(), product);
        validate(&verified, &SnpPolicy::from_simulated(&p.reference_values())).unwrap();
        let ext = verified.endorsement();
        assert_eq!(
            ext.hwid.as_ref().map(Vec::len),
            Some(if product == SnpProduct::Turin { 8 } else { 64 })
        );
    }
}

#[test]
fn persisted_platform_reloads_with_the_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let sim_dir = dir.path().join("nested").join("sim");
    let a = SimPlatform::open_or_create(&sim_dir).unwrap();
    let b = SimPlatform::open_or_create(&sim_dir).unwrap();
    assert_eq!(a.root_fingerprint(), b.root_fingerprint());
    assert_eq!(a.config(), b.config());
    let e = b.issue(&request(3)).unwrap();
    let ev = Evidence {
        report: &e.report,
        endorsement_key: &e.vcek,
        chain: Some(&e.chain),
        crl: None,
    };
    pinned(&a).verify(&ev, now()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sim_dir.join("ark.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "private keys must not be group/world readable"
        );
    }
    // A key file that does not match its certificate is refused, naming the file.
    std::fs::remove_file(sim_dir.join("ask.der")).unwrap();
    std::fs::write(sim_dir.join("ask.der"), a.ark_der()).unwrap();
    let err = SimPlatform::open_or_create(&sim_dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not match") || err.contains("ask"), "{err}");
}

#[test]
fn unsupported_requests_are_errors() {
    let p = genoa();
    assert!(p.issue(&request(2)).is_err());
    assert!(p.issue(&request(4)).is_err());
}

#[test]
fn masked_chip_id_skips_the_hwid_comparison_only_when_all_zero() {
    let p = genoa();
    let zero = p
        .issue(&SimReportRequest {
            chip_id: Some(ChipId([0; 64])),
            ..request(3)
        })
        .unwrap();
    let ev = Evidence {
        report: &zero.report,
        endorsement_key: &zero.vcek,
        chain: Some(&zero.chain),
        crl: None,
    };
    pinned(p).verify(&ev, now()).unwrap();
    let mut other = p.config().chip_id;
    other.0[5] ^= 1;
    let wrong = p
        .issue(&SimReportRequest {
            chip_id: Some(other),
            ..request(3)
        })
        .unwrap();
    let ev = Evidence {
        report: &wrong.report,
        endorsement_key: &wrong.vcek,
        chain: Some(&wrong.chain),
        crl: None,
    };
    assert!(matches!(
        pinned(p).verify(&ev, now()).unwrap_err(),
        VerifyError::ChipId { .. }
    ));
}
