//! The `graven` command line: `serve`, and the client commands scripts rely on, one module
//! per command and one dispatch ([`main`]).
//!
//! Output is for scripts: receipts and documents as one JSON object per line, checkpoints,
//! keys and proofs as the exact text `graven-verify` reads, entries as raw bytes. Errors
//! print one line on stderr and exit 1; usage errors exit 2; `check` and `import` have
//! exit codes of their own (0 good, 1 a discrepancy, 2 could not run). A closed pipe
//! (`graven history ... | head`) is not an error.

mod check;
mod export;
mod import;
mod ledger;
mod output;
mod proof;
mod query;
mod read;
mod serve;
mod table;
mod tail;
mod token;
mod transact;
mod write;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graven::client::Client;

/// graven: a verifiable ledger database.
#[derive(Debug, Parser)]
#[command(name = "graven", version, about, long_about = None)]
pub struct Cli {
    /// Server address for client commands.
    #[arg(
        long,
        global = true,
        env = "GRAVEN_SERVER",
        default_value = "http://127.0.0.1:7420"
    )]
    pub server: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    #[command(flatten)]
    Client(ClientCommand),
    /// Check ledgers for tampering or damage: every entry, tree hash, body and index row
    /// against the signed checkpoint. Offline on a data folder (the server stopped), or
    /// with --online by the running server on a snapshot. Exits 0 when all is well, 1 on a
    /// discrepancy, 2 when it cannot run.
    Check(check::CheckArgs),
    /// Rebuild a ledger from a whole journal export and its signing key, offline (no
    /// server may be using the data folder): a restore, with the same tree and checkpoint.
    /// Exits 0 when imported, 1 when the export does not verify, 2 when it cannot run.
    Import(import::ImportArgs),
    /// Make a bearer token for a principal: prints the token on stdout (give it to the
    /// client, which reads it from GRAVEN_TOKEN or the file named by GRAVEN_TOKEN_FILE)
    /// and, on stderr, the entry for `graven serve --auth FILE`, which stores only its
    /// SHA-256.
    Token(token::TokenArgs),
}

/// The commands that talk to a running server.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create, list, describe, update or delete ledgers.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Create, list or drop tables.
    #[command(subcommand)]
    Table(table::TableCommand),
    /// Insert a document; prints the receipt.
    Insert(write::InsertArgs),
    /// Replace a document; prints the receipt.
    Update(write::UpdateArgs),
    /// Delete a document; prints the receipt.
    Delete(write::DeleteArgs),
    /// Run several operations atomically, from a JSON file (`-` for stdin); prints the
    /// receipt. The file: {"operations": [{"insert": {"table": "t", "id": "1",
    /// "document": {...}}}, {"update": {..., "expect_version": 0}}, {"delete": {...}},
    /// {"check": {"table": "t", "id": "1", "version": 3 | "exists": true |
    /// "not_exists": true}}], "idempotency_key": "optional"}. Unknown or mistyped fields
    /// are refused.
    Transact(transact::TransactArgs),
    /// Print a document: {"id", "version", "index", "document"}.
    Get(read::GetArgs),
    /// Print every revision of a document, one JSON object per line, oldest first.
    History(read::HistoryArgs),
    /// Print a table's live documents, one JSON object per line, by id.
    Scan(read::ScanArgs),
    /// Run PartiQL statements (SELECT, INSERT, UPDATE, DELETE, FROM ... SET, CREATE /
    /// DROP TABLE and INDEX, EXPLAIN; docs/QUERY.md) as one transaction: prints one JSON
    /// value per result row (for writes, {"documentId": ...} per document written).
    Query(query::QueryArgs),
    /// Print the latest signed checkpoint (or one of an earlier size), verbatim.
    Checkpoint(proof::CheckpointArgs),
    /// Print the ledger's verifier key (vkey).
    Key(proof::KeyArgs),
    /// Write the raw entry bytes (the leaf data) at a journal index to stdout.
    Entry(proof::EntryArgs),
    /// Print proofs in the text forms graven-verify checks.
    #[command(subcommand)]
    Proof(proof::ProofCommand),
    /// Follow the change stream: one JSON object per line (revisions, checkpoints), in
    /// journal order, until interrupted. Pipe it to `graven-verify stream` to verify it.
    Tail(tail::TailArgs),
    /// Write a self-contained journal export (entries, bodies, the signed checkpoint of
    /// its end) for `graven-verify audit`. Streams in constant memory; written to a
    /// temporary name and renamed into place when complete.
    Export(export::ExportArgs),
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(&cli.server, &args),
        Command::Import(args) => import::run(&args),
        Command::Token(args) => finish(token::run(&args, &mut std::io::stdout().lock())),
        Command::Serve(args) => finish(runtime().and_then(|rt| rt.block_on(serve::run(args)))),
        Command::Client(command) => finish(runtime().and_then(|rt| {
            rt.block_on(run_client(
                &cli.server,
                command,
                &mut std::io::stdout().lock(),
            ))
        })),
    }
}

