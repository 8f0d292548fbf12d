//! Seed-share owner keys (`seedshare-owner.pem`), `seed-shares.json`, and `nunki recover`: give
//! a restarted Coordinator its seed back, so it issues again with the same root CA, history and
//! workload secrets.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use nunki_api::userapi::RecoverRequest;
use nunki_api::userapi::user_api_client::UserApiClient;
use nunki_atls::cert::AttestingKey;
use nunki_atls::{ClientIdentity, ServerVerification};
use nunki_ca::SeedShareDocument;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use zeroize::Zeroizing;

use crate::coordinator_client::{self, parse_addr};
use crate::failure::{Outcome, ResultExt as _, check, finish};
use crate::files::{create_dir, write_atomic};
use crate::set::{check_pem_certs, connect_failure, coordinator_verifier, load_manifest};

/// Arguments of `nunki recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The Coordinator's user API.
    #[arg(short = 'c', long = "coordinator", value_name = "HOST:PORT", value_parser = parse_addr)]
    pub coordinator: String,
    /// Seed-share owner key (RSA private key, PEM) listed in the manifest's
    /// SeedshareOwnerPubKeys.
    #[arg(long, value_name = "PEM", default_value = "seedshare-owner.pem")]
    pub seedshare_owner_key: PathBuf,
    /// The seed shares `nunki set` wrote for the first manifest.
    #[arg(long = "seed", value_name = "FILE", default_value = "seed-shares.json")]
    pub seed: PathBuf,
    /// Manifest whose Coordinator entry and reference values the Coordinator is attested
    /// against (the latest one you set).
    #[arg(
        short = 'm',
        long = "manifest",
        value_name = "FILE",
        default_value = "manifest.json"
    )]
    pub manifest: PathBuf,
    /// Where coordinator-root.pem and mesh-root.pem are written.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub workspace: PathBuf,
    /// How long to wait for the Coordinator to become reachable.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
    /// Recover with the seed share even if a ready peer replica could give this Coordinator
    /// the seed (by default the Coordinator then takes it from the peer and refuses).
    #[arg(long)]
    pub force: bool,
}

/// Runs `nunki recover`.
pub fn run(args: RecoverArgs) -> Result<ExitCode> {
    finish(recover(&args))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PEM of a private key (PKCS#8).
pub fn private_key_pem(pkcs8: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(pem("PRIVATE KEY", pkcs8))
}

/// Loads a seed-share owner key (PEM, RSA, PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY") as
/// DER.
pub fn load_seedshare_owner_key(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    const HINT: &str = "a seed-share owner key is an RSA private key (3072 bits or more) in PEM, \
        \"-----BEGIN PRIVATE KEY-----\" or \"-----BEGIN RSA PRIVATE KEY-----\"; `nunki generate` \
        creates seedshare-owner.pem";
    let text = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read seed-share owner key {}", path.display()))?,
    );
    let der = PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| anyhow!("{}: no PEM private key found ({e}); {HINT}", path.display()))?;
    let raw = match &der {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der(),
        PrivateKeyDer::Pkcs1(k) => k.secret_pkcs1_der(),
        _ => bail!("{}: not an RSA key; {HINT}", path.display()),
    };
    // Checks that it is an RSA key of an acceptable size.
    nunki_ca::seedshare_owner_public_key(raw).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(Zeroizing::new(raw.to_vec()))
}

/// The key as PKCS#8 (what rustls and rcgen take for a client certificate).
fn to_pkcs8(der: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    use aws_lc_rs::encoding::{AsDer as _, Pkcs8V1Der};
    let key = aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(der)
        .or_else(|_| {
            aws_lc_rs::rsa::KeyPair::from_der(der).and_then(|k| {
                // PKCS#1 input: re-encode through the signing key type.
                let p8: Pkcs8V1Der<'static> = k.as_der()?;
                aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(p8.as_ref())
            })
        })
        .map_err(|e| anyhow!("not an RSA private key: {e}"))?;
    let p8: Pkcs8V1Der<'static> = key
        .as_der()
        .map_err(|e| anyhow!("cannot re-encode the RSA key: {e}"))?;
    Ok(Zeroizing::new(p8.as_ref().to_vec()))
}

