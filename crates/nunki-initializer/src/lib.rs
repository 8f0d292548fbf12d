//! The Initializer: runs first in every pod, obtains the pod's mesh certificate from the
//! Coordinator over mutual aTLS with the platform's evidence, checks it, and writes it for the
//! workload.
//!
//! # Protocol
//!
//! Each attempt generates nothing new: one fresh P-256 key is made per run, then every attempt
//! opens a new connection to the mesh API, presents an attested client certificate for that key
//! (answering the Coordinator's nonce) and calls `NewMeshCert`. The Coordinator is not attested
//! (whatever it hands out is checked by the workload's peers), but the reply is checked before
//! anything is written ([`check_reply`]): all PEM parses, the leaf certifies our key, and the
//! leaf verifies with real signatures as a TLS server and client certificate along
//! leaf → intermediate → root and leaf → mesh CA. With `--coordinator-root`, the root must be
//! that CA. Failures (unreachable, no manifest yet, refused, bad reply) are logged one line per
//! attempt and retried with exponential backoff.
//!
//! # Output layout
//!
//! Readers of `--out` must see all four files complete or none, even if the Initializer is
//! killed at any moment, so they are published like the kubelet publishes projected volumes:
//!
//! ```text
//! <out>/
//!   ..1760000000_123456789.42/      one generation: the real files, written and fsynced
//!     mesh-ca.pem                   0444
//!     certChain.pem                 0444  (leaf, then intermediate)
//!     key.pem                       0400  (PKCS#8 "PRIVATE KEY")
//!     coordinator-root-ca.pem       0444
//!   ..data -> ..1760000000_123456789.42
//!   mesh-ca.pem -> ..data/mesh-ca.pem
//!   certChain.pem -> ..data/certChain.pem
//!   key.pem -> ..data/key.pem
//!   coordinator-root-ca.pem -> ..data/coordinator-root-ca.pem
//! ```
//!
//! A run writes a new hidden generation directory (`..<seconds>_<nanoseconds>.<pid>`) and
//! fsyncs its files and itself; makes the visible names symlinks to `..data/<name>` (unless
//! they already are; until `..data` exists they dangle, so nothing is readable); fsyncs `<out>`;
//! switches `..data` atomically by creating the symlink `..data_tmp` and renaming it over
//! `..data`; fsyncs `<out>` again; and finally removes older generation directories and
//! temporary links left by interrupted runs. Killed before the rename, readers see the previous
//! set (or nothing on a first run); after it, the new set. A rerun over an existing layout, or
//! over plain files of an older Initializer, works. Opening `key.pem` follows the symlinks to a
//! 0400 file, so the workload (same user) can read it and nobody else can.
// Errors end an attempt that already waited on the network; their size (the attestation
// error of a failed handshake) costs nothing measurable there.
#![allow(clippy::result_large_err)]

pub mod check;
pub mod cli;
mod write;

pub use check::{
    CERT_CHAIN_FILE, KEY_FILE, MESH_CA_FILE, ROOT_CA_FILE, ReplyError, check_reply,
    parse_pinned_root,
};
pub use write::{DATA_LINK, FILE_NAMES, write_files, write_files_observed};

use std::sync::Arc;
use std::time::Duration;

use nunki_api::meshapi::NewMeshCertRequest;
use nunki_api::meshapi::mesh_api_client::MeshApiClient;
use nunki_atls::cert::AttestingKey;
use nunki_atls::grpc::{ConnectError, Target, connect, describe_status};
use nunki_atls::verify::{Clock, system_clock};
use nunki_atls::{ClientIdentity, Issuer, ServerVerification};

/// Default mesh API port.
pub const DEFAULT_PORT: u16 = 7777;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The Coordinator address is malformed.
    #[error("COORDINATOR_HOST {0:?}: expected host or host:port")]
    Address(String),
    /// Key generation failed.
    #[error("key generation: {0}")]
    Key(String),
    /// The root CA given with `--coordinator-root` cannot be used.
    #[error("--coordinator-root {path}: {reason}")]
    PinnedRoot {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Every allowed attempt failed.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// Why the last one failed.
        last: AttemptError,
    },
    /// Writing the files failed.
    #[error("writing {path}: {reason}")]
    Write {
        /// File.
        path: std::path::PathBuf,
        /// What failed.
        reason: String,
    },
}

