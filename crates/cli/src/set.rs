//! `nunki set`: attest the Coordinator against a manifest, then set that manifest with the
//! policy documents it names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use nunki_api::userapi::SetManifestRequest;
use nunki_api::userapi::user_api_client::UserApiClient;
use nunki_atls::cert::AttestingKey;
use nunki_atls::grpc::ConnectError;
use nunki_atls::verify::system_clock;
use nunki_atls::{ClientIdentity, HostDataRule, ReferenceVerifier, ServerVerification};
use nunki_manifest::{HostData, ParsedManifest, PolicyHash, Sha256Fingerprint};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;

use crate::coordinator_client::{self, ConnectFailure, parse_addr};
use crate::failure::{Failure, Outcome, ResultExt as _, check, finish, input};
use crate::files::{create_dir, write_atomic};
use crate::policies::PolicyDocs;

/// Arguments of `nunki set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The Coordinator's user API.
    #[arg(short = 'c', long = "coordinator", value_name = "HOST:PORT", value_parser = parse_addr)]
    pub coordinator: String,
    /// The manifest to set; sent exactly as it is on disk.
    #[arg(short = 'm', long = "manifest", value_name = "FILE")]
    pub manifest: PathBuf,
    /// Workload owner key (PEM, EC P-384, PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY"),
    /// required to update a manifest that lists workload owner keys.
    #[arg(long, value_name = "PEM")]
    pub workload_owner_key: Option<PathBuf>,
    /// Directory of policy documents (any file names; matched to the manifest by SHA-256).
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Where coordinator-root.pem and mesh-root.pem are written.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub workspace: PathBuf,
    /// How long to wait for the Coordinator to become reachable.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
    /// Kubernetes YAML files or directories whose pods carry the policy annotation
    /// (io.katacontainers.config.agent.policy).
    #[arg(value_name = "RESOURCES")]
    pub resources: Vec<PathBuf>,
}

/// Runs `nunki set`.
pub fn run(args: SetArgs) -> Result<ExitCode> {
    finish(set(&args))
}

/// Reads and validates a manifest; every problem is listed in the error.
pub fn load_manifest(path: &Path) -> Outcome<ParsedManifest> {
    let raw = std::fs::read(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))
        .input()?;
    ParsedManifest::parse(&raw).map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(|e| format!("  {e}")).collect();
        input(format!(
            "{} is not a valid manifest ({} problem{}):\n{}",
            path.display(),
            errs.len(),
            if errs.len() == 1 { "" } else { "s" },
            lines.join("\n")
        ))
    })
}

/// A verifier for the Coordinator as described by `manifest`: its reference values, and
/// HOST_DATA one of its coordinator policy hashes.
pub fn coordinator_verifier(manifest: &ParsedManifest) -> Result<Arc<ReferenceVerifier>> {
    let rv = &manifest.manifest().reference_values;
    let hosts: Vec<HostData> = manifest
        .coordinator_policy_hashes()
        .into_iter()
        .map(HostData::from)
        .collect();
    let v = ReferenceVerifier::for_reference_values(rv, HostDataRule::OneOf(hosts), system_clock())
        .map_err(|e| anyhow!("cannot attest the Coordinator with this manifest: {e}"))?;
    Ok(Arc::new(v))
}

/// Loads a workload owner key: PEM, EC P-384, PKCS#8 or SEC1.
pub fn load_owner_key(path: &Path) -> Result<Arc<AttestingKey>> {
    const HINT: &str = "a workload owner key must be an EC P-384 private key in PEM, \
        \"-----BEGIN PRIVATE KEY-----\" (PKCS#8) or \"-----BEGIN EC PRIVATE KEY-----\" (SEC1); \
        create one with: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out workload-owner.pem";
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read workload owner key {}", path.display()))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| anyhow!("{}: no PEM private key found ({e}); {HINT}", path.display()))?;
    let raw: &[u8] = match &der {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der(),
        PrivateKeyDer::Sec1(k) => k.secret_sec1_der(),
        PrivateKeyDer::Pkcs1(_) => bail!("{}: an RSA key; {HINT}", path.display()),
        _ => bail!("{}: unsupported key type; {HINT}", path.display()),
    };
    let kp = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        raw,
    )
    .map_err(|e| anyhow!("{}: not an EC P-384 key ({e}); {HINT}", path.display()))?;
    let pkcs8 = kp
        .to_pkcs8v1()
        .map_err(|_| anyhow!("{}: cannot re-encode the key", path.display()))?;
    let key =
        AttestingKey::from_pkcs8(pkcs8.as_ref()).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(Arc::new(key))
}

