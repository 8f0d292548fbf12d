//! `nunki verify`: attest the Coordinator, fetch its manifest history, check the history's hash
//! chain and policies, and write everything out for review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use nunki_api::userapi::user_api_client::UserApiClient;
use nunki_api::userapi::{GetManifestsRequest, GetManifestsResponse};
use nunki_atls::{ClientIdentity, ServerVerification};
use nunki_manifest::{ChainEntry, ParsedManifest, PolicyHash, TransitionHash, transition_chain};

use crate::coordinator_client::{self, parse_addr};
use crate::failure::{Failure, Outcome, ResultExt as _, check, finish};
use crate::files::{create_dir, write_atomic};
use crate::policies::policy_hash;
use crate::set::{check_pem_certs, connect_failure, coordinator_verifier, load_manifest};

/// Arguments of `nunki verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The Coordinator's user API.
    #[arg(short = 'c', long = "coordinator", value_name = "HOST:PORT", value_parser = parse_addr)]
    pub coordinator: String,
    /// Output directory for the certificates, manifests, policies and history.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        default_value = "verify"
    )]
    pub output: PathBuf,
    /// The manifest you expect: the Coordinator is attested against it and its latest manifest
    /// must be byte-identical. Without it the Coordinator is attested against its own latest
    /// manifest, which you must then review.
    #[arg(short = 'm', long = "manifest", value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Without -m, accept a Coordinator whose own manifest trusts the simulated platform (which
    /// proves nothing about isolation: its root is chosen by whoever runs it).
    #[arg(long)]
    pub allow_simulated: bool,
    /// How long to wait for the Coordinator to become reachable.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
}

/// Largest gRPC message accepted from the Coordinator (the whole history is one message).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Runs `nunki verify`.
pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    finish(verify(&args))
}

/// A manifest history that passed every check.
#[derive(Debug)]
pub struct VerifiedHistory {
    /// Manifests, oldest first, exact bytes.
    pub manifests: Vec<Vec<u8>>,
    /// The recomputed chain (its last transition hash is the Coordinator's latest transition).
    pub chain: Vec<ChainEntry>,
    /// Policy documents by their (recomputed) hash.
    pub policies: BTreeMap<PolicyHash, Vec<u8>>,
    /// PEM of the root CA.
    pub root_ca: Vec<u8>,
    /// PEM of the mesh CA.
    pub mesh_ca: Vec<u8>,
}

/// The latest manifest of a response, parsed.
pub fn latest_manifest(resp: &GetManifestsResponse) -> Result<ParsedManifest> {
    let Some(raw) = resp.manifests.last() else {
        bail!("the Coordinator has no manifest yet (set one with `nunki set`)");
    };
    ParsedManifest::parse(raw).map_err(|errs| {
        anyhow!(
            "the Coordinator's latest manifest (#{}, {}) is not valid:\n  {}",
            resp.manifests.len() - 1,
            nunki_manifest::ManifestHash::of_manifest_bytes(raw),
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    })
}

/// Recomputes the transition chain of `manifests` (oldest first) and requires its last
/// transition hash to be `latest_transition`.
pub fn check_chain(manifests: &[Vec<u8>], latest_transition: &[u8]) -> Result<Vec<ChainEntry>> {
    let claimed = TransitionHash::from_slice(latest_transition).map_err(|_| {
        anyhow!(
            "the Coordinator's latest transition hash is {} bytes, not 32",
            latest_transition.len()
        )
    })?;
    let refs: Vec<&[u8]> = manifests.iter().map(Vec::as_slice).collect();
    let chain = transition_chain(&refs);
    let Some(last) = chain.last() else {
        bail!("the Coordinator returned no manifests");
    };
    if last.transition_hash != claimed {
        bail!(
            "the manifest history does not match the Coordinator's latest transition: the {} \
             manifests returned chain to transition hash {}, but the Coordinator reports {}",
            manifests.len(),
            last.transition_hash,
            claimed
        );
    }
    Ok(chain)
}

/// Checks a response whose latest manifest is `latest` (already trusted): the chain, the
/// policies of the latest manifest, the CA certificates.
pub fn check_history(
    resp: GetManifestsResponse,
    latest: &ParsedManifest,
) -> Result<VerifiedHistory> {
    let chain = check_chain(&resp.manifests, &resp.latest_transition)?;
    let mut policies = BTreeMap::new();
    for doc in resp.policies {
        policies.insert(policy_hash(&doc), doc);
    }
    let missing: Vec<String> = latest
        .manifest()
        .policies
        .keys()
        .filter(|h| !policies.contains_key(*h))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        bail!(
            "the Coordinator did not return the policy document of {} of the latest manifest's \
             policies (or returned documents with another SHA-256):\n  {}",
            missing.len(),
            missing.join("\n  ")
        );
    }
    check_pem_certs(&resp.root_ca, "the root CA in the Coordinator's answer")?;
    check_pem_certs(&resp.mesh_ca, "the mesh CA in the Coordinator's answer")?;
    Ok(VerifiedHistory {
        manifests: resp.manifests,
        chain,
        policies,
        root_ca: resp.root_ca,
        mesh_ca: resp.mesh_ca,
    })
}

