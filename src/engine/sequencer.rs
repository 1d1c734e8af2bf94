//! The sequencer: the one writer of a ledger.
//!
//! It runs on its own thread, takes every job waiting in its queue, and commits the
//! transactions among them together (group commit): conditions are checked in order
//! against the state left by the transactions before, all entries, bodies, index rows and
//! tree hashes go into one redb write transaction, one checkpoint is signed for the new
//! size, the transaction is made durable (`Durability::Immediate`: fsync), and only then is
//! each client answered. A transaction that fails a check writes nothing; a storage
//! failure fails the whole batch, answers every client with an error, and stops the
//! ledger accepting writes (after a failed fsync the state on disk is unknown).
//!
//! It MUST NOT answer a client before its batch is durable.
//!
//! On storage several servers share, the sequencer also keeps the ledger's write lease
//! ([`super::lease`]): it claims it before its first write, fences every batch with it,
//! renews it, and gives it up when it stops. While another server holds it, writes are
//! answered with [`crate::error::ErrorKind::NotWriter`], and the sequencer keeps the head
//! it publishes for the change stream up to date by polling the storage every [`TICK`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use graven_verify::{CompactRange, Entry, Operation, Signer, State};
use tokio::sync::{mpsc, oneshot, watch};

use super::apply::{check_op, check_shape, next_version, op_name};
use super::lease::WriteLease;
use super::ledger::{Closed, JournalState, deleted};
use super::prepare::Prepared;
use super::reads::{MAX_REVISIONS_SINCE, ReadSet};
use super::{checkpoint_of, now_micros, sign_checkpoint};
use crate::error::{Error, ErrorKind, Quote, Result};
use crate::model::{
    Head, IndexInfo, IndexState, MAX_INDEXES_PER_TABLE, Op, OpResult, PathStep, Receipt, TableInfo,
    path_text,
};
use crate::storage::{
    self, Ahead, DefState, DocRow, IndexDef, Lease, NewRevision, Store, StoredReceipt, TableRow,
    Writer, encode_value, value_at,
};

/// Most operations committed in one batch; more wait for the next one.
const MAX_BATCH_OPERATIONS: usize = 20_000;

/// On shared storage, how often an idle sequencer looks after its lease and, while
/// another server writes and somebody follows the change stream, polls the head: a commit
/// made elsewhere reaches the stream within about this long.
pub(crate) const TICK: Duration = Duration::from_millis(25);

/// Work for the sequencer. Each job carries the channel its answer goes to.
pub(crate) enum Job {
    Transact(Prepared, oneshot::Sender<Result<Receipt>>),
    CreateTable(String, oneshot::Sender<Result<TableInfo>>),
    DropTable(String, oneshot::Sender<Result<()>>),
    SetProtection(bool, oneshot::Sender<Result<()>>),
    CreateIndex(String, Vec<PathStep>, oneshot::Sender<Result<IndexInfo>>),
    DropIndex(String, Vec<PathStep>, oneshot::Sender<Result<()>>),
}

/// How many documents one step of an index build adds (and, four times as many, entries
/// one step of a drop removes), each step one durable batch between the batches of
/// writes.
const INDEX_CHUNK: usize = 4096;

/// The sequencer's state, owned by its thread.
pub(crate) struct Sequencer {
    /// The ledger's name, for errors.
    pub(crate) ledger: String,
    /// The ledger's reason to be closed: the sequencer sets it, and stops, when it finds
    /// the ledger deleted from shared storage through another server.
    pub(crate) closed: Arc<Mutex<Option<Closed>>>,
    pub(crate) store: Arc<Store>,
    /// The ledger's key; its name is the checkpoint origin.
    pub(crate) signer: Signer,
    /// The tree's right edge: appends compute new stored hashes from it without reads.
    pub(crate) range: CompactRange,
    pub(crate) next_tx: u64,
    pub(crate) last_commit: u64,
    /// Set after a storage failure: the ledger then refuses writes until restarted.
    pub(crate) failed: Option<String>,
    /// Set when the storage could not be reached during a commit, whose fate is then
    /// unknown: the state is read back from storage before the next write.
    pub(crate) resync: bool,
    /// The durable head, published after each commit for the change stream.
    pub(crate) head: watch::Sender<Head>,
    /// The ledger's write lease on shared storage.
    pub(crate) lease: WriteLease,
    /// The lease this server's batches are fenced with now.
    pub(crate) fence: Option<Lease>,
    /// When the head was last polled.
    pub(crate) polled: Instant,
    /// Whether an index may be building or dropping: the sequencer then works on it
    /// between jobs ([`Sequencer::index_step`]).
    pub(crate) index_work: bool,
    /// The index definitions writes maintain, as last read; `None` until read again
    /// (after anything that may change them: an index job or step, a takeover).
    pub(crate) indexes: Option<Vec<IndexDef>>,
}

