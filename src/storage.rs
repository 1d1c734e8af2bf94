//! One ledger's storage: the redb layout, its encodings, and the typed reads and writes the
//! engine makes. This is the only module that names redb.
//!
//! Each ledger is one redb file. Integer keys are redb `u64`s (fixed width, numeric order);
//! composite keys are redb tuples, ordered field by field. The layout keeps what one commit
//! writes on as few pages as possible, because the cost of a durable commit grows with the
//! number of pages it dirties: a leaf's entry and the tree hashes it creates share one row,
//! appended at the right edge; a document's current state and its revisions share one
//! table, side by side. docs/FORMAT.md §9 documents every key space byte by byte.
//!
//! Reads go through a [`Snapshot`] (one redb read transaction: a consistent view that never
//! waits for the writer); writes through a [`WriteTxn`], whose [`Writer`] holds every key
//! space open and which becomes visible, all or nothing, when committed. Nothing here decides
//! policy: it reads and writes what the engine tells it to, and reports rows it cannot
//! decode as [`ErrorKind::Damaged`].

use std::fmt;
use std::ops::Bound;
use std::path::Path;

use graven_verify::{CompactRange, Hash, HashReader, leaf_hash, split_stored_hash_index};
use redb::{
    Database, Durability, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::model::OpResult;

// ---------------------------------------------------------------------------------------
// The layout

/// Settings and the latest checkpoint, by name (see the `META_*` keys).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// One row per journal entry, by journal index: the entry, the tree hashes it creates and
/// the document body; see [`encode_leaf`].
const LEAVES: TableDefinition<u64, &[u8]> = TableDefinition::new("leaves");
/// Documents: `(table, id, CURRENT)` -> `(version, journal index, live)` of the current
/// revision, and `(table, id, version)` -> the same for every earlier revision. (The
/// current revision has no row of its own version: an insert writes one row, not two.)
const DOCS: TableDefinition<(&str, &str, u64), (u64, u64, bool)> = TableDefinition::new("docs");
/// User tables: name -> (created micros, active).
const TABLES: TableDefinition<&str, (u64, bool)> = TableDefinition::new("tables");
/// Idempotency keys: key -> the stored receipt ([`StoredReceipt`], JSON).
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");

/// The version slot of a document's current-state row in the docs key space: it sorts
/// after every revision of the document.
const CURRENT: u64 = u64::MAX;

/// Storage layout version (u32, big-endian). Bumped on any incompatible change.
const META_FORMAT: &str = "format";
/// The checkpoint origin and key name (UTF-8).
const META_ORIGIN: &str = "origin";
/// Creation time, microseconds since the Unix epoch (u64, big-endian).
const META_CREATED: &str = "created_micros";
/// Deletion protection: one byte, 1 on, 0 off.
const META_PROTECTION: &str = "deletion_protection";
/// The signed checkpoint of the journal's current size (UTF-8 note text).
const META_CHECKPOINT: &str = "checkpoint";

/// The layout version this build writes and reads (docs/FORMAT.md §9 has the history).
pub const FORMAT_VERSION: u32 = 2;

/// The redb page cache of a ledger opened with default settings, in bytes.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

// ---------------------------------------------------------------------------------------
// Errors

/// What kind of storage failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file is not what graven wrote: a damaged page, a missing key space, a row that
    /// does not decode.
    Damaged,
    /// Another process has the database open.
    InUse,
    /// The database was not closed cleanly and must be opened read-write once so that redb
    /// repairs it.
    NeedsRepair,
    /// Anything else: I/O, a failed commit.
    Failed,
}

/// A storage failure, with its cause.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// Which kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    fn damaged(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Damaged,
            message: message.into(),
            source: None,
        }
    }

    fn from_redb(kind: ErrorKind, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error {
            kind,
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<redb::StorageError> for Error {
    fn from(e: redb::StorageError) -> Error {
        let kind = match e {
            redb::StorageError::Corrupted(_) => ErrorKind::Damaged,
            _ => ErrorKind::Failed,
        };
        Error::from_redb(kind, e)
    }
}

impl From<redb::TableError> for Error {
    fn from(e: redb::TableError) -> Error {
        match e {
            redb::TableError::Storage(e) => e.into(),
            e => Error::from_redb(ErrorKind::Damaged, e),
        }
    }
}

impl From<redb::TransactionError> for Error {
    fn from(e: redb::TransactionError) -> Error {
        match e {
            redb::TransactionError::Storage(e) => e.into(),
            e => Error::from_redb(ErrorKind::Failed, e),
        }
    }
}

impl From<redb::DatabaseError> for Error {
    fn from(e: redb::DatabaseError) -> Error {
        match e {
            redb::DatabaseError::Storage(e) => e.into(),
            redb::DatabaseError::DatabaseAlreadyOpen => Error::from_redb(ErrorKind::InUse, e),
            redb::DatabaseError::RepairAborted => Error::from_redb(ErrorKind::NeedsRepair, e),
            e => Error::from_redb(ErrorKind::Failed, e),
        }
    }
}

impl From<redb::CommitError> for Error {
    fn from(e: redb::CommitError) -> Error {
        match e {
            redb::CommitError::Storage(e) => e.into(),
            e => Error::from_redb(ErrorKind::Failed, e),
        }
    }
}

impl From<redb::SetDurabilityError> for Error {
    fn from(e: redb::SetDurabilityError) -> Error {
        Error::from_redb(ErrorKind::Failed, e)
    }
}

impl From<Error> for crate::error::Error {
    fn from(e: Error) -> crate::error::Error {
        crate::error::Error::internal_from("storage", e)
    }
}

/// Shorthand for storage results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------
// Rows

/// A document's row in the docs key space: the revision it points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRow {
    /// The revision's version.
    pub version: u64,
    /// Its journal index.
    pub index: u64,
    /// Whether the document is live after it (it is not a delete).
    pub live: bool,
}

impl DocRow {
    fn from_tuple((version, index, live): (u64, u64, bool)) -> DocRow {
        DocRow {
            version,
            index,
            live,
        }
    }

    fn tuple(self) -> (u64, u64, bool) {
        (self.version, self.index, self.live)
    }
}

/// Which row of a document a docs key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The row of an earlier revision, by version.
    Version(u64),
    /// The current-state row.
    Current,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::Version(v) => write!(f, "version {v}"),
            Slot::Current => f.write_str("current"),
        }
    }
}

