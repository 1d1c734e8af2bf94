//! One ledger: opening it, the write API (which queues work for its sequencer) and the
//! read path (storage snapshots, never waiting for the writer).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use graven_verify::{CompactRange, Entry, Signer, State, prove_consistency, prove_inclusion};
use tokio::sync::{mpsc, oneshot, watch};

use super::check::{self, Outcome, Report};
use super::lease::{Claimant, WriteLease};
use super::prepare::Prepared;
use super::sequencer::{Job, Sequencer};
use super::{DB_FILE, HeadProblem, checkpoint_of, files, verified_head};
use crate::error::{Error, ErrorKind, Quote, Result};
use crate::model::{
    ConsistencyProof, DEFAULT_PAGE_SIZE, Head, InclusionProof, IndexInfo, IndexState, JournalItem,
    LedgerInfo, Page, PathStep, Read, Receipt, Revision, StateProof, TableInfo, TreeSize,
    check_document_id, check_table_name,
};
use crate::storage::{self, Ahead, Snapshot, Store, UpperHashes};

/// How many jobs may wait for a sequencer before callers wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 4096;

/// Why a ledger was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The server is shutting down.
    Shutdown,
    /// The ledger was deleted.
    Deleted,
}

/// An open ledger.
pub struct Ledger {
    name: String,
    /// Its folder (the database and the signing key).
    dir: PathBuf,
    store: Arc<Store>,
    signer: Signer,
    vkey: String,
    created_micros: u64,
    max_page_size: u32,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Why the ledger was closed, once it is (also set by the sequencer when it finds the
    /// ledger deleted through another server).
    closed: Arc<Mutex<Option<Closed>>>,
    /// The durable head; closed when the sequencer stops (shutdown or deletion).
    head: watch::Receiver<Head>,
    /// Hashes of large subtrees, for proofs.
    upper: UpperHashes,
    /// The index definitions statements plan with, read again when they change.
    pub(super) defs: storage::DefsCache,
}

impl Ledger {
    /// Opens the ledger in `dir`: reads its key and database, checks them against each
    /// other, and starts the sequencer (see [`Ledger::start`]).
    pub(crate) fn open(
        name: &str,
        dir: &Path,
        config: &super::Config,
        claimant: &Arc<Claimant>,
    ) -> Result<Ledger> {
        let signer = files::read_key_file(dir).map_err(|e| Error::internal(e.to_string()))?;
        let store = Store::open_at(
            &config.storage,
            &dir.join(DB_FILE),
            name,
            config.cache_bytes,
        )?;
        if store.upgrade()? {
            tracing::info!(ledger = %name, "storage layout upgraded to {}", storage::FORMAT_VERSION);
        }
        store.set_state_flush(config.state_flush);
        Ledger::start(
            name,
            dir,
            store,
            signer,
            config.limits.max_page_size,
            claimant.clone(),
        )
    }

    /// Starts serving `store`: restores the tree's right edge from `O(log n)` stored hashes
    /// (no journal replay), checks that it matches the latest signed checkpoint, and starts
    /// the sequencer.
    pub(crate) fn start(
        name: &str,
        dir: &Path,
        store: Store,
        signer: Signer,
        max_page_size: u32,
        claimant: Arc<Claimant>,
    ) -> Result<Ledger> {
        let snap = store.read()?;
        let journal = JournalState::read(name, &snap, &signer)?;
        let created_micros = snap.created_micros()?;
        // The state map of the journal's tail since its last flush, replayed now rather
        // than by the first read.
        snap.prepare_state()?;
        drop(snap);
        let (head_tx, head_rx) = watch::channel(journal.head.clone());
        let lease = WriteLease::new(&store, claimant);
        let store = Arc::new(store);
        let closed = Arc::new(Mutex::new(None));
        let sequencer = Sequencer {
            ledger: name.to_owned(),
            closed: closed.clone(),
            lease,
            fence: None,
            polled: std::time::Instant::now(),
            store: store.clone(),
            signer: signer.clone(),
            range: journal.range,
            next_tx: journal.next_tx,
            last_commit: journal.last_commit,
            failed: None,
            resync: false,
            head: head_tx,
            index_work: true,
            indexes: None,
        };
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let worker = std::thread::Builder::new()
            .name(format!("seq-{name}"))
            .spawn(move || sequencer.run(rx))
            .map_err(|e| Error::internal_from("starting sequencer", e))?;
        Ok(Ledger {
            name: name.to_owned(),
            dir: dir.to_owned(),
            store,
            vkey: signer.verifier().to_vkey(),
            signer,
            created_micros,
            max_page_size,
            jobs: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            closed,
            head: head_rx,
            upper: UpperHashes::default(),
            defs: storage::DefsCache::default(),
        })
    }

