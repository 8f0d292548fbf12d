//! Checks on the Coordinator's `NewMeshCert` reply, run before anything is written.
//!
//! The Initializer does not attest the Coordinator (its peers check what it writes), but it
//! must not hand its workload a certificate set that cannot work or that belongs to someone
//! else. A reply is accepted only if:
//!
//! 1. every file is PEM holding only `CERTIFICATE` blocks, each valid X.509 DER, and
//!    `certChain.pem` holds exactly the leaf and the intermediate, `mesh-ca.pem` and
//!    `coordinator-root-ca.pem` exactly one certificate each;
//! 2. the leaf certifies our own key (its SubjectPublicKeyInfo equals ours);
//! 3. with a pinned root (`--coordinator-root`), `coordinator-root-ca.pem` is that CA: same
//!    subject and key (the Coordinator re-mints its root certificate, with a new serial and
//!    dates, on every manifest update, so byte equality would refuse legitimate updates);
//! 4. the leaf verifies, with webpki's signature, validity, basic-constraints and
//!    ExtendedKeyUsage checks at the given time, as a TLS server *and* a TLS client
//!    certificate along leaf → intermediate → root (the pinned root when given), and directly
//!    along leaf → `mesh-ca.pem`;
//! 5. `mesh-ca.pem` is the intermediate's self-signed twin (same subject and key).

use std::time::{SystemTime, UNIX_EPOCH};

use der::{Decode, Encode};
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};

use crate::MeshFiles;

/// File name of the self-signed mesh CA.
pub const MESH_CA_FILE: &str = "mesh-ca.pem";
/// File name of the chain (leaf, then intermediate).
pub const CERT_CHAIN_FILE: &str = "certChain.pem";
/// File name of the private key.
pub const KEY_FILE: &str = "key.pem";
/// File name of the Coordinator's root CA.
pub const ROOT_CA_FILE: &str = "coordinator-root-ca.pem";

/// Why a reply from the Coordinator was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A file is not PEM, or holds something other than certificates.
    #[error("{file}: not a PEM certificate list: {reason}")]
    Pem {
        /// The file.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file holds the wrong number of certificates.
    #[error("{file}: expected {expected} certificate(s) ({what}), found {found}")]
    Count {
        /// The file.
        file: &'static str,
        /// How many it must hold.
        expected: usize,
        /// What they are.
        what: &'static str,
        /// How many it holds.
        found: usize,
    },
    /// A certificate is not valid X.509 DER.
    #[error("{file}: certificate {index} is not valid X.509: {reason}")]
    X509 {
        /// The file.
        file: &'static str,
        /// Position in the file, from 1.
        index: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// The leaf is for another key than the one this Initializer generated.
    #[error(
        "certChain.pem: the leaf certifies a different public key than this Initializer's \
         (the reply was meant for someone else)"
    )]
    ForeignKey,
    /// The reply's root is not the pinned one.
    #[error(
        "coordinator-root-ca.pem is not the root CA given with --coordinator-root: {reason} \
         (check that the Initializer talks to the right Coordinator)"
    )]
    PinnedRoot {
        /// Which part differs.
        reason: &'static str,
    },
    /// The pinned root itself is unusable.
    #[error("the root CA given with --coordinator-root: {reason}")]
    PinnedRootInvalid {
        /// What is wrong.
        reason: String,
    },
    /// The leaf does not chain to the root through the intermediate.
    #[error(
        "certChain.pem: the leaf does not verify as a TLS {usage} certificate along leaf → \
         intermediate → {anchor}: {reason}"
    )]
    RootPath {
        /// `server` or `client`.
        usage: &'static str,
        /// Which root was the anchor.
        anchor: &'static str,
        /// webpki's verdict.
        reason: String,
    },
    /// The leaf does not verify directly against the mesh CA.
    #[error(
        "certChain.pem: the leaf does not verify as a TLS {usage} certificate directly against \
         mesh-ca.pem: {reason}"
    )]
    MeshPath {
        /// `server` or `client`.
        usage: &'static str,
        /// webpki's verdict.
        reason: String,
    },
    /// The mesh CA is not the intermediate's twin.
    #[error("mesh-ca.pem and the intermediate in certChain.pem differ in {what}")]
    MeshCaMismatch {
        /// `subject` or `key`.
        what: &'static str,
    },
    /// The verification time cannot be expressed.
    #[error("the verification time lies before 1970")]
    Clock,
}

