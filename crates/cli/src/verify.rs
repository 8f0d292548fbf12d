//! `nunki verify`: attest the Coordinator, fetch its manifest history, check the history's hash
//! chain and policies, and write everything out for review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use nunki_api::userapi::user_api_client::UserApiClient;
use nunki_api::userapi::{
    GetAuditLogRequest, GetAuditLogResponse, GetManifestsRequest, GetManifestsResponse,
};
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
    /// Also fetch, check (hash chain, history-key signature) and print the audit log: every
    /// accepted or refused SetManifest and Recover. Written to DIR/audit-log.json.
    #[arg(long)]
    pub log: bool,
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
    /// The history key (SubjectPublicKeyInfo DER) that signed the latest transition.
    pub history_public_key: Vec<u8>,
    /// Its signature over the latest transition.
    pub latest_signature: Vec<u8>,
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

/// Recomputes the transition chain of `manifests` (oldest first): each manifest's transition
/// must be the one the Coordinator stored for it (`transition_hashes`, same length), and the last
/// must be `latest_transition`. The first mismatch is named by its index.
pub fn check_chain(
    manifests: &[Vec<u8>],
    transition_hashes: &[Vec<u8>],
    latest_transition: &[u8],
) -> Result<Vec<ChainEntry>> {
    let claimed = TransitionHash::from_slice(latest_transition).map_err(|_| {
        anyhow!(
            "the Coordinator's latest transition hash is {} bytes, not 32",
            latest_transition.len()
        )
    })?;
    if transition_hashes.len() != manifests.len() {
        bail!(
            "the Coordinator returned {} manifests but {} transition hashes",
            manifests.len(),
            transition_hashes.len()
        );
    }
    let refs: Vec<&[u8]> = manifests.iter().map(Vec::as_slice).collect();
    let chain = transition_chain(&refs);
    for (entry, stored) in chain.iter().zip(transition_hashes) {
        if entry.transition_hash.0.as_slice() != stored.as_slice() {
            bail!(
                "manifest #{i} (SHA-256 {m}) does not match the history: recomputed transition \
                 #{i} is {t}, the Coordinator's is {s}; manifest #{i} (or one before it) was \
                 swapped or altered",
                i = entry.index,
                m = entry.manifest_hash,
                t = entry.transition_hash,
                s = hex::encode(stored)
            );
        }
    }
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

/// Checks the history key's signature over the latest transition.
pub fn check_signature(resp: &GetManifestsResponse) -> Result<()> {
    let latest = TransitionHash::from_slice(&resp.latest_transition)
        .map_err(|_| anyhow!("the Coordinator's latest transition hash is not 32 bytes"))?;
    nunki_ca::verify_history_signature(
        &resp.history_public_key,
        nunki_ca::Signed::LatestTransition,
        latest.as_bytes(),
        &resp.latest_transition_signature,
    )
    .map_err(|e| anyhow!("latest transition {latest}: {e}"))
}

/// Checks a response whose latest manifest is `latest` (already trusted): the chain, the
/// policies of the latest manifest, the CA certificates.
pub fn check_history(
    resp: GetManifestsResponse,
    latest: &ParsedManifest,
) -> Result<VerifiedHistory> {
    let chain = check_chain(
        &resp.manifests,
        &resp.transition_hashes,
        &resp.latest_transition,
    )?;
    check_signature(&resp)?;
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
        history_public_key: resp.history_public_key,
        latest_signature: resp.latest_transition_signature,
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
    if let Some(last) = h.chain.last() {
        let sig = serde_json::json!({
            "transition_hash": last.transition_hash.to_hex(),
            "signature": hex::encode(&h.latest_signature),
            "signed_message": format!(
                "{}{}",
                hex::encode(nunki_ca::LATEST_TRANSITION_CONTEXT),
                last.transition_hash.to_hex()
            ),
            "algorithm": "ECDSA P-384 SHA-384, DER signature; key in history-key.pem",
        });
        let mut json = serde_json::to_vec_pretty(&sig)?;
        json.push(b'\n');
        let p = dir.join("latest-transition.json");
        write_atomic(&p, &json)?;
        written.push(p);
    }
    let p = dir.join("history-key.pem");
    write_atomic(&p, public_key_pem(&h.history_public_key).as_bytes())?;
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

/// An audit log that passed the checks.
#[derive(Debug)]
pub struct CheckedAuditLog {
    /// Records, oldest first.
    pub records: Vec<nunki_manifest::AuditRecord>,
    /// How many records (from the oldest) the signed head covers: all of them when the head is
    /// signed, 0 when it is not (the newest record was written in recovery mode).
    pub signed: usize,
}

/// Checks the audit log: the hash chain, and the history-key signature over its head (with the
/// key that signed the latest transition).
pub fn check_audit_log(
    log: &GetAuditLogResponse,
    history_public_key: &[u8],
) -> Result<CheckedAuditLog> {
    let chain = nunki_manifest::check_audit_chain(&log.records)
        .map_err(|e| anyhow!("the audit log: {e}"))?;
    if !log.history_public_key.is_empty() && log.history_public_key != history_public_key {
        bail!("the audit log names another history key than the manifest history");
    }
    let signed = match (chain.last(), log.head_signature.is_empty()) {
        (None, _) => 0,
        (Some(_), true) => 0,
        (Some((head, _)), false) => {
            nunki_ca::verify_history_signature(
                history_public_key,
                nunki_ca::Signed::AuditHead,
                head,
                &log.head_signature,
            )
            .map_err(|e| anyhow!("the audit log's head: {e}"))?;
            chain.len()
        }
    };
    Ok(CheckedAuditLog {
        records: chain.into_iter().map(|(_, r)| r).collect(),
        signed,
    })
}

fn write_audit_log(path: &Path, records: &[nunki_manifest::AuditRecord]) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(records)?;
    json.push(b'\n');
    write_atomic(path, &json)
}

fn print_audit_log(log: &CheckedAuditLog) {
    let short = |s: &Option<String>| {
        s.as_deref()
            .map_or_else(|| "-".to_string(), |s| s.chars().take(12).collect())
    };
    println!(
        "  audit log      {} record{}, hash chain checked, {}",
        log.records.len(),
        if log.records.len() == 1 { "" } else { "s" },
        if log.records.is_empty() {
            "empty".to_string()
        } else if log.signed == log.records.len() {
            "head signed by the history key".to_string()
        } else {
            "head NOT signed (written in recovery mode)".to_string()
        }
    );
    for r in &log.records {
        let outcome = match r.outcome {
            nunki_manifest::AuditOutcome::Accepted => "accepted".to_string(),
            nunki_manifest::AuditOutcome::Refused => {
                format!("refused: {}", r.reason.as_deref().unwrap_or("?"))
            }
        };
        let op = match r.operation {
            nunki_manifest::AuditOperation::SetManifest => "SetManifest",
            nunki_manifest::AuditOperation::Recover => "Recover",
        };
        let suppressed = if r.suppressed_refusals > 0 {
            format!(" (+{} refusals not recorded)", r.suppressed_refusals)
        } else {
            String::new()
        };
        println!(
            "    #{:<4} {} {:<11} key {:<12} manifest {:<12} {}{}",
            r.index,
            r.time,
            op,
            short(&r.client_key_digest),
            short(&r.manifest),
            outcome.lines().next().unwrap_or_default(),
            suppressed
        );
    }
}

/// PEM of a SubjectPublicKeyInfo.
pub fn public_key_pem(spki: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
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
    let (ch, resp, log) = rt.block_on(async {
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
        let log = if a.log {
            let r = UserApiClient::new(ch.channel())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .get_audit_log(GetAuditLogRequest::default())
                .await
                .map_err(|s| {
                    check(format!(
                        "the Coordinator did not return its audit log: {}",
                        coordinator_client::explain(&ch, &s)
                    ))
                })?;
            Some(r.into_inner())
        } else {
            None
        };
        Ok::<_, Failure>((ch, resp.into_inner(), log))
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
    let audit = match log {
        Some(log) => {
            let checked = check_audit_log(&log, &history.history_public_key).check()?;
            let p = a.output.join("audit-log.json");
            write_audit_log(&p, &checked.records).input()?;
            Some((checked, p))
        }
        None => None,
    };

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
            "  history        {} manifest{}, hash chain and history-key signature checked",
            history.chain.len(),
            if history.chain.len() == 1 { "" } else { "s" }
        );
        println!("  latest         manifest {}", last.manifest_hash);
        println!("  transition     {}", last.transition_hash);
    }
    println!(
        "  wrote          {}/ (coordinator-root.pem, mesh-root.pem, history.json, latest-transition.json, history-key.pem, manifests/, policies/)",
        a.output.display().to_string().trim_end_matches('/')
    );
    if let Some((checked, path)) = &audit {
        print_audit_log(checked);
        println!("  wrote          {}", path.display());
        if checked.signed < checked.records.len() {
            eprintln!(
                "warning: the audit log's newest record is not signed by the history key (it \
                 was written by a replica in recovery mode, or the log was altered): its records \
                 are hash-chained but not authenticated"
            );
        }
    }
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
        let seed = nunki_ca::Seed::from_bytes(&[1; 64]).unwrap();
        let salt = nunki_ca::Salt::from_bytes(&[2; 32]).unwrap();
        let key = nunki_ca::HistoryKey::from_pkcs8(
            &nunki_ca::SeedEngine::new(&seed, &salt)
                .history_signing_key()
                .unwrap(),
        )
        .unwrap();
        let resp = GetManifestsResponse {
            manifests: vec![m0, m1],
            policies: vec![b"web policy".to_vec(), b"coordinator policy".to_vec()],
            root_ca: pem(),
            mesh_ca: pem(),
            latest_transition: chain[1].transition_hash.0.to_vec(),
            latest_transition_signature: key
                .sign(
                    nunki_ca::Signed::LatestTransition,
                    &chain[1].transition_hash.0,
                )
                .unwrap(),
            history_public_key: key.public_key_der().to_vec(),
            transition_hashes: chain.iter().map(|e| e.transition_hash.0.to_vec()).collect(),
        };
        (resp, coord, web)
    }

    #[test]
    fn chain_must_end_in_the_latest_transition() {
        let (resp, _, _) = response();
        let th = &resp.transition_hashes;
        let chain = check_chain(&resp.manifests, th, &resp.latest_transition).unwrap();
        assert_eq!(chain.len(), 2);
        check_signature(&resp).unwrap();
        // The transition of the first manifest only: the second was not chained.
        let first = transition_chain(&[&resp.manifests[0]])[0].transition_hash;
        let err = check_chain(&resp.manifests, th, &first.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&first.to_hex()), "{err}");
        assert!(err.contains(&chain[1].transition_hash.to_hex()), "{err}");
        // Reordered history: the first manifest is named.
        let swapped = vec![resp.manifests[1].clone(), resp.manifests[0].clone()];
        let err = check_chain(&swapped, th, &resp.latest_transition)
            .unwrap_err()
            .to_string();
        assert!(err.contains("manifest #0 "), "{err}");
        // A manifest replaced at index 1.
        let replaced = vec![resp.manifests[0].clone(), b"{}".to_vec()];
        let err = check_chain(&replaced, th, &resp.latest_transition)
            .unwrap_err()
            .to_string();
        assert!(err.contains("manifest #1 "), "{err}");
        // A manifest dropped from the front.
        assert!(check_chain(&resp.manifests[1..], &th[1..], &resp.latest_transition).is_err());
        assert!(check_chain(&resp.manifests[1..], th, &resp.latest_transition).is_err());
        assert!(
            check_chain(&resp.manifests, th, &[0; 31])
                .unwrap_err()
                .to_string()
                .contains("31 bytes")
        );
        assert!(check_chain(&[], &[], &[0; 32]).is_err());
        // Signature: altered, missing, or by another key.
        let mut r = resp.clone();
        let last = r.latest_transition_signature.len() - 1;
        r.latest_transition_signature[last] ^= 1;
        assert!(check_signature(&r).is_err());
        r.latest_transition_signature.clear();
        assert!(
            check_signature(&r)
                .unwrap_err()
                .to_string()
                .contains("no signature")
        );
        let mut r = resp.clone();
        r.history_public_key = nunki_atls::cert::AttestingKey::generate()
            .unwrap()
            .spki_der();
        assert!(check_signature(&r).is_err());
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
        assert_eq!(written.len(), 2 + 2 + 1 + 1 + 1 + 2);
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
