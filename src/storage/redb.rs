//! The embedded backend: one redb file per ledger, a redb table per key space (byte keys,
//! byte values), a batch as one redb write transaction (`Durability::Immediate`: fsync
//! before it returns). The only module that names redb.

use std::cell::OnceCell;
use std::ops::Bound;
use std::path::Path;

use redb::{
    Database, Durability, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};

use super::backend::{Backend, Batch, Rows, Space, View, conflict};
use super::{Error, ErrorKind, Result};

fn table(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// A ledger's redb database, read-write or read-only.
pub struct RedbBackend {
    db: Db,
    spaces: &'static [&'static str],
}

enum Db {
    ReadWrite(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl RedbBackend {
    /// Creates the database at `path` with every key space of `spaces`.
    pub fn create(
        path: &Path,
        cache_bytes: usize,
        spaces: &'static [&'static str],
    ) -> Result<RedbBackend> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        RedbBackend::with_spaces(db, spaces)
    }

    /// [`RedbBackend::create`] over a redb storage backend of the caller's (tests inject I/O
    /// failures this way).
    #[cfg(test)]
    pub fn create_with(
        backend: impl redb::StorageBackend,
        spaces: &'static [&'static str],
    ) -> Result<RedbBackend> {
        let db = Database::builder().create_with_backend(backend)?;
        RedbBackend::with_spaces(db, spaces)
    }

    fn with_spaces(db: Database, spaces: &'static [&'static str]) -> Result<RedbBackend> {
        let txn = db.begin_write()?;
        for name in spaces {
            txn.open_table(table(name))?;
        }
        txn.commit()?;
        Ok(RedbBackend {
            db: Db::ReadWrite(db),
            spaces,
        })
    }

    /// Opens the existing database at `path`, repairing it if it was not closed cleanly
    /// (redb's repair keeps every committed transaction), and creating any key space of
    /// `spaces` it lacks.
    pub fn open(
        path: &Path,
        cache_bytes: usize,
        spaces: &'static [&'static str],
    ) -> Result<RedbBackend> {
        let db = Database::builder().set_cache_size(cache_bytes).open(path)?;
        // A key space added since the database was made starts empty.
        RedbBackend::with_spaces(db, spaces)
    }

    /// Opens `path` read-only: never modified, and refused ([`ErrorKind::InUse`]) while
    /// another process has it open, or ([`ErrorKind::NeedsRepair`]) when it was not closed
    /// cleanly.
    pub fn open_read_only(
        path: &Path,
        cache_bytes: usize,
        spaces: &'static [&'static str],
    ) -> Result<RedbBackend> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .open_read_only(path)?;
        Ok(RedbBackend {
            db: Db::ReadOnly(db),
            spaces,
        })
    }
}

impl Backend for RedbBackend {
    fn view(&self) -> Result<Box<dyn View>> {
        let txn = match &self.db {
            Db::ReadWrite(db) => db.begin_read()?,
            Db::ReadOnly(db) => db.begin_read()?,
        };
        Ok(Box::new(RedbView {
            txn,
            spaces: self.spaces,
            tables: self.spaces.iter().map(|_| OnceCell::new()).collect(),
        }))
    }

