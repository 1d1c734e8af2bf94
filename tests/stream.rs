//! The change stream: journal order with no gap under concurrent writers, checkpoints that
//! verify as it goes, resuming from the middle, table filters, slow subscribers, and how
//! it ends.

use graven::pb;
use graven::pb::event::Kind;
use graven_verify::{CompactRange, Entry, Hash, Verifier, leaf_hash, open_checkpoint};
use sha2::Digest as _;
use tonic::Code;
use tonic::codec::Streaming;

use crate::util::*;

fn stream_client(s: &TestServer) -> pb::stream_client::StreamClient<tonic::transport::Channel> {
    pb::stream_client::StreamClient::new(s.channel.clone())
}

async fn subscribe(
    s: &TestServer,
    from: Option<u64>,
    to: Option<u64>,
    tables: &[&str],
) -> Streaming<pb::Event> {
    stream_client(s)
        .subscribe(pb::SubscribeRequest {
            ledger: "l".into(),
            from_index: from,
            to_index: to,
            tables: tables.iter().map(|t| (*t).to_owned()).collect(),
        })
        .await
        .expect("subscribe")
        .into_inner()
}

/// Folds a stream as a verifier would, checking order, gaps and every checkpoint.
struct Follower {
    key: Verifier,
    range: Option<CompactRange>,
    next: u64,
    revisions: Vec<pb::Revision>,
    skipped: Vec<(u64, Hash)>,
    checkpoints: u64,
}

impl Follower {
    fn new(key: Verifier, from: u64) -> Follower {
        Follower {
            key,
            range: (from == 0).then(CompactRange::new),
            next: from,
            revisions: Vec::new(),
            skipped: Vec::new(),
            checkpoints: 0,
        }
    }

    fn fold(&mut self, index: u64, leaf: Hash) {
        assert_eq!(index, self.next, "journal order without gaps");
        self.range
            .as_mut()
            .expect("frontier before leaves")
            .append(leaf);
        self.next += 1;
    }

    fn take(&mut self, event: pb::Event) {
        match event.kind.expect("event kind") {
            Kind::Frontier(f) => {
                assert!(self.range.is_none(), "one frontier, first");
                assert_eq!(f.size, self.next);
                let hashes = f
                    .subtrees
                    .iter()
                    .map(|h| Hash(h.as_slice().try_into().expect("32 bytes")))
                    .collect();
                self.range = Some(CompactRange::from_parts(f.size, hashes).expect("frontier"));
            }
            Kind::Revision(r) => {
                let e = Entry::decode(&r.entry).expect("entry decodes");
                assert_eq!((e.table.as_str(), e.version), (r.table.as_str(), r.version));
                if !r.json.is_empty() {
                    let body = sha2::Sha256::digest(&r.json);
                    assert_eq!(e.body_hash, Some(Hash(body.into())));
                }
                self.fold(r.index, leaf_hash(&r.entry));
                self.revisions.push(r);
            }
            Kind::Skipped(k) => {
                let leaf = Hash(k.leaf_hash.as_slice().try_into().expect("32 bytes"));
                self.fold(k.index, leaf);
                self.skipped.push((k.index, leaf));
            }
            Kind::Checkpoint(c) => {
                let head =
                    open_checkpoint(c.checkpoint.as_bytes(), std::slice::from_ref(&self.key))
                        .expect("checkpoint verifies")
                        .checkpoint;
                let range = self.range.as_ref().expect("frontier before checkpoints");
                assert_eq!(
                    (head.size, c.size),
                    (self.next, self.next),
                    "covers what came"
                );
                assert_eq!(
                    head.root,
                    range.root(),
                    "the folded stream matches the signed root"
                );
                self.checkpoints += 1;
            }
        }
    }
}

