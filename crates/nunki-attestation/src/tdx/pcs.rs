//! Intel Provisioning Certification Service (PCS, API v4) and compatible PCCS caches: URLs and
//! fetching of TDX collateral through an injected [`HttpGet`], so this crate does no network
//! I/O itself (`nunki-collateral` supplies the HTTP client, timeouts, retries and cache).

use crate::snp::kds::{FetchError, HttpGet};

use super::collateral::{CollateralError, TdxCollateral};
use super::quote::TdQuote;
use super::roots::INTEL_SGX_ROOT_CA_CRL_URL;

/// Intel's public PCS.
pub const INTEL_PCS_BASE: &str = "https://api.trustedservices.intel.com";

/// Header carrying the TCB Info signer chain.
pub const TCB_INFO_ISSUER_CHAIN: &str = "TCB-Info-Issuer-Chain";
/// Header carrying the QE Identity signer chain.
pub const QE_IDENTITY_ISSUER_CHAIN: &str = "SGX-Enclave-Identity-Issuer-Chain";
/// Header carrying the PCK CRL issuer chain.
pub const PCK_CRL_ISSUER_CHAIN: &str = "SGX-PCK-CRL-Issuer-Chain";

/// Which intermediate issued a PCK certificate (and hence its CRL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PckCa {
    /// "Intel SGX PCK Platform CA" (multi-package platforms, carries a PIID).
    Platform,
    /// "Intel SGX PCK Processor CA".
    Processor,
}

impl PckCa {
    /// The `ca` query value.
    pub fn query(self) -> &'static str {
        match self {
            PckCa::Platform => "platform",
            PckCa::Processor => "processor",
        }
    }
}

/// A PCS problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcsError {
    /// Fetch failed.
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// A response lacked the issuer-chain header.
    #[error(
        "GET {url}: the response has no {header} header (the HTTP client must pass response headers through)"
    )]
    MissingHeader {
        /// URL.
        url: String,
        /// Header name.
        header: &'static str,
    },
    /// The responses do not make collateral.
    #[error("{0}")]
    Collateral(#[from] CollateralError),
    /// The quote does not say what to fetch.
    #[error("quote: {0}")]
    Quote(String),
}

/// What to fetch collateral for: the platform's FMSPC and its PCK CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformId {
    /// FMSPC, 6 bytes.
    pub fmspc: [u8; 6],
    /// Issuing PCK CA.
    pub ca: PckCa,
}

impl PlatformId {
    /// Reads FMSPC and CA from the PCK certificate embedded in `quote`.
    pub fn from_quote(quote: &TdQuote) -> Result<Self, PcsError> {
        let leaf = quote
            .pck_leaf()
            .ok_or_else(|| PcsError::Quote("no PCK certificate".into()))?;
        let ext = dcap_qvl::intel::parse_pck_extension(leaf)
            .map_err(|e| PcsError::Quote(format!("PCK certificate SGX extension: {e:#}")))?;
        let ca = match dcap_qvl::intel::pck_ca(leaf)
            .map_err(|e| PcsError::Quote(format!("PCK certificate issuer: {e:#}")))?
        {
            dcap_qvl::config::PckCa::Platform => PckCa::Platform,
            dcap_qvl::config::PckCa::Processor => PckCa::Processor,
        };
        Ok(PlatformId {
            fmspc: ext.fmspc,
            ca,
        })
    }
}

/// A PCS (or PCCS) client over an [`HttpGet`].
#[derive(Debug, Clone)]
pub struct Pcs<F> {
    base: String,
    root_ca_crl_url: String,
    http: F,
}

impl<F: HttpGet> Pcs<F> {
    /// A client for Intel's PCS; the root CA CRL comes from the root's distribution point.
    pub fn new(http: F) -> Self {
        Self::with_base(INTEL_PCS_BASE, INTEL_SGX_ROOT_CA_CRL_URL, http)
    }

