//! The `graven` binary: the server (`graven serve`) and its command-line client.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
