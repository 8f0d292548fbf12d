#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! One contract for every [`Store`] backend, run against [`MemStore`] and [`DirStore`], plus the
//! history layer on top and the directory store's on-disk behaviour (layout, modes, tampered
//! files, crash leftovers, compare-and-swap between processes).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nunki_coordinator::history::{History, HistoryEntry, HistoryError, LatestTransition};
use nunki_coordinator::store::{DirStore, MemStore, Store, StoreError, StoreKey};
use nunki_manifest::{ManifestHash, PolicyHash, Transition, TransitionHash};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A store under test, and a way to get a second handle on the same data.
struct Fixture {
    store: Arc<dyn Store>,
    /// The state directory of a [`DirStore`].
    dir: Option<TempDir>,
}

impl Fixture {
    fn mem() -> Fixture {
        Fixture {
            store: Arc::new(MemStore::new()),
            dir: None,
        }
    }

    async fn dir() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).await.unwrap();
        Fixture {
            store: Arc::new(store),
            dir: Some(dir),
        }
    }

    /// Another handle on the same data: for a directory, a new [`DirStore`] over the same state
    /// directory (what another process, or a restart, would open); in memory, the same store.
    async fn reopen(&self) -> Arc<dyn Store> {
        match &self.dir {
            Some(dir) => Arc::new(DirStore::open(dir.path()).await.unwrap()),
            None => Arc::clone(&self.store),
        }
    }

    fn history(&self) -> History {
        History::new(Arc::clone(&self.store))
    }
}

fn key(s: &str) -> StoreKey {
    s.parse().unwrap()
}

fn is_conflict(r: &Result<(), StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
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
// The store contract

async fn get_set_overwrite(f: Fixture) {
    let s = &f.store;
    let a = key("manifests/abc");
    let b = key("policies/abc");
    assert_eq!(s.get(&a).await.unwrap(), None);
    s.set(&a, b"one").await.unwrap();
    assert_eq!(s.get(&a).await.unwrap().as_deref(), Some(&b"one"[..]));
    // Same name in another directory is another key.
    assert_eq!(s.get(&b).await.unwrap(), None);
    s.set(&a, b"one").await.unwrap();
    s.set(&a, b"two, longer").await.unwrap();
    assert_eq!(
        s.get(&a).await.unwrap().as_deref(),
        Some(&b"two, longer"[..])
    );
    s.set(&a, b"").await.unwrap();
    assert_eq!(s.get(&a).await.unwrap().as_deref(), Some(&b""[..]));
    let big = vec![0x5a; 1 << 20];
    s.set(&b, &big).await.unwrap();
    assert_eq!(s.get(&b).await.unwrap().unwrap(), big);
    // A second handle sees the same data.
    let other = f.reopen().await;
    assert_eq!(other.get(&b).await.unwrap().unwrap(), big);
    assert!(
        s.location(&a).contains("manifests/abc"),
        "{}",
        s.location(&a)
    );
}

async fn keys_are_validated(f: Fixture) {
    for ok in [
        "manifests/abc",
        "transitions/latest",
        "a-b-0/Name-With-Caps-9",
        &format!("{}/{}", "d".repeat(128), "N".repeat(128)),
    ] {
        let k: StoreKey = ok.parse().unwrap();
        assert_eq!(k.to_string(), ok);
        f.store.set(&k, ok.as_bytes()).await.unwrap();
        assert_eq!(f.store.get(&k).await.unwrap().unwrap(), ok.as_bytes());
    }
    for bad in [
        "",
        "manifests",
        "/latest",
        "manifests/",
        "Manifests/abc",
        "manifests/a/b",
        "manifests/..",
        "../etc/passwd",
        "manifests/.tmp-x",
        "manifests/a_b",
        "manifests/a b",
        "manifests/ä",
        "under_score/x",
        &format!("manifests/{}", "a".repeat(129)),
    ] {
        let err = bad.parse::<StoreKey>().unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidKey { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("invalid store key"), "{err}");
    }
    assert!(StoreKey::new("x", "y/z").is_err());
    let e = StoreKey::new("manifests", "a.b").unwrap_err().to_string();
    assert!(e.contains("'.' at position 1"), "{e}");
    assert_eq!(
        StoreKey::manifest(&ManifestHash([0xab; 32])).to_string(),
        format!("manifests/{}", "ab".repeat(32))
    );
    assert_eq!(
        StoreKey::policy(&PolicyHash([1; 32])).to_string(),
        format!("policies/{}", "01".repeat(32))
    );
    assert_eq!(
        StoreKey::transition(&TransitionHash([2; 32])).to_string(),
        format!("transitions/{}", "02".repeat(32))
    );
    assert_eq!(
        StoreKey::latest_transition().to_string(),
        "transitions/latest"
    );
}

async fn cas_semantics(f: Fixture) {
    let s = &f.store;
    let k = key("transitions/latest");
    // Expected a value, but absent.
    let r = s.compare_and_swap(&k, Some(b"x"), b"v1").await;
    assert!(is_conflict(&r), "{r:?}");
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("transitions/latest"), "{msg}");
    assert!(
        msg.contains("expected 1 bytes starting 78, found absent"),
        "{msg}"
    );
    assert_eq!(s.get(&k).await.unwrap(), None);
    // Absent -> value.
    s.compare_and_swap(&k, None, b"v1").await.unwrap();
    assert_eq!(s.get(&k).await.unwrap().as_deref(), Some(&b"v1"[..]));
    // Absent expected, but present.
    let r = s.compare_and_swap(&k, None, b"v2").await;
    assert!(is_conflict(&r), "{r:?}");
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("expected absent, found 2 bytes")
    );
    // Wrong expected value.
    let r = s.compare_and_swap(&k, Some(b"v0"), b"v2").await;
    assert!(is_conflict(&r), "{r:?}");
    // A prefix of the value is not the value.
    let r = s.compare_and_swap(&k, Some(b"v"), b"v2").await;
    assert!(is_conflict(&r), "{r:?}");
    assert_eq!(s.get(&k).await.unwrap().as_deref(), Some(&b"v1"[..]));
    // Value -> value, also to the same value and to empty.
    s.compare_and_swap(&k, Some(b"v1"), b"v2").await.unwrap();
    s.compare_and_swap(&k, Some(b"v2"), b"v2").await.unwrap();
    s.compare_and_swap(&k, Some(b"v2"), b"").await.unwrap();
    assert_eq!(s.get(&k).await.unwrap().as_deref(), Some(&b""[..]));
    // Empty is present, not absent.
    assert!(is_conflict(&s.compare_and_swap(&k, None, b"v3").await));
    s.compare_and_swap(&k, Some(b""), b"v3").await.unwrap();
    // CAS and set address the same entries.
    let other = key("policies/p");
    s.set(&other, b"set").await.unwrap();
    s.compare_and_swap(&other, Some(b"set"), b"cas")
        .await
        .unwrap();
    assert_eq!(s.get(&other).await.unwrap().as_deref(), Some(&b"cas"[..]));
}

