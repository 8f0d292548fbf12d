//! Nonce transport: in the client's ALPN list, or in the CN of the server's CertificateRequest DN.

use std::str::FromStr;

use der::Encode;
use x509_parser::prelude::FromDer;

/// Length of an aTLS nonce.
pub const NONCE_LEN: usize = 32;
/// ALPN / CN prefix of version 1.
pub const PREFIX_V1: &str = "atls:v1:nonce:";

/// A fresh random nonce.
pub fn fresh() -> Result<[u8; NONCE_LEN], aws_lc_rs::error::Unspecified> {
    use aws_lc_rs::rand::SecureRandom;
    let mut n = [0u8; NONCE_LEN];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut n)?;
    Ok(n)
}

/// `atls:v1:nonce:<hex>` as bytes.
pub fn encode(nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    format!("{PREFIX_V1}{}", hex::encode(nonce)).into_bytes()
}

/// Parses `atls:v1:nonce:<64 lowercase hex>`; anything else is `None`.
pub fn decode(value: &[u8]) -> Option<[u8; NONCE_LEN]> {
    let s = std::str::from_utf8(value).ok()?;
    let h = s.strip_prefix(PREFIX_V1)?;
    if h.len() != 2 * NONCE_LEN || h.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; NONCE_LEN];
    hex::decode_to_slice(h, &mut out).ok()?;
    Some(out)
}

/// Finds the nonce in a client's ALPN list.
pub fn from_alpn<'a>(mut protocols: impl Iterator<Item = &'a [u8]>) -> Option<[u8; NONCE_LEN]> {
    protocols.find_map(decode)
}

/// The DER Name (`CN=atls:v1:nonce:<hex>`) a server puts into its CertificateRequest.
pub fn to_dn(nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>, der::Error> {
    let cn = format!("CN={PREFIX_V1}{}", hex::encode(nonce));
    x509_cert::name::Name::from_str(&cn)?.to_der()
}

/// Finds the nonce in the DNs of a CertificateRequest.
pub fn from_dns(dns: &[&[u8]]) -> Option<[u8; NONCE_LEN]> {
    dns.iter().find_map(|dn| {
        let (_, name) = x509_parser::x509::X509Name::from_der(dn).ok()?;
        let cn = name.iter_common_name().next()?.as_str().ok()?.to_string();
        decode(cn.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_round_trip_and_rejects() {
        let n = [7u8; NONCE_LEN];
        let enc = encode(&n);
        assert_eq!(decode(&enc), Some(n));
        assert_eq!(from_alpn([&b"h2"[..], &enc].into_iter()), Some(n));
        assert_eq!(decode(b"atls:v1:nonce:00"), None);
        assert_eq!(
            decode(format!("atls:v2:nonce:{}", hex::encode(n)).as_bytes()),
            None
        );
        let lettered = [0xabu8; NONCE_LEN];
        assert_eq!(
            decode(format!("{PREFIX_V1}{}", hex::encode(lettered).to_uppercase()).as_bytes()),
            None
        );
        assert_eq!(from_alpn([&b"h2"[..]].into_iter()), None);
    }

    #[test]
    fn dn_round_trip() {
        let n = [0xabu8; NONCE_LEN];
        let dn = to_dn(&n).unwrap();
        assert_eq!(from_dns(&[&dn]), Some(n));
        assert_eq!(from_dns(&[b"garbage"]), None);
    }
}
