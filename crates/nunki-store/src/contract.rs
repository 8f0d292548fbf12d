//! The contract every [`Store`] backend must pass, as plain async functions over a
//! [`Backend`], so each backend's tests run the very same checks. [`store_contract!`] turns
//! them into `#[tokio::test]`s:
//!
//! ```ignore
//! nunki_store::store_contract!(async { my_backend().await });
//! ```
//!
//! Test support only (feature `contract-tests`): the functions assert and panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use nunki_manifest::{ManifestHash, PolicyHash, TransitionHash};

use crate::{Store, StoreError, StoreKey, WatchStream};

/// A store under test.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
    /// Another handle on the same data: what another process, another replica or a restart
    /// would open (for an in-memory store, the same store).
    async fn reopen(&self) -> Arc<dyn Store>;
}

/// Every contract test, by name: [`store_contract!`] runs each as a `#[tokio::test]`.
#[macro_export]
macro_rules! store_contract {
    ($backend:expr) => {
        $crate::store_contract!(
            $backend;
            get_set_overwrite,
            keys_are_validated,
            large_values,
            cas_semantics,
            concurrent_cas_one_winner,
            concurrent_cas_two_handles,
            no_lost_updates,
            watch_current_then_changes,
            watch_other_handle,
            watch_ignores_other_keys,
            watch_values_in_write_order,
            watch_many_watchers,
            watch_large_value,
        );
    };
    ($backend:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let backend = $backend.await;
                $crate::contract::$test(&backend).await;
            }
        )+
    };
}

/// How long a watch may take to report a change before the test fails.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Parses a key.
pub fn key(s: &str) -> StoreKey {
    s.parse().unwrap()
}

fn is_conflict(r: &Result<(), StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
}

/// Writing, overwriting and reading back; a second handle sees the same data.
pub async fn get_set_overwrite(b: &dyn Backend) {
    let s = b.store();
    let a = key("manifests/abc");
    let other = key("policies/abc");
    assert_eq!(s.get(&a).await.unwrap(), None);
    s.set(&a, b"one").await.unwrap();
    assert_eq!(s.get(&a).await.unwrap().as_deref(), Some(&b"one"[..]));
    // Same name in another directory is another key.
    assert_eq!(s.get(&other).await.unwrap(), None);
    s.set(&a, b"one").await.unwrap();
    s.set(&a, b"two, longer").await.unwrap();
    assert_eq!(
        s.get(&a).await.unwrap().as_deref(),
        Some(&b"two, longer"[..])
    );
    s.set(&a, b"").await.unwrap();
    assert_eq!(s.get(&a).await.unwrap().as_deref(), Some(&b""[..]));
    let all_bytes: Vec<u8> = (0..=255).collect();
    s.set(&other, &all_bytes).await.unwrap();
    // A second handle sees the same data.
    let second = b.reopen().await;
    assert_eq!(second.get(&other).await.unwrap().unwrap(), all_bytes);
    assert_eq!(second.get(&a).await.unwrap().as_deref(), Some(&b""[..]));
    assert!(
        s.location(&a).contains("manifests/abc"),
        "{}",
        s.location(&a)
    );
}

