//! The `graven` binary: the server (`graven serve`) and its command-line client.

use std::process::ExitCode;

use clap::Parser as _;
use graven::cli::{Cli, Command};
use graven::server;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The offline check and the import need neither a server nor a runtime.
    match &cli.command {
        Command::Check(args) if !args.online => return graven::check::run(args),
        Command::Import(args) => return graven::import::run(args),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("graven: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Check(args) = &cli.command {
        return runtime.block_on(graven::check::run_online(&cli.server, args));
    }
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                tracing_subscriber::fmt()
                    .with_env_filter(
                        EnvFilter::try_from_env("GRAVEN_LOG")
                            .unwrap_or_else(|_| EnvFilter::new("info")),
                    )
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .init();
                let auth = match &args.auth {
                    Some(path) => Some(std::sync::Arc::new(
                        graven::auth::Auth::load(path).map_err(anyhow::Error::msg)?,
                    )),
                    None => None,
                };
                server::serve(
                    args.config(),
                    args.listen,
                    auth,
                    args.tls()?,
                    server::shutdown_signal(),
                )
                .await
            }
            command => {
                let mut stdout = std::io::stdout().lock();
                graven::cli::run_client(&cli.server, command, &mut stdout).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`graven history ... | head`) is not an error.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("graven: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