/// Writes `DIR/coordinator-root.pem`, `DIR/mesh-root.pem`, `DIR/manifests/manifest.<i>.json`
/// (0 is the oldest; stale higher numbers are removed), `DIR/policies/<hex hash>` and
/// `DIR/history.json`. Returns the paths written.
pub fn write_output(dir: &Path, h: &VerifiedHistory) -> Result<Vec<PathBuf>> {
    let mdir = dir.join("manifests");
    let pdir = dir.join("policies");
    create_dir(&mdir)?;
    create_dir(&pdir)?;
    let mut written = Vec::new();
    for (i, m) in h.manifests.iter().enumerate() {
        let p = mdir.join(format!("manifest.{i}.json"));
        write_atomic(&p, m)?;
        written.push(p);
    }
    remove_stale_manifests(&mdir, h.manifests.len())?;
    for (hash, doc) in &h.policies {
        let p = pdir.join(hash.to_hex());
        write_atomic(&p, doc)?;
        written.push(p);
    }
    let history: Vec<serde_json::Value> = h
        .chain
        .iter()
        .map(|e| {
            serde_json::json!({
                "index": e.index,
                "manifest_hash": e.manifest_hash.to_hex(),
                "transition_hash": e.transition_hash.to_hex(),
            })
        })
        .collect();
    let mut json = serde_json::to_vec_pretty(&history)?;
    json.push(b'\n');
    let p = dir.join("history.json");
    write_atomic(&p, &json)?;
    written.push(p);
    for (name, pem) in [
        ("coordinator-root.pem", &h.root_ca),
        ("mesh-root.pem", &h.mesh_ca),
    ] {
        let p = dir.join(name);
        write_atomic(&p, pem)?;
        written.push(p);
    }
    Ok(written)
}