/// `handles` race `tasks` compare-and-swaps from the same expected value: one wins.
async fn race_one_winner(handles: &[Arc<dyn Store>], tasks: usize) {
    let k = key("transitions/latest");
    handles[0].set(&k, b"start").await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
    let mut joins = Vec::new();
    for i in 0..tasks {
        let s = Arc::clone(&handles[i % handles.len()]);
        let k = k.clone();
        let barrier = Arc::clone(&barrier);
        joins.push(tokio::spawn(async move {
            barrier.wait().await;
            let value = format!("task {i}");
            let r = s
                .compare_and_swap(&k, Some(b"start"), value.as_bytes())
                .await;
            (value, r)
        }));
    }
    let mut winners = Vec::new();
    for j in joins {
        let (value, r) = j.await.unwrap();
        match r {
            Ok(()) => winners.push(value),
            Err(StoreError::Conflict { found, .. }) => {
                assert!(found.contains("bytes starting"), "{found}")
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    for h in handles {
        assert_eq!(
            h.get(&k).await.unwrap().unwrap(),
            winners[0].as_bytes(),
            "every handle sees the winner"
        );
    }
}

async fn concurrent_cas_one_winner(f: Fixture) {
    race_one_winner(&[Arc::clone(&f.store)], 16).await;
}

async fn concurrent_cas_two_handles(f: Fixture) {
    let handles = [Arc::clone(&f.store), f.reopen().await];
    race_one_winner(&handles, 16).await;
}

/// Read-modify-CAS of a decimal counter, retried on conflict; returns the conflicts seen.
async fn increment(store: &dyn Store, times: u64) -> u64 {
    let k = key("counter/value");
    let mut conflicts = 0;
    for _ in 0..times {
        loop {
            let cur = store.get(&k).await.unwrap();
            let n: u64 = cur
                .as_deref()
                .map_or(0, |b| std::str::from_utf8(b).unwrap().parse().unwrap());
            match store
                .compare_and_swap(&k, cur.as_deref(), (n + 1).to_string().as_bytes())
                .await
            {
                Ok(()) => break,
                Err(StoreError::Conflict { .. }) => conflicts += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    conflicts
}

async fn read_counter(store: &dyn Store) -> u64 {
    let v = store.get(&key("counter/value")).await.unwrap().unwrap();
    std::str::from_utf8(&v).unwrap().parse().unwrap()
}

async fn no_lost_updates(f: Fixture) {
    const TASKS: u64 = 4;
    const TIMES: u64 = 5;
    let mut joins = Vec::new();
    for i in 0..TASKS {
        let s = if i % 2 == 0 {
            Arc::clone(&f.store)
        } else {
            f.reopen().await
        };
        joins.push(tokio::spawn(async move { increment(&*s, TIMES).await }));
    }
    for j in joins {
        j.await.unwrap();
    }
    assert_eq!(read_counter(&*f.store).await, TASKS * TIMES);
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
    };
}

contract!(
    get_set_overwrite,
    keys_are_validated,
    cas_semantics,
    concurrent_cas_one_winner,
    concurrent_cas_two_handles,
    no_lost_updates,
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
async fn dir_wrong_file_types_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::open(tmp.path()).await.unwrap();
    let root = tmp.path().join("history");

    // A directory where a value file should be.
    let k = key("manifests/abc");
    std::fs::create_dir_all(root.join("manifests/abc")).unwrap();
    let path = store.path(&k).display().to_string();
    let e = store.get(&k).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("{path}: expected a regular file, found a directory")
    );
    let e = store.set(&k, b"x").await.unwrap_err();
    assert!(e.to_string().starts_with(&format!("{path}: ")), "{e}");
    let e = store.compare_and_swap(&k, None, b"x").await.unwrap_err();
    assert!(e.to_string().starts_with(&format!("{path}: ")), "{e}");

    // A file where a key directory should be.
    std::fs::write(root.join("policies"), b"").unwrap();
    let k = key("policies/abc");
    let e = store.get(&k).await.unwrap_err();
    assert!(matches!(e, StoreError::Io { .. }), "{e}");
    assert!(e.to_string().contains(&store.location(&k)), "{e}");
    let e = store.set(&k, b"x").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: expected a directory, found a regular file",
            root.join("policies").display()
        )
    );

    // An unreadable file (not testable as root, who reads regardless of mode).
    let k = key("transitions/latest");
    store.set(&k, &[0; 32]).await.unwrap();
    let p = store.path(&k);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&p).is_err() {
        let e = store.get(&k).await.unwrap_err();
        assert!(matches!(e, StoreError::Io { .. }), "{e}");
        assert!(
            e.to_string().starts_with(&format!("{}: ", p.display())),
            "{e}"
        );
    }

    // A state directory that is a file.
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let e = DirStore::open(&file).await.unwrap_err();
    assert!(e.to_string().contains("not-a-dir"), "{e}");
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

// ---------------------------------------------------------------------------------------------
// Compare-and-swap between two real processes sharing a state directory

/// Set by [`dir_cas_is_atomic_across_processes`] for the copy of this test binary it starts.
const CHILD_ENV: &str = "NUNKI_STORE_CONTRACT_CHILD_STATE_DIR";
const CROSS_PROCESS_INCREMENTS: u64 = 10;

/// The child side of [`dir_cas_is_atomic_across_processes`]; does nothing in a normal run.
#[tokio::test]
async fn cross_process_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = DirStore::open(&dir).await.unwrap();
    std::fs::write(Path::new(&dir).join("child-ready"), b"").unwrap();
    increment(&store, CROSS_PROCESS_INCREMENTS).await;
}

#[tokio::test]
async fn dir_cas_is_atomic_across_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::open(tmp.path()).await.unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cross_process_child",
            "--test-threads=1",
            "--quiet",
        ])
        .env(CHILD_ENV, tmp.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = tmp.path().join("child-ready");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child process exited early: {status}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the child never started"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    increment(&store, CROSS_PROCESS_INCREMENTS).await;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "child: {status}");
    assert_eq!(read_counter(&store).await, 2 * CROSS_PROCESS_INCREMENTS);
}

#[tokio::test]
async fn dir_store_refuses_symlinks_planted_by_the_host() {
    let dir = TempDir::new().unwrap();
    let store = DirStore::open(dir.path()).await.unwrap();
    let key = StoreKey::latest_transition();
    store.set(&key, &[7u8; 32]).await.unwrap();
    // A "secret" guest file the host wants to read through the Coordinator's errors.
    let secret = dir.path().join("guest-secret");
    std::fs::write(&secret, b"TOP-SECRET").unwrap();
    let path = store.path(&key);
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&secret, &path).unwrap();
    let err = store.get(&key).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
    assert!(
        text.contains("symbolic link") && !text.contains("544f50"),
        "{text}"
    );
}
