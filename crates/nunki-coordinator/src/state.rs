//! The Coordinator's state machine: uninitialized → ready (after the first manifest) and
//! recovery mode (history on disk, but no key material in memory after a restart).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use nunki_atls::verify::Clock;
use nunki_atls::{HostDataRule, ReferenceVerifier, VerifiedPeer};
use nunki_ca::Ca;
use nunki_manifest::{
    ManifestHash, ParsedManifest, PolicyHash, Sha256Fingerprint, Transition, TransitionHash, sha256,
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
    /// Latest transition hash.
    pub latest: TransitionHash,
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
    /// The seed engine, created with a fresh seed on the first `SetManifest`. The root CA key
    /// and workload secrets are derived from it. Held in memory only: after a restart the
    /// Coordinator is in recovery mode until the seed is given back (seed shares, issue 6).
    seed: std::sync::Mutex<Option<Arc<nunki_ca::SeedEngine>>>,
    metrics: Arc<Metrics>,
}

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
            seed: std::sync::Mutex::new(None),
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

    /// Sets a manifest: the first one, or an update authorised by a workload owner key.
    pub async fn set_manifest(
        &self,
        raw: &[u8],
        policies: &[Vec<u8>],
        client_spki: Option<&[u8]>,
        expected_previous: Option<TransitionHash>,
    ) -> Result<SetResult, CoordError> {
        let _guard = self.set_lock.lock().await;
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
        let mesh_verifier = Arc::new(
            ReferenceVerifier::for_reference_values(
                &parsed.manifest().reference_values,
                HostDataRule::Any,
                self.clock.clone(),
            )
            .map_err(|e| CoordError::InvalidArgument(e.to_string()))?,
        );
        // Key material before touching the store, so a failure leaves nothing half written.
        let root_key = self.root_key()?;
        let mesh_key =
            nunki_ca::generate_p384_pkcs8().map_err(|e| CoordError::Internal(e.to_string()))?;
        let ca = Arc::new(
            Ca::new(&root_key, &mesh_key, (self.clock)())
                .map_err(|e| CoordError::Internal(e.to_string()))?,
        );

        for p in docs.values() {
            self.history.set_policy(p).await?;
        }
        let manifest_hash = self.history.set_manifest(raw).await?;
        let prev_latest = previous.as_ref().map(|s| s.latest.clone());
        let transition = Transition {
            manifest_hash,
            previous: prev_latest
                .as_ref()
                .map_or(TransitionHash::GENESIS, |l| l.hash),
        };
        let hash = self.history.set_transition(&transition).await?;
        let latest = LatestTransition {
            hash,
            signature: Vec::new(),
        };
        self.history
            .cas_latest(prev_latest.as_ref(), &latest)
            .await?;

        let generation = previous.as_ref().map_or(1, |s| s.generation + 1);
        let state = Arc::new(State {
            manifest: Arc::new(parsed),
            ca: ca.clone(),
            latest,
            generation,
            mesh_verifier,
        });
        match self.status.write() {
            Ok(mut s) => *s = Status::Ready(state),
            Err(p) => *p.into_inner() = Status::Ready(state),
        }
        self.metrics.manifests_set.inc();
        self.metrics
            .manifest_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        tracing::info!(manifest = %manifest_hash, transition = %hash, generation, "manifest set");
        Ok(SetResult {
            manifest_hash,
            root_ca: ca.root_pem().to_string(),
            mesh_ca: ca.mesh_ca_pem().to_string(),
        })
    }

    fn root_key(&self) -> Result<Zeroizing<Vec<u8>>, CoordError> {
        self.seed_engine()?
            .root_ca_key()
            .map_err(|e| CoordError::Internal(format!("deriving the root CA key: {e}")))
    }

    /// The seed engine; the first call creates a fresh seed and salt.
    fn seed_engine(&self) -> Result<Arc<nunki_ca::SeedEngine>, CoordError> {
        let mut g = self
            .seed
            .lock()
            .map_err(|_| CoordError::Internal("seed lock poisoned".into()))?;
        if let Some(e) = g.as_ref() {
            return Ok(e.clone());
        }
        let seed = nunki_ca::Seed::generate().map_err(|e| CoordError::Internal(e.to_string()))?;
        let salt = nunki_ca::Salt::generate().map_err(|e| CoordError::Internal(e.to_string()))?;
        let engine = Arc::new(nunki_ca::SeedEngine::new(&seed, &salt));
        *g = Some(engine.clone());
        Ok(engine)
    }

    /// The whole history, oldest first, with every referenced policy (all re-hashed).
    pub async fn get_manifests(&self) -> Result<ManifestsView, CoordError> {
        let state = self.ready()?;
        let verified = self.history.verify_from(state.latest.clone()).await?;
        Ok(ManifestsView {
            manifests: verified.entries.into_iter().map(|e| e.manifest).collect(),
            policies: verified.policies.into_values().collect(),
            root_ca: state.ca.root_pem().to_string(),
            mesh_ca: state.ca.mesh_ca_pem().to_string(),
            latest: state.latest.hash,
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
                self.seed_engine()?
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
