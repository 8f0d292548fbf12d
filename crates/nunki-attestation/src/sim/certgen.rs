//! Certificates and CRLs of the simulated hierarchy, in AMD's profile, encoded with `der`.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair, RSA_PSS_SHA384};
use der::asn1::{BitString, Ia5String, ObjectIdentifier, OctetString, Uint};
use der::{Any, Decode, Encode, Sequence};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::Version;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::{SimConfig, SimError};
use crate::oid;
use crate::snp::tcb::TcbVersion;

/// AMD's RSASSA-PSS parameters: SHA-384, MGF1-SHA-384, salt 48 (DER).
const PSS_SHA384_PARAMS: [u8; 54] = [
    0x30, 0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0xa2, 0x03, 0x02, 0x01, 0x30,
];

const ORG: &str = "Nunki simulated SEV-SNP platform - NOT AMD hardware";
const YEAR: u64 = 365 * 24 * 3600;

#[derive(Clone, Debug, Sequence)]
struct TbsCertificate {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: u8,
    serial: Uint,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    spki: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<Extension>>,
}

#[derive(Clone, Debug, Sequence)]
struct Certificate {
    tbs: TbsCertificate,
    algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> SimError {
    move |e| SimError::Crypto(format!("{what}: {e}"))
}

fn oid(s: &str) -> Result<ObjectIdentifier, SimError> {
    ObjectIdentifier::new(s).map_err(err("object identifier"))
}

fn pss_alg() -> Result<AlgorithmIdentifierOwned, SimError> {
    Ok(AlgorithmIdentifierOwned {
        oid: oid(oid::RSASSA_PSS)?,
        parameters: Some(Any::from_der(&PSS_SHA384_PARAMS).map_err(err("PSS parameters"))?),
    })
}

fn name(cn: &str) -> Result<Name, SimError> {
    Name::from_str(&format!(
        "CN={cn},O={ORG},ST=CA,L=Santa Clara,C=US,OU=Engineering"
    ))
    .map_err(err("distinguished name"))
}

fn time(secs: u64) -> Result<Time, SimError> {
    Time::try_from(UNIX_EPOCH + Duration::from_secs(secs)).map_err(err("certificate time"))
}

fn validity(cfg: &SimConfig, years: u64) -> Result<Validity, SimError> {
    let start = u64::try_from(cfg.created)
        .unwrap_or(0)
        .saturating_sub(24 * 3600);
    Ok(Validity::new(time(start)?, time(start + years * YEAR)?))
}

fn ext<T: Encode>(id: &str, critical: bool, value: &T) -> Result<Extension, SimError> {
    raw_ext(
        id,
        critical,
        value.to_der().map_err(err("extension value"))?,
    )
}

fn raw_ext(id: &str, critical: bool, value: Vec<u8>) -> Result<Extension, SimError> {
    Ok(Extension {
        extn_id: oid(id)?,
        critical,
        extn_value: OctetString::new(value).map_err(err("extension value"))?,
    })
}

fn ca_extensions(path_len: Option<u8>) -> Result<Vec<Extension>, SimError> {
    Ok(vec![
        ext(
            oid::BASIC_CONSTRAINTS,
            true,
            &BasicConstraints {
                ca: true,
                path_len_constraint: path_len,
            },
        )?,
        ext(
            oid::KEY_USAGE,
            true,
            &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
        )?,
    ])
}

fn rsa_spki(key: &RsaKeyPair) -> Result<SubjectPublicKeyInfoOwned, SimError> {
    let der: PublicKeyX509Der<'static> =
        key.public_key().as_der().map_err(err("RSA public key"))?;
    SubjectPublicKeyInfoOwned::from_der(der.as_ref()).map_err(err("RSA public key"))
}

fn pss_sign(key: &RsaKeyPair, msg: &[u8]) -> Result<Vec<u8>, SimError> {
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(&RSA_PSS_SHA384, &SystemRandom::new(), msg, &mut sig)
        .map_err(err("RSA-PSS signing"))?;
    Ok(sig)
}

fn sign_cert(tbs: TbsCertificate, issuer: &RsaKeyPair) -> Result<Vec<u8>, SimError> {
    let tbs_der = tbs.to_der().map_err(err("TBSCertificate"))?;
    let sig = pss_sign(issuer, &tbs_der)?;
    Certificate {
        tbs,
        algorithm: pss_alg()?,
        signature: BitString::from_bytes(&sig).map_err(err("signature"))?,
    }
    .to_der()
    .map_err(err("certificate"))
}

/// A new RSA-4096 key, as AMD uses for the ARK and ASK.
pub(super) fn generate_rsa() -> Result<RsaKeyPair, SimError> {
    RsaKeyPair::generate(KeySize::Rsa4096).map_err(err("RSA-4096 key generation"))
}

/// The self-signed ARK.
pub(super) fn ark_cert(cfg: &SimConfig, ark: &RsaKeyPair) -> Result<Vec<u8>, SimError> {
    let subject = name(&format!("ARK-{}", cfg.product))?;
    sign_cert(
        TbsCertificate {
            version: 2,
            serial: Uint::new(&[0x01, 0x00, 0x00]).map_err(err("serial"))?,
            signature: pss_alg()?,
            issuer: subject.clone(),
            validity: validity(cfg, 25)?,
            subject,
            spki: rsa_spki(ark)?,
            extensions: Some(ca_extensions(Some(1))?),
        },
        ark,
    )
}

/// The ASK, signed by the ARK.
pub(super) fn ask_cert(
    cfg: &SimConfig,
    ask: &RsaKeyPair,
    ark: &RsaKeyPair,
) -> Result<Vec<u8>, SimError> {
    sign_cert(
        TbsCertificate {
            version: 2,
            serial: Uint::new(&[0x01, 0x00, 0x01]).map_err(err("serial"))?,
            signature: pss_alg()?,
            issuer: name(&format!("ARK-{}", cfg.product))?,
            validity: validity(cfg, 25)?,
            subject: name(&format!("SEV-{}", cfg.product))?,
            spki: rsa_spki(ask)?,
            extensions: Some(ca_extensions(Some(0))?),
        },
        ark,
    )
}

/// A VCEK for `tcb`, signed by the ASK, with AMD's extensions (serial 0, no AKI, like AMD).
pub(super) fn vcek_cert(
    cfg: &SimConfig,
    tcb: TcbVersion,
    public_point: &[u8],
    ask: &RsaKeyPair,
) -> Result<Vec<u8>, SimError> {
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: oid(oid::EC_PUBLIC_KEY)?,
            parameters: Some(Any::from(oid(oid::SECP384R1)?)),
        },
        subject_public_key: BitString::from_bytes(public_point).map_err(err("VCEK public key"))?,
    };
    let turin = cfg.product.has_fmc();
    let product_name = match cfg.product {
        nunki_manifest::SnpProduct::Milan => "Milan-B0",
        other => other.name(),
    };
    let mut exts = vec![
        ext(oid::AMD_STRUCT_VERSION, false, &u8::from(turin))?,
        ext(
            oid::AMD_PRODUCT_NAME,
            false,
            &Ia5String::new(product_name).map_err(err("productName"))?,
        )?,
    ];
    if let Some(fmc) = tcb.fmc.filter(|_| turin) {
        exts.push(ext(oid::AMD_FMC_SPL, false, &fmc)?);
    }
    exts.push(ext(oid::AMD_BL_SPL, false, &tcb.bootloader)?);
    exts.push(ext(oid::AMD_TEE_SPL, false, &tcb.tee)?);
    exts.push(ext(oid::AMD_SNP_SPL, false, &tcb.snp)?);
    let reserved: &[&str] = if turin {
        &[oid::AMD_SPL5, oid::AMD_SPL6, oid::AMD_SPL7]
    } else {
        &[oid::AMD_SPL4, oid::AMD_SPL5, oid::AMD_SPL6, oid::AMD_SPL7]
    };
    for r in reserved {
        exts.push(ext(r, false, &0u8)?);
    }
    exts.push(ext(oid::AMD_UCODE_SPL, false, &tcb.microcode)?);
    let chip = cfg.chip_id.as_bytes();
    let hwid = if turin {
        chip.get(..8).unwrap_or_default()
    } else {
        &chip[..]
    };
    exts.push(raw_ext(oid::AMD_HWID, false, hwid.to_vec())?);
    sign_cert(
        TbsCertificate {
            version: 2,
            serial: Uint::new(&[0]).map_err(err("serial"))?,
            signature: pss_alg()?,
            issuer: name(&format!("SEV-{}", cfg.product))?,
            validity: validity(cfg, 7)?,
            subject: name("SEV-VCEK")?,
            spki,
            extensions: Some(exts),
        },
        ask,
    )
}

