//! `graven check`: a tamper check of a data folder, offline (the server stopped) or online
//! (`--online`: the running server checks a snapshot, the `CheckLedger` call).
//!
//! The server's start-up check (`Ledger::open`) reads only the `O(log n)` stored hashes of
//! the tree's right edge and compares their root with the latest signed checkpoint. This
//! command reads everything, for each ledger (all of them, or those named):
//!
//! * `meta`: the storage format; the origin equals the name of `signing.key`; the stored
//!   latest checkpoint is signed by that key and carries that origin.
//! * `leaves`, in index order: indexes are dense from 0; each row decodes
//!   (`storage::decode_leaf`, which takes `1 + trailing_ones(index)` hashes); each entry
//!   decodes (`Entry::decode`); the stored leaf hash equals the hash of the entry, and every
//!   stored node hash equals what `CompactRange::append_stored` computes when the entry is
//!   folded in; version 0 exactly for inserts; transactions are consecutive leaves with
//!   positions `0..n-1` and ids increasing by one; commit times never decrease; a row holds
//!   a body exactly for an insert or update, and its SHA-256 is the entry's body hash.
//! * The recomputed size and root equal the signed checkpoint's.
//! * `docs` (walked in key order, entries read by index, so memory stays bounded): each
//!   row `(table, id, version or CURRENT) -> (version, index, live)` points at an entry with
//!   that table, id and version and the right live flag; a document's earlier revisions
//!   have rows of their versions, dense from 0, then its current-state row holds the next
//!   version; indexes follow journal order, and only the current revision may be a delete;
//!   the table has a `tables` row; there are as many rows as entries (so every entry has
//!   exactly one).
//!
//! Not checked: the `idempotency` receipts and the `tables` rows' own contents.
//!
//! Online, the same checks run inside the server over one redb read transaction: a
//! consistent snapshot, while writes go on. There `signing.key` is read from disk as
//! offline and must also be the key the server signs with. The online check sees the
//! database through the server's page cache, so bytes changed on disk under a running
//! server may go unseen until it restarts; the offline check reads the file.
//!
//! The first discrepancy of a ledger is reported (one line on stderr, naming the index or
//! table row) and the check moves on to the next ledger. Exit codes follow graven-verify:
//! 0 all good, 1 a discrepancy found, 2 the check could not run (unreadable folder, a
//! ledger in use by a running server, bad arguments; online: no server, refused).

use std::fs;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use graven_verify::{CompactRange, Entry, Hash, Operation, Signer, leaf_hash, open_checkpoint};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::engine::{DB_FILE, KEY_FILE, Ledger};
use crate::storage;

/// `graven check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Data folder (offline).
    #[arg(long, env = "GRAVEN_DATA", default_value = "./graven-data")]
    pub data: PathBuf,
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

/// Why a ledger did not pass.
#[derive(Debug)]
pub enum Fail {
    /// A discrepancy: the data does not match itself or its checkpoint (exit 1).
    Bad(String),
    /// The check could not run (exit 2).
    Cannot(String),
}

pub(crate) type Res<T> = std::result::Result<T, Fail>;

fn bad<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail::Bad(msg.into()))
}

impl From<redb::StorageError> for Fail {
    fn from(e: redb::StorageError) -> Fail {
        match e {
            redb::StorageError::Corrupted(_) => Fail::Bad(format!("the database is damaged: {e}")),
            e => Fail::Cannot(format!("reading the database: {e}")),
        }
    }
}

impl From<redb::TableError> for Fail {
    fn from(e: redb::TableError) -> Fail {
        match e {
            redb::TableError::TableDoesNotExist(name) => {
                Fail::Bad(format!("the database has no {name:?} table"))
            }
            redb::TableError::Storage(e) => e.into(),
            e => Fail::Bad(format!("the database's tables are not graven's: {e}")),
        }
    }
}

