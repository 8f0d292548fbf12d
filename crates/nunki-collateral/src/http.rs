//! [`HttpFetcher`]: the real [`HttpGet`] over `reqwest`, with timeouts, a body-size limit and retries.

use std::time::Duration;

use nunki_attestation::snp::kds::{FetchError, GetFuture, GetWithHeaderFuture, HttpGet};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::CollateralError;

/// `User-Agent` sent by default: `nunki/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("nunki/", env!("CARGO_PKG_VERSION"));

/// Default response body limit (1 MiB); KDS certificates and CRLs are a few KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first one (0 is treated as 1).
    pub attempts: u32,
    /// Delay before the first retry; doubled for every further retry.
    pub base_delay: Duration,
    /// Upper bound of the exponential backoff.
    pub max_delay: Duration,
    /// Upper bound applied to a server's `Retry-After`, so a hostile or confused server cannot stall us.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A policy that makes a single attempt.
    pub fn no_retries() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// Delay before retry number `retry` (1 = first retry), preferring the server's `Retry-After`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_after);
        }
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Settings of an [`HttpFetcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Deadline for one attempt, from sending the request to the end of the body.
    pub timeout: Duration,
    /// Deadline for establishing the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Largest accepted response body; larger bodies fail without retry.
    pub max_body_bytes: usize,
    /// Retry behaviour for transient failures.
    pub retry: RetryPolicy,
    /// Whether to honour `HTTP(S)_PROXY` / `NO_PROXY` from the environment.
    pub env_proxy: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            user_agent: DEFAULT_USER_AGENT.to_string(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            retry: RetryPolicy::default(),
            env_proxy: true,
        }
    }
}

/// An [`HttpGet`] over `reqwest` (rustls with aws-lc-rs) with timeouts, a size limit and retries.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
    config: HttpConfig,
}

/// One failed attempt, with what the retry loop needs to decide on the next one.
struct Failure {
    error: FetchError,
    retry_after: Option<Duration>,
    // Some failures map onto a transient-looking `FetchError` variant but cannot succeed on
    // retry (oversized body, malformed URL); this vetoes the retry.
    permanent: bool,
}

impl Failure {
    fn retryable(&self) -> bool {
        !self.permanent && self.error.is_transient()
    }
}

impl HttpFetcher {
    /// A fetcher with the default [`HttpConfig`].
    pub fn new() -> Result<Self, CollateralError> {
        Self::with_config(HttpConfig::default())
    }

    /// A fetcher with the given settings.
    pub fn with_config(config: HttpConfig) -> Result<Self, CollateralError> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone());
        if !config.env_proxy {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| CollateralError::Client {
            reason: error_chain(&e),
        })?;
        Ok(Self { client, config })
    }

    /// The settings in use.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Fetches `url`, retrying transient failures, and returns the body of a 2xx response.
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        self.fetch_with_header(url, None)
            .await
            .map(|(body, _)| body)
    }

    /// As [`HttpFetcher::fetch`], also returning the value of response header `header`
    /// (Intel PCS sends issuer chains in headers).
    pub async fn fetch_with_header(
        &self,
        url: &str,
        header: Option<&str>,
    ) -> Result<(Vec<u8>, Option<String>), FetchError> {
        let attempts = self.config.retry.attempts.max(1);
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(url, header).await {
                Ok(found) => return Ok(found),
                Err(failure) => failure,
            };
            if attempt >= attempts || !failure.retryable() {
                return Err(failure.error);
            }
            let delay = self.config.retry.delay(attempt, failure.retry_after);
            tracing::warn!(
                url,
                attempt,
                max_attempts = attempts,
                error = %failure.error,
                ?delay,
                "transient failure fetching collateral, retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        url: &str,
        header: Option<&str>,
    ) -> Result<(Vec<u8>, Option<String>), Failure> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| self.failure(url, e))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = if status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE
            {
                retry_after_secs(response.headers())
            } else {
                None
            };
            return Err(Failure {
                error: FetchError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                },
                retry_after,
                permanent: false,
            });
        }
        let header_value = header.and_then(|h| {
            response
                .headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
        let limit = self.config.max_body_bytes;
        let too_large = || Failure {
            error: FetchError::Transport {
                url: url.to_string(),
                reason: format!("response body exceeds the limit of {limit} bytes"),
            },
            retry_after: None,
            permanent: true,
        };
        // Reject early when the server announces the size; the streaming check below covers
        // chunked or lying responses.
        let announced = response.content_length();
        if announced.is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX)) {
            return Err(too_large());
        }
        let capacity = announced
            .and_then(|len| usize::try_from(len).ok())
            .unwrap_or(0)
            .min(limit);
        let mut body = Vec::with_capacity(capacity);
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failure(url, e))? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, header_value))
    }

    fn failure(&self, url: &str, error: reqwest::Error) -> Failure {
        let url = url.to_string();
        let permanent = error.is_builder();
        let error = if error.is_timeout() {
            let limit = if error.is_connect() {
                self.config.connect_timeout
            } else {
                self.config.timeout
            };
            FetchError::Timeout {
                url,
                seconds: ceil_secs(limit),
            }
        } else {
            FetchError::Transport {
                url,
                reason: error_chain(&error.without_url()),
            }
        };
        Failure {
            error,
            retry_after: None,
            permanent,
        }
    }
}

impl HttpGet for HttpFetcher {
    fn get<'a>(&'a self, url: &'a str) -> GetFuture<'a> {
        Box::pin(self.fetch(url))
    }

    fn get_with_header<'a>(&'a self, url: &'a str, header: &'a str) -> GetWithHeaderFuture<'a> {
        Box::pin(self.fetch_with_header(url, Some(header)))
    }
}

/// `Retry-After` in delta-seconds; the HTTP-date form is ignored in favour of our own backoff.
fn retry_after_secs(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

// Rounded up so that a sub-second timeout is not reported as "after 0 s".
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

// reqwest's own Display is terse ("error sending request"); the cause is in the source chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(10),
        };
        assert_eq!(p.delay(1, None), Duration::from_millis(200));
        assert_eq!(p.delay(2, None), Duration::from_millis(400));
        assert_eq!(p.delay(3, None), Duration::from_millis(800));
        assert_eq!(p.delay(4, None), Duration::from_secs(1));
        assert_eq!(p.delay(u32::MAX, None), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(p.delay(1, Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn retry_after_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after_secs(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after_secs(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_secs(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after_secs(&h), None);
    }

    #[test]
    fn timeout_seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(300)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(10)), 10);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }

    #[test]
    fn defaults() {
        let c = HttpConfig::default();
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.retry.attempts, 3);
        assert_eq!(c.retry.base_delay, Duration::from_millis(200));
        assert!(c.user_agent.starts_with("nunki/"));
        assert_eq!(c.max_body_bytes, 1024 * 1024);
    }
}
