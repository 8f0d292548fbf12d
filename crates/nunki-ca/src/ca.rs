//! The CA hierarchy (root, intermediate, mesh CA) and leaf issuance.

use std::fmt;
use std::time::SystemTime;

use aws_lc_rs::digest;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, PublicKeyData,
};
use time::OffsetDateTime;

use crate::error::{CaError, CaKeyRole};
use crate::keys::CaKey;
use crate::san::San;
use crate::serial::random_serial;
use crate::spki::{SubjectKey, SubjectKeyKind};
use crate::validity::{CA_VALIDITY_YEARS, LEAF_VALIDITY_YEARS, Validity};

/// Common name of the root CA.
pub const ROOT_CA_COMMON_NAME: &str = "nunki root CA";
/// Common name shared by the intermediate CA and its self-signed twin, the mesh CA.
pub const MESH_CA_COMMON_NAME: &str = "nunki mesh CA";
/// Organization of the root, intermediate and mesh CA subjects.
pub const ORGANIZATION: &str = "Nunki";
/// Common name of a leaf without a DNS SAN usable as common name.
pub const DEFAULT_LEAF_COMMON_NAME: &str = "nunki workload";

/// The root may sign CAs that sign leaves, no deeper.
const ROOT_PATH_LEN: u8 = 1;
/// The intermediate/mesh CA signs only leaves.
const MESH_PATH_LEN: u8 = 0;
/// X.520 ub-common-name; longer DNS names stay SAN-only.
const MAX_COMMON_NAME_LEN: usize = 64;
const OID_SUBJECT_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 14];

/// A certificate in both encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CertBytes {
    der: Vec<u8>,
    pem: String,
}

