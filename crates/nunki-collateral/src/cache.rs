//! [`CachingFetcher`]: an on-disk cache in front of any [`HttpGet`].
//!
//! Entries are the raw response bodies (so `openssl x509 -inform der` works on them), named by
//! the hex SHA-256 of the full URL. An entry counts as *corrupt* when it cannot be read as a
//! regular file (a directory or other non-file in its place, an I/O or permission error) or is
//! empty; corrupt entries are refetched and replaced. Bit flips inside a body are not detected
//! here: the signatures checked by `nunki-attestation` reject such collateral, and clearing the
//! cache directory recovers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use nunki_attestation::snp::kds::{FetchError, GetFuture, GetWithHeaderFuture, HttpGet};

/// Default maximum age of cached CRLs: revocations must reach us within a day.
pub const DEFAULT_CRL_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// How long cache entries may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Maximum age of entries that are not CRLs (`None`: forever, fine for immutable VCEKs and chains).
    pub max_age: Option<Duration>,
    /// Maximum age of CRL entries (see [`is_crl_url`]).
    pub crl_max_age: Option<Duration>,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            max_age: None,
            crl_max_age: Some(DEFAULT_CRL_MAX_AGE),
        }
    }
}

impl CachePolicy {
    /// The same maximum age for every entry.
    pub fn uniform(max_age: Option<Duration>) -> Self {
        Self {
            max_age,
            crl_max_age: max_age,
        }
    }

    /// Maximum age that applies to the entry for `url`.
    pub fn max_age_for(&self, url: &str) -> Option<Duration> {
        if is_crl_url(url) || is_reissued_collateral_url(url) {
            self.crl_max_age
        } else {
            self.max_age
        }
    }
}

/// Whether `url` names a CRL: its last path segment ends in `crl` (KDS `.../crl`, Intel PCS `pckcrl`, `rootcacrl`).
pub fn is_crl_url(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path.rsplit('/').next().unwrap_or(path);
    last.to_ascii_lowercase().ends_with("crl")
}

/// Whether `url` names collateral its issuer replaces regularly although it is no CRL: Intel
/// PCS TCB Info and QE Identity (new `nextUpdate` every month) and Intel's root CA CRL, served
/// as `IntelSGXRootCA.der`. These expire like CRLs ([`CachePolicy::crl_max_age`]).
pub fn is_reissued_collateral_url(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.ends_with("/certification/v4/tcb")
        || path.ends_with("/certification/v4/qe/identity")
        || path.ends_with("/IntelSGXRootCA.der")
}

/// An [`HttpGet`] that serves repeated URLs from files under a cache directory.
#[derive(Debug, Clone)]
pub struct CachingFetcher<F> {
    inner: F,
    dir: PathBuf,
    policy: CachePolicy,
}

enum Lookup {
    Fresh(Vec<u8>),
    Expired,
    Missing,
    Corrupt(String),
}

impl<F: HttpGet> CachingFetcher<F> {
    /// A cache under `dir` (created on first write) with the default [`CachePolicy`].
    pub fn new(inner: F, dir: impl Into<PathBuf>) -> Self {
        Self {
            inner,
            dir: dir.into(),
            policy: CachePolicy::default(),
        }
    }

