#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The manifest history on every [`Store`] backend ([`MemStore`], [`DirStore`], the Kubernetes
//! store on a fake API server), and what the
//! history looks like on disk in a directory store (layout, modes, tampered files, crash
//! leftovers). The store-level contract itself is `nunki_store::contract`, run by each
//! backend's crate.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nunki_coordinator::history::{History, HistoryEntry, HistoryError, LatestTransition};
use nunki_coordinator::store::{DirStore, MemStore, Store, StoreKey};
use nunki_kube::store::fake::FakeApiServer;
use nunki_manifest::{ManifestHash, PolicyHash, Transition, TransitionHash};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A store under test, and a way to get a second handle on the same data.
struct Fixture {
    store: Arc<dyn Store>,
    /// The state directory of a [`DirStore`].
    dir: Option<TempDir>,
    /// The fake API server of a [`KubeStore`].
    kube: Option<FakeApiServer>,
}

/// Namespace of the Kubernetes store's ConfigMaps.
const NS: &str = "nunki";

impl Fixture {
    fn mem() -> Fixture {
        Fixture {
            store: Arc::new(MemStore::new()),
            dir: None,
            kube: None,
        }
    }

    async fn dir() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).await.unwrap();
        Fixture {
            store: Arc::new(store),
            dir: Some(dir),
            kube: None,
        }
    }

    async fn kube() -> Fixture {
        let server = FakeApiServer::start().await.unwrap();
        Fixture {
            store: Arc::new(server.store(NS).unwrap()),
            dir: None,
            kube: Some(server),
        }
    }

    /// Another handle on the same data: for a directory, a new [`DirStore`] over the same state
    /// directory (what another process, or a restart, would open); in Kubernetes, a new client
    /// (another replica); in memory, the same store.
    async fn reopen(&self) -> Arc<dyn Store> {
        match (&self.dir, &self.kube) {
            (Some(dir), _) => Arc::new(DirStore::open(dir.path()).await.unwrap()),
            (None, Some(server)) => Arc::new(server.store(NS).unwrap()),
            (None, None) => Arc::clone(&self.store),
        }
    }

    fn history(&self) -> History {
        History::new(Arc::clone(&self.store))
    }
}

/// A valid manifest listing `policies` (the first as the Coordinator); `n` makes it unique.
fn manifest(policies: &[PolicyHash], n: u8) -> Vec<u8> {
    let entries: Vec<String> = policies
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let role = if i == 0 { "coordinator" } else { "" };
            format!(r#""{h}": {{"SANs": ["svc-{i}"], "WorkloadSecretID": "", "Role": "{role}"}}"#)
        })
        .collect();
    format!(
        r#"{{"Policies": {{{}}},
"ReferenceValues": {{"simulated": [{{"RootFingerprint": "{}", "ProductName": "Milan",
  "TrustedMeasurement": "{}",
  "MinimumTCB": {{"BootloaderVersion": {n}, "TEEVersion": 0, "SNPVersion": 0, "MicrocodeVersion": 0}}}}]}},
"WorkloadOwnerKeyDigests": [], "SeedshareOwnerPubKeys": []}}
"#,
        entries.join(", "),
        "11".repeat(32),
        "22".repeat(48),
    )
    .into_bytes()
}

/// What [`build_chain`] stored.
struct Chain {
    manifests: Vec<Vec<u8>>,
    policies: Vec<(PolicyHash, Vec<u8>)>,
    transitions: Vec<TransitionHash>,
    latest: LatestTransition,
}