fn slot(version: u64) -> Slot {
    if version == CURRENT {
        Slot::Current
    } else {
        Slot::Version(version)
    }
}

/// A user table's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRow {
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: u64,
    /// False once dropped (a dropped table comes back with its documents when created).
    pub active: bool,
}

/// What an idempotency key remembers: enough to answer a retry with the same receipt.
/// Stored as JSON (docs/FORMAT.md §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReceipt {
    /// Hex SHA-256 of the request (docs/FORMAT.md §9.3), to refuse a key reused for another
    /// transaction.
    pub request: String,
    /// The transaction id.
    pub tx_id: u64,
    /// The journal index of its first revision.
    pub first_index: u64,
    /// Its revisions.
    pub revisions: u32,
    /// Its commit time.
    pub commit_micros: u64,
    /// The size of the checkpoint the first answer carried.
    pub tree_size: u64,
    /// One result per operation.
    pub results: Vec<OpResult>,
}

/// The metadata of a new ledger, written once by [`Store::create`].
#[derive(Debug, Clone)]
pub struct NewLedger<'a> {
    /// The checkpoint origin and key name.
    pub origin: &'a str,
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: u64,
    /// Deletion protection.
    pub deletion_protection: bool,
    /// The signed checkpoint of the empty tree.
    pub checkpoint: &'a str,
}

/// The storage format a database declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// No format key: not a graven database, or damaged.
    Missing,
    /// A format key that is not 4 bytes.
    Malformed,
    /// A layout version.
    Version(u32),
}

/// How many tree hashes appending leaf `index` stores: the leaf hash and one node per
/// subtree the leaf completes.
pub fn stored_hashes_of(index: u64) -> usize {
    1 + index.trailing_ones() as usize
}

/// A leaves row: `u32 BE entry length || entry || hashes || body`. The hashes are the ones
/// appending this leaf stores (graven_verify::CompactRange::append_stored): the leaf hash,
/// then the node of each subtree the leaf completes, lowest level first,
/// [`stored_hashes_of`]`(index)` of them. The body is the revision's canonical JSON, empty
/// for a delete (a document is an object, so a body is never empty). It is written into
/// `row`, cleared first, so that one buffer serves a whole batch.
fn encode_leaf(row: &mut Vec<u8>, entry: &[u8], hashes: &[Hash], body: &[u8]) {
    row.clear();
    row.reserve(4 + entry.len() + 32 * hashes.len() + body.len());
    // An entry is at most 65,535 bytes (graven_verify::entry::MAX_ENTRY_BYTES).
    row.extend_from_slice(&(entry.len() as u32).to_be_bytes());
    row.extend_from_slice(entry);
    for h in hashes {
        row.extend_from_slice(&h.0);
    }
    row.extend_from_slice(body);
}

/// A leaves row taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf<'a> {
    /// The journal entry (the leaf's bytes).
    pub entry: &'a [u8],
    /// The stored tree hashes, 32 bytes each: the leaf hash first.
    pub hashes: &'a [u8],
    /// The body; empty for a delete.
    pub body: &'a [u8],
}

impl Leaf<'_> {
    /// The stored leaf hash (the row's first hash).
    pub fn leaf_hash(&self) -> Hash {
        let mut h = [0u8; 32];
        // decode_leaf guarantees at least one whole hash.
        h.copy_from_slice(&self.hashes[..32]);
        Hash(h)
    }
}

/// Splits the leaves row of leaf `index`; `None` if it is too short for its parts.
fn decode_leaf(index: u64, row: &[u8]) -> Option<Leaf<'_>> {
    let len = u32::from_be_bytes(row.get(..4)?.try_into().ok()?) as usize;
    let entry = row.get(4..4 + len)?;
    let end = 4 + len + 32 * stored_hashes_of(index);
    let hashes = row.get(4 + len..end)?;
    Some(Leaf {
        entry,
        hashes,
        body: row.get(end..)?,
    })
}

