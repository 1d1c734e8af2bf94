//! Crash durability, the crash harness: `graven serve` as a child process on a real port,
//! a concurrent write load over TCP, SIGKILL at a random moment of it, a restart on the
//! same data folder, then: every acknowledged transaction (of every round so far) is there
//! at the index its receipt named, unchanged; no transaction is partly visible; versions
//! are dense; every receipt's checkpoint is a root of the recovered journal; the journal
//! folds to the latest signed checkpoint and is consistent with checkpoints handed out
//! before the kill; earlier entries read back unchanged; every index comes back online and
//! agrees with a scan of its table (one index is built while the load and the kills go
//! on); and every few rounds, after a clean stop, `graven check` re-derives the whole data
//! folder from scratch, index entries included.
//!
//! What is asserted holds for any kill timing; only how much was written varies.
//!
//! ```sh
//! nice -n 19 cargo test --test tests durability                 # CI: 3 rounds
//! GRAVEN_CRASH_ROUNDS=100 nice -n 19 cargo test --test tests durability -- --nocapture
//! GRAVEN_CRASH_SEED=N ...        # the same kill moments and writer choices again
//! GRAVEN_CRASH_CHECK_EVERY=N ... # graven check every N rounds (default 10) and at the end
//! ```
//!
//! docs/HARDENING.md records the long runs.
//!
//! The child-process fixtures it uses are in `util`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use graven::pb;
use graven::pb::operation::Kind;
use graven_verify::map::{Lookup, MapProof, check_map_proof, map_key};
use graven_verify::map_nodes::{Map, MemoryNodes};
use graven_verify::proof::verify_consistency;
use graven_verify::{
    CompactRange, ConsistencyProof, EMPTY_ROOT, Entry, Hash, Operation, State, Verifier,
    check_consistency, leaf_hash, open_checkpoint,
};
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint};

use crate::util::{Rng, ServerProcess, graven_on, hashes};

// ---------------------------------------------------------------------------------------
// Clients and small helpers

const LEDGER: &str = "crash";
const TABLES: [&str; 2] = ["alpha", "beta"];
/// Concurrent writers.
const TASKS: usize = 16;
/// Each round's kill comes after a random number of acknowledged transactions up to this,
/// or a random time up to `LOAD_TIME`, whichever is first.
const TARGET_ACKS: u64 = 1500;
const LOAD_TIME: Duration = Duration::from_millis(1500);

#[derive(Clone)]
struct Clients {
    admin: pb::admin_client::AdminClient<Channel>,
    docs: pb::documents_client::DocumentsClient<Channel>,
    proofs: pb::proofs_client::ProofsClient<Channel>,
}

async fn connect(url: &str) -> Clients {
    let channel = Endpoint::from_shared(url.to_owned())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connecting to graven serve");
    Clients {
        admin: pb::admin_client::AdminClient::new(channel.clone()),
        docs: pb::documents_client::DocumentsClient::new(channel.clone()),
        proofs: pb::proofs_client::ProofsClient::new(channel),
    }
}

