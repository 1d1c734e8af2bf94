//! `graven import`: a ledger rebuilt from a journal export (`graven export`), offline, into
//! a data folder no server is using. With the ledger's signing key this is a restore: the
//! same entries, tree, checkpoint and verifier key, so every checkpoint and proof handed out
//! before still verifies, and new writes continue the same tree.
//!
//! The export must be whole (from index 0) and its origin must be the key's name. Records
//! are read once, in order, and written as the sequencer would have written them (leaf rows
//! with their stored tree hashes and bodies, the document index, a table row for each
//! table named in the journal), in write transactions that need not be durable on their
//! own; the last one stores the export's signed checkpoint, after checking that it is
//! signed by the key and that its size and root are those of the entries, and is durable.
//! Then the full `graven check` runs on the new database (`check::check_snapshot`) before
//! it is moved into place, so a ledger that does not pass is never served. Until then it
//! lives in a `.importing-<name>` folder, which the server removes at start if an import
//! was interrupted.
//!
//! Not in an export, so not restored: idempotency keys (a retry of an earlier keyed
//! transaction is a new transaction), tables created without documents, dropped tables
//! (tables come back active) and the creation time (the import's).
//!
//! Exit codes as graven check's: 0 imported, 1 the export does not verify (malformed,
//! tampered, or signed by another key), 2 the import could not run (bad arguments, the
//! folder in use, the ledger exists).

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use graven_verify::export::{ExportReader, Record};
use graven_verify::{CompactRange, Entry, Operation, Signer, open_checkpoint};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use crate::check::{self, Fail, ProgressLine, Res, Summary};
use crate::engine::{
    DB_FILE, KEY_FILE, create_private_file, initialize_database, lock_data_dir, sync_dir,
};
use crate::storage;

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
    /// Create the ledger with deletion protection off (it is on by default).
    #[arg(long)]
    pub deletion_protection_off: bool,
}

/// Write transactions of about this many bytes of leaf rows while importing.
const BATCH_BYTES: usize = 64 << 20;

/// Runs `graven import`; the exit code is 0, 1 or 2 (see the module documentation).
pub fn run(args: &ImportArgs) -> ExitCode {
    match import(args) {
        Ok((name, s)) => {
            let line = format!(
                "imported {name}: {} entries, {} documents ({} live), checkpoint size {}, root {}",
                s.entries,
                s.documents,
                s.live,
                s.size,
                s.root.to_base64()
            );
            if writeln!(std::io::stdout(), "{line}").is_err() {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(Fail::Bad(msg)) => {
            eprintln!("graven import: the export does not verify: {msg}");
            ExitCode::from(1)
        }
        Err(Fail::Cannot(msg)) => {
            eprintln!("graven import: {msg}");
            ExitCode::from(2)
        }
    }
}

fn cannot<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail::Cannot(msg.into()))
}

