//! Subject alternative names as manifests write them.
//!
//! A manifest SAN is a plain string: an IPv4/IPv6 literal becomes an IP SAN, a string with
//! `://` a URI SAN, and anything else a DNS SAN. DNS names are checked against the presented
//! identifier rules of RFC 5280/6125 as rustls-webpki applies them (letters, digits, `-`, `_`;
//! labels of 1..=63 octets not starting or ending with `-`; at most 253 octets; no trailing dot;
//! last label not all-numeric), plus a leading `*.` wildcard label and the bare `*` manifests
//! use by default. Rejecting bad names here keeps garbage out of certificates that verifiers
//! would otherwise silently skip.
//!
//! The bare `*` stays in the certificate. rustls-webpki treats it as a malformed presented name
//! (a wildcard must be `*.` plus at least two labels), skips it and goes on with the other SANs;
//! OpenSSL 3 verifies such a certificate, also with `-x509_strict`, `-purpose sslserver|sslclient`
//! and `-verify_hostname`. Neither lets `*` match any name, so it grants nothing, and keeping it
//! makes the certificate say what the manifest says (`tests/webpki.rs`, `tests/openssl.rs`).

use std::net::IpAddr;

use rcgen::SanType;
use rcgen::string::Ia5String;

use crate::error::CaError;

/// One parsed subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum San {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
}

impl San {
    /// Parses a manifest SAN string.
    pub(crate) fn parse(s: &str) -> Result<Self, CaError> {
        let invalid = |reason| CaError::InvalidSan {
            san: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        if s.contains("://") {
            check_uri(s).map_err(invalid)?;
            return Ok(Self::Uri(s.to_owned()));
        }
        check_dns_name(s).map_err(invalid)?;
        Ok(Self::Dns(s.to_owned()))
    }

    /// The bare `*` manifests use to mean "any name".
    pub(crate) fn is_bare_wildcard(&self) -> bool {
        matches!(self, Self::Dns(name) if name == "*")
    }

    /// The rcgen form; infallible for values `parse` accepted, errors kept for safety.
    pub(crate) fn to_rcgen(&self) -> Result<SanType, CaError> {
        let ia5 = |s: &str| {
            Ia5String::try_from(s).map_err(|_| CaError::InvalidSan {
                san: s.to_owned(),
                reason: "not an IA5 (ASCII) string",
            })
        };
        Ok(match self {
            Self::Dns(name) => SanType::DnsName(ia5(name)?),
            Self::Uri(uri) => SanType::URI(ia5(uri)?),
            Self::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name == "*" {
        return Ok(());
    }
    if name.len() > 253 {
        return Err("DNS name longer than 253 octets");
    }
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.ends_with('.') {
        return Err("DNS name must not end with a dot");
    }
    let mut last_all_numeric = false;
    for label in rest.split('.') {
        if label.is_empty() {
            return Err("DNS name has an empty label");
        }
        if label.len() > 63 {
            return Err("DNS label longer than 63 octets");
        }
        if label.contains('*') {
            return Err("wildcard allowed only as the whole leftmost label");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("DNS name may contain only letters, digits, '-', '_' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("DNS label must not start or end with '-'");
        }
        last_all_numeric = label.bytes().all(|b| b.is_ascii_digit());
    }
    if last_all_numeric {
        return Err("last DNS label must not be all-numeric (not an IP address either)");
    }
    Ok(())
}

fn check_uri(uri: &str) -> Result<(), &'static str> {
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("URI may contain only printable ASCII without spaces");
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err("URI without '://'");
    };
    let mut chars = scheme.chars();
    let valid_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return Err("URI scheme must be a letter followed by letters, digits, '+', '-' or '.'");
    }
    if rest.is_empty() {
        return Err("URI has nothing after '://'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn dns(s: &str) -> San {
        San::Dns(s.to_owned())
    }

    #[test]
    fn classifies() {
        let cases = [
            ("web", dns("web")),
            (
                "web.default.svc.cluster.local",
                dns("web.default.svc.cluster.local"),
            ),
            ("Web-1_x.example", dns("Web-1_x.example")),
            ("*.example", dns("*.example")),
            ("*.svc.cluster.local", dns("*.svc.cluster.local")),
            ("*", dns("*")),
            ("10.0.0.1", San::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))),
            ("::1", San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))),
            ("fd00::17", San::Ip("fd00::17".parse().unwrap())),
            (
                "spiffe://nunki/ns/default/sa/web",
                San::Uri("spiffe://nunki/ns/default/sa/web".into()),
            ),
            (
                "https://web.example:8443/x?y=z",
                San::Uri("https://web.example:8443/x?y=z".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(San::parse(input).unwrap(), expected, "{input}");
            San::parse(input).unwrap().to_rcgen().unwrap();
        }
    }

    #[test]
    fn rejects() {
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 26].join(".");
        for input in [
            "",
            " web",
            "web ",
            "we b",
            "wéb",
            "web.",
            ".web",
            "a..b",
            "-web",
            "web-",
            "web.-x",
            "w*b",
            "*web",
            "web.*",
            "*.*.example",
            "**",
            "*.",
            "1.2.3",
            "10.0.0.256",
            "example.123",
            "fe80::1%eth0",
            long_label.as_str(),
            long_name.as_str(),
            "://x",
            "1http://x",
            "spiffe://",
            "http://a b",
            "http://ä",
        ] {
            let err = San::parse(input).unwrap_err();
            assert!(
                matches!(&err, CaError::InvalidSan { san, .. } if san == input),
                "{input}: {err}"
            );
        }
    }

    #[test]
    fn label_and_name_limits_are_inclusive() {
        San::parse(&"a".repeat(63)).unwrap();
        let name = format!("{}.{}", ["abcdefghi"; 24].join("."), "abcdefghijkl");
        assert_eq!(name.len(), 252);
        San::parse(&name).unwrap();
    }

    #[test]
    fn bare_wildcard_is_recognised() {
        assert!(San::parse("*").unwrap().is_bare_wildcard());
        assert!(!San::parse("*.example").unwrap().is_bare_wildcard());
        assert!(!San::parse("web").unwrap().is_bare_wildcard());
    }
}