    fn commit(&self, batch: Batch) -> Result<()> {
        let Db::ReadWrite(db) = &self.db else {
            return Err(Error::new(
                ErrorKind::Failed,
                "the database is open read-only",
            ));
        };
        let mut txn = db.begin_write()?;
        if batch.defer_durability {
            txn.set_durability(Durability::None)?;
        }
        {
            if let Some((space, expected)) = &batch.expect_last {
                let t = txn.open_table(table(self.spaces[space.0]))?;
                let found = t.last()?.map(|(k, _)| k.value().to_vec());
                if found.as_deref() != expected.as_deref() {
                    return Err(conflict(
                        self.spaces[space.0],
                        expected.as_deref(),
                        found.as_deref(),
                    ));
                }
            }
            // Each key space's table opened once for the batch.
            let mut open: Vec<Option<redb::Table<'_, &'static [u8], &'static [u8]>>> =
                self.spaces.iter().map(|_| None).collect();
            for (space, key, value) in &batch.puts {
                let t = match &mut open[space.0] {
                    Some(t) => t,
                    slot => slot.insert(txn.open_table(table(self.spaces[space.0]))?),
                };
                t.insert(key.as_slice(), value.as_slice())?;
            }
            for (space, key) in &batch.deletes {
                let t = match &mut open[space.0] {
                    Some(t) => t,
                    slot => slot.insert(txn.open_table(table(self.spaces[space.0]))?),
                };
                t.remove(key.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// One redb read transaction, with each key space's table opened once, when first read.
struct RedbView {
    txn: ReadTransaction,
    spaces: &'static [&'static str],
    tables: Vec<OnceCell<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>>,
}

impl RedbView {
    fn table(&self, space: Space) -> Result<&redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
        let cell = &self.tables[space.0];
        if let Some(t) = cell.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(table(self.spaces[space.0]))?;
        Ok(cell.get_or_init(|| t))
    }
}

impl View for RedbView {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.table(space)?.get(key)?.map(|v| v.value().to_vec()))
    }

    fn range<'a>(
        &'a self,
        space: Space,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Rows<'a>> {
        let rows = self.table(space)?.range::<&[u8]>((start, end))?;
        Ok(Box::new(rows.map(|row| {
            let (k, v) = row?;
            Ok((k.value().to_vec(), v.value().to_vec()))
        })))
    }

    fn last_key(&self, space: Space) -> Result<Option<Vec<u8>>> {
        Ok(self.table(space)?.last()?.map(|(k, _)| k.value().to_vec()))
    }

    fn len(&self, space: Space) -> Result<u64> {
        Ok(self.table(space)?.len()?)
    }
}

impl From<redb::StorageError> for Error {
    fn from(e: redb::StorageError) -> Error {
        let kind = match e {
            redb::StorageError::Corrupted(_) => ErrorKind::Damaged,
            _ => ErrorKind::Failed,
        };
        Error::caused(kind, e)
    }
}

impl From<redb::TableError> for Error {
    fn from(e: redb::TableError) -> Error {
        match e {
            redb::TableError::Storage(e) => e.into(),
            e => Error::caused(ErrorKind::Damaged, e),
        }
    }
}

impl From<redb::TransactionError> for Error {
    fn from(e: redb::TransactionError) -> Error {
        match e {
            redb::TransactionError::Storage(e) => e.into(),
            e => Error::caused(ErrorKind::Failed, e),
        }
    }
}

impl From<redb::DatabaseError> for Error {
    fn from(e: redb::DatabaseError) -> Error {
        match e {
            redb::DatabaseError::Storage(e) => e.into(),
            redb::DatabaseError::DatabaseAlreadyOpen => Error::caused(ErrorKind::InUse, e),
            redb::DatabaseError::RepairAborted => Error::caused(ErrorKind::NeedsRepair, e),
            e => Error::caused(ErrorKind::Failed, e),
        }
    }
}

impl From<redb::CommitError> for Error {
    fn from(e: redb::CommitError) -> Error {
        match e {
            redb::CommitError::Storage(e) => e.into(),
            e => Error::caused(ErrorKind::Failed, e),
        }
    }
}

impl From<redb::SetDurabilityError> for Error {
    fn from(e: redb::SetDurabilityError) -> Error {
        Error::caused(ErrorKind::Failed, e)
    }
}

/// An in-memory redb backend whose fsync fails while `fail` is set.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct FailingSync {
    inner: redb::backends::InMemoryBackend,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(test)]
impl FailingSync {
    pub(crate) fn new(fail: std::sync::Arc<std::sync::atomic::AtomicBool>) -> FailingSync {
        FailingSync {
            inner: redb::backends::InMemoryBackend::new(),
            fail,
        }
    }
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
