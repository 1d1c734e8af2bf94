//! `graven import`: a ledger restored from a whole journal export and its signing key
//! (`graven::engine::restore`). Exit codes as graven check's: 0 imported, 1 the export does
//! not verify (malformed, tampered, or signed by another key), 2 the import could not run
//! (bad arguments, the folder in use, the ledger exists).

use std::io::{Read, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use graven::engine::check::CheckError;
use graven::engine::restore::{Restore, restore};
use graven::progress::ProgressLine;
use graven_verify::Signer;

/// `graven import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export file (`graven export LEDGER --out FILE`), or `-` for standard input.
    pub export: String,
    /// The ledger's signing key (its `signing.key`); its name must be the export's origin.
    #[arg(long, value_name = "FILE")]
    pub signing_key: PathBuf,
    /// Name of the new ledger (default: the export's origin after its last '/').
    #[arg(long)]
    pub ledger: Option<String>,
    /// Data folder; no server may be using it.
    #[arg(long, env = "GRAVEN_DATA", default_value = "./graven-data")]
    pub data: PathBuf,
    #[command(flatten)]
    pub storage: super::StorageArg,
    /// Create the ledger with deletion protection off (it is on by default).
    #[arg(long)]
    pub deletion_protection_off: bool,
}

/// Runs `graven import`; the exit code is 0, 1 or 2 (see the module documentation).
pub fn run(args: &ImportArgs) -> ExitCode {
    match import(args) {
        Ok(line) => {
            if writeln!(std::io::stdout(), "{line}").is_err() {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(CheckError::Damaged(msg)) => {
            eprintln!("graven import: the export does not verify: {msg}");
            ExitCode::from(1)
        }
        Err(CheckError::CannotRun(msg)) => {
            eprintln!("graven import: {msg}");
            ExitCode::from(2)
        }
    }
}

fn import(args: &ImportArgs) -> Result<String, CheckError> {
    let key = &args.signing_key;
    let cannot = |e: &dyn std::fmt::Display| {
        CheckError::CannotRun(format!("--signing-key {}: {e}", key.display()))
    };
    let text = std::fs::read_to_string(key).map_err(|e| cannot(&e))?;
    let signer = Signer::parse(&text).map_err(|e| cannot(&e))?;
    let input: Box<dyn Read> = if args.export == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&args.export)
                .map_err(|e| CheckError::CannotRun(format!("{}: {e}", args.export)))?,
        )
    };
    let mut line = ProgressLine::new();
    let (name, s) = restore(
        Restore {
            data: &args.data,
            signer,
            name: args.ledger.clone(),
            deletion_protection: !args.deletion_protection_off,
            storage: args
                .storage
                .location()
                .map_err(|e| CheckError::CannotRun(e.to_string()))?,
        },
        input,
        &mut |what, done, total| line.show(|| format!("importing: {what} {done} of {total}")),
    )?;
    drop(line);
    Ok(format!(
        "imported {name}: {} entries, {} documents ({} live), checkpoint size {}, root {}",
        s.entries,
        s.documents,
        s.live,
        s.size,
        s.root.to_base64()
    ))
}
