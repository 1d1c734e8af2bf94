//! One ledger: opening it, the write API (which queues work for its sequencer) and the
//! read path (redb read transactions, never waiting for the writer).

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use graven_verify::{
    Checkpoint, CompactRange, Entry, Hash, Signer, open_checkpoint, prove_consistency,
    prove_inclusion, tree_hash,
};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use super::sequencer::{Job, Prepared, Sequencer};
use super::{DB_FILE, KEY_FILE};
use crate::error::{Error, Result};
use crate::model::{
    ConsistencyProof, DEFAULT_PAGE_SIZE, Head, InclusionProof, JournalItem, LedgerInfo, Page,
    Receipt, Revision, TableInfo, Transaction, check_document_id, check_table_name,
};
use crate::storage::{self, CachedHashes, StoredHashes, UpperHashes, meta_string, meta_u64};

/// How many jobs may wait for a sequencer before callers wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 4096;

/// An open ledger.
pub struct Ledger {
    name: String,
    origin: String,
    /// Its folder (the database and the signing key).
    dir: PathBuf,
    db: Arc<Database>,
    signer: Signer,
    vkey: String,
    created_micros: u64,
    max_page_size: u32,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// The durable head; closed when the sequencer stops (shutdown or deletion).
    head: watch::Receiver<Head>,
    /// Hashes of large subtrees, for proofs.
    upper: UpperHashes,
}

impl Ledger {
    /// Opens the ledger in `dir`: reads its key and metadata, restores the tree's right
    /// edge from `O(log n)` stored hashes (no journal replay), checks that it matches the
    /// latest signed checkpoint, and starts the sequencer.
    pub(crate) fn open(name: &str, dir: &Path, config: &super::Config) -> Result<Ledger> {
        let key_text = std::fs::read_to_string(dir.join(KEY_FILE))
            .map_err(|e| Error::internal(format!("reading {KEY_FILE}: {e}")))?;
        let signer =
            Signer::parse(&key_text).map_err(|e| Error::internal(format!("{KEY_FILE}: {e}")))?;
        let db = Database::builder()
            .set_cache_size(config.cache_bytes)
            .open(dir.join(DB_FILE))?;
        let rtxn = db.begin_read()?;
        let meta = rtxn.open_table(storage::META)?;
        let format = meta
            .get(storage::META_FORMAT)?
            .and_then(|v| <[u8; 4]>::try_from(v.value()).ok())
            .map(u32::from_be_bytes);
        if format != Some(storage::FORMAT_VERSION) {
            return Err(Error::internal(format!(
                "storage format {format:?} is not {} (this build's)",
                storage::FORMAT_VERSION
            )));
        }
        let origin = meta_string(&meta, storage::META_ORIGIN)?;
        if signer.name() != origin {
            return Err(Error::internal(format!(
                "{KEY_FILE} is for {:?}, the ledger's origin is {origin:?}",
                signer.name()
            )));
        }
        let leaves = rtxn.open_table(storage::LEAVES)?;
        let last = journal_size(&leaves)?.checked_sub(1);
        let size = last.map_or(0, |l| l + 1);
        let range = CompactRange::read(size, &StoredHashes(&leaves))
            .map_err(|e| Error::internal(format!("reading the tree: {e}")))?;
        // The last entry says where transaction ids and commit times resume.
        let (next_tx, last_commit) = match last {
            None => (0, 0),
            Some(index) => {
                let row = leaves
                    .get(index)?
                    .ok_or_else(|| Error::internal("last journal row vanished"))?;
                let leaf = storage::decode_leaf(index, row.value())
                    .ok_or_else(|| Error::internal(format!("journal row {index} is malformed")))?;
                let e = Entry::decode(leaf.entry)
                    .map_err(|e| Error::internal(format!("journal entry {index}: {e}")))?;
                (e.tx_id + 1, e.commit_time_micros)
            }
        };
        let note = meta_string(&meta, storage::META_CHECKPOINT)?;
        let verifier = signer.verifier();
        let head = open_checkpoint(note.as_bytes(), std::slice::from_ref(&verifier))
            .map_err(|e| Error::internal(format!("latest checkpoint: {e}")))?
            .checkpoint;
        if head.size != size || head.root != range.root() {
            return Err(Error::internal(format!(
                "stored tree (size {size}, root {}) does not match the latest signed \
                 checkpoint (size {}, root {}): the data folder was modified or damaged; \
                 with the server stopped, `graven check --data DIR` names what differs",
                range.root(),
                head.size,
                head.root
            )));
        }
        let created_micros = meta_u64(&meta, storage::META_CREATED)?;
        let (head_tx, head_rx) = watch::channel(Head {
            size,
            checkpoint: note.clone(),
        });
        drop(leaves);
        drop(meta);
        drop(rtxn);
        let db = Arc::new(db);
        let sequencer = Sequencer {
            db: db.clone(),
            signer: signer.clone(),
            origin: origin.clone(),
            range,
            next_tx,
            last_commit,
            failed: None,
            head: head_tx,
        };
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let worker = std::thread::Builder::new()
            .name(format!("seq-{name}"))
            .spawn(move || sequencer.run(rx))
            .map_err(|e| Error::internal(format!("starting sequencer: {e}")))?;
        Ok(Ledger {
            name: name.to_owned(),
            origin,
            dir: dir.to_owned(),
            db,
            vkey: verifier.to_vkey(),
            signer,
            created_micros,
            max_page_size: config.limits.max_page_size,
            jobs: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            head: head_rx,
            upper: UpperHashes::default(),
        })
    }

