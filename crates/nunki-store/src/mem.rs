//! In-memory store, for tests and ephemeral runs.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use futures_util::stream::{self, StreamExt};

use crate::{Store, StoreError, StoreKey, WatchStream, conflict};

/// A [`Store`] in a `Mutex<BTreeMap>`; gone when dropped. Its [`Store::watch`] is woken by
/// every write, without polling.
#[derive(Debug)]
pub struct MemStore {
    entries: Mutex<BTreeMap<StoreKey, Vec<u8>>>,
    /// Counts writes; watchers wait for it to change.
    writes: tokio::sync::watch::Sender<u64>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            entries: Mutex::default(),
            writes: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<StoreKey, Vec<u8>>> {
        // No code path panics while holding the lock, and every update is a single map
        // operation, so a poisoned map is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn written(&self) {
        self.writes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[async_trait::async_trait]
impl Store for MemStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries().get(key).cloned())
    }

    async fn set(&self, key: &StoreKey, value: &[u8]) -> Result<(), StoreError> {
        self.entries().insert(key.clone(), value.to_vec());
        self.written();
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<(), StoreError> {
        {
            let mut entries = self.entries();
            let found = entries.get(key).map(Vec::as_slice);
            if found != expected {
                return Err(conflict(self.location(key), expected, found));
            }
            entries.insert(key.clone(), new.to_vec());
        }
        self.written();
        Ok(())
    }

    fn location(&self, key: &StoreKey) -> String {
        format!("memory store {key}")
    }

    fn watch<'a>(&'a self, key: &StoreKey) -> WatchStream<'a> {
        // Subscribing before the first read means that no write after that read goes
        // unnoticed.
        let state = Watcher {
            writes: self.writes.subscribe(),
            key: key.clone(),
            last: None,
            wait: false,
        };
        stream::unfold(state, move |mut w| async move {
            loop {
                if w.wait && w.writes.changed().await.is_err() {
                    // The sender lives in the store, which outlives this borrow.
                    return None;
                }
                w.wait = true;
                let current = self.entries().get(&w.key).cloned();
                if w.last.as_ref() != Some(&current) {
                    w.last = Some(current.clone());
                    return Some((Ok(current), w));
                }
            }
        })
        .boxed()
    }
}

/// State of one [`MemStore`] watch.
struct Watcher {
    writes: tokio::sync::watch::Receiver<u64>,
    key: StoreKey,
    /// The value yielded last; None before the first.
    last: Option<Option<Vec<u8>>>,
    /// Whether to wait for a write before the next read (not before the first one).
    wait: bool,
}
