//! `graven check`: the tamper check (`graven::engine::check`), offline on a data folder
//! (`--data`, the server stopped) or online (`--online`: the running server checks a
//! snapshot of each ledger, the `CheckLedger` call).
//!
//! The first discrepancy of a ledger is reported (one line on stderr, naming the index or
//! table row) and the check moves on to the next ledger. One line per ledger on stdout
//! (JSON with `--json`). Exit codes follow graven-verify: 0 all good, 1 a discrepancy
//! found, 2 the check could not run (unreadable folder, a ledger in use by a running
//! server, bad arguments; online: no server, refused).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use graven::client::{Client, status_line};
use graven::engine::check::{CheckError, Outcome, Summary, check_ledger};
use graven::engine::files::{ledger_names, ledgers_dir};
use graven::pb;
use graven::progress::ProgressLine;
use graven_verify::Hash;
use serde_json::json;

/// `graven check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Data folder (offline).
    #[arg(long, env = "GRAVEN_DATA", default_value = "./graven-data")]
    pub data: PathBuf,
    #[command(flatten)]
    pub storage: super::StorageArg,
    /// Ask the running server at --server to check a snapshot of each ledger while it
    /// serves (needs the admin role), instead of reading --data with the server stopped.
    #[arg(long)]
    pub online: bool,
    /// Check only this ledger (repeat for several; default: every ledger).
    #[arg(long = "ledger")]
    pub ledgers: Vec<String>,
    /// Print one JSON object per ledger on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `graven check`; the exit code is 0, 1 or 2 (see the module documentation).
pub fn run(server: &str, args: &CheckArgs) -> ExitCode {
    if !args.online {
        return offline(args);
    }
    match super::runtime() {
        Ok(rt) => rt.block_on(online(server, args)),
        Err(e) => {
            eprintln!("graven check: {e}");
            ExitCode::from(2)
        }
    }
}

fn offline(args: &CheckArgs) -> ExitCode {
    let root = ledgers_dir(&args.data);
    let mut names = match ledger_names(&root) {
        Ok(names) => names,
        Err(e) => {
            eprintln!("graven check: cannot read {}: {e}", root.display());
            return ExitCode::from(2);
        }
    };
    if !args.ledgers.is_empty() {
        if let Some(missing) = args.ledgers.iter().find(|n| !names.contains(n)) {
            eprintln!(
                "graven check: ledger {} does not exist in {}",
                graven::error::Quote(missing),
                args.data.display()
            );
            return ExitCode::from(2);
        }
        names.retain(|n| args.ledgers.contains(n));
    }
    if names.is_empty() {
        eprintln!("graven check: no ledgers in {}", args.data.display());
    }
    let location = match args.storage.location() {
        Ok(location) => location,
        Err(e) => {
            eprintln!("graven check: {e}");
            return ExitCode::from(2);
        }
    };
    let mut results = Results::new(args.json);
    for name in &names {
        let mut line = ProgressLine::new();
        let outcome = check_ledger(
            &location,
            &root.join(name),
            name,
            &mut |what, done, total| {
                line.show(|| format!("checking {name}: {what} {done} of {total}"));
                Ok(())
            },
        );
        drop(line);
        if results.print(name, &outcome).is_err() {
            return ExitCode::from(2);
        }
    }
    results.exit_code()
}

/// Each ledger checked by the server itself, with the same output and exit codes as
/// offline.
async fn online(server: &str, args: &CheckArgs) -> ExitCode {
    let mut admin = match Client::connect(server).await {
        Ok(c) => c.admin,
        Err(e) => {
            eprintln!("graven check: {e}");
            return ExitCode::from(2);
        }
    };
    let names = if args.ledgers.is_empty() {
        match admin.list_ledgers(pb::ListLedgersRequest {}).await {
            Ok(r) => r.into_inner().ledgers.into_iter().map(|l| l.name).collect(),
            Err(s) => {
                eprintln!("graven check: listing ledgers: {}", status_line(&s));
                return ExitCode::from(2);
            }
        }
    } else {
        args.ledgers.clone()
    };
    if names.is_empty() {
        eprintln!("graven check: no ledgers on {server}");
    }
    let mut results = Results::new(args.json);
    for name in &names {
        let mut line = ProgressLine::new();
        let outcome = check_remote(&mut admin, name, &mut line).await;
        drop(line);
        if results.print(name, &outcome).is_err() {
            return ExitCode::from(2);
        }
    }
    results.exit_code()
}