/// A leaves row as read: decode it with [`LeafRow::leaf`].
pub struct LeafRow {
    index: u64,
    guard: redb::AccessGuard<'static, &'static [u8]>,
}

impl LeafRow {
    /// Its journal index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The row taken apart, or `None` when it is too short for its entry and its
    /// [`stored_hashes_of`] hashes.
    pub fn decode(&self) -> Option<Leaf<'_>> {
        decode_leaf(self.index, self.guard.value())
    }

    /// The row taken apart; a row that does not decode is [`ErrorKind::Damaged`].
    pub fn leaf(&self) -> Result<Leaf<'_>> {
        self.decode()
            .ok_or_else(|| Error::damaged(format!("journal row {} is malformed", self.index)))
    }
}

// ---------------------------------------------------------------------------------------
// Databases

/// A ledger's database, open for reading and writing.
pub struct Store {
    db: Database,
}

impl Store {
    /// Creates the database at `path` with `ledger`'s metadata, its signed empty
    /// checkpoint and every key space, durably.
    pub fn create(path: &Path, cache_bytes: usize, ledger: &NewLedger<'_>) -> Result<Store> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        Store::initialize(db, ledger)
    }

    /// [`Store::create`] over a redb storage backend of the caller's (tests inject I/O
    /// failures this way).
    pub fn create_with_backend(
        backend: impl redb::StorageBackend,
        ledger: &NewLedger<'_>,
    ) -> Result<Store> {
        let db = Database::builder().create_with_backend(backend)?;
        Store::initialize(db, ledger)
    }

    /// [`Store::create`] in memory, over a backend whose fsync fails while `fail` is set:
    /// for tests of what the engine does when a commit cannot be made durable.
    #[cfg(test)]
    pub(crate) fn in_memory_failing_sync(
        fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
        ledger: &NewLedger<'_>,
    ) -> Result<Store> {
        Store::create_with_backend(
            FailingSync {
                inner: redb::backends::InMemoryBackend::new(),
                fail,
            },
            ledger,
        )
    }

    fn initialize(db: Database, ledger: &NewLedger<'_>) -> Result<Store> {
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_FORMAT, FORMAT_VERSION.to_be_bytes().as_slice())?;
            meta.insert(META_ORIGIN, ledger.origin.as_bytes())?;
            meta.insert(META_CREATED, ledger.created_micros.to_be_bytes().as_slice())?;
            meta.insert(
                META_PROTECTION,
                [u8::from(ledger.deletion_protection)].as_slice(),
            )?;
            meta.insert(META_CHECKPOINT, ledger.checkpoint.as_bytes())?;
            txn.open_table(LEAVES)?;
            txn.open_table(DOCS)?;
            txn.open_table(TABLES)?;
            txn.open_table(IDEMPOTENCY)?;
        }
        txn.commit()?;
        Ok(Store { db })
    }

    /// Opens the existing database at `path`, repairing it if it was not closed cleanly
    /// (redb's repair keeps every committed transaction).
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Store> {
        Ok(Store {
            db: Database::builder().set_cache_size(cache_bytes).open(path)?,
        })
    }

    /// A consistent read view of everything committed so far.
    pub fn read(&self) -> Result<Snapshot> {
        Snapshot::new(self.db.begin_read()?)
    }

    /// Begins the one write transaction; it waits for none, as the sequencer is the only
    /// writer.
    pub fn write(&self) -> Result<WriteTxn> {
        Ok(WriteTxn {
            txn: self.db.begin_write()?,
        })
    }
}

/// A ledger's database opened read-only, for the offline check: it is never modified, and
/// opening fails while a server has it open.
pub struct ReadOnlyStore {
    db: ReadOnlyDatabase,
}

impl ReadOnlyStore {
    /// Opens `path` read-only. [`ErrorKind::InUse`] while another process has it open;
    /// [`ErrorKind::NeedsRepair`] when it was not closed cleanly.
    pub fn open(path: &Path) -> Result<ReadOnlyStore> {
        Ok(ReadOnlyStore {
            db: redb::Builder::new()
                .set_cache_size(DEFAULT_CACHE_BYTES)
                .open_read_only(path)?,
        })
    }

    /// A read view of the database.
    pub fn read(&self) -> Result<Snapshot> {
        Snapshot::new(self.db.begin_read()?)
    }
}

// ---------------------------------------------------------------------------------------
// Reads

/// A consistent view of one ledger's storage: one redb read transaction.
pub struct Snapshot {
    txn: ReadTransaction,
    meta: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    leaves: redb::ReadOnlyTable<u64, &'static [u8]>,
    docs: redb::ReadOnlyTable<(&'static str, &'static str, u64), (u64, u64, bool)>,
}

impl Snapshot {
    fn new(txn: ReadTransaction) -> Result<Snapshot> {
        Ok(Snapshot {
            meta: txn.open_table(META)?,
            leaves: txn.open_table(LEAVES)?,
            docs: txn.open_table(DOCS)?,
            txn,
        })
    }

    /// The storage format the database declares.
    pub fn format(&self) -> Result<Format> {
        Ok(match self.meta.get(META_FORMAT)? {
            None => Format::Missing,
            Some(v) => match <[u8; 4]>::try_from(v.value()) {
                Ok(b) => Format::Version(u32::from_be_bytes(b)),
                Err(_) => Format::Malformed,
            },
        })
    }

