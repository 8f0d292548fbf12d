//! The manifest history on top of a [`Store`]: content-addressed manifests, policies and
//! transitions, and the `transitions/latest` pointer that is only ever moved by
//! compare-and-swap.
//!
//! Every read of a content-addressed entry re-hashes it, and [`History::walk`] follows the chain
//! from the latest transition back to genesis checking each link, so a modified, truncated or
//! missing file in the state directory is reported with its path instead of being served.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use nunki_manifest::{ManifestHash, ParsedManifest, PolicyHash, Transition, TransitionHash};

use crate::store::{Store, StoreError, StoreKey};

/// Longest history [`History::walk`] follows before declaring the chain corrupt (a cycle can
/// only come from a SHA-256 collision, but a bound costs nothing).
pub const MAX_HISTORY_LEN: usize = 100_000;

/// Why a history operation failed. Every variant about stored data names its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A content-addressed entry does not hash to its name.
    #[error(
        "{location}: content hashes to {actual}, expected {expected}; the file was modified or \
         corrupted"
    )]
    HashMismatch {
        /// Where.
        location: String,
        /// The hash in the entry's name (lowercase hex).
        expected: String,
        /// The hash of its content (lowercase hex).
        actual: String,
    },
    /// An entry that the history refers to does not exist.
    #[error("{location}: missing from the history store (deleted, or the state is incomplete)")]
    Missing {
        /// Where it should be.
        location: String,
    },
    /// `transitions/latest` was moved by someone else since it was read.
    #[error(
        "the manifest history was updated concurrently: expected {location} to hold {}, found \
         {found}; reload the latest transition and retry",
        describe_expected(.expected)
    )]
    ConcurrentUpdate {
        /// Where the latest transition is stored.
        location: String,
        /// The transition the caller based its update on (None: an empty history).
        expected: Option<TransitionHash>,
        /// What the store found instead, in short form.
        found: String,
    },
    /// An entry is present and hashes correctly (or is not content-addressed) but is unusable.
    #[error("{location}: {reason}")]
    Corrupt {
        /// Where.
        location: String,
        /// What is wrong.
        reason: String,
    },
}

fn describe_expected(expected: &Option<TransitionHash>) -> String {
    match expected {
        Some(hash) => format!("transition {hash}"),
        None => "nothing (an empty history)".to_string(),
    }
}

/// The content of `transitions/latest`: the newest transition hash and a signature over it.
#[derive(Clone, PartialEq, Eq)]
pub struct LatestTransition {
    /// Hash of the newest transition.
    pub hash: TransitionHash,
    /// Signature over `hash` (empty until the history is signed with a history key).
    pub signature: Vec<u8>,
}

/// A `transitions/latest` value shorter than a transition hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a latest-transition record is a {} byte transition hash followed by a signature, got only \
     {actual} bytes (truncated?)",
    TransitionHash::LEN
)]
pub struct LatestTransitionTooShort {
    /// Bytes received.
    pub actual: usize,
}

impl LatestTransition {
    /// A record without a signature.
    pub fn unsigned(hash: TransitionHash) -> LatestTransition {
        LatestTransition {
            hash,
            signature: Vec::new(),
        }
    }

    /// `hash (32) || signature`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TransitionHash::LEN + self.signature.len());
        out.extend_from_slice(self.hash.as_bytes());
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output.
    pub fn from_bytes(bytes: &[u8]) -> Result<LatestTransition, LatestTransitionTooShort> {
        let too_short = LatestTransitionTooShort {
            actual: bytes.len(),
        };
        let (hash, signature) = bytes
            .split_at_checked(TransitionHash::LEN)
            .ok_or(too_short)?;
        Ok(LatestTransition {
            hash: TransitionHash::from_slice(hash).map_err(|_| too_short)?,
            signature: signature.to_vec(),
        })
    }
}

impl fmt::Debug for LatestTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatestTransition")
            .field("hash", &self.hash)
            .field("signature", &hex::encode(&self.signature))
            .finish()
    }
}

/// One manifest of the history with the transition that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Hash of [`transition`](Self::transition).
    pub transition_hash: TransitionHash,
    /// The transition.
    pub transition: Transition,
    /// The exact manifest bytes (hashing to `transition.manifest_hash`).
    pub manifest: Vec<u8>,
}

