//! AMD Key Distribution Service (KDS): URLs and fetching of VCEKs, certificate chains and CRLs
//! through an injected HTTP client ([`HttpGet`]), so this crate does no network I/O itself.

use std::future::Future;
use std::pin::Pin;

use nunki_manifest::SnpProduct;

use super::certs;
use super::report::Report;
use super::tcb::TcbLayout;
use super::verify::SignerKind;

/// The public AMD KDS.
pub const AMD_KDS_BASE: &str = "https://kdsintf.amd.com";

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The server answered with a non-success status.
    #[error("GET {url}: HTTP status {status}")]
    Status {
        /// URL.
        url: String,
        /// Status code.
        status: u16,
    },
    /// No answer in time.
    #[error("GET {url}: timed out after {seconds} s")]
    Timeout {
        /// URL.
        url: String,
        /// Timeout.
        seconds: u64,
    },
    /// Connection or protocol failure.
    #[error("GET {url}: {reason}")]
    Transport {
        /// URL.
        url: String,
        /// What failed.
        reason: String,
    },
}

impl FetchError {
    /// Whether retrying may help (timeouts, transport errors, 429 and 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status == 429 || *status >= 500,
            FetchError::Timeout { .. } | FetchError::Transport { .. } => true,
        }
    }
}

/// Boxed future returned by [`HttpGet::get`].
pub type GetFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, FetchError>> + Send + 'a>>;

/// Boxed future returned by [`HttpGet::get_with_header`]: the body and the header's value.
pub type GetWithHeaderFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(Vec<u8>, Option<String>), FetchError>> + Send + 'a>>;

/// A minimal HTTP GET client, injected so tests and offline use can replace the network.
pub trait HttpGet: Send + Sync {
    /// Fetches `url` and returns the body of a 2xx response.
    fn get<'a>(&'a self, url: &'a str) -> GetFuture<'a>;

    /// Fetches `url` and also returns the value of the response header `header` (Intel PCS
    /// sends issuer chains in headers). The default cannot see headers and returns `None`.
    fn get_with_header<'a>(&'a self, url: &'a str, header: &'a str) -> GetWithHeaderFuture<'a> {
        let _ = header;
        Box::pin(async move { Ok((self.get(url).await?, None)) })
    }
}

/// A KDS problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KdsError {
    /// Fetch failed.
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// The body was not what KDS serves.
    #[error("KDS response from {url}: {reason}")]
    Body {
        /// URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The request cannot be served by KDS.
    #[error("{0}")]
    Unsupported(String),
}

/// A KDS client over an [`HttpGet`].
#[derive(Debug, Clone)]
pub struct Kds<F> {
    base: String,
    http: F,
}

fn key_path(signer: SignerKind) -> &'static str {
    match signer {
        SignerKind::Vcek => "vcek",
        SignerKind::Vlek => "vlek",
    }
}

impl<F: HttpGet> Kds<F> {
    /// A client for the public AMD KDS.
    pub fn new(http: F) -> Self {
        Self::with_base(AMD_KDS_BASE, http)
    }

    /// A client for a KDS mirror (or a test server) at `base`.
    pub fn with_base(base: &str, http: F) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// URL of the VCEK for a report's chip and REPORTED_TCB.
    pub fn vcek_url(&self, product: SnpProduct, report: &Report) -> String {
        let tcb = report.reported_tcb.decode(TcbLayout::for_product(product));
        let chip = report.chip_id.as_bytes();
        let (hwid, fmc) = if product.has_fmc() {
            (
                hex::encode(chip.get(..8).unwrap_or_default()),
                tcb.fmc.map(|f| format!("fmcSPL={f:02}&")),
            )
        } else {
            (hex::encode(chip), None)
        };
        format!(
            "{}/vcek/v1/{}/{}?{}blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
            self.base,
            product.name(),
            hwid,
            fmc.unwrap_or_default(),
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode
        )
    }

    /// URL of the intermediate + ARK bundle.
    pub fn cert_chain_url(&self, product: SnpProduct, signer: SignerKind) -> String {
        format!(
            "{}/{}/v1/{}/cert_chain",
            self.base,
            key_path(signer),
            product.name()
        )
    }

    /// URL of the ARK-signed CRL.
    pub fn crl_url(&self, product: SnpProduct, signer: SignerKind) -> String {
        format!(
            "{}/{}/v1/{}/crl",
            self.base,
            key_path(signer),
            product.name()
        )
    }

    /// Fetches the VCEK (DER) for a report. VLEKs are not published by KDS.
    pub async fn fetch_vcek(
        &self,
        product: SnpProduct,
        report: &Report,
    ) -> Result<Vec<u8>, KdsError> {
        if report.chip_id.is_zero() {
            return Err(KdsError::Unsupported(
                "the report's CHIP_ID is masked (all zero), so its VCEK cannot be looked up; supply the certificate from the host".into(),
            ));
        }
        let url = self.vcek_url(product, report);
        let body = self.http.get(&url).await?;
        let certs = certs::pem_or_der_certs(&body).map_err(|reason| KdsError::Body {
            url: url.clone(),
            reason,
        })?;
        certs.into_iter().next().ok_or(KdsError::Body {
            url,
            reason: "empty body".into(),
        })
    }

    /// Fetches the intermediate and the ARK (DER each, intermediate first).
    pub async fn fetch_cert_chain(
        &self,
        product: SnpProduct,
        signer: SignerKind,
    ) -> Result<Vec<Vec<u8>>, KdsError> {
        let url = self.cert_chain_url(product, signer);
        let body = self.http.get(&url).await?;
        let certs = certs::pem_or_der_certs(&body).map_err(|reason| KdsError::Body {
            url: url.clone(),
            reason,
        })?;
        if certs.len() != 2 {
            return Err(KdsError::Body {
                url,
                reason: format!(
                    "expected 2 PEM certificates (intermediate, ARK), got {}",
                    certs.len()
                ),
            });
        }
        Ok(certs)
    }

    /// Fetches the CRL (DER).
    pub async fn fetch_crl(
        &self,
        product: SnpProduct,
        signer: SignerKind,
    ) -> Result<Vec<u8>, KdsError> {
        let url = self.crl_url(product, signer);
        Ok(self.http.get(&url).await?)
    }
}
