//! Key-value storage under the manifest history: a small trait ([`Store`]) with an in-memory
//! backend for tests ([`MemStore`]) and a directory backend for the Coordinator's state
//! directory ([`DirStore`]); the Kubernetes backend lives in `nunki-kube`. Every backend passes
//! the same contract suite ([`contract`], behind the `contract-tests` feature).
//!
//! Keys are `<dir>/<name>` ([`StoreKey`]): `manifests/<sha256 hex>`, `policies/<sha256 hex>`,
//! `transitions/<sha256 hex>` (content-addressed, written with [`Store::set`]) and
//! `transitions/latest` (the only mutable entry, written with [`Store::compare_and_swap`] and
//! followed by other replicas with [`Store::watch`]). The store itself checks no hashes; the
//! Coordinator's history layer does.

#[cfg(feature = "contract-tests")]
pub mod contract;
mod dir;
mod mem;
mod watch;

use std::fmt;
use std::str::FromStr;

use nunki_manifest::{ManifestHash, PolicyHash, TransitionHash};

pub use dir::{DEFAULT_DIR_WATCH_INTERVAL, DirStore};
pub use mem::MemStore;
pub use watch::{DEFAULT_POLL_INTERVAL, WatchStream, poll_watch};

/// Directory of manifests, stored under the SHA-256 of their exact bytes.
pub const MANIFESTS: &str = "manifests";
/// Directory of policies (or initdata), stored under the SHA-256 of their exact bytes.
pub const POLICIES: &str = "policies";
/// Directory of transitions, stored under their transition hash, plus [`LATEST`].
pub const TRANSITIONS: &str = "transitions";
/// Name of the pointer to the newest transition, in [`TRANSITIONS`].
pub const LATEST: &str = "latest";

/// Longest directory or name accepted, well below file-system name limits (255 bytes) so a
/// temporary file name built from it still fits.
pub const MAX_KEY_PART_LEN: usize = 128;

/// A key-value store with an atomic compare-and-swap, the backend of the manifest history.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Value at `key`, or None.
    async fn get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes `value` at `key` (used for content-addressed entries; overwriting with identical
    /// bytes is fine).
    async fn set(&self, key: &StoreKey, value: &[u8]) -> Result<(), StoreError>;
    /// Atomically replaces the value at `key` with `new` if it currently equals `expected`
    /// (None = absent); otherwise [`StoreError::Conflict`] (naming key, expected and found
    /// state in short form).
    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<(), StoreError>;
    /// Human-readable location of a key for error messages (e.g. the file path).
    fn location(&self, key: &StoreKey) -> String;
    /// Follows one key. The stream yields the key's current value first (None = absent), then
    /// each value the key is seen to take afterwards, skipping a value equal to the one yielded
    /// last. It is level-triggered: a value replaced before the watcher looks may be missed, but
    /// the newest one never is, and the values seen are in the order they were written.
    /// Errors (a failed read, a lost connection) are yielded as items and the watch carries on
    /// after them; the stream ends only when dropped.
    ///
    /// The default polls [`Store::get`] every [`DEFAULT_POLL_INTERVAL`] ([`poll_watch`]);
    /// backends with change notifications override it.
    fn watch<'a>(&'a self, key: &StoreKey) -> WatchStream<'a> {
        poll_watch(self, key.clone(), DEFAULT_POLL_INTERVAL)
    }
}

/// A validated `<dir>/<name>` key: `dir` matches `^[a-z0-9-]+$`, `name` matches
/// `^[a-zA-Z0-9-]+$`, each at most [`MAX_KEY_PART_LEN`] characters. Neither can contain `/` or
/// `.`, so a key maps to exactly one file below a store directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreKey {
    dir: String,
    name: String,
}

impl StoreKey {
    /// Checks and builds a key.
    pub fn new(dir: &str, name: &str) -> Result<StoreKey, StoreError> {
        let invalid = |reason: String| StoreError::InvalidKey {
            key: format!("{dir}/{name}"),
            reason,
        };
        check_part("directory", dir, |b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
        })
        .map_err(|r| invalid(format!("{r} (allowed: a-z, 0-9, '-')")))?;
        check_part("name", name, |b| b.is_ascii_alphanumeric() || b == b'-')
            .map_err(|r| invalid(format!("{r} (allowed: a-z, A-Z, 0-9, '-')")))?;
        Ok(StoreKey {
            dir: dir.to_string(),
            name: name.to_string(),
        })
    }

    /// `manifests/<hex>`.
    pub fn manifest(hash: &ManifestHash) -> StoreKey {
        StoreKey::trusted(MANIFESTS, hash.to_hex())
    }

    /// `policies/<hex>`.
    pub fn policy(hash: &PolicyHash) -> StoreKey {
        StoreKey::trusted(POLICIES, hash.to_hex())
    }

    /// `transitions/<hex>`.
    pub fn transition(hash: &TransitionHash) -> StoreKey {
        StoreKey::trusted(TRANSITIONS, hash.to_hex())
    }

    /// `transitions/latest`.
    pub fn latest_transition() -> StoreKey {
        StoreKey::trusted(TRANSITIONS, LATEST.to_string())
    }

    /// The directory part.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The name part.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// For the fixed directories and lowercase-hex or constant names above, which are valid by
    /// construction.
    fn trusted(dir: &str, name: String) -> StoreKey {
        StoreKey {
            dir: dir.to_string(),
            name,
        }
    }
}