/// Everything in the history, checked: the result of [`History::verify_all`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifiedHistory {
    /// `transitions/latest` as read (None: empty history).
    pub latest: Option<LatestTransition>,
    /// Every manifest, oldest first; the last one was set by `latest`.
    pub entries: Vec<HistoryEntry>,
    /// The newest manifest, parsed.
    pub latest_manifest: Option<ParsedManifest>,
    /// Every policy referenced by any manifest of the history.
    pub policies: BTreeMap<PolicyHash, Vec<u8>>,
}

/// Typed, hash-checking access to the manifest history in a [`Store`].
#[derive(Debug, Clone)]
pub struct History {
    store: Arc<dyn Store>,
}

impl History {
    /// The history in `store`.
    pub fn new(store: Arc<dyn Store>) -> History {
        History { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Where `key` lives, for messages.
    pub fn location(&self, key: &StoreKey) -> String {
        self.store.location(key)
    }

    /// Stores a manifest's exact bytes under their SHA-256.
    pub async fn set_manifest(&self, raw: &[u8]) -> Result<ManifestHash, HistoryError> {
        let hash = ManifestHash::of_manifest_bytes(raw);
        self.store.set(&StoreKey::manifest(&hash), raw).await?;
        Ok(hash)
    }

    /// A manifest's bytes, checked against `hash`.
    pub async fn get_manifest(&self, hash: &ManifestHash) -> Result<Vec<u8>, HistoryError> {
        self.get_addressed(&StoreKey::manifest(hash), hash.as_bytes())
            .await
    }

    /// Stores a policy (or initdata) under its SHA-256, which is its [`PolicyHash`].
    pub async fn set_policy(&self, raw: &[u8]) -> Result<PolicyHash, HistoryError> {
        let hash = PolicyHash(sha256(raw));
        self.store.set(&StoreKey::policy(&hash), raw).await?;
        Ok(hash)
    }

    /// A policy's bytes, checked against `hash`.
    pub async fn get_policy(&self, hash: &PolicyHash) -> Result<Vec<u8>, HistoryError> {
        self.get_addressed(&StoreKey::policy(hash), hash.as_bytes())
            .await
    }

    /// The policies a manifest lists, each checked.
    pub async fn policies_for(
        &self,
        manifest: &ParsedManifest,
    ) -> Result<BTreeMap<PolicyHash, Vec<u8>>, HistoryError> {
        let mut out = BTreeMap::new();
        for hash in manifest.manifest().policies.keys() {
            out.insert(*hash, self.get_policy(hash).await?);
        }
        Ok(out)
    }

    /// Stores a transition (its 64-byte encoding) under its hash.
    pub async fn set_transition(
        &self,
        transition: &Transition,
    ) -> Result<TransitionHash, HistoryError> {
        let hash = transition.hash();
        self.store
            .set(&StoreKey::transition(&hash), &transition.to_bytes())
            .await?;
        Ok(hash)
    }

    /// A transition, checked against `hash`.
    pub async fn get_transition(&self, hash: &TransitionHash) -> Result<Transition, HistoryError> {
        let key = StoreKey::transition(hash);
        let bytes = self.get_addressed(&key, hash.as_bytes()).await?;
        // Only reachable if 64-byte-ness and the hash disagree, i.e. something other than a
        // transition was stored under a matching name.
        Transition::from_bytes(&bytes).map_err(|e| HistoryError::Corrupt {
            location: self.location(&key),
            reason: e.to_string(),
        })
    }

    /// `transitions/latest`, or None for an empty history.
    pub async fn latest(&self) -> Result<Option<LatestTransition>, HistoryError> {
        let key = StoreKey::latest_transition();
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(None);
        };
        LatestTransition::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| HistoryError::Corrupt {
                location: self.location(&key),
                reason: e.to_string(),
            })
    }

    /// Moves `transitions/latest` from `expected` (None: no history yet) to `new`, or fails
    /// with [`HistoryError::ConcurrentUpdate`] if it no longer holds `expected`.
    pub async fn cas_latest(
        &self,
        expected: Option<&LatestTransition>,
        new: &LatestTransition,
    ) -> Result<(), HistoryError> {
        let key = StoreKey::latest_transition();
        let expected_bytes = expected.map(LatestTransition::to_bytes);
        self.store
            .compare_and_swap(&key, expected_bytes.as_deref(), &new.to_bytes())
            .await
            .map_err(|e| match e {
                StoreError::Conflict {
                    location, found, ..
                } => HistoryError::ConcurrentUpdate {
                    location,
                    expected: expected.map(|l| l.hash),
                    found,
                },
                other => HistoryError::Store(other),
            })
    }

