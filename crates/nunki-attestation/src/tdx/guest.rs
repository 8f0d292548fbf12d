//! The TDX guest side: requesting a quote through the kernel's configfs-tsm interface
//! (`/sys/kernel/config/tsm/report`, provider `tdx_guest`, Linux 6.7+). The kernel forwards
//! the TD report to the host's quote generation service and returns the signed quote in
//! `outblob`. Plain file I/O: no `unsafe`, no ioctl.
//!
//! Built only with the `hw` feature; without TDX hardware only [`check_outblob`] is tested.

use std::fs;
use std::path::{Path, PathBuf};

use super::quote::TdQuote;

/// Default configfs-tsm report directory.
pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

/// The configfs-tsm provider name of a TDX guest.
pub const PROVIDER: &str = "tdx_guest";

/// A guest-side problem.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// File system problem.
    #[error("configfs-tsm {path}: {reason}")]
    Io {
        /// Path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The kernel returned something that is not the quote we asked for.
    #[error("configfs-tsm: {0}")]
    Quote(String),
}

/// Checks that `outblob` is a TDX quote for `report_data` and returns it without padding.
pub fn check_outblob(outblob: &[u8], report_data: &[u8; 64]) -> Result<Vec<u8>, GuestError> {
    let q = TdQuote::parse(outblob)
        .map_err(|e| GuestError::Quote(format!("outblob is not a TDX quote: {e}")))?;
    if q.td.report_data.0 != *report_data {
        return Err(GuestError::Quote(
            "the quote's REPORT_DATA is not the one written to inblob (another process raced on the same report directory?)".into(),
        ));
    }
    let len = outblob.len().saturating_sub(q.trailing_bytes);
    Ok(outblob.get(..len).unwrap_or(outblob).to_vec())
}

/// Requests a quote for `report_data` through configfs-tsm under `base`.
pub fn tsm_quote(base: &Path, report_data: &[u8; 64]) -> Result<Vec<u8>, GuestError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| GuestError::Io {
            path: path.clone(),
            reason: e.to_string(),
        }
    };
    let dir = base.join(format!("nunki-tdx-{}-{}", std::process::id(), unique()));
    fs::create_dir(&dir).map_err(io(&dir))?;
    let result = (|| {
        let provider_path = dir.join("provider");
        let provider = fs::read_to_string(&provider_path).map_err(io(&provider_path))?;
        if provider.trim() != PROVIDER {
            return Err(GuestError::Quote(format!(
                "provider is {:?}, not {PROVIDER}: this is not a TDX guest",
                provider.trim()
            )));
        }
        let inblob = dir.join("inblob");
        fs::write(&inblob, report_data).map_err(io(&inblob))?;
        let outblob = dir.join("outblob");
        let out = fs::read(&outblob).map_err(io(&outblob))?;
        check_outblob(&out, report_data)
    })();
    let _ = fs::remove_dir(&dir);
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn testdata() -> PathBuf {
        std::env::var_os("NUNKI_TESTDATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata")
            })
            .join("tdx")
    }

    #[test]
    fn outblob_must_be_the_requested_quote() {
        let raw = fs::read(testdata().join("dcap-qvl/tdx_quote")).unwrap();
        let q = TdQuote::parse(&raw).unwrap();
        let rd = q.td.report_data.0;
        // Real buffers carry zero padding after the signature data: it is cut off.
        let out = check_outblob(&raw, &rd).unwrap();
        assert_eq!(out.len(), raw.len() - q.trailing_bytes);
        assert!(q.trailing_bytes > 0);
        let mut other = rd;
        other[0] ^= 1;
        let err = check_outblob(&raw, &other).unwrap_err();
        assert!(err.to_string().contains("REPORT_DATA"), "{err}");
        assert!(check_outblob(&raw[..100], &rd).is_err());
    }

    #[test]
    fn a_directory_without_the_tdx_provider_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = tsm_quote(dir.path(), &[0; 64]).unwrap_err();
        assert!(err.to_string().contains("provider"), "{err}");
        assert!(tsm_quote(Path::new("/nonexistent/tsm"), &[0; 64]).is_err());
    }
}
