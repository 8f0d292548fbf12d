//! Subject alternative names of a policy entry: DNS names, IP addresses and URIs.
//!
//! The manifest keeps SANs as strings (that is what the owner wrote and what is hashed); this
//! module decides which kind each one is, so the validator and the CA that puts them into leaf
//! certificates agree.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Longest DNS name in text form (RFC 1035 §2.3.4 minus the root label).
const MAX_DNS_NAME: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_DNS_LABEL: usize = 63;

/// One subject alternative name, classified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum San {
    /// A DNS name, possibly `*` or with a leading `*.` wildcard label.
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A URI with a scheme, such as `spiffe://acme.com/billing`.
    Uri(String),
}

/// Why a string is not a valid SAN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SanError {
    /// The string is empty.
    #[error("it is empty")]
    Empty,
    /// The DNS name is longer than 253 characters.
    #[error("a DNS name has at most {MAX_DNS_NAME} characters, this one has {len}")]
    DnsNameTooLong {
        /// Length of the name.
        len: usize,
    },
    /// Two dots in a row, or a leading or trailing dot.
    #[error("it has an empty DNS label (a leading, trailing or doubled dot)")]
    EmptyLabel,
    /// A label is longer than 63 characters.
    #[error("DNS label {index} has {len} characters, at most {MAX_DNS_LABEL} are allowed")]
    LabelTooLong {
        /// Zero-based position of the label.
        index: usize,
        /// Length of the label.
        len: usize,
    },
    /// A label contains a character other than a letter, digit or hyphen.
    #[error("it contains {ch:?}; DNS labels may contain only letters, digits and '-'")]
    InvalidCharacter {
        /// The offending character.
        ch: char,
    },
    /// A label starts or ends with a hyphen.
    #[error("DNS label {index} starts or ends with '-'")]
    LabelHyphen {
        /// Zero-based position of the label.
        index: usize,
    },
    /// `*` somewhere other than as the whole leftmost label.
    #[error(
        "a wildcard may only be the whole leftmost label (\"*.example.com\") or the whole SAN (\"*\")"
    )]
    MisplacedWildcard,
    /// The last label is all digits: not a host name (RFC 3696 §2) and not a valid IP either.
    #[error("its last label is all digits, so it is neither a host name nor a valid IP address")]
    NumericTopLabel,
    /// The URI scheme is empty or has characters RFC 3986 does not allow.
    #[error("the URI scheme must start with a letter followed by letters, digits, '+', '-' or '.'")]
    InvalidScheme,
    /// Nothing follows `scheme://`.
    #[error("the URI has nothing after \"://\"")]
    EmptyUri,
    /// The URI contains a character that must be percent-encoded.
    #[error("the URI contains {ch:?}, which must be percent-encoded")]
    InvalidUriCharacter {
        /// The offending character.
        ch: char,
    },
    /// A `%` not followed by two hex digits.
    #[error("the URI has a '%' that is not followed by two hex digits")]
    InvalidPercentEncoding,
}