/// Sets three manifests the way the Coordinator does: policies, manifest, transition, then
/// compare-and-swap of the latest pointer.
async fn build_chain(history: &History) -> Chain {
    let mut policies = Vec::new();
    for i in 0..4 {
        let raw = format!("package agent_policy\n# policy {i}\n").into_bytes();
        let hash = history.set_policy(&raw).await.unwrap();
        policies.push((hash, raw));
    }
    let p: Vec<PolicyHash> = policies.iter().map(|(h, _)| *h).collect();
    let manifests = vec![
        manifest(&[p[0]], 1),
        manifest(&[p[0], p[1]], 2),
        manifest(&[p[2], p[3]], 3),
    ];
    let mut latest: Option<LatestTransition> = None;
    let mut transitions = Vec::new();
    for raw in &manifests {
        let manifest_hash = history.set_manifest(raw).await.unwrap();
        let previous = latest.as_ref().map_or(TransitionHash::GENESIS, |l| l.hash);
        let hash = history
            .set_transition(&Transition {
                manifest_hash,
                previous,
            })
            .await
            .unwrap();
        let new = LatestTransition {
            hash,
            signature: vec![0xAA, transitions.len() as u8],
        };
        history.cas_latest(latest.as_ref(), &new).await.unwrap();
        latest = Some(new);
        transitions.push(hash);
    }
    Chain {
        manifests,
        policies,
        transitions,
        latest: latest.unwrap(),
    }
}

fn check_walk(entries: &[HistoryEntry], chain: &Chain) {
    assert_eq!(entries.len(), 3);
    let mut previous = TransitionHash::GENESIS;
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.manifest, chain.manifests[i], "entry {i}");
        assert_eq!(e.transition_hash, chain.transitions[i]);
        assert_eq!(e.transition.previous, previous);
        assert_eq!(
            e.transition.manifest_hash,
            ManifestHash::of_manifest_bytes(&chain.manifests[i])
        );
        assert_eq!(e.transition.hash(), e.transition_hash);
        previous = e.transition_hash;
    }
}

// ---------------------------------------------------------------------------------------------
// The history on top of the store

