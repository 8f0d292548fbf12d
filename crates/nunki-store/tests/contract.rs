#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The store contract on the in-memory and directory backends, and what only the directory
//! store does: file types, symbolic links, compare-and-swap and watch between processes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use nunki_store::contract::{Backend, increment, key, next_value, read_counter};
use nunki_store::{DirStore, MemStore, Store, StoreError, StoreKey};
use tempfile::TempDir;

struct Mem(Arc<MemStore>);

#[async_trait::async_trait]
impl Backend for Mem {
    fn store(&self) -> Arc<dyn Store> {
        self.0.clone()
    }
    async fn reopen(&self) -> Arc<dyn Store> {
        self.0.clone()
    }
}

struct Dir {
    store: Arc<DirStore>,
    dir: TempDir,
}

impl Dir {
    async fn new() -> Dir {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            DirStore::open(dir.path())
                .await
                .unwrap()
                .with_watch_interval(Duration::from_millis(20)),
        );
        Dir { store, dir }
    }
}

#[async_trait::async_trait]
impl Backend for Dir {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    /// What another process (or a restart) would open over the same state directory.
    async fn reopen(&self) -> Arc<dyn Store> {
        Arc::new(DirStore::open(self.dir.path()).await.unwrap())
    }
}

mod mem {
    use super::*;
    nunki_store::store_contract!(async { Mem(Arc::new(MemStore::new())) });
}

mod dir {
    use super::*;
    nunki_store::store_contract!(Dir::new());
}

// ---------------------------------------------------------------------------------------------
// Directory store only

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
    let latest = StoreKey::latest_transition();
    store.set(&latest, &[7u8; 32]).await.unwrap();
    // A "secret" guest file the host wants to read through the Coordinator's errors.
    let secret = dir.path().join("guest-secret");
    std::fs::write(&secret, b"TOP-SECRET").unwrap();
    let path = store.path(&latest);
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&secret, &path).unwrap();
    let err = store.get(&latest).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
    assert!(
        text.contains("symbolic link") && !text.contains("544f50"),
        "{text}"
    );
}

#[tokio::test]
async fn dir_watch_default_interval_and_errors_carry_on() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::open(tmp.path()).await.unwrap();
    let k = key("transitions/latest");
    let mut w = store.watch(&k);
    assert_eq!(next_value(&mut w).await, None);
    // A directory where the value file should be: the watch reports the error and goes on.
    std::fs::create_dir_all(store.path(&k)).unwrap();
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "polled too early"
    );
    assert!(e.to_string().contains("found a directory"), "{e}");
    std::fs::remove_dir(store.path(&k)).unwrap();
    store.set(&k, b"back").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"back"[..]));
}

#[tokio::test]
async fn poll_watch_on_any_store() {
    let store = MemStore::new();
    let k = key("transitions/latest");
    let mut w = nunki_store::poll_watch(&store, k.clone(), Duration::from_millis(5));
    assert_eq!(next_value(&mut w).await, None);
    store.set(&k, b"a").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"a"[..]));
    store.set(&k, b"a").await.unwrap();
    store.set(&k, b"b").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"b"[..]));
}