/// Key syntax: what is accepted round-trips and is storable, the rest is refused by name.
pub async fn keys_are_validated(b: &dyn Backend) {
    let s = b.store();
    for ok in [
        "manifests/abc",
        "transitions/latest",
        "a-b-0/Name-With-Caps-9",
        "a/name",
        "-/-",
        "x-/-y",
        &format!("{}/{}", "d".repeat(128), "N".repeat(128)),
    ] {
        let k: StoreKey = ok.parse().unwrap();
        assert_eq!(k.to_string(), ok);
        s.set(&k, ok.as_bytes()).await.unwrap();
    }
    // Keys that differ only in case, or in where the separator is, are different keys.
    for ok in [
        "a-b-0/Name-With-Caps-9",
        "a-b-0/name-with-caps-9",
        "a-b/c",
        "a/b-c",
    ] {
        let k = key(ok);
        s.set(&k, ok.as_bytes()).await.unwrap();
    }
    for ok in [
        "manifests/abc",
        "transitions/latest",
        "a-b-0/Name-With-Caps-9",
        "a-b-0/name-with-caps-9",
        "a-b/c",
        "a/b-c",
        "a/name",
        "-/-",
        "x-/-y",
        &format!("{}/{}", "d".repeat(128), "N".repeat(128)),
    ] {
        assert_eq!(
            s.get(&key(ok)).await.unwrap().unwrap(),
            ok.as_bytes(),
            "{ok}"
        );
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

/// A value of `len` bytes that differs from others of the same length by `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 10) as u8))
        .collect()
}

/// Values larger than a Kubernetes object may be (1 MiB): manifests and policies can be
/// hundreds of KiB, so a backend must not fail at the first megabyte.
pub async fn large_values(b: &dyn Backend) {
    let s = b.store();
    let k = key("policies/big");
    let big = pattern((1 << 20) + 17, 1);
    s.set(&k, &big).await.unwrap();
    assert_eq!(s.get(&k).await.unwrap().unwrap(), big);
    let second = b.reopen().await;
    assert_eq!(second.get(&k).await.unwrap().unwrap(), big);
    // Three times the limit, then smaller again, then large again: each read is exact.
    let bigger = pattern(3 << 20, 2);
    s.set(&k, &bigger).await.unwrap();
    assert_eq!(second.get(&k).await.unwrap().unwrap(), bigger);
    s.set(&k, b"small").await.unwrap();
    assert_eq!(
        second.get(&k).await.unwrap().as_deref(),
        Some(&b"small"[..])
    );
    // Compare-and-swap from and to large values.
    let latest = key("transitions/big");
    s.compare_and_swap(&latest, None, &big).await.unwrap();
    let r = s.compare_and_swap(&latest, Some(&bigger), b"x").await;
    assert!(is_conflict(&r), "{r:?}");
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains(&format!("found {} bytes starting", big.len())),
        "{msg}"
    );
    s.compare_and_swap(&latest, Some(&big), &bigger)
        .await
        .unwrap();
    assert_eq!(second.get(&latest).await.unwrap().unwrap(), bigger);
    second
        .compare_and_swap(&latest, Some(&bigger), b"tiny")
        .await
        .unwrap();
    assert_eq!(s.get(&latest).await.unwrap().as_deref(), Some(&b"tiny"[..]));
}

/// Compare-and-swap: absent and present states, exact comparison, conflicts named.
pub async fn cas_semantics(b: &dyn Backend) {
    let s = b.store();
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
    // A second handle sees compare-and-swaps, and its own are checked against them.
    let second = b.reopen().await;
    assert_eq!(second.get(&k).await.unwrap().as_deref(), Some(&b"v3"[..]));
    assert!(is_conflict(
        &second.compare_and_swap(&k, Some(b"v2"), b"v4").await
    ));
    second
        .compare_and_swap(&k, Some(b"v3"), b"v4")
        .await
        .unwrap();
    assert!(is_conflict(
        &s.compare_and_swap(&k, Some(b"v3"), b"v5").await
    ));
    assert_eq!(s.get(&k).await.unwrap().as_deref(), Some(&b"v4"[..]));
}

/// `handles` race `tasks` compare-and-swaps from the same expected value: exactly one wins,
/// the others get a conflict naming what they found, and every handle sees the winner.
pub async fn race_one_winner(handles: &[Arc<dyn Store>], tasks: usize) {
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

/// Sixteen tasks on one handle race one compare-and-swap.
pub async fn concurrent_cas_one_winner(b: &dyn Backend) {
    race_one_winner(&[b.store()], 16).await;
}

/// Sixteen tasks on two handles race one compare-and-swap.
pub async fn concurrent_cas_two_handles(b: &dyn Backend) {
    let handles = [b.store(), b.reopen().await];
    race_one_winner(&handles, 16).await;
}

/// The key [`increment`] counts in.
pub fn counter_key() -> StoreKey {
    key("counter/value")
}

/// Read-modify-CAS of a decimal counter, retried on conflict; returns the conflicts seen.
pub async fn increment(store: &dyn Store, times: u64) -> u64 {
    let k = counter_key();
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

/// The counter [`increment`] counts in.
pub async fn read_counter(store: &dyn Store) -> u64 {
    let v = store.get(&counter_key()).await.unwrap().unwrap();
    std::str::from_utf8(&v).unwrap().parse().unwrap()
}

/// Concurrent read-modify-CAS loops on two handles lose no increment.
pub async fn no_lost_updates(b: &dyn Backend) {
    const TASKS: u64 = 4;
    const TIMES: u64 = 5;
    let mut joins = Vec::new();
    for i in 0..TASKS {
        let s = if i % 2 == 0 {
            b.store()
        } else {
            b.reopen().await
        };
        joins.push(tokio::spawn(async move { increment(&*s, TIMES).await }));
    }
    for j in joins {
        j.await.unwrap();
    }
    assert_eq!(read_counter(&*b.store()).await, TASKS * TIMES);
}

/// The next item of a watch, failing the test after [`WATCH_TIMEOUT`] or on an error.
pub async fn next_value(w: &mut WatchStream<'_>) -> Option<Vec<u8>> {
    match tokio::time::timeout(WATCH_TIMEOUT, w.next()).await {
        Ok(Some(Ok(v))) => v,
        Ok(Some(Err(e))) => panic!("the watch failed: {e}"),
        Ok(None) => panic!("the watch ended"),
        Err(_) => panic!("the watch reported nothing for {WATCH_TIMEOUT:?}"),
    }
}

/// A watch starts with the current value (also "absent"), then reports each change once:
/// set, compare-and-swap, the same value again (no item), a new value.
pub async fn watch_current_then_changes(b: &dyn Backend) {
    let s = b.store();
    let k = key("transitions/latest");
    let mut w = s.watch(&k);
    assert_eq!(next_value(&mut w).await, None);
    s.set(&k, b"v1").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"v1"[..]));
    s.compare_and_swap(&k, Some(b"v1"), b"v2").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"v2"[..]));
    // Rewriting the same value is no change: the next item is the one after it.
    s.compare_and_swap(&k, Some(b"v2"), b"v2").await.unwrap();
    s.set(&k, b"v2").await.unwrap();
    s.compare_and_swap(&k, Some(b"v2"), b"").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b""[..]));
    // A watch started now begins with the current value, not with the history.
    let mut late = s.watch(&k);
    assert_eq!(next_value(&mut late).await.as_deref(), Some(&b""[..]));
    s.set(&k, b"v3").await.unwrap();
    assert_eq!(next_value(&mut late).await.as_deref(), Some(&b"v3"[..]));
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"v3"[..]));
}