async fn key(s: &mut TestServer) -> Verifier {
    let vkey = s
        .proofs
        .get_key(pb::GetKeyRequest { ledger: "l".into() })
        .await
        .expect("key")
        .into_inner()
        .vkey;
    Verifier::parse(&vkey).expect("vkey")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_stream_is_ordered_gap_free_and_verifies_under_concurrent_writers() {
    let mut s = start().await;
    s.ledger("l", &["a", "b"]).await;
    let key = key(&mut s).await;
    let mut events = subscribe(&s, Some(0), None, &[]).await;

    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut docs = s.docs.clone();
            tokio::spawn(async move {
                let mut written = 0;
                for i in 0..30 {
                    let n = 1 + (i % 3);
                    let ops = (0..n)
                        .map(|k| {
                            insert(
                                if k % 2 == 0 { "a" } else { "b" },
                                &format!("w{w}-{i}-{k}"),
                                "{}",
                            )
                        })
                        .collect();
                    docs.transact(tx("l", ops, "")).await.expect("transact");
                    written += n as u64;
                }
                written
            })
        })
        .collect();
    let mut total = 0;
    for w in writers {
        total += w.await.expect("writer");
    }

    let mut f = Follower::new(key, 0);
    while !(f.next == total && f.checkpoints > 0 && f.revisions.len() as u64 == total) {
        let e = events.message().await.expect("stream").expect("event");
        let last_was_checkpoint = matches!(e.kind, Some(Kind::Checkpoint(_)));
        f.take(e);
        if f.next == total && last_was_checkpoint {
            break;
        }
    }
    assert_eq!(f.revisions.len() as u64, total);
    // Transactions are whole and in order.
    let mut last_tx = None;
    for r in &f.revisions {
        if let Some(t) = last_tx {
            assert!(
                r.tx_id == t || r.tx_id == t + 1,
                "tx ids do not go back or skip"
            );
        }
        last_tx = Some(r.tx_id);
    }
}