async fn history_empty(f: Fixture) {
    let h = f.history();
    assert_eq!(h.latest().await.unwrap(), None);
    assert!(h.walk().await.unwrap().is_empty());
    let v = h.verify_all().await.unwrap();
    assert!(v.latest.is_none() && v.entries.is_empty() && v.policies.is_empty());
    assert!(v.latest_manifest.is_none());
    assert!(h.latest_manifest().await.unwrap().is_none());
    let missing = ManifestHash([3; 32]);
    let e = h.get_manifest(&missing).await.unwrap_err();
    assert!(matches!(e, HistoryError::Missing { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!("manifests/{missing}")),
        "{e}"
    );
    let e = h.get_policy(&PolicyHash([3; 32])).await.unwrap_err();
    assert!(matches!(e, HistoryError::Missing { .. }), "{e}");
    let e = h
        .get_transition(&TransitionHash([3; 32]))
        .await
        .unwrap_err();
    assert!(matches!(e, HistoryError::Missing { .. }), "{e}");
}

async fn history_chain_round_trip(f: Fixture) {
    let h = f.history();
    let chain = build_chain(&h).await;
    assert_eq!(h.latest().await.unwrap().unwrap(), chain.latest);
    check_walk(&h.walk().await.unwrap(), &chain);
    let v = h.verify_all().await.unwrap();
    check_walk(&v.entries, &chain);
    assert_eq!(v.latest.as_ref(), Some(&chain.latest));
    assert_eq!(
        v.latest_manifest.as_ref().unwrap().raw(),
        &chain.manifests[2][..]
    );
    // The latest manifest alone, without walking the chain.
    assert_eq!(
        h.latest_manifest().await.unwrap().unwrap().raw(),
        &chain.manifests[2][..]
    );
    let expected: std::collections::BTreeMap<_, _> = chain.policies.iter().cloned().collect();
    assert_eq!(v.policies, expected);
    let latest_parsed = nunki_manifest::ParsedManifest::parse(&chain.manifests[2]).unwrap();
    let for_latest = h.policies_for(&latest_parsed).await.unwrap();
    let mut latest_policies = vec![chain.policies[2].0, chain.policies[3].0];
    latest_policies.sort();
    assert_eq!(
        for_latest.keys().copied().collect::<Vec<_>>(),
        latest_policies
    );
    // Content addressing: setting the same bytes again gives the same hash.
    assert_eq!(
        h.set_manifest(&chain.manifests[0]).await.unwrap(),
        chain.manifest_hash(0)
    );
    // Each piece reads back.
    for (hash, raw) in &chain.policies {
        assert_eq!(&h.get_policy(hash).await.unwrap(), raw);
    }
    let t = h.get_transition(&chain.transitions[1]).await.unwrap();
    assert_eq!(t.previous, chain.transitions[0]);
    // walk_from an older transition gives the prefix.
    let prefix = h.walk_from(&chain.transitions[1]).await.unwrap();
    assert_eq!(prefix.len(), 2);
    assert_eq!(prefix[1].transition_hash, chain.transitions[1]);
}

impl Chain {
    fn manifest_hash(&self, i: usize) -> ManifestHash {
        ManifestHash::of_manifest_bytes(&self.manifests[i])
    }
}

/// Replaces stored entries through the store API (bypassing the history's hashing).
async fn history_detects_tampering(f: Fixture) {
    let h = f.history();
    let chain = build_chain(&h).await;
    let s = &f.store;

    // A manifest.
    let m1 = chain.manifest_hash(1);
    let mkey = StoreKey::manifest(&m1);
    s.set(&mkey, b"{\"evil\": true}").await.unwrap();
    let loc = s.location(&mkey);
    for e in [
        h.get_manifest(&m1).await.unwrap_err(),
        h.walk().await.unwrap_err(),
        h.verify_all().await.unwrap_err(),
    ] {
        assert!(matches!(e, HistoryError::HashMismatch { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{loc}: content hashes to ")),
            "{msg}"
        );
        assert!(
            msg.ends_with(&format!(
                "expected {m1}; the file was modified or corrupted"
            )),
            "{msg}"
        );
    }
    s.set(&mkey, &chain.manifests[1]).await.unwrap();
    h.verify_all().await.unwrap();
    // The latest manifest tampered with: latest_manifest names it too.
    let m2 = chain.manifest_hash(2);
    let m2key = StoreKey::manifest(&m2);
    s.set(&m2key, b"{\"evil\": true}").await.unwrap();
    let e = h.latest_manifest().await.unwrap_err();
    assert!(matches!(e, HistoryError::HashMismatch { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}: ", s.location(&m2key))),
        "{e}"
    );
    s.set(&m2key, &chain.manifests[2]).await.unwrap();

    // A policy referenced only by an older manifest: walk does not read policies, verify_all does.
    let (p1, p1_raw) = &chain.policies[1];
    let pkey = StoreKey::policy(p1);
    s.set(&pkey, b"package agent_policy\ndefault allow := true\n")
        .await
        .unwrap();
    let loc = s.location(&pkey);
    h.walk().await.unwrap();
    for e in [
        h.get_policy(p1).await.unwrap_err(),
        h.verify_all().await.unwrap_err(),
    ] {
        assert!(matches!(e, HistoryError::HashMismatch { .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("{loc}: ")), "{e}");
    }
    s.set(&pkey, p1_raw).await.unwrap();

    // A transition rewritten to skip the middle manifest.
    let t2 = chain.transitions[2];
    let tkey = StoreKey::transition(&t2);
    let forged = Transition {
        manifest_hash: chain.manifest_hash(2),
        previous: chain.transitions[0],
    };
    s.set(&tkey, &forged.to_bytes()).await.unwrap();
    let loc = s.location(&tkey);
    for e in [
        h.get_transition(&t2).await.unwrap_err(),
        h.walk().await.unwrap_err(),
        h.verify_all().await.unwrap_err(),
    ] {
        assert!(matches!(e, HistoryError::HashMismatch { .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("{loc}: ")), "{e}");
    }
    // Truncated transition.
    s.set(&tkey, &forged.to_bytes()[..40]).await.unwrap();
    assert!(matches!(
        h.walk().await.unwrap_err(),
        HistoryError::HashMismatch { .. }
    ));
    s.set(
        &tkey,
        &Transition {
            manifest_hash: chain.manifest_hash(2),
            previous: chain.transitions[1],
        }
        .to_bytes(),
    )
    .await
    .unwrap();
    check_walk(&h.walk().await.unwrap(), &chain);

    // A stored manifest that hashes correctly but is not valid is reported by verify_all.
    let bad = b"not a manifest".to_vec();
    let bad_hash = h.set_manifest(&bad).await.unwrap();
    let t = h
        .set_transition(&Transition {
            manifest_hash: bad_hash,
            previous: chain.latest.hash,
        })
        .await
        .unwrap();
    h.cas_latest(Some(&chain.latest), &LatestTransition::unsigned(t))
        .await
        .unwrap();
    assert_eq!(h.walk().await.unwrap().len(), 4);
    let e = h.verify_all().await.unwrap_err();
    assert!(matches!(e, HistoryError::Corrupt { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}: ", s.location(&StoreKey::manifest(&bad_hash)))),
        "{e}"
    );
    // So is it by latest_manifest, which reads only that manifest.
    let e = h.latest_manifest().await.unwrap_err();
    assert!(matches!(e, HistoryError::Corrupt { .. }), "{e}");
}

async fn history_bad_latest(f: Fixture) {
    let h = f.history();
    let chain = build_chain(&h).await;
    let s = &f.store;
    let lkey = StoreKey::latest_transition();
    let loc = s.location(&lkey);

    // Truncated.
    s.set(&lkey, &chain.latest.to_bytes()[..20]).await.unwrap();
    for e in [
        h.latest().await.unwrap_err(),
        h.walk().await.unwrap_err(),
        h.verify_all().await.unwrap_err(),
    ] {
        assert!(matches!(e, HistoryError::Corrupt { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{loc}: ")), "{msg}");
        assert!(msg.contains("got only 20 bytes"), "{msg}");
    }
    // Empty.
    s.set(&lkey, b"").await.unwrap();
    assert!(matches!(
        h.latest().await.unwrap_err(),
        HistoryError::Corrupt { .. }
    ));
    // Exactly a hash, no signature: valid.
    s.set(&lkey, chain.latest.hash.as_bytes()).await.unwrap();
    assert_eq!(
        h.latest().await.unwrap().unwrap(),
        LatestTransition::unsigned(chain.latest.hash)
    );
    // Pointing at a transition that does not exist: a broken link naming the file.
    let ghost = TransitionHash([0x42; 32]);
    s.set(&lkey, &LatestTransition::unsigned(ghost).to_bytes())
        .await
        .unwrap();
    let e = h.walk().await.unwrap_err();
    assert!(matches!(e, HistoryError::Missing { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&s.location(&StoreKey::transition(&ghost))),
        "{e}"
    );
    // Pointing at the genesis marker.
    s.set(&lkey, &[0; 32]).await.unwrap();
    let e = h.walk().await.unwrap_err();
    assert!(matches!(e, HistoryError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("genesis"), "{e}");
    // A transition whose manifest is missing.
    let orphan = h
        .set_transition(&Transition::genesis(ManifestHash([0x77; 32])))
        .await
        .unwrap();
    s.set(&lkey, orphan.as_bytes()).await.unwrap();
    let e = h.walk().await.unwrap_err();
    assert!(matches!(e, HistoryError::Missing { .. }), "{e}");
    assert!(e.to_string().contains(&"77".repeat(32)), "{e}");
}

async fn history_cas_latest_race(f: Fixture) {
    let h = f.history();
    let chain = build_chain(&h).await;
    let other = History::new(f.reopen().await);
    // Two Coordinators (or two requests) set different manifests on the same previous state.
    let mut news = Vec::new();
    for (i, hist) in [&h, &other].into_iter().enumerate() {
        let m = hist
            .set_manifest(&manifest(&[chain.policies[0].0], 10 + i as u8))
            .await
            .unwrap();
        let t = hist
            .set_transition(&Transition {
                manifest_hash: m,
                previous: chain.latest.hash,
            })
            .await
            .unwrap();
        news.push(LatestTransition::unsigned(t));
    }
    assert_ne!(news[0], news[1]);
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut joins = Vec::new();
    for (hist, new) in [
        (h.clone(), news[0].clone()),
        (other.clone(), news[1].clone()),
    ] {
        let expected = chain.latest.clone();
        let barrier = Arc::clone(&barrier);
        joins.push(tokio::spawn(async move {
            barrier.wait().await;
            hist.cas_latest(Some(&expected), &new).await
        }));
    }
    let mut results = Vec::new();
    for j in joins {
        results.push(j.await.unwrap());
    }
    let wins: Vec<usize> = (0..2).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(wins.len(), 1, "{results:?}");
    let winner = wins[0];
    let loser = results[1 - winner].as_ref().unwrap_err();
    match loser {
        HistoryError::ConcurrentUpdate {
            location,
            expected,
            found,
        } => {
            assert_eq!(location, &f.store.location(&StoreKey::latest_transition()));
            assert_eq!(expected, &Some(chain.latest.hash));
            let prefix = hex::encode(&news[winner].hash.as_bytes()[..8]);
            assert!(found.contains(&prefix), "{found}");
        }
        e => panic!("expected ConcurrentUpdate, got {e}"),
    }
    let msg = loser.to_string();
    assert!(msg.contains("updated concurrently"), "{msg}");
    assert!(msg.contains(&chain.latest.hash.to_hex()), "{msg}");
    // The history is the old chain plus the winner.
    let entries = h.walk().await.unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[3].transition_hash, news[winner].hash);
    assert_eq!(other.walk().await.unwrap(), entries);
    // First set on an empty history: expected None.
    let fresh = Fixture::mem().history();
    let e = fresh
        .cas_latest(Some(&chain.latest), &news[0])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("found absent"), "{e}");
    fresh.cas_latest(None, &news[0]).await.unwrap();
    let e = fresh.cas_latest(None, &news[1]).await.unwrap_err();
    assert!(
        matches!(e, HistoryError::ConcurrentUpdate { expected: None, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("nothing (an empty history)"), "{e}");
}

async fn history_survives_restart(f: Fixture) {
    let chain = build_chain(&f.history()).await;
    let before = f.history().verify_all().await.unwrap();
    let reopened = History::new(f.reopen().await);
    assert_eq!(reopened.latest().await.unwrap().unwrap(), chain.latest);
    assert_eq!(reopened.verify_all().await.unwrap(), before);
    check_walk(&reopened.walk().await.unwrap(), &chain);
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod mem {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(Fixture::mem()).await;
                }
            )*
        }
        mod dir {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(Fixture::dir().await).await;
                }
            )*
        }
        mod kube {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(Fixture::kube().await).await;
                }
            )*
        }
    };
}

contract!(
    history_empty,
    history_chain_round_trip,
    history_detects_tampering,
    history_bad_latest,
    history_cas_latest_race,
    history_survives_restart,
);

// ---------------------------------------------------------------------------------------------
// Directory store only: what is on disk

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn dir_with_chain() -> (TempDir, History, Chain) {
    let tmp = tempfile::tempdir().unwrap();
    let h = History::new(Arc::new(DirStore::open(tmp.path()).await.unwrap()));
    let chain = build_chain(&h).await;
    (tmp, h, chain)
}

#[tokio::test]
async fn dir_layout_and_modes() {
    let (tmp, _h, chain) = dir_with_chain().await;
    let root = tmp.path().join("history");
    assert_eq!(mode(&root), 0o700);
    for d in ["manifests", "policies", "transitions"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d}");
    }
    for raw in &chain.manifests {
        let p = root
            .join("manifests")
            .join(ManifestHash::of_manifest_bytes(raw).to_hex());
        assert_eq!(&std::fs::read(&p).unwrap(), raw);
        assert_eq!(mode(&p), 0o600);
    }
    for (hash, raw) in &chain.policies {
        let p = root.join("policies").join(hash.to_hex());
        assert_eq!(&std::fs::read(p).unwrap(), raw);
    }
    let t0 = std::fs::read(root.join("transitions").join(chain.transitions[0].to_hex())).unwrap();
    assert_eq!(t0.len(), 64);
    assert_eq!(
        &t0[..32],
        ManifestHash::of_manifest_bytes(&chain.manifests[0]).as_bytes()
    );
    assert_eq!(&t0[32..], &[0; 32]);
    let t1 = std::fs::read(root.join("transitions").join(chain.transitions[1].to_hex())).unwrap();
    assert_eq!(&t1[32..], chain.transitions[0].as_bytes());
    let latest = std::fs::read(root.join("transitions/latest")).unwrap();
    assert_eq!(latest, chain.latest.to_bytes());
    assert_eq!(&latest[..32], chain.transitions[2].as_bytes());
    assert_eq!(&latest[32..], &[0xAA, 2]);
    assert!(root.join(".lock").is_file());
    // Nothing else: no temporary files left behind.
    let mut names: Vec<String> = std::fs::read_dir(root.join("transitions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<String> = chain.transitions.iter().map(|t| t.to_hex()).collect();
    expected.push("latest".into());
    expected.sort();
    assert_eq!(names, expected);
    let mut top: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, [".lock", "manifests", "policies", "transitions"]);
}

#[tokio::test]
async fn dir_tampered_files_are_named() {
    let (tmp, h, chain) = dir_with_chain().await;
    let root = tmp.path().join("history");

    // Edit a manifest in place.
    let m0 = ManifestHash::of_manifest_bytes(&chain.manifests[0]);
    let path = root.join("manifests").join(m0.to_hex());
    let mut edited = chain.manifests[0].clone();
    edited.extend_from_slice(b" ");
    std::fs::write(&path, &edited).unwrap();
    let actual = ManifestHash::of_manifest_bytes(&edited);
    let expected_msg = format!(
        "{}: content hashes to {actual}, expected {m0}; the file was modified or corrupted",
        path.display()
    );
    assert_eq!(
        h.get_manifest(&m0).await.unwrap_err().to_string(),
        expected_msg
    );
    assert_eq!(h.walk().await.unwrap_err().to_string(), expected_msg);
    assert_eq!(h.verify_all().await.unwrap_err().to_string(), expected_msg);
    // A fresh store over the directory (Coordinator start) reports the same.
    let restarted = History::new(Arc::new(DirStore::open(tmp.path()).await.unwrap()));
    assert_eq!(
        restarted.verify_all().await.unwrap_err().to_string(),
        expected_msg
    );
    std::fs::write(&path, &chain.manifests[0]).unwrap();
    h.verify_all().await.unwrap();

    // Delete a policy.
    let (p3, _) = &chain.policies[3];
    let path = root.join("policies").join(p3.to_hex());
    std::fs::remove_file(&path).unwrap();
    let e = h.verify_all().await.unwrap_err();
    assert!(matches!(e, HistoryError::Missing { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!("{}: ", path.display())),
        "{e}"
    );

    // Delete a transition in the middle of the chain.
    let path = root.join("transitions").join(chain.transitions[1].to_hex());
    std::fs::remove_file(&path).unwrap();
    let e = h.walk().await.unwrap_err();
    assert!(matches!(e, HistoryError::Missing { .. }), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");

    // Truncate the latest pointer on disk.
    let path = root.join("transitions/latest");
    std::fs::write(&path, [1, 2, 3]).unwrap();
    let e = h.latest().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: a latest-transition record is a 32 byte transition hash followed by a \
             signature, got only 3 bytes (truncated?)",
            path.display()
        )
    );
}

#[tokio::test]
async fn dir_leftover_temp_files_are_ignored_and_removed() {
    let (tmp, h, chain) = dir_with_chain().await;
    let transitions = tmp.path().join("history/transitions");
    let manifests = tmp.path().join("history/manifests");
    // What a crash between writing and renaming leaves behind.
    let leftovers: Vec<PathBuf> = vec![
        transitions.join(".tmp-latest-999999-0"),
        manifests.join(format!(".tmp-{}-999999-1", "ab".repeat(32))),
    ];
    for p in &leftovers {
        std::fs::write(p, b"half-written garbage").unwrap();
    }
    assert_eq!(h.latest().await.unwrap().unwrap(), chain.latest);
    h.verify_all().await.unwrap();
    let reopened = History::new(Arc::new(DirStore::open(tmp.path()).await.unwrap()));
    for p in &leftovers {
        assert!(!p.exists(), "{} was not removed", p.display());
    }
    check_walk(&reopened.walk().await.unwrap(), &chain);
}
