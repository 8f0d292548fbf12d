//! The `nunki-coordinator` command line (flags, wiring, error printing), shared by the
//! `nunki-coordinator` binary and the `nunki` multi-call entry the demo uses.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::run::{Options, StoreChoice, start};
use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use nunki_atls::{Issuer, PlatformChoice, open_issuer, open_tdx_issuer};
use nunki_attestation::sim::default_sim_dir;
use nunki_manifest::{HostData, Measurement};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Platform {
    /// The simulated SEV-SNP platform (no TEE; proves the protocol, not isolation).
    Simulated,
    /// AMD SEV-SNP hardware.
    Snp,
    /// Intel TDX hardware (configfs-tsm; needs a build with the `hw` feature).
    Tdx,
}

/// Where the manifest history lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// Files under --state-dir (one Coordinator; put it on a persistent volume).
    Dir,
    /// ConfigMaps in the Coordinator's namespace, through the Kubernetes API with the pod's
    /// service account (in-cluster configuration). Several replicas can share it.
    Kubernetes,
}

/// The Nunki Coordinator: attests itself to users, verifies pods and issues their mesh
/// certificates.
#[derive(Debug, Parser)]
#[command(name = "nunki-coordinator", version, about)]
struct Args {
    /// Attestation platform.
    #[arg(long, value_enum, env = "NUNKI_PLATFORM")]
    platform: Platform,
    /// Where the manifest history lives: `dir` (files under --state-dir) or `kubernetes`
    /// (ConfigMaps named nunki-store.* in the pod's namespace, via the in-cluster API
    /// configuration; the service account needs get, list, watch, create and update on
    /// configmaps there, see deploy/coordinator.yaml).
    #[arg(long, value_enum, env = "NUNKI_STORE", default_value = "dir")]
    store: StoreKind,
    /// With --store kubernetes: the namespace of the store's ConfigMaps (default: the pod's
    /// own, from its service-account namespace file).
    #[arg(long, env = "NUNKI_STORE_NAMESPACE", value_name = "NAMESPACE")]
    store_namespace: Option<String>,
    /// Mesh API addresses (HOST:PORT, comma-separated) of the other replicas sharing the
    /// store, e.g. a headless Service `coordinator-peers:7777` that resolves to every replica.
    /// A replica without the seed (restarted) gets it from a ready peer over mutual aTLS, so
    /// `nunki recover` is only needed when no replica is left.
    #[arg(
        long,
        env = "NUNKI_PEERS",
        value_name = "HOST:PORT,...",
        value_delimiter = ','
    )]
    peers: Vec<String>,
    /// With --store dir: directory for the manifest history.
    #[arg(
        long,
        env = "NUNKI_STATE_DIR",
        default_value = "/var/lib/nunki-coordinator"
    )]
    state_dir: PathBuf,
    /// User API address (SetManifest, GetManifests).
    #[arg(long, env = "NUNKI_USER_API", default_value = "0.0.0.0:1313")]
    user_api: SocketAddr,
    /// Mesh API address (NewMeshCert).
    #[arg(long, env = "NUNKI_MESH_API", default_value = "0.0.0.0:7777")]
    mesh_api: SocketAddr,
    /// Probes and metrics: /healthz, /readyz, /metrics.
    #[arg(long, env = "NUNKI_METRICS", default_value = "0.0.0.0:9102")]
    metrics: SocketAddr,
    /// Simulated platform only: the Coordinator's HOST_DATA, i.e. the policy hash of its own
    /// pod (64 hex). On real hardware the host sets it when launching the VM.
    #[arg(long, env = "NUNKI_SIM_HOST_DATA", value_name = "HEX")]
    sim_host_data: Option<HostData>,
    /// Simulated platform only: its directory (default: $NUNKI_SIM_DIR, else
    /// $XDG_DATA_HOME/nunki/sim, else ~/.local/share/nunki/sim).
    #[arg(long, env = "NUNKI_SIM_DIR")]
    sim_dir: Option<PathBuf>,
    /// Simulated platform only: a launch measurement other than the platform's default.
    #[arg(long, env = "NUNKI_SIM_MEASUREMENT", value_name = "HEX")]
    sim_measurement: Option<Measurement>,
    /// TDX only: a PCCS to fetch collateral from instead of Intel PCS.
    #[arg(long, env = "NUNKI_PCCS_URL", value_name = "URL")]
    pccs_url: Option<String>,
}

