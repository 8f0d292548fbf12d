//! Wiring: open the store, bind the three listeners and serve until shut down. Used by the
//! binary and by in-process integration tests and benchmarks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use nunki_atls::verify::Clock;
use nunki_atls::{AttestingCertResolver, Issuer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::history::History;
use crate::metrics::Metrics;
use crate::state::Coordinator;
use crate::store::{DirStore, MemStore, Store};

/// Where the history lives.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// Files under this state directory.
    Dir(PathBuf),
    /// In memory (tests).
    Memory,
    /// A store opened by the caller: the Kubernetes store (`--store kubernetes`), or one
    /// store shared by several Coordinators in a test.
    Open(Arc<dyn Store>),
}

/// Everything needed to start a Coordinator.
pub struct Options {
    /// The platform's evidence issuer (the Coordinator's own attestation).
    pub issuer: Arc<dyn Issuer>,
    /// History storage.
    pub store: StoreChoice,
    /// User API address.
    pub user_api: SocketAddr,
    /// Mesh API address.
    pub mesh_api: SocketAddr,
    /// Probes and metrics address.
    pub metrics: SocketAddr,
    /// Clock.
    pub clock: Clock,
    /// Mesh API addresses (`HOST:PORT`) of peer replicas sharing the store, asked for the seed
    /// in recovery mode. Empty: a single Coordinator (recovered only with `nunki recover`).
    pub peers: Vec<String>,
}

impl Options {
    /// A single Coordinator on loopback with an in-memory store: every API on an ephemeral
    /// `127.0.0.1` port (read the bound addresses from [`Running`]), the system clock, no peers.
    /// For embedding (the demo, tests, benchmarks); change fields with struct update syntax.
    pub fn loopback(issuer: Arc<dyn Issuer>) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            issuer,
            store: StoreChoice::Memory,
            user_api: any,
            mesh_api: any,
            metrics: any,
            clock: nunki_atls::verify::system_clock(),
            peers: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("store", &self.store)
            .field("user_api", &self.user_api)
            .field("mesh_api", &self.mesh_api)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

/// A running Coordinator.
#[derive(Debug)]
pub struct Running {
    /// Bound user API address.
    pub user_api: SocketAddr,
    /// Bound mesh API address.
    pub mesh_api: SocketAddr,
    /// Bound metrics address.
    pub metrics: SocketAddr,
    /// The state machine.
    pub coordinator: Arc<Coordinator>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Running {
    /// Stops all servers and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Waits until any server stops (with its result), then stops the others.
    pub async fn wait(mut self) -> Result<(), String> {
        let tasks = std::mem::take(&mut self.tasks);
        if tasks.is_empty() {
            return Ok(());
        }
        let (res, _, rest) = futures_util::future::select_all(tasks).await;
        let _ = self.shutdown.send(true);
        for t in rest {
            let _ = t.await;
        }
        res.unwrap_or_else(|e| Err(e.to_string()))
    }
}

async fn stopper(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            break;
        }
    }
}

/// Binds with a deep accept backlog: a rollout starts many Initializers at once, and dropped
/// SYNs cost them a one-second retransmission each.
fn listen(a: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if a.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(a)?;
    socket.listen(4096)
}

/// Descriptors beyond the two APIs' connections: metrics scrapes, the state directory, peers.
const DESCRIPTOR_MARGIN: usize = 256;

/// Makes room for every connection both APIs may hold (see [`crate::fds`]); says what it did.
fn prepare_descriptors(probe: &TcpListener) {
    let want = (2 * crate::server::MAX_CONNECTIONS + DESCRIPTOR_MARGIN) as u64;
    let (p, errors) = crate::fds::prepare(want, probe);
    for e in errors {
        tracing::warn!(error = %e, "could not prepare file descriptors");
    }
    if p.limit != p.limit_before {
        tracing::info!(
            from = ?p.limit_before,
            to = ?p.limit,
            "raised the soft limit on open files"
        );
    }
    if p.limit.is_some_and(|l| l < want) {
        tracing::warn!(
            limit = ?p.limit,
            want,
            "the limit on open files is below what both APIs may hold; raise the hard limit (ulimit -Hn, LimitNOFILE=) or accepts will fail (EMFILE) and new connections wait"
        );
    }
    tracing::debug!(table = ?p.table, "descriptor table prepared");
}

/// Opens the store, binds all listeners and starts serving.
pub async fn start(opts: Options) -> Result<Running, String> {
    let store: Arc<dyn Store> = match &opts.store {
        StoreChoice::Dir(d) => Arc::new(DirStore::open(d).await.map_err(|e| e.to_string())?),
        StoreChoice::Memory => Arc::new(MemStore::default()),
        StoreChoice::Open(store) => Arc::clone(store),
    };
    let metrics = Arc::new(Metrics::default());
    let coord = Arc::new(
        Coordinator::open(History::new(store.clone()), opts.clock.clone(), metrics)
            .await
            .map_err(|e| e.to_string())?,
    );
    if !opts.peers.is_empty() {
        coord.set_seed_source(Arc::new(crate::ha::PeerSeeds::new(
            opts.issuer.clone(),
            opts.peers.clone(),
            opts.clock.clone(),
        )));
    }
    let resolver = Arc::new(
        AttestingCertResolver::new(opts.issuer.clone(), opts.clock.clone())
            .map_err(|e| e.to_string())?,
    );
    let bind = |a: SocketAddr, what: &'static str| async move {
        listen(a).map_err(|e| format!("cannot listen on {a} for the {what}: {e}"))
    };
    let user = bind(opts.user_api, "user API").await?;
    let mesh = bind(opts.mesh_api, "mesh API").await?;
    let metrics_l = bind(opts.metrics, "metrics").await?;
    let addr = |l: &TcpListener| l.local_addr().map_err(|e| e.to_string());
    let (user_api, mesh_api, metrics_addr) = (addr(&user)?, addr(&mesh)?, addr(&metrics_l)?);
    prepare_descriptors(&user);
    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(crate::server::serve_user_api(
        user,
        coord.clone(),
        resolver.clone(),
        stopper(rx.clone()),
    )));
    tasks.push(tokio::spawn(crate::server::serve_mesh_api(
        mesh,
        coord.clone(),
        resolver,
        stopper(rx.clone()),
    )));
    let follower = crate::ha::follow(coord.clone(), store, stopper(rx.clone()));
    tasks.push(tokio::spawn(async move {
        follower.await;
        Ok(())
    }));
    let router = crate::metrics::router(coord.clone());
    let stop = stopper(rx);
    tasks.push(tokio::spawn(async move {
        axum::serve(metrics_l, router)
            .with_graceful_shutdown(stop)
            .await
            .map_err(|e| e.to_string())
    }));
    tracing::info!(%user_api, %mesh_api, metrics = %metrics_addr, "Coordinator listening");
    Ok(Running {
        user_api,
        mesh_api,
        metrics: metrics_addr,
        coordinator: coord,
        shutdown: tx,
        tasks,
    })
}
