//! The Coordinator's state machine: uninitialized → ready (after the first manifest) and
//! recovery mode (history on disk, but no key material in memory after a restart).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use nunki_atls::verify::Clock;
use nunki_atls::{HostDataRule, ReferenceVerifier, VerifiedPeer};
use nunki_ca::Ca;
use nunki_manifest::{
    AuditOperation, AuditOutcome, AuditRecord, ManifestHash, ParsedManifest, PolicyHash,
    Sha256Fingerprint, Transition, TransitionHash, sha256,
};
use zeroize::Zeroizing;

use crate::history::{History, HistoryError, LatestTransition};
use crate::metrics::Metrics;

/// An error of a Coordinator operation, mapped onto a gRPC status by the API layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// The request is malformed (e.g. manifest validation errors, one per line).
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller is not allowed to do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The Coordinator is not in a state that allows it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller presented no identity where one is needed.
    #[error("{0}")]
    Unauthenticated(String),
    /// A concurrent update won; retrying on the new state may succeed.
    #[error("{0}")]
    Aborted(String),
    /// Something broke inside.
    #[error("{0}")]
    Internal(String),
}

impl From<HistoryError> for CoordError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::ConcurrentUpdate { .. } => CoordError::Aborted(format!(
                "{e}; another manifest was set at the same time: fetch the history and retry"
            )),
            other => CoordError::Internal(format!("history store: {other}")),
        }
    }
}

/// Everything that belongs to one manifest.
#[derive(Debug)]
pub struct State {
    /// The current manifest.
    pub manifest: Arc<ParsedManifest>,
    /// CA with the root and this manifest's mesh CA.
    pub ca: Arc<Ca>,
    /// The latest transition.
    pub latest: LatestTransition,
    /// Manifests set since start (1 = the first).
    pub generation: u64,
    /// Verifier for pods under this manifest.
    pub mesh_verifier: Arc<ReferenceVerifier>,
    /// Epoch of the mesh CA key of `latest` (see [`crate::history::MeshKey`]).
    pub mesh_epoch: u64,
}

/// The Coordinator's status.
#[derive(Debug, Clone)]
pub enum Status {
    /// No manifest yet.
    Uninitialized,
    /// Serving the current manifest.
    Ready(Arc<State>),
    /// A history exists on disk but the key material is not in memory.
    Recovery {
        /// The persisted latest transition.
        latest: TransitionHash,
    },
}

/// Result of a successful SetManifest.
#[derive(Debug, Clone)]
pub struct SetResult {
    /// Hash of the accepted manifest.
    pub manifest_hash: ManifestHash,
    /// Root CA PEM.
    pub root_ca: String,
    /// Mesh CA PEM.
    pub mesh_ca: String,
    /// For the first manifest only: the seed shares (`seed-shares.json`).
    pub seed_shares: Option<nunki_ca::SeedShareDocument>,
}

/// Result of a successful Recover.
#[derive(Debug, Clone)]
pub struct RecoverResult {
    /// Root CA PEM (unchanged by the restart).
    pub root_ca: String,
    /// The new mesh CA PEM.
    pub mesh_ca: String,
}

/// Result of GetAuditLog.
#[derive(Debug, Clone)]
pub struct AuditView {
    /// The log as stored.
    pub log: crate::history::AuditLog,
    /// The history public key (SPKI DER) when the Coordinator holds it.
    pub history_public_key: Option<Vec<u8>>,
}

/// Result of GetManifests.
#[derive(Debug, Clone)]
pub struct ManifestsView {
    /// Exact bytes, oldest first.
    pub manifests: Vec<Vec<u8>>,
    /// Every referenced policy.
    pub policies: Vec<Vec<u8>>,
    /// Root CA PEM.
    pub root_ca: String,
    /// Mesh CA PEM.
    pub mesh_ca: String,
    /// Latest transition hash and its signature.
    pub latest: LatestTransition,
    /// The transition hash of each manifest, oldest first.
    pub transition_hashes: Vec<TransitionHash>,
    /// SubjectPublicKeyInfo DER of the history key.
    pub history_public_key: Vec<u8>,
}

/// A mesh certificate for an attested pod.
#[derive(Debug, Clone)]
pub struct MeshCert {
    /// Mesh CA PEM.
    pub mesh_ca: String,
    /// Leaf then intermediate, PEM.
    pub chain: String,
    /// Root CA PEM.
    pub root_ca: String,
    /// The workload secret for the entry's `WorkloadSecretID` (`None` when it has none).
    pub workload_secret: Option<Zeroizing<[u8; 64]>>,
}

/// The Coordinator.
pub struct Coordinator {
    history: History,
    clock: Clock,
    status: RwLock<Status>,
    set_lock: tokio::sync::Mutex<()>,
    /// The keys derived from the seed, created with a fresh seed on the first `SetManifest`
    /// or given back by `Recover`. Held in memory only: after a restart the Coordinator is in
    /// recovery mode until a seed-share owner recovers it.
    keys: std::sync::Mutex<Option<Arc<Keys>>>,
    audit_limit: std::sync::Mutex<RefusalLimiters>,
    seed_source: std::sync::OnceLock<Arc<dyn SeedSource>>,
    metrics: Arc<Metrics>,
}

/// Where a replica in recovery mode can get the seed: its ready peers (see `crate::ha`).
#[async_trait::async_trait]
pub trait SeedSource: Send + Sync + std::fmt::Debug {
    /// The seed and salt from a ready peer, with the peer's address; None if no peer is ready.
    async fn fetch_seed(
        &self,
        coord: &Coordinator,
    ) -> Option<(nunki_ca::Seed, nunki_ca::Salt, String)>;
}

/// Who gave the Coordinator its seed (besides a seed-share owner).
enum SeedOrigin<'a> {
    /// A peer replica at this address.
    Peer(&'a str),
}