    /// The ledger's folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The ledger's database, for the online check's read snapshot.
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Whether the ledger was closed (server shutdown or deletion).
    pub fn is_closed(&self) -> bool {
        self.jobs.lock().map_or(true, |jobs| jobs.is_none())
    }

    /// The ledger's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The checkpoint origin (and key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// The journal size, or 0 if it cannot be read (for logs).
    pub(crate) fn size_hint(&self) -> u64 {
        self.read()
            .and_then(|r| journal_size(&r.open_table(storage::LEAVES)?))
            .unwrap_or(0)
    }

    /// Stops the sequencer once the jobs already queued are done, and waits for it.
    pub(crate) fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let worker = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(worker) = worker {
            let _ = worker.join();
        }
    }

    async fn submit<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
        let sender = self
            .jobs
            .lock()
            .map_err(|_| Error::internal("sequencer lock poisoned"))?
            .clone()
            .ok_or_else(|| self.closed())?;
        let (reply, answer) = oneshot::channel();
        sender.send(job(reply)).await.map_err(|_| self.closed())?;
        answer.await.map_err(|_| self.closed())?
    }

    fn closed(&self) -> Error {
        Error::unavailable(format!(
            "ledger {:?} is closed: the server is shutting down or the ledger was deleted",
            self.name
        ))
    }

    /// Commits a transaction; the receipt comes back once it is durable.
    pub async fn transact(&self, tx: Transaction) -> Result<Receipt> {
        // Body hashes need no ledger state: compute them here, on the caller's task, in
        // parallel with other callers, rather than on the one sequencer thread.
        let body_hashes = tx
            .ops
            .iter()
            .map(|op| op.body().map(|b| Hash(Sha256::digest(b).into())))
            .collect();
        self.submit(|reply| Job::Transact(Prepared { tx, body_hashes }, reply))
            .await
    }

    /// Creates (or reactivates) a table.
    pub async fn create_table(&self, name: &str) -> Result<TableInfo> {
        check_table_name(name)?;
        self.submit(|reply| Job::CreateTable(name.to_owned(), reply))
            .await
    }

    /// Drops a table.
    pub async fn drop_table(&self, name: &str) -> Result<()> {
        check_table_name(name)?;
        self.submit(|reply| Job::DropTable(name.to_owned(), reply))
            .await
    }

    /// Turns deletion protection on or off.
    pub async fn set_deletion_protection(&self, on: bool) -> Result<()> {
        self.submit(|reply| Job::SetProtection(on, reply)).await
    }

    fn read(&self) -> Result<ReadTransaction> {
        Ok(self.db.begin_read()?)
    }

    /// Whether deletion protection is on.
    pub fn deletion_protection(&self) -> Result<bool> {
        let r = self.read()?;
        let meta = r.open_table(storage::META)?;
        Ok(meta
            .get(storage::META_PROTECTION)?
            .is_none_or(|v| v.value() != [0]))
    }

    /// Size, latest checkpoint, key and settings.
    pub fn info(&self) -> Result<LedgerInfo> {
        let r = self.read()?;
        let meta = r.open_table(storage::META)?;
        Ok(LedgerInfo {
            name: self.name.clone(),
            origin: self.origin.clone(),
            size: journal_size(&r.open_table(storage::LEAVES)?)?,
            checkpoint: meta_string(&meta, storage::META_CHECKPOINT)?,
            vkey: self.vkey.clone(),
            deletion_protection: meta
                .get(storage::META_PROTECTION)?
                .is_none_or(|v| v.value() != [0]),
            created_micros: self.created_micros,
        })
    }

    /// The latest signed checkpoint and its size.
    pub fn checkpoint(&self) -> Result<(String, u64)> {
        let r = self.read()?;
        let snap = Snapshot::new(self, &r)?;
        Ok((snap.checkpoint, snap.size))
    }

    /// Active tables.
    pub fn tables(&self) -> Result<Vec<TableInfo>> {
        let r = self.read()?;
        let tables = r.open_table(storage::TABLES)?;
        let mut out = Vec::new();
        for row in tables.iter()? {
            let (name, value) = row?;
            let (created, active) = value.value();
            if active {
                out.push(TableInfo {
                    name: name.value().to_owned(),
                    created_micros: created,
                });
            }
        }
        Ok(out)
    }

    /// Entry bytes and body at a journal index.
    pub fn entry(&self, index: u64) -> Result<(Vec<u8>, Vec<u8>)> {
        let r = self.read()?;
        let snap = Snapshot::new(self, &r)?;
        if index >= snap.size {
            return Err(Error::not_found(format!(
                "index {index} is beyond the journal (size {})",
                snap.size
            )));
        }
        snap.entry(index)
    }

    /// One revision: the current one (`version` absent), or a given version.
    pub fn get(
        &self,
        table: &str,
        id: &str,
        version: Option<u64>,
        proof: Option<u64>,
    ) -> Result<Revision> {
        check_table_name(table)?;
        check_document_id(id)?;
        let r = self.read()?;
        let snap = Snapshot::new(self, &r)?;
        snap.require_table(table)?;
        let docs = r.open_table(storage::DOCS)?;
        let Some((current, index, live)) =
            docs.get((table, id, storage::CURRENT))?.map(|v| v.value())
        else {
            return Err(Error::not_found(format!(
                "document {id:?} does not exist in table {table:?}"
            )));
        };
        let index = match version {
            None if !live => {
                return Err(Error::not_found(format!(
                    "document {id:?} in table {table:?} was deleted at version {current}; \
                     ask for an earlier version or its history"
                )));
            }
            None => index,
            Some(v) if v == current => index,
            Some(v) => docs
                .get((table, id, v))?
                .filter(|_| v < storage::CURRENT)
                .map(|row| row.value().1)
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "document {id:?} in table {table:?} has no version {v} (current \
                         version {current})"
                    ))
                })?,
        };
        let proof_size = snap.proof_size(proof, index)?;
        snap.revision(index, proof_size)
    }

    fn page_size(&self, asked: u32) -> Result<usize> {
        match asked {
            0 => Ok(DEFAULT_PAGE_SIZE as usize),
            n if n <= self.max_page_size => Ok(n as usize),
            n => Err(Error::exhausted(format!(
                "page_size {n} is over the limit of {}",
                self.max_page_size
            ))),
        }
    }

    /// A document's revisions from the page token's version on, oldest first.
    pub fn history(
        &self,
        table: &str,
        id: &str,
        page_size: u32,
        page_token: &str,
        proof: Option<u64>,
    ) -> Result<Page> {
        check_table_name(table)?;
        check_document_id(id)?;
        let limit = self.page_size(page_size)?;
        let from = if page_token.is_empty() {
            0
        } else {
            graven_verify::checkpoint::parse_decimal(page_token)
                .ok_or_else(|| Error::invalid(format!("page_token {page_token:?} is invalid")))?
        };
        let r = self.read()?;
        let snap = Snapshot::new(self, &r)?;
        snap.require_table(table)?;
        let docs = r.open_table(storage::DOCS)?;
        if docs.get((table, id, storage::CURRENT))?.is_none() {
            return Err(Error::not_found(format!(
                "document {id:?} does not exist in table {table:?}"
            )));
        }
        let mut out = Vec::new();
        let mut next = None;
        // Earlier revisions by version, then the current one (its row sorts last).
        for row in docs.range((table, id, from)..=(table, id, storage::CURRENT))? {
            let (version, index, _) = row?.1.value();
            if version < from {
                continue; // the current row, when the token is past the current version
            }
            if out.len() == limit {
                next = Some(version.to_string());
                break;
            }
            let proof_size = snap.proof_size(proof, index)?;
            out.push(snap.revision(index, proof_size)?);
        }
        Ok(Page {
            revisions: out,
            next,
        })
    }

    /// The current revisions of a table's live documents, by id, after the page token.
    pub fn scan(
        &self,
        table: &str,
        page_size: u32,
        page_token: &str,
        proof: Option<u64>,
    ) -> Result<Page> {
        check_table_name(table)?;
        let limit = self.page_size(page_size)?;
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode_token(page_token)?)
        };
        let r = self.read()?;
        let snap = Snapshot::new(self, &r)?;
        snap.require_table(table)?;
        let docs = r.open_table(storage::DOCS)?;
        // Current-state rows sit after each document's revisions: jump from one document's
        // current row to the next document with a fresh range each time.
        // Where the next range starts: after (true) or at (false) this document's
        // current-state row; `None` for the start of the table.
        let mut cursor: Option<(String, bool)> = after.map(|id| (id, true));
        let mut out = Vec::new();
        let mut next = None;
        loop {
            let start = match &cursor {
                None => Bound::Included((table, "", 0)),
                Some((id, true)) => Bound::Excluded((table, id.as_str(), storage::CURRENT)),
                Some((id, false)) => Bound::Included((table, id.as_str(), storage::CURRENT)),
            };
            let Some(row) = docs
                .range::<(&str, &str, u64)>((start, Bound::Unbounded))?
                .next()
            else {
                break;
            };
            let (key, value) = row?;
            let (t, id, version) = key.value();
            if t != table {
                break;
            }
            // Current-state rows sit after each document's revisions: jump there.
            cursor = Some((id.to_owned(), version == storage::CURRENT));
            if version != storage::CURRENT {
                continue;
            }
            let (_, index, live) = value.value();
            if !live {
                continue;
            }
            if out.len() == limit {
                // The last id returned is where the next page starts (exclusive).
                next = out.last().map(|r: &Revision| encode_token(&r.id));
                break;
            }
            let proof_size = snap.proof_size(proof, index)?;
            out.push(snap.revision(index, proof_size)?);
        }
        Ok(Page {
            revisions: out,
            next,
        })
    }

    /// The durable head, updated after every commit. `changed()` fails once the ledger
    /// is closed (server shutdown or ledger deletion).
    pub fn head(&self) -> watch::Receiver<Head> {
        self.head.clone()
    }

    /// The compact range of `[0, size)`: the subtree hashes a stream starting at `size`
    /// needs to verify.
    pub fn frontier(&self, size: u64) -> Result<CompactRange> {
        let r = self.read()?;
        let snap = Snapshot::new(self, &r)?;
        if size > snap.size {
            return Err(Error::invalid(format!(
                "index {size} is beyond the journal (size {})",
                snap.size
            )));
        }
        CompactRange::read(size, &snap.hashes())
            .map_err(|e| Error::internal(format!("reading the tree: {e}")))
    }

    /// A signed checkpoint of `size` (at most the ledger size).
    pub fn checkpoint_at(&self, size: u64) -> Result<String> {
        let r = self.read()?;
        let snap = Snapshot::new(self, &r)?;
        if size > snap.size {
            return Err(Error::invalid(format!(
                "size {size} is beyond the journal (size {})",
                snap.size
            )));
        }
        snap.checkpoint_at(size)
    }

    /// The journal from `from` towards `to` (exclusive), stopping early after about
    /// `max_bytes` of entries and bodies: revisions of `tables` (all if empty), and the
    /// leaf hashes of the others.
    pub fn journal(
        &self,
        from: u64,
        to: u64,
        tables: &[String],
        max_bytes: usize,
    ) -> Result<Vec<JournalItem>> {
        let r = self.read()?;
        let snap = Snapshot::new(self, &r)?;
        let to = to.min(snap.size);
        let mut out = Vec::new();
        let mut bytes = 0;
        for index in from..to {
            if bytes >= max_bytes {
                break;
            }
            let row = snap
                .leaves
                .get(index)?
                .ok_or_else(|| Error::internal(format!("journal entry {index} is missing")))?;
            let leaf = storage::decode_leaf(index, row.value())
                .ok_or_else(|| Error::internal(format!("journal row {index} is malformed")))?;
            if !tables.is_empty() {
                let e = Entry::decode(leaf.entry)
                    .map_err(|err| Error::internal(format!("journal entry {index}: {err}")))?;
                if !tables.contains(&e.table) {
                    let leaf_hash = Hash(leaf.hashes[..32].try_into().unwrap_or_default());
                    out.push(JournalItem::Skipped { index, leaf_hash });
                    bytes += 40;
                    continue;
                }
            }
            drop(row);
            let revision = snap.revision(index, None)?;
            bytes += revision.entry.len() + revision.body.len();
            out.push(JournalItem::Revision(revision));
        }
        Ok(out)
    }

    /// An inclusion proof of `index` in the tree of `tree_size` (0: the latest size).
    pub fn prove_inclusion(&self, index: u64, tree_size: u64) -> Result<InclusionProof> {
        let r = self.read()?;
        let snap = Snapshot::new(self, &r)?;
        let size = if tree_size == 0 { snap.size } else { tree_size };
        if size > snap.size || index >= size {
            return Err(Error::invalid(format!(
                "index {index} and tree_size {tree_size} are out of range: the index must be \
                 below the tree size, and the tree size at most the ledger size {}",
                snap.size
            )));
        }
        snap.inclusion(index, size)
    }

    /// A consistency proof from `old_size` to `new_size` (0: the latest size).
    pub fn prove_consistency(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof> {
        let r = self.read()?;
        let snap = Snapshot::new(self, &r)?;
        let new = if new_size == 0 { snap.size } else { new_size };
        if new > snap.size || old_size > new {
            return Err(Error::invalid(format!(
                "old_size {old_size} and new_size {new_size} are out of range: need \
                 old_size <= new_size <= ledger size {}",
                snap.size
            )));
        }
        let hashes = prove_consistency(old_size, new, &snap.hashes())
            .map_err(|e| Error::internal(format!("consistency proof: {e}")))?;
        Ok(ConsistencyProof {
            old_size,
            new_size: new,
            hashes,
            checkpoint: snap.checkpoint_at(new)?,
        })
    }
}