/// Creates an RSA-4096 seed-share owner key at `path` (mode 0600) if there is none; returns the
/// hex of its PKCS#1 public key (the `SeedshareOwnerPubKeys` form) and whether it was created.
pub fn ensure_seedshare_owner_key(path: &Path) -> Result<(String, bool)> {
    let created = if path.exists() {
        false
    } else {
        let (pkcs8, _) = nunki_ca::generate_seedshare_owner_key().map_err(|e| anyhow!("{e}"))?;
        crate::generate::write_private(path, private_key_pem(&pkcs8).as_bytes())?;
        true
    };
    let der = load_seedshare_owner_key(path)?;
    let public = nunki_ca::seedshare_owner_public_key(&der).map_err(|e| anyhow!("{e}"))?;
    Ok((hex::encode(public), created))
}

/// Writes `seed-shares.json` into `workspace`; an existing file with other content is kept as
/// `seed-shares.json.<unix seconds>.bak` (it may be the only way to recover another
/// deployment). Returns the path written.
pub fn write_seed_shares(workspace: &Path, doc: &[u8]) -> Result<PathBuf> {
    let parsed = SeedShareDocument::parse(doc)
        .map_err(|e| anyhow!("the seed shares in the Coordinator's answer are malformed: {e}"))?;
    let path = workspace.join("seed-shares.json");
    match std::fs::read(&path) {
        Ok(old) if old == doc => return Ok(path),
        Ok(_) => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let backup = workspace.join(format!("seed-shares.json.{secs}.bak"));
            std::fs::rename(&path, &backup)
                .with_context(|| format!("cannot move the old {} aside", path.display()))?;
            eprintln!(
                "warning: {} held other seed shares (another deployment?); kept as {}",
                path.display(),
                backup.display()
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    write_atomic(&path, doc)?;
    if parsed.seed_shares.is_empty() {
        eprintln!(
            "warning: the manifest lists no SeedshareOwnerPubKeys: a restarted Coordinator of \
             this deployment can never be recovered"
        );
    }
    Ok(path)
}

fn recover(a: &RecoverArgs) -> Outcome<()> {
    let manifest = load_manifest(&a.manifest)?;
    let key_der = load_seedshare_owner_key(&a.seedshare_owner_key).input()?;
    // The local seed-shares.json, or (when it is missing) the copy the Coordinator keeps.
    let local = match std::fs::read(&a.seed) {
        Ok(doc) => {
            let doc = SeedShareDocument::parse(&doc)
                .map_err(|e| anyhow!("{}: {e}", a.seed.display()))
                .input()?;
            Some(
                doc.decrypt(&key_der)
                    .map_err(|e| anyhow!("{}: {e}", a.seed.display()))
                    .input()?,
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the seed shares {}", a.seed.display()))
                .input();
        }
    };
    let tls_key = AttestingKey::from_pkcs8(&to_pkcs8(&key_der).input()?)
        .map_err(|e| anyhow!("{}: {e}", a.seedshare_owner_key.display()))
        .input()?;
    let verifier = coordinator_verifier(&manifest).input()?;
    create_dir(&a.workspace).input()?;
    let target = coordinator_client::target(
        a.coordinator.clone(),
        ServerVerification::Verify(verifier),
        ClientIdentity::Key(Arc::new(tls_key)),
        Duration::from_secs(a.timeout.max(30)),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .input()?;
    let against = a.manifest.display().to_string();
    let resp = rt.block_on(async {
        let ch = coordinator_client::connect_retrying(&target, Duration::from_secs(a.timeout))
            .await
            .map_err(|e| connect_failure(&a.coordinator, &against, e))?;
        let (seed, salt) = match local {
            Some(pair) => pair,
            None => {
                let doc = UserApiClient::new(ch.channel())
                    .get_seed_shares(nunki_api::userapi::GetSeedSharesRequest::default())
                    .await
                    .map_err(|s| {
                        check(format!(
                            "{} does not exist and the Coordinator did not return its copy: {}",
                            a.seed.display(),
                            coordinator_client::explain(&ch, &s)
                        ))
                    })?
                    .into_inner()
                    .seed_share_document;
                let doc = SeedShareDocument::parse(&doc).map_err(|e| {
                    check(format!(
                        "{} does not exist and the Coordinator's copy of the seed shares is \
                         unusable: {e}",
                        a.seed.display()
                    ))
                })?;
                eprintln!(
                    "{} does not exist: using the seed shares the Coordinator keeps",
                    a.seed.display()
                );
                doc.decrypt(&key_der)
                    .map_err(|e| check(format!("the Coordinator's seed shares: {e}")))?
            }
        };
        let req = RecoverRequest {
            seed: seed.as_bytes().to_vec(),
            salt: salt.as_bytes().to_vec(),
            force: a.force,
        };
        let resp = UserApiClient::new(ch.channel())
            .recover(req)
            .await
            .map_err(|s| {
                check(format!(
                    "the Coordinator refused the recovery: {}",
                    coordinator_client::explain(&ch, &s)
                ))
            })?;
        // What was recovered must be the manifest the user expects: a host that rolled the
        // store back to an older (also signed) transition is caught here.
        let now = UserApiClient::new(ch.channel())
            .max_decoding_message_size(64 * 1024 * 1024)
            .get_manifests(nunki_api::userapi::GetManifestsRequest::default())
            .await
            .map_err(|s| {
                check(format!(
                    "recovered, but cannot read the history back: {}",
                    coordinator_client::explain(&ch, &s)
                ))
            })?
            .into_inner();
        if now.manifests.last().map(Vec::as_slice) != Some(manifest.raw()) {
            return Err(check(format!(
                "the Coordinator recovered, but its latest manifest is not {} ({} manifests in its \
                 history): the store may have been rolled back, or the manifest was updated after \
                 you saved this file; review it with `nunki verify -c {}` before trusting it",
                a.manifest.display(),
                now.manifests.len(),
                a.coordinator
            )));
        }
        Ok::<_, crate::failure::Failure>(resp.into_inner())
    })?;
    check_pem_certs(&resp.root_ca, "the root CA in the Coordinator's answer").check()?;
    check_pem_certs(&resp.mesh_ca, "the mesh CA in the Coordinator's answer").check()?;
    let root = a.workspace.join("coordinator-root.pem");
    let root_note = match std::fs::read(&root) {
        Ok(old) if same_root(&old, &resp.root_ca) => "unchanged",
        Ok(_) => "CHANGED (the old file was replaced; this should not happen after a recovery)",
        Err(_) => "written",
    };
    write_atomic(&root, &resp.root_ca).input()?;
    write_atomic(&a.workspace.join("mesh-root.pem"), &resp.mesh_ca).input()?;
    println!("recovered the Coordinator at {}", a.coordinator);
    println!("  root CA        {root_note} ({})", root.display());
    println!(
        "  mesh CA        new ({}); pods get certificates again",
        a.workspace.join("mesh-root.pem").display()
    );
    Ok(())
}

/// Whether two root CA PEMs name the same key (the certificate itself is re-minted).
fn same_root(a: &[u8], b: &[u8]) -> bool {
    use rustls::pki_types::CertificateDer;
    let spki = |pem: &[u8]| -> Option<Vec<u8>> {
        let der = CertificateDer::from_pem_slice(pem).ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        Some(cert.public_key().raw.to_vec())
    };
    matches!((spki(a), spki(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_key_is_created_once_and_loads_as_pkcs8_and_pkcs1() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("seedshare-owner.pem");
        let (public, created) = ensure_seedshare_owner_key(&p).unwrap();
        assert!(created);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, created) = ensure_seedshare_owner_key(&p).unwrap();
        assert!(!created);
        assert_eq!(public, again);
        let der = load_seedshare_owner_key(&p).unwrap();
        let p8 = to_pkcs8(&der).unwrap();
        AttestingKey::from_pkcs8(&p8).unwrap();
        // Not RSA: refused with a hint.
        let ec = nunki_ca::generate_p384_pkcs8().unwrap();
        std::fs::write(&p, private_key_pem(&ec).as_bytes()).unwrap();
        let err = load_seedshare_owner_key(&p).unwrap_err().to_string();
        assert!(err.contains("seed-share owner"), "{err}");
    }

    #[test]
    fn seed_shares_file_keeps_an_older_one() {
        let d = tempfile::tempdir().unwrap();
        let doc = serde_json::to_vec(&SeedShareDocument {
            version: 1,
            seed_shares: vec![],
        })
        .unwrap();
        let p = write_seed_shares(d.path(), &doc).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), doc);
        // Same content: nothing moved.
        write_seed_shares(d.path(), &doc).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let mut other: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        other["SeedShares"] =
            serde_json::json!([{"OwnerKeyDigest": "00", "EncryptedSeed": "AA=="}]);
        let other = serde_json::to_vec(&other).unwrap();
        write_seed_shares(d.path(), &other).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
        assert!(write_seed_shares(d.path(), b"{}").is_err());
    }
}