/// What the seed gives the Coordinator.
struct Keys {
    seed: nunki_ca::Seed,
    salt: nunki_ca::Salt,
    engine: nunki_ca::SeedEngine,
    history: nunki_ca::HistoryKey,
}

impl Keys {
    fn new(seed: &nunki_ca::Seed, salt: &nunki_ca::Salt) -> Result<Keys, CoordError> {
        let engine = nunki_ca::SeedEngine::new(seed, salt);
        let der = engine
            .history_signing_key()
            .map_err(|e| CoordError::Internal(format!("deriving the history signing key: {e}")))?;
        let history = nunki_ca::HistoryKey::from_pkcs8(&der)
            .map_err(|e| CoordError::Internal(e.to_string()))?;
        Ok(Keys {
            seed: seed.clone(),
            salt: salt.clone(),
            engine,
            history,
        })
    }

    fn mesh_wrap_key(&self) -> Result<Zeroizing<[u8; 32]>, CoordError> {
        self.engine
            .mesh_ca_wrap_key()
            .map_err(|e| CoordError::Internal(format!("deriving the mesh CA wrap key: {e}")))
    }

    fn root_key(&self) -> Result<Zeroizing<Vec<u8>>, CoordError> {
        self.engine
            .root_ca_key()
            .map_err(|e| CoordError::Internal(format!("deriving the root CA key: {e}")))
    }
}

/// Refused operations are recorded in the audit log at most [`RefusalLimiter::BURST`] at a
/// time per source, refilled at one per [`RefusalLimiter::REFILL`]; the rest are counted and the
/// count goes into the next record. A client hammering the API adds at most 1,440 records a day
/// (one a minute) instead of one per request: the store (ConfigMaps with `--store kubernetes`)
/// and `GetAuditLog` stay small.
#[derive(Debug)]
struct RefusalLimiter {
    tokens: f64,
    last: std::time::Instant,
    suppressed: u64,
}

impl RefusalLimiter {
    const BURST: f64 = 20.0;
    const REFILL: std::time::Duration = std::time::Duration::from_secs(60);

    fn new() -> Self {
        Self {
            tokens: Self::BURST,
            last: std::time::Instant::now(),
            suppressed: 0,
        }
    }

    fn admit_at(&mut self, now: std::time::Instant) -> bool {
        let refill = now.duration_since(self.last).as_secs_f64() / Self::REFILL.as_secs_f64();
        self.tokens = (self.tokens + refill).min(Self::BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            false
        }
    }
}

/// Who a refused operation came from, for rate limiting its audit records: keys the manifest
/// lists (workload owners for SetManifest, seed-share owners for Recover) each have their own
/// bucket, so strangers hammering the API cannot hide an owner's refused attempt; peer
/// recoveries have one; everyone else shares one (client keys cost nothing to make).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RefusalSource {
    Listed(String),
    Peer,
    Other,
}

/// The refusal buckets of [`RefusalSource`].
#[derive(Debug)]
struct RefusalLimiters {
    other: RefusalLimiter,
    peer: RefusalLimiter,
    listed: HashMap<String, RefusalLimiter>,
}

impl RefusalLimiters {
    /// Listed keys tracked at most (a manifest lists few); beyond, they share `other`.
    const MAX_LISTED: usize = 1024;

    fn new() -> Self {
        Self {
            other: RefusalLimiter::new(),
            peer: RefusalLimiter::new(),
            listed: HashMap::new(),
        }
    }

    fn admit_at(&mut self, source: RefusalSource, now: std::time::Instant) -> bool {
        let limiter = match source {
            RefusalSource::Peer => &mut self.peer,
            RefusalSource::Listed(k)
                if self.listed.len() < Self::MAX_LISTED || self.listed.contains_key(&k) =>
            {
                self.listed.entry(k).or_insert_with(RefusalLimiter::new)
            }
            RefusalSource::Listed(_) | RefusalSource::Other => &mut self.other,
        };
        limiter.admit_at(now)
    }

    /// Refusals left out of the log since the last record, from every source; resets them.
    fn take_suppressed(&mut self) -> u64 {
        let mut n = std::mem::take(&mut self.other.suppressed)
            .saturating_add(std::mem::take(&mut self.peer.suppressed));
        for l in self.listed.values_mut() {
            n = n.saturating_add(std::mem::take(&mut l.suppressed));
        }
        n
    }
}

/// SHA-256 digests (hex) of the seed-share owner keys a manifest lists; entries that do not
/// decode are left out (validation refuses such manifests before they are stored).
fn seedshare_owner_digests(m: &ParsedManifest) -> Vec<String> {
    m.manifest()
        .seedshare_owner_pub_keys
        .iter()
        .filter_map(|k| hex::decode(k).ok())
        .filter_map(|der| nunki_ca::seedshare_owner_key_digest(&der).ok())
        .collect()
}

