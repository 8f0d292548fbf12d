//! Several Coordinator replicas on one shared store (`--store kubernetes`, or one store shared
//! in tests):
//!
//! - every replica watches the store's latest transition; a ready one that sees a transition
//!   set by another replica checks it (signed by the deployment's history key, extending the
//!   history it serves) and switches to it ([`Coordinator::observe_latest`]);
//! - a ready replica also watches the stored mesh CA key of its transition: an owner's
//!   recovery of another replica makes a new mesh CA, and every replica switches to it
//!   ([`Coordinator::observe_mesh_key`]);
//! - a replica without the seed (restarted, or started after the first manifest) asks its
//!   peers over mutual aTLS on their mesh API (`GetSeed`): it attests the peer against the
//!   stored latest manifest's reference values and coordinator policies, and the peer hands the
//!   seed only to a caller whose attested HOST_DATA is a `Role: "coordinator"` policy. The seed
//!   must then verify the stored history, as in a manual recovery.
//!
//! Peers are `HOST:PORT` names of the replicas' mesh APIs, resolved on every attempt (a
//! Kubernetes headless Service name resolves to all replicas).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use nunki_api::meshapi::GetSeedRequest;
use nunki_api::meshapi::mesh_api_client::MeshApiClient;
use nunki_atls::cert::AttestingKey;
use nunki_atls::grpc::{Target, connect};
use nunki_atls::verify::Clock;
use nunki_atls::{ClientIdentity, HostDataRule, Issuer, ReferenceVerifier, ServerVerification};
use nunki_manifest::{HostData, TransitionHash};

use crate::history::History;
use crate::state::{Coordinator, SeedSource, Status};
use crate::store::{Store, StoreKey, WatchStream};

/// How long one attempt to reach a peer may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a replica in recovery mode asks its peers, and re-checks the store when its watch
/// has ended.
const PEER_INTERVAL: Duration = Duration::from_secs(1);

/// The peer replicas, asked for the seed over mutual aTLS.
pub struct PeerSeeds {
    issuer: Arc<dyn Issuer>,
    peers: Vec<String>,
    clock: Clock,
}

impl std::fmt::Debug for PeerSeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSeeds")
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl PeerSeeds {
    /// Peers at these `HOST:PORT` mesh API addresses; this replica attests itself with `issuer`.
    pub fn new(issuer: Arc<dyn Issuer>, peers: Vec<String>, clock: Clock) -> Self {
        Self {
            issuer,
            peers,
            clock,
        }
    }

    async fn ask(
        &self,
        addr: std::net::SocketAddr,
        verifier: Arc<ReferenceVerifier>,
    ) -> Result<(nunki_ca::Seed, nunki_ca::Salt), String> {
        let key = Arc::new(AttestingKey::generate().map_err(|e| e.to_string())?);
        let target = Target::new(
            addr.to_string(),
            ServerVerification::Verify(verifier),
            ClientIdentity::Attested {
                key,
                issuer: self.issuer.clone(),
            },
        )
        .tcp_timeout(PEER_TIMEOUT)
        .handshake_timeout(PEER_TIMEOUT)
        .rpc_timeout(PEER_TIMEOUT)
        .peer_name("the peer Coordinator");
        let ch = connect(&target).await.map_err(|e| e.to_string())?;
        let resp = MeshApiClient::new(ch.channel())
            .get_seed(GetSeedRequest {})
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        let seed = nunki_ca::Seed::from_bytes(&resp.seed).map_err(|e| e.to_string())?;
        let salt = nunki_ca::Salt::from_bytes(&resp.salt).map_err(|e| e.to_string())?;
        Ok((seed, salt))
    }
}

#[async_trait::async_trait]
impl SeedSource for PeerSeeds {
    async fn fetch_seed(
        &self,
        coord: &Coordinator,
    ) -> Option<(nunki_ca::Seed, nunki_ca::Salt, String)> {
        let manifest = coord.stored_latest_manifest().await?;
        let hosts: Vec<HostData> = manifest
            .coordinator_policy_hashes()
            .into_iter()
            .map(HostData::from)
            .collect();
        let verifier = match ReferenceVerifier::for_reference_values(
            &manifest.manifest().reference_values,
            HostDataRule::OneOf(hosts),
            self.clock.clone(),
        ) {
            Ok(v) => Arc::new(v),
            Err(e) => {
                tracing::warn!(error = %e, "cannot attest peers with the stored manifest");
                return None;
            }
        };
        for name in &self.peers {
            let addrs =
                match tokio::time::timeout(PEER_TIMEOUT, tokio::net::lookup_host(name)).await {
                    Ok(Ok(a)) => a.collect::<Vec<_>>(),
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %name, error = %e, "peer name does not resolve");
                        continue;
                    }
                    Err(_) => continue,
                };
            for addr in addrs {
                match self.ask(addr, verifier.clone()).await {
                    Ok((seed, salt)) => return Some((seed, salt, addr.to_string())),
                    Err(e) => tracing::debug!(peer = %addr, error = %e, "peer has no seed for us"),
                }
            }
        }
        None
    }
}

/// Follows the store's latest transition and, while in recovery mode, asks the peers for the
/// seed. Runs until `stop` resolves.
pub async fn follow(
    coord: Arc<Coordinator>,
    store: Arc<dyn Store>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let key = StoreKey::latest_transition();
    let mut watch = store.watch(&key);
    // The served transition's mesh CA key: replaced when an owner recovers another replica.
    let mut mesh_watch: Option<(TransitionHash, WatchStream<'_>)> = None;
    let mut tick = tokio::time::interval(PEER_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let served = match coord.status() {
            Status::Ready(s) => Some(s.latest.hash),
            _ => None,
        };
        if mesh_watch.as_ref().map(|(t, _)| *t) != served {
            mesh_watch = served.and_then(|t| {
                let key = History::mesh_key_location(&t).ok()?;
                Some((t, store.watch(&key)))
            });
        }
        let mesh_changed = async {
            match mesh_watch.as_mut() {
                Some((_, w)) => w.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => return,
            item = watch.next() => match item {
                Some(_) => {
                    if let Err(e) = coord.observe_latest().await {
                        tracing::error!(error = %e, "following the store's latest transition");
                    }
                }
                None => {
                    tokio::time::sleep(PEER_INTERVAL).await;
                    watch = store.watch(&key);
                }
            },
            item = mesh_changed => match item {
                Some(Ok(_)) => {
                    if let Err(e) = coord.observe_mesh_key().await {
                        tracing::error!(error = %e, "following the stored mesh CA key");
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "watching the stored mesh CA key");
                }
                None => {
                    // The watch ended: make a new one on the next round.
                    mesh_watch = None;
                    tokio::time::sleep(PEER_INTERVAL).await;
                }
            },
            _ = tick.tick() => {}
        }
        if !matches!(coord.status(), Status::Recovery { .. }) {
            continue;
        }
        let Some(source) = coord.seed_source() else {
            continue;
        };
        if let Some((seed, salt, peer)) = source.fetch_seed(&coord).await
            && let Err(e) = coord.recover_from_peer(&seed, &salt, &peer).await
        {
            tracing::warn!(%peer, error = %e, "the peer's seed was not usable");
        }
    }
}
