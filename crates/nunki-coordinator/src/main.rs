//! `nunki-coordinator`: the binary; everything lives in the library's `cli` module.

/// mimalloc instead of glibc malloc: under load (thousands of TLS connections) glibc's arena
/// locks and free-list work were 15-18 % of the Coordinator's CPU time (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nunki_coordinator::cli::main_with_args(std::env::args_os())
}