impl Sequencer {
    /// Runs until every sender of `jobs` is gone.
    pub(crate) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        // On shared storage, waiting for work must end at each tick.
        let clock = match self.lease.shared() {
            false => None,
            true => match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => Some(rt),
                Err(e) => {
                    self.failed = Some(format!("starting the sequencer's timer: {e}"));
                    None
                }
            },
        };
        let mut pending: Option<Job> = None;
        loop {
            if clock.is_some() {
                self.tick();
                // Found deleted through another server (only shared storage can be):
                // the jobs still queued are answered by the ledger.
                if self.deleted() {
                    break;
                }
            }
            let first = match pending.take() {
                Some(job) => Some(job),
                // Index work fills the time between jobs.
                None if self.may_work_on_indexes() => match jobs.try_recv() {
                    Ok(job) => Some(job),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.index_step();
                        None
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                },
                None => {
                    let next = match &clock {
                        None => jobs.blocking_recv(),
                        // The timer is made inside the runtime, whose clock it needs.
                        Some(rt) => match rt
                            .block_on(async { tokio::time::timeout(TICK, jobs.recv()).await })
                        {
                            Ok(next) => next,
                            Err(_) => continue,
                        },
                    };
                    match next {
                        Some(job) => Some(job),
                        None => break,
                    }
                }
            };
            let first = match first {
                Some(job) => job,
                None => continue,
            };
            // A client that went away gets no answer; its work was done all the same.
            match first {
                Job::Transact(tx, reply) => {
                    let mut ops = tx.tx.ops.len();
                    let mut batch = vec![(tx, reply)];
                    // Group commit: take every transaction already waiting.
                    while ops < MAX_BATCH_OPERATIONS {
                        match jobs.try_recv() {
                            Ok(Job::Transact(tx, reply)) => {
                                ops += tx.tx.ops.len();
                                batch.push((tx, reply));
                            }
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_batch(batch);
                }
                Job::CreateTable(name, reply) => {
                    let _ = reply.send(self.admin(|w, now| create_table(w, &name, now)));
                }
                Job::DropTable(name, reply) => {
                    let _ = reply.send(self.admin(|w, _| drop_table(w, &name)));
                }
                Job::SetProtection(on, reply) => {
                    let _ = reply.send(self.admin(|w, _| {
                        w.put_deletion_protection(on);
                        Ok(())
                    }));
                }
                Job::CreateIndex(table, path, reply) => {
                    let made = self.admin(|w, now| create_index(w, &table, &path, now));
                    self.index_work |= made.is_ok();
                    self.indexes = None;
                    let _ = reply.send(made);
                }
                Job::DropIndex(table, path, reply) => {
                    let dropped = self.admin(|w, _| drop_index(w, &table, &path));
                    self.index_work |= dropped.is_ok();
                    self.indexes = None;
                    let _ = reply.send(dropped);
                }
            }
            // Under a steady load of writes, index work goes on between their batches.
            if self.may_work_on_indexes() {
                self.index_step();
            }
        }
        self.flush_state();
        self.lease.release(&self.store, &self.ledger);
    }

    /// On the way out, as the ledger's writer: writes the state map's records changed
    /// since their last flush, so that the next start has nothing to replay.
    fn flush_state(&mut self) {
        if self.failed.is_some()
            || self.deleted()
            || (self.lease.shared() && !self.lease.is_writer())
        {
            return;
        }
        let flushed = self.writer(&self.store).and_then(|mut w| {
            w.flush_state();
            Ok(w.commit()?)
        });
        if let Err(e) = flushed {
            tracing::warn!(ledger = %self.ledger, error = %e, "writing the state map on the way out failed; the next start replays it");
        }
    }

    /// On shared storage, between jobs: renews the lease when due; while another server
    /// writes and the change stream has followers, publishes the head it committed.
    fn tick(&mut self) {
        self.lease.renew_if_due(&self.store, &self.ledger);
        // The ledger itself holds one receiver of the head; more are followers.
        if self.lease.is_writer() || self.head.receiver_count() <= 1 {
            return;
        }
        if self.polled.elapsed() < TICK {
            return;
        }
        self.polled = Instant::now();
        if let Err(e) = self.poll_head() {
            tracing::warn!(ledger = %self.ledger, error = %e, "polling the head failed");
        }
    }

    /// Publishes the head another server committed, once its checkpoint verifies.
    fn poll_head(&mut self) -> Result<()> {
        let snap = self.store.read()?;
        let size = snap.size()?;
        if size < self.head.borrow().size && !snap.ledger_exists()? {
            // A journal never shrinks: the ledger was deleted through another server.
            self.mark_deleted();
            return Ok(());
        }
        if size <= self.head.borrow().size {
            return Ok(());
        }
        let checkpoint = snap.checkpoint()?;
        let signed =
            graven_verify::open_checkpoint(checkpoint.as_bytes(), &[self.signer.verifier()])
                .map_err(|e| Error::internal(format!("the stored checkpoint: {e}")))?;
        if signed.checkpoint.size != size {
            return Err(Error::internal(format!(
                "the stored checkpoint is of size {}, the journal's {size}",
                signed.checkpoint.size
            )));
        }
        self.head.send_replace(Head { size, checkpoint });
        Ok(())
    }

    /// Whether this server may write now: the ledger did not fail, it holds the lease
    /// (claimed now if nobody holds it; [`ErrorKind::NotWriter`] if another server
    /// does), and its state is the storage's.
    fn check_writable(&mut self) -> Result<()> {
        if let Some(why) = &self.failed {
            return Err(Error::unavailable(format!(
                "ledger stopped accepting writes after a storage failure ({why}); restart the server"
            )));
        }
        let writable = self.lease.ensure(&self.store, &self.ledger)?;
        self.fence = writable.fence;
        if self.resync || writable.claimed {
            self.read_back().inspect_err(|e| {
                if e.kind == ErrorKind::NotFound {
                    self.mark_deleted();
                }
            })?;
        }
        Ok(())
    }

    /// Whether the ledger was found deleted (see [`Sequencer::closed`]).
    fn deleted(&self) -> bool {
        self.closed
            .lock()
            .is_ok_and(|c| *c == Some(Closed::Deleted))
    }

    fn mark_deleted(&self) {
        tracing::info!(ledger = %self.ledger, "the ledger was deleted through another server");
        if let Ok(mut closed) = self.closed.lock() {
            closed.get_or_insert(Closed::Deleted);
        }
    }

    /// A write batch over a snapshot of now, fenced by the lease.
    fn writer<'s>(&self, store: &'s Store) -> Result<Writer<'s>> {
        let mut w = store.write()?;
        if let Some(lease) = self.fence {
            w.fence(lease);
        }
        Ok(w)
    }

    /// After a commit whose fate is unknown (the storage went away during it): the
    /// journal as storage has it, which is the truth, whether the commit happened or not.
    /// Subscribers see the head if it moved.
    fn read_back(&mut self) -> Result<()> {
        let journal = JournalState::read(&self.ledger, &self.store.read()?, &self.signer)?;
        self.range = journal.range;
        self.next_tx = journal.next_tx;
        self.last_commit = journal.last_commit;
        if self.head.borrow().size != journal.head.size {
            self.head.send_replace(journal.head);
        }
        if self.resync {
            tracing::info!(origin = %self.signer.name(), "the storage is back; writes resume");
        }
        self.resync = false;
        // A server that takes over writing takes over the index work too, and the
        // definitions as another server may have left them.
        self.index_work = true;
        self.indexes = None;
        Ok(())
    }

    /// Commits `w`. On failure: storage out of reach leaves the commit's fate unknown
    /// until the state is read back; any other failure stops the ledger's writes (after a
    /// failed fsync the state on disk is unknown, and retrying can hide data loss).
    /// On shared storage, a commit refused by its fence or its journal condition (another
    /// server writes now) wrote nothing: the lease is given up, and the batch is answered
    /// as its new writer says (see [`Sequencer::commit_batch`]).
    fn commit(&mut self, w: Writer<'_>) -> Result<()> {
        let e = match w.commit() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if e.kind() == storage::ErrorKind::Conflict && self.lease.shared() {
            // Deleting a ledger removes its lease too, which fences its writer off.
            if let Ok(false) = self.store.ledger_exists() {
                self.mark_deleted();
                return Err(deleted(&self.ledger));
            }
            tracing::warn!(ledger = %self.ledger, error = %e, "commit fenced off: another server writes now");
            self.lease.lost();
            self.resync = true;
            return Err(Error::unavailable(format!(
                "another server took over writing ledger {} during this commit; nothing of \
                 it was written ({e})",
                Quote(&self.ledger)
            )));
        }
        let e = Error::from(e);
        if e.kind == ErrorKind::Unavailable {
            self.resync = true;
        } else {
            self.failed = Some(e.to_string());
        }
        Err(e)
    }

    /// Runs one administrative change in its own durable write transaction.
    fn admin<T>(&mut self, change: impl FnOnce(&mut Writer<'_>, u64) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let store = self.store.clone();
        let mut w = self.writer(&store)?;
        let out = change(&mut w, now_micros())?;
        self.commit(w)?;
        Ok(out)
    }

    /// Commits a batch of transactions and answers each client.
    fn commit_batch(&mut self, batch: Vec<(Prepared, oneshot::Sender<Result<Receipt>>)>) {
        let (txs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let mut retried = false;
        let results = loop {
            let saved = (self.range.clone(), self.next_tx, self.last_commit);
            let was_writer = self.lease.is_writer();
            match self.check_writable().and_then(|()| self.write_batch(&txs)) {
                Ok(results) => break results,
                Err(e) => {
                    // Nothing of the batch is durable: forget it.
                    (self.range, self.next_tx, self.last_commit) = saved;
                    // Refused because another server took over: nothing was written, so
                    // the batch may go again, here if this server gets the lease back, or
                    // (NOT_WRITER) to the new writer.
                    if was_writer && !self.lease.is_writer() && !retried && self.resync {
                        retried = true;
                        continue;
                    }
                    if e.kind != ErrorKind::NotWriter {
                        tracing::error!(origin = %self.signer.name(), error = %e, "batch failed");
                    }
                    break txs.iter().map(|_| Err(e.clone())).collect();
                }
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // A client that went away still had its transaction committed; nothing to do.
            let _ = reply.send(result);
        }
    }

    /// Writes a batch in one write transaction and makes it durable. The outer error is a
    /// storage failure (the batch is lost); the inner ones are per-transaction outcomes.
    fn write_batch(&mut self, txs: &[Prepared]) -> Result<Vec<Result<Receipt>>> {
        let store = self.store.clone();
        let mut w = self.writer(&store)?;
        // What the batch's checks read, in one round trip to a database.
        let mut ahead = Vec::new();
        for tx in txs {
            if let Some((key, _)) = &tx.tx.idempotency {
                ahead.push(Ahead::Receipt(key));
            }
            for op in &tx.tx.ops {
                let (table, id) = op.target();
                ahead.extend([
                    Ahead::Table(table),
                    Ahead::Current(table, id),
                    // The map holds at most one key per revision.
                    Ahead::StatePath(table, id, self.range.size()),
                ]);
            }
        }
        w.read_ahead(&ahead)?;
        // The indexes writes maintain (definitions change only in batches of their own),
        // read once and kept until one of those.
        let indexes = match self.indexes.take() {
            Some(defs) => defs,
            None => w
                .index_defs()?
                .into_iter()
                .filter(|d| d.state != DefState::Dropping)
                .collect(),
        };
        let now = now_micros().max(self.last_commit);
        let mut results = Vec::with_capacity(txs.len());
        let mut remembered: HashMap<&str, StoredReceipt> = HashMap::new();
        let mut wrote = false;
        for tx in txs {
            let outcome = match self.apply(&mut w, tx, now, &remembered, &indexes)? {
                Ok((receipt, stored)) => {
                    if let (Some(stored), Some((key, _))) = (stored, &tx.tx.idempotency) {
                        remembered.insert(key, stored);
                    }
                    Ok(receipt)
                }
                Err(e) => Err(e),
            };
            wrote |= matches!(&outcome, Ok(r) if !r.replayed);
            results.push(outcome);
        }
        if wrote {
            let size = self.range.size();
            let checkpoint = sign_checkpoint(&self.signer, size, self.range.root())?;
            for (key, mut stored) in remembered {
                stored.tree_size = size;
                w.put_receipt(key, &stored)?;
            }
            w.put_checkpoint(&checkpoint);
            for r in results.iter_mut().flatten() {
                // A replay of a key first used in this batch gets the batch's checkpoint.
                if !r.replayed || r.checkpoint.is_empty() {
                    r.checkpoint.clone_from(&checkpoint);
                    r.tree_size = size;
                }
            }
            self.commit(w)?;
            self.last_commit = now;
            // Only now, once durable, may subscribers see it.
            self.head.send_replace(Head { size, checkpoint });
        }
        self.indexes = Some(indexes);
        // A batch that wrote nothing (every transaction refused or replayed) is dropped.
        Ok(results)
    }

    /// Applies one transaction inside the batch's write transaction, or explains why not.
    /// Returns the receipt and, for a new transaction with an idempotency key, what to
    /// remember for it. The outer error is a storage failure.
    fn apply(
        &mut self,
        w: &mut Writer<'_>,
        prepared: &Prepared,
        now: u64,
        remembered: &HashMap<&str, StoredReceipt>,
        indexes: &[IndexDef],
    ) -> Result<Result<(Receipt, Option<StoredReceipt>)>> {
        let request = prepared.tx.idempotency.as_ref().map(|(_, h)| h.to_hex());
        if let Some(answer) = self.earlier_answer(w, prepared, request.as_deref(), remembered)? {
            return Ok(answer.map(|receipt| (receipt, None)));
        }
        if let Err(e) = check_shape(&prepared.tx.ops) {
            return Ok(Err(e));
        }
        if let Some(reads) = &prepared.reads
            && let Err(e) = self.check_reads(w, reads)?
        {
            return Ok(Err(e));
        }
        let states = match states_before(w, &prepared.tx.ops)? {
            Ok(states) => states,
            Err(e) => return Ok(Err(e)),
        };
        let receipt = self.write_revisions(w, prepared, &states, now, indexes)?;
        let stored = request.map(|request| StoredReceipt {
            request,
            tx_id: receipt.tx_id,
            first_index: receipt.first_index,
            revisions: receipt.revisions,
            commit_micros: now,
            tree_size: 0, // set once the batch's size is known
            results: receipt.results.clone(),
        });
        Ok(Ok((receipt, stored)))
    }

    /// The answer to a transaction whose idempotency key was used before (in an earlier
    /// batch, or earlier in this one): its first receipt, or a refusal when the key was
    /// used for another request. `None` for a key not seen yet, or no key.
    fn earlier_answer(
        &self,
        w: &Writer<'_>,
        prepared: &Prepared,
        request: Option<&str>,
        remembered: &HashMap<&str, StoredReceipt>,
    ) -> Result<Option<Result<Receipt>>> {
        let Some((key, _)) = &prepared.tx.idempotency else {
            return Ok(None);
        };
        let earlier = match remembered.get(key.as_str()) {
            Some(stored) => Some(stored.clone()),
            None => w.receipt(key)?,
        };
        let Some(stored) = earlier else {
            return Ok(None);
        };
        if Some(stored.request.as_str()) != request {
            return Ok(Some(Err(Error::precondition(format!(
                "idempotency key {} was already used for a different transaction",
                Quote(key)
            )))));
        }
        self.replay(w, stored).map(|r| Some(Ok(r)))
    }

    /// Appends the revisions of a transaction that passed its checks (`states`: each
    /// operation's document before it) and returns its receipt, without a checkpoint yet.
    /// Every entry is encoded before anything is written.
    fn write_revisions(
        &mut self,
        w: &mut Writer<'_>,
        prepared: &Prepared,
        states: &[Option<DocRow>],
        now: u64,
        indexes: &[IndexDef],
    ) -> Result<Receipt> {
        let tx = &prepared.tx;
        let tx_id = self.next_tx;
        let first_index = self.range.size();
        let revisions = tx.ops.iter().filter(|op| op.operation().is_some()).count() as u32;
        let mut entries = Vec::with_capacity(tx.ops.len());
        let mut position = 0u32;
        for ((op, state), body_hash) in tx.ops.iter().zip(states).zip(&prepared.body_hashes) {
            let Some(operation) = op.operation() else {
                entries.push(None);
                continue;
            };
            let (table, id) = op.target();
            let version = next_version(op, *state)?;
            // The state map follows: this revision is the document's live one, or none.
            let index = first_index + u64::from(position);
            w.set_state(table, id, (operation != Operation::Delete).then_some(index))?;
            entries.push(Some(Entry {
                operation,
                tx_id,
                tx_position: position,
                tx_revisions: revisions,
                commit_time_micros: now,
                version,
                table: table.to_owned(),
                id: id.to_owned(),
                principal: tx.principal.clone(),
                body_hash: *body_hash,
                state: State::Pending,
            }));
            position += 1;
        }
        // The transaction's last revision carries the state after it.
        let root = w.state_root()?;
        if let Some(last) = entries.iter_mut().rev().flatten().next() {
            last.state = State::Root(root);
        }
        let entries = entries
            .into_iter()
            .map(|entry| {
                entry
                    .map(|e| {
                        let bytes = e.encode()?;
                        Ok((e.version, e.operation, bytes))
                    })
                    .transpose()
            })
            .collect::<std::result::Result<Vec<_>, graven_verify::EntryError>>()
            // Names and principals are bounded far below the entry limit.
            .map_err(|e| Error::internal(format!("encoding an entry: {e}")))?;
        let mut results = Vec::with_capacity(tx.ops.len());
        for ((op, state), planned) in tx.ops.iter().zip(states).zip(entries) {
            let (table, id) = op.target();
            let (version, index) = match planned {
                // A check reports the live version it saw, or 0.
                None => (state.filter(|s| s.live).map_or(0, |s| s.version), None),
                Some((version, operation, entry)) => {
                    let live = operation != Operation::Delete;
                    let rev = NewRevision {
                        entry: &entry,
                        body: op.body().unwrap_or_default(),
                        table,
                        id,
                        version,
                        live,
                        previous: *state,
                    };
                    let index = w.append_revision(&mut self.range, &rev)?;
                    let indexed: Vec<&IndexDef> =
                        indexes.iter().filter(|d| d.table == table).collect();
                    if !indexed.is_empty() {
                        let now = DocRow {
                            version,
                            index,
                            live,
                        };
                        maintain(w, &indexed, id, *state, now, op.body())?;
                    }
                    (version, Some(index))
                }
            };
            results.push(OpResult {
                table: table.to_owned(),
                id: id.to_owned(),
                version,
                index,
            });
        }
        self.next_tx += 1;
        Ok(Receipt {
            tx_id,
            results,
            first_index,
            revisions,
            commit_micros: now,
            checkpoint: String::new(), // filled with the batch's checkpoint
            tree_size: 0,
            replayed: false,
        })
    }

    /// Checks a transaction's reads against every revision committed since its snapshot,
    /// earlier ones of this batch included: the inner error is the conflict, ABORTED.
    fn check_reads(&self, w: &Writer<'_>, reads: &ReadSet) -> Result<Result<()>> {
        let size = self.range.size();
        if reads.base > size {
            return Ok(Err(Error::aborted(format!(
                "the statements ran on a journal of size {}, past this writer's {size}; retry",
                reads.base
            ))));
        }
        if size - reads.base > MAX_REVISIONS_SINCE {
            return Ok(Err(Error::aborted(format!(
                "{} revisions were committed while the statements ran (the most checked is \
                 {MAX_REVISIONS_SINCE}); retry",
                size - reads.base
            ))));
        }
        for index in reads.base..size {
            let (entry, body) = w.entry_and_body(index)?;
            let entry = super::ledger::decode_entry(index, &entry)?;
            if let Some(why) = reads.conflict(&entry.table, &entry.id, &body) {
                return Ok(Err(Error::aborted(format!(
                    "document {} in table {} changed since the statements read (journal \
                     index {index}), and {why}; nothing was written: retry the transaction",
                    Quote(&entry.id),
                    Quote(&entry.table)
                ))));
            }
        }
        Ok(Ok(()))
    }

    /// Whether there may be index work this server should do now: on shared storage only
    /// the writer does it.
    fn may_work_on_indexes(&self) -> bool {
        self.index_work && self.failed.is_none() && (!self.lease.shared() || self.lease.is_writer())
    }

    /// One step of the first index building or dropping, in one durable batch: a build
    /// adds the next [`INDEX_CHUNK`] documents (in id order, from where it stopped) and
    /// goes online after the last; a drop removes entries, then the definition. Each step
    /// records where it stopped, so work goes on from there after a restart.
    fn index_step(&mut self) {
        let outcome = (|| -> Result<bool> {
            self.check_writable()?;
            let store = self.store.clone();
            let Some(def) = store
                .read()?
                .index_defs()?
                .into_iter()
                .find(|d| d.state != DefState::Online)
            else {
                return Ok(false);
            };
            let mut w = self.writer(&store)?;
            let finished = match def.state {
                DefState::Building => build_step(&mut w, def)?,
                _ => drop_step(&mut w, def)?,
            };
            // The step changed a definition (its cursor, or its state).
            self.indexes = None;
            self.commit(w)?;
            if let Some(def) = finished {
                tracing::info!(ledger = %self.ledger, table = %def.table,
                    path = %crate::model::path_text(&def.path), documents = def.indexed,
                    "index online");
            }
            Ok(true)
        })();
        match outcome {
            Ok(more) => self.index_work = more,
            Err(e) => {
                // Tried again after the next job (or once this server writes again).
                if e.kind != ErrorKind::NotWriter {
                    tracing::warn!(ledger = %self.ledger, error = %e, "index work failed");
                }
                self.index_work = e.kind != ErrorKind::NotWriter && self.failed.is_none();
            }
        }
    }

    /// The receipt of an earlier transaction, with a checkpoint of the size its first answer
    /// carried (Ed25519 is deterministic, so the note is byte-for-byte the same).
    fn replay(&self, w: &Writer<'_>, stored: StoredReceipt) -> Result<Receipt> {
        // A key first used earlier in this same batch: its checkpoint is the batch's, which
        // `write_batch` fills in once the batch is complete.
        let checkpoint = if stored.tree_size == 0 {
            String::new()
        } else {
            checkpoint_of(&self.signer, stored.tree_size, &w.hashes())?
        };
        Ok(Receipt {
            tx_id: stored.tx_id,
            results: stored.results,
            first_index: stored.first_index,
            revisions: stored.revisions,
            commit_micros: stored.commit_micros,
            checkpoint,
            tree_size: stored.tree_size,
            replayed: true,
        })
    }
}

/// Each operation's document state before the transaction, once every operation passed
/// its checks against it (the inner error names the first that did not). The outer error
/// is a storage failure.
fn states_before(w: &Writer<'_>, ops: &[Op]) -> Result<Result<Vec<Option<DocRow>>>> {
    // Every document's state in one read (one round trip to a database); the operations
    // are then checked in order, so that the first that fails is the one named.
    let targets: Vec<(&str, &str)> = ops.iter().map(Op::target).collect();
    let states = w.currents(&targets)?;
    let mut active_tables: Vec<&str> = Vec::new();
    for (i, (op, state)) in ops.iter().zip(&states).enumerate() {
        let (table, _) = op.target();
        if !active_tables.contains(&table) {
            if !w.table(table)?.is_some_and(|t| t.active) {
                return Ok(Err(Error::not_found(format!(
                    "operation {i} ({}): table {} does not exist",
                    op_name(op),
                    Quote(table)
                ))));
            }
            active_tables.push(table);
        }
        if let Err(e) = check_op(i, op, *state) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(states))
}

/// Updates the entries of `indexes` (of one table) for a revision of document `id`:
/// `before` is its state before, `now` its current row after, `body` its new body (`None`
/// for a delete). An entry whose value stays is written again: it holds the current row.
fn maintain(
    w: &mut Writer<'_>,
    indexes: &[&IndexDef],
    id: &str,
    before: Option<DocRow>,
    now: DocRow,
    body: Option<&[u8]>,
) -> Result<()> {
    let parse = |bytes: &[u8]| -> Result<serde_json::Value> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::internal(format!("a stored document is not JSON: {e}")))
    };
    let old = match before.filter(|s| s.live) {
        Some(s) => Some(parse(&w.body_at(s.index)?)?),
        None => None,
    };
    let new = body.map(parse).transpose()?;
    for def in indexes {
        let key = |doc: &Option<serde_json::Value>| {
            doc.as_ref()
                .and_then(|d| value_at(d, &def.path))
                .and_then(encode_value)
        };
        let (before, after) = (key(&old), key(&new));
        if let Some(v) = before.filter(|v| after.as_ref() != Some(v)) {
            w.remove_index_entry(def.id, &v, id);
        }
        if let Some(v) = after {
            w.put_index_entry(def.id, &v, id, now);
        }
    }
    Ok(())
}