    /// Why the ledger was closed; `None` while it is open.
    pub fn closed(&self) -> Option<Closed> {
        self.closed.lock().map_or(Some(Closed::Shutdown), |c| *c)
    }

    /// Whether the ledger was closed (server shutdown or deletion).
    pub fn is_closed(&self) -> bool {
        self.closed().is_some()
    }

    /// The ledger's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The checkpoint origin (and key name).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The verifier key.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// Whether the ledger's storage is across a network: each read then waits on round
    /// trips to it, and belongs on a thread that may block.
    pub fn remote(&self) -> bool {
        self.store.remote()
    }

    /// Stops the sequencer once the jobs already queued are done, and waits for it.
    pub(crate) fn close(&self, why: Closed) {
        if let Ok(mut closed) = self.closed.lock() {
            closed.get_or_insert(why);
        }
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let worker = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(worker) = worker {
            // A sequencer that panicked has answered nobody it still held; nothing to add.
            let _ = worker.join();
        }
    }

    async fn submit<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
        let sender = self
            .jobs
            .lock()
            .map_err(|_| Error::internal("sequencer lock poisoned"))?
            .clone()
            .ok_or_else(|| self.closed_error())?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(job(reply))
            .await
            .map_err(|_| self.closed_error())?;
        answer.await.map_err(|_| self.closed_error())?
    }

    fn closed_error(&self) -> Error {
        match self.closed() {
            Some(Closed::Deleted) => deleted(&self.name),
            _ => Error::unavailable(format!(
                "ledger {} is closed: the server is shutting down",
                Quote(&self.name)
            )),
        }
    }

    /// `e`, or NOT_FOUND when what lies behind it is that the ledger is gone from its
    /// shared storage (deleted through another server): the ledger is then closed here
    /// too. Costs one read, on failures only. Blocking.
    pub fn or_deleted(&self, e: Error) -> Error {
        if !self.remote() || e.kind == ErrorKind::InvalidArgument {
            return e;
        }
        match self.store.ledger_exists() {
            Ok(false) => {
                tracing::info!(ledger = %self.name, "the ledger was deleted through another server");
                self.close(Closed::Deleted);
                deleted(&self.name)
            }
            _ => e,
        }
    }

    /// Commits a prepared transaction; the receipt comes back once it is durable.
    pub async fn transact(&self, tx: Prepared) -> Result<Receipt> {
        self.submit(|reply| Job::Transact(tx, reply)).await
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

    /// Creates an index of `table` on `path`. It is built in the background, between
    /// writes (state `building`, then `online`); queries use it once online.
    pub async fn create_index(&self, table: &str, path: &[PathStep]) -> Result<IndexInfo> {
        check_table_name(table)?;
        self.submit(|reply| Job::CreateIndex(table.to_owned(), path.to_vec(), reply))
            .await
    }

    /// Drops the index of `table` on `path`: queries stop using it at once; its entries
    /// are removed in the background.
    pub async fn drop_index(&self, table: &str, path: &[PathStep]) -> Result<()> {
        check_table_name(table)?;
        self.submit(|reply| Job::DropIndex(table.to_owned(), path.to_vec(), reply))
            .await
    }

    /// Turns deletion protection on or off.
    pub async fn set_deletion_protection(&self, on: bool) -> Result<()> {
        self.submit(|reply| Job::SetProtection(on, reply)).await
    }

    /// A snapshot of the ledger's storage now.
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        Ok(self.store.read()?)
    }