    /// A client for a PCCS or mirror at `base`, with the root CA CRL at `root_ca_crl_url`
    /// (a PCCS serves it at `<base>/sgx/certification/v4/rootcacrl`).
    pub fn with_base(base: &str, root_ca_crl_url: &str, http: F) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            root_ca_crl_url: root_ca_crl_url.to_string(),
            http,
        }
    }

    /// URL of the TDX TCB Info for `fmspc`.
    pub fn tcb_info_url(&self, fmspc: &[u8; 6]) -> String {
        format!(
            "{}/tdx/certification/v4/tcb?fmspc={}",
            self.base,
            hex::encode_upper(fmspc)
        )
    }

    /// URL of the TD QE Identity.
    pub fn qe_identity_url(&self) -> String {
        format!("{}/tdx/certification/v4/qe/identity", self.base)
    }

    /// URL of the PCK CRL of `ca` (DER).
    pub fn pck_crl_url(&self, ca: PckCa) -> String {
        format!(
            "{}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
            self.base,
            ca.query()
        )
    }

    /// URL of the root CA CRL.
    pub fn root_ca_crl_url(&self) -> &str {
        &self.root_ca_crl_url
    }

    async fn with_header(
        &self,
        url: &str,
        header: &'static str,
    ) -> Result<(Vec<u8>, String), PcsError> {
        let (body, value) = self.http.get_with_header(url, header).await?;
        let value = value.ok_or_else(|| PcsError::MissingHeader {
            url: url.to_string(),
            header,
        })?;
        Ok((body, value))
    }

    /// Fetches everything a quote of `platform` needs.
    pub async fn fetch(&self, platform: &PlatformId) -> Result<TdxCollateral, PcsError> {
        let (tcb, tcb_chain) = self
            .with_header(&self.tcb_info_url(&platform.fmspc), TCB_INFO_ISSUER_CHAIN)
            .await?;
        let (qe, qe_chain) = self
            .with_header(&self.qe_identity_url(), QE_IDENTITY_ISSUER_CHAIN)
            .await?;
        let (pck_crl, pck_crl_chain) = self
            .with_header(&self.pck_crl_url(platform.ca), PCK_CRL_ISSUER_CHAIN)
            .await?;
        let root_crl = self.http.get(&self.root_ca_crl_url).await?;
        Ok(TdxCollateral::from_pcs_responses(
            &tcb,
            &tcb_chain,
            &qe,
            &qe_chain,
            pck_crl,
            &pck_crl_chain,
            root_crl,
        )?)
    }

    /// Fetches the collateral for the platform that produced `quote`.
    pub async fn fetch_for_quote(&self, quote: &TdQuote) -> Result<TdxCollateral, PcsError> {
        self.fetch(&PlatformId::from_quote(quote)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snp::kds::GetFuture;

    struct NoHeaders;
    impl HttpGet for NoHeaders {
        fn get<'a>(&'a self, _url: &'a str) -> GetFuture<'a> {
            Box::pin(async { Ok(b"{}".to_vec()) })
        }
    }

    #[test]
    fn urls() {
        let p = Pcs::new(NoHeaders);
        assert_eq!(
            p.tcb_info_url(&[0xb0, 0xc0, 0x6f, 0, 0, 0]),
            "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=B0C06F000000"
        );
        assert_eq!(
            p.qe_identity_url(),
            "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity"
        );
        assert_eq!(
            p.pck_crl_url(PckCa::Platform),
            "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
        );
        let q = Pcs::with_base(
            "http://127.0.0.1:8081/",
            "http://127.0.0.1:8081/sgx/certification/v4/rootcacrl",
            NoHeaders,
        );
        assert_eq!(
            q.qe_identity_url(),
            "http://127.0.0.1:8081/tdx/certification/v4/qe/identity"
        );
    }

    #[test]
    fn a_client_without_headers_fails_naming_the_header() {
        let rt = tokio_free_block_on(Pcs::new(NoHeaders).fetch(&PlatformId {
            fmspc: [0; 6],
            ca: PckCa::Processor,
        }));
        let err = rt.unwrap_err();
        assert!(err.to_string().contains("TCB-Info-Issuer-Chain"), "{err}");
    }

    /// Polls a future that never waits (the test client answers immediately).
    fn tokio_free_block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