/// Why one attempt failed (it is retried).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    /// No aTLS connection: the Coordinator is unreachable, has no manifest yet (it closes
    /// the handshake), or refused our attestation.
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// The Coordinator answered `NewMeshCert` with an error.
    #[error("the Coordinator refused the certificate: {0}")]
    Refused(String),
    /// The Coordinator's reply failed the checks; nothing was written.
    #[error("the Coordinator's reply was refused, nothing written: {0}")]
    Reply(#[from] ReplyError),
    /// The key could not be encoded.
    #[error("encoding the private key: {0}")]
    Key(String),
}

/// `host` or `host:port` (default port 7777); IPv6 literals in brackets.
pub fn coordinator_addr(host: &str) -> Result<String, InitError> {
    let h = host.trim();
    if h.is_empty() || h.contains('/') || h.chars().any(char::is_whitespace) {
        return Err(InitError::Address(host.to_string()));
    }
    let has_port = if h.starts_with('[') {
        h.contains("]:")
    } else {
        h.matches(':').count() == 1
    };
    if has_port {
        let port = h.rsplit(':').next().unwrap_or_default();
        if port.parse::<u16>().is_err() {
            return Err(InitError::Address(host.to_string()));
        }
        Ok(h.to_string())
    } else if h.matches(':').count() > 1 {
        Ok(format!("[{h}]:{DEFAULT_PORT}"))
    } else {
        Ok(format!("{h}:{DEFAULT_PORT}"))
    }
}