    /// Replaces the expiry policy.
    pub fn with_policy(mut self, policy: CachePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Uses one maximum age for every entry, CRL or not.
    pub fn with_max_age(self, max_age: Option<Duration>) -> Self {
        self.with_policy(CachePolicy::uniform(max_age))
    }

    /// The expiry policy in use.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The wrapped fetcher.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// File that holds (or would hold) the entry for `url`.
    pub fn entry_path(&self, url: &str) -> PathBuf {
        self.dir
            .join(hex::encode(digest::digest(&digest::SHA256, url.as_bytes())))
    }

    /// Returns the cached body for `url`, or fetches and caches it.
    ///
    /// An expired entry is never returned: if the refetch fails, so does this call.
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let path = self.entry_path(url);
        // Blocking std::fs is acceptable here: entries are a few KiB and this keeps the cache
        // independent of tokio's `fs` feature.
        match read_entry(&path, self.policy.max_age_for(url)) {
            Lookup::Fresh(body) => {
                tracing::debug!(url, path = %path.display(), "collateral cache hit");
                return Ok(body);
            }
            Lookup::Missing => tracing::debug!(url, "collateral cache miss"),
            Lookup::Expired => {
                tracing::debug!(url, path = %path.display(), "collateral cache entry expired")
            }
            Lookup::Corrupt(reason) => tracing::warn!(
                url,
                path = %path.display(),
                reason,
                "unusable collateral cache entry, refetching"
            ),
        }
        let body = self.inner.get(url).await?;
        // An empty body would read back as corrupt, so caching it would only cost a write.
        if !body.is_empty()
            && let Err(e) = write_entry(&self.dir, &path, &body)
        {
            // The fetch itself succeeded; a read-only or full disk must not break attestation.
            tracing::warn!(url, path = %path.display(), error = %e, "cannot write collateral cache entry");
        }
        Ok(body)
    }
}

impl<F: HttpGet> CachingFetcher<F> {
    /// Returns the cached body and header value for `url`, or fetches and caches both. The
    /// header value is its own entry (named by the URL plus the header name); both must be
    /// fresh, or both are fetched again.
    pub async fn fetch_with_header(
        &self,
        url: &str,
        header: &str,
    ) -> Result<(Vec<u8>, Option<String>), FetchError> {
        let body_path = self.entry_path(url);
        let header_path = self.entry_path(&format!("{url}\n{header}"));
        let max_age = self.policy.max_age_for(url);
        if let (Lookup::Fresh(body), Lookup::Fresh(value)) = (
            read_entry(&body_path, max_age),
            read_entry(&header_path, max_age),
        ) && let Ok(value) = String::from_utf8(value)
        {
            tracing::debug!(url, header, "collateral cache hit (with header)");
            return Ok((body, Some(value)));
        }
        let (body, value) = self.inner.get_with_header(url, header).await?;
        if let Some(v) = &value
            && !body.is_empty()
            && !v.is_empty()
        {
            // Header first: a body without its header is refetched, never served alone.
            let written = write_entry(&self.dir, &header_path, v.as_bytes())
                .and_then(|()| write_entry(&self.dir, &body_path, &body));
            if let Err(e) = written {
                tracing::warn!(url, error = %e, "cannot write collateral cache entry");
            }
        }
        Ok((body, value))
    }
}

impl<F: HttpGet> HttpGet for CachingFetcher<F> {
    fn get<'a>(&'a self, url: &'a str) -> GetFuture<'a> {
        Box::pin(self.fetch(url))
    }

    fn get_with_header<'a>(&'a self, url: &'a str, header: &'a str) -> GetWithHeaderFuture<'a> {
        Box::pin(self.fetch_with_header(url, header))
    }
}

fn read_entry(path: &Path, max_age: Option<Duration>) -> Lookup {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Missing,
        Err(e) => return Lookup::Corrupt(e.to_string()),
    };
    // Metadata of the open handle, so the age and the bytes belong to the same file even if
    // another process renames a new entry into place meanwhile.
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Lookup::Corrupt(e.to_string()),
    };
    if !meta.is_file() {
        return Lookup::Corrupt("not a regular file".into());
    }
    if let Some(max_age) = max_age {
        // An unknown or future mtime counts as expired: refetching is the safe choice.
        let fresh = meta
            .modified()
            .ok()
            .and_then(|mtime| SystemTime::now().duration_since(mtime).ok())
            .is_some_and(|age| age < max_age);
        if !fresh {
            return Lookup::Expired;
        }
    }
    let mut body = Vec::new();
    if let Err(e) = file.read_to_end(&mut body) {
        return Lookup::Corrupt(e.to_string());
    }
    if body.is_empty() {
        return Lookup::Corrupt("empty file".into());
    }
    Lookup::Fresh(body)
}

