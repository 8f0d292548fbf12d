//! X.509 handling for the AMD SEV-SNP certificate profile: ARK, ASK/ASVK and VCEK/VLEK.
//!
//! Certificates are parsed once into owned [`CertInfo`] summaries. Signatures are checked over
//! the exact TBS bytes from the input with aws-lc-rs (RSASSA-PSS SHA-384, salt 48).

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, UnparsedPublicKey};
use nunki_manifest::{Sha256Fingerprint, SnpProduct};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::signature_algorithm::SignatureAlgorithm;
use x509_parser::x509::AlgorithmIdentifier;

use crate::oid;

/// A problem with one certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not a DER (or PEM) X.509 certificate.
    #[error("{which}: not a valid X.509 certificate: {reason}")]
    Parse {
        /// Which certificate (VCEK, ASK, ARK, ...).
        which: String,
        /// Parser message.
        reason: String,
    },
    /// A property of the AMD certificate profile does not hold.
    #[error("{which}: {reason}")]
    Profile {
        /// Which certificate.
        which: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate's signature does not verify with the issuer's key.
    #[error("{which}: signature does not verify with the key of {issuer}")]
    Signature {
        /// Which certificate.
        which: String,
        /// The issuer that was tried.
        issuer: String,
    },
    /// Issuer name does not match the issuer's subject.
    #[error("{which}: issuer {actual:?} is not the subject {expected:?} of its issuer certificate")]
    IssuerName {
        /// Which certificate.
        which: String,
        /// The issuer's subject.
        expected: String,
        /// The certificate's issuer field.
        actual: String,
    },
}

/// Public key kinds in the AMD profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA (PKCS#1 RSAPublicKey in `public_key`).
    Rsa,
    /// EC P-384 (uncompressed point in `public_key`).
    EcP384,
    /// Anything else.
    Other(String),
}

/// The signature algorithm of a certificate or CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigAlg {
    /// RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48, trailer 1: AMD's only algorithm.
    RsaPssSha384,
    /// Anything else, with a description.
    Other(String),
}

/// An owned summary of a parsed certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// Role name used in messages ("VCEK", "ASK", "ARK", ...).
    pub which: String,
    /// The DER encoding.
    pub der: Vec<u8>,
    /// SHA-256 of the DER encoding.
    pub fingerprint: Sha256Fingerprint,
    /// X.509 version (2 for v3).
    pub version: u32,
    /// Serial number, big-endian as encoded.
    pub serial: Vec<u8>,
    /// Raw DER of the subject name.
    pub subject_raw: Vec<u8>,
    /// Raw DER of the issuer name.
    pub issuer_raw: Vec<u8>,
    /// Subject rendered as text.
    pub subject: String,
    /// Issuer rendered as text.
    pub issuer: String,
    /// Subject common name.
    pub subject_cn: Option<String>,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// The signed TBSCertificate bytes exactly as in the input.
    pub tbs: Vec<u8>,
    /// Signature algorithm.
    pub sig_alg: SigAlg,
    /// Signature value.
    pub signature: Vec<u8>,
    /// Public key kind.
    pub key_kind: KeyKind,
    /// Public key bytes (RSAPublicKey DER or EC point).
    pub public_key: Vec<u8>,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// Extensions as (OID text, critical, value bytes).
    pub extensions: Vec<(String, bool, Vec<u8>)>,
}

impl From<&AlgorithmIdentifier<'_>> for SigAlg {
    fn from(alg: &AlgorithmIdentifier<'_>) -> SigAlg {
        classify_sig_alg(alg)
    }
}

fn classify_sig_alg(alg: &AlgorithmIdentifier<'_>) -> SigAlg {
    let sha384: Oid<'static> = x509_parser::oid_registry::OID_NIST_HASH_SHA384;
    match SignatureAlgorithm::try_from(alg) {
        Ok(SignatureAlgorithm::RSASSA_PSS(p)) => {
            let mgf_ok = p
                .mask_gen_algorithm()
                .map(|m| m.mgf.to_id_string() == oid::MGF1 && m.hash == sha384)
                .unwrap_or(false);
            if *p.hash_algorithm_oid() == sha384
                && mgf_ok
                && p.salt_length() == 48
                && p.trailer_field() == 1
            {
                SigAlg::RsaPssSha384
            } else {
                SigAlg::Other(format!(
                    "RSASSA-PSS with hash {}, salt {}, trailer {}",
                    p.hash_algorithm_oid(),
                    p.salt_length(),
                    p.trailer_field()
                ))
            }
        }
        _ => SigAlg::Other(alg.algorithm.to_id_string()),
    }
}