/// A CRL signed by the ARK.
pub(super) fn crl(
    cfg: &SimConfig,
    ark: &RsaKeyPair,
    revoked: &[Vec<u8>],
    this_update: SystemTime,
    next_update: Option<SystemTime>,
) -> Result<Vec<u8>, SimError> {
    let this = Time::try_from(this_update).map_err(err("thisUpdate"))?;
    let revoked = revoked
        .iter()
        .map(|s| {
            Ok(RevokedCert {
                serial_number: SerialNumber::<x509_cert::certificate::Rfc5280>::new(s)
                    .map_err(err("revoked serial"))?,
                revocation_date: this,
                crl_entry_extensions: None,
            })
        })
        .collect::<Result<Vec<_>, SimError>>()?;
    let tbs = TbsCertList {
        version: Version::V2,
        signature: pss_alg()?,
        issuer: name(&format!("ARK-{}", cfg.product))?,
        this_update: this,
        next_update: next_update
            .map(|t| Time::try_from(t).map_err(err("nextUpdate")))
            .transpose()?,
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: None,
    };
    let tbs_der = tbs.to_der().map_err(err("TBSCertList"))?;
    let sig = pss_sign(ark, &tbs_der)?;
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: pss_alg()?,
        signature: BitString::from_bytes(&sig).map_err(err("CRL signature"))?,
    }
    .to_der()
    .map_err(err("CRL"))
}
