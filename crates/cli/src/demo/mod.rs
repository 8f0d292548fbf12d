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

/// Entry point of the built-in demo image (`nunki run-demo-service ...`).
pub fn service_main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match ServiceCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(service::run(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