impl From<redb::TransactionError> for Fail {
    fn from(e: redb::TransactionError) -> Fail {
        match e {
            redb::TransactionError::Storage(e) => e.into(),
            e => Fail::Cannot(format!("reading the database: {e}")),
        }
    }
}

/// What a ledger that passed holds.
#[derive(Debug)]
pub struct Summary {
    /// Journal entries.
    pub entries: u64,
    /// Documents, deleted ones included.
    pub documents: u64,
    /// Documents whose current revision is not a delete.
    pub live: u64,
    /// The signed checkpoint's tree size (equal to `entries`).
    pub size: u64,
    /// The signed checkpoint's root.
    pub root: Hash,
}

/// A ledger's outcome, as `graven check` prints it.
pub type Outcome = std::result::Result<Summary, Fail>;

/// Progress of a check, called every few thousand rows with the phase ("journal entry",
/// "document row"), rows done and rows in all. An error stops the check with that reason
/// ([`Fail::Cannot`]).
pub type Report<'a> = dyn FnMut(&str, u64, u64) -> std::result::Result<(), String> + 'a;

/// Runs `graven check` offline; the exit code is 0, 1 or 2 (see the module
/// documentation).
pub fn run(args: &CheckArgs) -> ExitCode {
    let root = args.data.join("ledgers");
    let mut names = Vec::new();
    match fs::read_dir(&root) {
        Ok(dir) => {
            for dirent in dir {
                match dirent {
                    Ok(d) => {
                        let name = d.file_name().to_string_lossy().into_owned();
                        // Leftovers of an interrupted create or delete are not ledgers.
                        if !name.starts_with('.') {
                            names.push(name);
                        }
                    }
                    Err(e) => {
                        eprintln!("graven check: cannot read {}: {e}", root.display());
                        return ExitCode::from(2);
                    }
                }
            }
        }
        Err(e) => {
            eprintln!("graven check: cannot read {}: {e}", root.display());
            return ExitCode::from(2);
        }
    }
    names.sort();
    if !args.ledgers.is_empty() {
        for name in &args.ledgers {
            if crate::model::check_ledger_name(name).is_err() || !names.contains(name) {
                eprintln!(
                    "graven check: ledger {name:?} does not exist in {}",
                    args.data.display()
                );
                return ExitCode::from(2);
            }
        }
        names.retain(|n| args.ledgers.contains(n));
    }
    if names.is_empty() {
        eprintln!("graven check: no ledgers in {}", args.data.display());
    }
    let mut results = Results::new(args.json);
    for name in &names {
        let mut line = ProgressLine::new("checking", name);
        let outcome = check_ledger(&root.join(name), &mut |what, done, total| {
            line.show(what, done, total);
            Ok(())
        });
        drop(line);
        if results.print(name, &outcome).is_err() {
            return ExitCode::from(2);
        }
    }
    results.exit_code()
}