/// The files a workload sees.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MeshFiles {
    /// `mesh-ca.pem`.
    pub mesh_ca: Vec<u8>,
    /// `certChain.pem` (leaf, then intermediate).
    pub cert_chain: Vec<u8>,
    /// `key.pem` (PKCS#8).
    pub key_pem: Vec<u8>,
    /// `coordinator-root-ca.pem`.
    pub root_ca: Vec<u8>,
    /// `workload-secret-seed`: the hex of the 64-byte workload secret, when the pod's manifest
    /// entry has a `WorkloadSecretID`.
    pub workload_secret: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for MeshFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key and the workload secret are never printed.
        f.debug_struct("MeshFiles")
            .field("mesh_ca", &String::from_utf8_lossy(&self.mesh_ca))
            .field("cert_chain", &String::from_utf8_lossy(&self.cert_chain))
            .field("root_ca", &String::from_utf8_lossy(&self.root_ca))
            .field(
                "workload_secret",
                &self.workload_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// How [`request`] retries and what it accepts.
#[derive(Clone)]
pub struct RequestOptions {
    /// Attempts before giving up (`None`: until it succeeds or the process is stopped).
    pub attempts: Option<u32>,
    /// Wait after the first failed attempt; doubled after each further one.
    pub base_delay: Duration,
    /// Longest wait between attempts.
    pub max_delay: Duration,
    /// Longest wait for the TCP connection, the handshake and the call, each.
    pub timeout: Duration,
    /// DER of the root CA the reply must chain to (`--coordinator-root`).
    pub pinned_root: Option<Vec<u8>>,
    /// The time certificates are checked at.
    pub clock: Clock,
}

impl std::fmt::Debug for RequestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestOptions")
            .field("attempts", &self.attempts)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("timeout", &self.timeout)
            .field("pinned_root", &self.pinned_root.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for RequestOptions {
    /// Forever, from 500 ms doubling up to 30 s, 30 s timeouts, no pinned root, system clock.
    fn default() -> Self {
        Self {
            attempts: None,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            pinned_root: None,
            clock: system_clock(),
        }
    }
}

/// One attempt: a fresh connection, attestation, `NewMeshCert`, and the checks of
/// [`check_reply`] against `key`.
pub async fn request_once(
    addr: &str,
    key: Arc<AttestingKey>,
    issuer: Arc<dyn Issuer>,
    opts: &RequestOptions,
) -> Result<MeshFiles, AttemptError> {
    // Before asking: a key that cannot be written out must not cost a certificate.
    let key_pem = key_pem(&key).map_err(AttemptError::Key)?;
    let identity = ClientIdentity::Attested {
        key: key.clone(),
        issuer,
    };
    let target = Target::new(addr.to_string(), ServerVerification::None, identity)
        .tcp_timeout(opts.timeout)
        .handshake_timeout(opts.timeout)
        .rpc_timeout(opts.timeout)
        .peer_name(format!("the Coordinator at {addr}"));
    let ch = connect(&target).await?;
    let r = MeshApiClient::new(ch.channel())
        .new_mesh_cert(NewMeshCertRequest {})
        .await
        .map_err(|s| AttemptError::Refused(describe_status(&s)))?
        .into_inner();
    let secret = zeroize::Zeroizing::new(r.workload_secret);
    let workload_secret = match secret.len() {
        0 => None,
        64 => Some(zeroize::Zeroizing::new(
            hex::encode(secret.as_slice()).into_bytes(),
        )),
        n => {
            return Err(AttemptError::Refused(format!(
                "the workload secret has {n} bytes, expected 64"
            )));
        }
    };
    let files = MeshFiles {
        mesh_ca: r.mesh_ca,
        cert_chain: r.cert_chain,
        key_pem: Vec::new(),
        root_ca: r.root_ca,
        workload_secret,
    };
    check_reply(
        &files,
        &key.spki_der(),
        opts.pinned_root.as_deref(),
        (opts.clock)(),
    )?;
    Ok(MeshFiles { key_pem, ..files })
}

/// The key as `key.pem` holds it (PKCS#8 PEM).
fn key_pem(key: &AttestingKey) -> Result<Vec<u8>, String> {
    let pkcs8 = key.pkcs8_der().map_err(|e| e.to_string())?;
    der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &pkcs8)
        .map(String::into_bytes)
        .map_err(|e| e.to_string())
}

/// Requests the certificate with a fresh key, retrying with exponential backoff (capped) and
/// one log line per attempt, until it succeeds or `opts.attempts` are used up.
pub async fn request(
    addr: &str,
    issuer: Arc<dyn Issuer>,
    opts: &RequestOptions,
) -> Result<MeshFiles, InitError> {
    let key = Arc::new(AttestingKey::generate().map_err(|e| InitError::Key(e.to_string()))?);
    // A key that cannot be written out would fail every attempt the same way.
    key_pem(&key).map_err(InitError::Key)?;
    let mut delay = opts.base_delay;
    let mut n = 0u32;
    loop {
        n = n.saturating_add(1);
        match request_once(addr, key.clone(), issuer.clone(), opts).await {
            Ok(files) => {
                tracing::info!(
                    attempt = n,
                    coordinator = addr,
                    "received the mesh certificate"
                );
                return Ok(files);
            }
            Err(e) => {
                if opts.attempts.is_some_and(|max| n >= max) {
                    tracing::warn!(attempt = n, coordinator = addr, error = %e, "no mesh certificate; giving up");
                    return Err(InitError::GaveUp {
                        attempts: n,
                        last: e,
                    });
                }
                tracing::warn!(attempt = n, coordinator = addr, error = %e, retry_in = ?delay, "no mesh certificate yet");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2).min(opts.max_delay);
            }
        }
    }
}

/// Reads `--coordinator-root`: one PEM certificate; returns its DER.
pub fn read_pinned_root(path: &std::path::Path) -> Result<Vec<u8>, InitError> {
    let err = |reason: String| InitError::PinnedRoot {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    parse_pinned_root(&pem).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(coordinator_addr("coordinator").unwrap(), "coordinator:7777");
        assert_eq!(
            coordinator_addr("coordinator:1234").unwrap(),
            "coordinator:1234"
        );
        assert_eq!(coordinator_addr("10.0.0.1").unwrap(), "10.0.0.1:7777");
        assert_eq!(coordinator_addr("::1").unwrap(), "[::1]:7777");
        assert_eq!(coordinator_addr("[::1]:99").unwrap(), "[::1]:99");
        for bad in ["", "a b", "host:notaport", "http://x", "host:99999"] {
            assert!(coordinator_addr(bad).is_err(), "{bad}");
        }
    }
}
