//! The Initializer: runs first in every pod, obtains the pod's mesh certificate from the
//! Coordinator over mutual aTLS with the platform's evidence, and writes it for the workload.

pub mod cli;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nunki_api::meshapi::NewMeshCertRequest;
use nunki_api::meshapi::mesh_api_client::MeshApiClient;
use nunki_atls::cert::AttestingKey;
use nunki_atls::grpc::{Target, connect};
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
    /// The Coordinator's answer is malformed.
    #[error("the Coordinator's answer: {0}")]
    Answer(String),
    /// Writing the files failed.
    #[error("writing {path}: {reason}")]
    Write {
        /// File.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
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
#[derive(Debug, Clone)]
pub struct MeshFiles {
    /// `mesh-ca.pem`.
    pub mesh_ca: Vec<u8>,
    /// `certChain.pem` (leaf, then intermediate).
    pub cert_chain: Vec<u8>,
    /// `key.pem` (PKCS#8).
    pub key_pem: Vec<u8>,
    /// `coordinator-root-ca.pem`.
    pub root_ca: Vec<u8>,
}

/// One attempt: a fresh connection, attestation, `NewMeshCert`.
pub async fn request_once(
    addr: &str,
    key: Arc<AttestingKey>,
    issuer: Arc<dyn Issuer>,
) -> Result<MeshFiles, String> {
    let identity = ClientIdentity::Attested {
        key: key.clone(),
        issuer,
    };
    let ch = connect(&Target::new(
        addr.to_string(),
        ServerVerification::None,
        identity,
    ))
    .await
    .map_err(|e| e.to_string())?;
    let r = MeshApiClient::new(ch.channel())
        .new_mesh_cert(NewMeshCertRequest {})
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let key_pem =
        der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &key.pkcs8_der())
            .map_err(|e| e.to_string())?
            .into_bytes();
    for (name, pem) in [
        ("mesh CA", &r.mesh_ca),
        ("certificate chain", &r.cert_chain),
        ("root CA", &r.root_ca),
    ] {
        let certs = nunki_attestation::snp::certs::pem_or_der_certs(pem)
            .map_err(|e| format!("{name}: {e}"))?;
        if certs.is_empty()
            || !std::str::from_utf8(pem).is_ok_and(|t| t.contains("-----BEGIN CERTIFICATE-----"))
        {
            return Err(format!("{name} is not PEM"));
        }
    }
    Ok(MeshFiles {
        mesh_ca: r.mesh_ca,
        cert_chain: r.cert_chain,
        key_pem,
        root_ca: r.root_ca,
    })
}

/// Requests the certificate, retrying with exponential backoff (capped) and one log line per
/// attempt, until it succeeds or `attempts` is exhausted (`None` = forever).
pub async fn request(
    addr: &str,
    issuer: Arc<dyn Issuer>,
    attempts: Option<u32>,
    base_delay: Duration,
) -> Result<MeshFiles, InitError> {
    let key = Arc::new(AttestingKey::generate().map_err(|e| InitError::Key(e.to_string()))?);
    let mut delay = base_delay;
    let mut n = 0u32;
    loop {
        n += 1;
        match request_once(addr, key.clone(), issuer.clone()).await {
            Ok(files) => {
                tracing::info!(
                    attempt = n,
                    coordinator = addr,
                    "received the mesh certificate"
                );
                return Ok(files);
            }
            Err(e) => {
                tracing::warn!(attempt = n, coordinator = addr, error = %e, retry_in = ?delay, "no mesh certificate yet");
                if attempts.is_some_and(|max| n >= max) {
                    return Err(InitError::Answer(format!(
                        "gave up after {n} attempts: {e}"
                    )));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), InitError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let err = |reason: String| InitError::Write {
        path: path.clone(),
        reason,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| err(e.to_string()))?;
    f.write_all(bytes).map_err(|e| err(e.to_string()))?;
    f.sync_all().map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))
}

/// Writes the four files into `dir` (key.pem with mode 0400), each atomically.
pub fn write_files(dir: &Path, files: &MeshFiles) -> Result<(), InitError> {
    std::fs::create_dir_all(dir).map_err(|e| InitError::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(dir, "key.pem", &files.key_pem, 0o400)?;
    write_atomic(dir, "certChain.pem", &files.cert_chain, 0o444)?;
    write_atomic(dir, "mesh-ca.pem", &files.mesh_ca, 0o444)?;
    write_atomic(dir, "coordinator-root-ca.pem", &files.root_ca, 0o444)
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