    fn meta_text(&self, key: &str) -> Result<String> {
        match self.meta.get(key)? {
            None => Err(Error::damaged(format!("meta: {key} is missing"))),
            Some(v) => String::from_utf8(v.value().to_vec())
                .map_err(|_| Error::damaged(format!("meta: {key} is not UTF-8"))),
        }
    }

    /// The checkpoint origin.
    pub fn origin(&self) -> Result<String> {
        self.meta_text(META_ORIGIN)
    }

    /// The stored signed checkpoint of the journal's size.
    pub fn checkpoint(&self) -> Result<String> {
        self.meta_text(META_CHECKPOINT)
    }

    /// The creation time.
    pub fn created_micros(&self) -> Result<u64> {
        let v = self
            .meta
            .get(META_CREATED)?
            .ok_or_else(|| Error::damaged("meta: created_micros is missing"))?;
        <[u8; 8]>::try_from(v.value())
            .map(u64::from_be_bytes)
            .map_err(|_| Error::damaged("meta: created_micros is not 8 bytes"))
    }

    /// Deletion protection (on unless the byte is 0).
    pub fn deletion_protection(&self) -> Result<bool> {
        Ok(self
            .meta
            .get(META_PROTECTION)?
            .is_none_or(|v| v.value() != [0]))
    }

    /// The number of journal entries: one more than the last index.
    pub fn size(&self) -> Result<u64> {
        Ok(self.leaves.last()?.map_or(0, |(k, _)| k.value() + 1))
    }

    /// The number of leaves rows (equal to the size when none is missing).
    pub fn leaf_rows(&self) -> Result<u64> {
        Ok(self.leaves.len()?)
    }

    /// The leaves row of `index`, if there is one.
    pub fn leaf(&self, index: u64) -> Result<Option<LeafRow>> {
        Ok(self
            .leaves
            .get(index)?
            .map(|guard| LeafRow { index, guard }))
    }

    /// The leaves row of `index`; a missing one is [`ErrorKind::Damaged`].
    pub fn require_leaf(&self, index: u64) -> Result<LeafRow> {
        self.leaf(index)?
            .ok_or_else(|| Error::damaged(format!("journal row {index} is missing")))
    }

    /// Every leaves row, in index order (a gap shows as a jump in [`LeafRow::index`]).
    pub fn leaves(&self) -> Result<impl Iterator<Item = Result<LeafRow>> + '_> {
        Ok(self.leaves.range::<u64>(..)?.map(|row| {
            let (key, guard) = row?;
            Ok(LeafRow {
                index: key.value(),
                guard,
            })
        }))
    }

    /// The stored tree hashes, read from leaves rows.
    pub fn hashes(&self) -> StoredHashes<'_> {
        StoredHashes(&self.leaves)
    }

    /// The stored tree hashes through `cache`, which keeps the upper levels.
    pub fn cached_hashes<'a>(&'a self, cache: &'a UpperHashes, size: u64) -> CachedHashes<'a> {
        CachedHashes {
            table: &self.leaves,
            cache,
            size,
        }
    }

    /// The current-state row of a document.
    pub fn current(&self, table: &str, id: &str) -> Result<Option<DocRow>> {
        Ok(self
            .docs
            .get((table, id, CURRENT))?
            .map(|v| DocRow::from_tuple(v.value())))
    }

    /// The row of an earlier revision of a document, by version (`u64::MAX` is never a
    /// version).
    pub fn earlier(&self, table: &str, id: &str, version: u64) -> Result<Option<DocRow>> {
        if version == CURRENT {
            return Ok(None);
        }
        Ok(self
            .docs
            .get((table, id, version))?
            .map(|v| DocRow::from_tuple(v.value())))
    }

    /// A document's rows from version `from` on, oldest first: its earlier revisions, then
    /// its current-state row (whose version may be below `from`).
    pub fn revisions(
        &self,
        table: &str,
        id: &str,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<DocRow>> + '_> {
        Ok(self
            .docs
            .range((table, id, from)..=(table, id, CURRENT))?
            .map(|row| Ok(DocRow::from_tuple(row?.1.value()))))
    }

    /// The first document of `table` whose id is after `after` (from the table's start when
    /// `None`), with its current-state row.
    pub fn next_document(
        &self,
        table: &str,
        after: Option<&str>,
    ) -> Result<Option<(String, DocRow)>> {
        // Every document ends with its current-state row: the first row after `after`'s
        // current row, or at the table's start, begins the next document; its current row
        // is then one point read away.
        let start = match after {
            None => Bound::Included((table, "", 0)),
            Some(id) => Bound::Excluded((table, id, CURRENT)),
        };
        let next = self
            .docs
            .range::<(&str, &str, u64)>((start, Bound::Unbounded))?
            .next();
        let Some(row) = next else {
            return Ok(None);
        };
        let (key, value) = row?;
        let (t, id, version) = key.value();
        if t != table {
            return Ok(None);
        }
        let id = id.to_owned();
        let current = if version == CURRENT {
            DocRow::from_tuple(value.value())
        } else {
            self.current(table, &id)?.ok_or_else(|| {
                Error::damaged(format!("document {id:?} has no current-state row"))
            })?
        };
        Ok(Some((id, current)))
    }

    /// Every docs row in key order: (table, id, slot) and the row.
    pub fn doc_rows(&self) -> Result<impl Iterator<Item = Result<(DocKey, DocRow)>> + '_> {
        Ok(self.docs.range::<(&str, &str, u64)>(..)?.map(|row| {
            let (key, value) = row?;
            let (table, id, version) = key.value();
            Ok((
                DocKey {
                    table: table.to_owned(),
                    id: id.to_owned(),
                    slot: slot(version),
                },
                DocRow::from_tuple(value.value()),
            ))
        }))
    }

    /// The number of docs rows.
    pub fn doc_row_count(&self) -> Result<u64> {
        Ok(self.docs.len()?)
    }

    /// A table's row.
    pub fn table(&self, name: &str) -> Result<Option<TableRow>> {
        let tables = self.txn.open_table(TABLES)?;
        Ok(tables.get(name)?.map(|v| table_row(v.value())))
    }

    /// Every table's row, by name.
    pub fn tables(&self) -> Result<Vec<(String, TableRow)>> {
        let tables = self.txn.open_table(TABLES)?;
        tables
            .iter()?
            .map(|row| {
                let (name, value) = row?;
                Ok((name.value().to_owned(), table_row(value.value())))
            })
            .collect()
    }
}

