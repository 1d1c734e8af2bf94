//! Restoring a ledger from a journal export (`graven import`), offline, into a data folder
//! no server is using. With the ledger's signing key this is a restore: the same entries,
//! tree, checkpoint and verifier key, so every checkpoint and proof handed out before still
//! verifies, and new writes continue the same tree.
//!
//! The export must be whole (from index 0) and its origin must be the key's name. Records
//! are read once, in order, and written as the sequencer would have written them (leaf rows
//! with their stored tree hashes and bodies, the document index, a table row for each
//! table named in the journal), in write transactions that need not be durable on their
//! own; the last one stores the export's signed checkpoint, after checking that it is
//! signed by the key and that its size and root are those of the entries, and is durable.
//! Then the full tamper check ([`super::check`]) runs on the new database before it is
//! moved into place, so a ledger that does not pass is never served. Until then it lives
//! in a `.importing-<name>` folder, which the server removes at start if an import was
//! interrupted.
//!
//! Not in an export, so not restored: idempotency keys (a retry of an earlier keyed
//! transaction is a new transaction), tables created without documents, dropped tables
//! (tables come back active) and the creation time (the import's).

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use graven_verify::export::{ExportReader, Record};
use graven_verify::{CompactRange, Entry, Operation, Signer, open_checkpoint};

use super::check::{self, CheckError, Summary};
use super::{create_store, files};
use crate::error::Quote;
use crate::model::check_ledger_name;
use crate::storage::{self, Location, NewRevision, Store, TableRow};

/// Write transactions of about this many bytes of leaf rows while importing.
const BATCH_BYTES: usize = 64 << 20;

/// What to restore, and where.
pub struct Restore<'a> {
    /// The data folder; no server may be using it.
    pub data: &'a Path,
    /// The ledger's key; its name must be the export's origin.
    pub signer: Signer,
    /// Name of the new ledger (default: the export's origin after its last '/').
    pub name: Option<String>,
    /// Deletion protection of the new ledger.
    pub deletion_protection: bool,
    /// Where its key spaces go (the key goes into `data` either way).
    pub storage: Location,
}

/// Progress of a restore: the phase, done and in all, every few thousand rows.
pub type Progress<'a> = dyn FnMut(&str, u64, u64) + 'a;

fn cannot<T>(msg: impl Into<String>) -> Result<T, CheckError> {
    Err(CheckError::CannotRun(msg.into()))
}

/// Restores the export `input` as a new ledger of `to.data`; returns its name and what the
/// check of the result found. [`CheckError::Damaged`]: the export does not verify
/// (malformed, tampered, or signed by another key); [`CheckError::CannotRun`]: bad
/// arguments, the folder in use, the ledger exists. Either way nothing is left behind.
pub fn restore(
    to: Restore<'_>,
    input: impl Read,
    progress: &mut Progress<'_>,
) -> Result<(String, Summary), CheckError> {
    let _lock = files::lock_data_dir(to.data).map_err(|e| CheckError::CannotRun(e.message))?;
    let reader = ExportReader::new(input).map_err(|e| CheckError::Damaged(e.to_string()))?;
    let header = reader.header().clone();
    if header.from != 0 {
        return cannot(format!(
            "the export begins at index {}: only a whole journal (graven export without \
             --from) can be imported",
            header.from
        ));
    }
    if to.signer.name() != header.origin {
        return cannot(format!(
            "--signing-key is a key for {}, the export's origin is {}",
            Quote(to.signer.name()),
            Quote(&header.origin)
        ));
    }
    let name = match to.name {
        Some(n) => n,
        None => header
            .origin
            .rsplit('/')
            .next()
            .unwrap_or(&header.origin)
            .to_owned(),
    };
    check_ledger_name(&name)
        .map_err(|e| CheckError::CannotRun(format!("{e} (name the new ledger with --ledger)")))?;
    let root = files::ledgers_dir(to.data);
    if root.join(&name).exists() {
        return cannot(format!(
            "ledger {} already exists in {}",
            Quote(&name),
            to.data.display()
        ));
    }
    let io =
        |path: &Path, e: std::io::Error| CheckError::CannotRun(format!("{}: {e}", path.display()));
    // Whether this import created the ledger's key spaces (and must remove them if it
    // fails).
    let mut created = false;
    let built = files::build_ledger_folder(&root, "importing", &name, io, |staging| {
        files::write_key_file(staging, &to.signer)
            .map_err(|e| io(&staging.join(super::KEY_FILE), e))?;
        let store = create_store(
            &to.storage,
            staging,
            &name,
            &to.signer,
            to.deletion_protection,
            storage::DEFAULT_CACHE_BYTES,
        )
        .map_err(|e| CheckError::CannotRun(e.message))?;
        created = true;
        fill(&store, reader, &to.signer, progress)?;
        check::check_snapshot(&store.read()?, &to.signer, &mut |what, done, total| {
            progress(&format!("checking {what}"), done, total);
            Ok(())
        })
    });
    let summary = match built {
        Ok(summary) => summary,
        Err(e) => {
            // The folder is gone; key spaces written to a database go too (best effort:
            // a ledger without its folder is never served, and a new import refuses them).
            if created && let Err(cleanup) = Store::destroy_at(&to.storage, &name) {
                tracing::warn!(ledger = %name, error = %cleanup, "removing a failed import");
            }
            return Err(e);
        }
    };
    Ok((name, summary))
}