impl From<rcgen::Certificate> for CertBytes {
    fn from(cert: rcgen::Certificate) -> Self {
        Self {
            pem: cert.pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A workload leaf certificate (public data only; the private key never leaves the pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// DER encoding.
    pub der: Vec<u8>,
    /// PEM encoding (one `CERTIFICATE` block, newline-terminated).
    pub pem: String,
}

/// The CA of one deployment state: a root CA and a mesh CA (also as intermediate under the
/// root), able to issue workload leaves. See the crate documentation for the hierarchy.
pub struct Ca {
    mesh_key: CaKey,
    /// Subject and key identifier method the leaves' issuer fields are written from.
    mesh_params: CertificateParams,
    mesh_not_after: OffsetDateTime,
    root: CertBytes,
    intermediate: CertBytes,
    mesh_ca: CertBytes,
}

impl Ca {
    /// Builds the root, intermediate and mesh CA certificates from two P-384 keys given as
    /// PKCS#8 DER, valid from `now - 1h` to `now + 10 years`.
    ///
    /// The root's subject and key depend only on `root_key_pkcs8`, the intermediate's and mesh
    /// CA's subject and key only on `mesh_key_pkcs8`; serials are random, so two calls give
    /// different (but interchangeable) certificates. The root key is not kept.
    ///
    /// # Errors
    /// [`CaError::InvalidCaKey`] if a key is not a P-384 PKCS#8 key or both keys are the same,
    /// [`CaError::TimeOutOfRange`] if `now` cannot anchor a ten-year validity,
    /// [`CaError::Randomness`] or [`CaError::Signing`] if aws-lc fails.
    pub fn new(
        root_key_pkcs8: &[u8],
        mesh_key_pkcs8: &[u8],
        now: SystemTime,
    ) -> Result<Self, CaError> {
        let root_key = CaKey::from_pkcs8(root_key_pkcs8, CaKeyRole::Root)?;
        let mesh_key = CaKey::from_pkcs8(mesh_key_pkcs8, CaKeyRole::Mesh)?;
        if root_key.der_bytes() == mesh_key.der_bytes() {
            return Err(CaError::InvalidCaKey {
                role: CaKeyRole::Mesh,
                detail: "the mesh key must differ from the root key".to_owned(),
            });
        }
        let validity = Validity::from_now(now, CA_VALIDITY_YEARS)?;

        let root_params = ca_params(ROOT_CA_COMMON_NAME, ROOT_PATH_LEN, validity)?;
        let root = root_params
            .self_signed(&root_key)
            .map_err(signing("root"))?;

        let mut intermediate_params = ca_params(MESH_CA_COMMON_NAME, MESH_PATH_LEN, validity)?;
        intermediate_params.use_authority_key_identifier_extension = true;
        let root_issuer = Issuer::from_params(&root_params, &root_key);
        let intermediate = intermediate_params
            .signed_by(&mesh_key, &root_issuer)
            .map_err(signing("intermediate"))?;

        // Self-signed twin: same subject, same key, same key identifier, own serial.
        let mesh_params = ca_params(MESH_CA_COMMON_NAME, MESH_PATH_LEN, validity)?;
        let mesh_ca = mesh_params
            .self_signed(&mesh_key)
            .map_err(signing("mesh CA"))?;

        Ok(Self {
            mesh_key,
            mesh_params,
            mesh_not_after: validity.not_after,
            root: root.into(),
            intermediate: intermediate.into(),
            mesh_ca: mesh_ca.into(),
        })
    }

    /// Whether `mesh_key_pkcs8` (PKCS#8 DER) is this CA's mesh key: their public keys are
    /// compared. False for anything that is not a P-384 PKCS#8 key.
    pub fn has_mesh_key(&self, mesh_key_pkcs8: &[u8]) -> bool {
        CaKey::from_pkcs8(mesh_key_pkcs8, CaKeyRole::Mesh)
            .is_ok_and(|k| k.der_bytes() == self.mesh_key.der_bytes())
    }

    /// The root CA certificate, PEM (`coordinator-root-ca.pem`).
    pub fn root_pem(&self) -> &str {
        &self.root.pem
    }

    /// The root CA certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The intermediate CA certificate (mesh key, signed by the root), PEM.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate.pem
    }

    /// The intermediate CA certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate.der
    }

    /// The self-signed mesh CA certificate, PEM (`mesh-ca.pem`).
    pub fn mesh_ca_pem(&self) -> &str {
        &self.mesh_ca.pem
    }

    /// The self-signed mesh CA certificate, DER.
    pub fn mesh_ca_der(&self) -> &[u8] {
        &self.mesh_ca.der
    }

    /// `certChain.pem`: the leaf, then the intermediate.
    pub fn chain_pem(&self, leaf: &Leaf) -> String {
        let mut chain = String::with_capacity(leaf.pem.len() + self.intermediate.pem.len() + 1);
        chain.push_str(&leaf.pem);
        if !chain.ends_with('\n') {
            chain.push('\n');
        }
        chain.push_str(&self.intermediate.pem);
        chain
    }

    /// Issues a leaf for the workload key `subject_spki_der` (DER SubjectPublicKeyInfo: EC
    /// P-256, EC P-384 or RSA 2048..=8192), signed by the mesh key.
    ///
    /// SANs: IP literals become IP SANs, strings with `://` URI SANs, the rest DNS SANs
    /// (including `*.domain` and the bare `*`); exact duplicates are dropped. The common name
    /// is the first DNS SAN that is neither `*` nor longer than 64 octets, else
    /// [`DEFAULT_LEAF_COMMON_NAME`]. Valid from `now - 1h` to `now + 1 year`, but never beyond
    /// the mesh CA. Key usage digitalSignature (plus keyEncipherment for RSA), extended key
    /// usage serverAuth and clientAuth.
    ///
    /// # Errors
    /// [`CaError::MalformedSpki`], [`CaError::UnsupportedKeyAlgorithm`] or
    /// [`CaError::InvalidPublicKey`] for a bad key, [`CaError::InvalidSan`] for a bad SAN,
    /// [`CaError::TimeOutOfRange`] if `now` is out of range or past the mesh CA's validity,
    /// [`CaError::Randomness`] or [`CaError::Signing`] if aws-lc fails.
    pub fn issue_leaf(
        &self,
        subject_spki_der: &[u8],
        sans: &[String],
        now: SystemTime,
    ) -> Result<Leaf, CaError> {
        let key = SubjectKey::from_spki_der(subject_spki_der)?;
        let sans = parse_sans(sans)?;
        let validity = Validity::from_now(now, LEAF_VALIDITY_YEARS)?.capped_at(self.mesh_not_after);
        if validity.not_after <= validity.not_before {
            return Err(CaError::TimeOutOfRange {
                time: now,
                bound: "notAfter (past the mesh CA)",
            });
        }

        let mut params = CertificateParams::default();
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial()?);
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, leaf_common_name(&sans));
        params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
        // No basicConstraints: rcgen 0.14.7 would encode cA FALSE explicitly, which DER forbids
        // (DEFAULT value), and RFC 5280 lets end-entity certificates omit the extension.
        params.is_ca = IsCa::NoCa;
        params.key_usages = match key.kind() {
            // RSA key exchange (TLS 1.2 RSA kx) encrypts to the certificate key.
            SubjectKeyKind::Rsa => {
                vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ]
            }
            SubjectKeyKind::EcP256 | SubjectKeyKind::EcP384 => {
                vec![KeyUsagePurpose::DigitalSignature]
            }
        };
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        // rcgen writes the subject key identifier only for CAs; compute it the same way.
        params.custom_extensions = vec![subject_key_identifier(subject_spki_der)];

        let issuer = Issuer::from_params(&self.mesh_params, &self.mesh_key);
        let cert = params.signed_by(&key, &issuer).map_err(signing("leaf"))?;
        Ok(Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
        })
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("root", &ROOT_CA_COMMON_NAME)
            .field("mesh", &MESH_CA_COMMON_NAME)
            .field("mesh_not_after", &self.mesh_not_after)
            .field("mesh_key", &self.mesh_key)
            .finish_non_exhaustive()
    }
}