/// Runs `f` over `items` with a few concurrent workers; results in input order. A panic in
/// a worker is re-raised here.
async fn concurrently<T, R, F, Fut>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = R> + Send,
{
    const WORKERS: usize = 8;
    let total = items.len();
    let mut chunks: Vec<Vec<(usize, T)>> = (0..WORKERS).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        chunks[i % WORKERS].push((i, item));
    }
    let mut set = tokio::task::JoinSet::new();
    for chunk in chunks {
        let f = f.clone();
        set.spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for (i, item) in chunk {
                out.push((i, f(item).await));
            }
            out
        });
    }
    let mut results: Vec<Option<R>> = (0..total).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(part) => {
                for (i, r) in part {
                    results[i] = Some(r);
                }
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("worker failed: {e}"),
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every item has a result"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The write load

/// One operation of a transaction as the writer planned it.
#[derive(Debug, Clone)]
struct Planned {
    table: String,
    id: String,
    /// What it writes; `None` for a check.
    write: Option<Operation>,
    /// The document's version after the operation (for a check, the version checked).
    version: u64,
    /// The canonical JSON sent (empty for deletes and checks).
    body: Vec<u8>,
}

/// A transaction as sent.
#[derive(Debug, Clone)]
struct Sent {
    request: pb::TransactRequest,
    ops: Vec<Planned>,
}

impl Sent {
    fn writes(&self) -> impl Iterator<Item = &Planned> {
        self.ops.iter().filter(|p| p.write.is_some())
    }
}

/// An acknowledged transaction: what was sent and the receipt that came back.
#[derive(Debug, Clone)]
struct Acked {
    sent: Sent,
    receipt: pb::Receipt,
    /// Order of acknowledgement across all writers.
    seq: u64,
}

/// What one writer ended with.
struct Outcome {
    acked: Vec<Acked>,
    /// The transaction in flight when the server died, if any.
    unacked: Option<Sent>,
    /// An error seen before the kill: a test failure.
    unexpected: Option<String>,
}

/// A writer's live documents (id -> (table, version)), each written only by that writer.
type Owned = BTreeMap<String, (String, u64)>;

/// Plans the next transaction of writer `task`: single inserts, updates (mostly with an
/// expected version), deletes, and multi-operation transactions of 2 to 5 operations
/// (inserts, updates, and checks on other documents); about a third carry an idempotency
/// key.
fn plan(task: usize, round: usize, n: u64, rng: &mut Rng, owned: &Owned) -> Sent {
    let mut next_id = 0u64;
    let mut new_id = || {
        next_id += 1;
        format!("t{task:02}-r{round}-{n}-{next_id}")
    };
    let body = |id: &str, what: &str| -> Vec<u8> {
        // Keys sorted, no spaces, integers only: already canonical (RFC 8785).
        format!(r#"{{"id":"{id}","n":{n},"op":"{what}","task":{task}}}"#).into_bytes()
    };
    let pick = |rng: &mut Rng, exclude: &[&str]| -> Option<(String, String, u64)> {
        let candidates: Vec<_> = owned
            .iter()
            .filter(|(id, _)| !exclude.contains(&id.as_str()))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (id, (table, version)) = candidates[rng.below(candidates.len() as u64) as usize];
        Some((id.clone(), table.clone(), *version))
    };
    let insert = |rng: &mut Rng, id: String| -> (Kind, Planned) {
        let table = TABLES[rng.below(2) as usize].to_owned();
        let json = body(&id, "insert");
        (
            Kind::Insert(pb::Insert {
                table: table.clone(),
                id: id.clone(),
                json: json.clone(),
            }),
            Planned {
                table,
                id,
                write: Some(Operation::Insert),
                version: 0,
                body: json,
            },
        )
    };
    let update = |rng: &mut Rng, (id, table, version): (String, String, u64)| {
        let json = body(&id, "update");
        let expected = (rng.below(4) != 0).then_some(version);
        (
            Kind::Update(pb::Update {
                table: table.clone(),
                id: id.clone(),
                json: json.clone(),
                expected_version: expected,
            }),
            Planned {
                table,
                id,
                write: Some(Operation::Update),
                version: version + 1,
                body: json,
            },
        )
    };

    let roll = rng.below(100);
    let mut ops: Vec<(Kind, Planned)> = Vec::new();
    if owned.is_empty() || roll < 35 {
        ops.push(insert(rng, new_id()));
    } else if roll < 65 {
        let target = pick(rng, &[]).expect("an owned document");
        ops.push(update(rng, target));
    } else if roll < 70 {
        let (id, table, version) = pick(rng, &[]).expect("an owned document");
        ops.push((
            Kind::Delete(pb::Delete {
                table: table.clone(),
                id: id.clone(),
                expected_version: Some(version),
            }),
            Planned {
                table,
                id,
                write: Some(Operation::Delete),
                version: version + 1,
                body: Vec::new(),
            },
        ));
    } else {
        let count = 2 + rng.below(4) as usize;
        let mut used: Vec<String> = Vec::new();
        while ops.len() < count {
            let exclude: Vec<&str> = used.iter().map(String::as_str).collect();
            let choice = rng.below(10);
            let target = if choice < 4 {
                None
            } else {
                pick(rng, &exclude)
            };
            let op = match target {
                // A check on another document (never the first op, so every transaction
                // writes something).
                Some((id, table, version)) if choice == 9 && !ops.is_empty() => (
                    Kind::Check(pb::Check {
                        table: table.clone(),
                        id: id.clone(),
                        condition: Some(pb::check::Condition::Version(version)),
                    }),
                    Planned {
                        table,
                        id,
                        write: None,
                        version,
                        body: Vec::new(),
                    },
                ),
                Some(target) => update(rng, target),
                None => insert(rng, new_id()),
            };
            used.push(op.1.id.clone());
            ops.push(op);
        }
    }
    let idempotency_key = if rng.below(3) == 0 {
        format!("key-t{task:02}-r{round}-{n}")
    } else {
        String::new()
    };
    let (kinds, planned): (Vec<Kind>, Vec<Planned>) = ops.into_iter().unzip();
    Sent {
        request: pb::TransactRequest {
            ledger: LEDGER.into(),
            operations: kinds
                .into_iter()
                .map(|k| pb::Operation { kind: Some(k) })
                .collect(),
            idempotency_key,
        },
        ops: planned,
    }
}

/// Checks a receipt against what was sent: one result per operation, the versions
/// planned, contiguous indexes for the writes and none for checks.
fn receipt_matches(sent: &Sent, r: &pb::Receipt) -> Result<(), String> {
    let writes = sent.writes().count() as u32;
    if r.results.len() != sent.ops.len() || r.revisions != writes || r.checkpoint.is_empty() {
        return Err(format!("receipt does not match the request: {r:?}"));
    }
    let mut next_index = r.first_index;
    for (p, res) in sent.ops.iter().zip(&r.results) {
        let expected_index = p.write.map(|_| next_index);
        if res.table != p.table
            || res.id != p.id
            || res.version != p.version
            || res.index != expected_index
        {
            return Err(format!("result {res:?} does not match the operation {p:?}"));
        }
        if p.write.is_some() {
            next_index += 1;
        }
    }
    Ok(())
}

/// One writer: sequential transactions until the server dies (or `stop`).
async fn writer(
    task: usize,
    round: usize,
    seed: u64,
    mut docs: pb::documents_client::DocumentsClient<Channel>,
    mut owned: Owned,
    killed: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) -> Outcome {
    let mut rng = Rng::new(seed ^ (((round as u64) << 32) | task as u64));
    let mut out = Outcome {
        acked: Vec::new(),
        unacked: None,
        unexpected: None,
    };
    for n in 0.. {
        let sent = plan(task, round, n, &mut rng, &owned);
        let answer =
            tokio::time::timeout(Duration::from_secs(20), docs.transact(sent.request.clone()))
                .await;
        let receipt = match answer {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                if killed.load(Ordering::SeqCst) {
                    out.unacked = Some(sent);
                } else {
                    out.unexpected = Some(format!("writer {task}: {status:?}"));
                }
                break;
            }
            Err(_) => {
                out.unexpected = Some(format!("writer {task}: no answer in 20 s"));
                break;
            }
        };
        let seq = acks.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = receipt_matches(&sent, &receipt) {
            out.unexpected = Some(format!("writer {task}: {e}"));
            break;
        }
        if receipt.replayed {
            out.unexpected = Some(format!("writer {task}: first attempt replayed"));
            break;
        }
        for p in sent.writes() {
            match p.write {
                Some(Operation::Delete) => {
                    owned.remove(&p.id);
                }
                _ => {
                    owned.insert(p.id.clone(), (p.table.clone(), p.version));
                }
            }
        }
        // Now and then, retry a keyed transaction: the same receipt, nothing written.
        let retry = !sent.request.idempotency_key.is_empty() && n % 4 == 0;
        let request = sent.request.clone();
        out.acked.push(Acked {
            sent,
            receipt: receipt.clone(),
            seq,
        });
        if retry {
            match docs.transact(request).await {
                Ok(again) => {
                    let again = again.into_inner();
                    let same = again.replayed
                        && again.tx_id == receipt.tx_id
                        && again.first_index == receipt.first_index
                        && again.results == receipt.results
                        && again.checkpoint == receipt.checkpoint;
                    if !same {
                        out.unexpected = Some(format!(
                            "writer {task}: retry with the idempotency key answered {again:?}, \
                             first receipt {receipt:?}"
                        ));
                        break;
                    }
                }
                // The server died during the retry: the transaction itself was acknowledged.
                Err(_) if killed.load(Ordering::SeqCst) => break,
                Err(status) => {
                    out.unexpected = Some(format!("writer {task}: retry: {status:?}"));
                    break;
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Checking the recovered journal

/// A document: (table, id).
type DocKey = (String, String);

/// Every entry of the journal after a restart, and the tree roots at every size.
struct Journal {
    /// Raw entry bytes, decoded entries and bodies, by index.
    raw: Vec<Vec<u8>>,
    entries: Vec<Entry>,
    bodies: Vec<Vec<u8>>,
    /// `roots[s]` is the root of the first `s` leaves.
    roots: Vec<Hash>,
    /// The tree of all of them.
    range: CompactRange,
    /// (table, id, version) -> index.
    revisions: HashMap<(String, String, u64), u64>,
    /// (table, id) -> every (version, index), in journal order.
    docs: BTreeMap<DocKey, Vec<(u64, u64)>>,
    /// The state map, replayed: every root a transaction's last entry carries is checked.
    state: Map<MemoryNodes>,
}

impl Journal {
    fn new() -> Journal {
        Journal {
            raw: Vec::new(),
            entries: Vec::new(),
            bodies: Vec::new(),
            roots: vec![EMPTY_ROOT],
            range: CompactRange::new(),
            revisions: HashMap::new(),
            docs: BTreeMap::new(),
            state: Map::new(MemoryNodes::default()),
        }
    }

    /// Fetches the entries from the current end up to `size` and folds them in. (Earlier
    /// entries were fetched after an earlier restart; the caller checks the server still
    /// has them, through the signed root and by re-reading a sample.)
    async fn extend(&mut self, c: &Clients, size: u64) {
        let from = self.size();
        let fetched = concurrently((from..size).collect(), {
            let proofs = c.proofs.clone();
            move |index| {
                let mut proofs = proofs.clone();
                async move {
                    proofs
                        .get_entry(pb::GetEntryRequest {
                            ledger: LEDGER.into(),
                            index,
                        })
                        .await
                        .unwrap_or_else(|e| panic!("GetEntry {index}: {e:?}"))
                        .into_inner()
                }
            }
        })
        .await;
        for (index, got) in (from..).zip(fetched) {
            let e = Entry::decode(&got.entry)
                .unwrap_or_else(|err| panic!("entry {index} does not decode: {err}"));
            // The body is the one the entry commits to.
            match (&e.body_hash, e.operation) {
                (None, Operation::Delete) => assert!(got.json.is_empty(), "entry {index}"),
                (Some(h), _) => assert_eq!(
                    h.0,
                    <[u8; 32]>::from(Sha256::digest(&got.json)),
                    "body hash of entry {index}"
                ),
                _ => panic!("entry {index}: body hash and operation disagree"),
            }
            let live = (e.operation != Operation::Delete).then_some(index);
            self.state
                .set(&map_key(&e.table, &e.id), live)
                .expect("state map");
            match e.state {
                State::Root(root) => assert_eq!(
                    self.state.root().expect("state map"),
                    root,
                    "entry {index}: the state root is not the state after its transaction"
                ),
                State::Pending => {}
                State::Untracked => panic!("entry {index}: a new ledger writes format 2"),
            }
            self.range.append(leaf_hash(&got.entry));
            self.roots.push(self.range.root());
            let key = (e.table.clone(), e.id.clone());
            assert!(
                self.revisions
                    .insert((e.table.clone(), e.id.clone(), e.version), index)
                    .is_none(),
                "entry {index}: version {} of {key:?} is in the journal twice",
                e.version
            );
            self.docs.entry(key).or_default().push((e.version, index));
            self.raw.push(got.entry);
            self.entries.push(e);
            self.bodies.push(got.json);
        }
    }

    fn size(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Asks the server for a document's state proof at `size` (the latest) and checks it
    /// against the replayed journal.
    async fn check_state_proof(&mut self, c: &Clients, table: &str, id: &str, size: u64) {
        let got = c
            .docs
            .clone()
            .get_document(pb::GetDocumentRequest {
                ledger: LEDGER.into(),
                table: table.into(),
                id: id.into(),
                version: None,
                proof: Some(pb::ProofRequest { tree_size: size }),
            })
            .await
            .unwrap_or_else(|e| panic!("GetDocument {table}/{id} with a proof: {e:?}"))
            .into_inner();
        let (state, want) = match got.revision {
            Some(rev) => (
                rev.state.expect("a state proof"),
                Lookup::Current(rev.index),
            ),
            None => (got.absent.expect("a proof of absence"), Lookup::Absent),
        };
        assert_eq!(state.tree_size, size);
        assert_eq!(
            state.state_entry,
            self.raw[size as usize - 1],
            "the state entry"
        );
        let key = map_key(table, id);
        let proof = MapProof::decode(&state.map_proof).expect("map proof");
        let Some(State::Root(root)) = self.entries.last().map(|e| e.state) else {
            panic!("the last entry carries no state root");
        };
        assert_eq!(
            check_map_proof(&root, &key, &proof),
            Ok(want),
            "{table}/{id}"
        );
        let replayed = self.state.prove(&key).expect("state map");
        assert_eq!(
            proof, replayed,
            "{table}/{id}: the proof is the replayed map's"
        );
    }

    /// Transactions are whole, contiguous and densely numbered; versions dense per
    /// document, starting with an insert, nothing after a delete.
    fn check_structure(&self) {
        let mut index = 0usize;
        let mut expected_tx = 0u64;
        while index < self.entries.len() {
            let first = &self.entries[index];
            assert_eq!(
                first.tx_id, expected_tx,
                "entry {index}: transaction ids must be dense"
            );
            let n = first.tx_revisions as usize;
            assert!(
                index + n <= self.entries.len(),
                "transaction {} at {index} claims {n} revisions; the journal ends at {}: \
                 a partial transaction is visible",
                first.tx_id,
                self.entries.len()
            );
            for position in 0..n {
                let e = &self.entries[index + position];
                assert_eq!(
                    (e.tx_id, e.tx_position, e.tx_revisions),
                    (first.tx_id, position as u32, first.tx_revisions),
                    "entry {}: transaction {} is not contiguous and complete",
                    index + position,
                    first.tx_id
                );
                assert_eq!(
                    e.commit_time_micros,
                    first.commit_time_micros,
                    "entry {}",
                    index + position
                );
            }
            index += n;
            expected_tx += 1;
        }
        for ((table, id), versions) in &self.docs {
            for (i, &(version, index)) in versions.iter().enumerate() {
                assert_eq!(version, i as u64, "{table}/{id}: versions must be dense");
                let op = self.entries[index as usize].operation;
                assert_eq!(
                    op == Operation::Insert,
                    i == 0,
                    "{table}/{id} version {version} is a {op}"
                );
                if op == Operation::Delete {
                    assert_eq!(
                        i + 1,
                        versions.len(),
                        "{table}/{id}: revision after a delete"
                    );
                }
            }
        }
    }

    /// A signed checkpoint note opens with the ledger's key and names a root of this
    /// journal. Returns its size.
    fn check_checkpoint(&self, note: &str, key: &Verifier, what: &str) -> u64 {
        let c = open_checkpoint(note.as_bytes(), std::slice::from_ref(key))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .checkpoint;
        assert!(
            c.size <= self.size(),
            "{what}: size {} is beyond the recovered journal ({}): an acknowledged tree was lost",
            c.size,
            self.size()
        );
        assert_eq!(
            c.root, self.roots[c.size as usize],
            "{what}: root at size {} differs from the recovered journal's",
            c.size
        );
        c.size
    }
}

/// The server's consistency proof from `old_note` to its latest checkpoint verifies, both
/// through graven-verify's end-to-end check and against the locally computed roots.
async fn check_consistent_with(
    c: &mut Clients,
    j: &Journal,
    key: &Verifier,
    old_note: &str,
    latest_note: &str,
    what: &str,
) {
    let old_size = j.check_checkpoint(old_note, key, what);
    let p = c
        .proofs
        .prove_consistency(pb::ProveConsistencyRequest {
            ledger: LEDGER.into(),
            old_size,
            new_size: 0,
        })
        .await
        .unwrap_or_else(|e| panic!("ProveConsistency from {what}: {e:?}"))
        .into_inner();
    assert_eq!(p.new_size, j.size(), "{what}");
    assert_eq!(p.checkpoint, latest_note, "{what}: proof's checkpoint");
    let proof = ConsistencyProof {
        old_size: p.old_size,
        hashes: hashes(&p.hashes),
        checkpoint: p.checkpoint,
    };
    let (old, new) = verify_consistency(&proof, old_note.as_bytes(), std::slice::from_ref(key))
        .unwrap_or_else(|e| panic!("consistency from {what}: {e}"));
    check_consistency(
        &proof.hashes,
        old.checkpoint.size,
        new.checkpoint.size,
        &j.roots[old_size as usize],
        &j.roots[j.size() as usize],
    )
    .unwrap_or_else(|e| panic!("consistency from {what} against the local roots: {e}"));
}

/// The server writes the state map's records every 13 revisions, so that a kill lands
/// between flushes, and restarts replay the journal's tail, in every round.
const STATE_FLUSH: &[(&str, &str)] = &[("GRAVEN_STATE_FLUSH", "13")];

/// Receipts per round whose checkpoints get a consistency proof after the restart (beyond
/// the last and the largest).
const RANDOM_ANCHORS: usize = 4;

/// Earlier entries re-read after each restart, at random, to check they are unchanged.
const SAMPLE_OLD_ENTRIES: usize = 64;

/// Everything the restarted server must show. `j` holds the journal as read after the
/// previous restart and is extended to the recovered one; `anchors` are signed checkpoint
/// notes taken before the kill (the early checkpoint, the last receipt's). The whole
/// journal and every receipt are checked; the per-document reads (GetDocument, History),
/// slower, only for revisions from index `since` on (the earlier ones were read after the
/// previous kill).
#[allow(clippy::too_many_arguments)]
async fn check_recovered(
    c: &mut Clients,
    j: &mut Journal,
    rng: &mut Rng,
    vkey: &str,
    acked: &[Acked],
    unacked: &[Sent],
    anchors: &[(&str, String)],
    since: u64,
) {
    let key = Verifier::parse(vkey).expect("vkey");
    let got_vkey = c
        .proofs
        .get_key(pb::GetKeyRequest {
            ledger: LEDGER.into(),
        })
        .await
        .expect("GetKey")
        .into_inner()
        .vkey;
    assert_eq!(
        got_vkey, vkey,
        "the ledger's key changed across the restart"
    );
    let head = c
        .proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            ledger: LEDGER.into(),
            size: None,
        })
        .await
        .expect("GetCheckpoint")
        .into_inner();
    assert!(
        head.size >= j.size(),
        "the journal shrank from {} to {} entries: durable entries were lost",
        j.size(),
        head.size
    );
    let earlier = j.size();
    j.extend(c, head.size).await;

    // The whole journal (the entries read after earlier restarts and the new ones) folds
    // to the latest checkpoint's root ...
    let latest = open_checkpoint(head.checkpoint.as_bytes(), std::slice::from_ref(&key))
        .expect("latest checkpoint opens with the ledger key")
        .checkpoint;
    assert_eq!(latest.size, head.size);
    assert_eq!(
        latest.root, j.roots[head.size as usize],
        "the recovered journal's root is not the latest checkpoint's"
    );
    // ... and the server still serves the earlier entries byte for byte (a sample).
    let sample: Vec<u64> = (0..SAMPLE_OLD_ENTRIES)
        .filter(|_| earlier > 0)
        .map(|_| rng.below(earlier))
        .collect();
    let reread = concurrently(sample.clone(), {
        let proofs = c.proofs.clone();
        move |index| {
            let mut proofs = proofs.clone();
            async move {
                proofs
                    .get_entry(pb::GetEntryRequest {
                        ledger: LEDGER.into(),
                        index,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("GetEntry {index}: {e:?}"))
                    .into_inner()
            }
        }
    })
    .await;
    for (index, got) in sample.into_iter().zip(reread) {
        assert_eq!(got.entry, j.raw[index as usize], "entry {index} changed");
        assert_eq!(got.json, j.bodies[index as usize], "body {index} changed");
    }
    // Reading past the end is OUT_OF_RANGE, not some leftover entry.
    let past = c
        .proofs
        .get_entry(pb::GetEntryRequest {
            ledger: LEDGER.into(),
            index: head.size,
        })
        .await;
    assert_eq!(
        past.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::OutOfRange)
    );
    j.check_structure();
    // The restarted server proves a document's state at its latest checkpoint: current
    // where the journal says, or absent.
    let pick = rng.below(j.docs.len().max(1) as u64) as usize;
    if let Some((table, id)) = j.docs.keys().nth(pick).cloned() {
        j.check_state_proof(c, &table, &id, head.size).await;
        j.check_state_proof(c, TABLES[0], "never-written", head.size)
            .await;
    }

    // Every acknowledged transaction is there, where its receipt said.
    for a in acked {
        let r = &a.receipt;
        let what = format!("acknowledged transaction {} (ack #{})", r.tx_id, a.seq);
        j.check_checkpoint(&r.checkpoint, &key, &format!("{what}: receipt checkpoint"));
        let size = open_checkpoint(r.checkpoint.as_bytes(), std::slice::from_ref(&key))
            .expect("receipt checkpoint")
            .checkpoint
            .size;
        assert!(
            size >= r.first_index + u64::from(r.revisions),
            "{what}: its checkpoint (size {size}) does not include it"
        );
        for (p, res) in a.sent.ops.iter().zip(&r.results) {
            let Some(op) = p.write else { continue };
            let index = res.index.expect("index of a write");
            let e = j
                .entries
                .get(index as usize)
                .unwrap_or_else(|| panic!("{what}: index {index} is beyond the journal"));
            assert_eq!(
                (
                    e.table.as_str(),
                    e.id.as_str(),
                    e.version,
                    e.tx_id,
                    e.operation
                ),
                (p.table.as_str(), p.id.as_str(), p.version, r.tx_id, op),
                "{what}: entry {index}"
            );
            assert_eq!(
                u64::from(e.tx_revisions),
                u64::from(r.revisions),
                "{what}: entry {index}"
            );
            assert_eq!(j.bodies[index as usize], p.body, "{what}: body at {index}");
        }
    }
    // ... and readable by document and version, with the same entry bytes.
    let lookups: Vec<(String, String, u64, u64)> = acked
        .iter()
        .flat_map(|a| {
            a.sent
                .ops
                .iter()
                .zip(&a.receipt.results)
                .filter(|(p, res)| p.write.is_some() && res.index >= Some(since))
                .map(|(p, res)| {
                    (
                        p.table.clone(),
                        p.id.clone(),
                        p.version,
                        res.index.unwrap_or(u64::MAX),
                    )
                })
        })
        .collect();
    let docs = c.docs.clone();
    let read = concurrently(lookups.clone(), move |(table, id, version, _)| {
        let mut docs = docs.clone();
        async move {
            docs.get_document(pb::GetDocumentRequest {
                ledger: LEDGER.into(),
                table: table.clone(),
                id: id.clone(),
                version: Some(version),
                proof: None,
            })
            .await
            .unwrap_or_else(|e| panic!("GetDocument {table}/{id} v{version}: {e:?}"))
            .into_inner()
            .revision
            .expect("a revision")
        }
    })
    .await;
    for ((table, id, version, index), rev) in lookups.iter().zip(read) {
        assert_eq!(
            (rev.index, rev.version),
            (*index, *version),
            "{table}/{id} v{version}"
        );
        assert_eq!(rev.entry, j.raw[*index as usize], "{table}/{id} v{version}");
        assert_eq!(
            rev.json, j.bodies[*index as usize],
            "{table}/{id} v{version}"
        );
    }
    // A transaction in flight at the kill is entirely there or entirely absent.
    for sent in unacked {
        let present: Vec<Option<u64>> = sent
            .writes()
            .map(|p| {
                j.revisions
                    .get(&(p.table.clone(), p.id.clone(), p.version))
                    .copied()
            })
            .collect();
        if present.iter().all(Option::is_none) {
            continue;
        }
        let indexes: Vec<u64> = present
            .iter()
            .map(|i| i.unwrap_or_else(|| panic!("partly committed transaction: {sent:?}")))
            .collect();
        let first = &j.entries[indexes[0] as usize];
        for (position, (&index, p)) in indexes.iter().zip(sent.writes()).enumerate() {
            let e = &j.entries[index as usize];
            assert_eq!(
                (index, e.tx_id, e.tx_position, e.operation),
                (
                    indexes[0] + position as u64,
                    first.tx_id,
                    position as u32,
                    p.write.expect("a write")
                ),
                "in-flight transaction {sent:?}"
            );
            assert_eq!(j.bodies[index as usize], p.body);
        }
        assert_eq!(first.tx_revisions as usize, indexes.len());
    }

    // History shows every document's versions densely, oldest first.
    let all_docs: Vec<(DocKey, Vec<(u64, u64)>)> = j
        .docs
        .iter()
        .filter(|(_, v)| v.last().is_some_and(|&(_, index)| index >= since))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let docs = c.docs.clone();
    concurrently(all_docs, move |((table, id), versions)| {
        let mut docs = docs.clone();
        async move {
            let mut got = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = docs
                    .history(pb::HistoryRequest {
                        ledger: LEDGER.into(),
                        table: table.clone(),
                        id: id.clone(),
                        page_size: 0,
                        page_token,
                        proof: None,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("History {table}/{id}: {e:?}"))
                    .into_inner();
                got.extend(page.revisions.iter().map(|r| (r.version, r.index)));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            assert_eq!(got, versions, "History of {table}/{id}");
        }
    })
    .await;
    // Checkpoints taken before the kill are prefixes of the recovered journal.
    for (what, note) in anchors {
        check_consistent_with(c, j, &key, note, &head.checkpoint, what).await;
    }
}

/// The writer that owns a document id (`tNN-...`).
fn owner(id: &str) -> Option<usize> {
    id.strip_prefix('t')
        .and_then(|rest| rest.get(..2))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&task| task < TASKS)
}

/// The live documents of each writer, from the journal (ids start with `tNN-`).
fn owned_from(j: &Journal) -> Vec<Owned> {
    let mut owned: Vec<Owned> = (0..TASKS).map(|_| Owned::new()).collect();
    for ((table, id), versions) in &j.docs {
        let Some(task) = owner(id) else { continue };
        let &(version, index) = versions.last().expect("a version");
        if j.entries[index as usize].operation != Operation::Delete {
            owned[task].insert(id.clone(), (table.clone(), version));
        }
    }
    owned
}

/// The indexes the harness makes: `alpha.task` before the first round (online under
/// every load), `beta.op` at the start of the second (built while writes go on, so that
/// kills land in its build).
const INDEXES: [(&str, &str); 2] = [("alpha", "task"), ("beta", "op")];

async fn create_index(c: &mut Clients, table: &str, field: &str) {
    c.docs
        .execute_statement(crate::query::request(
            LEDGER,
            &format!("CREATE INDEX ON {table} ({field})"),
            &[],
        ))
        .await
        .expect("CREATE INDEX");
}

/// After a restart: every index comes online (a build the kill interrupted goes on from
/// its last durable step), and an index lookup finds exactly the documents a scan of the
/// table finds, value by value.
async fn check_indexes(c: &mut Clients, round: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let defined = loop {
        let tables = c
            .admin
            .list_tables(pb::ListTablesRequest {
                ledger: LEDGER.into(),
            })
            .await
            .expect("ListTables")
            .into_inner()
            .tables;
        let indexes: Vec<(String, String, String)> = tables
            .iter()
            .flat_map(|t| {
                t.indexes
                    .iter()
                    .map(|i| (t.name.clone(), i.path.clone(), i.state.clone()))
            })
            .collect();
        if indexes.iter().all(|(_, _, state)| state == "online") {
            break indexes;
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: indexes still building after 120 s: {indexes:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (table, field) in INDEXES {
        if !defined.iter().any(|(t, p, _)| t == table && p == field) {
            continue;
        }
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut token = String::new();
        loop {
            let page = c
                .docs
                .scan(pb::ScanRequest {
                    ledger: LEDGER.into(),
                    table: table.into(),
                    page_size: 1000,
                    page_token: token,
                    proof: None,
                })
                .await
                .expect("Scan")
                .into_inner();
            for rev in &page.revisions {
                let doc: serde_json::Value = serde_json::from_slice(&rev.json).expect("JSON");
                if let Some(v) = doc.get(field) {
                    *counts.entry(v.to_string()).or_default() += 1;
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        for (value, count) in counts {
            let value: serde_json::Value = serde_json::from_str(&value).expect("value");
            let text = format!("SELECT COUNT(*) AS n FROM {table} AS x WHERE x.{field} = ?");
            let r = c
                .docs
                .execute_statement(crate::query::request(
                    LEDGER,
                    &text,
                    std::slice::from_ref(&value),
                ))
                .await
                .expect("an indexed count")
                .into_inner();
            let rows = crate::query::rows(&r);
            assert_eq!(
                rows[0]["n"].as_u64(),
                Some(count),
                "round {round}: {table}.{field} = {value}: the index and a scan disagree"
            );
        }
    }
}

async fn checkpoint(c: &mut Clients) -> pb::GetCheckpointResponse {
    c.proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            ledger: LEDGER.into(),
            size: None,
        })
        .await
        .expect("GetCheckpoint")
        .into_inner()
}

/// Reads a number from the environment.
fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

/// `graven check --data DATA` on the stopped server's folder: everything re-derived from
/// the journal, from scratch. (A folder killed mid-write needs the repair redb makes when
/// the server opens it, so this runs after a restart and a clean stop.)
fn offline_check(data: &Path, round: usize) {
    let out = graven_on(data)
        .arg("check")
        .arg("--data")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .expect("running graven check");
    assert!(
        out.status.success(),
        "round {round}: graven check: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rounds of: write load, SIGKILL at a random moment, `graven check` on the stopped
/// folder, restart, check everything acknowledged so far. `GRAVEN_CRASH_ROUNDS` rounds
/// (default 3), kill moments from `GRAVEN_CRASH_SEED` (default: from the clock; printed).
/// See docs/HARDENING.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let rounds = env_u64("GRAVEN_CRASH_ROUNDS").unwrap_or(3) as usize;
    let check_every = env_u64("GRAVEN_CRASH_CHECK_EVERY").unwrap_or(10).max(1) as usize;
    let mut offline_checks = 0;
    let seed = env_u64("GRAVEN_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    eprintln!(
        "crash harness: {rounds} rounds, seed {seed} (GRAVEN_CRASH_SEED={seed} repeats the kill \
         moments and the writers' choices; the process timing still varies)"
    );
    let mut rng = Rng::new(seed);
    let harness_started = Instant::now();
    let mut journal = Journal::new();
    let (mut in_flight, mut in_flight_committed) = (0usize, 0usize);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut server = ServerProcess::start_with(&data, &log, STATE_FLUSH, &[]);
    let mut c = connect(&server.url).await;

    let info = c
        .admin
        .create_ledger(pb::CreateLedgerRequest {
            name: LEDGER.into(),
            signing_key: String::new(),
            deletion_protection_off: false,
        })
        .await
        .expect("CreateLedger")
        .into_inner();
    let vkey = info.vkey;
    for table in TABLES {
        c.admin
            .create_table(pb::CreateTableRequest {
                ledger: LEDGER.into(),
                table: table.into(),
            })
            .await
            .expect("CreateTable");
    }
    // A few writes, then the early checkpoint.
    for i in 0..8 {
        let json = format!(r#"{{"seed":{i}}}"#).into_bytes();
        c.docs
            .transact(pb::TransactRequest {
                ledger: LEDGER.into(),
                operations: vec![pb::Operation {
                    kind: Some(Kind::Insert(pb::Insert {
                        table: TABLES[i % 2].into(),
                        id: format!("seed-{i}"),
                        json,
                    })),
                }],
                idempotency_key: String::new(),
            })
            .await
            .expect("seed insert");
    }

    create_index(&mut c, INDEXES[0].0, INDEXES[0].1).await;

    let mut all_acked: Vec<Acked> = Vec::new();
    let mut owned: Vec<Owned> = (0..TASKS).map(|_| Owned::new()).collect();
    for round in 0..rounds {
        if round == 1 {
            create_index(&mut c, INDEXES[1].0, INDEXES[1].1).await;
        }
        let early = checkpoint(&mut c).await;
        assert!(early.size > 0);

        // The load, then SIGKILL in the middle of it.
        let killed = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for (task, mine) in owned.iter().enumerate() {
            writers.push(tokio::spawn(writer(
                task,
                round,
                seed,
                c.docs.clone(),
                mine.clone(),
                killed.clone(),
                acks.clone(),
            )));
        }
        // A random moment: after a random number of acknowledgements or a random time,
        // whichever comes first, then a random sub-millisecond delay.
        let kill_acks = 1 + rng.below(TARGET_ACKS);
        let kill_after = Duration::from_micros(rng.below(LOAD_TIME.as_micros() as u64));
        let jitter = Duration::from_micros(rng.below(1000));
        let started = Instant::now();
        while acks.load(Ordering::SeqCst) < kill_acks && started.elapsed() < kill_after {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        std::thread::sleep(jitter);
        killed.store(true, Ordering::SeqCst);
        server.kill();
        let mut unacked = Vec::new();
        let mut acked_now = Vec::new();
        for w in writers {
            let outcome = w.await.expect("writer task");
            if let Some(e) = outcome.unexpected {
                panic!("round {round}: {e}");
            }
            acked_now.extend(outcome.acked);
            unacked.extend(outcome.unacked);
        }
        if let Some(url) = crate::util::test_storage_url(&data) {
            crate::util::wait_for_sessions_to_end(&url).await;
        }
        // Checkpoints handed out before the kill: the restarted journal must extend them.
        let mut anchors = vec![("the early checkpoint", early.checkpoint)];
        if let Some(last) = acked_now.iter().max_by_key(|a| a.seq) {
            anchors.push((
                "the last receipt's checkpoint",
                last.receipt.checkpoint.clone(),
            ));
        }
        if let Some(largest) = acked_now.iter().max_by_key(|a| a.receipt.first_index) {
            anchors.push((
                "the largest receipt's checkpoint",
                largest.receipt.checkpoint.clone(),
            ));
        }
        // Every receipt's checkpoint is compared with the recovered roots; a few, at
        // random, also get a consistency proof from the restarted server.
        for _ in 0..RANDOM_ANCHORS.min(acked_now.len()) {
            let a = &acked_now[rng.below(acked_now.len() as u64) as usize];
            anchors.push((
                "a random receipt's checkpoint",
                a.receipt.checkpoint.clone(),
            ));
        }
        let summary = format!(
            "round {round}: killed after {:?} (at {kill_acks} acknowledgements or {kill_after:?}), \
             {} transactions acknowledged, {} in flight",
            started.elapsed(),
            acked_now.len(),
            unacked.len(),
        );
        all_acked.extend(acked_now);

        // Restart on the same data folder and check everything.
        server = ServerProcess::start_with(&data, &log, STATE_FLUSH, &[]);
        c = connect(&server.url).await;
        check_recovered(
            &mut c,
            &mut journal,
            &mut rng,
            &vkey,
            &all_acked,
            &unacked,
            &anchors,
            early.size,
        )
        .await;
        check_indexes(&mut c, round).await;
        let j = &journal;
        let committed_in_flight = unacked
            .iter()
            .filter(|s| {
                s.writes().all(|p| {
                    j.revisions
                        .contains_key(&(p.table.clone(), p.id.clone(), p.version))
                })
            })
            .count();
        in_flight += unacked.len();
        in_flight_committed += committed_in_flight;
        eprintln!("{summary} ({committed_in_flight} of them committed)");

        // Retrying an in-flight keyed transaction tells whether it committed: a replay if
        // (and only if) its revisions are in the journal.
        let mut size = j.size();
        let mut new_commits = 0u64;
        let mut committed_now = Vec::new();
        for sent in unacked
            .iter()
            .filter(|s| !s.request.idempotency_key.is_empty())
        {
            let committed = sent.writes().all(|p| {
                j.revisions
                    .contains_key(&(p.table.clone(), p.id.clone(), p.version))
            });
            let r = c
                .docs
                .transact(sent.request.clone())
                .await
                .unwrap_or_else(|e| panic!("retrying {sent:?}: {e:?}"))
                .into_inner();
            receipt_matches(sent, &r).unwrap_or_else(|e| panic!("retry: {e}"));
            assert_eq!(r.replayed, committed, "retry of {sent:?}: {r:?}");
            if committed {
                let first = &j.entries[r.first_index as usize];
                assert_eq!(first.tx_id, r.tx_id);
                j.check_checkpoint(
                    &r.checkpoint,
                    &Verifier::parse(&vkey).expect("vkey"),
                    "replay",
                );
            } else {
                assert_eq!(r.first_index, size, "a new commit appends at the end");
                size += u64::from(r.revisions);
                new_commits += 1;
                committed_now.push(sent.clone());
                all_acked.push(Acked {
                    sent: sent.clone(),
                    receipt: r,
                    seq: u64::MAX,
                });
            }
        }
        // A retried acknowledged keyed transaction still replays, byte for byte.
        if let Some(a) = all_acked
            .iter()
            .find(|a| !a.sent.request.idempotency_key.is_empty())
        {
            let again = c
                .docs
                .transact(a.sent.request.clone())
                .await
                .expect("replay after restart")
                .into_inner();
            assert!(again.replayed);
            assert_eq!(
                (
                    again.tx_id,
                    again.first_index,
                    &again.results,
                    &again.checkpoint
                ),
                (
                    a.receipt.tx_id,
                    a.receipt.first_index,
                    &a.receipt.results,
                    &a.receipt.checkpoint
                )
            );
        }
        // The restarted ledger takes new writes at the right place.
        let next_tx = j.entries.last().map_or(0, |e| e.tx_id + 1) + new_commits;
        let r = c
            .docs
            .transact(pb::TransactRequest {
                ledger: LEDGER.into(),
                operations: vec![pb::Operation {
                    kind: Some(Kind::Insert(pb::Insert {
                        table: TABLES[0].into(),
                        id: format!("after-restart-{round}"),
                        json: b"{}".to_vec(),
                    })),
                }],
                idempotency_key: String::new(),
            })
            .await
            .expect("a write after the restart")
            .into_inner();
        assert_eq!((r.tx_id, r.first_index), (next_tx, size));

        // The next round's writers start from what the journal says they own, plus the
        // retries just committed.
        owned = owned_from(j);
        for sent in &committed_now {
            for p in sent.writes() {
                let task = owner(&p.id).expect("a writer's document");
                match p.write {
                    Some(Operation::Delete) => {
                        owned[task].remove(&p.id);
                    }
                    _ => {
                        owned[task].insert(p.id.clone(), (p.table.clone(), p.version));
                    }
                }
            }
        }

        // Every few rounds and after the last: stop cleanly, and check the whole folder
        // from scratch with `graven check`.
        if (round + 1) % check_every == 0 || round + 1 == rounds {
            server.stop();
            offline_check(&data, round);
            offline_checks += 1;
            if round + 1 < rounds {
                server = ServerProcess::start_with(&data, &log, STATE_FLUSH, &[]);
                c = connect(&server.url).await;
            }
        }
    }
    assert!(
        !all_acked.is_empty(),
        "no transaction was acknowledged in {rounds} rounds"
    );
    eprintln!(
        "crash harness: seed {seed}: {rounds} rounds in {:?}; {} acknowledged transactions \
         checked after every later restart; {in_flight} in flight at a kill, \
         {in_flight_committed} of them committed, none partly; journal {} entries; \
         graven check passed {offline_checks} times",
        harness_started.elapsed(),
        all_acked.len(),
        journal.size()
    );
}
