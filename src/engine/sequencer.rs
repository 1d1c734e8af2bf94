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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use graven_verify::{Checkpoint, CompactRange, Entry, Hash, Operation, Signer, tree_hash};
use redb::{Database, ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Error, Result};
use crate::model::{Condition, Head, Op, OpResult, Receipt, TableInfo, Transaction};
use crate::storage::{self, StoredHashes};

/// Most operations committed in one batch; more wait for the next one.
const MAX_BATCH_OPERATIONS: usize = 20_000;

/// Work for the sequencer. Each job carries the channel its answer goes to.
pub(crate) enum Job {
    Transact(Prepared, oneshot::Sender<Result<Receipt>>),
    CreateTable(String, oneshot::Sender<Result<TableInfo>>),
    DropTable(String, oneshot::Sender<Result<()>>),
    SetProtection(bool, oneshot::Sender<Result<()>>),
}

/// A transaction with the work done that needs no ledger state.
pub(crate) struct Prepared {
    pub(crate) tx: Transaction,
    /// SHA-256 of each operation's body (`None` for deletes and checks), in order.
    pub(crate) body_hashes: Vec<Option<Hash>>,
}

/// What an idempotency key remembers: enough to answer a retry with the same receipt.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredReceipt {
    /// Hex SHA-256 of the request, to refuse a key reused for another transaction.
    request: String,
    tx_id: u64,
    first_index: u64,
    revisions: u32,
    commit_micros: u64,
    /// The size of the checkpoint the first answer carried.
    tree_size: u64,
    results: Vec<OpResult>,
}

/// The sequencer's state, owned by its thread.
pub(crate) struct Sequencer {
    pub(crate) db: Arc<Database>,
    pub(crate) signer: Signer,
    pub(crate) origin: String,
    /// The tree's right edge: appends compute new stored hashes from it without reads.
    pub(crate) range: CompactRange,
    pub(crate) next_tx: u64,
    pub(crate) last_commit: u64,
    /// Set after a storage failure: the ledger then refuses writes until restarted.
    pub(crate) failed: Option<String>,
    /// The durable head, published after each commit for the change stream.
    pub(crate) head: watch::Sender<Head>,
}

/// All the tables a batch writes, opened once per write transaction.
struct Tables<'txn> {
    meta: Table<'txn, &'static str, &'static [u8]>,
    leaves: Table<'txn, u64, &'static [u8]>,
    docs: Table<'txn, (&'static str, &'static str, u64), (u64, u64, bool)>,
    tables: Table<'txn, &'static str, (u64, bool)>,
    idempotency: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>> {
        Ok(Tables {
            meta: txn.open_table(storage::META)?,
            leaves: txn.open_table(storage::LEAVES)?,
            docs: txn.open_table(storage::DOCS)?,
            tables: txn.open_table(storage::TABLES)?,
            idempotency: txn.open_table(storage::IDEMPOTENCY)?,
        })
    }
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The document state a transaction's checks and writes see.
#[derive(Debug, Clone, Copy)]
struct DocState {
    version: u64,
    index: u64,
    live: bool,
}

