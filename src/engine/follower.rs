//! The change stream's producer: one task per subscriber that delivers a ledger's journal
//! in order, gap-free, with signed checkpoints interleaved, first catching up from storage
//! in bounded chunks and then following the ledger's head.
//!
//! Events go through a bounded channel, so a slow subscriber costs a few events of memory
//! and reads at its own pace; it never makes the writer wait. A checkpoint follows each
//! commit batch the subscriber sees and comes at least every [`CHECKPOINT_EVERY`]
//! revisions while catching up, so a consumer can verify as it goes. A table filter sends
//! the leaf hashes of the revisions it hides, so a filtered stream still verifies.
//!
//! The stream ends after the checkpoint of `to` when one was asked for; when the
//! subscriber goes away; or with an error: NOT_FOUND when the ledger was deleted,
//! UNAVAILABLE when the server shuts down (the consumer resumes from the next index).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Ledger;
use super::ledger::Closed;
use crate::error::{Error, Quote, Result};
use crate::model::{Head, JournalItem, StreamEvent, TreeSize, check_table_name};

/// Entries and bodies read per storage read while catching up.
const CHUNK_BYTES: usize = 1 << 20;

/// While catching up from storage, a checkpoint at least this often.
pub const CHECKPOINT_EVERY: u64 = 1_000;

/// Events buffered per subscriber before the producer waits for it (backpressure).
const BUFFER: usize = 16;

/// What a subscriber asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Follow {
    /// First journal index; `None`: from the journal's size now.
    pub from: Option<u64>,
    /// One past the last index; `None`: follow new commits until the subscriber leaves.
    pub to: Option<u64>,
    /// Only revisions of these tables (all when empty); the others as leaf hashes.
    pub tables: Vec<String>,
}

/// A running subscription.
#[derive(Debug)]
pub struct Subscription {
    /// The first index it delivers.
    pub start: u64,
    /// Its events, in order; an error ends it.
    pub events: mpsc::Receiver<Result<StreamEvent>>,
}

/// Checks `follow` against the ledger and starts its producer on the current tokio
/// runtime.
pub fn subscribe(ledger: Arc<Ledger>, follow: Follow) -> Result<Subscription> {
    for table in &follow.tables {
        check_table_name(table).map_err(|e| e.context("tables"))?;
    }
    let size = ledger.head().borrow().size;
    let start = follow.from.unwrap_or(size);
    if start > size {
        return Err(Error::out_of_range(format!(
            "from_index {start} is beyond the journal (size {size})"
        )));
    }
    if let Some(to) = follow.to
        && to < start
    {
        return Err(Error::invalid(format!(
            "to_index {to} is below the first index {start}"
        )));
    }
    let (tx, events) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let producer = Producer {
            ledger,
            follow,
            tx: tx.clone(),
        };
        if let Err(Stop::Failed(e)) = producer.run(start).await {
            // The subscriber may be gone too; then nobody needs to hear it.
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(Subscription { start, events })
}

/// Why a producer stopped early.
enum Stop {
    /// The subscriber went away.
    Gone,
    /// The stream ends with this error.
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

struct Producer {
    ledger: Arc<Ledger>,
    follow: Follow,
    tx: mpsc::Sender<Result<StreamEvent>>,
}

impl Producer {
    async fn send(&self, event: StreamEvent) -> Result<(), Stop> {
        self.tx.send(Ok(event)).await.map_err(|_| Stop::Gone)
    }

    async fn checkpoint(&self, size: u64) -> Result<(), Stop> {
        let head = self.ledger.checkpoint(TreeSize::At(size))?;
        self.send(StreamEvent::Checkpoint(head)).await
    }

    /// Reads `[next, target)` from storage, at most a chunk, off the async workers.
    async fn read(&self, next: u64, target: u64) -> Result<Vec<JournalItem>> {
        let ledger = self.ledger.clone();
        let tables = self.follow.tables.clone();
        tokio::task::spawn_blocking(move || ledger.journal(next, target, &tables, CHUNK_BYTES))
            .await
            .map_err(|e| Error::internal(format!("reading the journal: {e}")))?
    }

    async fn run(self, start: u64) -> Result<(), Stop> {
        let mut head = self.ledger.head();
        let end = self.follow.to.unwrap_or(u64::MAX);
        if start > 0 {
            let frontier = self.ledger.frontier(start)?;
            self.send(StreamEvent::Frontier(frontier)).await?;
        }
        let mut next = start;
        // The size of the last checkpoint sent.
        let mut covered: Option<u64> = None;
        loop {
            let durable: Head = head.borrow_and_update().clone();
            let target = durable.size.min(end);
            while next < target {
                for item in self.read(next, target).await? {
                    next = match &item {
                        JournalItem::Revision(r) => r.index + 1,
                        JournalItem::Skipped { index, .. } => index + 1,
                    };
                    self.send(StreamEvent::Item(item)).await?;
                    if next - covered.unwrap_or(start) >= CHECKPOINT_EVERY && next < target {
                        self.checkpoint(next).await?;
                        covered = Some(next);
                    }
                }
            }
            if covered != Some(next) {
                // Caught up with this head (or the requested end): its checkpoint covers all.
                if next == durable.size {
                    self.send(StreamEvent::Checkpoint(durable)).await?;
                } else {
                    self.checkpoint(next).await?;
                }
                covered = Some(next);
            }
            if next >= end {
                return Ok(());
            }
            tokio::select! {
                changed = head.changed() => {
                    if changed.is_err() {
                        return Err(Stop::Failed(self.closed()));
                    }
                }
                () = self.tx.closed() => return Err(Stop::Gone),
            }
        }
    }

    /// The error that ends a stream whose ledger's sequencer stopped.
    fn closed(&self) -> Error {
        match self.ledger.closed() {
            Some(Closed::Deleted) => {
                Error::not_found(format!("ledger {} was deleted", Quote(self.ledger.name())))
            }
            _ => Error::unavailable(
                "the server is shutting down; reconnect with from_index one past the last \
                 index you processed",
            ),
        }
    }
}