/// SHA-256 fingerprint of DER bytes.
pub fn fingerprint(der: &[u8]) -> Sha256Fingerprint {
    let d = digest::digest(&digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Sha256Fingerprint(out)
}

impl CertInfo {
    /// Parses one DER certificate. `which` names it in error messages.
    pub fn from_der(which: &str, der: &[u8]) -> Result<Self, CertError> {
        let perr = |reason: String| CertError::Parse {
            which: which.to_string(),
            reason,
        };
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| perr(e.to_string()))?;
        if !rest.is_empty() {
            return Err(perr(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            )));
        }
        let used = der.len() - rest.len();
        let der = der.get(..used).unwrap_or(der).to_vec();
        let tbs = &cert.tbs_certificate;
        let spki = tbs.public_key();
        let alg_oid = spki.algorithm.algorithm.to_id_string();
        let key_kind = if alg_oid == oid::EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            if curve.as_deref() == Some(oid::SECP384R1) {
                KeyKind::EcP384
            } else {
                KeyKind::Other(format!("EC key on curve {}", curve.unwrap_or_default()))
            }
        } else if alg_oid == oid::RSA_ENCRYPTION || alg_oid == oid::RSASSA_PSS {
            KeyKind::Rsa
        } else {
            KeyKind::Other(alg_oid)
        };
        if cert.tbs_certificate.signature != cert.signature_algorithm {
            return Err(perr(
                "signature algorithm inside the signed part differs from the outer one".into(),
            ));
        }
        let known_critical = [oid::BASIC_CONSTRAINTS, oid::KEY_USAGE];
        if let Some(e) = cert
            .extensions()
            .iter()
            .find(|e| e.critical && !known_critical.contains(&e.oid.to_id_string().as_str()))
        {
            return Err(perr(format!(
                "unknown critical extension {}",
                e.oid.to_id_string()
            )));
        }
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| perr(format!("basicConstraints: {e}")))?
            .map(|bc| bc.value.ca)
            .unwrap_or(false);
        Ok(CertInfo {
            which: which.to_string(),
            fingerprint: fingerprint(&der),
            version: cert.version().0,
            serial: cert.raw_serial().to_vec(),
            subject_raw: tbs.subject().as_raw().to_vec(),
            issuer_raw: tbs.issuer().as_raw().to_vec(),
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            subject_cn: tbs
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string),
            not_before: tbs.validity().not_before.timestamp(),
            not_after: tbs.validity().not_after.timestamp(),
            tbs: tbs.as_ref().to_vec(),
            sig_alg: classify_sig_alg(&cert.signature_algorithm),
            signature: cert.signature_value.data.to_vec(),
            key_kind,
            public_key: spki.subject_public_key.data.to_vec(),
            is_ca,
            extensions: tbs
                .extensions()
                .iter()
                .map(|e| (e.oid.to_id_string(), e.critical, e.value.to_vec()))
                .collect(),
            der,
        })
    }

    /// Serial number as lowercase hex without leading zeros ("0" for zero).
    pub fn serial_hex(&self) -> String {
        serial_hex(&self.serial)
    }

    /// Checks that `issuer` issued this certificate: names chain, AMD's signature algorithm,
    /// and the RSASSA-PSS signature over the exact TBS bytes.
    pub fn verify_issued_by(&self, issuer: &CertInfo) -> Result<(), CertError> {
        if self.issuer_raw != issuer.subject_raw {
            return Err(CertError::IssuerName {
                which: self.which.clone(),
                expected: issuer.subject.clone(),
                actual: self.issuer.clone(),
            });
        }
        verify_pss_sha384(
            &self.which,
            &self.sig_alg,
            &self.tbs,
            &self.signature,
            issuer,
        )
    }

    /// Requires an X.509 v3 certificate signed with AMD's RSASSA-PSS parameters.
    pub fn require_amd_profile(&self) -> Result<(), CertError> {
        if self.version != 2 {
            return Err(self.profile(format!("must be X.509 v3, is v{}", self.version + 1)));
        }
        if let SigAlg::Other(alg) = &self.sig_alg {
            return Err(self.profile(format!(
                "signature algorithm must be RSASSA-PSS SHA-384 (MGF1-SHA-384, salt 48), is {alg}"
            )));
        }
        Ok(())
    }

    /// Builds a profile error for this certificate.
    pub fn profile(&self, reason: String) -> CertError {
        CertError::Profile {
            which: self.which.clone(),
            reason,
        }
    }

    /// The value of an extension by OID text; error on duplicates.
    pub fn extension(&self, oid_text: &str) -> Result<Option<&[u8]>, CertError> {
        let mut found = self.extensions.iter().filter(|(o, _, _)| o == oid_text);
        let first = found.next();
        if found.next().is_some() {
            return Err(self.profile(format!("extension {oid_text} appears more than once")));
        }
        Ok(first.map(|(_, _, v)| v.as_slice()))
    }

    /// Checks the validity window against `now` (Unix seconds).
    pub fn check_validity(&self, now: i64) -> Result<(), (i64, i64)> {
        if now < self.not_before || now > self.not_after {
            Err((self.not_before, self.not_after))
        } else {
            Ok(())
        }
    }
}