/// Certificates of one PEM file, each checked to be X.509.
fn certs(
    file: &'static str,
    pem: &[u8],
    expected: usize,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ReplyError> {
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = item.map_err(|e| ReplyError::Pem {
            file,
            reason: e.to_string(),
        })?;
        if kind != SectionKind::Certificate {
            return Err(ReplyError::Pem {
                file,
                reason: format!("block {} is {kind:?}, not CERTIFICATE", out.len() + 1),
            });
        }
        x509_cert::Certificate::from_der(&der).map_err(|e| ReplyError::X509 {
            file,
            index: out.len() + 1,
            reason: e.to_string(),
        })?;
        out.push(CertificateDer::from(der));
    }
    if out.len() != expected {
        return Err(ReplyError::Count {
            file,
            expected,
            what,
            found: out.len(),
        });
    }
    Ok(out)
}

/// Subject and SubjectPublicKeyInfo (DER) of a certificate that already parsed.
fn subject_and_spki(
    file: &'static str,
    index: usize,
    cert: &CertificateDer<'_>,
) -> Result<(Vec<u8>, Vec<u8>), ReplyError> {
    let bad = |e: der::Error| ReplyError::X509 {
        file,
        index,
        reason: e.to_string(),
    };
    let c = x509_cert::Certificate::from_der(cert.as_ref()).map_err(bad)?;
    let tbs = c.tbs_certificate();
    Ok((
        tbs.subject().to_der().map_err(bad)?,
        tbs.subject_public_key_info().to_der().map_err(bad)?,
    ))
}

fn anchor<'a>(
    file: &'static str,
    cert: &'a CertificateDer<'a>,
) -> Result<TrustAnchor<'a>, ReplyError> {
    anchor_from_trusted_cert(cert).map_err(|e| ReplyError::X509 {
        file,
        index: 1,
        reason: describe(&e),
    })
}

/// webpki's verdict in words.
fn describe(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => "signed by an unknown issuer (not this CA)".into(),
        E::InvalidSignatureForPublicKey => "bad signature".into(),
        E::CertExpired { time, not_after } => format!(
            "expired (notAfter {} s, now {} s since 1970)",
            not_after.as_secs(),
            time.as_secs()
        ),
        E::CertNotValidYet { time, not_before } => format!(
            "not valid yet (notBefore {} s, now {} s since 1970)",
            not_before.as_secs(),
            time.as_secs()
        ),
        E::RequiredEkuNotFoundContext(_) => {
            format!("the ExtendedKeyUsage does not allow this use ({e})")
        }
        E::CaUsedAsEndEntity => "the leaf is a CA certificate".into(),
        E::EndEntityUsedAsCa => "an issuer is not a CA certificate".into(),
        E::PathLenConstraintViolated => "a CA's path length constraint is violated".into(),
        other => other.to_string(),
    }
}

/// The parsed pinned root: exactly one certificate in PEM, usable as a trust anchor.
///
/// Returns its DER.
pub fn parse_pinned_root(pem: &[u8]) -> Result<Vec<u8>, ReplyError> {
    let invalid = |e: ReplyError| ReplyError::PinnedRootInvalid {
        reason: e.to_string(),
    };
    let mut c = certs("root CA file", pem, 1, "the root CA").map_err(invalid)?;
    let cert = c.pop().ok_or_else(|| ReplyError::PinnedRootInvalid {
        reason: "no certificate".into(),
    })?;
    anchor("root CA file", &cert).map_err(invalid)?;
    Ok(cert.as_ref().to_vec())
}

