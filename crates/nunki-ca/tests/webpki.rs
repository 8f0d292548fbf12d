//! Leaves verified by rustls' webpki verifiers, against the root (with the intermediate) and
//! against the mesh CA alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test helpers outside #[test] fns; a panic is a failed test"
)]

mod common;

use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use common::{CaKeys, PodKey, ca_and_leaf, client_verifier, der, sans, server_verifier, unix_time};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, Error as TlsError};

const DAY: Duration = Duration::from_secs(86400);

fn now() -> SystemTime {
    // A fixed instant: certificates and verification time are both injected.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

fn name(s: &str) -> ServerName<'static> {
    ServerName::try_from(s.to_owned()).unwrap()
}

fn verify_server(
    anchors: &[&[u8]],
    leaf: &[u8],
    intermediates: &[CertificateDer<'static>],
    server_name: &str,
    at: SystemTime,
) -> Result<(), TlsError> {
    server_verifier(anchors)
        .verify_server_cert(
            &der(leaf),
            intermediates,
            &name(server_name),
            &[],
            unix_time(at),
        )
        .map(drop)
}

fn verify_client(
    anchors: &[&[u8]],
    leaf: &[u8],
    intermediates: &[CertificateDer<'static>],
    at: SystemTime,
) -> Result<(), TlsError> {
    client_verifier(anchors)
        .verify_client_cert(&der(leaf), intermediates, unix_time(at))
        .map(drop)
}

/// Names the leaf from [`common::SANS`] must be valid for (the wildcard matches one label).
const VALID_NAMES: &[&str] = &[
    "web",
    "web.default.svc.cluster.local",
    "pod-0.web.default.svc.cluster.local",
    "10.1.2.3",
    "fd00::1",
];

#[test]
fn a_root_anchor_with_intermediate_verifies_every_dns_and_ip_san() {
    let (ca, leaf) = ca_and_leaf(now());
    let intermediate = [der(ca.intermediate_der())];
    for server_name in VALID_NAMES {
        verify_server(
            &[ca.root_der()],
            &leaf.der,
            &intermediate,
            server_name,
            now(),
        )
        .unwrap_or_else(|e| panic!("{server_name}: {e}"));
    }
    verify_client(&[ca.root_der()], &leaf.der, &intermediate, now()).unwrap();
}

#[test]
fn a_root_anchor_without_the_intermediate_fails() {
    let (ca, leaf) = ca_and_leaf(now());
    let err = verify_server(&[ca.root_der()], &leaf.der, &[], "web", now()).unwrap_err();
    assert_eq!(
        err,
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    let err = verify_client(&[ca.root_der()], &leaf.der, &[], now()).unwrap_err();
    assert_eq!(
        err,
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer)
    );
}

#[test]
fn b_mesh_ca_anchor_verifies_without_intermediate() {
    let (ca, leaf) = ca_and_leaf(now());
    for server_name in VALID_NAMES {
        verify_server(&[ca.mesh_ca_der()], &leaf.der, &[], server_name, now())
            .unwrap_or_else(|e| panic!("{server_name}: {e}"));
    }
    verify_client(&[ca.mesh_ca_der()], &leaf.der, &[], now()).unwrap();
    // Workloads present certChain.pem (leaf + intermediate); that must not hurt.
    let intermediate = [der(ca.intermediate_der())];
    verify_server(&[ca.mesh_ca_der()], &leaf.der, &intermediate, "web", now()).unwrap();
    verify_client(&[ca.mesh_ca_der()], &leaf.der, &intermediate, now()).unwrap();
}

/// Every Nunki CA uses the same subjects, so a foreign leaf names an issuer our anchors also
/// carry: webpki finds the candidate and rejects it on the signature (`BadSignature`); with no
/// candidate at all it reports `UnknownIssuer`. Either way the chain is refused.
fn assert_foreign(result: Result<(), TlsError>) {
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::InvalidCertificate(
                CertificateError::BadSignature | CertificateError::UnknownIssuer
            )
        ),
        "{err:?}"
    );
}

#[test]
fn c_leaf_of_another_ca_fails() {
    let (ca, _) = ca_and_leaf(now());
    let (other_ca, foreign) = ca_and_leaf(now());
    let ours = [der(ca.intermediate_der())];
    let theirs = [der(other_ca.intermediate_der())];

    assert_foreign(verify_server(
        &[ca.mesh_ca_der()],
        &foreign.der,
        &[],
        "web",
        now(),
    ));
    assert_foreign(verify_server(
        &[ca.mesh_ca_der()],
        &foreign.der,
        &theirs,
        "web",
        now(),
    ));
    assert_foreign(verify_client(
        &[ca.mesh_ca_der()],
        &foreign.der,
        &theirs,
        now(),
    ));
    assert_foreign(verify_server(
        &[ca.root_der()],
        &foreign.der,
        &theirs,
        "web",
        now(),
    ));
    assert_foreign(verify_server(
        &[ca.root_der()],
        &foreign.der,
        &ours,
        "web",
        now(),
    ));
    assert_foreign(verify_client(&[ca.root_der()], &foreign.der, &ours, now()));
    // Sanity: the foreign leaf is fine under its own CA.
    verify_server(&[other_ca.mesh_ca_der()], &foreign.der, &[], "web", now()).unwrap();
}