/// Runs `graven check --online` against the server at `server`: each ledger checked by
/// the server itself ([`check_open_ledger`] through `CheckLedger`), with the same output
/// and exit codes as offline.
pub async fn run_online(server: &str, args: &CheckArgs) -> ExitCode {
    use crate::pb::check_ledger_event::Kind;
    let mut admin = match crate::cli::Client::connect(server).await {
        Ok(c) => c.admin,
        Err(e) => {
            eprintln!("graven check: {e:#}");
            return ExitCode::from(2);
        }
    };
    let names = if args.ledgers.is_empty() {
        match admin.list_ledgers(crate::pb::ListLedgersRequest {}).await {
            Ok(r) => r.into_inner().ledgers.into_iter().map(|l| l.name).collect(),
            Err(s) => {
                eprintln!(
                    "graven check: listing ledgers: {}",
                    crate::cli::status_line(&s)
                );
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
        let mut line = ProgressLine::new("checking", name);
        let outcome = async {
            let request = crate::pb::CheckLedgerRequest { name: name.clone() };
            let mut events = admin
                .check_ledger(request)
                .await
                .map_err(cannot)?
                .into_inner();
            while let Some(event) = events.message().await.map_err(cannot)? {
                match event.kind {
                    Some(Kind::Progress(p)) => line.show(&p.phase, p.done, p.total),
                    Some(Kind::Result(r)) if r.ok => {
                        let root = <[u8; 32]>::try_from(r.root.as_slice()).map_err(|_| {
                            Fail::Cannot("the server's result has no 32-byte root".into())
                        })?;
                        return Ok(Summary {
                            entries: r.entries,
                            documents: r.documents,
                            live: r.live,
                            size: r.size,
                            root: Hash(root),
                        });
                    }
                    Some(Kind::Result(r)) => return Err(Fail::Bad(r.problem)),
                    None => {}
                }
            }
            Err(Fail::Cannot(
                "the server ended the check without a result".into(),
            ))
        }
        .await;
        drop(line);
        if results.print(name, &outcome).is_err() {
            return ExitCode::from(2);
        }
    }
    results.exit_code()
}

fn cannot(s: tonic::Status) -> Fail {
    Fail::Cannot(crate::cli::status_line(&s))
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
            (Err(Fail::Bad(msg)), true) => {
                json!({"ledger": name, "status": "bad", "problem": msg}).to_string()
            }
            (Err(Fail::Cannot(msg)), true) => {
                json!({"ledger": name, "status": "error", "problem": msg}).to_string()
            }
            (Err(Fail::Bad(_)), false) => format!("{name}: FAILED"),
            (Err(Fail::Cannot(_)), false) => format!("{name}: not checked"),
        };
        match outcome {
            Ok(_) => {}
            Err(Fail::Bad(msg)) => {
                self.any_bad = true;
                eprintln!("ledger {name}: {msg}");
            }
            Err(Fail::Cannot(msg)) => {
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

/// A progress line on stderr when it is a terminal, at most a few times a second; cleared
/// when dropped.
pub(crate) struct ProgressLine<'a> {
    on: bool,
    /// What is being done ("checking"), and to which ledger.
    verb: &'static str,
    name: &'a str,
    last: Instant,
    shown: bool,
}

impl ProgressLine<'_> {
    pub(crate) fn new<'a>(verb: &'static str, name: &'a str) -> ProgressLine<'a> {
        ProgressLine {
            verb,
            on: std::io::stderr().is_terminal(),
            name,
            last: Instant::now(),
            shown: false,
        }
    }

    pub(crate) fn show(&mut self, what: &str, done: u64, total: u64) {
        if !self.on || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        eprint!(
            "\r{} {}: {what} {done} of {total}\x1b[K",
            self.verb, self.name
        );
    }
}

impl Drop for ProgressLine<'_> {
    fn drop(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }
}

/// Calls `report` every 4,096 rows.
fn tick(report: &mut Report<'_>, what: &str, done: u64, total: u64) -> Res<()> {
    if done.is_multiple_of(4096) {
        report(what, done, total).map_err(Fail::Cannot)?;
    }
    Ok(())
}

/// Opens a ledger's database read-only (it is never modified).
fn open_database(path: &Path) -> Res<redb::ReadOnlyDatabase> {
    match fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return bad(format!("{DB_FILE} is missing"));
        }
        Err(e) => return Err(Fail::Cannot(format!("{}: {e}", path.display()))),
    }
    redb::Builder::new()
        .set_cache_size(64 << 20)
        .open_read_only(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Fail::Cannot(
                "the ledger is in use (is graven serve running? `graven check --online` \
                 checks a running server)"
                    .into(),
            ),
            redb::DatabaseError::RepairAborted => Fail::Cannot(
                "the database was not closed cleanly and needs the repair redb makes when \
                 graven serve opens it: start and stop the server once, then check again"
                    .into(),
            ),
            redb::DatabaseError::Storage(e) => e.into(),
            e => Fail::Cannot(format!("opening {}: {e}", path.display())),
        })
}