fn write_failed(e: storage::Error) -> CheckError {
    CheckError::CannotRun(format!("writing the database: {e}"))
}

/// Writes every record of `reader` into `store`, then its signed checkpoint.
fn fill(
    store: &Store,
    mut reader: ExportReader<impl Read>,
    signer: &Signer,
    progress: &mut Progress<'_>,
) -> Result<(), CheckError> {
    let total = reader.header().to;
    let mut range = CompactRange::new();
    let mut record = Record::default();
    // Tables already given their row.
    let mut known_tables: HashSet<String> = HashSet::new();
    let mut more = true;
    while more {
        let mut w = store.write()?;
        // Durable with the last transaction: until then the folder is only staged.
        w.defer_durability();
        {
            let mut batch = 0usize;
            while batch < BATCH_BYTES {
                if !reader
                    .next_record(&mut record)
                    .map_err(|e| CheckError::Damaged(e.to_string()))?
                {
                    more = false;
                    break;
                }
                let index = record.index;
                let entry = Entry::decode(&record.entry).map_err(|e| {
                    CheckError::Damaged(format!("index {index}: the entry does not decode: {e}"))
                })?;
                let (table, id) = (entry.table.as_str(), entry.id.as_str());
                let current = w.current(table, id)?;
                let follows = match (entry.operation, current) {
                    (Operation::Insert, None) => entry.version == 0,
                    (Operation::Update | Operation::Delete, Some(c)) if c.live => {
                        entry.version == c.version + 1
                    }
                    _ => false,
                };
                if !follows {
                    return Err(CheckError::Damaged(format!(
                        "index {index}: {} of ({}, {}) at version {} does not follow the \
                         document's earlier revisions",
                        entry.operation,
                        Quote(table),
                        Quote(id),
                        entry.version
                    )));
                }
                if !known_tables.contains(table) {
                    w.put_table(
                        table,
                        TableRow {
                            created_micros: entry.commit_time_micros,
                            active: true,
                        },
                    );
                    known_tables.insert(table.to_owned());
                }
                let live = entry.operation != Operation::Delete;
                w.set_state(table, id, live.then_some(index))?;
                if let graven_verify::State::Root(root) = entry.state
                    && w.state_root()? != root
                {
                    return Err(CheckError::Damaged(format!(
                        "index {index}: the state root does not match the state after the \
                         transaction"
                    )));
                }
                w.append_revision(
                    &mut range,
                    &NewRevision {
                        entry: &record.entry,
                        body: record.body().unwrap_or_default(),
                        table,
                        id,
                        version: entry.version,
                        live,
                        previous: current,
                    },
                )?;
                batch += record.entry.len() + record.body.len();
                if index.is_multiple_of(4096) {
                    progress("journal entry", index, total);
                }
            }
        }
        w.commit().map_err(write_failed)?;
    }
    let note = reader
        .finish()
        .map_err(|e| CheckError::Damaged(e.to_string()))?;
    let head = open_checkpoint(note.as_bytes(), &[signer.verifier()])
        .map_err(|e| {
            CheckError::Damaged(format!(
                "its checkpoint does not verify with --signing-key: {e}"
            ))
        })?
        .checkpoint;
    if head.origin != signer.name() || head.size != range.size() || head.root != range.root() {
        return Err(CheckError::Damaged(format!(
            "its checkpoint (size {}, root {}) is not the tree of its entries (size {}, root {})",
            head.size,
            head.root.to_base64(),
            range.size(),
            range.root().to_base64()
        )));
    }
    let mut w = store.write()?;
    w.put_checkpoint(&note);
    w.commit().map_err(write_failed)?;
    Ok(())
}