/// `--storage URL`: where the ledgers are kept.
#[derive(Debug, clap::Args)]
pub struct StorageArg {
    /// The PostgreSQL database that holds the ledgers (`postgresql://USER@HOST:PORT/DB`;
    /// give a password through GRAVEN_STORAGE, never on a command line). TLS as libpq:
    /// `?sslmode=verify-full&sslrootcert=CA.pem` (also disable, prefer (the default),
    /// require, verify-ca; `sslcert`, `sslkey` for a client certificate). Without it: redb
    /// files in the data folder. With it, the data folder holds the ledgers' signing keys.
    #[arg(
        long = "storage",
        env = "GRAVEN_STORAGE",
        value_name = "URL",
        hide_env_values = true
    )]
    url: Option<String>,
}

impl StorageArg {
    /// The location these options name; a URL that cannot be used (a setting it
    /// cannot have, a CA file that cannot be read) is an error naming the setting.
    pub fn location(&self) -> anyhow::Result<graven::storage::Location> {
        match &self.url {
            Some(url) => {
                graven::storage::postgres::PostgresBackend::check_url(url)?;
                Ok(graven::storage::Location::Postgres(url.clone()))
            }
            None => Ok(graven::storage::Location::Embedded),
        }
    }
}

/// A multi-threaded tokio runtime.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))
}

/// The exit code of a command that succeeds or fails.
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`graven history ... | head`) is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("graven: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client command against `server`, writing its output to `out`.
async fn run_client(
    server: &str,
    command: ClientCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut c = Client::connect(server).await?;
    match command {
        ClientCommand::Ledger(cmd) => ledger::run(&mut c, cmd, out).await?,
        ClientCommand::Table(cmd) => table::run(&mut c, cmd, out).await?,
        ClientCommand::Insert(args) => write::insert(&mut c, args, out).await?,
        ClientCommand::Update(args) => write::update(&mut c, args, out).await?,
        ClientCommand::Delete(args) => write::delete(&mut c, args, out).await?,
        ClientCommand::Transact(args) => transact::run(&mut c, args, out).await?,
        ClientCommand::Get(args) => read::get(&mut c, args, out).await?,
        ClientCommand::History(args) => read::history(&mut c, args, out).await?,
        ClientCommand::Scan(args) => read::scan(&mut c, args, out).await?,
        ClientCommand::Query(args) => query::run(&mut c, args, out).await?,
        ClientCommand::Checkpoint(args) => proof::checkpoint(&mut c, args, out).await?,
        ClientCommand::Key(args) => proof::key(&mut c, args, out).await?,
        ClientCommand::Entry(args) => proof::entry(&mut c, args, out).await?,
        ClientCommand::Proof(cmd) => proof::run(&mut c, cmd, out).await?,
        ClientCommand::Tail(args) => tail::run(&mut c, args, out).await?,
        ClientCommand::Export(args) => export::run(&mut c, args).await?,
    }
    out.flush()?;
    Ok(())
}
