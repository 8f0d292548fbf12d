//! Tampering: one-bit changes in the signed body, QE report or collateral fail; a PCK chain to
//! another root (generated here) fails; MRTD/RTMR/MRCONFIGID mismatches fail naming the field.
//! A test PKI that re-signs real collateral also shows quote 6's OutOfDate appraisal, which the
//! shared data cannot (no PCK CRL of it is valid in that quote's window).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod tdx_common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use nunki_attestation::tdx::collateral::CollateralParts;
use nunki_attestation::tdx::validate::validate;
use nunki_attestation::tdx::{
    DcapStep, TdQuote, TdxCollateral, TdxPolicy, TdxRootKind, TdxValidationError, TdxVerifier,
    TdxVerifyError, VerifiedQuote,
};
use nunki_manifest::{HostData, TdxReferenceValues, TdxTcbStatus};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DnType,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData,
    RevokedCertParams, SerialNumber, SignatureAlgorithm,
};
use tdx_common::{Pairing, pairing};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

const SGX_EXTENSION: &[u64] = &[1, 2, 840, 113_741, 1, 13, 1];

fn intel(p: &Pairing) -> Result<VerifiedQuote, TdxVerifyError> {
    TdxVerifier::intel().verify(&p.raw, &p.collateral, p.now)
}

fn step(r: Result<VerifiedQuote, TdxVerifyError>) -> DcapStep {
    match r {
        Ok(_) => panic!("verification passed"),
        Err(e) => e.step().unwrap_or_else(|| panic!("not a dcap step: {e}")),
    }
}

// --- one-bit changes ---------------------------------------------------------------------

/// Offsets into the v4 quote `dcap-qvl/tdx_quote`.
struct Layout {
    signed_len: usize,
}

impl Layout {
    fn of(raw: &[u8]) -> Self {
        Layout {
            signed_len: TdQuote::parse(raw).unwrap().signed_len,
        }
    }
    fn quote_sig(&self) -> usize {
        self.signed_len + 4
    }
    fn attestation_key(&self) -> usize {
        self.signed_len + 4 + 64
    }
    fn qe_report(&self) -> usize {
        self.signed_len + 4 + 128 + 6
    }
    fn qe_report_sig(&self) -> usize {
        self.qe_report() + 384
    }
}

#[test]
fn one_bit_changes_in_the_quote_fail() {
    let base = pairing("dcap-qvl/tdx_quote");
    intel(&base).unwrap();
    let l = Layout::of(&base.raw);
    let cases = [
        ("header user data", 28, DcapStep::QuoteSignature),
        (
            "MRTD in the signed body",
            48 + 136 + 5,
            DcapStep::QuoteSignature,
        ),
        (
            "RTMR1 in the signed body",
            48 + 376 + 48 + 1,
            DcapStep::QuoteSignature,
        ),
        (
            "MRCONFIGID in the signed body",
            48 + 184 + 47,
            DcapStep::QuoteSignature,
        ),
        (
            "quote signature",
            l.quote_sig() + 10,
            DcapStep::QuoteSignature,
        ),
        (
            "attestation key",
            l.attestation_key() + 3,
            DcapStep::QeReportData,
        ),
        (
            "QE report MRENCLAVE",
            l.qe_report() + 64,
            DcapStep::QeReportSignature,
        ),
        (
            "QE report REPORTDATA",
            l.qe_report() + 320,
            DcapStep::QeReportSignature,
        ),
        (
            "QE report signature",
            l.qe_report_sig() + 40,
            DcapStep::QeReportSignature,
        ),
    ];
    for (what, offset, want) in cases {
        for bit in [0u8, 7] {
            let mut raw = base.raw.clone();
            raw[offset] ^= 1 << bit;
            // A fresh verifier each time: no cached verdict can help.
            let r = TdxVerifier::intel().verify(&raw, &base.collateral, base.now);
            assert_eq!(step(r), want, "{what}, bit {bit}");
        }
    }
}

fn flip_text(s: &str, from: &str, to: &str) -> String {
    assert_eq!(from.len(), to.len());
    let diff: u32 = from
        .bytes()
        .zip(to.bytes())
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(diff, 1, "{from} -> {to} must be a one-bit change");
    assert!(s.contains(from), "{from}");
    s.replacen(from, to, 1)
}

