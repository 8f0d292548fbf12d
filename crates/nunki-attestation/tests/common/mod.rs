//! Shared helpers for tests: locating `shared/testdata` and loading SNP vectors.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use nunki_attestation::time_util::parse_rfc3339;
use serde_json::Value;

/// `$NUNKI_TESTDATA`, else `shared/testdata` beside the checkout.
pub fn testdata() -> PathBuf {
    if let Some(d) = std::env::var_os("NUNKI_TESTDATA") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata")
}

pub fn snp_dir() -> PathBuf {
    testdata().join("snp")
}

pub fn expected() -> Value {
    let p = snp_dir().join("expected.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

pub struct Vector {
    pub name: String,
    pub report: Vec<u8>,
    pub cert: Vec<u8>,
    pub exp: Value,
}

impl Vector {
    /// A time safely inside the certificate's validity window.
    pub fn now(&self) -> SystemTime {
        let nb = self.exp["cert_not_before"]
            .as_str()
            .unwrap()
            .replace(' ', "T");
        parse_rfc3339(&nb).unwrap() + Duration::from_secs(30 * 24 * 3600)
    }
}

pub fn load_cert(bytes: &[u8]) -> Vec<u8> {
    nunki_attestation::snp::certs::pem_or_der_certs(bytes)
        .unwrap()
        .remove(0)
}

/// Every vector that has a report.
pub fn vectors() -> Vec<Vector> {
    let exp = expected();
    let mut out = Vec::new();
    for (name, v) in exp["vectors"].as_object().unwrap() {
        let Some(rf) = v["report_file"].as_str() else {
            continue;
        };
        let dir = snp_dir().join(name);
        let raw = std::fs::read(dir.join(rf)).unwrap();
        let (_, report) = nunki_attestation::Report::parse_binary_or_hex(&raw).unwrap();
        let cert = load_cert(&std::fs::read(dir.join(v["cert_file"].as_str().unwrap())).unwrap());
        out.push(Vector {
            name: name.clone(),
            report,
            cert,
            exp: v.clone(),
        });
    }
    assert!(
        out.len() >= 9,
        "expected at least 9 SNP vectors in {}",
        snp_dir().display()
    );
    out
}

pub fn vector(name: &str) -> Vector {
    vectors().into_iter().find(|v| v.name == name).unwrap()
}

pub fn chain_pem(file: &str) -> Vec<Vec<u8>> {
    nunki_attestation::snp::certs::pem_or_der_certs(
        &std::fs::read(snp_dir().join("amd").join(file)).unwrap(),
    )
    .unwrap()
}

pub fn at(s: &str) -> SystemTime {
    parse_rfc3339(s).unwrap()
}
