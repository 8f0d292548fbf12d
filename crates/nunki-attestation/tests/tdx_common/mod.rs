//! Shared helpers of the TDX tests and bench: the shared test vectors and their collateral
//! pairings (see `shared/testdata/tdx/README.md`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code
)]

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nunki_attestation::snp::certs::{pem_or_der_certs, to_pem};
use nunki_attestation::tdx::collateral::{CollateralParts, split_signed};
use nunki_attestation::tdx::{TdQuote, TdxCollateral};
use nunki_attestation::time_util::parse_rfc3339;

/// `$NUNKI_TESTDATA/tdx`, default `<crate>/../../../shared/testdata/tdx`.
pub fn dir() -> PathBuf {
    std::env::var_os("NUNKI_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"))
        .join("tdx")
}

pub fn read(rel: &str) -> Vec<u8> {
    let p = dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn at(s: &str) -> SystemTime {
    parse_rfc3339(s).unwrap()
}

/// The collateral JSON shipped with a dcap-qvl vector.
pub fn dcap_collateral(rel: &str) -> TdxCollateral {
    TdxCollateral::from_json(&read(rel)).unwrap()
}

/// The PCK CA and root of a quote's embedded chain, as PEM (the PCK CRL's issuer chain).
pub fn pck_ca_chain_pem(quote: &[u8]) -> String {
    let q = TdQuote::parse(quote).unwrap();
    q.pck_chain[1..].iter().map(|d| to_pem(d)).collect()
}

/// Collateral assembled from PCS response files (TCB Info / QE Identity bodies), an issuer
/// chain for both, and two DER CRLs.
pub fn assembled(
    tcb_body: &str,
    qe_body: &str,
    issuer_chain: &str,
    pck_crl: Vec<u8>,
    pck_crl_issuer_chain: String,
    root_ca_crl: Vec<u8>,
) -> TdxCollateral {
    let (tcb_info, tcb_info_signature) = split_signed(&read(tcb_body), "tcbInfo").unwrap();
    let (qe_identity, qe_identity_signature) =
        split_signed(&read(qe_body), "enclaveIdentity").unwrap();
    TdxCollateral::new(CollateralParts {
        pck_crl_issuer_chain,
        root_ca_crl,
        pck_crl,
        tcb_info_issuer_chain: issuer_chain.to_string(),
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain: issuer_chain.to_string(),
        qe_identity,
        qe_identity_signature,
    })
}

/// One pairing of the README table.
pub struct Pairing {
    pub quote: &'static str,
    pub raw: Vec<u8>,
    pub collateral: TdxCollateral,
    pub now: SystemTime,
}

fn chain_2018() -> String {
    String::from_utf8(read("go-tdx-guest/tcb_info_issuer_chain_2018.pem")).unwrap()
}

/// The go-tdx-guest 2023 collateral (FMSPC 50806f000000) for `quote`.
pub fn collateral_2023(quote: &[u8]) -> TdxCollateral {
    assembled(
        "go-tdx-guest/sample_tcbInfo_response",
        "go-tdx-guest/sample_qeIdentity_response",
        &chain_2018(),
        read("go-tdx-guest/pckcrl"),
        pck_ca_chain_pem(quote),
        read("go-tdx-guest/rootcrl.der"),
    )
}

/// The 2026 v5 TCB Info (FMSPC 90c06f000000) with QE identity, CRLs and chains of the dcap-qvl
/// "outdated" collateral.
pub fn collateral_2026_v5() -> TdxCollateral {
    let base = dcap_collateral("dcap-qvl/tdx_quote_outdated_collateral.json").into_parts();
    let (tcb_info, tcb_info_signature) =
        split_signed(&read("go-tdx-guest/sample_tcbinfo_response_v5"), "tcbInfo").unwrap();
    TdxCollateral::new(CollateralParts {
        tcb_info,
        tcb_info_signature,
        ..base
    })
}

/// trustee's 2025-10 TCB Info and QE identity (FMSPC 00a06d080000) with the only CRLs there
/// are (not valid at that time) and the 2025 signer chain.
pub fn collateral_trustee_2025() -> TdxCollateral {
    let base = dcap_collateral("dcap-qvl/tdx_quote_outdated_collateral.json").into_parts();
    let (tcb_info, tcb_info_signature) =
        split_signed(&read("trustee/tcbInfo.json"), "tcbInfo").unwrap();
    let (qe_identity, qe_identity_signature) =
        split_signed(&read("trustee/enclaveIdentity.json"), "enclaveIdentity").unwrap();
    TdxCollateral::new(CollateralParts {
        tcb_info,
        tcb_info_signature,
        qe_identity,
        qe_identity_signature,
        ..base
    })
}

pub fn pairing(quote: &'static str) -> Pairing {
    let raw = read(quote);
    let (collateral, now) = match quote {
        "dcap-qvl/tdx_quote" => (
            dcap_collateral("dcap-qvl/tdx_quote_collateral.json"),
            "2025-07-01T00:00:00Z",
        ),
        "dcap-qvl/tdx_quote_outdated" => (
            dcap_collateral("dcap-qvl/tdx_quote_outdated_collateral.json"),
            "2026-03-01T00:00:00Z",
        ),
        "go-tdx-guest/tdx_prod_quote_SPR_E4.dat" | "trustee/tdx_quote_4.dat" => {
            (collateral_2023(&raw), "2023-07-01T00:00:00Z")
        }
        "go-tdx-guest/quote_v5_sample.dat" | "trustee/tdx_quote_5.dat" => {
            (collateral_2026_v5(), "2026-02-25T00:00:00Z")
        }
        "trustee/tdx_quote_6.dat" => (collateral_trustee_2025(), "2025-11-01T00:00:00Z"),
        other => panic!("no pairing for {other}"),
    };
    Pairing {
        quote,
        raw,
        collateral,
        now: at(now),
    }
}

/// The quotes of the README table.
pub const QUOTES: [&str; 7] = [
    "dcap-qvl/tdx_quote",
    "dcap-qvl/tdx_quote_outdated",
    "go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
    "trustee/tdx_quote_4.dat",
    "go-tdx-guest/quote_v5_sample.dat",
    "trustee/tdx_quote_5.dat",
    "trustee/tdx_quote_6.dat",
];

/// Replaces the PEM PCK chain embedded in a quote (certification data type 5 inside type 6),
/// fixing up the three length fields; trailing padding is dropped.
pub fn replace_pck_chain(raw: &[u8], pem: &str) -> Vec<u8> {
    let q = TdQuote::parse(raw).unwrap();
    let u16_at = |i: usize| u16::from_le_bytes(raw[i..i + 2].try_into().unwrap()) as usize;
    let sig_data = q.signed_len + 4;
    let outer_type = sig_data + 128;
    assert_eq!(u16_at(outer_type), 6, "QE report certification data");
    let inner = outer_type + 6;
    let auth_len_at = inner + 384 + 64;
    let inner_type = auth_len_at + 2 + u16_at(auth_len_at);
    assert_eq!(u16_at(inner_type), 5, "PCK chain certification data");
    let pem_at = inner_type + 6;
    let mut out = raw[..pem_at].to_vec();
    out.extend_from_slice(pem.as_bytes());
    let end = out.len();
    let put = |out: &mut Vec<u8>, at: usize, v: usize| {
        out[at..at + 4].copy_from_slice(&u32::try_from(v).unwrap().to_le_bytes());
    };
    put(&mut out, inner_type + 2, pem.len());
    put(&mut out, outer_type + 2, end - inner);
    put(&mut out, q.signed_len, end - sig_data);
    out
}

/// DER certificates of a PEM chain.
pub fn certs(pem: &str) -> Vec<Vec<u8>> {
    pem_or_der_certs(pem.as_bytes()).unwrap()
}
