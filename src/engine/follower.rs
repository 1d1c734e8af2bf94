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
    // The size in storage: on shared storage another server may have extended the
    // journal since this one last published its head.
    let size = ledger.checkpoint(TreeSize::Latest)?.size;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::prepare::prepare;
    use crate::engine::{Config, Engine};
    use crate::error::ErrorKind;
    use crate::model::{Limits, RequestOp, TransactRequest};

    fn engine() -> (tempfile::TempDir, Arc<Engine>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(Config::new(dir.path())).expect("engine");
        (dir, Arc::new(engine))
    }

    /// Inserts `ids` into `table`, one transaction.
    async fn insert(ledger: &Ledger, table: &str, ids: impl IntoIterator<Item = String>) {
        let ops = ids
            .into_iter()
            .map(|id| RequestOp::Insert {
                table: table.into(),
                id: Some(id),
                json: b"{}".to_vec(),
            })
            .collect();
        let request = TransactRequest {
            ops,
            idempotency_key: None,
        };
        let tx = prepare(request, &Limits::default(), "test").expect("valid");
        ledger.transact(tx).await.expect("commit");
    }

    async fn ledger(engine: &Engine) -> Arc<Ledger> {
        let ledger = engine.create_ledger("l", None, false).expect("ledger");
        ledger.create_table("a").await.expect("table a");
        ledger.create_table("b").await.expect("table b");
        ledger
    }

    /// Every event until the stream ends, and how it ended.
    async fn drain(mut s: Subscription) -> (Vec<StreamEvent>, Option<Error>) {
        let mut events = Vec::new();
        while let Some(e) = s.events.recv().await {
            match e {
                Ok(e) => events.push(e),
                Err(e) => return (events, Some(e)),
            }
        }
        (events, None)
    }

    /// The shape of a stream: `F` frontier, `R` revision, `S` skipped, `C<n>` checkpoint.
    fn shape(events: &[StreamEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                StreamEvent::Frontier(f) => format!("F{}", f.size()),
                StreamEvent::Item(JournalItem::Revision(r)) => format!("R{}", r.index),
                StreamEvent::Item(JournalItem::Skipped { index, .. }) => format!("S{index}"),
                StreamEvent::Checkpoint(h) => format!("C{}", h.size),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_bounded_stream_is_in_order_filtered_and_ends_after_its_checkpoint() {
        let (_dir, engine) = engine();
        let l = ledger(&engine).await;
        insert(&l, "a", ["x".into(), "y".into()]).await;
        insert(&l, "b", ["z".into()]).await;
        insert(&l, "a", ["w".into()]).await;
        let follow = |from, to, tables: &[&str]| Follow {
            from,
            to,
            tables: tables.iter().map(|t| t.to_string()).collect(),
        };
        let s = subscribe(l.clone(), follow(Some(0), Some(4), &[])).expect("subscribe");
        assert_eq!(s.start, 0);
        let (events, end) = drain(s).await;
        assert!(end.is_none(), "{end:?}");
        assert_eq!(shape(&events), ["R0", "R1", "R2", "R3", "C4"]);
        // From the middle: the frontier first; a filter hides table b's revision but
        // keeps its place with its leaf hash.
        let s = subscribe(l.clone(), follow(Some(1), Some(4), &["a"])).expect("subscribe");
        let (events, end) = drain(s).await;
        assert!(end.is_none(), "{end:?}");
        assert_eq!(shape(&events), ["F1", "R1", "S2", "R3", "C4"]);
        let StreamEvent::Item(JournalItem::Skipped { leaf_hash, .. }) = &events[2] else {
            unreachable!("the shape says so");
        };
        let (entry, _) = l.entry(2).expect("entry");
        assert_eq!(*leaf_hash, graven_verify::leaf_hash(&entry));
        let StreamEvent::Checkpoint(head) = &events[4] else {
            unreachable!("the shape says so");
        };
        assert_eq!(head, &l.checkpoint(TreeSize::Latest).expect("head"));
        // An end before the ledger's: a checkpoint of that size, signed on demand.
        let s = subscribe(l.clone(), follow(Some(0), Some(2), &[])).expect("subscribe");
        assert_eq!(shape(&drain(s).await.0), ["R0", "R1", "C2"]);
    }

    #[tokio::test]
    async fn refusals() {
        let (_dir, engine) = engine();
        let l = ledger(&engine).await;
        insert(&l, "a", ["x".into()]).await;
        let cases = [
            (
                Some(2),
                None,
                vec![],
                ErrorKind::OutOfRange,
                "from_index 2 is beyond the journal (size 1)",
            ),
            (
                None,
                Some(0),
                vec![],
                ErrorKind::InvalidArgument,
                "to_index 0 is below the first index 1",
            ),
            (
                None,
                None,
                vec!["no-such!".to_owned()],
                ErrorKind::InvalidArgument,
                "tables: table name",
            ),
        ];
        for (from, to, tables, kind, needle) in cases {
            let e = subscribe(l.clone(), Follow { from, to, tables }).expect_err(needle);
            assert_eq!(e.kind, kind, "{e}");
            assert!(e.message.contains(needle), "{needle:?} in {e}");
        }
    }

    #[tokio::test]
    async fn catching_up_sends_a_checkpoint_every_thousand_revisions() {
        let (_dir, engine) = engine();
        let l = ledger(&engine).await;
        insert(&l, "a", (0..2500).map(|i| format!("d{i}"))).await;
        let s = subscribe(
            l.clone(),
            Follow {
                from: Some(0),
                to: None,
                tables: vec![],
            },
        )
        .expect("subscribe");
        let mut events = s.events;
        let mut checkpoints = Vec::new();
        while checkpoints.last() != Some(&2500) {
            if let StreamEvent::Checkpoint(h) = events.recv().await.expect("open").expect("event") {
                checkpoints.push(h.size);
            }
        }
        assert_eq!(checkpoints, [1000, 2000, 2500]);
    }

    #[tokio::test]
    async fn a_live_stream_follows_commits_and_ends_by_why_the_ledger_closed() {
        let (_dir, engine) = engine();
        let l = ledger(&engine).await;
        insert(&l, "a", ["x".into()]).await;
        let from_now = || {
            subscribe(
                l.clone(),
                Follow {
                    from: None,
                    to: None,
                    tables: vec![],
                },
            )
            .expect("subscribe")
        };
        let mut s = from_now();
        assert_eq!(s.start, 1);
        let mut next = async || s.events.recv().await.expect("open").expect("event");
        assert_eq!(shape(&[next().await]), ["F1"]);
        assert_eq!(shape(&[next().await]), ["C1"]);
        insert(&l, "a", ["y".into()]).await;
        assert_eq!(shape(&[next().await, next().await]), ["R1", "C2"]);

        // Deleted: NOT_FOUND.
        let (_, end) = tokio::join!(
            async { engine.delete_ledger("l").expect("delete") },
            drain(s)
        );
        let end = end.1.expect("an error ends it");
        assert_eq!(end.kind, ErrorKind::NotFound, "{end}");
        assert!(end.message.contains("was deleted"), "{end}");

        // Shut down: UNAVAILABLE, telling the consumer how to resume.
        let l = ledger(&engine).await;
        let s = subscribe(l, Follow::default()).expect("subscribe");
        let closing = engine.clone();
        let (_, end) = tokio::join!(
            tokio::task::spawn_blocking(move || closing.close()),
            drain(s)
        );
        let end = end.1.expect("an error ends it");
        assert_eq!(end.kind, ErrorKind::Unavailable, "{end}");
        assert!(end.message.contains("reconnect with from_index"), "{end}");
    }
}