/// Reads and parses a ledger's `signing.key`.
fn read_key(dir: &Path) -> Res<Signer> {
    let key_text = match fs::read_to_string(dir.join(KEY_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return bad(format!("{KEY_FILE} is missing"));
        }
        Err(e) => return Err(Fail::Cannot(format!("reading {KEY_FILE}: {e}"))),
    };
    Signer::parse(&key_text).map_err(|e| Fail::Bad(format!("{KEY_FILE}: {e}")))
}

/// Checks the stopped ledger in folder `dir`.
fn check_ledger(dir: &Path, report: &mut Report<'_>) -> Outcome {
    let signer = read_key(dir)?;
    let db = open_database(&dir.join(DB_FILE))?;
    check_snapshot(&db.begin_read()?, &signer, report)
}

/// Checks a ledger the server has open, in one read snapshot while writes go on. Its
/// `signing.key` on disk must also be the key the server signs with.
pub fn check_open_ledger(ledger: &Ledger, report: &mut Report<'_>) -> Outcome {
    let signer = read_key(ledger.dir())?;
    if signer.verifier().to_vkey() != ledger.vkey() {
        return bad(format!(
            "{KEY_FILE} on disk is not the key the server signs with (it was replaced \
             while the server ran)"
        ));
    }
    check_snapshot(&ledger.database().begin_read()?, &signer, report)
}