fn table_row((created_micros, active): (u64, bool)) -> TableRow {
    TableRow {
        created_micros,
        active,
    }
}

/// A docs key, as [`Snapshot::doc_rows`] walks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocKey {
    /// The table.
    pub table: String,
    /// The document id.
    pub id: String,
    /// Which of the document's rows.
    pub slot: Slot,
}

// ---------------------------------------------------------------------------------------
// Writes

/// A write transaction: nothing of it is visible until [`WriteTxn::commit`], and all of
/// it then.
pub struct WriteTxn {
    txn: WriteTransaction,
}

impl WriteTxn {
    /// Every key space, open for this transaction. Drop it before committing.
    pub fn writer(&self) -> Result<Writer<'_>> {
        Ok(Writer {
            meta: self.txn.open_table(META)?,
            leaves: self.txn.open_table(LEAVES)?,
            docs: self.txn.open_table(DOCS)?,
            tables: self.txn.open_table(TABLES)?,
            idempotency: self.txn.open_table(IDEMPOTENCY)?,
            row: Vec::new(),
            hashes: Vec::new(),
        })
    }

    /// Makes the commit durable only together with a later durable one (fsync skipped).
    /// For bulk loads that are only put in place once their last commit is durable.
    pub fn defer_durability(&mut self) -> Result<()> {
        Ok(self.txn.set_durability(Durability::None)?)
    }

    /// Commits: durable (fsynced) when this returns, unless deferred.
    pub fn commit(self) -> Result<()> {
        Ok(self.txn.commit()?)
    }

    /// Abandons the transaction: nothing of it is written.
    pub fn abort(self) -> Result<()> {
        Ok(self.txn.abort()?)
    }
}

/// The key spaces of one write transaction.
pub struct Writer<'t> {
    meta: Table<'t, &'static str, &'static [u8]>,
    leaves: Table<'t, u64, &'static [u8]>,
    docs: Table<'t, (&'static str, &'static str, u64), (u64, u64, bool)>,
    tables: Table<'t, &'static str, (u64, bool)>,
    idempotency: Table<'t, &'static str, &'static [u8]>,
    /// Buffers reused from one appended revision to the next.
    row: Vec<u8>,
    hashes: Vec<Hash>,
}

/// One revision to append with [`Writer::append_revision`].
#[derive(Debug, Clone, Copy)]
pub struct NewRevision<'a> {
    /// The encoded journal entry (the leaf's bytes).
    pub entry: &'a [u8],
    /// Its canonical JSON; empty for a delete.
    pub body: &'a [u8],
    /// The document's table.
    pub table: &'a str,
    /// The document's id.
    pub id: &'a str,
    /// The entry's version.
    pub version: u64,
    /// Whether the document is live after it (not a delete).
    pub live: bool,
    /// The document's current-state row before this revision.
    pub previous: Option<DocRow>,
}

