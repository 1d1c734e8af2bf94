//! The `graven` binary: the server (`graven serve`) and its command-line client.

mod cli;

// glibc's malloc was a tenth of the server's CPU under queries (perf, BENCHMARKS.md);
// mimalloc's thread-local free lists cost less for the many small JSON values a
// statement makes and drops.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