    /// Every manifest from genesis to the latest transition, oldest first, each link and
    /// content hash checked. Empty for an empty history.
    pub async fn walk(&self) -> Result<Vec<HistoryEntry>, HistoryError> {
        match self.latest().await? {
            Some(latest) => self.walk_from(&latest.hash).await,
            None => Ok(Vec::new()),
        }
    }

    /// Like [`walk`](Self::walk), from a given newest transition.
    pub async fn walk_from(
        &self,
        newest: &TransitionHash,
    ) -> Result<Vec<HistoryEntry>, HistoryError> {
        if newest.is_zero() {
            return Err(HistoryError::Corrupt {
                location: self.location(&StoreKey::latest_transition()),
                reason: "points at the all-zero genesis marker instead of a transition".to_string(),
            });
        }
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        let mut current = *newest;
        while current != TransitionHash::GENESIS {
            let location = self.location(&StoreKey::transition(&current));
            if !seen.insert(current) {
                return Err(HistoryError::Corrupt {
                    location,
                    reason: "the transition chain loops back to this transition".to_string(),
                });
            }
            if entries.len() >= MAX_HISTORY_LEN {
                return Err(HistoryError::Corrupt {
                    location,
                    reason: format!(
                        "the transition chain is longer than {MAX_HISTORY_LEN} transitions"
                    ),
                });
            }
            let transition = self.get_transition(&current).await?;
            let manifest = self.get_manifest(&transition.manifest_hash).await?;
            entries.push(HistoryEntry {
                transition_hash: current,
                transition,
                manifest,
            });
            current = transition.previous;
        }
        entries.reverse();
        Ok(entries)
    }

    /// The manifest the latest transition names, hash-checked and parsed, without walking the
    /// rest of the history (`None` for an empty history). For choosing reference values, e.g.
    /// to attest peer replicas; trusting the history takes [`History::verify_all`] and the
    /// signature.
    pub async fn latest_manifest(&self) -> Result<Option<ParsedManifest>, HistoryError> {
        let Some(latest) = self.latest().await? else {
            return Ok(None);
        };
        let transition = self.get_transition(&latest.hash).await?;
        let manifest = self.get_manifest(&transition.manifest_hash).await?;
        ParsedManifest::parse(&manifest)
            .map(Some)
            .map_err(|errs| HistoryError::Corrupt {
                location: self.location(&StoreKey::manifest(&transition.manifest_hash)),
                reason: format!("the stored manifest is not valid: {errs}"),
            })
    }

    /// Walks the history, parses every manifest and loads every policy they reference: the
    /// start-up check that names the first bad file of a corrupted state directory.
    pub async fn verify_all(&self) -> Result<VerifiedHistory, HistoryError> {
        let Some(latest) = self.latest().await? else {
            return Ok(VerifiedHistory::default());
        };
        self.verify_from(latest).await
    }

    /// Like [`History::verify_all`], from a latest transition the caller already holds (so a
    /// reader never mixes its own state with a pointer that moved meanwhile).
    pub async fn verify_from(
        &self,
        latest: LatestTransition,
    ) -> Result<VerifiedHistory, HistoryError> {
        let entries = self.walk_from(&latest.hash).await?;
        let mut referenced = BTreeSet::new();
        let mut latest_manifest = None;
        for entry in &entries {
            let parsed =
                ParsedManifest::parse(&entry.manifest).map_err(|errs| HistoryError::Corrupt {
                    location: self.location(&StoreKey::manifest(&entry.transition.manifest_hash)),
                    reason: format!("the stored manifest is not valid: {errs}"),
                })?;
            referenced.extend(parsed.manifest().policies.keys().copied());
            latest_manifest = Some(parsed);
        }
        let mut policies = BTreeMap::new();
        for hash in referenced {
            policies.insert(hash, self.get_policy(&hash).await?);
        }
        Ok(VerifiedHistory {
            latest: Some(latest),
            entries,
            latest_manifest,
            policies,
        })
    }