#[test]
fn one_bit_changes_in_the_collateral_fail() {
    let base = pairing("dcap-qvl/tdx_quote");
    let parts = base.collateral.clone().into_parts();
    let mut cases: Vec<(&str, CollateralParts, &[DcapStep])> = Vec::new();
    let mut p = parts.clone();
    p.tcb_info = flip_text(
        &p.tcb_info,
        "\"tcbEvaluationDataNumber\":17",
        "\"tcbEvaluationDataNumber\":16",
    );
    cases.push(("TCB Info JSON", p, &[DcapStep::TcbInfoSignature]));
    let mut p = parts.clone();
    p.tcb_info_signature[5] ^= 0x10;
    cases.push(("TCB Info signature", p, &[DcapStep::TcbInfoSignature]));
    let mut p = parts.clone();
    p.qe_identity = flip_text(&p.qe_identity, "\"isvprodid\":2", "\"isvprodid\":3");
    cases.push(("QE Identity JSON", p, &[DcapStep::QeIdentitySignature]));
    let mut p = parts.clone();
    p.qe_identity_signature[60] ^= 1;
    cases.push(("QE Identity signature", p, &[DcapStep::QeIdentitySignature]));
    let mut p = parts.clone();
    let n = p.pck_crl.len();
    p.pck_crl[n - 5] ^= 1;
    cases.push((
        "PCK CRL signature",
        p,
        &[DcapStep::Crl, DcapStep::CertificateChain],
    ));
    let mut p = parts.clone();
    let n = p.root_ca_crl.len();
    p.root_ca_crl[n - 5] ^= 1;
    cases.push((
        "root CA CRL signature",
        p,
        &[DcapStep::Crl, DcapStep::CertificateChain],
    ));
    for (what, parts, allowed) in cases {
        let c = TdxCollateral::new(parts);
        let r = TdxVerifier::intel().verify(&base.raw, &c, base.now);
        let s = step(r);
        assert!(allowed.contains(&s), "{what}: {s:?}");
    }
}

// --- a test PKI ------------------------------------------------------------------------

/// An existing P-256 public key (the PCK's), to issue a certificate for it.
struct P256Point(Vec<u8>);

impl PublicKeyData for P256Point {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

struct TestPki {
    root_key: KeyPair,
    root_params: CertificateParams,
    root_der: Vec<u8>,
    ca_key: KeyPair,
    ca_params: CertificateParams,
    ca_der: Vec<u8>,
    signer: EcdsaKeyPair,
    signer_der: Vec<u8>,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "Nunki test PKI");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = time::macros::datetime!(2020-01-01 0:00 UTC);
    p.not_after = time::macros::datetime!(2040-01-01 0:00 UTC);
    p
}

fn pem(der: &[u8]) -> String {
    nunki_attestation::snp::certs::to_pem(der)
}

fn test_pki() -> TestPki {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let root_params = ca_params("Nunki Test SGX Root CA");
    let root_der = root_params.self_signed(&root_key).unwrap().der().to_vec();
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let ca_params = ca_params("Nunki Test SGX PCK Platform CA");
    let root_issuer = Issuer::from_params(&root_params, &root_key);
    let ca_der = ca_params
        .signed_by(&ca_key, &root_issuer)
        .unwrap()
        .der()
        .to_vec();
    let signer_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut sp = CertificateParams::default();
    sp.distinguished_name
        .push(DnType::CommonName, "Nunki Test SGX TCB Signing");
    sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    sp.not_before = time::macros::datetime!(2020-01-01 0:00 UTC);
    sp.not_after = time::macros::datetime!(2040-01-01 0:00 UTC);
    let signer_der = sp
        .signed_by(&signer_key, &root_issuer)
        .unwrap()
        .der()
        .to_vec();
    let signer = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &signer_key.serialize_der(),
    )
    .unwrap();
    TestPki {
        root_key,
        root_params,
        root_der,
        ca_key,
        ca_params,
        ca_der,
        signer,
        signer_der,
    }
}

