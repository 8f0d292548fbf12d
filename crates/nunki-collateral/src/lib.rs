//! Network side of attestation collateral fetching for Nunki.
//!
//! `nunki-attestation` performs no network I/O: it builds KDS URLs and asks an injected
//! [`HttpGet`] for the bytes. This crate supplies the real implementations:
//!
//! * [`HttpFetcher`]: HTTPS via `reqwest` with timeouts, a size limit and retries with
//!   exponential backoff for transient failures only.
//! * [`CachingFetcher`]: an on-disk cache in front of any [`HttpGet`], keyed by URL, with an
//!   optional maximum age that fails closed (an expired entry is never served when the
//!   refetch fails).
//!
//! ```no_run
//! # async fn demo(report: &nunki_attestation::Report) -> Result<(), Box<dyn std::error::Error>> {
//! use nunki_attestation::snp::kds::Kds;
//! use nunki_collateral::{default_cache_dir, CachingFetcher, HttpFetcher};
//!
//! let fetcher = CachingFetcher::new(HttpFetcher::new()?, default_cache_dir()?);
//! let kds = Kds::new(fetcher);
//! let vcek = kds.fetch_vcek(nunki_manifest::SnpProduct::Genoa, report).await?;
//! # let _ = vcek; Ok(()) }
//! ```

mod cache;
mod http;

use std::ffi::OsString;
use std::path::PathBuf;

pub use cache::{
    CachePolicy, CachingFetcher, DEFAULT_CRL_MAX_AGE, is_crl_url, is_reissued_collateral_url,
};
pub use http::{DEFAULT_MAX_BODY_BYTES, DEFAULT_USER_AGENT, HttpConfig, HttpFetcher, RetryPolicy};
pub use nunki_attestation::snp::kds::{FetchError, GetFuture, GetWithHeaderFuture, HttpGet};
pub use nunki_attestation::tdx::pcs::{Pcs, PcsError};

/// Fetches, through the default cache, the TDX collateral for the platform that produced
/// `quote`: from Intel PCS, or from the PCCS at `pcs_url`.
pub async fn fetch_tdx_collateral(
    quote: &[u8],
    pcs_url: Option<&str>,
) -> Result<nunki_attestation::tdx::TdxCollateral, TdxCollateralError> {
    let q = nunki_attestation::tdx::TdQuote::parse(quote)?;
    let fetcher = CachingFetcher::new(HttpFetcher::new()?, default_cache_dir()?);
    let pcs = match pcs_url {
        Some(base) => Pcs::with_base(
            base,
            &format!(
                "{}/sgx/certification/v4/rootcacrl",
                base.trim_end_matches('/')
            ),
            fetcher,
        ),
        None => Pcs::new(fetcher),
    };
    Ok(pcs.fetch_for_quote(&q).await?)
}

/// Why [`fetch_tdx_collateral`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdxCollateralError {
    /// The platform's own quote does not parse (it names the platform to fetch for).
    #[error("this platform's quote: {0}")]
    Quote(#[from] nunki_attestation::tdx::QuoteError),
    /// The HTTP client or the cache directory could not be set up.
    #[error(transparent)]
    Setup(#[from] CollateralError),
    /// Intel PCS or the PCCS did not deliver valid collateral.
    #[error(transparent)]
    Pcs(#[from] PcsError),
}

/// Why a fetcher could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollateralError {
    /// The HTTP client could not be built (e.g. TLS initialisation failed).
    #[error("cannot build the HTTP client: {reason}")]
    Client {
        /// What failed.
        reason: String,
    },
    /// None of the environment variables that locate the cache directory is set.
    #[error("cannot find a directory for the collateral cache: set NUNKI_CACHE_DIR (or HOME)")]
    NoCacheDir,
}

/// `$NUNKI_CACHE_DIR`, else `$XDG_CACHE_HOME/nunki/collateral`, else `$HOME/.cache/nunki/collateral`.
pub fn default_cache_dir() -> Result<PathBuf, CollateralError> {
    cache_dir_from(|key| std::env::var_os(key)).ok_or(CollateralError::NoCacheDir)
}

// Separated from the environment so it can be tested without `set_var` (unsafe in edition 2024).
fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let nonempty = |key: &str| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = nonempty("NUNKI_CACHE_DIR") {
        return Some(dir);
    }
    // The XDG base-directory spec says relative values are invalid and must be ignored.
    if let Some(dir) = nonempty("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Some(dir.join("nunki").join("collateral"));
    }
    nonempty("HOME").map(|home| home.join(".cache").join("nunki").join("collateral"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn cache_dir_precedence() {
        let all = env(&[
            ("NUNKI_CACHE_DIR", "/n"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(cache_dir_from(all), Some(PathBuf::from("/n")));
        let xdg = env(&[
            ("NUNKI_CACHE_DIR", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            cache_dir_from(xdg),
            Some(PathBuf::from("/x/nunki/collateral"))
        );
        let home = env(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/h")]);
        assert_eq!(
            cache_dir_from(home),
            Some(PathBuf::from("/h/.cache/nunki/collateral"))
        );
        assert_eq!(cache_dir_from(env(&[("HOME", "")])), None);
    }
}