/// Adds the next chunk of the table's documents to a building index; the definition, if
/// this chunk finished it (it is then online).
fn build_step(w: &mut Writer<'_>, mut def: IndexDef) -> Result<Option<IndexDef>> {
    let rows: Vec<(String, DocRow)> = w
        .snapshot()
        .current_rows(&def.table, def.cursor.as_deref())?
        .take(INDEX_CHUNK)
        .collect::<storage::Result<_>>()?;
    let live: Vec<&(String, DocRow)> = rows.iter().filter(|(_, row)| row.live).collect();
    let indexes: Vec<u64> = live.iter().map(|(_, row)| row.index).collect();
    let bodies = w.bodies_at(&indexes)?;
    for ((id, row), body) in live.into_iter().zip(bodies) {
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::internal(format!("a stored document is not JSON: {e}")))?;
        if let Some(v) = value_at(&doc, &def.path).and_then(encode_value) {
            w.put_index_entry(def.id, &v, id, *row);
        }
        def.indexed += 1;
    }
    let done = rows.len() < INDEX_CHUNK;
    if done {
        def.state = DefState::Online;
        def.cursor = None;
    } else {
        def.cursor = rows.last().map(|(id, _)| id.clone());
    }
    w.put_index_def(&def)?;
    Ok(done.then_some(def))
}