    /// Reads `key`, requiring it to exist and its content to hash to `expected`.
    async fn get_addressed(
        &self,
        key: &StoreKey,
        expected: &[u8; 32],
    ) -> Result<Vec<u8>, HistoryError> {
        let bytes = self
            .store
            .get(key)
            .await?
            .ok_or_else(|| HistoryError::Missing {
                location: self.location(key),
            })?;
        let actual = sha256(&bytes);
        if &actual != expected {
            return Err(HistoryError::HashMismatch {
                location: self.location(key),
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            });
        }
        Ok(bytes)
    }
}

use nunki_manifest::sha256;

/// Where the first manifest's seed shares are kept (`seed-shares/document`).
pub const SEED_SHARES: &str = "seed-shares";

impl History {
    /// Stores the seed-share document (ciphertexts only) for later download.
    pub async fn set_seed_shares(&self, doc: &[u8]) -> Result<(), HistoryError> {
        let key = StoreKey::new(SEED_SHARES, "document")?;
        Ok(self.store.set(&key, doc).await?)
    }

    /// The stored seed-share document, if any.
    pub async fn seed_shares(&self) -> Result<Option<Vec<u8>>, HistoryError> {
        let key = StoreKey::new(SEED_SHARES, "document")?;
        Ok(self.store.get(&key).await?)
    }
}

/// Directory of wrapped mesh CA keys, one per transition (`mesh-ca/<transition hex>`).
pub const MESH_CA: &str = "mesh-ca";
const MESH_KEY_AAD: &[u8] = b"nunki/mesh-ca-key/v2";
const EPOCH_LEN: usize = 8;

/// A transition's mesh CA key with its epoch: 0 for the key made with the transition, one more
/// for every owner recovery that replaced it. Replicas only ever move to a higher epoch, so an
/// older (still validly wrapped) key written back into the store is refused.
#[derive(Debug)]
pub struct MeshKey {
    /// How often the key of this transition was replaced.
    pub epoch: u64,
    /// PKCS#8 DER of the P-384 key.
    pub pkcs8: zeroize::Zeroizing<Vec<u8>>,
}
const GCM_NONCE_LEN: usize = 12;

impl History {
    /// Where the wrapped mesh CA key of `transition` is stored (replicas watch it).
    pub fn mesh_key_location(transition: &TransitionHash) -> Result<StoreKey, HistoryError> {
        Ok(StoreKey::new(MESH_CA, &transition.to_hex())?)
    }

    /// Stores the mesh CA key of `transition` at `epoch`, AES-256-GCM-wrapped with `wrap_key`
    /// (derived from the seed; transition and epoch are bound as associated data), so every
    /// replica that holds the seed serves the same mesh CA. Stored as `epoch (8 bytes, big
    /// endian) || nonce || ciphertext`. Replaces an earlier key of the same transition (an owner
    /// recovery makes a new mesh CA at the next epoch).
    pub async fn set_mesh_key(
        &self,
        transition: &TransitionHash,
        wrap_key: &[u8; 32],
        pkcs8: &[u8],
        epoch: u64,
    ) -> Result<(), HistoryError> {
        use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        use aws_lc_rs::rand::SecureRandom as _;
        let key = Self::mesh_key_location(transition)?;
        let fail = |reason: &str| HistoryError::Corrupt {
            location: self.location(&key),
            reason: reason.to_string(),
        };
        let mut nonce = [0u8; GCM_NONCE_LEN];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| fail("no randomness for the nonce"))?;
        let sealing = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, wrap_key).map_err(|_| fail("bad wrap key"))?,
        );
        let mut data = zeroize::Zeroizing::new(pkcs8.to_vec());
        let aad = [MESH_KEY_AAD, transition.as_bytes(), &epoch.to_be_bytes()].concat();
        sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *data,
            )
            .map_err(|_| fail("sealing the mesh CA key failed"))?;
        let mut out = epoch.to_be_bytes().to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        self.store.set(&key, &out).await?;
        Ok(())
    }

    /// The mesh CA key of `transition` with its epoch, unwrapped; None if none was stored. A
    /// value that does not decrypt with `wrap_key` (or whose epoch was altered) is an error
    /// naming its location.
    pub async fn mesh_key(
        &self,
        transition: &TransitionHash,
        wrap_key: &[u8; 32],
    ) -> Result<Option<MeshKey>, HistoryError> {
        use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let key = Self::mesh_key_location(transition)?;
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let fail = |reason: &str| HistoryError::Corrupt {
            location: self.location(&key),
            reason: reason.to_string(),
        };
        let (epoch, rest) = bytes
            .split_at_checked(EPOCH_LEN)
            .ok_or_else(|| fail("too short for a wrapped key"))?;
        let epoch = u64::from_be_bytes(epoch.try_into().map_err(|_| fail("bad epoch"))?);
        let (nonce, sealed) = rest
            .split_at_checked(GCM_NONCE_LEN)
            .ok_or_else(|| fail("too short for a wrapped key"))?;
        let nonce: [u8; GCM_NONCE_LEN] = nonce.try_into().map_err(|_| fail("bad nonce"))?;
        let opening = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, wrap_key).map_err(|_| fail("bad wrap key"))?,
        );
        let mut data = zeroize::Zeroizing::new(sealed.to_vec());
        let aad = [MESH_KEY_AAD, transition.as_bytes(), &epoch.to_be_bytes()].concat();
        let plain = opening
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut data)
            .map_err(|_| {
                fail("the wrapped mesh CA key does not decrypt with this deployment's seed (altered?)")
            })?
            .to_vec();
        Ok(Some(MeshKey {
            epoch,
            pkcs8: zeroize::Zeroizing::new(plain),
        }))
    }
}