/// A watch on one handle sees writes through another (another replica).
pub async fn watch_other_handle(b: &dyn Backend) {
    let watcher = b.store();
    let writer = b.reopen().await;
    let k = key("transitions/latest");
    writer.set(&k, b"before").await.unwrap();
    let mut w = watcher.watch(&k);
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"before"[..]));
    writer
        .compare_and_swap(&k, Some(b"before"), b"after")
        .await
        .unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"after"[..]));
}

/// Writes to other keys, including one in another directory with the same name, are not
/// reported.
pub async fn watch_ignores_other_keys(b: &dyn Backend) {
    let s = b.store();
    let k = key("transitions/latest");
    let mut w = s.watch(&k);
    assert_eq!(next_value(&mut w).await, None);
    s.set(&key("manifests/latest"), b"other dir").await.unwrap();
    s.set(&key("transitions/latest2"), b"other name")
        .await
        .unwrap();
    s.set(&key("transitions/Latest"), b"other case")
        .await
        .unwrap();
    s.set(&k, b"mine").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"mine"[..]));
}

/// Under a burst of updates the watch may skip values, but what it reports is in write order
/// and ends with the last value.
pub async fn watch_values_in_write_order(b: &dyn Backend) {
    const UPDATES: u64 = 30;
    let s = b.store();
    let writer = b.reopen().await;
    let mut w = s.watch(&counter_key());
    assert_eq!(next_value(&mut w).await, None);
    let writes = tokio::spawn(async move { increment(&*writer, UPDATES).await });
    let mut seen = Vec::new();
    while seen.last() != Some(&UPDATES) {
        let v = next_value(&mut w).await.expect("the counter was deleted");
        let n: u64 = std::str::from_utf8(&v).unwrap().parse().unwrap();
        if let Some(prev) = seen.last() {
            assert!(n > *prev, "{n} after {prev}: out of order ({seen:?})");
        }
        seen.push(n);
    }
    writes.await.unwrap();
    assert_eq!(read_counter(&*s).await, UPDATES);
}

/// Several watchers on one key each see the change.
pub async fn watch_many_watchers(b: &dyn Backend) {
    let s = b.store();
    let second = b.reopen().await;
    let k = key("transitions/latest");
    let mut watches = vec![s.watch(&k), s.watch(&k), second.watch(&k)];
    for w in &mut watches {
        assert_eq!(next_value(w).await, None);
    }
    second.compare_and_swap(&k, None, b"one").await.unwrap();
    for w in &mut watches {
        assert_eq!(next_value(w).await.as_deref(), Some(&b"one"[..]));
    }
    // Dropping one watch leaves the others working.
    drop(watches.pop());
    s.compare_and_swap(&k, Some(b"one"), b"two").await.unwrap();
    for w in &mut watches {
        assert_eq!(next_value(w).await.as_deref(), Some(&b"two"[..]));
    }
}

/// A watch reports a value larger than a Kubernetes object exactly.
pub async fn watch_large_value(b: &dyn Backend) {
    let s = b.store();
    let k = key("transitions/latest");
    let mut w = s.watch(&k);
    assert_eq!(next_value(&mut w).await, None);
    let big = pattern((1 << 20) + 5, 9);
    b.reopen()
        .await
        .compare_and_swap(&k, None, &big)
        .await
        .unwrap();
    assert_eq!(next_value(&mut w).await.unwrap(), big);
    s.compare_and_swap(&k, Some(&big), b"small").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"small"[..]));
}