fn issuer(args: &Args) -> Result<Arc<dyn Issuer>> {
    let choice = match args.platform {
        Platform::Simulated => {
            let Some(host_data) = args.sim_host_data else {
                bail!(
                    "--platform simulated needs --sim-host-data (or NUNKI_SIM_HOST_DATA): the Coordinator's policy hash from the manifest's coordinator entry"
                );
            };
            let dir = match &args.sim_dir {
                Some(d) => d.clone(),
                None => default_sim_dir()?,
            };
            PlatformChoice::Simulated {
                dir,
                host_data,
                measurement: args.sim_measurement,
            }
        }
        Platform::Snp => PlatformChoice::Snp,
        Platform::Tdx => PlatformChoice::Tdx,
    };
    open_issuer(choice).context("--platform")
}

/// The store the flags select; the Kubernetes store is set up here, before anything else, so
/// a pod without API access fails at once with the reason.
fn store_choice(args: &Args) -> Result<StoreChoice> {
    Ok(match args.store {
        StoreKind::Dir => {
            if args.store_namespace.is_some() {
                bail!("--store-namespace only applies to --store kubernetes");
            }
            StoreChoice::Dir(args.state_dir.clone())
        }
        StoreKind::Kubernetes => {
            let store = nunki_kube::KubeStore::in_cluster(args.store_namespace.as_deref())
                .context("--store kubernetes")?;
            tracing::info!(
                namespace = store.namespace(),
                "history in Kubernetes ConfigMaps"
            );
            StoreChoice::Open(Arc::new(store))
        }
    })
}

/// How often the Coordinator refetches TDX collateral (Intel reissues it monthly; CRLs daily).
const TDX_COLLATERAL_REFRESH: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

async fn run(args: Args) -> Result<()> {
    let store = store_choice(&args)?;
    let issuer = match args.platform {
        Platform::Tdx => {
            let tdx = open_tdx_issuer().context("--platform tdx")?;
            nunki_daemon::attach_tdx_collateral(&tdx, args.pccs_url.as_deref())
                .await
                .map_err(anyhow::Error::msg)?;
            let refresh = tdx.clone();
            let pccs = args.pccs_url.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(TDX_COLLATERAL_REFRESH).await;
                    if let Err(e) =
                        nunki_daemon::attach_tdx_collateral(&refresh, pccs.as_deref()).await
                    {
                        // Keep the old collateral: verifiers refuse it once it is stale.
                        tracing::warn!(error = %format!("{e:#}"), "refreshing TDX collateral failed");
                    }
                }
            });
            Arc::new(tdx) as Arc<dyn Issuer>
        }
        _ => issuer(&args)?,
    };
    let running = start(Options {
        issuer,
        store,
        user_api: args.user_api,
        mesh_api: args.mesh_api,
        metrics: args.metrics,
        clock: nunki_atls::verify::system_clock(),
        peers: args.peers.clone(),
    })
    .await
    .map_err(anyhow::Error::msg)?;
    eprintln!(
        "nunki-coordinator: user API {}, mesh API {}, metrics {}",
        running.user_api, running.mesh_api, running.metrics
    );
    tokio::select! {
        r = running_wait(running) => r,
        _ = tokio::signal::ctrl_c() => { eprintln!("nunki-coordinator: shutting down"); Ok(()) }
    }
}

async fn running_wait(r: crate::run::Running) -> Result<()> {
    r.wait().await.map_err(anyhow::Error::msg)
}

/// Runs the command with `args` (the first item is the program name) and returns its exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    nunki_daemon::main_with_args::<Args, _, _, _, _, _>(args, run)
}