/// Runs `CheckLedger` on one ledger, showing its progress.
async fn check_remote(
    admin: &mut pb::admin_client::AdminClient<graven::client::Conn>,
    name: &str,
    line: &mut ProgressLine,
) -> Outcome {
    use pb::check_ledger_event::Kind;
    let cannot = |s: tonic::Status| CheckError::CannotRun(status_line(&s));
    let request = pb::CheckLedgerRequest { name: name.into() };
    let mut events = admin
        .check_ledger(request)
        .await
        .map_err(cannot)?
        .into_inner();
    while let Some(event) = events.message().await.map_err(cannot)? {
        match event.kind {
            Some(Kind::Progress(p)) => {
                line.show(|| format!("checking {name}: {} {} of {}", p.phase, p.done, p.total));
            }
            Some(Kind::Result(r)) if r.ok => {
                let root = <[u8; 32]>::try_from(r.root.as_slice()).map_err(|_| {
                    CheckError::CannotRun("the server's result has no 32-byte root".into())
                })?;
                return Ok(Summary {
                    entries: r.entries,
                    documents: r.documents,
                    live: r.live,
                    size: r.size,
                    root: Hash(root),
                });
            }
            Some(Kind::Result(r)) => return Err(CheckError::Damaged(r.problem)),
            None => {}
        }
    }
    Err(CheckError::CannotRun(
        "the server ended the check without a result".into(),
    ))
}

/// The output of a run: a line per ledger on stdout, problems on stderr, and the exit
/// code of the worst outcome.
struct Results {
    json: bool,
    any_bad: bool,
    any_cannot: bool,
    stdout: std::io::StdoutLock<'static>,
}

impl Results {
    fn new(json: bool) -> Results {
        Results {
            json,
            any_bad: false,
            any_cannot: false,
            stdout: std::io::stdout().lock(),
        }
    }

    fn print(&mut self, name: &str, outcome: &Outcome) -> std::io::Result<()> {
        let line = match (outcome, self.json) {
            (Ok(s), true) => json!({
                "ledger": name, "status": "ok", "entries": s.entries, "documents": s.documents,
                "live": s.live, "size": s.size, "root": s.root.to_base64(),
            })
            .to_string(),
            (Ok(s), false) => format!(
                "{name}: ok: {} entries, {} documents ({} live), checkpoint size {}, root {}",
                s.entries,
                s.documents,
                s.live,
                s.size,
                s.root.to_base64()
            ),
            (Err(CheckError::Damaged(msg)), true) => {
                json!({"ledger": name, "status": "bad", "problem": msg}).to_string()
            }
            (Err(CheckError::CannotRun(msg)), true) => {
                json!({"ledger": name, "status": "error", "problem": msg}).to_string()
            }
            (Err(CheckError::Damaged(_)), false) => format!("{name}: FAILED"),
            (Err(CheckError::CannotRun(_)), false) => format!("{name}: not checked"),
        };
        match outcome {
            Ok(_) => {}
            Err(CheckError::Damaged(msg)) => {
                self.any_bad = true;
                eprintln!("ledger {name}: {msg}");
            }
            Err(CheckError::CannotRun(msg)) => {
                self.any_cannot = true;
                eprintln!("ledger {name}: cannot check: {msg}");
            }
        }
        writeln!(self.stdout, "{line}")?;
        self.stdout.flush()
    }

    fn exit_code(&self) -> ExitCode {
        if self.any_bad {
            ExitCode::from(1)
        } else if self.any_cannot {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }
    }
}
