//! How the Coordinator commands end: exit 0 when everything checked out, 1 when a check failed
//! or the Coordinator refused (attestation, gRPC error, history mismatch, unreachable), 2 for a
//! usage or input error (unreadable or invalid local files, missing policy documents).

use std::fmt::Display;
use std::process::ExitCode;

/// Why a command stopped.
#[derive(Debug)]
pub enum Failure {
    /// Bad local input or environment: exit 2 (printed by `main` as `error: …`).
    Input(anyhow::Error),
    /// A check failed or the Coordinator refused or could not be reached: exit 1.
    Check(anyhow::Error),
}

/// Result of a step of a command.
pub type Outcome<T> = Result<T, Failure>;

/// Classifies an error as input or check failure.
pub trait ResultExt<T> {
    /// An input error (exit 2).
    fn input(self) -> Outcome<T>;
    /// A failed check (exit 1).
    fn check(self) -> Outcome<T>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn input(self) -> Outcome<T> {
        self.map_err(|e| Failure::Input(e.into()))
    }
    fn check(self) -> Outcome<T> {
        self.map_err(|e| Failure::Check(e.into()))
    }
}

/// An input error with this message.
pub fn input(msg: impl Display) -> Failure {
    Failure::Input(anyhow::Error::msg(msg.to_string()))
}

/// A failed check with this message.
pub fn check(msg: impl Display) -> Failure {
    Failure::Check(anyhow::Error::msg(msg.to_string()))
}

/// Turns an outcome into the process exit code: a failed check is printed here (exit 1), an
/// input error is handed to `main` (which prints it and exits 2).
pub fn finish(r: Outcome<()>) -> anyhow::Result<ExitCode> {
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(Failure::Check(e)) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::FAILURE)
        }
        Err(Failure::Input(e)) => Err(e),
    }
}