fn import(args: &ImportArgs) -> Res<(String, Summary)> {
    let _lock = lock_data_dir(&args.data).map_err(|e| Fail::Cannot(e.message))?;
    let key_text = fs::read_to_string(&args.signing_key)
        .map_err(|e| Fail::Cannot(format!("--signing-key {}: {e}", args.signing_key.display())))?;
    let signer = Signer::parse(&key_text)
        .map_err(|e| Fail::Cannot(format!("--signing-key {}: {e}", args.signing_key.display())))?;
    let input: Box<dyn Read> = if args.export == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            fs::File::open(&args.export)
                .map_err(|e| Fail::Cannot(format!("{}: {e}", args.export)))?,
        )
    };
    let reader = ExportReader::new(input).map_err(|e| Fail::Bad(e.to_string()))?;
    let header = reader.header().clone();
    if header.from != 0 {
        return cannot(format!(
            "the export begins at index {}: only a whole journal (graven export without \
             --from) can be imported",
            header.from
        ));
    }
    if signer.name() != header.origin {
        return cannot(format!(
            "--signing-key is a key for {:?}, the export's origin is {:?}",
            signer.name(),
            header.origin
        ));
    }
    let name = match &args.ledger {
        Some(n) => n.clone(),
        None => header
            .origin
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    crate::model::check_ledger_name(&name)
        .map_err(|e| Fail::Cannot(format!("{e} (name the new ledger with --ledger)")))?;
    let root = args.data.join("ledgers");
    if root.join(&name).exists() {
        return cannot(format!(
            "ledger {name:?} already exists in {}",
            args.data.display()
        ));
    }
    let staging = root.join(format!(".importing-{name}"));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir(&staging)
        .map_err(|e| Fail::Cannot(format!("creating {}: {e}", staging.display())))?;
    let result = (|| -> Res<Summary> {
        let io = |what: &Path| {
            let what = what.display().to_string();
            move |e: std::io::Error| Fail::Cannot(format!("{what}: {e}"))
        };
        let key_path = staging.join(KEY_FILE);
        let mut key = create_private_file(&key_path).map_err(io(&key_path))?;
        key.write_all(format!("{}\n", signer.to_private_key()).as_bytes())
            .and_then(|()| key.sync_all())
            .map_err(io(&key_path))?;
        let db_path = staging.join(DB_FILE);
        initialize_database(
            &db_path,
            &header.origin,
            &signer,
            !args.deletion_protection_off,
            64 << 20,
        )
        .map_err(|e| Fail::Cannot(e.message))?;
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .open(&db_path)
            .map_err(|e| Fail::Cannot(format!("{}: {e}", db_path.display())))?;
        let mut line = ProgressLine::new("importing", &name);
        fill(&db, reader, &signer, &mut line)?;
        let summary =
            check::check_snapshot(&db.begin_read()?, &signer, &mut |what, done, total| {
                line.show(&format!("checking {what}"), done, total);
                Ok(())
            })?;
        drop(line);
        drop(db);
        sync_dir(&staging).map_err(io(&staging))?;
        fs::rename(&staging, root.join(&name)).map_err(io(&staging))?;
        sync_dir(&root).map_err(io(&root))?;
        Ok(summary)
    })();
    match result {
        Ok(summary) => Ok((name, summary)),
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn commit_failed(e: impl std::fmt::Display) -> Fail {
    Fail::Cannot(format!("writing the database: {e}"))
}

/// Writes every record of `reader` into `db`, then its signed checkpoint.
fn fill(
    db: &Database,
    mut reader: ExportReader<impl Read>,
    signer: &Signer,
    line: &mut ProgressLine<'_>,
) -> Res<()> {
    let total = reader.header().to;
    let mut range = CompactRange::new();
    let mut record = Record::default();
    let mut buffers = storage::RowBuffers::default();
    // Tables already given their row.
    let mut known_tables: HashSet<String> = HashSet::new();
    let mut more = true;
    while more {
        let mut txn = db.begin_write()?;
        // Durable with the last transaction: until then the folder is only staged.
        txn.set_durability(Durability::None)
            .map_err(commit_failed)?;
        {
            let mut leaves = txn.open_table(storage::LEAVES)?;
            let mut docs = txn.open_table(storage::DOCS)?;
            let mut tables = txn.open_table(storage::TABLES)?;
            let mut batch = 0usize;
            while batch < BATCH_BYTES {
                if !reader
                    .next_record(&mut record)
                    .map_err(|e| Fail::Bad(e.to_string()))?
                {
                    more = false;
                    break;
                }
                let index = record.index;
                let entry = Entry::decode(&record.entry).map_err(|e| {
                    Fail::Bad(format!("index {index}: the entry does not decode: {e}"))
                })?;
                let (table, id) = (entry.table.as_str(), entry.id.as_str());
                let current = docs.get((table, id, storage::CURRENT))?.map(|v| v.value());
                let follows = match (entry.operation, current) {
                    (Operation::Insert, None) => entry.version == 0,
                    (Operation::Update | Operation::Delete, Some((v, _, true))) => {
                        entry.version == v + 1
                    }
                    _ => false,
                };
                if !follows {
                    return Err(Fail::Bad(format!(
                        "index {index}: {} of ({table:?}, {id:?}) at version {} does not \
                         follow the document's earlier revisions",
                        entry.operation, entry.version
                    )));
                }
                if !known_tables.contains(table) {
                    tables.insert(table, (entry.commit_time_micros, true))?;
                    known_tables.insert(table.to_owned());
                }
                storage::append_revision(
                    &mut leaves,
                    &mut docs,
                    &mut range,
                    &mut buffers,
                    &storage::Revision {
                        entry: &record.entry,
                        body: record.body().unwrap_or_default(),
                        table,
                        id,
                        version: entry.version,
                        live: entry.operation != Operation::Delete,
                        previous: current,
                    },
                )?;
                batch += record.entry.len() + record.body.len();
                if index.is_multiple_of(4096) {
                    line.show("journal entry", index, total);
                }
            }
        }
        txn.commit().map_err(commit_failed)?;
    }
    let note = reader.finish().map_err(|e| Fail::Bad(e.to_string()))?;
    let head = open_checkpoint(note.as_bytes(), &[signer.verifier()])
        .map_err(|e| {
            Fail::Bad(format!(
                "its checkpoint does not verify with --signing-key: {e}"
            ))
        })?
        .checkpoint;
    if head.origin != signer.name() || head.size != range.size() || head.root != range.root() {
        return Err(Fail::Bad(format!(
            "its checkpoint (size {}, root {}) is not the tree of its entries (size {}, root {})",
            head.size,
            head.root.to_base64(),
            range.size(),
            range.root().to_base64()
        )));
    }
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(storage::META)?;
        meta.insert(storage::META_CHECKPOINT, note.as_bytes())?;
    }
    txn.commit().map_err(commit_failed)?;
    Ok(())
}