/// Directory of audit records, stored under the SHA-256 of their bytes, plus [`AUDIT_HEAD`].
pub const AUDIT: &str = "audit";
/// Name of the pointer to the newest audit record, in [`AUDIT`].
pub const AUDIT_HEAD: &str = "head";
/// How often [`History::append_audit`] retries when another writer moved the head meanwhile.
const AUDIT_APPEND_ATTEMPTS: usize = 16;

/// The content of `audit/head`: the newest record's hash and, when the writer held the history
/// key, a signature over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// SHA-256 of the newest record's bytes.
    pub hash: [u8; 32],
    /// History-key signature over `hash` (empty when written in recovery mode).
    pub signature: Vec<u8>,
}

impl AuditHead {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.hash.to_vec();
        out.extend_from_slice(&self.signature);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<AuditHead> {
        let (hash, signature) = bytes.split_at_checked(32)?;
        Some(AuditHead {
            hash: hash.try_into().ok()?,
            signature: signature.to_vec(),
        })
    }
}

/// The audit log as stored: record bytes oldest first and the head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditLog {
    /// Exact record bytes, oldest first (each re-hashed against its link).
    pub records: Vec<Vec<u8>>,
    /// The head (None: no records yet).
    pub head: Option<AuditHead>,
}

fn audit_key(name: &str) -> Result<StoreKey, HistoryError> {
    Ok(StoreKey::new(AUDIT, name)?)
}

