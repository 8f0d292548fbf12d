//! Issue 6 over real loopback sockets: seed shares from the first manifest, restart → recovery
//! mode → Recover (refused for a wrong seed, salt, key or a tampered history, with nothing
//! changed) → issuing again with the same root CA, history and workload secrets; owner-key
//! authorisation of updates; the audit log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nunki_api::userapi::user_api_client::UserApiClient;
use nunki_api::userapi::{
    GetAuditLogRequest, GetManifestsRequest, GetManifestsResponse, RecoverRequest,
};
use nunki_atls::SimIssuer;
use nunki_atls::cert::AttestingKey;
use nunki_ca::SeedShareDocument;
use nunki_coordinator::run::StoreChoice;
use nunki_manifest::{AuditOperation, AuditOutcome, Sha256Fingerprint, check_audit_chain};
use tonic::Code;

mod common;
use common::*;

/// A refused recovery: what, client key, seed, salt, expected code, expected text.
type Case = (
    &'static str,
    Option<Arc<AttestingKey>>,
    Vec<u8>,
    Vec<u8>,
    Code,
    &'static str,
);

/// A seed-share owner: (PKCS#8 private key, hex PKCS#1 public key, TLS client key).
fn seedshare_owner() -> (Vec<u8>, String, Arc<AttestingKey>) {
    let (private, public) = nunki_ca::generate_seedshare_owner_key().unwrap();
    let tls = Arc::new(AttestingKey::from_pkcs8(&private).unwrap());
    (private.to_vec(), hex::encode(public), tls)
}

fn owner_digest(k: &AttestingKey) -> Sha256Fingerprint {
    Sha256Fingerprint(sha256(&k.spki_der()))
}

/// Every file below `dir` except the audit log, with its content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "audit") {
                    continue;
                }
                walk(&p, out);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn find_file(dir: &Path, parent: &str, name: &str) -> PathBuf {
    snapshot(dir)
        .into_keys()
        .find(|p| {
            p.file_name().is_some_and(|n| n == name)
                && p.parent()
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == parent)
        })
        .unwrap()
}

