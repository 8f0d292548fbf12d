//! `nunki demo`: the whole workflow on one machine, with the simulated platform standing in for
//! AMD hardware and a local runner standing in for Kubernetes + Kata.

pub mod resources;
mod run;
pub mod service;

pub use run::{DemoArgs, run};

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "nunki-demo-service")]
struct ServiceCli {
    #[command(flatten)]
    args: service::ServiceArgs,
}

/// Entry point of the built-in demo image (`nunki run-demo-service ...`): logging, exit codes
/// and runtime as the other in-cluster binaries.
pub fn service_main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    nunki_daemon::main_with_args::<ServiceCli, _, _, _, _, _>(args, |cli| service::run(cli.args))
}