/// Verifies an RSASSA-PSS SHA-384 signature by `issuer` over `signed`.
pub fn verify_pss_sha384(
    which: &str,
    alg: &SigAlg,
    signed: &[u8],
    sig: &[u8],
    issuer: &CertInfo,
) -> Result<(), CertError> {
    if let SigAlg::Other(a) = alg {
        return Err(CertError::Profile {
            which: which.to_string(),
            reason: format!("signature algorithm must be RSASSA-PSS SHA-384 (salt 48), is {a}"),
        });
    }
    if issuer.key_kind != KeyKind::Rsa {
        return Err(CertError::Profile {
            which: issuer.which.clone(),
            reason: format!("must have an RSA key, has {:?}", issuer.key_kind),
        });
    }
    UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA384, &issuer.public_key)
        .verify(signed, sig)
        .map_err(|_| CertError::Signature {
            which: which.to_string(),
            issuer: format!(
                "{} ({})",
                issuer.which,
                issuer.subject_cn.as_deref().unwrap_or("?")
            ),
        })
}

/// Lowercase hex of a big-endian serial without leading zeros.
pub fn serial_hex(serial: &[u8]) -> String {
    let full = hex::encode(serial);
    let trimmed = full.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Splits PEM text into DER certificates, or returns the input as one DER certificate.
pub fn pem_or_der_certs(input: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = match std::str::from_utf8(input) {
        Ok(t) if t.contains("-----BEGIN") => t,
        _ => return Ok(vec![input.to_vec()]),
    };
    let mut out = Vec::new();
    for p in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let p = p.map_err(|e| format!("invalid PEM: {e}"))?;
        if p.label == "CERTIFICATE" {
            out.push(p.contents);
        }
    }
    if out.is_empty() {
        return Err("PEM input holds no CERTIFICATE block".to_string());
    }
    Ok(out)
}

/// Encodes DER as a PEM `CERTIFICATE` block.
pub fn to_pem(der: &[u8]) -> String {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap_or_default()
}

/// Extensions AMD puts into a VCEK or VLEK.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndorsementExtensions {
    /// structVersion (0 on Milan/Genoa, 1 on Turin).
    pub struct_version: Option<u64>,
    /// productName, e.g. `Milan-B0`.
    pub product_name: String,
    /// Product parsed from `product_name`.
    pub product: SnpProduct,
    /// blSPL.
    pub bl_spl: u8,
    /// teeSPL.
    pub tee_spl: u8,
    /// snpSPL.
    pub snp_spl: u8,
    /// ucodeSPL.
    pub ucode_spl: u8,
    /// fmcSPL (Turin).
    pub fmc_spl: Option<u8>,
    /// hwID (VCEK): 64 bytes, or 8 on Turin.
    #[serde(serialize_with = "ser_opt_hex")]
    pub hwid: Option<Vec<u8>>,
    /// cspId (VLEK).
    pub csp_id: Option<String>,
}

