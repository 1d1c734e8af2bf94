//! The tamper check: everything of a ledger re-derived from its journal and compared with
//! what is stored, offline on a stopped server's ledgers ([`check_ledger`]) or online on a
//! snapshot of an open ledger (`Ledger::check`). `graven check` and the `CheckLedger` call
//! print what it finds; `graven import` runs it before a restored ledger is put in place.
//!
//! The server's start-up check (`Ledger::start`) reads only the `O(log n)` stored hashes
//! of the tree's right edge and compares their root with the latest signed checkpoint.
//! This check reads everything:
//!
//! * meta: the storage format; the origin equals the name of `signing.key`; the stored
//!   latest checkpoint is signed by that key and carries that origin (the checks every
//!   open makes, `super::verified_head`).
//! * leaves, in index order: indexes are dense from 0; each row decodes (it holds
//!   `1 + trailing_ones(index)` hashes); each entry decodes (`Entry::decode`); the stored
//!   leaf hash equals the hash of the entry, and every stored node hash equals what
//!   `CompactRange::append_stored` computes when the entry is folded in; version 0 exactly
//!   for inserts; transactions are consecutive leaves with positions `0..n-1` and ids
//!   increasing by one; commit times never decrease; a row holds a body exactly for an
//!   insert or update, and its SHA-256 is the entry's body hash.
//! * The recomputed size and root equal the signed checkpoint's.
//! * docs (walked in key order, entries read by index, so memory stays bounded): each row
//!   `(table, id, version or current) -> (version, index, live)` points at an entry with
//!   that table, id and version and the right live flag; a document's earlier revisions
//!   have rows of their versions, dense from 0, then its current-state row holds the next
//!   version; indexes follow journal order, and only the current revision may be a delete;
//!   the table has a tables row; there are as many rows as entries (so every entry has
//!   exactly one).
//!
//! * the state map (docs/FORMAT.md §12), replayed from the journal: every root a
//!   transaction's last entry carries is the map's root after it, no format 1 entry
//!   follows a format 2 one, and the stored map is the replayed one at the journal size
//!   it was flushed at (`meta` `state_flushed`), root and every node record (the
//!   replayed map is kept in memory, about 140 bytes per live document).
//! * index entries (docs/FORMAT.md §9.8): each belongs to a defined index and names a
//!   live document of its table whose value at the index's path encodes to the entry's
//!   value; an online index has an entry for every live document with a non-null value
//!   there (the counts agree).
//!
//! Not checked: the idempotency receipts and the tables rows' own contents.
//!
//! Online, the snapshot is a consistent view while writes go on, and `signing.key` on disk
//! must also be the key the server signs with. The online check sees the database through
//! the server's page cache, so bytes changed on disk under a running server may go unseen
//! until it restarts; the offline check reads the file.

use std::path::Path;

use graven_verify::current::StateReplay;
use graven_verify::map_nodes::{Child, Node};
use graven_verify::{CompactRange, Entry, Hash, Operation, Signer, leaf_hash};
use sha2::{Digest, Sha256};

use super::files::{KeyFileError, read_key_file};
use super::{DB_FILE, HeadProblem, verified_head};
use crate::error::Quote;
use crate::storage::{self, DocRow, Location, Slot, Snapshot, Store};

/// Why a ledger did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// A discrepancy: the data does not match itself or its checkpoint. The message names
    /// the first bad index or row.
    Damaged(String),
    /// The check could not run (the data may be fine).
    CannotRun(String),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Damaged(m) => write!(f, "{m}"),
            CheckError::CannotRun(m) => write!(f, "cannot check: {m}"),
        }
    }
}

impl std::error::Error for CheckError {}

impl From<HeadProblem> for CheckError {
    fn from(p: HeadProblem) -> CheckError {
        match p {
            HeadProblem::Damaged(m) => CheckError::Damaged(m),
            HeadProblem::Unreadable(m) => CheckError::CannotRun(m),
        }
    }
}