/// Removes `manifest.<n>.json` with `n >= count` left by an earlier run.
fn remove_stale_manifests(mdir: &Path, count: usize) -> Result<()> {
    for e in std::fs::read_dir(mdir).with_context(|| format!("cannot read {}", mdir.display()))? {
        let e = e.with_context(|| format!("cannot read {}", mdir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let index = name
            .strip_prefix("manifest.")
            .and_then(|r| r.strip_suffix(".json"))
            .and_then(|n| n.parse::<usize>().ok());
        if index.is_some_and(|n| n >= count) {
            std::fs::remove_file(e.path())
                .with_context(|| format!("cannot remove stale {}", e.path().display()))?;
        }
    }
    Ok(())
}

fn verify(a: &VerifyArgs) -> Outcome<()> {
    let local = match &a.manifest {
        Some(p) => Some(load_manifest(p)?),
        None => None,
    };
    let mode = match &local {
        Some(m) => ServerVerification::Verify(coordinator_verifier(m).input()?),
        None => ServerVerification::Capture,
    };
    create_dir(&a.output).input()?;
    let target = coordinator_client::target(
        a.coordinator.clone(),
        mode,
        ClientIdentity::None,
        Duration::from_secs(a.timeout.max(30)),
    );
    let against = match &a.manifest {
        Some(p) => p.display().to_string(),
        None => "its own latest manifest".to_string(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .input()?;
    let (ch, resp) = rt.block_on(async {
        let ch = coordinator_client::connect_retrying(&target, Duration::from_secs(a.timeout))
            .await
            .map_err(|e| connect_failure(&a.coordinator, &against, e))?;
        let resp = UserApiClient::new(ch.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .get_manifests(GetManifestsRequest::default())
            .await
            .map_err(|s| {
                check(format!(
                    "the Coordinator did not return its manifests: {}",
                    coordinator_client::explain(&ch, &s)
                ))
            })?;
        Ok::<_, Failure>((ch, resp.into_inner()))
    })?;

    // Nothing in `resp` is trusted until the Coordinator is attested against a manifest the
    // user chose (-m) or, without -m, against the latest manifest it returned.
    let latest = latest_manifest(&resp).check()?;
    match &local {
        Some(local) => {
            if latest.raw() != local.raw() {
                return Err(check(format!(
                    "the Coordinator's latest manifest is not {}:\n  {}  {}\n  {}  the Coordinator's latest manifest (#{})\n\
                     see the history with `nunki verify -c {}` (without -m) and review it",
                    against,
                    local.hash(),
                    against,
                    latest.hash(),
                    resp.manifests.len().saturating_sub(1),
                    a.coordinator
                )));
            }
        }
        None => {
            if latest.is_simulated() && !a.allow_simulated {
                return Err(check(format!(
                    "the Coordinator's own latest manifest {} trusts the SIMULATED platform (root {}), so its \
                     attestation proves nothing about isolation; pass -m with the manifest you expect, or \
                     --allow-simulated if this is a simulation",
                    latest.hash(),
                    latest
                        .manifest()
                        .reference_values
                        .simulated
                        .iter()
                        .map(|r| r.root_fingerprint.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let verifier = coordinator_verifier(&latest).check()?;
            ch.config().verify_captured(&verifier).map_err(|e| {
                check(format!(
                    "the Coordinator at {} failed attestation against its own latest manifest: {e}",
                    a.coordinator
                ))
            })?;
        }
    }
    let peer = ch.verified_peer();
    let history = check_history(resp, &latest).check()?;
    write_output(&a.output, &history).input()?;

    println!(
        "Coordinator at {} verified against {against}",
        a.coordinator
    );
    if let Some(p) = peer {
        println!(
            "  attested       reference values {}, HOST_DATA {}",
            p.matched,
            p.host_data()
        );
    }
    if let Some(last) = history.chain.last() {
        println!(
            "  history        {} manifest{}, hash chain checked",
            history.chain.len(),
            if history.chain.len() == 1 { "" } else { "s" }
        );
        println!("  latest         manifest {}", last.manifest_hash);
        println!("  transition     {}", last.transition_hash);
    }
    println!(
        "  wrote          {}/ (coordinator-root.pem, mesh-root.pem, history.json, manifests/, policies/)",
        a.output.display().to_string().trim_end_matches('/')
    );
    if local.is_none() {
        eprintln!(
            "warning: no manifest given (-m): the Coordinator was verified against its own latest \
             manifest. That proves it runs as that manifest describes, not that the manifest is \
             the one you want: review {} (reference values, policies, workload owner keys) and \
             the history before trusting {}, or pass -m with the manifest you expect.",
            a.output
                .join("manifests")
                .join(format!(
                    "manifest.{}.json",
                    history.manifests.len().saturating_sub(1)
                ))
                .display(),
            a.output.join("coordinator-root.pem").display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::manifest_bytes;

    fn pem() -> Vec<u8> {
        use base64::Engine as _;
        let key = nunki_atls::cert::AttestingKey::generate().unwrap();
        let ck = key
            .certify(None, None, std::time::SystemTime::now())
            .unwrap();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(ck.cert.first().unwrap())
        )
        .into_bytes()
    }

    fn response() -> (GetManifestsResponse, PolicyHash, PolicyHash) {
        let coord = policy_hash(b"coordinator policy");
        let web = policy_hash(b"web policy");
        let m0 = manifest_bytes(&[(&coord, "coordinator")], "");
        let m1 = manifest_bytes(&[(&coord, "coordinator"), (&web, "")], "v2");
        let chain = transition_chain(&[&m0, &m1]);
        let resp = GetManifestsResponse {
            manifests: vec![m0, m1],
            policies: vec![b"web policy".to_vec(), b"coordinator policy".to_vec()],
            root_ca: pem(),
            mesh_ca: pem(),
            latest_transition: chain[1].transition_hash.0.to_vec(),
        };
        (resp, coord, web)
    }

    #[test]
    fn chain_must_end_in_the_latest_transition() {
        let (resp, _, _) = response();
        let chain = check_chain(&resp.manifests, &resp.latest_transition).unwrap();
        assert_eq!(chain.len(), 2);
        // The transition of the first manifest only: the second was not chained.
        let first = transition_chain(&[&resp.manifests[0]])[0].transition_hash;
        let err = check_chain(&resp.manifests, &first.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&first.to_hex()), "{err}");
        assert!(err.contains(&chain[1].transition_hash.to_hex()), "{err}");
        // Reordered history.
        let swapped = vec![resp.manifests[1].clone(), resp.manifests[0].clone()];
        assert!(check_chain(&swapped, &resp.latest_transition).is_err());
        // A manifest dropped from the front.
        assert!(check_chain(&resp.manifests[1..], &resp.latest_transition).is_err());
        assert!(
            check_chain(&resp.manifests, &[0; 31])
                .unwrap_err()
                .to_string()
                .contains("31 bytes")
        );
        assert!(check_chain(&[], &[0; 32]).is_err());
    }

    #[test]
    fn history_needs_the_latest_policies_and_certificates() {
        let (resp, _, web) = response();
        let latest = latest_manifest(&resp).unwrap();
        let h = check_history(resp.clone(), &latest).unwrap();
        assert_eq!(h.policies.len(), 2);

        let mut r = resp.clone();
        r.policies = vec![
            b"coordinator policy".to_vec(),
            b"web policy, altered".to_vec(),
        ];
        let err = check_history(r, &latest).unwrap_err().to_string();
        assert!(err.contains(&web.to_hex()), "{err}");

        let mut r = resp.clone();
        r.mesh_ca = b"nope".to_vec();
        assert!(
            check_history(r, &latest)
                .unwrap_err()
                .to_string()
                .contains("mesh CA")
        );

        let mut r = resp;
        r.manifests.clear();
        assert!(
            latest_manifest(&r)
                .unwrap_err()
                .to_string()
                .contains("no manifest")
        );
        r.manifests.push(b"{}".to_vec());
        assert!(
            latest_manifest(&r)
                .unwrap_err()
                .to_string()
                .contains("not valid")
        );
    }

    #[test]
    fn output_layout() {
        let (resp, coord, web) = response();
        let latest = latest_manifest(&resp).unwrap();
        let h = check_history(resp.clone(), &latest).unwrap();
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("verify");
        create_dir(&out.join("manifests")).unwrap();
        std::fs::write(out.join("manifests/manifest.7.json"), "stale").unwrap();
        std::fs::write(out.join("manifests/notes.txt"), "mine").unwrap();
        let written = write_output(&out, &h).unwrap();
        assert_eq!(written.len(), 2 + 2 + 1 + 2);
        let read = |p: &str| std::fs::read(out.join(p)).unwrap();
        assert_eq!(read("manifests/manifest.0.json"), resp.manifests[0]);
        assert_eq!(read("manifests/manifest.1.json"), resp.manifests[1]);
        assert!(!out.join("manifests/manifest.7.json").exists());
        assert!(out.join("manifests/notes.txt").exists());
        assert_eq!(
            read(&format!("policies/{}", coord.to_hex())),
            b"coordinator policy"
        );
        assert_eq!(read(&format!("policies/{}", web.to_hex())), b"web policy");
        assert_eq!(read("coordinator-root.pem"), resp.root_ca);
        assert_eq!(read("mesh-root.pem"), resp.mesh_ca);
        let hist: serde_json::Value = serde_json::from_slice(&read("history.json")).unwrap();
        assert_eq!(
            hist,
            serde_json::json!([
                {
                    "index": 0,
                    "manifest_hash": h.chain[0].manifest_hash.to_hex(),
                    "transition_hash": h.chain[0].transition_hash.to_hex(),
                },
                {
                    "index": 1,
                    "manifest_hash": h.chain[1].manifest_hash.to_hex(),
                    "transition_hash": hex::encode(&resp.latest_transition),
                },
            ])
        );
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
