//! One ledger's storage: the key spaces, their encodings, and the typed reads and writes
//! the engine makes, over a [`Backend`] (the interface of `backend.rs`; redb in `redb.rs`,
//! the only module that names redb).
//!
//! Every key space is ordered bytes to bytes; the encodings here make them sort the way the
//! engine reads them (integers big-endian, composite keys joined by a 0x00 byte that no
//! name or id contains). The layout keeps what one commit writes together: a leaf's entry
//! and the tree hashes it creates share one row, appended at the right edge; a document's
//! current state and its revisions share one key space, side by side. docs/FORMAT.md §9
//! documents every key space byte by byte.
//!
//! Reads go through a [`Snapshot`] (a backend view: consistent, never waiting for the
//! writer). Writes go through a [`Writer`]: a snapshot plus the batch's own writes, which
//! it reads back before the snapshot, committed as one atomic batch conditional on the
//! journal's size when the writer began. Nothing here decides policy; rows it cannot decode
//! are [`ErrorKind::Damaged`].

mod backend;
mod index;
pub mod postgres;
mod postgres_tls;
pub mod redb;
mod state;

pub use state::DEFAULT_STATE_FLUSH;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::path::Path;

use graven_verify::{CompactRange, Hash, HashReader, leaf_hash, split_stored_hash_index};
use serde::{Deserialize, Serialize};

pub use backend::{Backend, Batch, Claim, Holder, Lease, Leases, Read, Rows, Space, View};
pub use index::{DefState, DefsCache, IndexDef, IndexEntry, ValueRange, encode_value, value_at};

use crate::model::OpResult;

// ---------------------------------------------------------------------------------------
// The key spaces

/// Every key space, by name; a [`Space`] is a position in this list. A new key space is a
/// new name here (and its encodings below): backends need no change.
pub const SPACES: &[&str] = &[
    "meta",
    "leaves",
    "docs",
    "tables",
    "idempotency",
    "index_defs",
    "index_entries",
    "state",
];
/// Settings and the latest checkpoint, by name (see the `META_*` keys).
const META: Space = Space(0);
/// One row per journal entry, by journal index (u64 BE): the entry, the tree hashes it
/// creates and the document body; see [`encode_leaf`].
const LEAVES: Space = Space(1);
/// Documents, by [`doc_key`]: `(table, id, CURRENT)` -> [`DocRow`] of the current
/// revision, and `(table, id, version)` -> the same for every earlier revision. (The
/// current revision has no row of its own version: an insert writes one row, not two.)
const DOCS: Space = Space(2);
/// User tables: name -> [`TableRow`].
const TABLES: Space = Space(3);
/// Idempotency keys: key -> the stored receipt ([`StoredReceipt`], JSON).
const IDEMPOTENCY: Space = Space(4);
/// Index definitions, by `u32 BE` id: [`IndexDef`] as JSON.
const INDEX_DEFS: Space = Space(5);
/// Index entries: `u32 BE index id || encoded value || document id` -> empty (see
/// `index.rs`).
const INDEX_ENTRIES: Space = Space(6);

/// The state map's interior nodes, by `graven_verify::map_nodes::node_position` -> the
/// node's stored form (see `state.rs`).
const STATE: Space = Space(7);

/// The version slot of a document's current-state row: it sorts after every revision of
/// the document.
const CURRENT: u64 = u64::MAX;

/// Storage layout version (u32, big-endian). Bumped on any incompatible change.
const META_FORMAT: &[u8] = b"format";
/// The checkpoint origin and key name (UTF-8).
const META_ORIGIN: &[u8] = b"origin";
/// Creation time, microseconds since the Unix epoch (u64, big-endian).
const META_CREATED: &[u8] = b"created_micros";
/// Deletion protection: one byte, 1 on, 0 off.
const META_PROTECTION: &[u8] = b"deletion_protection";
/// The signed checkpoint of the journal's current size (UTF-8 note text).
const META_CHECKPOINT: &[u8] = b"checkpoint";

/// The layout version this build writes and reads (docs/FORMAT.md §9 has the history).
pub const FORMAT_VERSION: u32 = 7;

/// The redb page cache of a ledger opened with default settings, in bytes: the least
/// the server gives a ledger (see [`server_cache_bytes`]).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The page cache `graven serve` gives each ledger unless told: a sixteenth of the
/// machine's memory, between 64 MiB and 4 GiB. A read that misses the cache reads the
/// page from the file (the kernel's page cache, at best) into a fresh buffer; on a
/// table of a million documents a 64 MiB cache missed on most lookups, which cost a
/// fifth of an indexed query's time (BENCHMARKS.md). The cache fills only as pages are
/// read, so an idle or small ledger takes little of it.
pub fn server_cache_bytes() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib.saturating_mul(1024))
        })
        .unwrap_or(0);
    let share = usize::try_from(total / 16).unwrap_or(usize::MAX);
    share.clamp(DEFAULT_CACHE_BYTES, 4 << 30)
}

// ---------------------------------------------------------------------------------------
// Errors