/// A storage failure met while checking: damage is a discrepancy, anything else means the
/// check could not run.
pub(crate) fn storage(e: storage::Error) -> CheckError {
    match e.kind() {
        storage::ErrorKind::Damaged => CheckError::Damaged(format!("the database is damaged: {e}")),
        _ => CheckError::CannotRun(format!("reading the database: {e}")),
    }
}

impl From<storage::Error> for CheckError {
    fn from(e: storage::Error) -> CheckError {
        storage(e)
    }
}

/// What a ledger that passed holds.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A ledger's outcome.
pub type Outcome = Result<Summary, CheckError>;

/// Progress of a check, called every few thousand rows with the phase ("journal entry",
/// "document row"), rows done and rows in all. An error stops the check with that reason
/// ([`CheckError::CannotRun`]).
pub type Report<'a> = dyn FnMut(&str, u64, u64) -> Result<(), String> + 'a;

fn damaged<T>(msg: impl Into<String>) -> Result<T, CheckError> {
    Err(CheckError::Damaged(msg.into()))
}

/// Calls `report` every 4,096 rows.
fn tick(report: &mut Report<'_>, what: &str, done: u64, total: u64) -> Result<(), CheckError> {
    if done.is_multiple_of(4096) {
        report(what, done, total).map_err(CheckError::CannotRun)?;
    }
    Ok(())
}

/// Reads a ledger folder's `signing.key`: missing or malformed is a discrepancy.
pub(crate) fn read_key(dir: &Path) -> Result<Signer, CheckError> {
    read_key_file(dir).map_err(|e| match e {
        KeyFileError::Unreadable(_) => CheckError::CannotRun(e.to_string()),
        KeyFileError::Missing | KeyFileError::Malformed(_) => CheckError::Damaged(e.to_string()),
    })
}

/// Checks ledger `name`, whose key is in folder `dir`, with its storage at `location`:
/// embedded, its redb file in `dir` opened read-only; in PostgreSQL, one read-only
/// transaction.
pub fn check_ledger(
    location: &Location,
    dir: &Path,
    name: &str,
    report: &mut Report<'_>,
) -> Outcome {
    let signer = read_key(dir)?;
    let path = dir.join(DB_FILE);
    if *location == Location::Embedded {
        match std::fs::metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return damaged(format!("{DB_FILE} is missing"));
            }
            Err(e) => return Err(CheckError::CannotRun(format!("{}: {e}", path.display()))),
        }
    }
    let store = Store::open_to_check(location, &path, name).map_err(|e| match e.kind() {
        storage::ErrorKind::InUse => CheckError::CannotRun(
            "the ledger is in use (is graven serve running? `graven check --online` checks \
             a running server)"
                .into(),
        ),
        storage::ErrorKind::NeedsRepair => CheckError::CannotRun(
            "the database was not closed cleanly and needs the repair redb makes when graven \
             serve opens it: start and stop the server once, then check again"
                .into(),
        ),
        storage::ErrorKind::Damaged => CheckError::Damaged(format!("the database is damaged: {e}")),
        _ => CheckError::CannotRun(format!("opening {}: {e}", path.display())),
    })?;
    check_snapshot(&store.read()?, &signer, report)
}

/// Every check of the module documentation over one snapshot, with the ledger's key.
pub fn check_snapshot(snap: &Snapshot, signer: &Signer, report: &mut Report<'_>) -> Outcome {
    let (_, head) = verified_head(snap, signer)?;
    let size = check_journal(snap, report)?;
    if size.size() != head.size {
        let n = size.size();
        return damaged(if n < head.size {
            format!(
                "index {n}: missing: the journal has {n} entries, the signed checkpoint covers {}",
                head.size
            )
        } else {
            format!(
                "index {}: beyond the signed checkpoint, which covers {} entries (the journal \
                 has {n})",
                head.size, head.size
            )
        });
    }
    if size.root() != head.root {
        return damaged(format!(
            "the journal's root {} does not match the signed checkpoint's root {}",
            size.root().to_base64(),
            head.root.to_base64()
        ));
    }
    let flushed = snap.state_flushed()?;
    if flushed > head.size {
        return damaged(format!(
            "meta: the state map is flushed at journal size {flushed}, past the journal's {}",
            head.size
        ));
    }
    let (documents, live) = check_documents(snap, head.size, report)?;
    check_indexes(snap, report)?;
    Ok(Summary {
        entries: head.size,
        documents,
        live,
        size: head.size,
        root: head.root,
    })
}