/// Removes the next entries of a dropped index, and its definition after the last.
fn drop_step(w: &mut Writer<'_>, mut def: IndexDef) -> Result<Option<IndexDef>> {
    let after = def
        .cursor
        .as_deref()
        .map(hex::decode)
        .transpose()
        .map_err(|_| Error::internal("a dropped index's cursor is not hex".to_owned()))?;
    let keys: Vec<Vec<u8>> = w
        .snapshot()
        .index_entries(def.id, after.as_deref())?
        .take(INDEX_CHUNK * 4)
        .collect::<storage::Result<_>>()?;
    let done = keys.len() < INDEX_CHUNK * 4;
    def.cursor = keys.last().map(hex::encode);
    for key in keys {
        w.remove_index_key(key);
    }
    if done {
        w.remove_index_def(def.id)?;
    } else {
        w.put_index_def(&def)?;
    }
    Ok(None)
}

/// The live (not dropping) index of `table` on `path`, among the definitions.
fn live_index<'d>(defs: &'d [IndexDef], table: &str, path: &[PathStep]) -> Option<&'d IndexDef> {
    defs.iter()
        .find(|d| d.table == table && d.path == path && d.state != DefState::Dropping)
}

fn create_index(w: &mut Writer<'_>, table: &str, path: &[PathStep], now: u64) -> Result<IndexInfo> {
    if !w.table(table)?.is_some_and(|t| t.active) {
        return Err(Error::not_found(format!(
            "table {} does not exist",
            Quote(table)
        )));
    }
    if path.is_empty() {
        return Err(Error::invalid("an index needs a path"));
    }
    let defs = w.index_defs()?;
    if live_index(&defs, table, path).is_some() {
        return Err(Error::exists(format!(
            "table {} already has an index on {}",
            Quote(table),
            Quote(&path_text(path))
        )));
    }
    let count = defs
        .iter()
        .filter(|d| d.table == table && d.state != DefState::Dropping)
        .count();
    if count >= MAX_INDEXES_PER_TABLE {
        return Err(Error::exhausted(format!(
            "table {} has {count} indexes, the most a table may have",
            Quote(table)
        )));
    }
    let def = IndexDef {
        id: w.next_index_id()?,
        table: table.to_owned(),
        path: path.to_vec(),
        state: DefState::Building,
        cursor: None,
        indexed: 0,
        created_micros: now,
    };
    w.put_index_def(&def)?;
    Ok(IndexInfo {
        path: def.path,
        state: IndexState::Building,
        indexed: 0,
        created_micros: now,
    })
}