/// SHA-256 of the key's SubjectPublicKeyInfo DER, as listed in `WorkloadOwnerKeyDigests`.
pub fn owner_key_digest(key: &AttestingKey) -> Sha256Fingerprint {
    Sha256Fingerprint(crate::policies::sha256(&key.spki_der()))
}

/// Checks that `pem` holds at least one PEM certificate.
pub fn check_pem_certs(pem: &[u8], what: &str) -> Result<()> {
    use rustls::pki_types::CertificateDer;
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(pem) {
        c.map_err(|e| anyhow!("{what} is not PEM: {e}"))?;
        n += 1;
    }
    if n == 0 {
        bail!("{what} contains no PEM certificate ({} bytes)", pem.len());
    }
    Ok(())
}

/// Explains a failed connection as a check failure.
pub fn connect_failure(addr: &str, against: &str, e: ConnectFailure) -> Failure {
    match e {
        ConnectFailure::Failed(ConnectError::Attestation { error, .. }) => check(format!(
            "the Coordinator at {addr} failed attestation against {against}: {error}"
        )),
        other => check(other),
    }
}

fn set(a: &SetArgs) -> Outcome<()> {
    let manifest = load_manifest(&a.manifest)?;
    let wanted: BTreeSet<PolicyHash> = manifest.manifest().policies.keys().copied().collect();
    let mut docs = PolicyDocs::default();
    if let Some(dir) = &a.policies {
        docs.add_dir(dir, &wanted).input()?;
    }
    for f in docs.add_resources(&a.resources).input()? {
        if !wanted.contains(&f.hash) {
            eprintln!(
                "warning: {}: policy {} is not in {}; these pods will not join the mesh",
                f.location,
                f.hash,
                a.manifest.display()
            );
        }
    }
    let policies = docs.for_manifest(&manifest).input()?;
    let identity = match &a.workload_owner_key {
        Some(p) => {
            let key = load_owner_key(p).input()?;
            let digest = owner_key_digest(&key);
            if !manifest
                .manifest()
                .workload_owner_key_digests
                .contains(&digest)
            {
                eprintln!(
                    "warning: {} does not list this workload owner key ({digest}) in \
                     WorkloadOwnerKeyDigests: this key cannot update the manifest after it",
                    a.manifest.display()
                );
            }
            ClientIdentity::Key(key)
        }
        None => ClientIdentity::None,
    };
    let verifier = coordinator_verifier(&manifest).input()?;
    create_dir(&a.workspace).input()?;
    if manifest.manifest().seedshare_owner_pub_keys.is_empty() {
        eprintln!(
            "warning: {} lists no SeedshareOwnerPubKeys: if this is the deployment's first \
             manifest, a restarted Coordinator can never be recovered (`nunki generate` adds \
             seedshare-owner.pem)",
            a.manifest.display()
        );
    }

    let target = coordinator_client::target(
        a.coordinator.clone(),
        ServerVerification::Verify(verifier),
        identity,
        Duration::from_secs(a.timeout.max(30)),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .input()?;
    let against = a.manifest.display().to_string();
    let (resp, peer) = rt.block_on(async {
        let ch = coordinator_client::connect_retrying(&target, Duration::from_secs(a.timeout))
            .await
            .map_err(|e| connect_failure(&a.coordinator, &against, e))?;
        // Base the update on the latest transition seen over this attested connection, so a
        // concurrent update by someone else makes this one fail instead of silently replacing it.
        let previous_transition = match UserApiClient::new(ch.channel())
            .max_decoding_message_size(64 * 1024 * 1024)
            .get_manifests(nunki_api::userapi::GetManifestsRequest::default())
            .await
        {
            Ok(r) => r.into_inner().latest_transition,
            // No manifest yet (or recovery mode, which SetManifest reports itself).
            Err(s) if s.code() == tonic::Code::FailedPrecondition => Vec::new(),
            Err(s) => {
                return Err(check(format!(
                    "cannot read the Coordinator's latest transition: {}",
                    coordinator_client::explain(&ch, &s)
                )));
            }
        };
        let req = SetManifestRequest {
            manifest: manifest.raw().to_vec(),
            policies,
            previous_transition,
        };
        // The Coordinator's message says what is wrong (every manifest problem for
        // InvalidArgument, the allowed key digests for PermissionDenied).
        let resp = UserApiClient::new(ch.channel())
            .set_manifest(req)
            .await
            .map_err(|s| {
                check(format!(
                    "the Coordinator refused the manifest: {}",
                    coordinator_client::explain(&ch, &s)
                ))
            })?;
        Ok::<_, Failure>((resp.into_inner(), ch.verified_peer()))
    })?;
    // First: the seed shares exist only in this answer.
    let seed_shares = if resp.seed_share_document.is_empty() {
        None
    } else {
        Some(crate::recover::write_seed_shares(&a.workspace, &resp.seed_share_document).check()?)
    };
    check_pem_certs(&resp.root_ca, "the root CA in the Coordinator's answer").check()?;
    check_pem_certs(&resp.mesh_ca, "the mesh CA in the Coordinator's answer").check()?;
    let root = a.workspace.join("coordinator-root.pem");
    let mesh = a.workspace.join("mesh-root.pem");
    write_atomic(&root, &resp.root_ca).input()?;
    write_atomic(&mesh, &resp.mesh_ca).input()?;

    println!("manifest set on the Coordinator at {}", a.coordinator);
    if let Some(p) = peer {
        println!(
            "  Coordinator attested: reference values {}, HOST_DATA {}",
            p.matched,
            p.host_data()
        );
    }
    println!("  manifest hash  {}", manifest.hash());
    for hash in manifest.manifest().policies.keys() {
        println!(
            "  policy         {hash} from {}",
            docs.source(hash).unwrap_or("?")
        );
    }
    println!("  wrote          {}", root.display());
    println!("  wrote          {}", mesh.display());
    if let Some(p) = seed_shares {
        println!(
            "  wrote          {} (first manifest: the seed encrypted to the seed-share owners; \
             keep it with seedshare-owner.pem for `nunki recover`)",
            p.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_keys_pkcs8_and_sec1_p384_only() {
        let d = tempfile::tempdir().unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let pem = |label: &str, der: &[u8]| {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::STANDARD.encode(der);
            let mut s = format!("-----BEGIN {label}-----\n");
            for chunk in b.as_bytes().chunks(64) {
                s.push_str(std::str::from_utf8(chunk).unwrap());
                s.push('\n');
            }
            s.push_str(&format!("-----END {label}-----\n"));
            s
        };
        let p = d.path().join("k.pem");
        std::fs::write(&p, pem("PRIVATE KEY", pkcs8.as_ref())).unwrap();
        let key = load_owner_key(&p).unwrap();
        let kp = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            pkcs8.as_ref(),
        )
        .unwrap();
        use aws_lc_rs::encoding::{AsDer as _, EcPrivateKeyRfc5915Der};
        let sec1: EcPrivateKeyRfc5915Der<'static> = kp.private_key().as_der().unwrap();
        std::fs::write(&p, pem("EC PRIVATE KEY", sec1.as_ref())).unwrap();
        let key2 = load_owner_key(&p).unwrap();
        assert_eq!(key.spki_der(), key2.spki_der());
        assert_eq!(owner_key_digest(&key), owner_key_digest(&key2));

        let p256 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        std::fs::write(&p, pem("PRIVATE KEY", p256.as_ref())).unwrap();
        let err = load_owner_key(&p).unwrap_err().to_string();
        assert!(err.contains("not an EC P-384 key"), "{err}");
        std::fs::write(&p, "hello").unwrap();
        let err = load_owner_key(&p).unwrap_err().to_string();
        assert!(err.contains("no PEM private key"), "{err}");
        assert!(err.contains("openssl genpkey"), "{err}");
    }

    #[test]
    fn pem_certificates_are_checked() {
        assert!(check_pem_certs(b"", "x").is_err());
        assert!(check_pem_certs(b"garbage", "x").is_err());
        let key = AttestingKey::generate().unwrap();
        let ck = key
            .certify(None, None, std::time::SystemTime::now())
            .unwrap();
        let der = ck.cert.first().unwrap();
        use base64::Engine as _;
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        check_pem_certs(pem.as_bytes(), "x").unwrap();
    }
}