fn ser_opt_hex<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_str(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

fn der_u8(cert: &CertInfo, name: &str, bytes: &[u8]) -> Result<u8, CertError> {
    <u8 as der::Decode>::from_der(bytes)
        .map_err(|e| cert.profile(format!("extension {name}: not a DER INTEGER 0..=255: {e}")))
}

fn der_ia5(cert: &CertInfo, name: &str, bytes: &[u8]) -> Result<String, CertError> {
    use der::Decode;
    der::asn1::Ia5StringRef::from_der(bytes)
        .map(|s| s.as_str().to_string())
        .map_err(|e| cert.profile(format!("extension {name}: not a DER IA5String: {e}")))
}

/// Product named by a VCEK productName such as `Milan-B0`, `Genoa` or `Turin`.
pub fn product_from_name(name: &str) -> Option<SnpProduct> {
    let base = name.split('-').next().unwrap_or(name);
    base.parse().ok()
}

impl EndorsementExtensions {
    /// Reads AMD's extensions from a VCEK or VLEK.
    pub fn from_cert(cert: &CertInfo) -> Result<Self, CertError> {
        let required = |oid_text: &str, name: &str| -> Result<&[u8], CertError> {
            cert.extension(oid_text)?
                .ok_or_else(|| cert.profile(format!("missing AMD extension {name} ({oid_text})")))
        };
        let product_name = der_ia5(
            cert,
            "productName",
            required(oid::AMD_PRODUCT_NAME, "productName")?,
        )?;
        let product = product_from_name(&product_name).ok_or_else(|| {
            cert.profile(format!(
                "productName {product_name:?} is not Milan, Genoa or Turin"
            ))
        })?;
        let struct_version = match cert.extension(oid::AMD_STRUCT_VERSION)? {
            Some(b) => Some(<u64 as der::Decode>::from_der(b).map_err(|e| {
                cert.profile(format!("extension structVersion: not a DER INTEGER: {e}"))
            })?),
            None => None,
        };
        let fmc_spl = match cert.extension(oid::AMD_FMC_SPL)? {
            Some(b) => Some(der_u8(cert, "fmcSPL", b)?),
            None => None,
        };
        if product.has_fmc() && fmc_spl.is_none() {
            return Err(cert.profile("Turin certificate lacks the fmcSPL extension".to_string()));
        }
        if !product.has_fmc() && fmc_spl.is_some() {
            return Err(cert.profile(format!("{product} certificate must not carry fmcSPL")));
        }
        let csp_id = match cert.extension(oid::AMD_CSP_ID)? {
            Some(b) => Some(der_ia5(cert, "cspId", b)?),
            None => None,
        };
        Ok(EndorsementExtensions {
            struct_version,
            bl_spl: der_u8(cert, "blSPL", required(oid::AMD_BL_SPL, "blSPL")?)?,
            tee_spl: der_u8(cert, "teeSPL", required(oid::AMD_TEE_SPL, "teeSPL")?)?,
            snp_spl: der_u8(cert, "snpSPL", required(oid::AMD_SNP_SPL, "snpSPL")?)?,
            ucode_spl: der_u8(cert, "ucodeSPL", required(oid::AMD_UCODE_SPL, "ucodeSPL")?)?,
            fmc_spl,
            hwid: cert.extension(oid::AMD_HWID)?.map(<[u8]>::to_vec),
            csp_id,
            product_name,
            product,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names() {
        assert_eq!(product_from_name("Milan-B0"), Some(SnpProduct::Milan));
        assert_eq!(product_from_name("Genoa"), Some(SnpProduct::Genoa));
        assert_eq!(product_from_name("Turin"), Some(SnpProduct::Turin));
        assert_eq!(product_from_name("Rome"), None);
    }

    #[test]
    fn serial_hex_trims() {
        assert_eq!(serial_hex(&[0]), "0");
        assert_eq!(serial_hex(&[0x00, 0x01, 0x00, 0x01]), "10001");
        assert_eq!(serial_hex(&[0x02, 0x00, 0x01]), "20001");
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        for input in [&b""[..], &[0x30, 0x82, 0xff, 0xff], &[0x30; 100]] {
            assert!(matches!(
                CertInfo::from_der("VCEK", input),
                Err(CertError::Parse { .. })
            ));
        }
    }
}
