//! `nunki`: the command-line tool of Nunki.

mod builtin_images;
mod coordinator_client;
mod demo;
mod failure;
mod files;
mod generate;
mod images;
mod policies;
mod policy_cmd;
mod recover;
mod report;
mod report_tdx;
mod set;
mod sim;
#[cfg(test)]
mod testutil;
mod verify;

use std::process::ExitCode;

/// The allocator of the Coordinator binary too (`nunki` can run it as a multi-call binary, and
/// `nunki demo` hosts services): see BENCHMARKS.md.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Give a restarted Coordinator (recovery mode) its seed back: decrypts your seed share with
    /// the seed-share owner key and sends it over attested TLS, authenticated by that key. The
    /// root CA, history and workload secrets stay the same; the mesh CA is new.
    ///
    /// Exit status: 0 recovered, 1 the Coordinator failed attestation, refused the recovery or
    /// was not reachable in time, 2 a usage or input error.
    Recover(recover::RecoverArgs),
    /// Rewrite Kubernetes resources for Nunki (Initializer, runtime class), generate a Kata
    /// agent policy per pod template and create or update the manifest.
    ///
    /// Exit status: 0 generated, 2 an input error (YAML, missing image info, ...).
    Generate(Box<generate::GenerateArgs>),
    /// Run the whole workflow on this machine: the simulated platform stands in for AMD
    /// hardware and a local runner for Kubernetes + Kata. Shows two attacks being refused.
    ///
    /// Exit status: 0 every step behaved as expected, 1 a step did not, 2 a usage error.
    Demo(demo::DemoArgs),
    /// Kata agent policies: evaluate agent requests the way the agent does.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCmd),
    /// Image information for `generate`.
    #[command(subcommand)]
    Images(images::ImagesCmd),
}

/// Entry points of the processes the demo's local runner starts. They are the Coordinator's and
/// Initializer's own command lines, run from this executable so that `cargo run -- demo` needs
/// nothing else built.
fn multi_call(args: &[std::ffi::OsString]) -> Option<ExitCode> {
    let which = args.get(1)?.to_str()?;
    if !which.starts_with("run-") {
        return None;
    }
    exit_with_runner();
    let rest = args.get(2..).unwrap_or_default();
    let named =
        |name: &str| std::iter::once(std::ffi::OsString::from(name)).chain(rest.iter().cloned());
    match which {
        "run-coordinator" => Some(nunki_coordinator::cli::main_with_args(named(
            "nunki-coordinator",
        ))),
        "run-initializer" => Some(nunki_initializer::cli::main_with_args(named(
            "nunki-initializer",
        ))),
        "run-demo-service" => Some(demo::service_main(named("nunki-demo-service"))),
        _ => None,
    }
}

/// A child of the demo's local runner ends when the runner does, however the runner ended
/// (Ctrl-C, a kill, a crash): the runner names itself in `NUNKI_RUNNER_PARENT`, and a watcher
/// thread exits once this process has been handed to another parent.
fn exit_with_runner() {
    let Some(parent) = std::env::var("NUNKI_RUNNER_PARENT")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return;
    };
    std::thread::spawn(move || {
        loop {
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(143);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = multi_call(&argv) {
        return code;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: `kubectl logs` and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
        Command::Recover(args) => recover::run(args),
        Command::Generate(args) => generate::run(*args),
        Command::Demo(args) => demo::run(args),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Images(cmd) => images::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