fn check_part(what: &str, s: &str, allowed: impl Fn(u8) -> bool) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if s.len() > MAX_KEY_PART_LEN {
        return Err(format!(
            "the {what} is {} characters long, at most {MAX_KEY_PART_LEN} are allowed",
            s.len()
        ));
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|(_, c)| !c.is_ascii() || !allowed(*c as u8))
    {
        return Err(format!("the {what} has {c:?} at position {i}"));
    }
    Ok(())
}

impl FromStr for StoreKey {
    type Err = StoreError;

    /// Parses `<dir>/<name>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (dir, name) = s.split_once('/').ok_or_else(|| StoreError::InvalidKey {
            key: s.to_string(),
            reason: "expected <dir>/<name>".to_string(),
        })?;
        StoreKey::new(dir, name)
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dir, self.name)
    }
}

/// Why a store operation failed. Every variant that concerns a stored value names its
/// location ([`Store::location`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The operating system refused an operation.
    #[error("{location}: {reason}")]
    Io {
        /// Where.
        location: String,
        /// What was attempted and what the OS said.
        reason: String,
    },
    /// [`Store::compare_and_swap`] found a value other than the expected one.
    #[error(
        "{location}: compare-and-swap conflict: expected {expected}, found {found} \
         (changed concurrently)"
    )]
    Conflict {
        /// Where.
        location: String,
        /// Expected state, short form ("absent" or "<n> bytes starting <hex>").
        expected: String,
        /// Found state, same short form.
        found: String,
    },
    /// The service behind the store (the Kubernetes API server) failed or refused a request.
    #[error("{location}: {reason}")]
    Backend {
        /// Where.
        location: String,
        /// What was attempted and what the service said, with what to check.
        reason: String,
    },
    /// A key that does not match `<[a-z0-9-]+>/<[a-zA-Z0-9-]+>`.
    #[error("invalid store key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backing storage is not in the shape the store expects (e.g. a directory where a
    /// file should be).
    #[error("{location}: {reason}")]
    Corrupt {
        /// Where.
        location: String,
        /// What is wrong.
        reason: String,
    },
}

/// Short form of a value for conflict messages: "absent", or the length and first bytes.
pub fn describe_value(value: Option<&[u8]>) -> String {
    const SHOWN: usize = 8;
    match value {
        None => "absent".to_string(),
        Some(v) => {
            let head: Vec<u8> = v.iter().take(SHOWN).copied().collect();
            let more = if v.len() > SHOWN { "…" } else { "" };
            if v.is_empty() {
                "0 bytes".to_string()
            } else {
                format!("{} bytes starting {}{more}", v.len(), hex::encode(head))
            }
        }
    }
}

/// The conflict error of a failed compare-and-swap, for backends: names the location and the
/// expected and found states in [`describe_value`]'s short form.
pub fn conflict(location: String, expected: Option<&[u8]>, found: Option<&[u8]>) -> StoreError {
    StoreError::Conflict {
        location,
        expected: describe_value(expected),
        found: describe_value(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip_and_helpers() {
        let k: StoreKey = "transitions/latest".parse().unwrap();
        assert_eq!(k, StoreKey::latest_transition());
        assert_eq!(k.to_string(), "transitions/latest");
        let h = ManifestHash([0xab; 32]);
        let k = StoreKey::manifest(&h);
        assert_eq!(k.dir(), "manifests");
        assert_eq!(k.name(), "ab".repeat(32));
        assert_eq!(StoreKey::new(k.dir(), k.name()).unwrap(), k);
    }

    #[test]
    fn describe_is_short() {
        assert_eq!(describe_value(None), "absent");
        assert_eq!(describe_value(Some(b"")), "0 bytes");
        assert_eq!(describe_value(Some(b"\x01\x02")), "2 bytes starting 0102");
        assert_eq!(
            describe_value(Some(&[0xff; 96])),
            "96 bytes starting ffffffffffffffff…"
        );
    }
}