/// Checks a reply (see the module documentation). `own_spki` is the SubjectPublicKeyInfo DER
/// of the key the Initializer generated; `pinned_root` the DER of `--coordinator-root`.
pub fn check_reply(
    reply: &MeshFiles,
    own_spki: &[u8],
    pinned_root: Option<&[u8]>,
    now: SystemTime,
) -> Result<(), ReplyError> {
    let chain = certs(
        CERT_CHAIN_FILE,
        &reply.cert_chain,
        2,
        "the leaf, then the intermediate",
    )?;
    let mesh = certs(MESH_CA_FILE, &reply.mesh_ca, 1, "the mesh CA")?;
    let root = certs(ROOT_CA_FILE, &reply.root_ca, 1, "the root CA")?;
    let (Some(leaf), Some(intermediate), Some(mesh), Some(root)) =
        (chain.first(), chain.get(1), mesh.first(), root.first())
    else {
        return Err(ReplyError::Count {
            file: CERT_CHAIN_FILE,
            expected: 2,
            what: "the leaf, then the intermediate",
            found: chain.len(),
        });
    };

    let (_, leaf_spki) = subject_and_spki(CERT_CHAIN_FILE, 1, leaf)?;
    if leaf_spki != own_spki {
        return Err(ReplyError::ForeignKey);
    }

    let root_anchor = anchor(ROOT_CA_FILE, root)?;
    let pinned_der = pinned_root.map(|d| CertificateDer::from(d.to_vec()));
    let (anchor_for_chain, anchor_name) = match &pinned_der {
        Some(p) => {
            let pinned =
                anchor_from_trusted_cert(p).map_err(|e| ReplyError::PinnedRootInvalid {
                    reason: describe(&e),
                })?;
            if pinned.subject != root_anchor.subject {
                return Err(ReplyError::PinnedRoot { reason: "subject" });
            }
            if pinned.subject_public_key_info != root_anchor.subject_public_key_info {
                return Err(ReplyError::PinnedRoot { reason: "key" });
            }
            (pinned, "the pinned root (--coordinator-root)")
        }
        None => (root_anchor, ROOT_CA_FILE),
    };
    let mesh_anchor = anchor(MESH_CA_FILE, mesh)?;

    let since = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ReplyError::Clock)?;
    let time = UnixTime::since_unix_epoch(since);
    let algs = nunki_atls::provider().signature_verification_algorithms.all;
    let ee = EndEntityCert::try_from(leaf).map_err(|e| ReplyError::X509 {
        file: CERT_CHAIN_FILE,
        index: 1,
        reason: describe(&e),
    })?;
    let intermediates = [intermediate.clone()];
    for (usage_name, usage) in [
        ("server", KeyUsage::server_auth()),
        ("client", KeyUsage::client_auth()),
    ] {
        ee.verify_for_usage(
            algs,
            std::slice::from_ref(&anchor_for_chain),
            &intermediates,
            time,
            usage,
            None,
            None,
        )
        .map_err(|e| ReplyError::RootPath {
            usage: usage_name,
            anchor: anchor_name,
            reason: describe(&e),
        })?;
        ee.verify_for_usage(
            algs,
            std::slice::from_ref(&mesh_anchor),
            &[],
            time,
            usage,
            None,
            None,
        )
        .map_err(|e| ReplyError::MeshPath {
            usage: usage_name,
            reason: describe(&e),
        })?;
    }

    let (mesh_subject, mesh_spki) = subject_and_spki(MESH_CA_FILE, 1, mesh)?;
    let (int_subject, int_spki) = subject_and_spki(CERT_CHAIN_FILE, 2, intermediate)?;
    if mesh_subject != int_subject {
        return Err(ReplyError::MeshCaMismatch { what: "subject" });
    }
    if mesh_spki != int_spki {
        return Err(ReplyError::MeshCaMismatch { what: "key" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use std::time::Duration;

    use nunki_atls::cert::AttestingKey;
    use nunki_ca::Ca;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };

    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_780_000_000)
    }

    fn ca(at: SystemTime) -> Ca {
        let root = nunki_ca::generate_p384_pkcs8().unwrap();
        let mesh = nunki_ca::generate_p384_pkcs8().unwrap();
        Ca::new(&root, &mesh, at).unwrap()
    }

    fn reply(ca: &Ca, spki: &[u8], at: SystemTime) -> MeshFiles {
        let leaf = ca
            .issue_leaf(spki, &["web".to_string(), "*".to_string()], at)
            .unwrap();
        MeshFiles {
            mesh_ca: ca.mesh_ca_pem().as_bytes().to_vec(),
            cert_chain: ca.chain_pem(&leaf).into_bytes(),
            key_pem: Vec::new(),
            root_ca: ca.root_pem().as_bytes().to_vec(),
            workload_secret: None,
        }
    }

    fn key() -> AttestingKey {
        AttestingKey::generate().unwrap()
    }

    fn pem(der: &[u8]) -> String {
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap()
    }

    #[test]
    fn a_reply_from_the_ca_passes() {
        let k = key();
        let ca = ca(now());
        let r = reply(&ca, &k.spki_der(), now());
        check_reply(&r, &k.spki_der(), None, now()).unwrap();
        // Near the end of the leaf's year it still passes; after it, it does not.
        check_reply(&r, &k.spki_der(), None, now() + 360 * DAY).unwrap();
    }

    #[test]
    fn time_is_checked() {
        let k = key();
        let ca = ca(now());
        let r = reply(&ca, &k.spki_der(), now());
        let e = check_reply(&r, &k.spki_der(), None, now() + 400 * DAY).unwrap_err();
        assert!(
            matches!(&e, ReplyError::RootPath { usage: "server", reason, .. } if reason.starts_with("expired")),
            "{e}"
        );
        let e = check_reply(&r, &k.spki_der(), None, now() - 2 * DAY).unwrap_err();
        assert!(e.to_string().contains("not valid yet"), "{e}");
    }

    #[test]
    fn a_leaf_for_another_key_is_refused() {
        let (ours, theirs) = (key(), key());
        let ca = ca(now());
        let r = reply(&ca, &theirs.spki_der(), now());
        assert_eq!(
            check_reply(&r, &ours.spki_der(), None, now()),
            Err(ReplyError::ForeignKey)
        );
    }

    #[test]
    fn a_chain_from_another_ca_is_refused() {
        let k = key();
        let (a, b) = (ca(now()), ca(now()));
        // Leaf and intermediate from b, root from a: all Nunki roots share their subject, so
        // the names chain and only the signature check refuses it.
        let mut r = reply(&b, &k.spki_der(), now());
        r.root_ca = a.root_pem().as_bytes().to_vec();
        let e = check_reply(&r, &k.spki_der(), None, now()).unwrap_err();
        assert_eq!(
            e,
            ReplyError::RootPath {
                usage: "server",
                anchor: ROOT_CA_FILE,
                reason: "bad signature".into()
            }
        );
        // A root with another name: no path at all.
        let mut r = reply(&b, &k.spki_der(), now());
        r.root_ca = rcgen_reply(&k.spki_der(), &[]).root_ca;
        let e = check_reply(&r, &k.spki_der(), None, now()).unwrap_err();
        assert_eq!(
            e,
            ReplyError::RootPath {
                usage: "server",
                anchor: ROOT_CA_FILE,
                reason: "signed by an unknown issuer (not this CA)".into()
            }
        );
        // Mesh CA from a, the rest from b.
        let mut r = reply(&b, &k.spki_der(), now());
        r.mesh_ca = a.mesh_ca_pem().as_bytes().to_vec();
        let e = check_reply(&r, &k.spki_der(), None, now()).unwrap_err();
        assert!(
            matches!(
                e,
                ReplyError::MeshPath {
                    usage: "server",
                    ..
                }
            ),
            "{e}"
        );
        // The intermediate from a, the leaf from b: the leaf's issuer name matches (same
        // subject), but the signature does not.
        let leaf_b = b.issue_leaf(&k.spki_der(), &["web".into()], now()).unwrap();
        let mut r = reply(&b, &k.spki_der(), now());
        r.cert_chain = format!("{}{}", leaf_b.pem, a.intermediate_pem()).into_bytes();
        let e = check_reply(&r, &k.spki_der(), None, now()).unwrap_err();
        assert!(matches!(e, ReplyError::RootPath { .. }), "{e}");
    }

    #[test]
    fn re_minted_twins_of_the_same_keys_pass() {
        // Another Ca on the same keys re-mints root and mesh CA (new serials and dates): they
        // are interchangeable with the originals, so a reply mixing them is fine.
        let root = nunki_ca::generate_p384_pkcs8().unwrap();
        let mesh = nunki_ca::generate_p384_pkcs8().unwrap();
        let a = Ca::new(&root, &mesh, now()).unwrap();
        let b = Ca::new(&root, &mesh, now() + DAY).unwrap();
        assert_ne!(a.mesh_ca_der(), b.mesh_ca_der());
        let k = key();
        let mut r = reply(&a, &k.spki_der(), now() + DAY);
        r.mesh_ca = b.mesh_ca_pem().as_bytes().to_vec();
        r.root_ca = b.root_pem().as_bytes().to_vec();
        check_reply(&r, &k.spki_der(), None, now() + DAY).unwrap();
    }

    #[test]
    fn a_leaf_signed_directly_by_the_root_is_refused() {
        // Root and mesh CA twins of the same key: both paths verify, but the "intermediate"
        // is some other CA, so mesh-ca.pem is not its twin.
        let k = key();
        let other = ca(now());
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut rp = CertificateParams::default();
        rp.distinguished_name.push(DnType::CommonName, "rogue root");
        rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        rp.not_before = (now() - DAY).into();
        rp.not_after = (now() + 30 * DAY).into();
        let root_cert = rp.clone().self_signed(&root_key).unwrap();
        let issuer = Issuer::new(rp, &root_key);
        let leaf = leaf_params(&[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ])
        .signed_by(&SubjectKey(k.spki_der()), &issuer)
        .unwrap();
        let r = MeshFiles {
            mesh_ca: root_cert.pem().into_bytes(),
            cert_chain: format!("{}{}", leaf.pem(), other.intermediate_pem()).into_bytes(),
            key_pem: Vec::new(),
            root_ca: root_cert.pem().into_bytes(),
            workload_secret: None,
        };
        assert_eq!(
            check_reply(&r, &k.spki_der(), None, now()),
            Err(ReplyError::MeshCaMismatch { what: "subject" })
        );
    }

    /// A public key for rcgen from SPKI DER (rcgen needs no private key to sign for a subject).
    struct SubjectKey(Vec<u8>);

    impl rcgen::PublicKeyData for SubjectKey {
        fn der_bytes(&self) -> &[u8] {
            // The BIT STRING contents of a P-256 SPKI: the last 65 bytes.
            &self.0[self.0.len() - 65..]
        }
        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            &rcgen::PKCS_ECDSA_P256_SHA256
        }
    }

    fn leaf_params(ekus: &[ExtendedKeyUsagePurpose]) -> CertificateParams {
        let mut p = CertificateParams::new(vec!["web".to_string()]).unwrap();
        p.not_before = (now() - DAY).into();
        p.not_after = (now() + 10 * DAY).into();
        p.extended_key_usages = ekus.to_vec();
        p
    }

    /// A CA in the Nunki layout built with rcgen, so leaves can carry any ExtendedKeyUsage.
    fn rcgen_reply(spki: &[u8], ekus: &[ExtendedKeyUsagePurpose]) -> MeshFiles {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mesh_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let ca_params = |cn: &str| {
            let mut p = CertificateParams::default();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.not_before = (now() - DAY).into();
            p.not_after = (now() + 30 * DAY).into();
            p
        };
        let root_cert = ca_params("r").self_signed(&root_key).unwrap();
        let root = Issuer::new(ca_params("r"), &root_key);
        let intermediate = ca_params("m").signed_by(&mesh_key, &root).unwrap();
        let mesh_cert = ca_params("m").self_signed(&mesh_key).unwrap();
        let mesh = Issuer::new(ca_params("m"), &mesh_key);
        let leaf = leaf_params(ekus)
            .signed_by(&SubjectKey(spki.to_vec()), &mesh)
            .unwrap();
        MeshFiles {
            mesh_ca: mesh_cert.pem().into_bytes(),
            cert_chain: format!("{}{}", leaf.pem(), intermediate.pem()).into_bytes(),
            key_pem: Vec::new(),
            root_ca: root_cert.pem().into_bytes(),
            workload_secret: None,
        }
    }

    #[test]
    fn the_leaf_must_be_usable_for_tls_servers_and_clients() {
        use ExtendedKeyUsagePurpose::{ClientAuth, CodeSigning, ServerAuth};
        let k = key();
        let spki = k.spki_der();
        // The rcgen layout is accepted with both purposes, so the refusals below are about
        // the purposes alone.
        check_reply(
            &rcgen_reply(&spki, &[ServerAuth, ClientAuth]),
            &spki,
            None,
            now(),
        )
        .unwrap();
        let e = check_reply(&rcgen_reply(&spki, &[ServerAuth]), &spki, None, now()).unwrap_err();
        assert!(
            matches!(&e, ReplyError::RootPath { usage: "client", reason, .. } if reason.contains("ExtendedKeyUsage")),
            "{e}"
        );
        let e = check_reply(&rcgen_reply(&spki, &[ClientAuth]), &spki, None, now()).unwrap_err();
        assert!(
            matches!(
                e,
                ReplyError::RootPath {
                    usage: "server",
                    ..
                }
            ),
            "{e}"
        );
        let e = check_reply(&rcgen_reply(&spki, &[CodeSigning]), &spki, None, now()).unwrap_err();
        assert!(
            matches!(
                e,
                ReplyError::RootPath {
                    usage: "server",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn malformed_files_are_named() {
        let k = key();
        let ca = ca(now());
        let good = reply(&ca, &k.spki_der(), now());
        let check = |f: &dyn Fn(&mut MeshFiles)| {
            let mut r = good.clone();
            f(&mut r);
            check_reply(&r, &k.spki_der(), None, now()).unwrap_err()
        };
        let e = check(&|r| r.mesh_ca = b"garbage".to_vec());
        assert_eq!(
            e,
            ReplyError::Count {
                file: MESH_CA_FILE,
                expected: 1,
                what: "the mesh CA",
                found: 0
            }
        );
        let e = check(&|r| {
            r.cert_chain =
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec()
        });
        assert!(
            matches!(
                e,
                ReplyError::Pem {
                    file: CERT_CHAIN_FILE,
                    ..
                }
            ),
            "{e}"
        );
        let e = check(&|r| r.root_ca = pem(b"\x30\x03\x02\x01\x01").into_bytes());
        assert!(
            matches!(
                e,
                ReplyError::X509 {
                    file: ROOT_CA_FILE,
                    index: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = check(&|r| {
            r.cert_chain.extend_from_slice(ca.root_pem().as_bytes());
        });
        assert!(
            matches!(
                e,
                ReplyError::Count {
                    file: CERT_CHAIN_FILE,
                    found: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = check(&|r| {
            r.mesh_ca = der::pem::encode_string(
                "PRIVATE KEY",
                der::pem::LineEnding::LF,
                &k.pkcs8_der().unwrap(),
            )
            .unwrap()
            .into_bytes();
        });
        assert!(
            matches!(&e, ReplyError::Pem { file: MESH_CA_FILE, reason } if reason.contains("not CERTIFICATE")),
            "{e}"
        );
        // Leaf and intermediate swapped.
        let e = check(&|r| {
            let c = certs(CERT_CHAIN_FILE, &good.cert_chain, 2, "").unwrap();
            r.cert_chain = format!("{}{}", pem(c[1].as_ref()), pem(c[0].as_ref())).into_bytes();
        });
        assert_eq!(e, ReplyError::ForeignKey);
    }

    #[test]
    fn a_pinned_root_must_be_the_same_ca() {
        let root = nunki_ca::generate_p384_pkcs8().unwrap();
        let mesh = nunki_ca::generate_p384_pkcs8().unwrap();
        let first = Ca::new(&root, &mesh, now()).unwrap();
        // A later manifest: same root key, re-minted root certificate, new mesh key.
        let later = Ca::new(
            &root,
            &nunki_ca::generate_p384_pkcs8().unwrap(),
            now() + DAY,
        )
        .unwrap();
        assert_ne!(first.root_der(), later.root_der());
        let pinned = parse_pinned_root(first.root_pem().as_bytes()).unwrap();
        assert_eq!(pinned, first.root_der());
        let k = key();
        let r = reply(&later, &k.spki_der(), now() + DAY);
        check_reply(&r, &k.spki_der(), Some(&pinned), now() + DAY).unwrap();

        // Another Coordinator's CA is refused even though its reply is consistent in itself:
        // all Nunki roots share their subject, so it differs by key.
        let stranger = ca(now());
        let r = reply(&stranger, &k.spki_der(), now());
        check_reply(&r, &k.spki_der(), None, now()).unwrap();
        assert_eq!(
            check_reply(&r, &k.spki_der(), Some(&pinned), now()),
            Err(ReplyError::PinnedRoot { reason: "key" })
        );
        // A CA with another subject is refused by subject.
        let r = rcgen_reply(
            &k.spki_der(),
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        check_reply(&r, &k.spki_der(), None, now()).unwrap();
        assert_eq!(
            check_reply(&r, &k.spki_der(), Some(&pinned), now()),
            Err(ReplyError::PinnedRoot { reason: "subject" })
        );
    }

    #[test]
    fn pinned_root_files_are_checked() {
        assert!(matches!(
            parse_pinned_root(b"nothing"),
            Err(ReplyError::PinnedRootInvalid { .. })
        ));
        let ca = ca(now());
        let two = format!("{}{}", ca.root_pem(), ca.mesh_ca_pem());
        let e = parse_pinned_root(two.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("found 2"), "{e}");
    }
}