impl TestPki {
    /// The PCK leaf re-issued by the test PCK CA: same public key and SGX extension.
    fn reissue_pck(&self, original_leaf: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (_, c) = x509_parser::certificate::X509Certificate::from_der(original_leaf).unwrap();
        let sgx = c
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.2.840.113741.1.13.1")
            .unwrap()
            .value
            .to_vec();
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::CommonName, "Intel SGX PCK Certificate");
        p.not_before = time::macros::datetime!(2020-01-01 0:00 UTC);
        p.not_after = time::macros::datetime!(2040-01-01 0:00 UTC);
        let serial = vec![0x42, 0x17, 0x01];
        p.serial_number = Some(SerialNumber::from(serial.clone()));
        p.custom_extensions = vec![CustomExtension::from_oid_content(SGX_EXTENSION, sgx)];
        let spki = P256Point(c.public_key().subject_public_key.data.to_vec());
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        (p.signed_by(&spki, &issuer).unwrap().der().to_vec(), serial)
    }

    fn crl(&self, root: bool, revoked: Option<Vec<u8>>, now: OffsetDateTime) -> Vec<u8> {
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::days(1),
            next_update: now + time::Duration::days(30),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .into_iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: now - time::Duration::days(2),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = if root {
            params.signed_by(&Issuer::from_params(&self.root_params, &self.root_key))
        } else {
            params.signed_by(&Issuer::from_params(&self.ca_params, &self.ca_key))
        };
        crl.unwrap().der().to_vec()
    }

    fn sign(&self, text: &str) -> Vec<u8> {
        self.signer
            .sign(&SystemRandom::new(), text.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    /// The pairing moved under this PKI: quote with the re-issued PCK chain, collateral
    /// (the same TCB Info and QE Identity text) re-signed, fresh CRLs.
    fn reroot(&self, p: &Pairing, revoke_pck: bool) -> Pairing {
        let q = TdQuote::parse(&p.raw).unwrap();
        let (leaf, serial) = self.reissue_pck(q.pck_leaf().unwrap());
        let chain = format!("{}{}{}", pem(&leaf), pem(&self.ca_der), pem(&self.root_der));
        let raw = tdx_common::replace_pck_chain(&p.raw, &chain);
        let now = OffsetDateTime::from(p.now);
        let old = p.collateral.clone().into_parts();
        let signer_chain = format!("{}{}", pem(&self.signer_der), pem(&self.root_der));
        let collateral = TdxCollateral::new(CollateralParts {
            pck_crl_issuer_chain: format!("{}{}", pem(&self.ca_der), pem(&self.root_der)),
            root_ca_crl: self.crl(true, None, now),
            pck_crl: self.crl(false, revoke_pck.then_some(serial), now),
            tcb_info_issuer_chain: signer_chain.clone(),
            tcb_info_signature: self.sign(&old.tcb_info),
            tcb_info: old.tcb_info,
            qe_identity_issuer_chain: signer_chain,
            qe_identity_signature: self.sign(&old.qe_identity),
            qe_identity: old.qe_identity,
        });
        Pairing {
            quote: p.quote,
            raw,
            collateral,
            now: p.now,
        }
    }
}

#[test]
fn quote_6_is_out_of_date_and_allowed_only_by_name() {
    let pki = test_pki();
    let p = pki.reroot(&pairing("trustee/tdx_quote_6.dat"), false);
    let v = TdxVerifier::with_pinned_root(pki.root_der.clone())
        .verify(&p.raw, &p.collateral, p.now)
        .unwrap();
    assert_eq!(v.root(), TdxRootKind::Pinned);
    assert_eq!(v.tcb().status, TdxTcbStatus::OutOfDate);
    assert_eq!(v.tcb().platform_status, TdxTcbStatus::OutOfDate);
    assert_eq!(v.tcb().qe_status, TdxTcbStatus::UpToDate);
    assert_eq!(v.tcb().tcb_date, "2018-01-04T00:00:00Z");
    assert!(v.tcb().advisory_ids.is_empty());
    assert_eq!(v.pck().fmspc, "00a06d080000");
    assert_eq!(v.pck().pce_svn, 11);
    let err = validate(&v, &TdxPolicy::default()).unwrap_err();
    assert_eq!(
        err.0,
        vec![TdxValidationError::TcbStatus {
            status: TdxTcbStatus::OutOfDate,
            advisory_ids: vec![],
            allowed: vec![]
        }]
    );
    assert!(
        err.to_string()
            .starts_with("AllowedTcbStatuses: TCB status is OutOfDate"),
        "{err}"
    );
    let mut allowed = TdxPolicy {
        allowed_tcb_statuses: vec![TdxTcbStatus::SWHardeningNeeded],
        ..TdxPolicy::default()
    };
    assert!(validate(&v, &allowed).is_err());
    allowed.allowed_tcb_statuses.push(TdxTcbStatus::OutOfDate);
    validate(&v, &allowed).unwrap();
    // Manifest entries accept Intel's root only; MRCONFIGID of this quote is no policy hash.
    let mut rv = reference_values(&v);
    rv.allowed_tcb_statuses = vec![TdxTcbStatus::OutOfDate];
    let errs = validate(&v, &TdxPolicy::from_reference_values(&rv)).unwrap_err();
    let names: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("Root: "), "{names:?}");
    assert!(
        names[1].starts_with("MRCONFIGID: ") && names[1].contains("last 16 bytes must be zero"),
        "{names:?}"
    );
}