impl History {
    /// `audit/head`, or None before the first record.
    pub async fn audit_head(&self) -> Result<Option<AuditHead>, HistoryError> {
        let key = audit_key(AUDIT_HEAD)?;
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(None);
        };
        AuditHead::from_bytes(&bytes)
            .map(Some)
            .ok_or_else(|| HistoryError::Corrupt {
                location: self.location(&key),
                reason: format!(
                    "an audit head is a 32-byte hash and a signature, got {} bytes",
                    bytes.len()
                ),
            })
    }

    /// Appends a record: `make(index, previous_hash_hex)` builds it on top of the current head,
    /// which is then moved by compare-and-swap (retried if another writer moved it meanwhile).
    /// With `key` the new head is signed. Returns the new record's hash.
    pub async fn append_audit(
        &self,
        make: impl Fn(u64, String) -> nunki_manifest::AuditRecord,
        key: Option<&nunki_ca::HistoryKey>,
    ) -> Result<[u8; 32], HistoryError> {
        let head_key = audit_key(AUDIT_HEAD)?;
        let mut last_conflict = None;
        for _ in 0..AUDIT_APPEND_ATTEMPTS {
            let head = self.audit_head().await?;
            // A signed head must carry our signature: never sign on top of a forged one.
            if let (Some(h), Some(k)) = (&head, key)
                && !h.signature.is_empty()
                && k.verify(nunki_ca::Signed::AuditHead, &h.hash, &h.signature)
                    .is_err()
            {
                return Err(HistoryError::Corrupt {
                    location: self.location(&head_key),
                    reason: "the audit head's signature does not verify with the history key; \
                             refusing to extend a log that was altered"
                        .into(),
                });
            }
            let (index, previous) = match &head {
                Some(h) => {
                    let prev = nunki_manifest::AuditRecord::parse(
                        &self
                            .get_addressed(&audit_key(&hex::encode(h.hash))?, &h.hash)
                            .await?,
                    )
                    .map_err(|reason| HistoryError::Corrupt {
                        location: self.location(&head_key),
                        reason: format!("the newest audit record is unreadable: {reason}"),
                    })?;
                    (prev.index.saturating_add(1), hex::encode(h.hash))
                }
                None => (0, hex::encode(nunki_manifest::AUDIT_GENESIS)),
            };
            let bytes = make(index, previous).to_bytes();
            let hash = sha256(&bytes);
            self.store
                .set(&audit_key(&hex::encode(hash))?, &bytes)
                .await?;
            let signature = match key {
                Some(k) => k.sign(nunki_ca::Signed::AuditHead, &hash).map_err(|e| {
                    HistoryError::Corrupt {
                        location: self.location(&head_key),
                        reason: e.to_string(),
                    }
                })?,
                None => Vec::new(),
            };
            let new = AuditHead { hash, signature };
            match self
                .store
                .compare_and_swap(
                    &head_key,
                    head.as_ref().map(AuditHead::to_bytes).as_deref(),
                    &new.to_bytes(),
                )
                .await
            {
                Ok(()) => return Ok(hash),
                Err(e @ StoreError::Conflict { .. }) => last_conflict = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_conflict.map_or_else(
            || HistoryError::Corrupt {
                location: self.location(&head_key),
                reason: "no attempt was made".into(),
            },
            HistoryError::Store,
        ))
    }

    /// The whole audit log, oldest first, every record re-hashed against the link that names
    /// it.
    pub async fn audit_log(&self) -> Result<AuditLog, HistoryError> {
        let Some(head) = self.audit_head().await? else {
            return Ok(AuditLog::default());
        };
        let mut records = Vec::new();
        let mut current = head.hash;
        while current != nunki_manifest::AUDIT_GENESIS {
            let key = audit_key(&hex::encode(current))?;
            if records.len() >= nunki_manifest::audit::MAX_AUDIT_LEN {
                return Err(HistoryError::Corrupt {
                    location: self.location(&key),
                    reason: "the audit log is longer than the readable maximum".into(),
                });
            }
            let bytes = self.get_addressed(&key, &current).await?;
            let record = nunki_manifest::AuditRecord::parse(&bytes).map_err(|reason| {
                HistoryError::Corrupt {
                    location: self.location(&key),
                    reason: format!("not an audit record: {reason}"),
                }
            })?;
            let mut previous = [0u8; 32];
            hex::decode_to_slice(&record.previous, &mut previous).map_err(|e| {
                HistoryError::Corrupt {
                    location: self.location(&key),
                    reason: format!("Previous is not a SHA-256 in hex: {e}"),
                }
            })?;
            records.push(bytes);
            if record.index == 0 {
                if previous != nunki_manifest::AUDIT_GENESIS {
                    return Err(HistoryError::Corrupt {
                        location: self.location(&key),
                        reason: "the first audit record names a previous record".into(),
                    });
                }
                break;
            }
            current = previous;
        }
        records.reverse();
        Ok(AuditLog {
            records,
            head: Some(head),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_transition_bytes() {
        let l = LatestTransition {
            hash: TransitionHash([7; 32]),
            signature: vec![1, 2, 3],
        };
        let bytes = l.to_bytes();
        assert_eq!(bytes.len(), 35);
        assert_eq!(&bytes[..32], &[7; 32]);
        assert_eq!(LatestTransition::from_bytes(&bytes).unwrap(), l);
        let unsigned = LatestTransition::unsigned(TransitionHash([9; 32]));
        assert_eq!(
            LatestTransition::from_bytes(&unsigned.to_bytes()).unwrap(),
            unsigned
        );
        assert_eq!(
            LatestTransition::from_bytes(&[0; 31]).unwrap_err(),
            LatestTransitionTooShort { actual: 31 }
        );
        assert!(LatestTransition::from_bytes(&[]).is_err());
    }

    #[test]
    fn sha256_matches_manifest_hash() {
        assert_eq!(
            sha256(b"first manifest\n"),
            ManifestHash::of_manifest_bytes(b"first manifest\n").0
        );
    }
}