#[tokio::test]
async fn resume_from_the_middle_with_a_frontier_and_filter_by_table() {
    let mut s = start().await;
    s.ledger("l", &["a", "b"]).await;
    let key = key(&mut s).await;
    for i in 0..2500 {
        let table = if i % 3 == 0 { "b" } else { "a" };
        s.transact(
            "l",
            vec![insert(table, &format!("d{i}"), &format!("{{\"i\":{i}}}"))],
        )
        .await
        .expect("insert");
    }
    // Resume at 1234, stop at 2400: exactly those indexes, verified by the checkpoints
    // interleaved while catching up (at least every 1,000 revisions) and at the end.
    let mut events = subscribe(&s, Some(1234), Some(2400), &[]).await;
    let mut f = Follower::new(key.clone(), 1234);
    while let Some(e) = events.message().await.expect("stream") {
        f.take(e);
    }
    assert_eq!(f.next, 2400, "the stream ends at to_index");
    assert_eq!(f.revisions.first().map(|r| r.index), Some(1234));
    assert!(
        f.checkpoints >= 2,
        "a checkpoint every 1,000 revisions and one at the end"
    );

    // Only table b: the others come as leaf hashes, and the stream still verifies.
    let mut events = subscribe(&s, Some(0), Some(300), &["b"]).await;
    let mut f = Follower::new(key, 0);
    while let Some(e) = events.message().await.expect("stream") {
        f.take(e);
    }
    assert!(f.revisions.iter().all(|r| r.table == "b"));
    assert_eq!(f.revisions.len(), 100);
    assert_eq!(f.skipped.len(), 200);
    for index in [1u64, 2, 299] {
        let entry = s
            .proofs
            .get_entry(pb::GetEntryRequest {
                ledger: "l".into(),
                index,
            })
            .await
            .expect("entry")
            .into_inner()
            .entry;
        assert!(
            f.skipped.contains(&(index, leaf_hash(&entry))),
            "index {index} is skipped with its own leaf hash"
        );
    }

    for (from, to, needle, code) in [
        (Some(2501), None, "from_index", Code::OutOfRange),
        (Some(10), Some(5), "to_index", Code::InvalidArgument),
    ] {
        let r = stream_client(&s)
            .subscribe(pb::SubscribeRequest {
                ledger: "l".into(),
                from_index: from,
                to_index: to,
                tables: vec![],
            })
            .await;
        assert_code(r, code, needle);
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscribers_read_from_storage_not_from_memory() {
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    let key = key(&mut s).await;
    // Sixteen subscribers that do not read while 16 MiB of documents are written, each on
    // its own connection (on a shared one, unread streams would use up the HTTP/2
    // connection window and stall every other stream: a client matter, not the server's).
    let mut idle = Vec::new();
    for _ in 0..16 {
        let channel = connect(s.engine.clone()).await;
        let stream = pb::stream_client::StreamClient::new(channel)
            .subscribe(pb::SubscribeRequest {
                ledger: "l".into(),
                from_index: Some(0),
                to_index: None,
                tables: vec![],
            })
            .await
            .expect("subscribe")
            .into_inner();
        idle.push(stream);
    }
    let before = rss_bytes();
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    for batch in 0..16 {
        let ops = (0..1000)
            .map(|i| insert("t", &format!("d{batch}-{i}"), &body))
            .collect();
        s.transact("l", ops).await.expect("bulk insert");
    }
    let grown = rss_bytes().saturating_sub(before);
    // Were the 16 streams buffered in memory, that would be 16 × 16 MiB.
    assert!(
        grown < 128 << 20,
        "memory grew by {} MiB while subscribers were idle",
        grown >> 20
    );
    // A subscriber far behind catches up at storage speed, in order, and verifies.
    let mut f = Follower::new(key, 0);
    let mut events = idle.pop().expect("a subscriber");
    while f.next < 16_000 {
        let e = events.message().await.expect("stream").expect("event");
        f.take(e);
    }
    assert_eq!(f.revisions.len(), 16_000);
}

#[tokio::test]
async fn the_stream_ends_on_deletion_and_on_shutdown() {
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    s.transact("l", vec![insert("t", "x", "{}")])
        .await
        .expect("insert");
    let mut events = subscribe(&s, None, None, &[]).await;
    let first = events.message().await.expect("stream").expect("event");
    assert!(
        matches!(first.kind, Some(Kind::Frontier(_))),
        "starts with the frontier"
    );
    let second = events.message().await.expect("stream").expect("event");
    assert!(
        matches!(second.kind, Some(Kind::Checkpoint(_))),
        "then the head"
    );
    s.admin
        .delete_ledger(pb::DeleteLedgerRequest { name: "l".into() })
        .await
        .expect("delete");
    assert_code(events.message().await, Code::NotFound, "deleted");

    s.ledger("l", &["t"]).await;
    let mut events = subscribe(&s, Some(0), None, &[]).await;
    let head = events.message().await.expect("stream").expect("event");
    assert!(
        matches!(head.kind, Some(Kind::Checkpoint(_))),
        "the empty ledger's head"
    );
    let engine = s.engine.clone();
    tokio::task::spawn_blocking(move || engine.close())
        .await
        .expect("close");
    assert_code(events.message().await, Code::Unavailable, "shutting down");
}

/// What a client had to work around: a subscription "from now" revealed where it started
/// only in its first checkpoint event. The response's metadata names it before any event.
#[tokio::test]
async fn the_first_index_is_in_the_response_metadata() {
    let mut s = start().await;
    s.ledger("l", &["t"]).await;
    for i in 0..3 {
        s.transact("l", vec![insert("t", &format!("d{i}"), "{}")])
            .await
            .expect("insert");
    }
    for (from, start) in [(None, 3), (Some(1), 1), (Some(0), 0)] {
        let response = stream_client(&s)
            .subscribe(pb::SubscribeRequest {
                ledger: "l".into(),
                from_index: from,
                to_index: None,
                tables: vec![],
            })
            .await
            .expect("subscribe");
        let header = response
            .metadata()
            .get(graven::service::START_INDEX_HEADER)
            .expect("the start index header")
            .to_str()
            .expect("ASCII");
        assert_eq!(header, start.to_string(), "from {from:?}");
    }
}