/// The index entries against the documents (see the module documentation).
fn check_indexes(snap: &Snapshot, report: &mut Report<'_>) -> Result<(), CheckError> {
    let defs = snap.index_defs()?;
    let mut counts = vec![0u64; defs.len()];
    let total = snap.index_entry_count()?;
    for (done, entry) in snap.all_index_entries()?.enumerate() {
        let storage::IndexEntry {
            index: id,
            value,
            doc,
            row: named,
        } = entry?;
        tick(report, "index entry", done as u64, total)?;
        let Some(at) = defs.iter().position(|d| d.id == id) else {
            return damaged(format!(
                "index entry of document {}: index {id} is not defined",
                Quote(&doc)
            ));
        };
        let def = &defs[at];
        let name = || {
            format!(
                "index {} of table {}",
                crate::model::path_text(&def.path),
                Quote(&def.table)
            )
        };
        let body = match snap.current(&def.table, &doc)? {
            Some(row) if row.live && row == named => {
                snap.require_leaf(row.index)?.leaf()?.body.to_vec()
            }
            Some(row) if row.live => {
                return damaged(format!(
                    "{}: the entry of document {} names version {} at journal index {}, \
                     but the current is version {} at {}",
                    name(),
                    Quote(&doc),
                    named.version,
                    named.index,
                    row.version,
                    row.index
                ));
            }
            _ => {
                return damaged(format!(
                    "{}: an entry names document {}, which is not live",
                    name(),
                    Quote(&doc)
                ));
            }
        };
        let parsed: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            CheckError::Damaged(format!(
                "document {}: the body is not JSON: {e}",
                Quote(&doc)
            ))
        })?;
        let expected = storage::value_at(&parsed, &def.path).and_then(storage::encode_value);
        if expected.as_deref() != Some(value.as_slice()) {
            return damaged(format!(
                "{}: the entry of document {} does not hold its value",
                name(),
                Quote(&doc)
            ));
        }
        counts[at] += 1;
    }
    for (def, count) in defs.iter().zip(counts) {
        if def.state != storage::DefState::Online {
            continue;
        }
        let mut with_value = 0u64;
        for row in snap.current_rows(&def.table, None)? {
            let (_, row) = row?;
            if !row.live {
                continue;
            }
            let body = snap.require_leaf(row.index)?;
            let parsed: serde_json::Value = serde_json::from_slice(body.leaf()?.body)
                .map_err(|e| CheckError::Damaged(format!("a body is not JSON: {e}")))?;
            if storage::value_at(&parsed, &def.path)
                .and_then(storage::encode_value)
                .is_some()
            {
                with_value += 1;
            }
        }
        if with_value != count {
            return damaged(format!(
                "index {} of table {}: {count} entries for {with_value} documents with a value",
                crate::model::path_text(&def.path),
                Quote(&def.table)
            ));
        }
    }
    Ok(())
}