/// What kind of storage failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The data is not what graven wrote: a damaged page, a missing key space, a row that
    /// does not decode.
    Damaged,
    /// Another process has the database open.
    InUse,
    /// The database was not closed cleanly and must be opened read-write once so that redb
    /// repairs it.
    NeedsRepair,
    /// A batch's condition did not hold: another writer extended the journal.
    Conflict,
    /// The storage could not be reached (a database down or restarting, a network
    /// failure): a commit's fate is then unknown until it is read back.
    Unavailable,
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

    /// A failure of `kind`, described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    fn damaged(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Damaged, message)
    }

    /// A failure of `kind` caused by `e`, described as `e` is.
    pub fn caused(kind: ErrorKind, e: impl std::error::Error + Send + Sync + 'static) -> Error {
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

impl From<Error> for crate::error::Error {
    fn from(e: Error) -> crate::error::Error {
        use crate::error::{Error as EngineError, ErrorKind as Engine};
        match e.kind {
            ErrorKind::Unavailable => {
                EngineError::caused(Engine::Unavailable, "the storage is unavailable", e)
            }
            _ => EngineError::internal_from("storage", e),
        }
    }
}

/// Shorthand for storage results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------
// Rows and their encodings

/// A u64 as a key or value: 8 bytes, big-endian (so that keys sort numerically).
fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// The u64 of 8 big-endian bytes.
fn read_be(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// A docs key: `table || 0x00 || id || 0x00 || u64 BE version` (version [`CURRENT`] for
/// the current-state row). Names and ids hold no 0x00 (`model::check_*`), so keys sort as
/// `(table, id, version)` do.
fn doc_key(table: &str, id: &str, version: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(table.len() + id.len() + 10);
    key.extend_from_slice(table.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key.extend_from_slice(&be(version));
    key
}

/// The first key after every docs key of `table`.
fn table_end(table: &str) -> Vec<u8> {
    let mut key = table.as_bytes().to_vec();
    key.push(1);
    key
}

/// A docs key taken apart.
fn split_doc_key(key: &[u8]) -> Result<(String, String, u64)> {
    let bad = || Error::damaged(format!("docs key {} is malformed", hex::encode(key)));
    let cut = key.iter().position(|&b| b == 0).ok_or_else(bad)?;
    let rest = key.get(cut + 1..).ok_or_else(bad)?;
    let id_len = rest.len().checked_sub(9).ok_or_else(bad)?;
    if rest[id_len] != 0 {
        return Err(bad());
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
    let version = read_be(&rest[id_len + 1..]).ok_or_else(bad)?;
    Ok((text(&key[..cut])?, text(&rest[..id_len])?, version))
}

/// A document's row in the docs key space: the revision it points at. Stored as
/// `u64 BE version || u64 BE index || u8 live`.
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
    fn encode(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17);
        v.extend_from_slice(&be(self.version));
        v.extend_from_slice(&be(self.index));
        v.push(u8::from(self.live));
        v
    }

    fn decode(bytes: &[u8]) -> Result<DocRow> {
        match bytes {
            [v @ .., live] if v.len() == 16 && *live <= 1 => Ok(DocRow {
                version: read_be(&v[..8]).unwrap_or_default(),
                index: read_be(&v[8..]).unwrap_or_default(),
                live: *live == 1,
            }),
            _ => Err(Error::damaged(format!(
                "docs row {} is malformed",
                hex::encode(bytes)
            ))),
        }
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

/// A user table's row: `u64 BE created µs || u8 active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRow {
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: u64,
    /// False once dropped (a dropped table comes back with its documents when created).
    pub active: bool,
}

impl TableRow {
    fn encode(self) -> Vec<u8> {
        let mut v = be(self.created_micros).to_vec();
        v.push(u8::from(self.active));
        v
    }

    fn decode(bytes: &[u8]) -> Result<TableRow> {
        match bytes {
            [c @ .., active] if c.len() == 8 && *active <= 1 => Ok(TableRow {
                created_micros: read_be(c).unwrap_or_default(),
                active: *active == 1,
            }),
            _ => Err(Error::damaged(format!(
                "tables row {} is malformed",
                hex::encode(bytes)
            ))),
        }
    }
}

/// What an idempotency key remembers: enough to answer a retry with the same receipt.
/// Stored as JSON (docs/FORMAT.md §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReceipt {
    /// Hex SHA-256 of the request (docs/FORMAT.md §9.7), to refuse a key reused for another
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
/// for a delete (a document is an object, so a body is never empty).
fn encode_leaf(entry: &[u8], hashes: &[Hash], body: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(4 + entry.len() + 32 * hashes.len() + body.len());
    // An entry is at most 65,535 bytes (graven_verify::entry::MAX_ENTRY_BYTES).
    row.extend_from_slice(&(entry.len() as u32).to_be_bytes());
    row.extend_from_slice(entry);
    for h in hashes {
        row.extend_from_slice(&h.0);
    }
    row.extend_from_slice(body);
    row
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRow {
    index: u64,
    row: Vec<u8>,
}

impl LeafRow {
    /// Its journal index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The row taken apart, or `None` when it is too short for its entry and its
    /// [`stored_hashes_of`] hashes.
    pub fn decode(&self) -> Option<Leaf<'_>> {
        decode_leaf(self.index, &self.row)
    }

    /// The row taken apart; a row that does not decode is [`ErrorKind::Damaged`].
    pub fn leaf(&self) -> Result<Leaf<'_>> {
        self.decode()
            .ok_or_else(|| Error::damaged(format!("journal row {} is malformed", self.index)))
    }
}

/// The journal index of a leaves key.
fn leaf_index(key: &[u8]) -> Result<u64> {
    read_be(key)
        .ok_or_else(|| Error::damaged(format!("leaves key {} is malformed", hex::encode(key))))
}

// ---------------------------------------------------------------------------------------
// Stores

/// Where ledgers keep their key spaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Location {
    /// The embedded backend: a redb file in each ledger's folder.
    #[default]
    Embedded,
    /// A PostgreSQL database, by URL (`postgresql://USER@HOST:PORT/DB`, or key=value
    /// settings), shared by every ledger (and server) that uses it.
    Postgres(String),
}

/// A ledger's storage, over its backend.
pub struct Store {
    backend: Box<dyn Backend>,
    /// The state map's records changed since they were last written (see `state.rs`).
    overlay: std::sync::Arc<state::Overlay>,
}

impl Store {
    /// Creates the embedded (redb) database at `path` with `ledger`'s metadata and its
    /// signed empty checkpoint, durably.
    pub fn create(path: &Path, cache_bytes: usize, ledger: &NewLedger<'_>) -> Result<Store> {
        let backend = redb::RedbBackend::create(path, cache_bytes, SPACES)?;
        Store::initialize(Box::new(backend), ledger)
    }

    /// [`Store::create`] in memory, over a redb backend whose fsync fails while `fail` is
    /// set: for tests of what the engine does when a commit cannot be made durable.
    #[cfg(test)]
    pub(crate) fn in_memory_failing_sync(
        fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
        ledger: &NewLedger<'_>,
    ) -> Result<Store> {
        let backend = redb::RedbBackend::create_with(redb::FailingSync::new(fail), SPACES)?;
        Store::initialize(Box::new(backend), ledger)
    }

    /// A new ledger's storage over any backend: for tests of how the engine meets what a
    /// backend may do.
    #[cfg(test)]
    pub(crate) fn create_over(backend: Box<dyn Backend>, ledger: &NewLedger<'_>) -> Result<Store> {
        Store::initialize(backend, ledger)
    }

    fn over(backend: Box<dyn Backend>) -> Store {
        Store {
            backend,
            overlay: std::sync::Arc::new(state::Overlay::new()),
        }
    }

    fn initialize(backend: Box<dyn Backend>, ledger: &NewLedger<'_>) -> Result<Store> {
        let store = Store::over(backend);
        let mut w = store.write()?;
        w.put(META, META_FORMAT, FORMAT_VERSION.to_be_bytes().to_vec());
        w.put(META, META_ORIGIN, ledger.origin.as_bytes().to_vec());
        w.put(META, META_CREATED, be(ledger.created_micros).to_vec());
        w.put_deletion_protection(ledger.deletion_protection);
        w.put_checkpoint(ledger.checkpoint);
        w.commit()?;
        Ok(store)
    }

    /// Creates ledger `name`'s storage at `location`: the redb file `file` when embedded,
    /// its key spaces in the database otherwise, which must hold none of them yet.
    pub fn create_at(
        location: &Location,
        file: &Path,
        name: &str,
        cache_bytes: usize,
        ledger: &NewLedger<'_>,
    ) -> Result<Store> {
        match location {
            Location::Embedded => Store::create(file, cache_bytes, ledger),
            Location::Postgres(url) => {
                let backend = postgres::PostgresBackend::connect(url, name, SPACES)?;
                if backend.view()?.get(META, META_FORMAT)?.is_some() {
                    return Err(Error::new(
                        ErrorKind::Failed,
                        format!(
                            "the database already holds a ledger {name:?}: delete it there, \
                             or import it with its key"
                        ),
                    ));
                }
                Store::initialize(Box::new(backend), ledger)
            }
        }
    }

    /// Opens ledger `name`'s storage at `location` (the redb file `file` when embedded).
    pub fn open_at(
        location: &Location,
        file: &Path,
        name: &str,
        cache_bytes: usize,
    ) -> Result<Store> {
        match location {
            Location::Embedded => Store::open(file, cache_bytes),
            Location::Postgres(url) => Ok(Store::over(Box::new(
                postgres::PostgresBackend::connect(url, name, SPACES)?,
            ))),
        }
    }

    /// Opens ledger `name`'s storage at `location` for the offline check: the redb file
    /// `file` read-only when embedded (see [`Store::open_read_only`]).
    pub fn open_to_check(location: &Location, file: &Path, name: &str) -> Result<Store> {
        match location {
            Location::Embedded => Store::open_read_only(file),
            // A PostgreSQL view is a read-only transaction.
            Location::Postgres(_) => Store::open_at(location, file, name, DEFAULT_CACHE_BYTES),
        }
    }

    /// Whether the storage at `location` answers: always, when embedded; for a database,
    /// a new connection and a trivial query.
    pub fn reachable(location: &Location) -> Result<()> {
        match location {
            Location::Embedded => Ok(()),
            Location::Postgres(url) => postgres::PostgresBackend::ping(url),
        }
    }

    /// Removes ledger `name`'s key spaces from `location` (an embedded ledger's go with its
    /// folder, which the caller removes).
    pub fn destroy_at(location: &Location, name: &str) -> Result<()> {
        match location {
            Location::Embedded => Ok(()),
            Location::Postgres(url) => postgres::PostgresBackend::destroy(url, name),
        }
    }

    /// Opens the existing embedded database at `path`, repairing it if it was not closed
    /// cleanly (redb's repair keeps every committed transaction).
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Store> {
        Ok(Store::over(Box::new(redb::RedbBackend::open(
            path,
            cache_bytes,
            SPACES,
        )?)))
    }

    /// Opens the embedded database at `path` read-only, for the offline check: it is never
    /// modified. [`ErrorKind::InUse`] while another process has it open;
    /// [`ErrorKind::NeedsRepair`] when it was not closed cleanly.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        Ok(Store::over(Box::new(redb::RedbBackend::open_read_only(
            path,
            DEFAULT_CACHE_BYTES,
            SPACES,
        )?)))
    }

    /// Brings a ledger of layout 3 or 4 to this build's: true if it did. Layout 4 added
    /// the index key spaces, which a backend creates empty when it opens; 5 gives each
    /// index entry its document's current row ([`Store::upgrade_index_entries`]), then
    /// writes the format. Any other layout is left as it is, for the open's checks to
    /// name.
    pub fn upgrade(&self) -> Result<bool> {
        let from = match self.read()?.format()? {
            Format::Version(v @ 3..=6) => v,
            _ => return Ok(false),
        };
        if from < 5 {
            self.upgrade_index_entries()?;
        }
        if from < 6 {
            // The map is built at the journal's size, which stays put meanwhile.
            self.declare_state_flushed(false)?;
            self.build_state()
        } else {
            self.declare_state_flushed(true)
        }
        .map(|()| true)
    }

    /// A consistent read view of everything committed so far.
    pub fn read(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            remote: self.backend.remote(),
            view: self.backend.view()?,
            ahead: std::sync::Mutex::new(HashMap::new()),
            overlay: self.overlay.clone(),
            state_at: std::sync::OnceLock::new(),
        })
    }

    /// Whether the storage is [across a network](Backend::remote).
    pub fn remote(&self) -> bool {
        self.backend.remote()
    }

    /// Whether the ledger is in the storage now ([`Snapshot::ledger_exists`]).
    pub fn ledger_exists(&self) -> Result<bool> {
        self.read()?.ledger_exists()
    }

    /// The ledger's write lease, when several servers may share this storage; `None`
    /// when embedded (the data folder's lock makes its server the writer).
    pub fn leases(&self) -> Option<&dyn Leases> {
        self.backend.leases()
    }

    /// A writer over a snapshot of now; see [`Writer::commit`].
    pub fn write(&self) -> Result<Writer<'_>> {
        Ok(Writer {
            store: self,
            snap: self.read()?,
            pending: SPACES.iter().map(|_| BTreeMap::new()).collect(),
            defer_durability: false,
            fence: None,
            hashes: Vec::new(),
            state: state::StateChanges::default(),
            appended: 0,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Reads

/// Where stored hashes come from: leaves rows by index.
trait LeafSource {
    fn leaf_row(&self, index: u64) -> Result<Option<Vec<u8>>>;

    /// The rows of `indexes`, in order, in one read where the backend can.
    fn leaf_rows(&self, indexes: &[u64]) -> Result<Vec<Option<Vec<u8>>>>;
}

/// A consistent view of one ledger's storage.
pub struct Snapshot {
    view: Box<dyn View>,
    /// Answers read ahead ([`Snapshot::read_ahead`]), kept for the snapshot's life: a
    /// snapshot never changes, so an answer read early is still the answer.
    ahead: std::sync::Mutex<HashMap<Read, Option<Vec<u8>>>>,
    /// Whether the view's backend is [across a network](Backend::remote): then it reads
    /// ahead.
    remote: bool,
    /// The store's state overlay, and what of it makes this snapshot's map, once asked.
    overlay: std::sync::Arc<state::Overlay>,
    state_at: std::sync::OnceLock<state::StateAt>,
}

/// What a read is about to want, for [`Snapshot::read_ahead`] and [`Writer::read_ahead`].
#[derive(Debug, Clone, Copy)]
pub enum Ahead<'a> {
    /// The stored checkpoint.
    Checkpoint,
    /// A table's row.
    Table(&'a str),
    /// A document's current-state row: table, id.
    Current(&'a str, &'a str),
    /// The receipt an idempotency key remembers.
    Receipt(&'a str),
    /// A leaves row, by journal index.
    Leaf(u64),
    /// The state map's root and the path of a document's key (table, id), down to a
    /// depth fit for a map of at most this many keys.
    StatePath(&'a str, &'a str, u64),
}

impl Ahead<'_> {
    fn reads(self, out: &mut Vec<Read>) {
        if let Ahead::StatePath(table, id, keys) = self {
            return state::path_reads(table, id, state::ahead_depth(keys), out);
        }
        out.push(match self {
            Ahead::Checkpoint => Read::Get(META, META_CHECKPOINT.to_vec()),
            Ahead::Table(name) => Read::Get(TABLES, name.as_bytes().to_vec()),
            Ahead::Current(table, id) => Read::Get(DOCS, doc_key(table, id, CURRENT)),
            Ahead::Receipt(key) => Read::Get(IDEMPOTENCY, key.as_bytes().to_vec()),
            Ahead::Leaf(index) => Read::Get(LEAVES, be(index).to_vec()),
            Ahead::StatePath(..) => return,
        });
    }
}

impl LeafSource for Snapshot {
    fn leaf_row(&self, index: u64) -> Result<Option<Vec<u8>>> {
        self.get(LEAVES, &be(index))
    }

    fn leaf_rows(&self, indexes: &[u64]) -> Result<Vec<Option<Vec<u8>>>> {
        let reads: Vec<Read> = indexes
            .iter()
            .map(|&i| Read::Get(LEAVES, be(i).to_vec()))
            .collect();
        self.read_many(&reads)
    }
}

impl Snapshot {
    /// Reads now, in one round trip, what the next reads will want, and the journal's
    /// size, on a backend across a network (on one that is not, it does nothing: its
    /// reads cost no more one by one).
    pub fn read_ahead(&self, wanted: &[Ahead<'_>]) -> Result<()> {
        if !self.remote {
            return Ok(());
        }
        let mut reads = Vec::with_capacity(wanted.len() + 1);
        for a in wanted {
            a.reads(&mut reads);
        }
        reads.push(Read::Last(LEAVES));
        reads.sort_unstable();
        reads.dedup();
        if let Ok(ahead) = self.ahead.lock() {
            reads.retain(|r| !ahead.contains_key(r));
        }
        if reads.is_empty() {
            return Ok(());
        }
        let answers = self.view.read_many(&reads)?;
        if let Ok(mut ahead) = self.ahead.lock() {
            ahead.extend(reads.into_iter().zip(answers));
        }
        Ok(())
    }

    /// Keeps `answer` to `read` for a later read of this snapshot.
    fn keep(&self, read: Read, answer: Option<Vec<u8>>) {
        if let Ok(mut ahead) = self.ahead.lock() {
            ahead.insert(read, answer);
        }
    }

    /// The answer to `read` if it was read ahead.
    fn taken(&self, read: &Read) -> Option<Option<Vec<u8>>> {
        let ahead = self.ahead.lock().ok()?;
        if ahead.is_empty() {
            return None;
        }
        ahead.get(read).cloned()
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.remote
            && let Some(answer) = self.taken(&Read::Get(space, key.to_vec()))
        {
            return Ok(answer);
        }
        self.view.get(space, key)
    }

    fn last(&self, space: Space) -> Result<Option<Vec<u8>>> {
        if self.remote
            && let Some(answer) = self.taken(&Read::Last(space))
        {
            return Ok(answer);
        }
        self.view.last_key(space)
    }

    /// `reads`, those read ahead taken, the rest in one go.
    fn read_many(&self, reads: &[Read]) -> Result<Vec<Option<Vec<u8>>>> {
        if !self.remote {
            return self.view.read_many(reads);
        }
        let mut answers: Vec<Option<Option<Vec<u8>>>> =
            reads.iter().map(|r| self.taken(r)).collect();
        let missing: Vec<Read> = reads
            .iter()
            .zip(&answers)
            .filter(|(_, a)| a.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        let mut read = self.view.read_many(&missing)?.into_iter();
        for answer in answers.iter_mut().filter(|a| a.is_none()) {
            *answer = Some(read.next().flatten());
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// The storage format the database declares.
    pub fn format(&self) -> Result<Format> {
        Ok(match self.get(META, META_FORMAT)? {
            None => Format::Missing,
            Some(v) => match <[u8; 4]>::try_from(v.as_slice()) {
                Ok(b) => Format::Version(u32::from_be_bytes(b)),
                Err(_) => Format::Malformed,
            },
        })
    }

    fn meta_text(&self, key: &[u8]) -> Result<String> {
        let name = String::from_utf8_lossy(key);
        match self.get(META, key)? {
            None => Err(Error::damaged(format!("meta: {name} is missing"))),
            Some(v) => String::from_utf8(v)
                .map_err(|_| Error::damaged(format!("meta: {name} is not UTF-8"))),
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

    /// Whether the snapshot's storage is [across a network](Backend::remote).
    pub fn remote(&self) -> bool {
        self.remote
    }

    /// Whether the ledger is in the storage at all: false once it was deleted (on shared
    /// storage, maybe through another server; deleting removes every row at once).
    pub fn ledger_exists(&self) -> Result<bool> {
        Ok(self.get(META, META_CREATED)?.is_some())
    }

    /// The creation time.
    pub fn created_micros(&self) -> Result<u64> {
        let v = self
            .view
            .get(META, META_CREATED)?
            .ok_or_else(|| Error::damaged("meta: created_micros is missing"))?;
        read_be(&v).ok_or_else(|| Error::damaged("meta: created_micros is not 8 bytes"))
    }

    /// Deletion protection (on unless the byte is 0).
    pub fn deletion_protection(&self) -> Result<bool> {
        Ok(self
            .view
            .get(META, META_PROTECTION)?
            .is_none_or(|v| v != [0]))
    }

    /// The number of journal entries: one more than the last index.
    pub fn size(&self) -> Result<u64> {
        match self.last(LEAVES)? {
            None => Ok(0),
            Some(key) => Ok(leaf_index(&key)? + 1),
        }
    }

    /// The number of leaves rows (equal to the size when none is missing).
    pub fn leaf_rows(&self) -> Result<u64> {
        self.view.len(LEAVES)
    }

    /// The leaves row of `index`, if there is one.
    pub fn leaf(&self, index: u64) -> Result<Option<LeafRow>> {
        Ok(self.leaf_row(index)?.map(|row| LeafRow { index, row }))
    }

    /// The leaves row of `index`; a missing one is [`ErrorKind::Damaged`].
    pub fn require_leaf(&self, index: u64) -> Result<LeafRow> {
        self.leaf(index)?
            .ok_or_else(|| Error::damaged(format!("journal row {index} is missing")))
    }

    /// Every leaves row, in index order (a gap shows as a jump in [`LeafRow::index`]).
    pub fn leaves(&self) -> Result<impl Iterator<Item = Result<LeafRow>> + '_> {
        self.leaf_range(0, None)
    }

    /// The leaves row of every index of `from..to`, in order, read with one range read
    /// (a database sends a page of rows per round trip); a missing one is
    /// [`ErrorKind::Damaged`], and ends the rows.
    pub fn leaves_in(
        &self,
        from: u64,
        to: u64,
    ) -> Result<impl Iterator<Item = Result<LeafRow>> + '_> {
        let to = to.max(from);
        let mut rows = self.leaf_range(from, Some(to))?;
        let mut next = from;
        Ok(std::iter::from_fn(move || {
            if next >= to {
                return None;
            }
            let index = next;
            let row = match rows.next() {
                Some(Ok(row)) if row.index == index => Ok(row),
                Some(Err(e)) => Err(e),
                // A row past `index`, or none: `index` is missing.
                _ => Err(Error::damaged(format!("journal row {index} is missing"))),
            };
            next = if row.is_ok() { index + 1 } else { to };
            Some(row)
        }))
    }

    /// The leaves rows from index `from`, to `to` (exclusive) if given.
    fn leaf_range(
        &self,
        from: u64,
        to: Option<u64>,
    ) -> Result<impl Iterator<Item = Result<LeafRow>> + '_> {
        let (start, end) = (be(from), to.map(be));
        let end = match &end {
            Some(end) => Bound::Excluded(end.as_slice()),
            None => Bound::Unbounded,
        };
        Ok(self
            .view
            .range(LEAVES, Bound::Included(start.as_slice()), end)?
            .map(|row| {
                let (key, row) = row?;
                Ok(LeafRow {
                    index: leaf_index(&key)?,
                    row,
                })
            }))
    }

    /// The stored tree hashes, read from leaves rows.
    pub fn hashes(&self) -> StoredHashes<'_> {
        StoredHashes(self)
    }

    /// The stored tree hashes through `cache`, which keeps the upper levels.
    pub fn cached_hashes<'a>(&'a self, cache: &'a UpperHashes, size: u64) -> CachedHashes<'a> {
        CachedHashes {
            snap: self,
            cache,
            size,
            leaf: None,
        }
    }

    /// The current-state row of a document.
    pub fn current(&self, table: &str, id: &str) -> Result<Option<DocRow>> {
        self.doc(table, id, CURRENT)
    }

    fn doc(&self, table: &str, id: &str, version: u64) -> Result<Option<DocRow>> {
        self.get(DOCS, &doc_key(table, id, version))?
            .map(|v| DocRow::decode(&v))
            .transpose()
    }

    /// The row of an earlier revision of a document, by version (`u64::MAX` is never a
    /// version).
    pub fn earlier(&self, table: &str, id: &str, version: u64) -> Result<Option<DocRow>> {
        if version == CURRENT {
            return Ok(None);
        }
        self.doc(table, id, version)
    }

    /// A document's rows from version `from` on, oldest first: its earlier revisions, then
    /// its current-state row (whose version may be below `from`).
    pub fn revisions(
        &self,
        table: &str,
        id: &str,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<DocRow>> + '_> {
        let start = doc_key(table, id, from);
        let end = doc_key(table, id, CURRENT);
        Ok(self
            .view
            .range(DOCS, Bound::Included(&start), Bound::Included(&end))?
            .map(|row| DocRow::decode(&row?.1)))
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
        let (from, end) = (
            match after {
                None => doc_key(table, "", 0)[..table.len() + 1].to_vec(),
                Some(id) => doc_key(table, id, CURRENT),
            },
            table_end(table),
        );
        let start = match after {
            None => Bound::Included(from.as_slice()),
            Some(_) => Bound::Excluded(from.as_slice()),
        };
        let next = self
            .view
            .range(DOCS, start, Bound::Excluded(end.as_slice()))?
            .next();
        let Some(row) = next else {
            return Ok(None);
        };
        let (key, value) = row?;
        let (_, id, version) = split_doc_key(&key)?;
        let current = if version == CURRENT {
            DocRow::decode(&value)?
        } else {
            self.current(table, &id)?.ok_or_else(|| {
                Error::damaged(format!("document {id:?} has no current-state row"))
            })?
        };
        Ok(Some((id, current)))
    }

    /// Every docs row in key order: (table, id, slot) and the row.
    pub fn doc_rows(&self) -> Result<impl Iterator<Item = Result<(DocKey, DocRow)>> + '_> {
        Ok(self
            .view
            .range(DOCS, Bound::Unbounded, Bound::Unbounded)?
            .map(|row| {
                let (key, value) = row?;
                let (table, id, version) = split_doc_key(&key)?;
                Ok((
                    DocKey {
                        table,
                        id,
                        slot: slot(version),
                    },
                    DocRow::decode(&value)?,
                ))
            }))
    }

    /// The number of docs rows.
    pub fn doc_row_count(&self) -> Result<u64> {
        self.view.len(DOCS)
    }

    /// A table's row.
    pub fn table(&self, name: &str) -> Result<Option<TableRow>> {
        self.get(TABLES, name.as_bytes())?
            .map(|v| TableRow::decode(&v))
            .transpose()
    }

    /// Every table's row, by name.
    pub fn tables(&self) -> Result<Vec<(String, TableRow)>> {
        self.view
            .range(TABLES, Bound::Unbounded, Bound::Unbounded)?
            .map(|row| {
                let (name, value) = row?;
                let name = String::from_utf8(name)
                    .map_err(|_| Error::damaged("a tables key is not UTF-8"))?;
                Ok((name, TableRow::decode(&value)?))
            })
            .collect()
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

/// One write batch: a snapshot of the store, the batch's own writes over it (read back
/// first), committed all or nothing by [`Writer::commit`]. Dropped uncommitted, it writes
/// nothing.
pub struct Writer<'s> {
    store: &'s Store,
    /// What the batch reads; the journal's last key in it is the one the batch extends.
    snap: Snapshot,
    /// The batch's writes, by key space: a value put, or `None` for a key removed.
    pending: Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    defer_durability: bool,
    /// The write lease the batch is made under, if the storage has leases.
    fence: Option<Lease>,
    /// The tree hashes of the revision being appended (reused from one to the next).
    hashes: Vec<Hash>,
    /// What the batch read and changed of the state map.
    state: state::StateChanges,
    /// Revisions the batch appends.
    appended: u64,
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

impl LeafSource for Writer<'_> {
    fn leaf_row(&self, index: u64) -> Result<Option<Vec<u8>>> {
        self.get(LEAVES, &be(index))
    }

    fn leaf_rows(&self, indexes: &[u64]) -> Result<Vec<Option<Vec<u8>>>> {
        let keys: Vec<Vec<u8>> = indexes.iter().map(|&i| be(i).to_vec()).collect();
        self.get_many(LEAVES, &keys)
    }
}

impl Writer<'_> {
    /// A value as this batch has it: its own write, or the snapshot's.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.pending[space.0].get(key) {
            Some(v) => Ok(v.clone()),
            None => self.snap.get(space, key),
        }
    }

    /// Values as this batch has them, the snapshot's read in one go.
    fn get_many(&self, space: Space, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let pending = &self.pending[space.0];
        let missing: Vec<Read> = keys
            .iter()
            .filter(|k| !pending.contains_key(k.as_slice()))
            .map(|k| Read::Get(space, k.clone()))
            .collect();
        let mut stored = self.snap.read_many(&missing)?.into_iter();
        keys.iter()
            .map(|k| match pending.get(k.as_slice()) {
                Some(v) => Ok(v.clone()),
                None => Ok(stored.next().flatten()),
            })
            .collect()
    }

    /// Reads now, in one round trip, what the batch is about to read, and the journal's
    /// size, where the backend is across a network (see [`Snapshot::read_ahead`]).
    pub fn read_ahead(&self, wanted: &[Ahead<'_>]) -> Result<()> {
        self.snap.read_ahead(wanted)
    }

    /// The current-state rows of documents, as this batch has them, in one read.
    pub fn currents(&self, docs: &[(&str, &str)]) -> Result<Vec<Option<DocRow>>> {
        let keys: Vec<Vec<u8>> = docs.iter().map(|(t, i)| doc_key(t, i, CURRENT)).collect();
        self.get_many(DOCS, &keys)?
            .into_iter()
            .map(|v| v.map(|v| DocRow::decode(&v)).transpose())
            .collect()
    }

    fn put(&mut self, space: Space, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.pending[space.0].insert(key.into(), Some(value));
    }

    fn remove(&mut self, space: Space, key: impl Into<Vec<u8>>) {
        self.pending[space.0].insert(key.into(), None);
    }

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
        let row = encode_leaf(rev.entry, &self.hashes, rev.body);
        self.put(LEAVES, be(index), row);
        self.appended += 1;
        if let Some(old) = rev.previous {
            self.put(DOCS, doc_key(rev.table, rev.id, old.version), old.encode());
        }
        let now = DocRow {
            version: rev.version,
            index,
            live: rev.live,
        };
        self.put(DOCS, doc_key(rev.table, rev.id, CURRENT), now.encode());
        Ok(index)
    }

    /// The current-state row of a document, as this batch has it.
    pub fn current(&self, table: &str, id: &str) -> Result<Option<DocRow>> {
        self.get(DOCS, &doc_key(table, id, CURRENT))?
            .map(|v| DocRow::decode(&v))
            .transpose()
    }

    /// A table's row, as this batch has it.
    pub fn table(&self, name: &str) -> Result<Option<TableRow>> {
        self.get(TABLES, name.as_bytes())?
            .map(|v| TableRow::decode(&v))
            .transpose()
    }

    /// Writes a table's row.
    pub fn put_table(&mut self, name: &str, row: TableRow) {
        self.put(TABLES, name.as_bytes(), row.encode());
    }

    /// Stores the signed checkpoint of the journal's new size.
    pub fn put_checkpoint(&mut self, note: &str) {
        self.put(META, META_CHECKPOINT, note.as_bytes().to_vec());
    }

    /// Sets deletion protection.
    pub fn put_deletion_protection(&mut self, on: bool) {
        self.put(META, META_PROTECTION, vec![u8::from(on)]);
    }

    /// The receipt an idempotency key remembers.
    pub fn receipt(&self, key: &str) -> Result<Option<StoredReceipt>> {
        match self.get(IDEMPOTENCY, key.as_bytes())? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| {
                Error::damaged(format!("the stored receipt of an idempotency key: {e}"))
            }),
        }
    }

    /// Remembers `receipt` under an idempotency key.
    pub fn put_receipt(&mut self, key: &str, receipt: &StoredReceipt) -> Result<()> {
        let json = serde_json::to_vec(receipt).map_err(|e| Error::caused(ErrorKind::Failed, e))?;
        self.put(IDEMPOTENCY, key.as_bytes(), json);
        Ok(())
    }

    /// The stored tree hashes, as this batch has them.
    pub fn hashes(&self) -> StoredHashes<'_> {
        StoredHashes(self)
    }

    /// Makes the commit durable only together with a later durable one (fsync skipped).
    /// For bulk loads that are only put in place once their last commit is durable.
    pub fn defer_durability(&mut self) {
        self.defer_durability = true;
    }

    /// Commits the batch only while `lease` is the ledger's write lease.
    pub fn fence(&mut self, lease: Lease) {
        self.fence = Some(lease);
    }

    /// Commits the batch: all of it, durable (unless deferred) when this returns. Refused
    /// ([`ErrorKind::Conflict`]) if the journal is no longer the one the writer began on,
    /// or the batch's fence is no longer the ledger's lease.
    pub fn commit(mut self) -> Result<()> {
        let after = self.state_writes()?;
        // Read now if not read ahead: the snapshot began with the batch's first read.
        let base = self.snap.last(LEAVES)?;
        let (mut puts, mut deletes) = (Vec::new(), Vec::new());
        for (space, rows) in self.pending.into_iter().enumerate() {
            for (key, value) in rows {
                match value {
                    Some(value) => puts.push((Space(space), key, value)),
                    None => deletes.push((Space(space), key)),
                }
            }
        }
        self.store.backend.commit(Batch {
            puts,
            deletes,
            expect_last: Some((LEAVES, base)),
            defer_durability: self.defer_durability,
            fence: self.fence,
        })?;
        if let Some(after) = after {
            after.apply(&self.store.overlay);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Stored tree hashes

/// Reads the stored hashes at stored-hash indexes `indexes` from leaves rows, reading each
/// row once and all of them in one read: each hash's level and the hash, in order.
fn read_stored_hashes(
    leaves: &(impl LeafSource + ?Sized),
    indexes: &[u64],
) -> Result<Vec<(u8, Hash)>> {
    let wanted: Vec<(u64, u8)> = indexes
        .iter()
        .map(|&i| split_stored_hash_index(i))
        .collect();
    let mut records: Vec<u64> = wanted.iter().map(|&(r, _)| r).collect();
    records.sort_unstable();
    records.dedup();
    let rows = leaves.leaf_rows(&records)?;
    wanted
        .into_iter()
        .map(|(record, level)| {
            // `records` holds every record of `wanted`, sorted.
            let at_row = records.binary_search(&record).unwrap_or_default();
            let row = rows[at_row]
                .as_deref()
                .ok_or_else(|| Error::damaged(format!("journal row {record} is missing")))?;
            let leaf = decode_leaf(record, row)
                .ok_or_else(|| Error::damaged(format!("journal row {record} is malformed")))?;
            let at = usize::from(level) * 32;
            let mut hash = [0u8; 32];
            hash.copy_from_slice(leaf.hashes.get(at..at + 32).ok_or_else(|| {
                Error::damaged(format!("journal row {record} lacks its level {level} hash"))
            })?);
            Ok((level, Hash(hash)))
        })
        .collect()
}

/// Stored tree hashes read from leaves rows.
pub struct StoredHashes<'a>(&'a dyn LeafSource);

impl HashReader for StoredHashes<'_> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> std::result::Result<Vec<Hash>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(read_stored_hashes(self.0, indexes)?
            .into_iter()
            .map(|(_, h)| h)
            .collect())
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