/// The number of journal entries: one more than the last index.
fn journal_size(leaves: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64> {
    Ok(leaves.last()?.map_or(0, |(k, _)| k.value() + 1))
}

/// Scan page tokens: the hex of the last id returned.
fn encode_token(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Result<String> {
    let bad = || Error::invalid(format!("page_token {token:?} is invalid"));
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// A consistent view of a ledger for one read: the size, the latest checkpoint and the
/// tables, all from one redb read transaction.
struct Snapshot<'a> {
    ledger: &'a Ledger,
    size: u64,
    checkpoint: String,
    txn: &'a ReadTransaction,
    leaves: redb::ReadOnlyTable<u64, &'static [u8]>,
}

impl<'a> Snapshot<'a> {
    fn new(ledger: &'a Ledger, txn: &'a ReadTransaction) -> Result<Snapshot<'a>> {
        let meta = txn.open_table(storage::META)?;
        let leaves = txn.open_table(storage::LEAVES)?;
        Ok(Snapshot {
            ledger,
            size: journal_size(&leaves)?,
            checkpoint: meta_string(&meta, storage::META_CHECKPOINT)?,
            txn,
            leaves,
        })
    }

    /// The snapshot's stored hashes, through the ledger's cache.
    fn hashes(&self) -> CachedHashes<'_, redb::ReadOnlyTable<u64, &'static [u8]>> {
        CachedHashes {
            table: &self.leaves,
            cache: &self.ledger.upper,
            size: self.size,
        }
    }

    fn require_table(&self, table: &str) -> Result<()> {
        let tables = self.txn.open_table(storage::TABLES)?;
        match tables.get(table)?.map(|v| v.value()) {
            Some((_, true)) => Ok(()),
            _ => Err(Error::not_found(format!("table {table:?} does not exist"))),
        }
    }

    /// The tree size a read's proof is against: `None` for no proof; 0 means the latest.
    fn proof_size(&self, asked: Option<u64>, index: u64) -> Result<Option<u64>> {
        match asked {
            None => Ok(None),
            Some(0) => Ok(Some(self.size)),
            Some(n) if n > index && n <= self.size => Ok(Some(n)),
            Some(n) => Err(Error::invalid(format!(
                "proof tree_size {n} is out of range: it must be above the revision's index \
                 {index} and at most the ledger size {}",
                self.size
            ))),
        }
    }

    /// A signed checkpoint of `size`: the stored latest one, or a new signature over the
    /// root at `size` (deterministic, so always the same bytes for the same size).
    fn checkpoint_at(&self, size: u64) -> Result<String> {
        if size == self.size {
            return Ok(self.checkpoint.clone());
        }
        let root: Hash = tree_hash(size, &self.hashes())
            .map_err(|e| Error::internal(format!("tree hash at {size}: {e}")))?;
        Checkpoint {
            origin: self.ledger.origin.clone(),
            size,
            root,
        }
        .sign(&self.ledger.signer)
        .map_err(|e| Error::internal(format!("signing checkpoint: {e}")))
    }

    fn inclusion(&self, index: u64, size: u64) -> Result<InclusionProof> {
        let hashes = prove_inclusion(index, size, &self.hashes())
            .map_err(|e| Error::internal(format!("inclusion proof: {e}")))?;
        Ok(InclusionProof {
            index,
            tree_size: size,
            hashes,
            checkpoint: self.checkpoint_at(size)?,
        })
    }

    fn entry(&self, index: u64) -> Result<(Vec<u8>, Vec<u8>)> {
        let row = self
            .leaves
            .get(index)?
            .ok_or_else(|| Error::internal(format!("journal entry {index} is missing")))?;
        let leaf = storage::decode_leaf(index, row.value())
            .ok_or_else(|| Error::internal(format!("journal row {index} is malformed")))?;
        Ok((leaf.entry.to_vec(), leaf.body.to_vec()))
    }

    fn revision(&self, index: u64, proof_size: Option<u64>) -> Result<Revision> {
        let (entry, body) = self.entry(index)?;
        let e = Entry::decode(&entry)
            .map_err(|err| Error::internal(format!("journal entry {index}: {err}")))?;
        let proof = match proof_size {
            Some(size) => Some(self.inclusion(index, size)?),
            None => None,
        };
        Ok(Revision {
            table: e.table,
            id: e.id,
            version: e.version,
            operation: e.operation,
            index,
            tx_id: e.tx_id,
            commit_micros: e.commit_time_micros,
            principal: e.principal,
            body,
            entry,
            proof,
        })
    }
}