fn write_entry(dir: &Path, path: &Path, body: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    fs::create_dir_all(dir)?;
    // rename(2) cannot replace a directory with a file; an empty one (a corrupt entry) is
    // removed, anything else is left alone and the write fails below.
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        let _ = fs::remove_dir(path);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Same directory as the entry so the rename is atomic; pid + counter keep concurrent
    // writers (threads or processes) from sharing a temp file.
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(body)?;
        // Durable before it becomes visible, so a crash never leaves a truncated entry.
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // Persist the rename itself; failure only risks losing the entry, which is refetchable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    #[test]
    fn crl_urls() {
        assert!(is_crl_url("https://kdsintf.amd.com/vcek/v1/Milan/crl"));
        assert!(is_crl_url("https://kdsintf.amd.com/vlek/v1/Genoa/crl?x=1"));
        assert!(is_crl_url(
            "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=processor"
        ));
        assert!(is_crl_url(
            "https://certificates.trustedservices.intel.com/IntelSGXRootCA.CRL"
        ));
        assert!(!is_crl_url(
            "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"
        ));
        assert!(!is_crl_url(
            "https://kdsintf.amd.com/vcek/v1/Milan/abcd?blSPL=03&crl=1"
        ));
        assert!(!is_crl_url("rl"));
    }

    #[test]
    fn intel_collateral_expires_like_crls() {
        for url in [
            "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=B0C06F000000",
            "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
            "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der",
        ] {
            assert!(is_reissued_collateral_url(url), "{url}");
            assert_eq!(
                CachePolicy::default().max_age_for(url),
                Some(DEFAULT_CRL_MAX_AGE),
                "{url}"
            );
        }
        assert!(!is_reissued_collateral_url(
            "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"
        ));
    }

    #[test]
    fn policy_selects_by_url() {
        let p = CachePolicy::default();
        assert_eq!(
            p.max_age_for("http://h/vcek/v1/Milan/crl"),
            Some(DEFAULT_CRL_MAX_AGE)
        );
        assert_eq!(p.max_age_for("http://h/vcek/v1/Milan/cert_chain"), None);
        let u = CachePolicy::uniform(Some(Duration::from_secs(5)));
        assert_eq!(
            u.max_age_for("http://h/vcek/v1/Milan/cert_chain"),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn entry_name_is_sha256_of_url() {
        struct Never;
        impl HttpGet for Never {
            fn get<'a>(&'a self, url: &'a str) -> GetFuture<'a> {
                Box::pin(async move {
                    Err(FetchError::Transport {
                        url: url.to_string(),
                        reason: "offline".into(),
                    })
                })
            }
        }
        let c = CachingFetcher::new(Never, "/cache");
        assert_eq!(
            c.entry_path("abc"),
            Path::new("/cache/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn write_then_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        let path = sub.join("entry");
        assert!(matches!(read_entry(&path, None), Lookup::Missing));
        write_entry(&sub, &path, b"hello").unwrap();
        assert!(matches!(read_entry(&path, None), Lookup::Fresh(b) if b == b"hello"));
        assert!(matches!(
            read_entry(&path, Some(Duration::from_secs(60))),
            Lookup::Fresh(_)
        ));
        assert!(matches!(
            read_entry(&path, Some(Duration::ZERO)),
            Lookup::Expired
        ));
        write_entry(&sub, &path, b"again").unwrap();
        assert!(matches!(read_entry(&path, None), Lookup::Fresh(b) if b == b"again"));
        let names: Vec<_> = fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("entry")],
            "no temp files left behind"
        );
    }

    #[test]
    fn future_mtime_counts_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        write_entry(dir.path(), &path, b"x").unwrap();
        let f = File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        assert!(matches!(
            read_entry(&path, Some(Duration::from_secs(7200))),
            Lookup::Expired
        ));
        assert!(matches!(read_entry(&path, None), Lookup::Fresh(_)));
    }

    #[test]
    fn corrupt_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        fs::create_dir(&path).unwrap();
        assert!(matches!(read_entry(&path, None), Lookup::Corrupt(_)));
        write_entry(dir.path(), &path, b"x").unwrap();
        assert!(matches!(read_entry(&path, None), Lookup::Fresh(_)));
        fs::write(&path, b"").unwrap();
        assert!(matches!(read_entry(&path, None), Lookup::Corrupt(_)));
    }
}
