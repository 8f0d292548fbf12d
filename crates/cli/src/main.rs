//! `nunki`: the command-line tool of Nunki.

mod coordinator_client;
mod failure;
mod files;
mod policies;
mod report;
mod set;
mod sim;
#[cfg(test)]
mod testutil;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Confidential Kubernetes deployments you can prove. Attestation tools for AMD SEV-SNP and the
/// simulated platform.
#[derive(Debug, Parser)]
#[command(name = "nunki", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and verify SEV-SNP attestation reports.
    #[command(subcommand)]
    Report(report::ReportCmd),
    /// The simulated SEV-SNP platform (a software stand-in for AMD hardware).
    #[command(subcommand)]
    Sim(sim::SimCmd),
    /// Attest the Coordinator against a manifest and set that manifest, with the policy
    /// documents it names. Writes coordinator-root.pem and mesh-root.pem.
    ///
    /// Exit status: 0 set, 1 the Coordinator failed attestation, refused the manifest or was not
    /// reachable in time, 2 a usage or input error (invalid manifest, missing policy documents).
    Set(Box<set::SetArgs>),
    /// Attest the Coordinator, fetch and check its manifest history (hash chain, policies) and
    /// write it out with the CA certificates.
    ///
    /// Exit status: 0 verified, 1 a check failed (attestation, history, manifest mismatch) or the
    /// Coordinator was not reachable in time, 2 a usage or input error.
    Verify(verify::VerifyArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // nunki_atls logs failed attestations at warn; the commands print them anyway.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,nunki_atls=error")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(cmd) => report::run(cmd),
        Command::Sim(cmd) => sim::run(cmd),
        Command::Set(args) => set::run(*args),
        Command::Verify(args) => verify::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
