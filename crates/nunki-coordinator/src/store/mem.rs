//! In-memory store, for tests and ephemeral runs.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::{Store, StoreError, StoreKey, conflict};

/// A [`Store`] in a `Mutex<BTreeMap>`; gone when dropped.
#[derive(Debug, Default)]
pub struct MemStore {
    entries: Mutex<BTreeMap<StoreKey, Vec<u8>>>,
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
}

#[async_trait::async_trait]
impl Store for MemStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries().get(key).cloned())
    }

    async fn set(&self, key: &StoreKey, value: &[u8]) -> Result<(), StoreError> {
        self.entries().insert(key.clone(), value.to_vec());
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<(), StoreError> {
        let mut entries = self.entries();
        let found = entries.get(key).map(Vec::as_slice);
        if found != expected {
            return Err(conflict(self.location(key), expected, found));
        }
        entries.insert(key.clone(), new.to_vec());
        Ok(())
    }

    fn location(&self, key: &StoreKey) -> String {
        format!("memory store {key}")
    }
}
