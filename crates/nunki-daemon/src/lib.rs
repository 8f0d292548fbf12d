//! What the in-cluster binaries (`nunki-coordinator`, `nunki-initializer`) share: logging set-up,
//! argument parsing with clap's exit codes, the async runtime, and attaching TDX collateral to
//! this platform's evidence.

use std::ffi::OsString;
use std::fmt::Display;
use std::process::ExitCode;

/// Sets up logging, parses `args` (the first item is the program name), runs `run` on a
/// multi-threaded runtime and turns the outcome into the exit code: 0 on success (and for
/// `--help`/`--version`), 2 for a usage error or no runtime, 1 when `run` fails (its error
/// printed with its causes, `{:#}`).
pub fn main_with_args<A, I, T, F, Fut, E>(args: I, run: F) -> ExitCode
where
    A: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    // A host process (the `nunki` multi-call entry) may have installed a subscriber already.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: `kubectl logs` and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let args = match A::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Quotes once to learn this platform's FMSPC, fetches its collateral (Intel PCS or a PCCS,
/// through the on-disk cache) and attaches it to the issuer's evidence, so verifiers need no
/// network.
pub async fn attach_tdx_collateral(
    tdx: &nunki_atls::TdxIssuer,
    pccs: Option<&str>,
) -> Result<(), String> {
    let quote = tdx
        .quote(&nunki_manifest::ReportData([0; 64]))
        .map_err(|e| format!("--platform tdx: first quote: {e}"))?;
    let collateral = nunki_collateral::fetch_tdx_collateral(&quote, pccs)
        .await
        .map_err(|e| format!("--platform tdx: fetching collateral: {e}"))?;
    tdx.set_collateral(collateral.to_json());
    tracing::info!("attached TDX collateral to this platform's evidence");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Args {
        #[arg(long)]
        fail: bool,
    }

    async fn run(a: Args) -> Result<(), String> {
        if a.fail {
            Err("it failed".into())
        } else {
            Ok(())
        }
    }

    fn code(args: &[&str]) -> ExitCode {
        main_with_args::<Args, _, _, _, _, _>(args.iter().copied(), run)
    }

    #[test]
    fn exit_codes() {
        assert_eq!(code(&["prog"]), ExitCode::SUCCESS);
        assert_eq!(code(&["prog", "--help"]), ExitCode::SUCCESS);
        assert_eq!(code(&["prog", "--no-such-flag"]), ExitCode::from(2));
        assert_eq!(code(&["prog", "--fail"]), ExitCode::FAILURE);
    }
}