/// A snapshot's leaves rows, each read with one more row (a proof's leaf), which the
/// snapshot keeps for the read that wants it next.
struct WithLeaf<'a> {
    snap: &'a Snapshot,
    leaf: u64,
}

impl LeafSource for WithLeaf<'_> {
    fn leaf_row(&self, index: u64) -> Result<Option<Vec<u8>>> {
        self.snap.leaf_row(index)
    }

    fn leaf_rows(&self, indexes: &[u64]) -> Result<Vec<Option<Vec<u8>>>> {
        let leaf = Read::Get(LEAVES, be(self.leaf).to_vec());
        let mut reads: Vec<Read> = indexes
            .iter()
            .map(|&i| Read::Get(LEAVES, be(i).to_vec()))
            .collect();
        reads.push(leaf.clone());
        let mut rows = self.snap.read_many(&reads)?;
        self.snap.keep(leaf, rows.pop().flatten());
        Ok(rows)
    }
}

/// Stored tree hashes read through an [`UpperHashes`] cache.
pub struct CachedHashes<'a> {
    snap: &'a Snapshot,
    cache: &'a UpperHashes,
    /// The snapshot's journal size (it sets the lowest level cached).
    size: u64,
    /// A leaves row to read with the hashes' rows, in the same round trip, for a read
    /// that wants it next (see [`CachedHashes::with_leaf`]).
    leaf: Option<u64>,
}

