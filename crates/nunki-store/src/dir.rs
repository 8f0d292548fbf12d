//! Directory store: one file per key under `<state_dir>/history/<dir>/<name>`.
//!
//! Every write goes to a temporary file in the target directory, which is fsynced, renamed over
//! the target and followed by an fsync of the directory, so a crash leaves either the old or
//! the new value, never a mix. Temporary files are named `.tmp-…`; a leading dot cannot occur in
//! a key, so they never shadow one, and leftovers of a crash are removed on open.
//!
//! Compare-and-swap holds an in-process mutex and an exclusive `flock` on `history/.lock`
//! around read-compare-write, so it is atomic between tasks and between processes (or store
//! instances) sharing the directory. Plain writes hold the same lock shared, so the clean-up on
//! open (exclusive) never removes the temporary file of a live writer.
//!
//! [`Store::watch`] polls the file (every [`DEFAULT_DIR_WATCH_INTERVAL`] unless set with
//! [`DirStore::with_watch_interval`]), which also sees writes by other processes.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Store, StoreError, StoreKey, WatchStream, conflict, poll_watch};

/// How often [`DirStore`]'s watch reads the watched file: a small file read, cheap enough to do
/// often.
pub const DEFAULT_DIR_WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Sub-directory of the state directory that holds the history.
const HISTORY_DIR: &str = "history";
/// Lock file, inside the history directory.
const LOCK_FILE: &str = ".lock";
/// Prefix of temporary files, inside a key directory.
const TMP_PREFIX: &str = ".tmp-";

/// Makes temporary file names unique between threads of one process (the PID separates
/// processes).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A [`Store`] in files below `<state_dir>/history/` (directories 0700, files 0600).
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    /// Serialises compare-and-swap within this instance, so waiting happens on the async
    /// runtime rather than in blocking threads stuck on the file lock.
    cas: tokio::sync::Mutex<()>,
    /// Polling interval of [`Store::watch`].
    watch_interval: Duration,
}

impl DirStore {
    /// Opens (creating if needed) the history below `state_dir` and removes temporary files
    /// left over by a crash.
    pub async fn open(state_dir: impl AsRef<Path>) -> Result<DirStore, StoreError> {
        let root = state_dir.as_ref().join(HISTORY_DIR);
        blocking(&root, |root| DirStore::open_blocking(root.to_path_buf())).await
    }