impl Sequencer {
    /// Runs until every sender of `jobs` is gone.
    pub(crate) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut pending: Option<Job> = None;
        loop {
            let first = match pending.take() {
                Some(job) => job,
                None => match jobs.blocking_recv() {
                    Some(job) => job,
                    None => return,
                },
            };
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
                    let _ = reply.send(self.admin(|t, now| create_table(t, &name, now)));
                }
                Job::DropTable(name, reply) => {
                    let _ = reply.send(self.admin(|t, _| drop_table(t, &name)));
                }
                Job::SetProtection(on, reply) => {
                    let _ = reply.send(self.admin(|t, _| {
                        t.meta
                            .insert(storage::META_PROTECTION, [u8::from(on)].as_slice())?;
                        Ok(())
                    }));
                }
            }
        }
    }

    fn check_writable(&self) -> Result<()> {
        match &self.failed {
            Some(why) => Err(Error::unavailable(format!(
                "ledger stopped accepting writes after a storage failure ({why}); restart the server"
            ))),
            None => Ok(()),
        }
    }

    /// Runs one administrative change in its own durable write transaction.
    fn admin<T>(&mut self, change: impl FnOnce(&mut Tables<'_>, u64) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let txn = self.db.begin_write()?;
        let out = {
            let mut tables = Tables::open(&txn)?;
            change(&mut tables, now_micros())?
        };
        txn.commit()
            .inspect_err(|e| self.failed = Some(e.to_string()))?;
        Ok(out)
    }

    /// Commits a batch of transactions and answers each client.
    fn commit_batch(&mut self, batch: Vec<(Prepared, oneshot::Sender<Result<Receipt>>)>) {
        let (txs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let saved = (self.range.clone(), self.next_tx, self.last_commit);
        let results = match self.check_writable().and_then(|()| self.write_batch(&txs)) {
            Ok(results) => results,
            Err(e) => {
                // Nothing of the batch is durable: forget it, and tell everyone.
                (self.range, self.next_tx, self.last_commit) = saved;
                tracing::error!(origin = %self.origin, error = %e, "batch failed");
                txs.iter().map(|_| Err(e.clone())).collect()
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
        let txn = self.db.begin_write()?;
        let now = now_micros().max(self.last_commit);
        let mut results = Vec::with_capacity(txs.len());
        let mut remembered: HashMap<&str, StoredReceipt> = HashMap::new();
        let mut wrote = false;
        let mut new_head = None;
        {
            let mut t = Tables::open(&txn)?;
            for tx in txs {
                let outcome = match self.apply(&mut t, tx, now, &remembered)? {
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
                let checkpoint = Checkpoint {
                    origin: self.origin.clone(),
                    size,
                    root: self.range.root(),
                }
                .sign(&self.signer)
                .map_err(|e| Error::internal(format!("signing checkpoint: {e}")))?;
                for (key, mut stored) in remembered {
                    stored.tree_size = size;
                    let json = serde_json::to_vec(&stored)
                        .map_err(|e| Error::internal(format!("encoding receipt: {e}")))?;
                    t.idempotency.insert(key, json.as_slice())?;
                }
                t.meta
                    .insert(storage::META_CHECKPOINT, checkpoint.as_bytes())?;
                for r in results.iter_mut().flatten() {
                    if !r.replayed || r.checkpoint.is_empty() {
                        r.checkpoint.clone_from(&checkpoint);
                    }
                }
                new_head = Some(Head { size, checkpoint });
            }
        }
        if wrote {
            txn.commit()
                .inspect_err(|e| self.failed = Some(e.to_string()))?;
            self.last_commit = now;
            if let Some(head) = new_head {
                // Only now, once durable, may subscribers see it.
                self.head.send_replace(head);
            }
        } else {
            txn.abort()?;
        }
        Ok(results)
    }

    /// Applies one transaction inside the batch's write transaction, or explains why not.
    /// Returns the receipt and, for a new transaction with an idempotency key, what to
    /// remember for it.
    fn apply(
        &mut self,
        t: &mut Tables<'_>,
        prepared: &Prepared,
        now: u64,
        remembered: &HashMap<&str, StoredReceipt>,
    ) -> Result<Result<(Receipt, Option<StoredReceipt>)>> {
        let tx = &prepared.tx;
        let request = tx.idempotency.as_ref().map(|(_, h)| h.to_hex());
        if let Some((key, _)) = &tx.idempotency {
            let earlier = match remembered.get(key.as_str()) {
                Some(stored) => Some(stored.clone()),
                None => match t.idempotency.get(key.as_str())? {
                    Some(v) => Some(serde_json::from_slice::<StoredReceipt>(v.value()).map_err(
                        |e| Error::internal(format!("stored receipt for key {key:?}: {e}")),
                    )?),
                    None => None,
                },
            };
            if let Some(stored) = earlier {
                if Some(&stored.request) != request.as_ref() {
                    return Ok(Err(Error::precondition(format!(
                        "idempotency key {key:?} was already used for a different transaction"
                    ))));
                }
                return self.replay(t, stored).map(|r| Ok((r, None)));
            }
        }

        // The shape rules: at least one revision, each document written at most once. A
        // transaction that breaks them writes nothing and uses no transaction id.
        let mut written: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, op) in tx.ops.iter().enumerate() {
            if op.operation().is_some()
                && let Some(j) = written.insert(op.target(), i)
            {
                let (table, id) = op.target();
                return Ok(Err(Error::invalid(format!(
                    "operations[{i}]: document {id:?} in table {table:?} is already written \
                     by operations[{j}]; write each document at most once per transaction"
                ))));
            }
        }
        if written.is_empty() {
            return Ok(Err(Error::invalid(
                "operations: a transaction needs at least one insert, update or delete",
            )));
        }

        // Check every operation against the state before the transaction.
        let mut states = Vec::with_capacity(tx.ops.len());
        let mut active_tables: Vec<&str> = Vec::new();
        for (i, op) in tx.ops.iter().enumerate() {
            let (table, id) = op.target();
            if !active_tables.contains(&table) {
                match t.tables.get(table)?.map(|v| v.value()) {
                    Some((_, true)) => active_tables.push(table),
                    _ => {
                        return Ok(Err(Error::not_found(format!(
                            "operation {i} ({}): table {table:?} does not exist",
                            op_name(op)
                        ))));
                    }
                }
            }
            let state = t.docs.get((table, id, storage::CURRENT))?.map(|v| {
                let (version, index, live) = v.value();
                DocState {
                    version,
                    index,
                    live,
                }
            });
            if let Err(e) = check_op(i, op, state) {
                return Ok(Err(e));
            }
            states.push(state);
        }

        // Everything holds: write the revisions.
        let tx_id = self.next_tx;
        let first_index = self.range.size();
        let revisions = tx.ops.iter().filter(|op| op.operation().is_some()).count() as u32;
        let mut results = Vec::with_capacity(tx.ops.len());
        let mut position = 0u32;
        let mut buffers = storage::RowBuffers::default(); // for the whole transaction
        for ((op, state), body_hash) in tx.ops.iter().zip(states).zip(&prepared.body_hashes) {
            let (table, id) = op.target();
            let Some(operation) = op.operation() else {
                let version = state.filter(|s| s.live).map_or(0, |s| s.version);
                results.push(OpResult {
                    table: table.to_owned(),
                    id: id.to_owned(),
                    version,
                    index: None,
                });
                continue;
            };
            let version = match (operation, state) {
                (Operation::Insert, _) => 0,
                (_, Some(s)) => s.version + 1,
                (_, None) => {
                    return Err(Error::internal(
                        "update of a missing document passed its checks",
                    ));
                }
            };
            let body = op.body();
            let entry = Entry {
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
            }
            .encode()
            .map_err(|e| Error::invalid(e.to_string()))?;
            let index = storage::append_revision(
                &mut t.leaves,
                &mut t.docs,
                &mut self.range,
                &mut buffers,
                &storage::Revision {
                    entry: &entry,
                    body: body.unwrap_or_default(),
                    table,
                    id,
                    version,
                    live: operation != Operation::Delete,
                    previous: state.map(|s| (s.version, s.index, s.live)),
                },
            )?;
            results.push(OpResult {
                table: table.to_owned(),
                id: id.to_owned(),
                version,
                index: Some(index),
            });
            position += 1;
        }
        self.next_tx += 1;
        let stored = request.map(|request| StoredReceipt {
            request,
            tx_id,
            first_index,
            revisions,
            commit_micros: now,
            tree_size: 0, // set once the batch's size is known
            results: results.clone(),
        });
        Ok(Ok((
            Receipt {
                tx_id,
                results,
                first_index,
                revisions,
                commit_micros: now,
                checkpoint: String::new(), // filled with the batch's checkpoint
                replayed: false,
            },
            stored,
        )))
    }

    /// The receipt of an earlier transaction, with a checkpoint of the size its first answer
    /// carried (Ed25519 is deterministic, so the note is byte-for-byte the same).
    fn replay(&self, t: &Tables<'_>, stored: StoredReceipt) -> Result<Receipt> {
        // A key first used earlier in this same batch: its checkpoint is the batch's, which
        // `write_batch` fills in once the batch is complete.
        let checkpoint = if stored.tree_size == 0 {
            String::new()
        } else {
            let size = stored.tree_size;
            let root = tree_hash(size, &StoredHashes(&t.leaves))
                .map_err(|e| Error::internal(format!("tree hash at {size}: {e}")))?;
            Checkpoint {
                origin: self.origin.clone(),
                size,
                root,
            }
            .sign(&self.signer)
            .map_err(|e| Error::internal(format!("signing checkpoint: {e}")))?
        };
        Ok(Receipt {
            tx_id: stored.tx_id,
            results: stored.results,
            first_index: stored.first_index,
            revisions: stored.revisions,
            commit_micros: stored.commit_micros,
            checkpoint,
            replayed: true,
        })
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Insert { .. } => "insert",
        Op::Update { .. } => "update",
        Op::Delete { .. } => "delete",
        Op::Check { .. } => "check",
    }
}

/// Checks one operation against its document's state before the transaction.
fn check_op(i: usize, op: &Op, state: Option<DocState>) -> Result<()> {
    let (table, id) = op.target();
    let what = || {
        format!(
            "operation {i} ({}): document {id:?} in table {table:?}",
            op_name(op)
        )
    };
    let live = state.filter(|s| s.live);
    match op {
        Op::Insert { .. } => match state {
            None => Ok(()),
            Some(s) if s.live => Err(Error::exists(format!("{} already exists", what()))),
            Some(s) => Err(Error::exists(format!(
                "{} was deleted at version {}; ids are not reused",
                what(),
                s.version
            ))),
        },
        Op::Update {
            expected_version, ..
        }
        | Op::Delete {
            expected_version, ..
        } => {
            let Some(s) = live else {
                return Err(Error::not_found(format!("{} does not exist", what())));
            };
            match expected_version {
                Some(v) if *v != s.version => Err(Error::precondition(format!(
                    "{}: expected version {v}, current version is {}",
                    what(),
                    s.version
                ))),
                _ => Ok(()),
            }
        }
        Op::Check { condition, .. } => {
            let holds = match condition {
                Condition::Version(v) => live.is_some_and(|s| s.version == *v),
                Condition::Exists => live.is_some(),
                Condition::NotExists => live.is_none(),
            };
            if holds {
                return Ok(());
            }
            let found = match live {
                Some(s) => format!("it is at version {}", s.version),
                None => "it does not exist".to_owned(),
            };
            let wanted = match condition {
                Condition::Version(v) => format!("expected version {v}"),
                Condition::Exists => "expected it to exist".to_owned(),
                Condition::NotExists => "expected it not to exist".to_owned(),
            };
            Err(Error::precondition(format!(
                "{}: {wanted}, {found}",
                what()
            )))
        }
    }
}

fn create_table(t: &mut Tables<'_>, name: &str, now: u64) -> Result<TableInfo> {
    let existing = t.tables.get(name)?.map(|v| v.value());
    let created = match existing {
        Some((_, true)) => return Err(Error::exists(format!("table {name:?} already exists"))),
        // A dropped table comes back with its documents.
        Some((created, false)) => created,
        None => now,
    };
    t.tables.insert(name, (created, true))?;
    Ok(TableInfo {
        name: name.to_owned(),
        created_micros: created,
    })
}

fn drop_table(t: &mut Tables<'_>, name: &str) -> Result<()> {
    let existing = t.tables.get(name)?.map(|v| v.value());
    match existing {
        Some((created, true)) => {
            t.tables.insert(name, (created, false))?;
            Ok(())
        }
        _ => Err(Error::not_found(format!("table {name:?} does not exist"))),
    }
}