/// The journal, its tree hashes and bodies, in index order, and the stored state map
/// against the journal's at the size it was flushed at; returns the tree it folds.
fn check_journal(snap: &Snapshot, report: &mut Report<'_>) -> Result<CompactRange, CheckError> {
    let total = snap.leaf_rows()?;
    let flushed = snap.state_flushed()?;
    let mut range = CompactRange::new();
    // The state map, replayed from index 0 with graven-verify's rules.
    let mut state = StateReplay::from_start();
    let mut computed: Vec<Hash> = Vec::with_capacity(64);
    // (tx id, position, revisions) of the previous entry, and its commit time.
    let mut prev_tx: Option<(u64, u32, u32)> = None;
    let mut prev_time = 0u64;
    for row in snap.leaves()? {
        let row = row?;
        let index = range.size();
        let at = |msg: String| CheckError::Damaged(format!("index {index}: {msg}"));
        if row.index() != index {
            return Err(at(format!(
                "the journal row is missing (the next row is index {})",
                row.index()
            )));
        }
        if index == flushed {
            check_state(snap, &mut state, report)?;
        }
        tick(report, "journal entry", index, total)?;
        let Some(leaf) = row.decode() else {
            return Err(at(format!(
                "the journal row is malformed (too short for its entry and {} tree hashes)",
                storage::stored_hashes_of(index)
            )));
        };
        let entry =
            Entry::decode(leaf.entry).map_err(|e| at(format!("the entry does not decode: {e}")))?;
        computed.clear();
        range.append_stored(leaf_hash(leaf.entry), |_, h| computed.push(h));
        for (level, (have, want)) in leaf.hashes.chunks_exact(32).zip(&computed).enumerate() {
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
        // The state map after it, against the root its transaction's last entry carries.
        state.apply(index, &entry).map_err(|e| at(e.to_string()))?;
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
    if let Some((id, pos, n)) = prev_tx
        && pos + 1 != n
    {
        return damaged(format!(
            "index {}: transaction {id} ends after {} of its {n} revisions",
            range.size() - 1,
            pos + 1
        ));
    }
    // (A flush past the journal's end is named once the journal's size is checked.)
    if range.size() == flushed {
        check_state(snap, &mut state, report)?;
    }
    Ok(range)
}

/// The stored state map against the journal's: the root row, then every node record.
fn check_state(
    snap: &Snapshot,
    state: &mut StateReplay,
    report: &mut Report<'_>,
) -> Result<(), CheckError> {
    let state = state.map_mut().ok_or_else(|| {
        CheckError::CannotRun("the replayed state map was lost (a bug in graven check)".into())
    })?;
    state
        .root()
        .map_err(|e| CheckError::CannotRun(e.to_string()))?;
    let nodes = state.nodes();
    let want = nodes.root_child();
    // The empty map has no root row.
    let stored = match snap.state_root_row()? {
        None => Some(Child::Empty),
        Some(row) => Child::decode(&row).filter(|c| *c != Child::Empty),
    };
    if stored != Some(want) {
        return damaged("the state map's stored root is not the journal's");
    }
    let total = nodes.len() as u64;
    let mut seen = 0u64;
    for row in snap.state_rows()? {
        let (at, value) = row?;
        let name = || match <[u8; 33]>::try_from(at.as_slice()) {
            Ok(p) => format!(
                "the state map's node at depth {} ({})",
                p[32],
                hex::encode(&p[..32])
            ),
            Err(_) => format!("the state map's row {}", hex::encode(&at)),
        };
        let expected = <[u8; 33]>::try_from(at.as_slice())
            .ok()
            .and_then(|p| nodes.record(&p));
        match expected {
            None => return damaged(format!("{} is not in the journal's map", name())),
            Some(node) if Node::decode(&value).as_ref() != Some(node) => {
                return damaged(format!("{} differs from the journal's", name()));
            }
            Some(_) => {}
        }
        seen += 1;
        tick(report, "state map node", seen, total)?;
    }
    if seen != total {
        return damaged(format!(
            "the state map has {seen} stored nodes; the journal's has {total}"
        ));
    }
    Ok(())
}

/// The entry a docs row points at, or why it cannot be read.
fn pointed_entry(snap: &Snapshot, index: u64) -> Result<Result<Entry, String>, CheckError> {
    let Some(row) = snap.leaf(index)? else {
        return Ok(Err(format!("points at index {index}, which is missing")));
    };
    Ok(row
        .decode()
        .and_then(|l| Entry::decode(l.entry).ok())
        .ok_or_else(|| format!("points at index {index}, which does not decode")))
}

/// The document index, in key order, against the journal of `size` entries; returns the
/// documents and the live ones.
fn check_documents(
    snap: &Snapshot,
    size: u64,
    report: &mut Report<'_>,
) -> Result<(u64, u64), CheckError> {
    let doc_rows = snap.doc_row_count()?;
    let (mut documents, mut live_documents, mut rows) = (0u64, 0u64, 0u64);
    // The document being walked: (table, id), its last revision.
    let mut current_doc: Option<(String, String)> = None;
    let mut last_rev: Option<DocRow> = None;
    let mut table_seen: Option<String> = None;
    let no_current = |(t, i): &(String, String)| {
        format!(
            "docs: document ({}, {}) has no current-state row",
            Quote(t),
            Quote(i)
        )
    };
    for (n, row) in snap.doc_rows()?.enumerate() {
        let (key, row) = row?;
        tick(report, "document row", n as u64, doc_rows)?;
        let (table, id) = (key.table.as_str(), key.id.as_str());
        let at = |msg: String| {
            CheckError::Damaged(format!(
                "docs row ({}, {}, {}): {msg}",
                Quote(table),
                Quote(id),
                key.slot
            ))
        };
        let same_doc = current_doc
            .as_ref()
            .is_some_and(|(t, i)| t == table && i == id);
        if !same_doc {
            if let Some(doc) = &current_doc {
                return damaged(no_current(doc));
            }
            if table_seen.as_deref() != Some(table) {
                if snap.table(table)?.is_none() {
                    return Err(at(format!("table {} has no row in tables", Quote(table))));
                }
                table_seen = Some(table.to_owned());
            }
            current_doc = Some((table.to_owned(), id.to_owned()));
            last_rev = None;
        }
        rows += 1;
        check_row(snap, &key, row, last_rev, size)?.map_err(at)?;
        last_rev = Some(row);
        if key.slot == Slot::Current {
            documents += 1;
            live_documents += u64::from(row.live);
            current_doc = None;
        }
    }
    if let Some(doc) = &current_doc {
        return damaged(no_current(doc));
    }
    if rows != size {
        return Err(unindexed_entry(snap, rows, size)?);
    }
    Ok((documents, live_documents))
}

/// One docs row against the document's previous row (`last`, `None` for its first) and
/// the entry it points at: the inner error is what is wrong with it, the outer one a
/// storage failure.
fn check_row(
    snap: &Snapshot,
    key: &storage::DocKey,
    row: DocRow,
    last: Option<DocRow>,
    size: u64,
) -> Result<Result<(), String>, CheckError> {
    // Earlier revisions hold their own versions, dense from 0; the current-state row
    // holds the next one.
    let v = row.version;
    let expected = last.map_or(0, |r| r.version + 1);
    if v != expected {
        return Ok(Err(format!(
            "holds version {v}; versions are not dense: expected version {expected}"
        )));
    }
    if matches!(key.slot, Slot::Version(s) if s != v) {
        return Ok(Err(format!("holds version {v}")));
    }
    if let Some(last) = last {
        if !last.live {
            return Ok(Err(format!(
                "a revision after the delete at version {}",
                last.version
            )));
        }
        if row.index <= last.index {
            return Ok(Err(format!(
                "index {} is not after version {}'s index {}",
                row.index, last.version, last.index
            )));
        }
    }
    if row.index >= size {
        return Ok(Err(format!(
            "points at index {}, beyond the journal (size {size})",
            row.index
        )));
    }
    let entry = match pointed_entry(snap, row.index)? {
        Ok(entry) => entry,
        Err(problem) => return Ok(Err(problem)),
    };
    if entry.table != key.table || entry.id != key.id || entry.version != v {
        return Ok(Err(format!(
            "points at index {}, whose entry is ({}, {}, version {})",
            row.index,
            Quote(&entry.table),
            Quote(&entry.id),
            entry.version
        )));
    }
    let entry_live = entry.operation != Operation::Delete;
    if row.live != entry_live {
        return Ok(Err(format!(
            "says live {}, the entry at index {} is a {}",
            row.live, row.index, entry.operation
        )));
    }
    Ok(Ok(()))
}

/// Rows and entries match one to one where rows exist, but their counts differ: names the
/// first entry without a docs row.
fn unindexed_entry(snap: &Snapshot, rows: u64, size: u64) -> Result<CheckError, CheckError> {
    for row in snap.leaves()? {
        let row = row?;
        let index = row.index();
        let Some(entry) = row.decode().and_then(|l| Entry::decode(l.entry).ok()) else {
            continue;
        };
        let (t, i) = (entry.table.as_str(), entry.id.as_str());
        let points =
            |r: Option<DocRow>| r.is_some_and(|r| r.version == entry.version && r.index == index);
        if !points(snap.earlier(t, i, entry.version)?) && !points(snap.current(t, i)?) {
            return Ok(CheckError::Damaged(format!(
                "index {index}: no docs row ({}, {}, version {}) points at it",
                Quote(t),
                Quote(i),
                entry.version
            )));
        }
    }
    Ok(CheckError::Damaged(format!(
        "docs: {rows} rows for {size} journal entries"
    )))
}

#[cfg(test)]
mod tests {
    use graven_verify::{Entry, Operation};

    use super::*;
    use crate::engine::prepare::prepare;
    use crate::engine::{Config, Engine, KEY_FILE, sign_checkpoint};
    use crate::model::{Limits, RequestOp, TransactRequest};
    use crate::storage::{NewRevision, Store};

    /// A stopped ledger folder with three documents (one updated, one deleted).
    async fn folder() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(Config::new(dir.path())).expect("engine");
        let l = engine.create_ledger("l", None, false).expect("ledger");
        l.create_table("t").await.expect("table");
        let ops = [
            vec![
                RequestOp::Insert {
                    table: "t".into(),
                    id: Some("a".into()),
                    json: b"{}".to_vec(),
                },
                RequestOp::Insert {
                    table: "t".into(),
                    id: Some("b".into()),
                    json: b"{}".to_vec(),
                },
            ],
            vec![RequestOp::Update {
                table: "t".into(),
                id: "a".into(),
                json: br#"{"v":1}"#.to_vec(),
                expected_version: Some(0),
            }],
            vec![RequestOp::Delete {
                table: "t".into(),
                id: "b".into(),
                expected_version: None,
            }],
            vec![RequestOp::Insert {
                table: "t".into(),
                id: Some("c".into()),
                json: b"{}".to_vec(),
            }],
        ];
        for ops in ops {
            let request = TransactRequest {
                ops,
                idempotency_key: None,
            };
            let tx = prepare(request, &Limits::default(), "test").expect("valid");
            l.transact(tx).await.expect("commit");
        }
        engine.close();
        let ledger = dir.path().join("ledgers/l");
        (dir, ledger)
    }

    fn quiet() -> impl FnMut(&str, u64, u64) -> Result<(), String> {
        |_, _, _| Ok(())
    }

    #[tokio::test]
    async fn a_clean_ledger_passes_with_its_counts() {
        let (_dir, ledger) = folder().await;
        let mut phases = std::collections::BTreeSet::new();
        let s = check_ledger(&Location::Embedded, &ledger, "l", &mut |phase, _, _| {
            phases.insert(phase.to_owned());
            Ok(())
        })
        .expect("clean");
        assert_eq!((s.entries, s.documents, s.live, s.size), (5, 3, 2, 5));
        assert_eq!(
            phases,
            ["document row".to_owned(), "journal entry".to_owned()].into()
        );
        // A progress callback that says stop stops the check, as "cannot run".
        let stopped = check_ledger(&Location::Embedded, &ledger, "l", &mut |_, _, _| {
            Err("stop".into())
        });
        assert_eq!(stopped, Err(CheckError::CannotRun("stop".into())));
    }

    /// Appends one insert of `id` at journal index 5 to the five-entry ledger, as the
    /// sequencer would, with `root` as its state root (the right one when `None`) and
    /// `body` as its body (its entry's body hash is that of `{}`), and no flush of the
    /// state map.
    fn append_tail(
        store: &Store,
        signer: &Signer,
        id: &str,
        root: Option<graven_verify::Hash>,
        body: &[u8],
    ) {
        let snap = store.read().expect("read");
        let mut range = CompactRange::read(5, &snap.hashes()).expect("range");
        drop(snap);
        let mut w = store.write().expect("write");
        w.set_state("t", id, Some(5)).expect("state");
        let root = match root {
            Some(root) => root,
            None => w.state_root().expect("root"),
        };
        let entry = Entry {
            operation: Operation::Insert,
            tx_id: 4,
            tx_position: 0,
            tx_revisions: 1,
            commit_time_micros: u64::MAX / 2,
            version: 0,
            table: "t".into(),
            id: id.into(),
            principal: "test".into(),
            body_hash: Some(graven_verify::Hash(Sha256::digest(b"{}").into())),
            state: graven_verify::State::Root(root),
        }
        .encode()
        .expect("entry");
        let rev = NewRevision {
            entry: &entry,
            body,
            table: "t",
            id,
            version: 0,
            live: true,
            previous: None,
        };
        w.append_revision(&mut range, &rev).expect("append");
        let note = sign_checkpoint(signer, range.size(), range.root()).expect("sign");
        w.put_checkpoint(&note);
        w.commit().expect("commit");
    }

    /// A ledger left between two flushes of its state map (as a crash leaves it): the
    /// stored map is checked against the journal's at the flush, and the tail's roots
    /// against the map replayed on from there.
    #[tokio::test]
    async fn the_state_map_is_checked_at_its_flush() {
        let (_dir, ledger) = folder().await;
        let signer = read_key(&ledger).expect("key");
        let store = Store::open(&ledger.join(DB_FILE), 1 << 20).expect("store");
        assert_eq!(
            store.read().expect("read").state_flushed().ok(),
            Some(5),
            "a stopping server writes the map"
        );
        append_tail(&store, &signer, "d", None, b"{}");
        let snap = store.read().expect("read");
        assert_eq!(snap.state_flushed().ok(), Some(5), "a tail of one entry");
        let summary = check_snapshot(&snap, &signer, &mut quiet()).expect("clean, with a tail");
        assert_eq!(summary.entries, 6);
        drop(snap);

        // The same tail carrying a root that is not the map's after it.
        let (_dir, ledger) = folder().await;
        let signer = read_key(&ledger).expect("key");
        let store = Store::open(&ledger.join(DB_FILE), 1 << 20).expect("store");
        append_tail(&store, &signer, "d", Some(graven_verify::EMPTY_ROOT), b"{}");
        let e = check_snapshot(&store.read().expect("read"), &signer, &mut quiet())
            .expect_err("a wrong root in the tail");
        assert!(
            matches!(&e, CheckError::Damaged(m) if m.starts_with("index 5: state root")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn what_is_found() {
        let (_dir, ledger) = folder().await;
        let signer = read_key(&ledger).expect("key");
        let store = Store::open(&ledger.join(DB_FILE), 1 << 20).expect("store");

        // A revision whose body does not hash to its entry's body hash, appended with its
        // tree hashes and a checkpoint that covers it: the journal pass names its index.
        append_tail(&store, &signer, "d", None, br#"{"not":"it"}"#);
        let snap = store.read().expect("read");
        assert_eq!(
            check_snapshot(&snap, &signer, &mut quiet()),
            Err(CheckError::Damaged(
                "index 5: the body does not hash to the entry's body hash".into()
            ))
        );
        drop(snap);

        // Another key: the stored checkpoint is not signed by it.
        let other = graven_verify::Signer::generate(signer.name()).expect("key");
        let snap = store.read().expect("read");
        let e = check_snapshot(&snap, &other, &mut quiet()).expect_err("wrong key");
        assert!(
            matches!(&e, CheckError::Damaged(m) if m.starts_with("meta: the latest checkpoint is not signed by the ledger's key")),
            "{e}"
        );
        drop(snap);
        drop(store);

        // A missing key file is a discrepancy, named.
        std::fs::remove_file(ledger.join(KEY_FILE)).expect("remove key");
        assert_eq!(
            check_ledger(&Location::Embedded, &ledger, "l", &mut quiet()),
            Err(CheckError::Damaged(format!("{KEY_FILE} is missing")))
        );
    }
}