    fn open_blocking(root: PathBuf) -> Result<DirStore, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| io_err(&root, "cannot create the directory", &e))?;
        let meta = fs::metadata(&root).map_err(|e| io_err(&root, "cannot inspect", &e))?;
        if !meta.is_dir() {
            return Err(StoreError::Corrupt {
                location: root.display().to_string(),
                reason: "expected a directory".to_string(),
            });
        }
        let store = DirStore {
            root,
            cas: tokio::sync::Mutex::new(()),
            watch_interval: DEFAULT_DIR_WATCH_INTERVAL,
        };
        let _lock = lock(&store.lock_path(), Lock::Exclusive)?;
        store.remove_leftovers()?;
        Ok(store)
    }

    /// The same store with another polling interval for [`Store::watch`].
    pub fn with_watch_interval(mut self, interval: Duration) -> DirStore {
        self.watch_interval = interval;
        self
    }

    /// `<state_dir>/history`.
    pub fn history_dir(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key`.
    pub fn path(&self, key: &StoreKey) -> PathBuf {
        self.root.join(key.dir()).join(key.name())
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// Removes `.tmp-*` files in every key directory. Caller holds the exclusive lock.
    fn remove_leftovers(&self) -> Result<(), StoreError> {
        let entries =
            fs::read_dir(&self.root).map_err(|e| io_err(&self.root, "cannot list", &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&self.root, "cannot list", &e))?;
            let dir = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let files = fs::read_dir(&dir).map_err(|e| io_err(&dir, "cannot list", &e))?;
            for file in files {
                let file = file.map_err(|e| io_err(&dir, "cannot list", &e))?;
                if file.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let path = file.path();
                    tracing::warn!(path = %path.display(), "removing temporary file left by an interrupted write");
                    fs::remove_file(&path).map_err(|e| io_err(&path, "cannot remove", &e))?;
                }
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for DirStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key);
        blocking(&path, read_value).await
    }

    async fn set(&self, key: &StoreKey, value: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key);
        let lock_path = self.lock_path();
        let value = value.to_vec();
        blocking(&path, move |path| {
            let _lock = lock(&lock_path, Lock::Shared)?;
            write_atomically(path, &value)
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<(), StoreError> {
        let _in_process = self.cas.lock().await;
        let path = self.path(key);
        let lock_path = self.lock_path();
        let expected = expected.map(<[u8]>::to_vec);
        let new = new.to_vec();
        blocking(&path, move |path| {
            let _lock = lock(&lock_path, Lock::Exclusive)?;
            let found = read_value(path)?;
            if found != expected {
                return Err(conflict(
                    path.display().to_string(),
                    expected.as_deref(),
                    found.as_deref(),
                ));
            }
            write_atomically(path, &new)
            // The lock is released when its file is closed here, after the rename is durable.
        })
        .await
    }

    fn location(&self, key: &StoreKey) -> String {
        self.path(key).display().to_string()
    }

    fn watch<'a>(&'a self, key: &StoreKey) -> WatchStream<'a> {
        poll_watch(self, key.clone(), self.watch_interval)
    }
}

/// Runs blocking file I/O off the async runtime.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce(&Path) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || f(&owned))
        .await
        .map_err(|e| StoreError::Io {
            location: path.display().to_string(),
            reason: format!("the I/O task failed: {e}"),
        })?
}

fn io_err(path: &Path, what: &str, e: &io::Error) -> StoreError {
    StoreError::Io {
        location: path.display().to_string(),
        reason: format!("{what}: {e}"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Lock {
    Shared,
    Exclusive,
}

/// Opens (creating) the lock file and takes an advisory lock on it, held until the returned
/// file is dropped. Each call opens its own file description, so two calls conflict even
/// within one process.
// `File::lock` is stable since Rust 1.89; the workspace `rust-version` still says 1.85.
#[allow(clippy::incompatible_msrv)]
fn lock(path: &Path, kind: Lock) -> Result<File, StoreError> {
    // flock(2) needs no write access, but opening read-write lets the file be created.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, "cannot open the lock file", &e))?;
    match kind {
        Lock::Shared => file.lock_shared(),
        Lock::Exclusive => file.lock(),
    }
    .map_err(|e| io_err(path, "cannot lock", &e))?;
    Ok(file)
}

/// Largest value the store reads back (a manifest or policy far beyond any real one).
const MAX_VALUE_BYTES: u64 = 64 * 1024 * 1024;

/// The file's content; None if it (or its directory) does not exist.
fn read_value(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    // The state directory is host-controlled: never follow a symlink planted there (it could
    // point at a guest file whose bytes would then show up in errors), and never block on a
    // FIFO.
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(StoreError::Corrupt {
                location: path.display().to_string(),
                reason: "is a symbolic link; the store never follows links".into(),
            });
        }
        Err(e) => return Err(io_err(path, "cannot open", &e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_err(path, "cannot inspect", &e))?;
    if !meta.is_file() {
        return Err(StoreError::Corrupt {
            location: path.display().to_string(),
            reason: format!("expected a regular file, found {}", kind_of(&meta)),
        });
    }
    if meta.len() > MAX_VALUE_BYTES {
        return Err(StoreError::Corrupt {
            location: path.display().to_string(),
            reason: format!(
                "{} bytes, more than the {MAX_VALUE_BYTES}-byte limit",
                meta.len()
            ),
        });
    }
    let mut out = Vec::new();
    file.read_to_end(&mut out)
        .map_err(|e| io_err(path, "cannot read", &e))?;
    Ok(Some(out))
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    if meta.is_file() {
        "a regular file"
    } else if meta.is_dir() {
        "a directory"
    } else if meta.file_type().is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

/// Temp file, fsync, rename over `path`, fsync the directory.
fn write_atomically(path: &Path, value: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().ok_or_else(|| StoreError::Corrupt {
        location: path.display().to_string(),
        reason: "a store file has no parent directory".to_string(),
    })?;
    ensure_dir(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{file_name}-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_tmp_and_rename(&tmp, path, value);
    if result.is_err() {
        // Best effort: the file may not exist, or the rename may already have happened.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "cannot sync the directory", &e))
}

fn write_tmp_and_rename(tmp: &Path, path: &Path, value: &[u8]) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| io_err(tmp, "cannot create a temporary file", &e))?;
    file.write_all(value)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err(tmp, "cannot write a temporary file", &e))?;
    drop(file);
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.is_dir()
    {
        return Err(StoreError::Corrupt {
            location: path.display().to_string(),
            reason: "expected a regular file, found a directory".to_string(),
        });
    }
    fs::rename(tmp, path).map_err(|e| {
        io_err(
            path,
            &format!("cannot rename {} to this file", tmp.display()),
            &e,
        )
    })
}

/// Creates a key directory (0700) if missing, making its entry durable.
fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(meta) => {
            return Err(StoreError::Corrupt {
                location: dir.display().to_string(),
                reason: format!("expected a directory, found {}", kind_of(&meta)),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(dir, "cannot inspect", &e)),
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        // Created concurrently by another writer: fine if it is a directory.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(io_err(dir, "cannot create the directory", &e)),
    }
    if let Some(parent) = dir.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(parent, "cannot sync the directory", &e))?;
    }
    Ok(())
}