#[test]
fn a_pck_chain_to_another_root_fails() {
    let pki = test_pki();
    let real = pairing("dcap-qvl/tdx_quote");
    let moved = pki.reroot(&real, false);
    // The test PKI is sound: pinned, it verifies (UpToDate, the real TCB Info).
    let v = TdxVerifier::with_pinned_root(pki.root_der.clone())
        .verify(&moved.raw, &moved.collateral, moved.now)
        .unwrap();
    assert_eq!(v.tcb().status, TdxTcbStatus::UpToDate);
    // Against Intel's root: refused, naming the chain.
    let err = TdxVerifier::intel()
        .verify(&moved.raw, &real.collateral, real.now)
        .unwrap_err();
    match &err {
        TdxVerifyError::UntrustedRoot { which, subject, .. } => {
            assert_eq!(*which, "the quote's PCK certificate chain");
            assert!(subject.contains("Nunki Test SGX Root CA"), "{subject}");
        }
        other => panic!("{other}"),
    }
    let err = TdxVerifier::intel()
        .verify(&moved.raw, &moved.collateral, moved.now)
        .unwrap_err();
    assert!(matches!(err, TdxVerifyError::UntrustedRoot { .. }), "{err}");
    // A forged chain that ends in the genuine Intel root certificate does not get through
    // either: the test CA is not signed by it.
    let q = TdQuote::parse(&moved.raw).unwrap();
    let intel_root = TdQuote::parse(&real.raw).unwrap().pck_chain[2].clone();
    let forged_chain = format!(
        "{}{}{}",
        pem(&q.pck_chain[0]),
        pem(&q.pck_chain[1]),
        pem(&intel_root)
    );
    let forged = tdx_common::replace_pck_chain(&real.raw, &forged_chain);
    let r = TdxVerifier::intel().verify(&forged, &real.collateral, real.now);
    assert_eq!(step(r), DcapStep::CertificateChain);
}

#[test]
fn a_revoked_pck_certificate_fails() {
    let pki = test_pki();
    let p = pki.reroot(&pairing("dcap-qvl/tdx_quote"), true);
    let r =
        TdxVerifier::with_pinned_root(pki.root_der.clone()).verify(&p.raw, &p.collateral, p.now);
    assert_eq!(step(r), DcapStep::CertificateRevoked);
}

// --- reference values ------------------------------------------------------------------

/// Reference values that match `v` exactly.
fn reference_values(v: &VerifiedQuote) -> TdxReferenceValues {
    let td = &v.quote().td;
    TdxReferenceValues {
        mr_td: td.mr_td,
        rtmrs: td.rtmrs,
        mr_seam: td.mr_seam,
        xfam: td.xfam,
        td_attributes: td.td_attributes,
        minimum_tcb_evaluation_data_number: v.tcb().tcb_evaluation_data_number,
        allowed_tcb_statuses: vec![],
        allowed_piids: vec![],
    }
}

#[test]
fn measurement_mismatches_fail_naming_the_field() {
    let p = pairing("dcap-qvl/tdx_quote");
    let v = intel(&p).unwrap();
    let rv = reference_values(&v);
    validate(&v, &TdxPolicy::from_reference_values(&rv)).unwrap();
    let check = |rv: &TdxReferenceValues, policy_hash: Option<HostData>, field: &str| {
        let policy = TdxPolicy::from_reference_values(rv).expecting(policy_hash, None);
        let errs = validate(&v, &policy).unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        assert!(errs.to_string().starts_with(field), "{field}: {errs}");
    };
    let mut bad = rv.clone();
    bad.mr_td.0[0] ^= 1;
    check(&bad, None, "MrTd: quote has ");
    for i in 0..4 {
        let mut bad = rv.clone();
        bad.rtmrs[i].0[47] ^= 0x80;
        check(&bad, None, &format!("Rtmrs[{i}]: quote has "));
    }
    let mut bad = rv.clone();
    bad.mr_seam.0[1] ^= 1;
    check(&bad, None, "MrSeam: ");
    let mut bad = rv.clone();
    bad.xfam.0[0] ^= 1;
    check(&bad, None, "Xfam: ");
    let mut bad = rv.clone();
    bad.td_attributes.0[3] ^= 0x10;
    check(&bad, None, "TdAttributes: ");
    let mut bad = rv.clone();
    bad.minimum_tcb_evaluation_data_number = 18;
    check(
        &bad,
        None,
        "MinimumTcbEvaluationDataNumber: collateral has TCB evaluation data number 17",
    );
    let mut bad = rv.clone();
    bad.allowed_piids = vec![nunki_manifest::Piid([9; 16])];
    check(&bad, None, "AllowedPIIDs: ");
    // MRCONFIGID of this quote is all zero: policy hash 00..00; another expected hash fails.
    check(&rv, Some(HostData([1; 32])), "MRCONFIGID: policy hash ");
    validate(
        &v,
        &TdxPolicy::from_reference_values(&rv).expecting(Some(HostData([0; 32])), None),
    )
    .unwrap();
}