/// Every check of the module documentation over one read transaction.
pub(crate) fn check_snapshot(
    rtxn: &redb::ReadTransaction,
    signer: &Signer,
    report: &mut Report<'_>,
) -> Outcome {
    // meta: format, origin, the signed checkpoint.
    let meta = rtxn.open_table(storage::META)?;
    let format = meta
        .get(storage::META_FORMAT)?
        .map(|v| <[u8; 4]>::try_from(v.value()).map(u32::from_be_bytes));
    match format {
        None => return bad("meta: the storage format is missing"),
        Some(Err(_)) => return bad("meta: the storage format is malformed"),
        Some(Ok(f)) if f != storage::FORMAT_VERSION => {
            return Err(Fail::Cannot(format!(
                "storage format {f} is not {} (this build's)",
                storage::FORMAT_VERSION
            )));
        }
        Some(Ok(_)) => {}
    }
    let origin = storage::meta_string(&meta, storage::META_ORIGIN)?;
    if signer.name() != origin {
        return bad(format!(
            "{KEY_FILE} is for {:?}, the ledger's origin is {origin:?}",
            signer.name()
        ));
    }
    let note = storage::meta_string(&meta, storage::META_CHECKPOINT)?;
    let head = open_checkpoint(note.as_bytes(), &[signer.verifier()])
        .map_err(|e| {
            Fail::Bad(format!(
                "meta: the latest checkpoint is not signed by the ledger's key: {e}"
            ))
        })?
        .checkpoint;
    if head.origin != origin {
        return bad(format!(
            "meta: the latest checkpoint's origin {:?} is not the ledger's origin {origin:?}",
            head.origin
        ));
    }

    // The journal, its tree hashes and bodies, in index order.
    let leaves = rtxn.open_table(storage::LEAVES)?;
    let total = leaves.len()?;
    let mut range = CompactRange::new();
    let mut computed: Vec<Hash> = Vec::with_capacity(64);
    // (tx id, position, revisions) of the previous entry, and its commit time.
    let mut prev_tx: Option<(u64, u32, u32)> = None;
    let mut prev_time = 0u64;
    for row in leaves.iter()? {
        let (key, value) = row?;
        let index = range.size();
        let at = |msg: String| Fail::Bad(format!("index {index}: {msg}"));
        let key = key.value();
        if key != index {
            return Err(at(format!(
                "the journal row is missing (the next row is index {key})"
            )));
        }
        tick(report, "journal entry", index, total)?;
        let Some(leaf) = storage::decode_leaf(index, value.value()) else {
            return Err(at(format!(
                "the journal row is malformed (too short for its entry and {} tree hashes)",
                storage::stored_hashes_of(index)
            )));
        };
        let (entry_bytes, stored) = (leaf.entry, leaf.hashes);
        let entry = Entry::decode(entry_bytes)
            .map_err(|e| at(format!("the entry does not decode: {e}")))?;
        computed.clear();
        range.append_stored(leaf_hash(entry_bytes), |_, h| computed.push(h));
        for (level, (have, want)) in stored.chunks_exact(32).zip(&computed).enumerate() {
            if have != want.0 {
                return Err(at(if level == 0 {
                    "stored leaf hash does not match the entry".into()
                } else {
                    format!("stored level {level} tree hash does not match the entries")
                }));
            }
        }
        // Entry invariants.
        if (entry.version == 0) != (entry.operation == Operation::Insert) {
            return Err(at(format!(
                "{} at version {}: version 0 is exactly the insert",
                entry.operation, entry.version
            )));
        }
        let tx = (entry.tx_id, entry.tx_position, entry.tx_revisions);
        let follows = match prev_tx {
            None => tx.0 == 0 && tx.1 == 0,
            Some((id, pos, n)) if pos + 1 == n => tx.0 == id + 1 && tx.1 == 0,
            Some((id, pos, n)) => tx.0 == id && tx.1 == pos + 1 && tx.2 == n,
        };
        if !follows {
            let expected = match prev_tx {
                None => "transaction 0, position 0".to_owned(),
                Some((id, pos, n)) if pos + 1 == n => format!("transaction {}, position 0", id + 1),
                Some((id, pos, n)) => format!("transaction {id}, position {} of {n}", pos + 1),
            };
            return Err(at(format!(
                "transaction {}, position {} of {} does not follow the previous entry \
                 (expected {expected})",
                tx.0, tx.1, tx.2
            )));
        }
        prev_tx = Some(tx);
        if entry.commit_time_micros < prev_time {
            return Err(at(format!(
                "commit time {} is before the previous entry's {prev_time}",
                entry.commit_time_micros
            )));
        }
        prev_time = entry.commit_time_micros;
        // Its body: there exactly for inserts and updates, hashing to the entry's hash.
        match (leaf.body.is_empty(), entry.body_hash) {
            (false, None) => return Err(at("a delete has a body".into())),
            (true, Some(_)) => return Err(at("the body is missing".into())),
            (false, Some(hash)) => {
                if Sha256::digest(leaf.body).as_slice() != hash.0 {
                    return Err(at("the body does not hash to the entry's body hash".into()));
                }
            }
            (true, None) => {}
        }
    }
    let size = range.size();
    if let Some((id, pos, n)) = prev_tx
        && pos + 1 != n
    {
        return bad(format!(
            "index {}: transaction {id} ends after {} of its {n} revisions",
            size - 1,
            pos + 1
        ));
    }
    if size != head.size {
        return bad(if size < head.size {
            format!(
                "index {size}: missing: the journal has {size} entries, the signed checkpoint \
                 covers {}",
                head.size
            )
        } else {
            format!(
                "index {}: beyond the signed checkpoint, which covers {} entries (the journal \
                 has {size})",
                head.size, head.size
            )
        });
    }
    if range.root() != head.root {
        return bad(format!(
            "the journal's root {} does not match the signed checkpoint's root {}",
            range.root().to_base64(),
            head.root.to_base64()
        ));
    }

    // The document index, in key order; entries read by index.
    let docs = rtxn.open_table(storage::DOCS)?;
    let tables = rtxn.open_table(storage::TABLES)?;
    let doc_rows = docs.len()?;
    let (mut documents, mut live_documents, mut rows) = (0u64, 0u64, 0u64);
    // The document being walked: (table, id), its last revision (version, index, live).
    let mut current_doc: Option<(String, String)> = None;
    let mut last_rev: Option<(u64, u64, bool)> = None;
    let mut table_seen: Option<String> = None;
    for (n, row) in docs.iter()?.enumerate() {
        let (key, value) = row?;
        let (table, id, version) = key.value();
        let (v, index, live) = value.value();
        tick(report, "document row", n as u64, doc_rows)?;
        let is_current = version == storage::CURRENT;
        let shown = if is_current {
            "current".to_owned()
        } else {
            format!("version {version}")
        };
        let at = |msg: String| Fail::Bad(format!("docs row ({table:?}, {id:?}, {shown}): {msg}"));
        let same_doc = current_doc
            .as_ref()
            .is_some_and(|(t, i)| t == table && i == id);
        if !same_doc {
            if let Some((t, i)) = &current_doc {
                return bad(format!(
                    "docs: document ({t:?}, {i:?}) has no current-state row"
                ));
            }
            if table_seen.as_deref() != Some(table) {
                if tables.get(table)?.is_none() {
                    return Err(at(format!("table {table:?} has no row in tables")));
                }
                table_seen = Some(table.to_owned());
            }
            current_doc = Some((table.to_owned(), id.to_owned()));
            last_rev = None;
        }
        rows += 1;
        // Earlier revisions hold their own versions, dense from 0; the current-state row
        // holds the next one.
        let expected = last_rev.map_or(0, |(lv, _, _)| lv + 1);
        if v != expected {
            return Err(at(format!(
                "holds version {v}; versions are not dense: expected version {expected}"
            )));
        }
        if !is_current && version != v {
            return Err(at(format!("holds version {v}")));
        }
        if let Some((lv, li, llive)) = last_rev {
            if !llive {
                return Err(at(format!("a revision after the delete at version {lv}")));
            }
            if index <= li {
                return Err(at(format!(
                    "index {index} is not after version {lv}'s index {li}"
                )));
            }
        }
        if index >= size {
            return Err(at(format!(
                "points at index {index}, beyond the journal (size {size})"
            )));
        }
        let leaf = leaves
            .get(index)?
            .ok_or_else(|| at(format!("points at index {index}, which is missing")))?;
        let entry = storage::decode_leaf(index, leaf.value())
            .and_then(|l| Entry::decode(l.entry).ok())
            .ok_or_else(|| at(format!("points at index {index}, which does not decode")))?;
        if entry.table != table || entry.id != id || entry.version != v {
            return Err(at(format!(
                "points at index {index}, whose entry is ({:?}, {:?}, version {})",
                entry.table, entry.id, entry.version
            )));
        }
        let entry_live = entry.operation != Operation::Delete;
        if live != entry_live {
            return Err(at(format!(
                "says live {live}, the entry at index {index} is a {}",
                entry.operation
            )));
        }
        last_rev = Some((v, index, live));
        if is_current {
            documents += 1;
            live_documents += u64::from(live);
            current_doc = None;
        }
    }
    if let Some((t, i)) = &current_doc {
        return bad(format!(
            "docs: document ({t:?}, {i:?}) has no current-state row"
        ));
    }
    if rows != size {
        // Rows and entries match one to one where rows exist: find the entry without one.
        for row in leaves.iter()? {
            let (key, value) = row?;
            let index = key.value();
            let Some(entry) = storage::decode_leaf(index, value.value())
                .and_then(|l| Entry::decode(l.entry).ok())
            else {
                continue;
            };
            let (t, i) = (entry.table.as_str(), entry.id.as_str());
            let points = |row: Option<redb::AccessGuard<'_, (u64, u64, bool)>>| {
                row.is_some_and(|r| r.value().0 == entry.version && r.value().1 == index)
            };
            if !points(docs.get((t, i, entry.version))?)
                && !points(docs.get((t, i, storage::CURRENT))?)
            {
                return bad(format!(
                    "index {index}: no docs row ({t:?}, {i:?}, version {}) points at it",
                    entry.version
                ));
            }
        }
        return bad(format!("docs: {rows} rows for {size} journal entries"));
    }
    Ok(Summary {
        entries: size,
        documents,
        live: live_documents,
        size: head.size,
        root: head.root,
    })
}
