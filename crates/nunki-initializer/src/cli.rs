//! The `nunki-initializer` command line (flags, platform, exit code), shared by the
//! `nunki-initializer` binary and the `nunki` multi-call entry the demo uses.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use nunki_atls::{Issuer, PlatformChoice, open_issuer, open_tdx_issuer};
use nunki_attestation::sim::default_sim_dir;
use nunki_manifest::{HostData, Measurement};

/// Environment variable (tests only): milliseconds to pause after each step of publishing the
/// files, so that tests can kill the process in the middle of it.
#[doc(hidden)]
pub const STEP_PAUSE_ENV: &str = "NUNKI_INITIALIZER_TEST_STEP_PAUSE_MS";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Platform {
    /// The simulated SEV-SNP platform (no TEE; proves the protocol, not isolation).
    Simulated,
    /// AMD SEV-SNP hardware (configfs-tsm).
    Snp,
    /// Intel TDX hardware (configfs-tsm; needs a build with the `hw` feature).
    Tdx,
}

/// Obtains this pod's mesh certificate from the Coordinator and writes mesh-ca.pem,
/// certChain.pem, key.pem and coordinator-root-ca.pem.
#[derive(Debug, Parser)]
#[command(name = "nunki-initializer", version, about)]
struct Args {
    /// The Coordinator's mesh API: host or host:port (default port 7777).
    #[arg(long, env = "COORDINATOR_HOST", default_value = "coordinator")]
    coordinator: String,
    /// Where to write the files (published atomically: see the crate documentation).
    #[arg(long, env = "NUNKI_TLS_DIR", default_value = "/tls-config")]
    out: PathBuf,
    /// The Coordinator's root CA (PEM, as printed by `nunki set`): the reply must chain to
    /// this CA, otherwise it is refused and the request retried.
    #[arg(long, env = "NUNKI_COORDINATOR_ROOT", value_name = "FILE")]
    coordinator_root: Option<PathBuf>,
    /// Attestation platform.
    #[arg(long, value_enum, env = "NUNKI_PLATFORM", default_value = "snp")]
    platform: Platform,
    /// Simulated platform only: this pod's HOST_DATA (its policy hash, 64 hex).
    #[arg(long, env = "NUNKI_SIM_HOST_DATA", value_name = "HEX")]
    sim_host_data: Option<HostData>,
    /// Simulated platform only: its directory.
    #[arg(long, env = "NUNKI_SIM_DIR")]
    sim_dir: Option<PathBuf>,
    /// Simulated platform only: a launch measurement other than the platform's default.
    #[arg(long, env = "NUNKI_SIM_MEASUREMENT", value_name = "HEX")]
    sim_measurement: Option<Measurement>,
    /// TDX only: a PCCS to fetch collateral from instead of Intel PCS.
    #[arg(long, env = "NUNKI_PCCS_URL", value_name = "URL")]
    pccs_url: Option<String>,
}

fn issuer(a: &Args) -> Result<Arc<dyn Issuer>> {
    let choice = match a.platform {
        Platform::Snp => PlatformChoice::Snp,
        Platform::Tdx => PlatformChoice::Tdx,
        Platform::Simulated => {
            let Some(host_data) = a.sim_host_data else {
                bail!(
                    "--platform simulated needs --sim-host-data (NUNKI_SIM_HOST_DATA): the pod's policy hash"
                );
            };
            let dir = match &a.sim_dir {
                Some(d) => d.clone(),
                None => default_sim_dir()?,
            };
            PlatformChoice::Simulated {
                dir,
                host_data,
                measurement: a.sim_measurement,
            }
        }
    };
    open_issuer(choice).context("--platform")
}

async fn run(a: Args) -> Result<()> {
    let addr = crate::coordinator_addr(&a.coordinator)?;
    let pinned_root = a
        .coordinator_root
        .as_deref()
        .map(crate::read_pinned_root)
        .transpose()?;
    let issuer = match a.platform {
        Platform::Tdx => {
            let tdx = open_tdx_issuer().context("--platform tdx")?;
            nunki_daemon::attach_tdx_collateral(&tdx, a.pccs_url.as_deref())
                .await
                .map_err(anyhow::Error::msg)?;
            Arc::new(tdx) as Arc<dyn Issuer>
        }
        _ => issuer(&a)?,
    };
    let opts = crate::RequestOptions {
        pinned_root,
        ..crate::RequestOptions::default()
    };
    let files = crate::request(&addr, issuer, &opts).await?;
    // Test hook, not a user setting: a pause after every step of the write widens the
    // window in which tests kill the process, so kills land at every step.
    let pause = std::env::var(STEP_PAUSE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    crate::write_files_observed(&a.out, &files, &mut |_| {
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
        Ok(())
    })?;
    tracing::info!(dir = %a.out.display(), "wrote mesh-ca.pem, certChain.pem, key.pem, coordinator-root-ca.pem");
    Ok(())
}

/// Runs the command with `args` (the first item is the program name) and returns its exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    nunki_daemon::main_with_args::<Args, _, _, _, _, _>(args, run)
}