impl San {
    /// Classifies and checks one SAN string.
    pub fn parse(s: &str) -> Result<San, SanError> {
        if s.is_empty() {
            return Err(SanError::Empty);
        }
        if s == "*" {
            return Ok(San::Dns(s.to_string()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        // "://" rather than a bare ':' keeps a mistyped "host:port" from passing as a URI.
        if let Some((scheme, rest)) = s.split_once("://") {
            check_uri(scheme, rest)?;
            return Ok(San::Uri(s.to_string()));
        }
        check_dns_name(s)?;
        Ok(San::Dns(s.to_string()))
    }
}

impl FromStr for San {
    type Err = SanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        San::parse(s)
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(s) | San::Uri(s) => f.write_str(s),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

fn check_dns_name(s: &str) -> Result<(), SanError> {
    if s.len() > MAX_DNS_NAME {
        return Err(SanError::DnsNameTooLong { len: s.len() });
    }
    let rest = s.strip_prefix("*.").unwrap_or(s);
    let mut last = "";
    for (index, label) in rest.split('.').enumerate() {
        if label.is_empty() {
            return Err(SanError::EmptyLabel);
        }
        if let Some(ch) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(if ch == '*' {
                SanError::MisplacedWildcard
            } else {
                SanError::InvalidCharacter { ch }
            });
        }
        if label.len() > MAX_DNS_LABEL {
            return Err(SanError::LabelTooLong {
                index,
                len: label.len(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(SanError::LabelHyphen { index });
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SanError::NumericTopLabel);
    }
    Ok(())
}

fn check_uri(scheme: &str, rest: &str) -> Result<(), SanError> {
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
        return Err(SanError::InvalidScheme);
    }
    if rest.is_empty() {
        return Err(SanError::EmptyUri);
    }
    let mut chars = rest.chars();
    while let Some(ch) = chars.next() {
        if ch == '%' {
            let hex_pair = chars.next().is_some_and(|c| c.is_ascii_hexdigit())
                && chars.next().is_some_and(|c| c.is_ascii_hexdigit());
            if !hex_pair {
                return Err(SanError::InvalidPercentEncoding);
            }
            continue;
        }
        // RFC 3986 unreserved and reserved characters; everything else needs percent-encoding.
        let allowed = ch.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=".contains(ch);
        if !allowed {
            return Err(SanError::InvalidUriCharacter { ch });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contrast_examples() {
        assert_eq!(San::parse("web").unwrap(), San::Dns("web".into()));
        assert_eq!(San::parse("*").unwrap(), San::Dns("*".into()));
        assert_eq!(
            San::parse("*.svc.cluster.local").unwrap(),
            San::Dns("*.svc.cluster.local".into())
        );
        assert_eq!(
            San::parse("203.0.113.34").unwrap(),
            San::Ip("203.0.113.34".parse().unwrap())
        );
        assert_eq!(
            San::parse("2001:db8::1").unwrap(),
            San::Ip("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            San::parse("spiffe://acme.com/billing/payments").unwrap(),
            San::Uri("spiffe://acme.com/billing/payments".into())
        );
        assert!(matches!(
            San::parse("https://example.com:8443/a%20b?x=1#f").unwrap(),
            San::Uri(_)
        ));
        assert!(San::parse("web-0.web.default.svc").is_ok());
        assert!(San::parse(&format!("{}.com", "a".repeat(63))).is_ok());
    }

    #[test]
    fn rejects_each_dns_mistake() {
        assert_eq!(San::parse(""), Err(SanError::Empty));
        assert_eq!(San::parse("a..b"), Err(SanError::EmptyLabel));
        assert_eq!(San::parse(".a"), Err(SanError::EmptyLabel));
        assert_eq!(San::parse("a."), Err(SanError::EmptyLabel));
        assert_eq!(San::parse("*."), Err(SanError::EmptyLabel));
        assert_eq!(
            San::parse("web server"),
            Err(SanError::InvalidCharacter { ch: ' ' })
        );
        assert_eq!(
            San::parse("under_score"),
            Err(SanError::InvalidCharacter { ch: '_' })
        );
        assert_eq!(
            San::parse("web:8080"),
            Err(SanError::InvalidCharacter { ch: ':' })
        );
        assert_eq!(San::parse("-web"), Err(SanError::LabelHyphen { index: 0 }));
        assert_eq!(
            San::parse("a.web-"),
            Err(SanError::LabelHyphen { index: 1 })
        );
        assert_eq!(San::parse("a.*.com"), Err(SanError::MisplacedWildcard));
        assert_eq!(San::parse("w*.com"), Err(SanError::MisplacedWildcard));
        assert_eq!(San::parse("**"), Err(SanError::MisplacedWildcard));
        assert_eq!(San::parse("10.0.0.256"), Err(SanError::NumericTopLabel));
        assert_eq!(
            San::parse(&format!("{}.com", "a".repeat(64))),
            Err(SanError::LabelTooLong { index: 0, len: 64 })
        );
        let long = ["abcdefghi"; 26].join(".");
        assert_eq!(
            San::parse(&long),
            Err(SanError::DnsNameTooLong { len: long.len() })
        );
        assert_eq!(
            San::parse("wéb"),
            Err(SanError::InvalidCharacter { ch: 'é' })
        );
    }

    #[test]
    fn rejects_each_uri_mistake() {
        assert_eq!(San::parse("://x"), Err(SanError::InvalidScheme));
        assert_eq!(San::parse("1http://x"), Err(SanError::InvalidScheme));
        assert_eq!(San::parse("spiffe://"), Err(SanError::EmptyUri));
        assert_eq!(
            San::parse("spiffe://acme.com/a b"),
            Err(SanError::InvalidUriCharacter { ch: ' ' })
        );
        assert_eq!(
            San::parse("https://x/%zz"),
            Err(SanError::InvalidPercentEncoding)
        );
        assert_eq!(
            San::parse("https://x/%4"),
            Err(SanError::InvalidPercentEncoding)
        );
    }

    #[test]
    fn display_is_the_input() {
        for s in ["web", "*", "::1", "spiffe://a/b"] {
            assert_eq!(San::parse(s).unwrap().to_string(), s);
        }
    }
}