impl Writer<'_> {
    /// Writes `rev` at journal index `range.size()` and returns that index: its leaves row
    /// (the entry, the tree hashes it completes, its body), and its docs rows: the revision
    /// it replaces gets a row of its own version, and the current-state row points at this
    /// one. `range` grows by the leaf. The one way revisions are stored: by the sequencer,
    /// and by `graven import`.
    pub fn append_revision(
        &mut self,
        range: &mut CompactRange,
        rev: &NewRevision<'_>,
    ) -> Result<u64> {
        let index = range.size();
        self.hashes.clear();
        let hashes = &mut self.hashes;
        range.append_stored(leaf_hash(rev.entry), |_, h| hashes.push(h));
        encode_leaf(&mut self.row, rev.entry, &self.hashes, rev.body);
        self.leaves.insert(index, self.row.as_slice())?;
        if let Some(old) = rev.previous {
            self.docs
                .insert((rev.table, rev.id, old.version), old.tuple())?;
        }
        let now = DocRow {
            version: rev.version,
            index,
            live: rev.live,
        };
        self.docs
            .insert((rev.table, rev.id, CURRENT), now.tuple())?;
        Ok(index)
    }

    /// The current-state row of a document, as this transaction has it.
    pub fn current(&self, table: &str, id: &str) -> Result<Option<DocRow>> {
        Ok(self
            .docs
            .get((table, id, CURRENT))?
            .map(|v| DocRow::from_tuple(v.value())))
    }

    /// A table's row, as this transaction has it.
    pub fn table(&self, name: &str) -> Result<Option<TableRow>> {
        Ok(self.tables.get(name)?.map(|v| table_row(v.value())))
    }

    /// Writes a table's row.
    pub fn put_table(&mut self, name: &str, row: TableRow) -> Result<()> {
        self.tables.insert(name, (row.created_micros, row.active))?;
        Ok(())
    }

    /// Stores the signed checkpoint of the journal's new size.
    pub fn put_checkpoint(&mut self, note: &str) -> Result<()> {
        self.meta.insert(META_CHECKPOINT, note.as_bytes())?;
        Ok(())
    }

    /// Sets deletion protection.
    pub fn put_deletion_protection(&mut self, on: bool) -> Result<()> {
        self.meta
            .insert(META_PROTECTION, [u8::from(on)].as_slice())?;
        Ok(())
    }

    /// The receipt an idempotency key remembers.
    pub fn receipt(&self, key: &str) -> Result<Option<StoredReceipt>> {
        match self.idempotency.get(key)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(|e| {
                Error::damaged(format!("the stored receipt of an idempotency key: {e}"))
            }),
        }
    }

    /// Remembers `receipt` under an idempotency key.
    pub fn put_receipt(&mut self, key: &str, receipt: &StoredReceipt) -> Result<()> {
        let json = serde_json::to_vec(receipt).map_err(|e| Error {
            kind: ErrorKind::Failed,
            message: format!("encoding a receipt: {e}"),
            source: Some(Box::new(e)),
        })?;
        self.idempotency.insert(key, json.as_slice())?;
        Ok(())
    }

    /// The stored tree hashes, as this transaction has them.
    pub fn hashes(&self) -> StoredHashes<'_, Table<'_, u64, &'static [u8]>> {
        StoredHashes(&self.leaves)
    }
}

/// An in-memory redb backend whose fsync fails while `fail` is set.
#[cfg(test)]
#[derive(Debug)]
struct FailingSync {
    inner: redb::backends::InMemoryBackend,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(test)]
impl redb::StorageBackend for FailingSync {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write(offset, data)
    }
}

// ---------------------------------------------------------------------------------------
// Stored tree hashes

/// Reads the stored hash at stored-hash index `i` from a leaves table: its level and the
/// hash.
fn read_stored_hash<T: ReadableTable<u64, &'static [u8]>>(table: &T, i: u64) -> Result<(u8, Hash)> {
    let (record, level) = split_stored_hash_index(i);
    let row = table
        .get(record)?
        .ok_or_else(|| Error::damaged(format!("journal row {record} is missing")))?;
    let leaf = decode_leaf(record, row.value())
        .ok_or_else(|| Error::damaged(format!("journal row {record} is malformed")))?;
    let at = usize::from(level) * 32;
    let mut hash = [0u8; 32];
    hash.copy_from_slice(leaf.hashes.get(at..at + 32).ok_or_else(|| {
        Error::damaged(format!("journal row {record} lacks its level {level} hash"))
    })?);
    Ok((level, Hash(hash)))
}

/// Stored tree hashes read from leaves rows.
pub struct StoredHashes<'a, T = redb::ReadOnlyTable<u64, &'static [u8]>>(&'a T);

impl<T: ReadableTable<u64, &'static [u8]>> HashReader for StoredHashes<'_, T> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> std::result::Result<Vec<Hash>, Box<dyn std::error::Error + Send + Sync>> {
        indexes
            .iter()
            .map(|&i| Ok(read_stored_hash(self.0, i)?.1))
            .collect()
    }
}

/// The lowest level [`UpperHashes`] keeps: subtrees of 16 leaves and more, while they fit.
/// Below it a proof's hashes lie within 15 rows of the leaf, mostly on the leaf's own page.
const UPPER_LEVEL: u8 = 4;
/// Most hashes [`UpperHashes`] keeps (8 MiB of hashes; about 21 MiB in the map). When full
/// it starts again empty.
const UPPER_MAX: usize = 1 << 18;

/// The lowest level cached for a tree of `size` leaves: [`UPPER_LEVEL`], raised until all
/// nodes of that level and above (about `2 * size / 2^level`) fit in [`UPPER_MAX`].
fn upper_level(size: u64) -> u8 {
    let mut level = UPPER_LEVEL;
    while level < 63 && (size >> level).saturating_mul(2) > UPPER_MAX as u64 {
        level += 1;
    }
    level
}