impl CachedHashes<'_> {
    /// Reads leaves row `index` together with the hashes (a proof's leaf, which its read
    /// wants too), where the snapshot reads ahead.
    pub fn with_leaf(mut self, index: u64) -> Self {
        self.leaf = Some(index);
        self
    }
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
        let missing: Vec<u64> = found
            .iter()
            .zip(indexes)
            .filter(|(slot, _)| slot.is_none())
            .map(|(_, &i)| i)
            .collect();
        let mut read = match self.leaf {
            Some(leaf) if self.snap.remote => {
                let with_leaf = WithLeaf {
                    snap: self.snap,
                    leaf,
                };
                read_stored_hashes(&with_leaf, &missing)?
            }
            _ => read_stored_hashes(self.snap, &missing)?,
        }
        .into_iter();
        let mut fresh = Vec::new();
        for (slot, &i) in found.iter_mut().zip(indexes) {
            if slot.is_none()
                && let Some((level, hash)) = read.next()
            {
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
        {
            let mut w = store.write().expect("write");
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
            w.commit().expect("commit");
        }
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
        {
            let mut w = store.write().expect("write");
            let mut row = w.leaf_row(511).expect("get").expect("row");
            let at = 4 + 8 + 8 * 32; // entry length, entry, levels 0 to 7
            row[at] ^= 1;
            w.put(LEAVES, be(511), row);
            w.commit().expect("commit");
        }
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
        let row = encode_leaf(b"entry", &hashes, b"{}");
        let leaf = decode_leaf(1, &row).expect("decodes");
        assert_eq!(leaf.entry, b"entry");
        assert_eq!(leaf.hashes.len(), 64);
        assert_eq!(&leaf.hashes[32..], &hashes[1].0);
        assert_eq!(leaf.leaf_hash(), hashes[0]);
        assert_eq!(leaf.body, b"{}");
        // Read as leaf 0 (one hash), the second hash is taken for the body: the caller
        // must pass the row's own index.
        assert_eq!(decode_leaf(0, &row).expect("decodes").body.len(), 34);
        let delete = encode_leaf(b"entry", &hashes[..1], b"");
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
        {
            let mut w = store.write().expect("write");
            // Leaf 1 must hold two hashes; this row has an entry and half a hash.
            let row = encode_leaf(b"entry", &[], &[0u8; 16]);
            w.put(LEAVES, be(1), row);
            w.commit().expect("commit");
        }
        let snap = store.read().expect("read");
        let row = snap.require_leaf(1).expect("the row is there");
        assert!(row.decode().is_none());
        let e = row.leaf().expect_err("too short");
        assert_eq!(e.kind(), ErrorKind::Damaged);
        assert_eq!(e.to_string(), "journal row 1 is malformed");
        let e = snap.require_leaf(2).expect_err("missing");
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (ErrorKind::Damaged, "journal row 2 is missing")
        );
    }

    #[test]
    fn documents_and_scans() {
        let (_dir, store) = journal(0);
        {
            let mut w = store.write().expect("write");
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
            );
            w.commit().expect("commit");
        }
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

    #[test]
    fn keys_sort_as_the_engine_reads_them() {
        // (table, id, version) order, with the current-state row after every version.
        let keys = [
            doc_key("a", "", 0),
            doc_key("a", "x", 0),
            doc_key("a", "x", 1),
            doc_key("a", "x", CURRENT),
            doc_key("a", "x\u{1}", 0),
            doc_key("a", "xa", 0),
            doc_key("a_", "x", 0),
            doc_key("ab", "", 0),
        ];
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{:?} < {:?}", pair[0], pair[1]);
        }
        assert!(doc_key("a", "zzz", CURRENT) < table_end("a"));
        assert!(table_end("a") < doc_key("a_", "", 0));
        assert_eq!(
            split_doc_key(&doc_key("t", "id é", 7)).expect("splits"),
            ("t".into(), "id é".into(), 7)
        );
        for bad in [&b""[..], b"t", b"t\0id", b"t\0id\x01\0\0\0\0\0\0\0\0"] {
            assert!(split_doc_key(bad).is_err(), "{bad:?}");
        }
        let row = DocRow {
            version: 3,
            index: 9,
            live: false,
        };
        assert_eq!(DocRow::decode(&row.encode()).expect("decodes"), row);
        assert!(DocRow::decode(&[0; 16]).is_err());
        assert!(DocRow::decode(&[[0u8; 16].as_slice(), &[2]].concat()).is_err());
    }

    /// A batch extends the journal its writer read: a second writer that began on the same
    /// journal cannot commit after the first did, and nothing of it is applied.
    #[test]
    fn a_stale_writer_cannot_extend_the_journal() {
        let (_dir, store) = journal(3);
        let revision = |entry: &'static [u8]| NewRevision {
            entry,
            body: b"{}",
            table: "t",
            id: "y",
            version: 0,
            live: true,
            previous: None,
        };
        let snap = store.read().expect("read");
        let mut range = CompactRange::read(3, &snap.hashes()).expect("range");
        let mut second_range = range.clone();
        let mut first = store.write().expect("first");
        let mut second = store.write().expect("second");
        first
            .append_revision(&mut range, &revision(b"first"))
            .expect("append");
        second
            .append_revision(&mut second_range, &revision(b"second"))
            .expect("append");
        first.commit().expect("the first commits");
        let e = second.commit().expect_err("the second is stale");
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        let snap = store.read().expect("read");
        assert_eq!(snap.size().expect("size"), 4);
        let row = snap.require_leaf(3).expect("row");
        assert_eq!(row.leaf().expect("leaf").entry, b"first");
    }
}