fn drop_index(w: &mut Writer<'_>, table: &str, path: &[PathStep]) -> Result<()> {
    let defs = w.index_defs()?;
    let Some(def) = live_index(&defs, table, path) else {
        return Err(Error::not_found(format!(
            "table {} has no index on {}",
            Quote(table),
            Quote(&path_text(path))
        )));
    };
    let mut def = def.clone();
    def.state = DefState::Dropping;
    def.cursor = None;
    Ok(w.put_index_def(&def)?)
}

fn create_table(w: &mut Writer<'_>, name: &str, now: u64) -> Result<TableInfo> {
    let created = match w.table(name)? {
        Some(t) if t.active => {
            return Err(Error::exists(format!(
                "table {} already exists",
                Quote(name)
            )));
        }
        // A dropped table comes back with its documents.
        Some(t) => t.created_micros,
        None => now,
    };
    w.put_table(
        name,
        TableRow {
            created_micros: created,
            active: true,
        },
    );
    Ok(TableInfo {
        name: name.to_owned(),
        created_micros: created,
        indexes: super::ledger::index_infos(&w.index_defs()?, name),
    })
}

fn drop_table(w: &mut Writer<'_>, name: &str) -> Result<()> {
    match w.table(name)? {
        Some(t) if t.active => {
            w.put_table(
                name,
                TableRow {
                    created_micros: t.created_micros,
                    active: false,
                },
            );
            Ok(())
        }
        _ => Err(Error::not_found(format!(
            "table {} does not exist",
            Quote(name)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use graven_verify::EMPTY_ROOT;

    use super::*;
    use crate::engine::Ledger;
    use crate::engine::lease::DEFAULT_LEASE;
    use crate::engine::prepare::prepare;
    use crate::error::ErrorKind;
    use crate::model::{Limits, RequestOp, TransactRequest};
    use crate::storage::NewLedger;

    /// A ledger `l` (key `test/l`) over the store `create` makes, with a table `t`.
    async fn ledger_over(
        dir: &std::path::Path,
        create: impl FnOnce(&NewLedger<'_>) -> crate::storage::Result<Store>,
    ) -> Ledger {
        let signer = Signer::generate("test/l").expect("key");
        let checkpoint = sign_checkpoint(&signer, 0, EMPTY_ROOT).expect("sign");
        let store = create(&NewLedger {
            origin: signer.name(),
            created_micros: 0,
            deletion_protection: false,
            checkpoint: &checkpoint,
        })
        .expect("store");
        let claimant = Arc::new(crate::engine::lease::Claimant::new("", DEFAULT_LEASE));
        let ledger = Ledger::start("l", dir, store, signer, 100, claimant).expect("ledger");
        ledger.create_table("t").await.expect("table");
        ledger
    }

    fn insert(id: &str) -> Prepared {
        let request = TransactRequest {
            ops: vec![RequestOp::Insert {
                table: "t".into(),
                id: Some(id.into()),
                json: b"{}".to_vec(),
            }],
            idempotency_key: None,
        };
        prepare(request, &Limits::default(), "test").expect("valid")
    }

    /// A failed fsync fails the whole batch, answers its client with INTERNAL, publishes
    /// nothing of it, and stops the ledger taking writes: after a failed fsync the state on
    /// disk is unknown, and a retry could hide the loss.
    #[tokio::test]
    async fn a_failed_fsync_fails_the_batch_and_stops_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fail = Arc::new(AtomicBool::new(false));
        let ledger = ledger_over(dir.path(), |new| {
            Store::in_memory_failing_sync(fail.clone(), new)
        })
        .await;
        let first = ledger.transact(insert("a")).await.expect("durable");
        assert_eq!(first.tree_size, 1);

        fail.store(true, Ordering::SeqCst);
        let err = ledger
            .transact(insert("b"))
            .await
            .expect_err("fsync failed");
        assert_eq!(err.kind, ErrorKind::Internal, "{err}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the cause is kept: {err}"
        );
        assert_eq!(
            ledger.head().borrow().size,
            1,
            "nothing of the failed batch is published"
        );

        fail.store(false, Ordering::SeqCst);
        let err = ledger.transact(insert("c")).await.expect_err("stopped");
        assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
        assert!(
            err.message
                .contains("stopped accepting writes after a storage failure"),
            "{err}"
        );
        let err = ledger.create_table("u").await.expect_err("stopped");
        assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
        ledger.close(crate::engine::Closed::Shutdown);
    }

    /// A backend that loses the answer to a commit, as a database that goes away during
    /// one does: the commit applied or not, the caller cannot tell.
    struct LosesAnswers {
        inner: crate::storage::redb::RedbBackend,
        /// 0: answer; 1: apply, then fail; 2: fail without applying.
        mode: Arc<std::sync::atomic::AtomicU8>,
    }

    impl crate::storage::Backend for LosesAnswers {
        fn view(&self) -> crate::storage::Result<Box<dyn crate::storage::View>> {
            self.inner.view()
        }
        fn commit(&self, batch: crate::storage::Batch) -> crate::storage::Result<()> {
            let lost = || {
                crate::storage::Error::new(
                    crate::storage::ErrorKind::Unavailable,
                    "connection lost",
                )
            };
            match self.mode.load(Ordering::SeqCst) {
                0 => self.inner.commit(batch),
                1 => self.inner.commit(batch).and_then(|()| Err(lost())),
                _ => Err(lost()),
            }
        }
    }

    /// A commit whose answer was lost gets UNAVAILABLE (its fate unknown, to be retried
    /// with its idempotency key); the sequencer then reads the journal back from storage
    /// before its next write and goes on from there, whether the lost commit happened or
    /// not, publishing the head if it moved.
    #[tokio::test]
    async fn a_lost_commit_answer_is_read_back() {
        for applied in [true, false] {
            let dir = tempfile::tempdir().expect("temp dir");
            let mode = Arc::new(std::sync::atomic::AtomicU8::new(0));
            let backend = LosesAnswers {
                inner: crate::storage::redb::RedbBackend::create(
                    &dir.path().join("l.redb"),
                    1 << 20,
                    crate::storage::SPACES,
                )
                .expect("redb"),
                mode: mode.clone(),
            };
            let ledger =
                ledger_over(dir.path(), |new| Store::create_over(Box::new(backend), new)).await;
            ledger.transact(insert("a")).await.expect("durable");

            mode.store(if applied { 1 } else { 2 }, Ordering::SeqCst);
            let err = ledger.transact(insert("b")).await.expect_err("answer lost");
            assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
            assert_eq!(
                ledger.head().borrow().size,
                1,
                "not published: its fate is unknown"
            );

            mode.store(0, Ordering::SeqCst);
            let next = ledger.transact(insert("c")).await.expect("writes go on");
            let expected = if applied { 2 } else { 1 };
            assert_eq!(next.first_index, expected, "applied: {applied}");
            assert_eq!(next.tx_id, expected, "transaction ids follow the journal");
            assert_eq!(ledger.head().borrow().size, expected + 1);
            let b = ledger.get("t", "b", None, None);
            assert_eq!(
                b.is_ok(),
                applied,
                "b is there exactly when its commit applied"
            );
            ledger.close(crate::engine::Closed::Shutdown);
        }
    }
}