    /// A consistent view for one read, which reads `ahead` (and the journal's size) at
    /// once, in one round trip to a database.
    fn view(&self, ahead: &[Ahead<'_>]) -> Result<View<'_>> {
        let snap = self.store.read()?;
        snap.read_ahead(ahead)?;
        Ok(View {
            ledger: self,
            size: snap.size()?,
            snap,
            state_head: std::cell::OnceCell::new(),
        })
    }

    /// Whether deletion protection is on.
    pub fn deletion_protection(&self) -> Result<bool> {
        Ok(self.store.read()?.deletion_protection()?)
    }

    /// Size, latest checkpoint, key and settings.
    pub fn info(&self) -> Result<LedgerInfo> {
        let v = self.view(&[Ahead::Checkpoint])?;
        Ok(LedgerInfo {
            name: self.name.clone(),
            origin: self.origin().to_owned(),
            size: v.size,
            checkpoint: v.snap.checkpoint()?,
            vkey: self.vkey.clone(),
            deletion_protection: v.snap.deletion_protection()?,
            created_micros: self.created_micros,
            writer: match self.store.leases() {
                None => None,
                Some(leases) => leases.holder()?.map(|(address, _)| address),
            },
        })
    }

    /// The signed checkpoint of the latest size, or of an earlier one.
    pub fn checkpoint(&self, size: TreeSize) -> Result<Head> {
        let v = self.view(&[Ahead::Checkpoint])?;
        let size = v.size_at(size, "size")?;
        Ok(Head {
            size,
            checkpoint: v.checkpoint_at(size)?,
        })
    }

    /// Active tables.
    pub fn tables(&self) -> Result<Vec<TableInfo>> {
        let snap = self.store.read()?;
        let defs = snap.index_defs()?;
        Ok(snap
            .tables()?
            .into_iter()
            .filter(|(_, row)| row.active)
            .map(|(name, row)| TableInfo {
                indexes: index_infos(&defs, &name),
                name,
                created_micros: row.created_micros,
            })
            .collect())
    }

    /// Entry bytes and body at a journal index.
    pub fn entry(&self, index: u64) -> Result<(Vec<u8>, Vec<u8>)> {
        let v = self.view(&[Ahead::Leaf(index)])?;
        if index >= v.size {
            return Err(Error::out_of_range(format!(
                "index {index} is beyond the journal (size {})",
                v.size
            )));
        }
        let row = v.snap.require_leaf(index)?;
        let leaf = row.leaf()?;
        Ok((leaf.entry.to_vec(), leaf.body.to_vec()))
    }

    /// One revision: the current one (`version` absent), or a given version; with an
    /// inclusion proof when `proof` names a tree size.
    pub fn get(
        &self,
        table: &str,
        id: &str,
        version: Option<u64>,
        proof: Option<TreeSize>,
    ) -> Result<Read> {
        check_table_name(table)?;
        check_document_id(id)?;
        // The checkpoint and the state map's path only for a proof (at the latest size,
        // the checkpoint is the stored one).
        let keys = self.head.borrow().size;
        let ahead = [
            Ahead::Table(table),
            Ahead::Current(table, id),
            Ahead::Checkpoint,
            Ahead::StatePath(table, id, keys),
        ];
        let v = self.view(&ahead[..if proof.is_some() { 4 } else { 2 }])?;
        v.require_table(table)?;
        let current = v.snap.current(table, id)?;
        // Asked with a proof of the current revision, no document is an answer too.
        let state = match (proof, version) {
            (Some(asked), None) if v.size_at(asked, "proof tree_size")? == v.size => {
                v.state_proof(table, id)?
            }
            _ => None,
        };
        let Some(current) = current else {
            return match state {
                Some(absent) => Ok(Read::Absent(absent)),
                None => Err(no_document(table, id)),
            };
        };
        let index = match version {
            None if !current.live => {
                if let Some(absent) = state {
                    return Ok(Read::Absent(absent));
                }
                return Err(Error::not_found(format!(
                    "document {} in table {} was deleted at version {}; ask for an earlier \
                     version or its history",
                    Quote(id),
                    Quote(table),
                    current.version
                )));
            }
            None => current.index,
            Some(n) if n == current.version => current.index,
            Some(n) => {
                v.snap
                    .earlier(table, id, n)?
                    .ok_or_else(|| {
                        Error::not_found(format!(
                            "document {} in table {} has no version {n} (current version {})",
                            Quote(id),
                            Quote(table),
                            current.version
                        ))
                    })?
                    .index
            }
        };
        let proof_size = v.proof_size(proof, index)?;
        let mut revision = v.revision(index, proof_size)?;
        revision.state = state.map(Box::new);
        Ok(Read::Revision(revision))
    }

    fn page_size(&self, asked: Option<u32>) -> Result<usize> {
        match asked {
            None => Ok(DEFAULT_PAGE_SIZE as usize),
            Some(n) if n <= self.max_page_size => Ok(n as usize),
            Some(n) => Err(Error::exhausted(format!(
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
        page_size: Option<u32>,
        page_token: Option<&str>,
        proof: Option<TreeSize>,
    ) -> Result<Page> {
        check_table_name(table)?;
        check_document_id(id)?;
        let limit = self.page_size(page_size)?;
        let from = match page_token {
            None => 0,
            Some(token) => {
                graven_verify::checkpoint::parse_decimal(token).ok_or_else(|| bad_token(token))?
            }
        };
        let v = self.view(&[Ahead::Table(table), Ahead::Current(table, id)])?;
        v.require_table(table)?;
        if v.snap.current(table, id)?.is_none() {
            return Err(no_document(table, id));
        }
        let mut indexes = Vec::new();
        let mut next = None;
        // Earlier revisions by version, then the current one (its row sorts last).
        for row in v.snap.revisions(table, id, from)? {
            let row = row?;
            if row.version < from {
                continue; // the current row, when the token is past the current version
            }
            if indexes.len() == limit {
                next = Some(row.version.to_string());
                break;
            }
            indexes.push(row.index);
        }
        Ok(Page {
            revisions: v.revisions(&indexes, proof)?,
            next,
        })
    }

    /// The current revisions of a table's live documents, by id, after the page token.
    pub fn scan(
        &self,
        table: &str,
        page_size: Option<u32>,
        page_token: Option<&str>,
        proof: Option<TreeSize>,
    ) -> Result<Page> {
        check_table_name(table)?;
        let limit = self.page_size(page_size)?;
        let mut after = page_token.map(decode_token).transpose()?;
        let v = self.view(&[Ahead::Table(table)])?;
        v.require_table(table)?;
        let mut indexes = Vec::new();
        let mut next = None;
        let mut last_returned: Option<String> = None;
        while let Some((id, current)) = v.snap.next_document(table, after.as_deref())? {
            after = Some(id);
            if !current.live {
                continue;
            }
            if indexes.len() == limit {
                // The last id returned is where the next page starts (exclusive).
                next = last_returned.as_deref().map(encode_token);
                break;
            }
            last_returned.clone_from(&after);
            indexes.push(current.index);
        }
        let mut revisions = v.revisions(&indexes, proof)?;
        if let Some(asked) = proof
            && v.size_at(asked, "proof tree_size")? == v.size
        {
            for r in &mut revisions {
                r.state = v.state_proof(&r.table, &r.id)?.map(Box::new);
            }
        }
        Ok(Page { revisions, next })
    }

    /// The durable head, updated after every commit. `changed()` fails once the ledger
    /// is closed (server shutdown or ledger deletion).
    pub fn head(&self) -> watch::Receiver<Head> {
        self.head.clone()
    }

    /// The compact range of `[0, size)`: the subtree hashes a stream starting at `size`
    /// needs to verify.
    pub fn frontier(&self, size: u64) -> Result<CompactRange> {
        let v = self.view(&[])?;
        let size = v.size_at(TreeSize::At(size), "index")?;
        CompactRange::read(size, &v.hashes())
            .map_err(|e| Error::internal(format!("reading the tree: {e}")))
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
        let v = self.view(&[])?;
        let to = to.min(v.size);
        let mut out = Vec::new();
        let mut bytes = 0;
        if from >= to {
            return Ok(out);
        }
        // One range read: a database sends its rows a page per round trip.
        for row in v.snap.leaves_in(from, to)? {
            if bytes >= max_bytes {
                break;
            }
            // Each row read and decoded once, whether it is delivered or skipped.
            let row = row?;
            let index = row.index();
            let leaf = row.leaf()?;
            let entry = decode_entry(index, leaf.entry)?;
            if !tables.is_empty() && !tables.contains(&entry.table) {
                out.push(JournalItem::Skipped {
                    index,
                    leaf_hash: leaf.leaf_hash(),
                });
                bytes += 40;
                continue;
            }
            let revision = revision_from(index, &leaf, entry, None);
            bytes += revision.entry.len() + revision.body.len();
            out.push(JournalItem::Revision(revision));
        }
        Ok(out)
    }

    /// An inclusion proof of `index` in the tree of `tree_size`.
    pub fn prove_inclusion(&self, index: u64, tree_size: TreeSize) -> Result<InclusionProof> {
        let v = self.view(&[Ahead::Checkpoint])?;
        let size = v.size_at(tree_size, "tree_size")?;
        if index >= size {
            let err =
                format!("index {index} is out of range: it must be below the tree size {size}");
            // Past the latest size, the index may exist later; below a given size, never.
            return Err(match tree_size {
                TreeSize::Latest => Error::out_of_range(format!("{err} (the ledger size)")),
                TreeSize::At(_) => Error::invalid(err),
            });
        }
        v.inclusion(index, size)
    }

    /// That the revision at `index` is its document's current one at the latest
    /// checkpoint, if it is, and that checkpoint's size is `size` (the state map of an
    /// older size is not kept).
    pub fn prove_current(&self, index: u64, size: u64) -> Result<Option<StateProof>> {
        let v = self.view(&[Ahead::Checkpoint, Ahead::Leaf(index)])?;
        if v.size != size || index >= size {
            return Ok(None);
        }
        let entry = entry_at(&v.snap, index)?;
        match v.snap.current(&entry.table, &entry.id)? {
            Some(row) if row.live && row.index == index => v.state_proof(&entry.table, &entry.id),
            _ => Ok(None),
        }
    }

    /// A consistency proof from `old_size` to `new_size`.
    pub fn prove_consistency(&self, old_size: u64, new_size: TreeSize) -> Result<ConsistencyProof> {
        let v = self.view(&[Ahead::Checkpoint])?;
        let new = v.size_at(new_size, "new_size")?;
        if old_size > new {
            let err = format!(
                "old_size {old_size} is out of range: it must be at most the new size {new}"
            );
            return Err(match new_size {
                TreeSize::Latest => Error::out_of_range(format!("{err} (the ledger size)")),
                TreeSize::At(_) => Error::invalid(err),
            });
        }
        let hashes = prove_consistency(old_size, new, &v.hashes())
            .map_err(|e| Error::internal(format!("consistency proof: {e}")))?;
        Ok(ConsistencyProof {
            old_size,
            new_size: new,
            hashes,
            checkpoint: v.checkpoint_at(new)?,
        })
    }

    /// Runs the tamper check ([`check`]) over one snapshot while writes go on. The
    /// `signing.key` on disk must also be the key the server signs with.
    pub fn check(&self, report: &mut Report<'_>) -> Outcome {
        let on_disk = check::read_key(&self.dir)?;
        if on_disk.verifier().to_vkey() != self.vkey {
            return Err(check::CheckError::Damaged(format!(
                "{} on disk is not the key the server signs with (it was replaced while the \
                 server ran)",
                super::KEY_FILE
            )));
        }
        check::check_snapshot(
            &self.store.read().map_err(check::storage)?,
            &on_disk,
            report,
        )
    }
}

/// Where a ledger's journal stands in storage: what the sequencer needs to go on writing.
pub(crate) struct JournalState {
    /// The tree's right edge.
    pub(crate) range: CompactRange,
    /// The next transaction id.
    pub(crate) next_tx: u64,
    /// The last commit time.
    pub(crate) last_commit: u64,
    /// The size and the stored signed checkpoint.
    pub(crate) head: Head,
}

impl JournalState {
    /// Reads it from `snap`: the tree's right edge from `O(log n)` stored hashes (no
    /// journal replay), checked against the latest signed checkpoint, and where
    /// transaction ids and commit times resume (the last entry).
    pub(crate) fn read(name: &str, snap: &Snapshot, signer: &Signer) -> Result<JournalState> {
        // Embedded, a missing row is damage, found below.
        if snap.remote() && !snap.ledger_exists()? {
            return Err(deleted(name));
        }
        let (note, head) = verified_head(snap, signer).map_err(|p| match p {
            HeadProblem::Damaged(m) | HeadProblem::Unreadable(m) => Error::internal(m),
        })?;
        let size = snap.size()?;
        let range = CompactRange::read(size, &snap.hashes())
            .map_err(|e| Error::internal(format!("reading the tree: {e}")))?;
        let (next_tx, last_commit) = match size.checked_sub(1) {
            None => (0, 0),
            Some(index) => {
                let e = entry_at(snap, index)?;
                (e.tx_id + 1, e.commit_time_micros)
            }
        };
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
        Ok(JournalState {
            range,
            next_tx,
            last_commit,
            head: Head {
                size,
                checkpoint: note,
            },
        })
    }
}

/// A request's answer when its ledger was deleted (here or through another server).
/// The indexes of `table` among `defs`, as clients see them (one being dropped is gone).
pub(crate) fn index_infos(defs: &[storage::IndexDef], table: &str) -> Vec<IndexInfo> {
    defs.iter()
        .filter(|d| d.table == table)
        .filter_map(|d| {
            let state = match d.state {
                storage::DefState::Building => IndexState::Building,
                storage::DefState::Online => IndexState::Online,
                storage::DefState::Dropping => return None,
            };
            Some(IndexInfo {
                path: d.path.clone(),
                state,
                indexed: d.indexed,
                created_micros: d.created_micros,
            })
        })
        .collect()
}

pub(crate) fn deleted(name: &str) -> Error {
    Error::not_found(format!("ledger {} was deleted", Quote(name)))
}

fn no_document(table: &str, id: &str) -> Error {
    Error::not_found(format!(
        "document {} does not exist in table {}",
        Quote(id),
        Quote(table)
    ))
}

fn bad_token(token: &str) -> Error {
    Error::invalid(format!("page_token {} is invalid", Quote(token)))
}

/// Scan page tokens: the hex of the last id returned.
fn encode_token(id: &str) -> String {
    hex::encode(id)
}

fn decode_token(token: &str) -> Result<String> {
    hex::decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| bad_token(token))
}

/// Decodes the entry at `index`; one that does not decode is a storage failure.
pub(crate) fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry> {
    Entry::decode(bytes).map_err(|e| Error::internal(format!("journal entry {index}: {e}")))
}

/// The decoded entry at `index` of a snapshot.
fn entry_at(snap: &Snapshot, index: u64) -> Result<Entry> {
    let row = snap.require_leaf(index)?;
    decode_entry(index, row.leaf()?.entry)
}

/// A consistent view of a ledger for one read: a storage snapshot and its journal size.
struct View<'a> {
    ledger: &'a Ledger,
    snap: Snapshot,
    size: u64,
    /// The last entry and its inclusion proof, once a state proof needed them (`None`
    /// when that entry carries no state root).
    state_head: std::cell::OnceCell<Result<StateHead>>,
}

/// The last entry of a view and its inclusion proof, when it carries the state root.
type StateHead = Option<(Vec<u8>, InclusionProof)>;

impl View<'_> {
    /// The snapshot's stored hashes, through the ledger's cache.
    fn hashes(&self) -> storage::CachedHashes<'_> {
        self.snap.cached_hashes(&self.ledger.upper, self.size)
    }

    fn require_table(&self, table: &str) -> Result<()> {
        match self.snap.table(table)? {
            Some(row) if row.active => Ok(()),
            _ => Err(Error::not_found(format!(
                "table {} does not exist",
                Quote(table)
            ))),
        }
    }

    /// `size` resolved against the snapshot: at most the journal size (beyond it is out
    /// of range, for now). `field` names it in the error.
    fn size_at(&self, size: TreeSize, field: &str) -> Result<u64> {
        match size {
            TreeSize::Latest => Ok(self.size),
            TreeSize::At(n) if n <= self.size => Ok(n),
            TreeSize::At(n) => Err(Error::out_of_range(format!(
                "{field} {n} is out of range: it is beyond the journal (size {})",
                self.size
            ))),
        }
    }

    /// The tree size a read's proof is against, if it asked for one: above the revision's
    /// index and at most the journal size.
    fn proof_size(&self, asked: Option<TreeSize>, index: u64) -> Result<Option<u64>> {
        let Some(asked) = asked else {
            return Ok(None);
        };
        let size = self.size_at(asked, "proof tree_size")?;
        if size <= index {
            return Err(Error::invalid(format!(
                "proof tree_size {size} is out of range: it must be above the revision's \
                 index {index}"
            )));
        }
        Ok(Some(size))
    }

    /// A signed checkpoint of `size`: the stored latest one, or a new signature over the
    /// root at `size` (deterministic, so always the same bytes for the same size).
    fn checkpoint_at(&self, size: u64) -> Result<String> {
        if size == self.size {
            return Ok(self.snap.checkpoint()?);
        }
        checkpoint_of(&self.ledger.signer, size, &self.hashes())
    }

    fn inclusion(&self, index: u64, size: u64) -> Result<InclusionProof> {
        self.inclusion_with(index, size, self.hashes())
    }

    /// [`View::inclusion`], its hashes read through `hashes`.
    fn inclusion_with(
        &self,
        index: u64,
        size: u64,
        hashes: storage::CachedHashes<'_>,
    ) -> Result<InclusionProof> {
        let hashes = prove_inclusion(index, size, &hashes)
            .map_err(|e| Error::internal(format!("inclusion proof: {e}")))?;
        Ok(InclusionProof {
            index,
            tree_size: size,
            hashes,
            checkpoint: self.checkpoint_at(size)?,
        })
    }

    /// What the snapshot's checkpoint says of a document's current state, if its last
    /// entry carries the state map's root (a ledger from before state commitments that
    /// has not committed since has none; nor has an empty one).
    fn state_proof(&self, table: &str, id: &str) -> Result<Option<StateProof>> {
        let Some(last) = self.size.checked_sub(1) else {
            return Ok(None);
        };
        let head = self.state_head.get_or_init(|| {
            let row = self.snap.require_leaf(last)?;
            let entry = row.leaf()?.entry.to_vec();
            if !matches!(decode_entry(last, &entry)?.state, State::Root(_)) {
                return Ok(None);
            }
            let inclusion = self.inclusion_with(last, self.size, self.hashes().with_leaf(last))?;
            Ok(Some((entry, inclusion)))
        });
        let Some((entry, inclusion)) = head.as_ref().map_err(Clone::clone)? else {
            return Ok(None);
        };
        Ok(Some(StateProof {
            tree_size: self.size,
            state_entry: entry.clone(),
            state_hashes: inclusion.hashes.clone(),
            map: self.snap.state_proof(table, id)?,
            checkpoint: inclusion.checkpoint.clone(),
        }))
    }

    /// The revisions at `indexes`, their leaves rows read ahead together; each with an
    /// inclusion proof when `proof` names a tree size.
    fn revisions(&self, indexes: &[u64], proof: Option<TreeSize>) -> Result<Vec<Revision>> {
        let ahead: Vec<Ahead<'_>> = indexes.iter().map(|&i| Ahead::Leaf(i)).collect();
        self.snap.read_ahead(&ahead)?;
        indexes
            .iter()
            .map(|&index| {
                let proof_size = self.proof_size(proof, index)?;
                self.revision(index, proof_size)
            })
            .collect()
    }

    fn revision(&self, index: u64, proof_size: Option<u64>) -> Result<Revision> {
        // The proof first: its hashes' rows and the leaf's own are read together.
        let proof = match proof_size {
            Some(size) => Some(self.inclusion_with(index, size, self.hashes().with_leaf(index))?),
            None => None,
        };
        let row = self.snap.require_leaf(index)?;
        let leaf = row.leaf()?;
        let entry = decode_entry(index, leaf.entry)?;
        Ok(revision_from(index, &leaf, entry, proof))
    }
}

/// The revision of the leaf at `index`, its entry decoded.
fn revision_from(
    index: u64,
    leaf: &storage::Leaf<'_>,
    e: Entry,
    proof: Option<InclusionProof>,
) -> Revision {
    Revision {
        table: e.table,
        id: e.id,
        version: e.version,
        operation: e.operation,
        index,
        tx_id: e.tx_id,
        commit_micros: e.commit_time_micros,
        principal: e.principal,
        body: leaf.body.to_vec(),
        entry: leaf.entry.to_vec(),
        proof,
        state: None,
    }
}
