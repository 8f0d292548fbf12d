//! `nunki-initializer`: the binary; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    nunki_initializer::cli::main_with_args(std::env::args_os())
}