#[test]
fn c_same_root_key_new_mesh_key_is_foreign_to_the_mesh_ca_only() {
    let keys = CaKeys::generate();
    let ca = keys.ca(now());
    let next = CaKeys {
        root: keys.root.clone(),
        mesh: nunki_ca::generate_p384_pkcs8().unwrap(),
    };
    let next_ca = next.ca(now());
    let leaf = next_ca
        .issue_leaf(&PodKey::generate().spki, &sans(), now())
        .unwrap();
    // Trusting this manifest's mesh CA: a leaf under another manifest's mesh key fails.
    assert_foreign(verify_server(
        &[ca.mesh_ca_der()],
        &leaf.der,
        &[],
        "web",
        now(),
    ));
    assert_foreign(verify_client(&[ca.mesh_ca_der()], &leaf.der, &[], now()));
    // The old intermediate does not help either (different key, same subject).
    let old = [der(ca.intermediate_der())];
    assert_foreign(verify_server(
        &[ca.root_der()],
        &leaf.der,
        &old,
        "web",
        now(),
    ));
    // Trusting the root means trusting every manifest: the new chain verifies.
    let new = [der(next_ca.intermediate_der())];
    verify_server(&[ca.root_der()], &leaf.der, &new, "web", now()).unwrap();
}

#[test]
fn d_time_outside_validity_fails() {
    let (ca, leaf) = ca_and_leaf(now());
    let intermediate = [der(ca.intermediate_der())];
    let expired = TlsError::InvalidCertificate(CertificateError::Expired);
    let not_yet = TlsError::InvalidCertificate(CertificateError::NotValidYet);
    let early = now() - Duration::from_secs(2 * 3600);
    let late = now() + 367 * DAY;
    let just_inside = now() - Duration::from_secs(3600) + Duration::from_secs(1);

    for anchors in [[ca.root_der()], [ca.mesh_ca_der()]] {
        verify_server(&anchors, &leaf.der, &intermediate, "web", just_inside).unwrap();
        verify_server(&anchors, &leaf.der, &intermediate, "web", now() + 364 * DAY).unwrap();
        let err = verify_server(&anchors, &leaf.der, &intermediate, "web", early).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::InvalidCertificate(CertificateError::NotValidYetContext { .. })
            ) || err == not_yet,
            "{err:?}"
        );
        let err = verify_server(&anchors, &leaf.der, &intermediate, "web", late).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ) || err == expired,
            "{err:?}"
        );
        let err = verify_client(&anchors, &leaf.der, &intermediate, late).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ) || err == expired,
            "{err:?}"
        );
    }
}

#[test]
fn names_not_in_the_leaf_fail_and_bare_star_matches_nothing() {
    let (ca, leaf) = ca_and_leaf(now());
    let intermediate = [der(ca.intermediate_der())];
    // webpki skips the malformed presented name "*" instead of rejecting the certificate
    // (verified above), and it matches no reference name.
    for server_name in [
        "db",
        "example.com",
        "a.b.web.default.svc.cluster.local",
        "10.1.2.4",
    ] {
        let err = verify_server(
            &[ca.root_der()],
            &leaf.der,
            &intermediate,
            server_name,
            now(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            ) || err == TlsError::InvalidCertificate(CertificateError::NotValidForName),
            "{server_name}: {err:?}"
        );
    }
}

#[test]
fn leaf_with_only_a_bare_star_san_is_accepted_for_client_auth() {
    let ca = CaKeys::generate().ca(now());
    let leaf = ca
        .issue_leaf(&PodKey::generate().spki, &["*".to_string()], now())
        .unwrap();
    verify_client(&[ca.mesh_ca_der()], &leaf.der, &[], now()).unwrap();
    verify_client(
        &[ca.root_der()],
        &leaf.der,
        &[der(ca.intermediate_der())],
        now(),
    )
    .unwrap();
}

#[test]
fn p384_and_rsa_leaves_verify() {
    let ca = CaKeys::generate().ca(now());
    let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING).unwrap();
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let spkis = [
        p384.public_key().as_der().unwrap().as_ref().to_vec(),
        rsa.public_key().as_der().unwrap().as_ref().to_vec(),
    ];
    for spki in spkis {
        let leaf = ca.issue_leaf(&spki, &sans(), now()).unwrap();
        verify_server(&[ca.mesh_ca_der()], &leaf.der, &[], "web", now()).unwrap();
        verify_client(
            &[ca.root_der()],
            &leaf.der,
            &[der(ca.intermediate_der())],
            now(),
        )
        .unwrap();
    }
}

#[test]
fn old_root_pem_validates_a_chain_from_a_new_ca_with_the_same_root_key() {
    let keys = CaKeys::generate();
    let old_root_pem = keys.ca(now()).root_pem().to_owned();

    // Later: the Coordinator restarts / a new manifest is set; same root key, new mesh key.
    let later = now() + 30 * DAY;
    let new_keys = CaKeys {
        root: keys.root.clone(),
        mesh: nunki_ca::generate_p384_pkcs8().unwrap(),
    };
    let new_ca = new_keys.ca(later);
    let leaf = new_ca
        .issue_leaf(&PodKey::generate().spki, &sans(), later)
        .unwrap();

    let old_root = CertificateDer::from_pem_slice(old_root_pem.as_bytes()).unwrap();
    assert_ne!(old_root.as_ref(), new_ca.root_der(), "root is re-minted");
    let intermediate = [der(new_ca.intermediate_der())];
    verify_server(&[old_root.as_ref()], &leaf.der, &intermediate, "web", later).unwrap();
    verify_client(&[old_root.as_ref()], &leaf.der, &intermediate, later).unwrap();

    // ... and the chain file the pod gets parses into exactly leaf + intermediate.
    let chain: Vec<_> = CertificateDer::pem_slice_iter(new_ca.chain_pem(&leaf).as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(chain, vec![der(&leaf.der), der(new_ca.intermediate_der())]);
    let [chain_leaf, chain_rest @ ..] = chain.as_slice() else {
        panic!("empty chain")
    };
    server_verifier(&[old_root.as_ref()])
        .verify_server_cert(chain_leaf, chain_rest, &name("web"), &[], unix_time(later))
        .unwrap();
}