fn root_spki(pem: &[u8]) -> Vec<u8> {
    let der = nunki_attestation::snp::certs::pem_or_der_certs(pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
    cert.public_key().raw.to_vec()
}

async fn recover(
    addr: std::net::SocketAddr,
    d: &Deployment,
    key: Option<Arc<AttestingKey>>,
    seed: &[u8],
    salt: &[u8],
) -> Result<nunki_api::userapi::RecoverResponse, tonic::Status> {
    let ch = user_channel(addr, d.coordinator_host_data(), key)
        .await
        .unwrap();
    UserApiClient::new(ch.channel())
        .recover(RecoverRequest {
            seed: seed.to_vec(),
            salt: salt.to_vec(),
            force: false,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn manifests(addr: std::net::SocketAddr, d: &Deployment) -> GetManifestsResponse {
    let ch = user_channel(addr, d.coordinator_host_data(), None)
        .await
        .unwrap();
    UserApiClient::new(ch.channel())
        .get_manifests(GetManifestsRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recover_and_issue_again() {
    let owner = Arc::new(AttestingKey::generate().unwrap());
    let (ss_private, ss_public, ss_tls) = seedshare_owner();
    let (_, _, stranger_tls) = seedshare_owner();
    let d = Deployment::build(vec![owner_digest(&owner)], vec![ss_public.clone()], "x");
    let state = tempfile::tempdir().unwrap();
    let store = || StoreChoice::Dir(state.path().to_path_buf());
    let web = || Arc::new(SimIssuer::new(sim(), d.web_host_data())) as Arc<dyn nunki_atls::Issuer>;

    // First manifest: the seed shares come back, one per owner.
    let c = coordinator(store(), d.coordinator_host_data())
        .await
        .unwrap();
    let ch = user_channel(c.user_api, d.coordinator_host_data(), None)
        .await
        .unwrap();
    let set = UserApiClient::new(ch.channel())
        .set_manifest(d.request(None))
        .await
        .unwrap()
        .into_inner();
    let doc = SeedShareDocument::parse(&set.seed_share_document).unwrap();
    assert_eq!(doc.seed_shares.len(), 1);
    let (seed, salt) = doc.decrypt(&ss_private).unwrap();
    let (_, before) = pod(c.mesh_api, web()).await.unwrap();
    assert_eq!(before.workload_secret.len(), 64);
    let history_before = manifests(c.user_api, &d).await;
    assert!(!history_before.latest_transition_signature.is_empty());
    c.shutdown().await;

    // Restart: recovery mode, nothing issued.
    let c = coordinator(store(), d.coordinator_host_data())
        .await
        .unwrap();
    assert!(pod(c.mesh_api, web()).await.is_err());
    let ch = user_channel(c.user_api, d.coordinator_host_data(), None)
        .await
        .unwrap();
    let st = UserApiClient::new(ch.channel())
        .get_manifests(GetManifestsRequest {})
        .await
        .unwrap_err();
    assert!(st.message().contains("recovery mode"), "{}", st.message());
    // The seed shares can be downloaded again, also in recovery mode: the same bytes.
    let ch = user_channel(c.user_api, d.coordinator_host_data(), None)
        .await
        .unwrap();
    let again = UserApiClient::new(ch.channel())
        .get_seed_shares(nunki_api::userapi::GetSeedSharesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.seed_share_document, set.seed_share_document);
    let on_disk = snapshot(state.path());

    // Refusals, each with its reason and nothing changed on disk.
    let mut bad_seed = seed.as_bytes().to_vec();
    bad_seed[0] ^= 1;
    let mut bad_salt = salt.as_bytes().to_vec();
    bad_salt[31] ^= 1;
    let p256 = Arc::new(AttestingKey::generate().unwrap());
    let cases: Vec<Case> = vec![
        (
            "no client key",
            None,
            seed.as_bytes().to_vec(),
            salt.as_bytes().to_vec(),
            Code::Unauthenticated,
            "seed-share owner key",
        ),
        (
            "a key not listed",
            Some(stranger_tls.clone()),
            seed.as_bytes().to_vec(),
            salt.as_bytes().to_vec(),
            Code::PermissionDenied,
            "is not a seed-share owner",
        ),
        (
            "not an RSA key",
            Some(p256),
            seed.as_bytes().to_vec(),
            salt.as_bytes().to_vec(),
            Code::PermissionDenied,
            "not a seed-share owner key",
        ),
        (
            "wrong seed",
            Some(ss_tls.clone()),
            bad_seed,
            salt.as_bytes().to_vec(),
            Code::PermissionDenied,
            "do not belong to this deployment",
        ),
        (
            "wrong salt",
            Some(ss_tls.clone()),
            seed.as_bytes().to_vec(),
            bad_salt,
            Code::PermissionDenied,
            "do not belong to this deployment",
        ),
        (
            "short seed",
            Some(ss_tls.clone()),
            seed.as_bytes()[..32].to_vec(),
            salt.as_bytes().to_vec(),
            Code::InvalidArgument,
            "seed",
        ),
    ];
    for (what, key, s, t, code, needle) in cases {
        let st = recover(c.user_api, &d, key, &s, &t).await.unwrap_err();
        assert_eq!(st.code(), code, "{what}: {}", st.message());
        assert!(st.message().contains(needle), "{what}: {}", st.message());
        assert_eq!(snapshot(state.path()), on_disk, "{what} changed the state");
        assert!(pod(c.mesh_api, web()).await.is_err(), "{what}");
    }

    // A tampered latest-transition file (signature bit flipped) is refused even with the right
    // seed; restored, the same seed works.
    let latest_file = find_file(state.path(), "transitions", "latest");
    let original = std::fs::read(&latest_file).unwrap();
    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(&latest_file, &tampered).unwrap();
    let st = recover(
        c.user_api,
        &d,
        Some(ss_tls.clone()),
        seed.as_bytes(),
        salt.as_bytes(),
    )
    .await
    .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied, "{}", st.message());
    assert!(st.message().contains("does not verify"), "{}", st.message());
    std::fs::write(&latest_file, &original).unwrap();
    assert_eq!(snapshot(state.path()), on_disk);

    let rec = recover(
        c.user_api,
        &d,
        Some(ss_tls.clone()),
        seed.as_bytes(),
        salt.as_bytes(),
    )
    .await
    .unwrap();
    // Root CA: same key; mesh CA: new.
    assert_eq!(root_spki(&rec.root_ca), root_spki(&set.root_ca));
    assert_ne!(root_spki(&rec.mesh_ca), root_spki(&set.mesh_ca));
    // History intact and signed by the same history key.
    let history_after = manifests(c.user_api, &d).await;
    assert_eq!(history_after.manifests, history_before.manifests);
    assert_eq!(
        history_after.latest_transition,
        history_before.latest_transition
    );
    assert_eq!(
        history_after.history_public_key,
        history_before.history_public_key
    );
    // Issuing again, with the same workload secret.
    let (_, after) = pod(c.mesh_api, web()).await.unwrap();
    assert_eq!(after.workload_secret, before.workload_secret);
    assert_eq!(root_spki(&after.root_ca), root_spki(&before.root_ca));
    // Recovering a ready Coordinator is refused.
    let st = recover(
        c.user_api,
        &d,
        Some(ss_tls.clone()),
        seed.as_bytes(),
        salt.as_bytes(),
    )
    .await
    .unwrap_err();
    assert_eq!(st.code(), Code::FailedPrecondition);

    // The audit log has every attempt, chained, its head signed by the history key.
    let ch = user_channel(c.user_api, d.coordinator_host_data(), None)
        .await
        .unwrap();
    let log = UserApiClient::new(ch.channel())
        .get_audit_log(GetAuditLogRequest {})
        .await
        .unwrap()
        .into_inner();
    let chain = check_audit_chain(&log.records).unwrap();
    let ops: Vec<(AuditOperation, AuditOutcome)> = chain
        .iter()
        .map(|(_, r)| (r.operation, r.outcome))
        .collect();
    use AuditOperation::{Recover, SetManifest};
    use AuditOutcome::{Accepted, Refused};
    let mut expected = vec![(SetManifest, Accepted)];
    expected.extend(std::iter::repeat_n((Recover, Refused), 7));
    expected.extend([(Recover, Accepted), (Recover, Refused)]);
    assert_eq!(ops, expected);
    let accepted = &chain[8].1;
    assert_eq!(
        accepted.client_key_digest.as_deref(),
        Some(nunki_ca::seedshare_owner_key_digest(&hex::decode(&ss_public).unwrap()).unwrap())
            .as_deref()
    );
    assert!(chain[3].1.reason.as_deref().unwrap().contains("RSA"));
    nunki_ca::verify_history_signature(
        &log.history_public_key,
        nunki_ca::Signed::AuditHead,
        &chain.last().unwrap().0,
        &log.head_signature,
    )
    .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_need_a_listed_owner_key_and_keep_the_seedshare_owners() {
    let owner = Arc::new(AttestingKey::generate().unwrap());
    let other = Arc::new(AttestingKey::generate().unwrap());
    let (_, ss_public, _) = seedshare_owner();
    let d1 = Deployment::build(vec![owner_digest(&owner)], vec![ss_public.clone()], "v1");
    let d2 = Deployment::build(vec![owner_digest(&owner)], vec![ss_public.clone()], "v2");
    let c = coordinator(StoreChoice::Memory, d1.coordinator_host_data())
        .await
        .unwrap();
    let set = |d: &Deployment, key: Option<Arc<AttestingKey>>| {
        let req = d.request(None);
        let host = d.coordinator_host_data();
        let addr = c.user_api;
        async move {
            let ch = user_channel(addr, host, key).await.unwrap();
            UserApiClient::new(ch.channel())
                .set_manifest(req)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let first = set(&d1, None).await.unwrap();
    assert!(!first.seed_share_document.is_empty());

    // Another key: refused, naming the presented digest and the allowed ones.
    let st = set(&d2, Some(other.clone())).await.unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied);
    assert!(
        st.message().contains(&owner_digest(&other).to_string()),
        "{}",
        st.message()
    );
    assert!(
        st.message().contains(&owner_digest(&owner).to_string()),
        "{}",
        st.message()
    );
    // No key: refused, naming the allowed digests.
    let st = set(&d2, None).await.unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated);
    assert!(st.message().contains(&owner_digest(&owner).to_string()));
    // The listed key: accepted; no new seed shares for an update.
    let second = set(&d2, Some(owner.clone())).await.unwrap();
    assert!(second.seed_share_document.is_empty());
    assert_eq!(root_spki(&second.root_ca), root_spki(&first.root_ca));

    // Changing the seed-share owners is refused.
    let (_, another_ss, _) = seedshare_owner();
    let d3 = Deployment::build(vec![owner_digest(&owner)], vec![another_ss], "v3");
    let st = set(&d3, Some(owner.clone())).await.unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(st.message().contains("SeedshareOwnerPubKeys cannot change"));

    // An update that lists no owner keys makes the deployment immutable.
    let frozen = Deployment::build(vec![], vec![ss_public.clone()], "v4");
    set(&frozen, Some(owner.clone())).await.unwrap();
    let d5 = Deployment::build(vec![owner_digest(&owner)], vec![ss_public], "v5");
    for key in [Some(owner.clone()), Some(other), None] {
        let st = set(&d5, key).await.unwrap_err();
        assert_eq!(st.code(), Code::PermissionDenied, "{}", st.message());
        assert!(
            st.message().contains("updates are disabled"),
            "{}",
            st.message()
        );
    }
    let history = manifests(c.user_api, &d1).await;
    assert_eq!(history.manifests.len(), 3);
    c.shutdown().await;
}
