//! `nunki`: the command-line tool of Nunki.

mod report;
mod sim;

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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(cmd) => report::run(cmd),
        Command::Sim(cmd) => sim::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