/// Tree hashes of large subtrees (level [`upper_level`] and up), kept in memory once read.
///
/// A proof of a random leaf of an n-leaf tree needs about log2(n) stored hashes. The low
/// ones lie in rows near the leaf; the high ones each sit in a different row, far apart,
/// so from storage each costs a B-tree descent to a page that holds little else of use,
/// and together they are more pages than a page cache keeps. There are only about two per 16
/// leaves, every proof wants some, and a stored hash never changes once committed (the
/// journal is append-only, and readers see only committed snapshots), so a copy here can
/// never be stale. Memory: at most [`UPPER_MAX`] hashes (about 21 MiB with the map), which
/// holds levels 4 and up to 2M leaves, 7 and up at 10M, and so on.
#[derive(Debug, Default)]
pub struct UpperHashes(std::sync::Mutex<std::collections::HashMap<u64, Hash>>);

/// Stored tree hashes read through an [`UpperHashes`] cache.
pub struct CachedHashes<'a> {
    table: &'a redb::ReadOnlyTable<u64, &'static [u8]>,
    cache: &'a UpperHashes,
    /// The snapshot's journal size (it sets the lowest level cached).
    size: u64,
}

impl HashReader for CachedHashes<'_> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> std::result::Result<Vec<Hash>, Box<dyn std::error::Error + Send + Sync>> {
        let mut found: Vec<Option<Hash>> = {
            let map = self
                .cache
                .0
                .lock()
                .map_err(|_| "hash cache lock poisoned")?;
            indexes.iter().map(|i| map.get(i).copied()).collect()
        };
        let lowest = upper_level(self.size);
        let mut fresh = Vec::new();
        for (slot, &i) in found.iter_mut().zip(indexes) {
            if slot.is_none() {
                let (level, hash) = read_stored_hash(self.table, i)?;
                if level >= lowest {
                    fresh.push((i, hash));
                }
                *slot = Some(hash);
            }
        }
        if !fresh.is_empty() {
            let mut map = self
                .cache
                .0
                .lock()
                .map_err(|_| "hash cache lock poisoned")?;
            if map.len() + fresh.len() > UPPER_MAX {
                map.clear();
            }
            map.extend(fresh);
        }
        Ok(found.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graven_verify::{CompactRange, leaf_hash, prove_inclusion, stored_hash_index};

    /// A ledger-shaped store of `n` leaves, in a temporary redb file.
    fn journal(n: u64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::create(
            &dir.path().join("t.redb"),
            DEFAULT_CACHE_BYTES,
            &NewLedger {
                origin: "test",
                created_micros: 0,
                deletion_protection: false,
                checkpoint: "",
            },
        )
        .expect("create");
        let txn = store.write().expect("write");
        {
            let mut w = txn.writer().expect("writer");
            let mut range = CompactRange::new();
            for i in 0..n {
                let entry = i.to_be_bytes();
                w.append_revision(
                    &mut range,
                    &NewRevision {
                        entry: &entry,
                        body: b"{}",
                        table: "t",
                        id: "x",
                        version: i,
                        live: true,
                        previous: None,
                    },
                )
                .expect("append");
            }
        }
        txn.commit().expect("commit");
        (dir, store)
    }

    #[test]
    fn cached_hashes_match_storage_and_keep_only_upper_levels() {
        let (_dir, store) = journal(1024);
        let cache = UpperHashes::default();
        {
            let snap = store.read().expect("read");
            let cached = snap.cached_hashes(&cache, 1024);
            for index in [0, 1, 255, 256, 700, 1023] {
                let a = prove_inclusion(index, 1024, &snap.hashes()).expect("proof");
                let b = prove_inclusion(index, 1024, &cached).expect("cached proof");
                assert_eq!(a, b, "leaf {index}");
            }
        }
        // Subtrees of 16 leaves and more were needed: cached; nothing below level 4 is.
        let map = cache.0.lock().expect("lock");
        assert!(!map.is_empty());
        for &i in map.keys() {
            assert!(
                split_stored_hash_index(i).1 >= UPPER_LEVEL,
                "stored index {i}"
            );
        }
        assert_eq!(upper_level(1024), UPPER_LEVEL);
        assert_eq!(upper_level(1 << 21), UPPER_LEVEL); // 2^17 nodes of level 4: all fit
        assert_eq!(upper_level(1 << 22), UPPER_LEVEL + 1);
        assert_eq!(upper_level(10_000_000), 7);
        for size in [1u64 << 30, u64::MAX] {
            assert!((size >> upper_level(size)) * 2 <= UPPER_MAX as u64);
        }
        drop(map);

        // A cached hash is answered from memory: change the row under it and the cache
        // still gives the hash first read (storage is append-only; this only shows the
        // cache is what answers).
        let upper = stored_hash_index(8, 1); // the subtree [256, 512), written by leaf 511
        let before = {
            let snap = store.read().expect("read");
            snap.hashes().read_hashes(&[upper]).expect("read")[0]
        };
        assert_eq!(cache.0.lock().expect("lock").get(&upper), Some(&before));
        let txn = store.write().expect("write");
        {
            let mut w = txn.writer().expect("writer");
            let mut row = w
                .leaves
                .get(511)
                .expect("get")
                .expect("row")
                .value()
                .to_vec();
            let at = 4 + 8 + 8 * 32; // entry length, entry, levels 0 to 7
            row[at] ^= 1;
            w.leaves.insert(511, row.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
        let snap = store.read().expect("read");
        let stored = snap.hashes().read_hashes(&[upper]).expect("read")[0];
        assert_ne!(stored, before, "the row was changed");
        let cached = snap.cached_hashes(&cache, 1024);
        assert_eq!(cached.read_hashes(&[upper]).expect("read")[0], before);
    }

    #[test]
    fn leaf_rows_round_trip_and_reject_garbage() {
        let hashes = [leaf_hash(b"a"), leaf_hash(b"b")];
        // Leaf 1 completes the subtree [0, 2): two hashes.
        let mut row = Vec::new();
        encode_leaf(&mut row, b"entry", &hashes, b"{}");
        let leaf = decode_leaf(1, &row).expect("decodes");
        assert_eq!(leaf.entry, b"entry");
        assert_eq!(leaf.hashes.len(), 64);
        assert_eq!(&leaf.hashes[32..], &hashes[1].0);
        assert_eq!(leaf.leaf_hash(), hashes[0]);
        assert_eq!(leaf.body, b"{}");
        // Read as leaf 0 (one hash), the second hash is taken for the body: the caller
        // must pass the row's own index.
        assert_eq!(decode_leaf(0, &row).expect("decodes").body.len(), 34);
        let mut delete = Vec::new();
        encode_leaf(&mut delete, b"entry", &hashes[..1], b"");
        assert_eq!(decode_leaf(0, &delete).expect("decodes").body, b"");
        // Too short for its hashes, or for its entry.
        assert!(decode_leaf(1, &delete).is_none());
        assert!(decode_leaf(0, &row[..4 + 5 + 31]).is_none());
        assert!(decode_leaf(0, &[0, 0, 0]).is_none());
        assert!(decode_leaf(0, &[0, 0, 1, 0]).is_none());
    }

    /// Regression: the change stream took a filtered revision's leaf hash from a slice of
    /// the row with `unwrap_or_default`, so a row too short for its hashes would have been
    /// streamed with an all-zero leaf hash. A row that does not decode is damage, named.
    #[test]
    fn a_short_row_is_damage_not_a_zero_hash() {
        let (_dir, store) = journal(2);
        let txn = store.write().expect("write");
        {
            let mut w = txn.writer().expect("writer");
            // Leaf 1 must hold two hashes; this row has an entry and half a hash.
            let mut row = Vec::new();
            encode_leaf(&mut row, b"entry", &[], &[0u8; 16]);
            w.leaves.insert(1, row.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
        let snap = store.read().expect("read");
        let row = snap.require_leaf(1).expect("the row is there");
        assert!(row.decode().is_none());
        let e = row.leaf().expect_err("too short");
        assert_eq!(e.kind(), ErrorKind::Damaged);
        assert_eq!(e.to_string(), "journal row 1 is malformed");
        let e = snap.require_leaf(2).err().expect("missing");
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (ErrorKind::Damaged, "journal row 2 is missing")
        );
    }

    #[test]
    fn documents_and_scans() {
        let (_dir, store) = journal(0);
        let txn = store.write().expect("write");
        {
            let mut w = txn.writer().expect("writer");
            let mut range = CompactRange::new();
            let mut put = |w: &mut Writer<'_>, id: &str, version: u64, live: bool| {
                let previous = w.current("t", id).expect("current");
                w.append_revision(
                    &mut range,
                    &NewRevision {
                        entry: id.as_bytes(),
                        body: if live { b"{}" } else { b"" },
                        table: "t",
                        id,
                        version,
                        live,
                        previous,
                    },
                )
                .expect("append")
            };
            put(&mut w, "b", 0, true);
            put(&mut w, "a", 0, true);
            put(&mut w, "b", 1, true);
            put(&mut w, "b", 2, false);
            w.put_table(
                "t",
                TableRow {
                    created_micros: 7,
                    active: true,
                },
            )
            .expect("table");
        }
        txn.commit().expect("commit");
        let snap = store.read().expect("read");
        assert_eq!(snap.size().expect("size"), 4);
        let b = snap.current("t", "b").expect("current").expect("b");
        assert_eq!((b.version, b.index, b.live), (2, 3, false));
        assert_eq!(
            snap.earlier("t", "b", 1).expect("v1").map(|r| r.index),
            Some(2)
        );
        assert_eq!(snap.earlier("t", "b", CURRENT).expect("never"), None);
        let versions: Vec<u64> = snap
            .revisions("t", "b", 1)
            .expect("range")
            .map(|r| r.expect("row").version)
            .collect();
        assert_eq!(versions, [1, 2]);
        let first = snap.next_document("t", None).expect("next").expect("a");
        assert_eq!(first.0, "a");
        let second = snap
            .next_document("t", Some("a"))
            .expect("next")
            .expect("b");
        assert_eq!((second.0.as_str(), second.1.index), ("b", 3));
        assert_eq!(snap.next_document("t", Some("b")).expect("next"), None);
        assert_eq!(snap.next_document("u", None).expect("next"), None);
        assert_eq!(snap.doc_row_count().expect("count"), 4);
        assert_eq!(
            snap.table("t").expect("table"),
            Some(TableRow {
                created_micros: 7,
                active: true
            })
        );
    }
}