fn ca_params(
    common_name: &str,
    path_len: u8,
    validity: Validity,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    params.distinguished_name = ca_subject(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    Ok(params)
}

/// `O=Nunki, CN=<common_name>`: a constant, so subjects are byte-stable across builds.
fn ca_subject(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn parse_sans(sans: &[String]) -> Result<Vec<San>, CaError> {
    let mut parsed: Vec<San> = Vec::with_capacity(sans.len());
    for s in sans {
        let san = San::parse(s)?;
        if !parsed.contains(&san) {
            parsed.push(san);
        }
    }
    Ok(parsed)
}

fn leaf_common_name(sans: &[San]) -> &str {
    sans.iter()
        .find_map(|san| match san {
            San::Dns(name) if !san.is_bare_wildcard() && name.len() <= MAX_COMMON_NAME_LEN => {
                Some(name.as_str())
            }
            _ => None,
        })
        .unwrap_or(DEFAULT_LEAF_COMMON_NAME)
}

/// RFC 7093 method 1 (SHA-256 of the SubjectPublicKeyInfo, first 160 bits), as rcgen does
/// for the CA certificates.
fn subject_key_identifier(spki_der: &[u8]) -> CustomExtension {
    let hash = digest::digest(&digest::SHA256, spki_der);
    let mut content = vec![0x04, 20]; // OCTET STRING, 20 bytes
    content.extend(hash.as_ref().iter().take(20));
    CustomExtension::from_oid_content(OID_SUBJECT_KEY_IDENTIFIER, content)
}

fn signing(certificate: &'static str) -> impl Fn(rcgen::Error) -> CaError {
    move |e| CaError::Signing {
        certificate,
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING,
        EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair as _, UnparsedPublicKey,
    };
    use time::macros::datetime;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::oid_registry::Oid;
    use x509_parser::oid_registry::{OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA384};
    use zeroize::Zeroizing;

    use super::*;
    use crate::keys::generate_p384_pkcs8;

    const NOW: OffsetDateTime = datetime!(2026-05-04 10:20:30 UTC);

    fn now() -> SystemTime {
        SystemTime::from(NOW)
    }

    struct Keys {
        root: Zeroizing<Vec<u8>>,
        mesh: Zeroizing<Vec<u8>>,
    }

    fn keys() -> Keys {
        Keys {
            root: generate_p384_pkcs8().unwrap(),
            mesh: generate_p384_pkcs8().unwrap(),
        }
    }

    fn ca() -> Ca {
        let k = keys();
        Ca::new(&k.root, &k.mesh, now()).unwrap()
    }

    fn ec_spki(alg: &'static EcdsaSigningAlgorithm) -> Vec<u8> {
        let key = EcdsaKeyPair::generate(alg).unwrap();
        key.public_key().as_der().unwrap().as_ref().to_vec()
    }

    fn p256_spki() -> Vec<u8> {
        ec_spki(&ECDSA_P256_SHA256_ASN1_SIGNING)
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        assert!(rest.is_empty());
        cert
    }

    fn cn<'a>(cert: &'a X509Certificate<'_>) -> &'a str {
        let mut names = cert.subject().iter_common_name();
        let name = names.next().unwrap().as_str().unwrap();
        assert!(names.next().is_none());
        name
    }

    fn org<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a str> {
        cert.subject()
            .iter_organization()
            .next()
            .map(|o| o.as_str().unwrap())
    }

    fn ski<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
        cert.iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
                _ => None,
            })
    }

    fn aki<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
        cert.iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    Some(aki.key_identifier.as_ref().unwrap().0)
                }
                _ => None,
            })
    }

    fn path_len(cert: &X509Certificate<'_>) -> Option<u32> {
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical);
        assert!(bc.value.ca);
        bc.value.path_len_constraint
    }

    /// Checks `cert`'s ECDSA-SHA384 signature with aws-lc (x509-parser's own check uses ring).
    fn assert_signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) {
        assert_eq!(
            cert.signature_algorithm.algorithm,
            OID_SIG_ECDSA_WITH_SHA384
        );
        assert_eq!(cert.issuer().as_raw(), issuer.subject().as_raw());
        let point = &issuer.public_key().subject_public_key.data;
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, point)
            .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
            .unwrap();
    }

    fn assert_ca_key_usage(cert: &X509Certificate<'_>) {
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.key_cert_sign());
        assert!(ku.value.crl_sign());
        assert!(ku.value.digital_signature());
        assert!(!ku.value.key_encipherment());
        assert!(cert.extended_key_usage().unwrap().is_none());
    }

    fn assert_validity(cert: &X509Certificate<'_>, years: i32) {
        let v = cert.validity();
        assert_eq!(
            v.not_before.timestamp(),
            (NOW - time::Duration::hours(1)).unix_timestamp()
        );
        let not_after = NOW.replace_year(NOW.year() + years).unwrap();
        assert_eq!(v.not_after.timestamp(), not_after.unix_timestamp());
    }

    fn assert_serial_ok(cert: &X509Certificate<'_>) {
        let serial = &cert.serial;
        assert!(serial.bits() <= 127, "serial has {} bits", serial.bits());
        assert!(serial.bits() > 0);
    }

    #[test]
    fn root_profile() {
        let ca = ca();
        let root = parse(ca.root_der());
        assert_eq!(root.version().0, 2);
        assert_eq!(cn(&root), ROOT_CA_COMMON_NAME);
        assert_eq!(org(&root), Some(ORGANIZATION));
        assert_signed_by(&root, &root);
        assert_eq!(path_len(&root), Some(1));
        assert_ca_key_usage(&root);
        assert_validity(&root, 10);
        assert_serial_ok(&root);
        let curve = root.public_key().algorithm.parameters.as_ref().unwrap();
        assert_eq!(Oid::try_from(curve).unwrap(), OID_NIST_EC_P384);
        let spki = root.public_key().raw;
        let digest = digest::digest(&digest::SHA256, spki);
        assert_eq!(ski(&root).unwrap(), &digest.as_ref()[..20]);
        assert!(aki(&root).is_none());
    }

    #[test]
    fn intermediate_profile() {
        let ca = ca();
        let root = parse(ca.root_der());
        let intermediate = parse(ca.intermediate_der());
        assert_eq!(cn(&intermediate), MESH_CA_COMMON_NAME);
        assert_eq!(org(&intermediate), Some(ORGANIZATION));
        assert_signed_by(&intermediate, &root);
        assert_eq!(path_len(&intermediate), Some(0));
        assert_ca_key_usage(&intermediate);
        assert_validity(&intermediate, 10);
        assert_serial_ok(&intermediate);
        assert_eq!(aki(&intermediate).unwrap(), ski(&root).unwrap());
        assert_ne!(intermediate.public_key().raw, root.public_key().raw);
    }

    #[test]
    fn mesh_ca_is_the_self_signed_twin_of_the_intermediate() {
        let ca = ca();
        let intermediate = parse(ca.intermediate_der());
        let mesh = parse(ca.mesh_ca_der());
        assert_eq!(mesh.subject().as_raw(), intermediate.subject().as_raw());
        assert_eq!(mesh.public_key().raw, intermediate.public_key().raw);
        assert_eq!(ski(&mesh), ski(&intermediate));
        assert_signed_by(&mesh, &mesh);
        assert_eq!(path_len(&mesh), Some(0));
        assert_ca_key_usage(&mesh);
        assert_validity(&mesh, 10);
        assert_serial_ok(&mesh);
        assert_ne!(mesh.raw_serial(), intermediate.raw_serial());
    }

    #[test]
    fn has_mesh_key_compares_the_key() {
        let k = keys();
        let ca = Ca::new(&k.root, &k.mesh, now()).unwrap();
        assert!(ca.has_mesh_key(&k.mesh));
        assert!(!ca.has_mesh_key(&k.root));
        let other = keys();
        assert!(!ca.has_mesh_key(&other.mesh));
        assert!(!ca.has_mesh_key(b"not a key"));
        // A CA rebuilt from the same keys (new serials) has the same mesh key.
        assert!(
            Ca::new(&k.root, &k.mesh, now())
                .unwrap()
                .has_mesh_key(&k.mesh)
        );
    }

    #[test]
    fn pem_and_der_agree() {
        let ca = ca();
        for (pem, der) in [
            (ca.root_pem(), ca.root_der()),
            (ca.intermediate_pem(), ca.intermediate_der()),
            (ca.mesh_ca_pem(), ca.mesh_ca_der()),
        ] {
            let (rest, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            assert!(rest.is_empty());
            assert_eq!(parsed.label, "CERTIFICATE");
            assert_eq!(parsed.contents, der);
            assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        }
    }

    #[test]
    fn leaf_profile() {
        let ca = ca();
        let mesh = parse(ca.mesh_ca_der());
        let spki = p256_spki();
        let sans: Vec<String> = [
            "web",
            "*",
            "*.web.default.svc",
            "10.1.2.3",
            "fd00::1",
            "spiffe://nunki/web",
        ]
        .map(String::from)
        .into();
        let leaf = ca.issue_leaf(&spki, &sans, now()).unwrap();
        let cert = parse(&leaf.der);
        assert_eq!(cert.version().0, 2);
        assert_eq!(cn(&cert), "web");
        assert_eq!(org(&cert), None);
        assert_signed_by(&cert, &mesh);
        assert_eq!(cert.public_key().raw, spki.as_slice());
        assert_validity(&cert, 1);
        assert_serial_ok(&cert);
        assert!(cert.basic_constraints().unwrap().is_none());
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature());
        assert!(!ku.value.key_encipherment());
        assert!(!ku.value.key_cert_sign());
        assert!(!ku.value.crl_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth);
        assert!(eku.value.client_auth);
        assert!(!eku.value.any);
        assert!(eku.value.other.is_empty());
        assert_eq!(aki(&cert).unwrap(), ski(&mesh).unwrap());
        let digest = digest::digest(&digest::SHA256, &spki);
        assert_eq!(ski(&cert).unwrap(), &digest.as_ref()[..20]);

        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(!san.critical);
        let ip = |s: &str| match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let (v4, v6) = (ip("10.1.2.3"), ip("fd00::1"));
        let expected = vec![
            GeneralName::DNSName("web"),
            GeneralName::DNSName("*"),
            GeneralName::DNSName("*.web.default.svc"),
            GeneralName::IPAddress(&v4),
            GeneralName::IPAddress(&v6),
            GeneralName::URI("spiffe://nunki/web"),
        ];
        assert_eq!(san.value.general_names, expected);

        let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.pem.as_bytes()).unwrap();
        assert_eq!(pem.contents, leaf.der);
    }

    #[test]
    fn rsa_leaf_has_key_encipherment_and_p384_leaf_does_not() {
        let ca = ca();
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let rsa_spki = rsa.public_key().as_der().unwrap();
        let leaf = ca
            .issue_leaf(rsa_spki.as_ref(), &["web".into()], now())
            .unwrap();
        let cert = parse(&leaf.der);
        assert_eq!(cert.public_key().raw, rsa_spki.as_ref());
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment());

        let p384 = ec_spki(&ECDSA_P384_SHA384_ASN1_SIGNING);
        let leaf = ca.issue_leaf(&p384, &["web".into()], now()).unwrap();
        let cert = parse(&leaf.der);
        assert_eq!(cert.public_key().raw, p384.as_slice());
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_encipherment());
    }

    #[test]
    fn leaf_common_name_rules() {
        let ca = ca();
        let spki = p256_spki();
        let long = format!("{}.example", "a".repeat(60));
        let cases: [(&[&str], &str); 7] = [
            (&["web", "db"], "web"),
            (&["10.0.0.1", "api.example"], "api.example"),
            (&["*", "web"], "web"),
            (&["*.example.com", "web"], "*.example.com"),
            (&[long.as_str(), "short.example"], "short.example"),
            (&["10.0.0.1", "spiffe://x/y", "*"], DEFAULT_LEAF_COMMON_NAME),
            (&[], DEFAULT_LEAF_COMMON_NAME),
        ];
        for (sans, expected) in cases {
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let leaf = ca.issue_leaf(&spki, &sans, now()).unwrap();
            assert_eq!(cn(&parse(&leaf.der)), expected, "{sans:?}");
        }
    }

    #[test]
    fn leaf_without_sans_has_no_san_extension() {
        let ca = ca();
        let leaf = ca.issue_leaf(&p256_spki(), &[], now()).unwrap();
        assert!(
            parse(&leaf.der)
                .subject_alternative_name()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn duplicate_sans_are_dropped() {
        let ca = ca();
        let sans: Vec<String> = ["web", "10.0.0.1", "web", "10.0.0.1", "db"]
            .map(String::from)
            .into();
        let leaf = ca.issue_leaf(&p256_spki(), &sans, now()).unwrap();
        let cert = parse(&leaf.der);
        let names = &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn leaf_errors_name_the_problem() {
        let ca = ca();
        let err = ca
            .issue_leaf(b"\x30\x03\x02\x01\x00", &[], now())
            .unwrap_err();
        assert!(matches!(err, CaError::MalformedSpki { .. }), "{err}");
        let err = ca.issue_leaf(ca.root_der(), &[], now()).unwrap_err();
        assert!(matches!(err, CaError::MalformedSpki { .. }), "{err}");
        let err = ca
            .issue_leaf(&p256_spki(), &["web".into(), "bad name".into()], now())
            .unwrap_err();
        assert!(
            matches!(&err, CaError::InvalidSan { san, .. } if san == "bad name"),
            "{err}"
        );
        assert!(err.to_string().contains("bad name"));
    }

    #[test]
    fn leaf_never_outlives_the_mesh_ca() {
        let ca = ca();
        let mesh_not_after = parse(ca.mesh_ca_der()).validity().not_after.timestamp();
        let late = now() + Duration::from_secs(9 * 365 * 86400 + 200 * 86400);
        let leaf = ca.issue_leaf(&p256_spki(), &["web".into()], late).unwrap();
        assert_eq!(
            parse(&leaf.der).validity().not_after.timestamp(),
            mesh_not_after
        );

        let too_late = now() + Duration::from_secs(11 * 365 * 86400);
        let err = ca
            .issue_leaf(&p256_spki(), &["web".into()], too_late)
            .unwrap_err();
        assert!(matches!(err, CaError::TimeOutOfRange { .. }), "{err}");
    }

    #[test]
    fn same_keys_and_time_give_the_same_certificates_up_to_serial_and_signature() {
        let k = keys();
        let a = Ca::new(&k.root, &k.mesh, now()).unwrap();
        let b = Ca::new(&k.root, &k.mesh, now()).unwrap();
        for (x, y) in [
            (a.root_der(), b.root_der()),
            (a.intermediate_der(), b.intermediate_der()),
            (a.mesh_ca_der(), b.mesh_ca_der()),
        ] {
            let (x, y) = (parse(x), parse(y));
            assert_eq!(x.subject().as_raw(), y.subject().as_raw());
            assert_eq!(x.issuer().as_raw(), y.issuer().as_raw());
            assert_eq!(x.validity(), y.validity());
            assert_eq!(x.public_key().raw, y.public_key().raw);
            assert_eq!(x.extensions(), y.extensions());
            assert_ne!(x.raw_serial(), y.raw_serial());
        }
        let spki = p256_spki();
        let sans = vec!["web".to_string(), "10.0.0.1".to_string()];
        let la = a.issue_leaf(&spki, &sans, now()).unwrap();
        let lb = b.issue_leaf(&spki, &sans, now()).unwrap();
        let (x, y) = (parse(&la.der), parse(&lb.der));
        assert_eq!(x.subject().as_raw(), y.subject().as_raw());
        assert_eq!(x.issuer().as_raw(), y.issuer().as_raw());
        assert_eq!(x.validity(), y.validity());
        assert_eq!(x.extensions(), y.extensions());
        assert_ne!(x.raw_serial(), y.raw_serial());
    }

    #[test]
    fn root_subject_and_key_depend_only_on_the_root_key() {
        let k = keys();
        let a = Ca::new(&k.root, &k.mesh, now()).unwrap();
        let later = now() + Duration::from_secs(400 * 86400);
        let b = Ca::new(&k.root, &generate_p384_pkcs8().unwrap(), later).unwrap();
        let (ra, rb) = (parse(a.root_der()), parse(b.root_der()));
        assert_eq!(ra.subject().as_raw(), rb.subject().as_raw());
        assert_eq!(ra.public_key().raw, rb.public_key().raw);
        assert_eq!(ski(&ra), ski(&rb));
        assert_ne!(ra.validity(), rb.validity());
        // The new intermediate chains to the old root.
        assert_signed_by(&parse(b.intermediate_der()), &ra);
    }

    #[test]
    fn bad_ca_keys_are_errors() {
        let k = keys();
        let err = Ca::new(b"junk", &k.mesh, now()).unwrap_err();
        assert!(
            matches!(
                err,
                CaError::InvalidCaKey {
                    role: CaKeyRole::Root,
                    ..
                }
            ),
            "{err}"
        );
        let err = Ca::new(&k.root, b"junk", now()).unwrap_err();
        assert!(
            matches!(
                err,
                CaError::InvalidCaKey {
                    role: CaKeyRole::Mesh,
                    ..
                }
            ),
            "{err}"
        );
        let err = Ca::new(&k.root, &k.root, now()).unwrap_err();
        assert!(
            matches!(
                err,
                CaError::InvalidCaKey {
                    role: CaKeyRole::Mesh,
                    ..
                }
            ),
            "{err}"
        );
        let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let p256 = p256.to_pkcs8v1().unwrap();
        let err = Ca::new(p256.as_ref(), &k.mesh, now()).unwrap_err();
        assert!(
            matches!(
                err,
                CaError::InvalidCaKey {
                    role: CaKeyRole::Root,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn chain_pem_is_leaf_then_intermediate() {
        let ca = ca();
        let leaf = ca.issue_leaf(&p256_spki(), &["web".into()], now()).unwrap();
        let chain = ca.chain_pem(&leaf);
        assert_eq!(chain, format!("{}{}", leaf.pem, ca.intermediate_pem()));
        let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
            .map(|p| p.unwrap().contents)
            .collect();
        assert_eq!(
            blocks,
            vec![leaf.der.clone(), ca.intermediate_der().to_vec()]
        );
    }

    #[test]
    fn ca_is_send_sync_and_debug_hides_the_key() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Ca>();
        let ca = ca();
        let debug = format!("{ca:?}");
        assert!(debug.contains("[elided]"), "{debug}");
        assert!(debug.contains(MESH_CA_COMMON_NAME));
    }
}