/// Longest refusal reason kept in an audit record.
const MAX_AUDIT_REASON: usize = 512;

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Opens the Coordinator over `history`. Refuses to start when the stored history is
    /// corrupt (the error names the file); an intact history puts it into recovery mode.
    pub async fn open(
        history: History,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, CoordError> {
        history
            .verify_all()
            .await
            .map_err(|e| CoordError::Internal(format!("the stored history is corrupt: {e}")))?;
        let status = match history.latest().await.map_err(CoordError::from)? {
            Some(latest) => {
                tracing::warn!(latest = %latest.hash, "history found: starting in recovery mode");
                Status::Recovery {
                    latest: latest.hash,
                }
            }
            None => Status::Uninitialized,
        };
        Ok(Self {
            history,
            clock,
            status: RwLock::new(status),
            set_lock: tokio::sync::Mutex::new(()),
            keys: std::sync::Mutex::new(None),
            audit_limit: std::sync::Mutex::new(RefusalLimiters::new()),
            seed_source: std::sync::OnceLock::new(),
            metrics,
        })
    }

    /// Current status.
    pub fn status(&self) -> Status {
        // A poisoned lock still holds a consistent value (it is only ever replaced whole).
        self.status
            .read()
            .map_or_else(|p| p.into_inner().clone(), |s| s.clone())
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The current state when ready.
    pub fn ready(&self) -> Result<Arc<State>, CoordError> {
        match self.status() {
            Status::Ready(s) => Ok(s),
            Status::Uninitialized => Err(CoordError::FailedPrecondition(
                "no manifest has been set yet: run `nunki set` first".into(),
            )),
            Status::Recovery { latest } => Err(CoordError::FailedPrecondition(format!(
                "the Coordinator is in recovery mode (it restarted; history up to transition {latest} is on disk, but its keys are not in memory) and cannot serve this until it is recovered"
            ))),
        }
    }

    /// Sets a manifest: the first one, or an update authorised by a workload owner key. Every
    /// outcome is recorded in the audit log.
    pub async fn set_manifest(
        &self,
        raw: &[u8],
        policies: &[Vec<u8>],
        client_spki: Option<&[u8]>,
        expected_previous: Option<TransitionHash>,
    ) -> Result<SetResult, CoordError> {
        let _guard = self.set_lock.lock().await;
        let result = self
            .set_manifest_locked(raw, policies, client_spki, expected_previous)
            .await;
        let digest = client_spki.map(|k| hex::encode(sha256(k)));
        self.audit_result(AuditOperation::SetManifest, digest, result.as_ref().err())
            .await;
        result
    }

    async fn set_manifest_locked(
        &self,
        raw: &[u8],
        policies: &[Vec<u8>],
        client_spki: Option<&[u8]>,
        expected_previous: Option<TransitionHash>,
    ) -> Result<SetResult, CoordError> {
        let previous = match self.status() {
            Status::Recovery { .. } => {
                self.ready()?;
                None
            }
            Status::Uninitialized => None,
            Status::Ready(s) => Some(s),
        };
        if let Some(expected) = expected_previous {
            let current = previous
                .as_ref()
                .map_or(TransitionHash::GENESIS, |s| s.latest.hash);
            if expected != current {
                return Err(CoordError::Aborted(format!(
                    "concurrent update: this update was based on transition {expected}, but the latest is {current}; fetch the history and retry"
                )));
            }
        }
        let parsed = ParsedManifest::parse(raw).map_err(|errs| {
            CoordError::InvalidArgument(format!("the manifest is invalid:\n{errs}"))
        })?;
        if let Some(prev) = &previous {
            authorize(&prev.manifest, client_spki)?;
            same_seedshare_owners(&prev.manifest, &parsed)?;
        }
        // Every policy in the manifest must come with its document, and nothing else.
        let mut docs: BTreeMap<PolicyHash, &Vec<u8>> = BTreeMap::new();
        for p in policies {
            let h = PolicyHash(sha256(p));
            if parsed.policy(&h).is_none() {
                return Err(CoordError::InvalidArgument(format!(
                    "a policy document with hash {h} is not referenced by the manifest"
                )));
            }
            docs.insert(h, p);
        }
        let missing: Vec<String> = parsed
            .manifest()
            .policies
            .keys()
            .filter(|h| !docs.contains_key(h))
            .map(ToString::to_string)
            .collect();
        if !missing.is_empty() {
            return Err(CoordError::InvalidArgument(format!(
                "missing policy documents for: {}",
                missing.join(", ")
            )));
        }
        let mesh_verifier = self.mesh_verifier_for(&parsed)?;
        // Key material before touching the store, so a failure leaves nothing half written. The
        // first manifest gets a fresh seed, kept only if the manifest is accepted.
        let (keys, seed_shares) = match &previous {
            Some(_) => (self.keys()?, None),
            None => {
                let seed =
                    nunki_ca::Seed::generate().map_err(|e| CoordError::Internal(e.to_string()))?;
                let salt =
                    nunki_ca::Salt::generate().map_err(|e| CoordError::Internal(e.to_string()))?;
                let shares = nunki_ca::SeedShareDocument::encrypt(
                    &parsed.manifest().seedshare_owner_pub_keys,
                    &seed,
                    &salt,
                )
                .map_err(|e| CoordError::InvalidArgument(format!("SeedshareOwnerPubKeys: {e}")))?;
                (Arc::new(Keys::new(&seed, &salt)?), Some(shares))
            }
        };
        let mesh_key =
            nunki_ca::generate_p384_pkcs8().map_err(|e| CoordError::Internal(e.to_string()))?;
        let ca = self.new_ca(&keys, &mesh_key)?;

        for p in docs.values() {
            self.history.set_policy(p).await?;
        }
        let manifest_hash = self.history.set_manifest(raw).await?;
        if let Some(doc) = &seed_shares {
            let bytes = serde_json::to_vec_pretty(doc)
                .map_err(|e| CoordError::Internal(format!("encoding the seed shares: {e}")))?;
            self.history.set_seed_shares(&bytes).await?;
        }
        let prev_latest = previous.as_ref().map(|s| s.latest.clone());
        let transition = Transition {
            manifest_hash,
            previous: prev_latest
                .as_ref()
                .map_or(TransitionHash::GENESIS, |l| l.hash),
        };
        let hash = self.history.set_transition(&transition).await?;
        // Before the latest pointer moves, so a replica that sees the new transition finds it.
        self.history
            .set_mesh_key(&hash, &*keys.mesh_wrap_key()?, &mesh_key, 0)
            .await?;
        let latest = LatestTransition {
            hash,
            signature: keys
                .history
                .sign(nunki_ca::Signed::LatestTransition, hash.as_bytes())
                .map_err(|e| CoordError::Internal(e.to_string()))?,
        };
        self.history
            .cas_latest(prev_latest.as_ref(), &latest)
            .await?;

        if previous.is_none() {
            self.install_keys(keys);
        }
        let generation = previous.as_ref().map_or(1, |s| s.generation + 1);
        self.become_ready(parsed, ca.clone(), latest, generation, mesh_verifier, 0);
        self.metrics.manifests_set.inc();
        tracing::info!(manifest = %manifest_hash, transition = %hash, generation, "manifest set");
        Ok(SetResult {
            manifest_hash,
            root_ca: ca.root_pem().to_string(),
            mesh_ca: ca.mesh_ca_pem().to_string(),
            seed_shares,
        })
    }

    fn mesh_verifier_for(
        &self,
        parsed: &ParsedManifest,
    ) -> Result<Arc<ReferenceVerifier>, CoordError> {
        Ok(Arc::new(
            ReferenceVerifier::for_reference_values(
                &parsed.manifest().reference_values,
                HostDataRule::Any,
                self.clock.clone(),
            )
            .map_err(|e| CoordError::InvalidArgument(e.to_string()))?,
        ))
    }

    /// A CA with the seed's root key and the given mesh key.
    fn new_ca(&self, keys: &Keys, mesh_key: &[u8]) -> Result<Arc<Ca>, CoordError> {
        let root_key = keys.root_key()?;
        Ok(Arc::new(
            Ca::new(&root_key, mesh_key, (self.clock)())
                .map_err(|e| CoordError::Internal(e.to_string()))?,
        ))
    }

    fn become_ready(
        &self,
        parsed: ParsedManifest,
        ca: Arc<Ca>,
        latest: LatestTransition,
        generation: u64,
        mesh_verifier: Arc<ReferenceVerifier>,
        mesh_epoch: u64,
    ) {
        let state = Arc::new(State {
            manifest: Arc::new(parsed),
            ca,
            latest,
            generation,
            mesh_verifier,
            mesh_epoch,
        });
        match self.status.write() {
            Ok(mut s) => *s = Status::Ready(state),
            Err(p) => *p.into_inner() = Status::Ready(state),
        }
        self.metrics
            .manifest_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    fn install_keys(&self, keys: Arc<Keys>) {
        match self.keys.lock() {
            Ok(mut k) => *k = Some(keys),
            Err(p) => *p.into_inner() = Some(keys),
        }
    }

    fn keys(&self) -> Result<Arc<Keys>, CoordError> {
        self.keys
            .lock()
            .map_err(|_| CoordError::Internal("key lock poisoned".into()))?
            .clone()
            .ok_or_else(|| {
                CoordError::Internal("ready without keys: this is a bug in the Coordinator".into())
            })
    }

    /// Gives a Coordinator in recovery mode its seed back. `client_spki` is the caller's TLS
    /// client key, which must be a seed-share owner key of the latest manifest; the seed and
    /// salt must derive the history key that signed the stored latest transition. On success
    /// the root CA is the one from before, the mesh CA is new, and the history is unchanged.
    /// Every outcome is recorded in the audit log.
    pub async fn recover(
        &self,
        seed: &[u8],
        salt: &[u8],
        client_spki: Option<&[u8]>,
        force: bool,
    ) -> Result<RecoverResult, CoordError> {
        let _guard = self.set_lock.lock().await;
        let result = self.recover_locked(seed, salt, client_spki, force).await;
        let digest = client_spki.map(|k| {
            nunki_ca::seedshare_owner_key_digest(k).unwrap_or_else(|_| hex::encode(sha256(k)))
        });
        self.audit_result(AuditOperation::Recover, digest, result.as_ref().err())
            .await;
        result
    }

    async fn recover_locked(
        &self,
        seed: &[u8],
        salt: &[u8],
        client_spki: Option<&[u8]>,
        force: bool,
    ) -> Result<RecoverResult, CoordError> {
        match self.status() {
            Status::Recovery { .. } => {}
            Status::Uninitialized => {
                return Err(CoordError::FailedPrecondition(
                    "the Coordinator has no history, so there is nothing to recover: set a manifest with `nunki set`".into(),
                ));
            }
            Status::Ready(_) => {
                return Err(CoordError::FailedPrecondition(
                    "the Coordinator is not in recovery mode: it already holds its keys".into(),
                ));
            }
        }
        let Some(spki) = client_spki else {
            return Err(CoordError::Unauthenticated(
                "recovery needs a seed-share owner key as client certificate (--seedshare-owner-key)".into(),
            ));
        };
        let caller = nunki_ca::seedshare_owner_key_digest(spki).map_err(|e| {
            CoordError::PermissionDenied(format!(
                "the presented client key is not a seed-share owner key (an RSA key listed in SeedshareOwnerPubKeys): {e}"
            ))
        })?;
        let seed = nunki_ca::Seed::from_bytes(seed)
            .map_err(|e| CoordError::InvalidArgument(format!("seed: {e}")))?;
        let salt = nunki_ca::Salt::from_bytes(salt)
            .map_err(|e| CoordError::InvalidArgument(format!("salt: {e}")))?;
        if !force {
            let source = self.seed_source.get().cloned();
            if let Some(source) = source
                && let Some((s, t, addr)) = source.fetch_seed(self).await
                && self
                    .apply_seed(&s, &t, SeedOrigin::Peer(&addr))
                    .await
                    .is_ok()
            {
                return Err(CoordError::FailedPrecondition(format!(
                    "a ready Coordinator replica ({addr}) gave this one the seed: it is ready again and your seed share was not used (pass --force to recover with it anyway)"
                )));
            }
        }
        let keys = Arc::new(Keys::new(&seed, &salt)?);
        let (latest, parsed) = self.check_seed(&keys).await?;
        let owners = seedshare_owner_digests(&parsed);
        if !owners.iter().any(|o| o.eq_ignore_ascii_case(&caller)) {
            return Err(CoordError::PermissionDenied(format!(
                "the presented key (SHA-256 of its PKCS#1 public key: {caller}) is not a seed-share owner of manifest {}; listed owners: {}",
                parsed.hash(),
                if owners.is_empty() {
                    "none".to_string()
                } else {
                    owners.join(", ")
                }
            )));
        }
        // A recovery by an owner makes a new mesh CA: its key replaces the stored one at the
        // next epoch, so ready replicas switch to it and never back.
        let wrap = keys.mesh_wrap_key()?;
        let epoch = match self.history.mesh_key(&latest.hash, &wrap).await? {
            Some(k) => k
                .epoch
                .checked_add(1)
                .ok_or_else(|| CoordError::Internal("the mesh CA key epoch is exhausted".into()))?,
            None => 0,
        };
        let mesh_key =
            nunki_ca::generate_p384_pkcs8().map_err(|e| CoordError::Internal(e.to_string()))?;
        let mesh_verifier = self.mesh_verifier_for(&parsed)?;
        let ca = self.new_ca(&keys, &mesh_key)?;
        self.history
            .set_mesh_key(&latest.hash, &wrap, &mesh_key, epoch)
            .await?;
        self.install_keys(keys);
        let manifest_hash = parsed.hash();
        self.become_ready(parsed, ca.clone(), latest.clone(), 1, mesh_verifier, epoch);
        tracing::info!(manifest = %manifest_hash, transition = %latest.hash, "recovered");
        Ok(RecoverResult {
            root_ca: ca.root_pem().to_string(),
            mesh_ca: ca.mesh_ca_pem().to_string(),
        })
    }

    /// Checks that `keys` (from a seed and salt) belong to the stored history: the derived
    /// history key verifies the stored latest transition. Returns it with the latest manifest.
    async fn check_seed(
        &self,
        keys: &Keys,
    ) -> Result<(LatestTransition, ParsedManifest), CoordError> {
        let latest = self.history.latest().await?.ok_or_else(|| {
            CoordError::Internal("recovery mode without a latest transition".into())
        })?;
        keys.history
            .verify(
                nunki_ca::Signed::LatestTransition,
                latest.hash.as_bytes(),
                &latest.signature,
            )
            .map_err(|e| {
                CoordError::PermissionDenied(format!(
                    "the seed and salt do not belong to this deployment's history (transition {}): {e}; nothing was changed",
                    latest.hash
                ))
            })?;
        let verified = self.history.verify_from(latest.clone()).await?;
        let parsed = verified.latest_manifest.ok_or_else(|| {
            CoordError::Internal("a signed latest transition without a manifest".into())
        })?;
        Ok((latest, parsed))
    }

    /// Takes a seed from a ready peer replica (already checked by the transport: the peer was
    /// attested as a Coordinator of this deployment). The seed must verify the stored history;
    /// the mesh CA is the one the peers use (from the store). Recorded in the audit log.
    pub async fn recover_from_peer(
        &self,
        seed: &nunki_ca::Seed,
        salt: &nunki_ca::Salt,
        peer: &str,
    ) -> Result<(), CoordError> {
        let _guard = self.set_lock.lock().await;
        if !matches!(self.status(), Status::Recovery { .. }) {
            return Ok(());
        }
        self.apply_seed(seed, salt, SeedOrigin::Peer(peer)).await
    }

    /// Becomes ready with a seed whose origin was already authorised.
    async fn apply_seed(
        &self,
        seed: &nunki_ca::Seed,
        salt: &nunki_ca::Salt,
        origin: SeedOrigin<'_>,
    ) -> Result<(), CoordError> {
        let result = async {
            let keys = Arc::new(Keys::new(seed, salt)?);
            let (latest, parsed) = self.check_seed(&keys).await?;
            let wrap = keys.mesh_wrap_key()?;
            let (mesh_key, epoch) = match self.history.mesh_key(&latest.hash, &wrap).await? {
                Some(k) => (k.pkcs8, k.epoch),
                None => {
                    let k = nunki_ca::generate_p384_pkcs8()
                        .map_err(|e| CoordError::Internal(e.to_string()))?;
                    self.history
                        .set_mesh_key(&latest.hash, &wrap, &k, 0)
                        .await?;
                    (k, 0)
                }
            };
            let mesh_verifier = self.mesh_verifier_for(&parsed)?;
            let ca = self.new_ca(&keys, &mesh_key)?;
            self.install_keys(keys);
            let manifest = parsed.hash();
            self.become_ready(parsed, ca, latest.clone(), 1, mesh_verifier, epoch);
            Ok::<_, CoordError>((manifest, latest.hash))
        }
        .await;
        let SeedOrigin::Peer(peer) = origin;
        match &result {
            Ok((manifest, transition)) => {
                tracing::info!(%peer, %manifest, %transition, "recovered from a peer replica");
            }
            Err(e) => tracing::warn!(%peer, error = %e, "recovery from a peer replica failed"),
        }
        let (manifest, transition) = match &result {
            Ok((m, t)) => (Some(m.to_hex()), Some(*t)),
            Err(_) => (None, None),
        };
        self.audit_with_peer(
            AuditOperation::Recover,
            None,
            result.as_ref().err(),
            manifest,
            transition,
            Some(peer.to_string()),
        )
        .await;
        result.map(|_| ())
    }

    /// Sets where a replica in recovery mode can get the seed from (its peers).
    pub fn set_seed_source(&self, source: Arc<dyn SeedSource>) {
        let _ = self.seed_source.set(source);
    }

    /// The seed source, if configured.
    pub fn seed_source(&self) -> Option<Arc<dyn SeedSource>> {
        self.seed_source.get().cloned()
    }

    /// Whether seed sources (peer replicas) are configured.
    pub fn has_seed_source(&self) -> bool {
        self.seed_source.get().is_some()
    }

    /// The manifest the store's latest transition names, content-hash checked but not (yet)
    /// verified by signature or chain: what a replica in recovery mode attests its peers against
    /// before it has the seed.
    pub async fn stored_latest_manifest(&self) -> Option<ParsedManifest> {
        // Only the latest manifest: a replica in recovery mode asks this every second, and the
        // seed it then gets is checked against the whole, signed history anyway.
        match self.history.latest_manifest().await {
            Ok(m) => m,
            Err(e) => {
                // Asked every second; start-up and recovery report a corrupt store loudly.
                tracing::debug!(error = %e, "reading the stored latest manifest");
                None
            }
        }
    }

    /// Hands the seed to an attested peer replica whose HOST_DATA is a `Role: "coordinator"`
    /// policy of the current manifest (mesh API GetSeed).
    pub fn seed_for_peer(
        &self,
        peer: &VerifiedPeer,
        generation: u64,
    ) -> Result<(nunki_ca::Seed, nunki_ca::Salt), CoordError> {
        let state = self.ready()?;
        if state.generation != generation {
            return Err(CoordError::FailedPrecondition(
                "the manifest changed after this connection was attested; reconnect".into(),
            ));
        }
        let hash = PolicyHash::from(peer.host_data());
        match state.manifest.policy(&hash) {
            Some(entry) if entry.role == nunki_manifest::Role::Coordinator => {}
            _ => {
                self.metrics.attestation_failed("seed_not_coordinator");
                return Err(CoordError::PermissionDenied(format!(
                    "GetSeed is only for Coordinator replicas: HOST_DATA {hash} is not a policy with Role \"coordinator\" in manifest {}",
                    state.manifest.hash()
                )));
            }
        }
        let keys = self.keys()?;
        tracing::info!(policy = %hash, "handed the seed to a peer Coordinator replica");
        Ok((keys.seed.clone(), keys.salt.clone()))
    }

    /// Follows a change of the stored latest transition (another replica set a manifest):
    /// a ready Coordinator checks the new history (signed by its history key, extending the
    /// one it serves) and switches to it; one without keys notes that a history exists (recovery
    /// mode, so that it asks its peers for the seed).
    pub async fn observe_latest(&self) -> Result<(), CoordError> {
        let _guard = self.set_lock.lock().await;
        let Some(latest) = self.history.latest().await? else {
            return Ok(());
        };
        let state = match self.status() {
            Status::Ready(s) => s,
            Status::Uninitialized | Status::Recovery { .. } => {
                self.set_status(Status::Recovery {
                    latest: latest.hash,
                });
                return Ok(());
            }
        };
        if state.latest == latest {
            return Ok(());
        }
        let keys = self.keys()?;
        keys.history
            .verify(
                nunki_ca::Signed::LatestTransition,
                latest.hash.as_bytes(),
                &latest.signature,
            )
            .map_err(|e| {
                CoordError::Internal(format!(
                    "refusing the stored latest transition {}: {e}; still serving {}",
                    latest.hash, state.latest.hash
                ))
            })?;
        let verified = self.history.verify_from(latest.clone()).await?;
        if !verified
            .entries
            .iter()
            .any(|e| e.transition_hash == state.latest.hash)
        {
            return Err(CoordError::Internal(format!(
                "refusing the stored latest transition {}: its history does not contain the served transition {} (rewritten?)",
                latest.hash, state.latest.hash
            )));
        }
        let parsed = verified.latest_manifest.ok_or_else(|| {
            CoordError::Internal("a signed latest transition without a manifest".into())
        })?;
        let mesh_key = self
            .history
            .mesh_key(&latest.hash, &*keys.mesh_wrap_key()?)
            .await?
            .ok_or_else(|| {
                CoordError::Internal(format!(
                    "no mesh CA key is stored for transition {}",
                    latest.hash
                ))
            })?;
        let mesh_verifier = self.mesh_verifier_for(&parsed)?;
        let ca = self.new_ca(&keys, &mesh_key.pkcs8)?;
        let manifest = parsed.hash();
        self.become_ready(
            parsed,
            ca,
            latest.clone(),
            state.generation + 1,
            mesh_verifier,
            mesh_key.epoch,
        );
        tracing::info!(%manifest, transition = %latest.hash, "followed a manifest set by another replica");
        Ok(())
    }

    /// Follows a replaced mesh CA key of the served transition: an owner recovered another
    /// replica (`nunki recover --force` while this one was ready), which made a new mesh CA.
    /// Switching keeps one mesh CA for the whole deployment; the manifest is unchanged.
    pub async fn observe_mesh_key(&self) -> Result<(), CoordError> {
        let _guard = self.set_lock.lock().await;
        let Status::Ready(state) = self.status() else {
            return Ok(());
        };
        let keys = self.keys()?;
        let Some(stored) = self
            .history
            .mesh_key(&state.latest.hash, &*keys.mesh_wrap_key()?)
            .await?
        else {
            return Ok(());
        };
        if stored.epoch <= state.mesh_epoch {
            if stored.epoch < state.mesh_epoch || !state.ca.has_mesh_key(&stored.pkcs8) {
                // Only an older key, validly wrapped, written back: refuse to go back.
                return Err(CoordError::Internal(format!(
                    "refusing the stored mesh CA key of transition {} (epoch {}): this replica serves epoch {} (was the store rolled back?)",
                    state.latest.hash, stored.epoch, state.mesh_epoch
                )));
            }
            return Ok(());
        }
        let ca = self.new_ca(&keys, &stored.pkcs8)?;
        self.become_ready(
            (*state.manifest).clone(),
            ca,
            state.latest.clone(),
            state.generation,
            state.mesh_verifier.clone(),
            stored.epoch,
        );
        tracing::info!(transition = %state.latest.hash, "switched to the mesh CA another replica's recovery made");
        Ok(())
    }

    fn set_status(&self, status: Status) {
        match self.status.write() {
            Ok(mut s) => *s = status,
            Err(p) => *p.into_inner() = status,
        }
    }

    /// Records the outcome of `operation` (called under `set_lock`): an accepted one with the
    /// manifest and transition it left the Coordinator serving, a refused one with `error`.
    async fn audit_result(
        &self,
        operation: AuditOperation,
        client_key_digest: Option<String>,
        error: Option<&CoordError>,
    ) {
        let (manifest, transition) = match (error, self.status()) {
            (None, Status::Ready(s)) => (Some(s.manifest.hash().to_hex()), Some(s.latest.hash)),
            _ => (None, None),
        };
        self.audit(operation, client_key_digest, error, manifest, transition)
            .await;
    }

    /// Appends an audit record (refusals rate-limited); failures are logged, not returned: the
    /// operation's own outcome stands.
    async fn audit(
        &self,
        operation: AuditOperation,
        client_key_digest: Option<String>,
        error: Option<&CoordError>,
        manifest: Option<String>,
        transition: Option<TransitionHash>,
    ) {
        self.audit_with_peer(
            operation,
            client_key_digest,
            error,
            manifest,
            transition,
            None,
        )
        .await;
    }

    /// Whether `digest` is a key the manifest lists for `operation`: a workload owner
    /// (SetManifest, SHA-256 of the SPKI) or a seed-share owner (Recover); the served manifest,
    /// or in recovery mode the stored latest one.
    async fn is_listed_key(&self, operation: AuditOperation, digest: &str) -> bool {
        let manifest = match self.status() {
            Status::Ready(s) => Some(s.manifest.clone()),
            _ => self
                .history
                .latest_manifest()
                .await
                .ok()
                .flatten()
                .map(Arc::new),
        };
        let Some(m) = manifest else {
            return false;
        };
        match operation {
            AuditOperation::SetManifest => m
                .manifest()
                .workload_owner_key_digests
                .iter()
                .any(|d| d.to_hex().eq_ignore_ascii_case(digest)),
            AuditOperation::Recover => seedshare_owner_digests(&m)
                .iter()
                .any(|o| o.eq_ignore_ascii_case(digest)),
        }
    }

    async fn audit_with_peer(
        &self,
        operation: AuditOperation,
        client_key_digest: Option<String>,
        error: Option<&CoordError>,
        manifest: Option<String>,
        transition: Option<TransitionHash>,
        peer: Option<String>,
    ) {
        let source = match (&peer, error) {
            (_, None) => None,
            (Some(_), Some(_)) => Some(RefusalSource::Peer),
            (None, Some(_)) => Some(match &client_key_digest {
                Some(d) if self.is_listed_key(operation, d).await => {
                    RefusalSource::Listed(d.to_ascii_lowercase())
                }
                _ => RefusalSource::Other,
            }),
        };
        let suppressed = {
            let Ok(mut limit) = self.audit_limit.lock() else {
                return;
            };
            if let Some(source) = source
                && !limit.admit_at(source, std::time::Instant::now())
            {
                return;
            }
            limit.take_suppressed()
        };
        let time = time::OffsetDateTime::from((self.clock)())
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let reason = error.map(|e| {
            let mut r = e.to_string();
            if r.len() > MAX_AUDIT_REASON {
                let mut cut = MAX_AUDIT_REASON;
                while !r.is_char_boundary(cut) {
                    cut -= 1;
                }
                r.truncate(cut);
                r.push('…');
            }
            r
        });
        let outcome = if error.is_some() {
            AuditOutcome::Refused
        } else {
            AuditOutcome::Accepted
        };
        let keys = match self.status() {
            Status::Ready(_) => self.keys().ok(),
            _ => None,
        };
        let make = |index, previous| AuditRecord {
            index,
            previous,
            time: time.clone(),
            operation,
            client_key_digest: client_key_digest.clone(),
            outcome,
            reason: reason.clone(),
            manifest: manifest.clone(),
            transition: transition.map(|t| t.to_hex()),
            peer: peer.clone(),
            suppressed_refusals: suppressed,
        };
        if let Err(e) = self
            .history
            .append_audit(make, keys.as_ref().map(|k| &k.history))
            .await
        {
            tracing::error!(error = %e, "could not append to the audit log");
        }
    }

    /// The stored seed-share document (empty before the first manifest).
    pub async fn seed_shares(&self) -> Result<Vec<u8>, CoordError> {
        Ok(self.history.seed_shares().await?.unwrap_or_default())
    }

    /// The audit log as stored, with the history public key when this Coordinator holds it.
    pub async fn audit_log(&self) -> Result<AuditView, CoordError> {
        let log = self.history.audit_log().await?;
        let history_public_key = match self.status() {
            Status::Ready(_) => Some(self.keys()?.history.public_key_der().to_vec()),
            _ => None,
        };
        Ok(AuditView {
            log,
            history_public_key,
        })
    }

    /// The whole history, oldest first, with every referenced policy (all re-hashed).
    pub async fn get_manifests(&self) -> Result<ManifestsView, CoordError> {
        let state = self.ready()?;
        let verified = self.history.verify_from(state.latest.clone()).await?;
        Ok(ManifestsView {
            transition_hashes: verified.entries.iter().map(|e| e.transition_hash).collect(),
            manifests: verified.entries.into_iter().map(|e| e.manifest).collect(),
            policies: verified.policies.into_values().collect(),
            root_ca: state.ca.root_pem().to_string(),
            mesh_ca: state.ca.mesh_ca_pem().to_string(),
            latest: state.latest.clone(),
            history_public_key: self.keys()?.history.public_key_der().to_vec(),
        })
    }

    /// The verifier for mesh connections under the current manifest, with its generation.
    pub fn mesh_verifier(&self) -> Option<(Arc<ReferenceVerifier>, u64)> {
        match self.status() {
            Status::Ready(s) => Some((s.mesh_verifier.clone(), s.generation)),
            _ => None,
        }
    }

    /// Issues a mesh certificate for an attested pod whose evidence was verified under
    /// manifest generation `generation`.
    pub fn new_mesh_cert(
        &self,
        peer: &VerifiedPeer,
        generation: u64,
    ) -> Result<MeshCert, CoordError> {
        let state = self.ready()?;
        if state.generation != generation {
            self.metrics.attestation_failed("stale_connection");
            return Err(CoordError::FailedPrecondition(
                "the manifest changed after this connection was attested; reconnect".into(),
            ));
        }
        let hash = PolicyHash::from(peer.host_data());
        let Some(entry) = state.manifest.policy(&hash) else {
            self.metrics.attestation_failed("unknown_policy");
            tracing::info!(policy = %hash, "refused mesh certificate: policy not in the manifest");
            return Err(CoordError::PermissionDenied(format!(
                "the pod's policy hash (HOST_DATA) {hash} is not in the manifest {}",
                state.manifest.hash()
            )));
        };
        let leaf = state
            .ca
            .issue_leaf(&peer.spki, &entry.sans, (self.clock)())
            .map_err(|e| match e {
                nunki_ca::CaError::MalformedSpki { .. }
                | nunki_ca::CaError::UnsupportedKeyAlgorithm { .. }
                | nunki_ca::CaError::InvalidPublicKey { .. } => CoordError::InvalidArgument(
                    format!("the pod's TLS key cannot be certified: {e}"),
                ),
                other => CoordError::Internal(format!("issuing the certificate: {other}")),
            })?;
        let workload_secret = if entry.workload_secret_id.is_empty() {
            None
        } else {
            Some(
                self.keys()?
                    .engine
                    .workload_secret(&entry.workload_secret_id)
                    .map_err(|e| {
                        CoordError::Internal(format!("deriving the workload secret: {e}"))
                    })?,
            )
        };
        self.metrics.certificates_issued.inc();
        tracing::info!(policy = %hash, matched = %peer.matched, "issued mesh certificate");
        Ok(MeshCert {
            mesh_ca: state.ca.mesh_ca_pem().to_string(),
            chain: state.ca.chain_pem(&leaf),
            root_ca: state.ca.root_pem().to_string(),
            workload_secret,
        })
    }
}

fn authorize(current: &ParsedManifest, client_spki: Option<&[u8]>) -> Result<(), CoordError> {
    let allowed = &current.manifest().workload_owner_key_digests;
    if allowed.is_empty() {
        return Err(CoordError::PermissionDenied(format!(
            "updates are disabled: the current manifest {} lists no WorkloadOwnerKeyDigests",
            current.hash()
        )));
    }
    let list = allowed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let Some(spki) = client_spki else {
        return Err(CoordError::Unauthenticated(format!(
            "updating the manifest needs a workload owner key (--workload-owner-key); allowed key digests: {list}"
        )));
    };
    let digest = Sha256Fingerprint(sha256(spki));
    if !allowed.contains(&digest) {
        return Err(CoordError::PermissionDenied(format!(
            "the presented key (SHA-256 of its SubjectPublicKeyInfo: {digest}) is not a workload owner key of the current manifest; allowed: {list}"
        )));
    }
    Ok(())
}

/// The seed-share owners are fixed for the life of a deployment: the seed was encrypted to them
/// once, and a new owner could not get a share without a new seed.
fn same_seedshare_owners(current: &ParsedManifest, new: &ParsedManifest) -> Result<(), CoordError> {
    let norm = |m: &ParsedManifest| -> BTreeSet<String> {
        m.manifest()
            .seedshare_owner_pub_keys
            .iter()
            .map(|k| k.to_ascii_lowercase())
            .collect()
    };
    let (old, new) = (norm(current), norm(new));
    if old != new {
        let added = new.difference(&old).count();
        let removed = old.difference(&new).count();
        return Err(CoordError::InvalidArgument(format!(
            "SeedshareOwnerPubKeys cannot change in an update ({added} added, {removed} removed): the seed shares were made for the owners of the first manifest; keep the list as it is"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refusals_are_recorded_in_a_burst_then_one_a_minute() {
        let mut l = RefusalLimiter::new();
        let t0 = l.last;
        for i in 0..20 {
            assert!(l.admit_at(t0), "refusal {i} of the burst");
        }
        for _ in 0..1000 {
            assert!(!l.admit_at(t0 + Duration::from_secs(1)));
        }
        assert_eq!(l.suppressed, 1000);
        // 59 s after the burst: still nothing; at 60 s one record, which takes the count.
        assert!(!l.admit_at(t0 + Duration::from_secs(59)));
        assert!(l.admit_at(t0 + Duration::from_secs(61)));
        assert_eq!(std::mem::take(&mut l.suppressed), 1001);
        assert!(!l.admit_at(t0 + Duration::from_secs(62)));
        // A day of hammering, one attempt per second: at most one record a minute.
        let mut recorded = 0;
        let start = t0 + Duration::from_secs(62);
        for s in 0..86_400u64 {
            if l.admit_at(start + Duration::from_secs(s)) {
                recorded += 1;
            }
        }
        assert!((1_439..=1_441).contains(&recorded), "{recorded}");
        // Quiet for an hour: the burst is back, not more.
        let later = start + Duration::from_secs(86_400 + 3_600);
        let burst = (0..100).filter(|_| l.admit_at(later)).count();
        assert_eq!(burst, 20);
    }

    #[test]
    fn strangers_cannot_hide_an_owners_refusal() {
        let mut l = RefusalLimiters::new();
        let t0 = std::time::Instant::now();
        // Strangers use up the shared bucket.
        let strangers = (0..500)
            .filter(|_| l.admit_at(RefusalSource::Other, t0))
            .count();
        assert_eq!(strangers, 20);
        // A listed owner's refusal and a peer recovery failure are still recorded.
        assert!(l.admit_at(RefusalSource::Listed("aa".into()), t0));
        assert!(l.admit_at(RefusalSource::Peer, t0));
        // The next record carries every refusal left out.
        assert_eq!(l.take_suppressed(), 480);
        assert_eq!(l.take_suppressed(), 0);
        // Listed buckets are bounded: past the cap, new keys share the strangers' bucket.
        for i in 0..RefusalLimiters::MAX_LISTED {
            l.admit_at(RefusalSource::Listed(format!("k{i}")), t0);
        }
        assert!(l.listed.len() <= RefusalLimiters::MAX_LISTED);
        assert!(!l.admit_at(RefusalSource::Listed("one-too-many".into()), t0));
    }
}
