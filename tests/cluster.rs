//! Several `graven serve` processes on one PostgreSQL: writes sent to any server reach the
//! ledger's one writer (the holder of its write lease), reads and change streams are
//! served by every server, and when the writer is SIGKILLed another server takes over.
//!
//! The failover harness: 3 servers, 16 writers with idempotency keys spread over them,
//! the writer killed at random moments and restarted, rounds from GRAVEN_FAILOVER_ROUNDS
//! (3 by default; docs/HARDENING.md records a longer run). Rounds take turns: the
//! writer SIGKILLed and restarted; the writer paused (SIGSTOP) past its lease and let go
//! on (SIGCONT) once another server writes, so that two servers believe they write and
//! the fences must keep the journal one; and PostgreSQL itself stopped at once (`pg_ctl
//! stop -m immediate`, a crash) and started again under the load. Checked at the end: every
//! acknowledged transaction is in the journal where its receipt says; every transaction
//! is all or nothing and committed at most once; no two checkpoints of one size differ,
//! among all any client saw; and every checkpoint seen has a consistency proof to the last.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use graven::pb;
use graven_verify::map::{Lookup, MapProof, check_map_proof, map_key};
use graven_verify::proof::verify_consistency;
use graven_verify::{ConsistencyProof, Entry, State, Verifier, open_checkpoint};
use tonic::transport::Channel;

use crate::util::{Postgres, Rng, ServerProcess, hashes, insert, tx};

const LEDGER: &str = "books";
const TABLE: &str = "t";

/// Servers on one throwaway PostgreSQL, each with its own data folder (its keys).
struct Cluster {
    pg: Postgres,
    root: tempfile::TempDir,
    servers: Vec<Option<ServerProcess>>,
    lease_ms: u64,
}

impl Cluster {
    /// `n` servers with leases of `lease_ms`, or `None` (after saying why) without
    /// PostgreSQL.
    fn start(test: &str, n: usize, lease_ms: u64) -> Option<Cluster> {
        let pg = Postgres::start_or_skip(test)?;
        let mut c = Cluster {
            pg,
            root: tempfile::tempdir().expect("temp dir"),
            servers: (0..n).map(|_| None).collect(),
            lease_ms,
        };
        for i in 0..n {
            c.start_server(i);
        }
        Some(c)
    }

    fn data(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("server{i}"))
    }

    /// Starts server `i` (again), on a new port.
    fn start_server(&mut self, i: usize) {
        let log = self.root.path().join(format!("server{i}.log"));
        let lease = self.lease_ms.to_string();
        let env = [
            ("GRAVEN_STORAGE", self.pg.url.as_str()),
            ("GRAVEN_LEASE_MS", lease.as_str()),
        ];
        self.servers[i] = Some(ServerProcess::start_with(&self.data(i), &log, &env, &[]));
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.servers[i].take() {
            s.kill();
        }
    }

    fn url(&self, i: usize) -> String {
        self.servers[i]
            .as_ref()
            .expect("server running")
            .url
            .clone()
    }

    fn urls(&self) -> Vec<Option<String>> {
        self.servers
            .iter()
            .map(|s| s.as_ref().map(|s| s.url.clone()))
            .collect()
    }

    /// Gives server `to` the ledger's key that server `from` created.
    fn share_key(&self, ledger: &str, from: usize, to: usize) {
        let dir = self.data(to).join("ledgers").join(ledger);
        std::fs::create_dir_all(&dir).expect("ledger folder");
        let key = self
            .data(from)
            .join("ledgers")
            .join(ledger)
            .join("signing.key");
        std::fs::copy(&key, dir.join("signing.key")).expect("copying the key");
    }
}

async fn channel(url: &str) -> Channel {
    graven::client::connect_channel(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

async fn describe(url: &str) -> pb::LedgerInfo {
    pb::admin_client::AdminClient::new(channel(url).await)
        .describe_ledger(pb::DescribeLedgerRequest {
            name: LEDGER.into(),
        })
        .await
        .expect("describe")
        .into_inner()
}

/// The ledger's change stream through `url`, from the first index.
async fn subscribe(url: &str) -> tonic::Streaming<pb::Event> {
    pb::stream_client::StreamClient::new(channel(url).await)
        .subscribe(pb::SubscribeRequest {
            ledger: LEDGER.into(),
            from_index: Some(0),
            to_index: None,
            tables: vec![],
        })
        .await
        .unwrap_or_else(|e| panic!("subscribe through {url}: {e}"))
        .into_inner()
}

/// Document `id` of the ledger's table, through `url`.
async fn get(url: &str, id: &str) -> Result<pb::GetDocumentResponse, tonic::Status> {
    pb::documents_client::DocumentsClient::new(channel(url).await)
        .get_document(pb::GetDocumentRequest {
            ledger: LEDGER.into(),
            table: TABLE.into(),
            id: id.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// What the current-state proof `url` serves for document `id` proves, against the state
/// root its entry carries: a server that does not write replays the journal's tail into
/// its map from the shared storage.
async fn proven_state(url: &str, id: &str) -> Lookup {
    let got = pb::documents_client::DocumentsClient::new(channel(url).await)
        .get_document(pb::GetDocumentRequest {
            ledger: LEDGER.into(),
            table: TABLE.into(),
            id: id.into(),
            version: None,
            proof: Some(pb::ProofRequest { tree_size: 0 }),
        })
        .await
        .expect("a read with a proof")
        .into_inner();
    let state = match got.revision {
        Some(rev) => rev.state.expect("a current-state proof"),
        None => got.absent.expect("a proof of absence"),
    };
    let entry = Entry::decode(&state.state_entry).expect("the state entry decodes");
    let State::Root(root) = entry.state else {
        panic!("the state entry carries no root");
    };
    let proof = MapProof::decode(&state.map_proof).expect("the map proof decodes");
    check_map_proof(&root, &map_key(TABLE, id), &proof).expect("the map proof verifies")
}

/// Creates the ledger and its table through server 0 and gives every server its key.
async fn create_ledger(c: &Cluster) -> Verifier {
    let mut admin = pb::admin_client::AdminClient::new(channel(&c.url(0)).await);
    let info = admin
        .create_ledger(pb::CreateLedgerRequest {
            name: LEDGER.into(),
            signing_key: String::new(),
            deletion_protection_off: true,
        })
        .await
        .expect("create ledger")
        .into_inner();
    admin
        .create_table(pb::CreateTableRequest {
            ledger: LEDGER.into(),
            table: TABLE.into(),
        })
        .await
        .expect("create table");
    for i in 1..c.servers.len() {
        c.share_key(LEDGER, 0, i);
    }
    Verifier::parse(&info.vkey).expect("vkey")
}

/// A consistency proof from `old` (a checkpoint note) to the latest, through `url`,
/// verified with `key`.
async fn check_extends(url: &str, key: &Verifier, old: &str) -> u64 {
    let old_size = open_checkpoint(old.as_bytes(), std::slice::from_ref(key))
        .expect("checkpoint verifies")
        .checkpoint
        .size;
    let p = pb::proofs_client::ProofsClient::new(channel(url).await)
        .prove_consistency(pb::ProveConsistencyRequest {
            ledger: LEDGER.into(),
            old_size,
            new_size: 0,
        })
        .await
        .expect("consistency proof")
        .into_inner();
    let proof = ConsistencyProof {
        old_size: p.old_size,
        hashes: hashes(&p.hashes),
        checkpoint: p.checkpoint,
    };
    let (_, new) = verify_consistency(&proof, old.as_bytes(), std::slice::from_ref(key))
        .unwrap_or_else(|e| panic!("the checkpoint of size {old_size} is not extended: {e}"));
    new.checkpoint.size
}

/// Reads events from `stream` until it has delivered every index below `size` (in order)
/// and a checkpoint of at least `size`; returns the checkpoints it saw.
async fn follow_to(
    stream: &mut tonic::Streaming<pb::Event>,
    next: &mut u64,
    size: u64,
    key: &Verifier,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut covered = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, stream.message())
            .await
            .expect("the stream delivers within 30 s")
            .expect("stream")
            .expect("the stream goes on");
        match event.kind.expect("event") {
            pb::event::Kind::Revision(r) => {
                assert_eq!(r.index, *next, "in journal order, no gap");
                *next += 1;
            }
            pb::event::Kind::Skipped(s) => {
                assert_eq!(s.index, *next, "in journal order, no gap");
                *next += 1;
            }
            pb::event::Kind::Checkpoint(c) => {
                let size = open_checkpoint(c.checkpoint.as_bytes(), std::slice::from_ref(key))
                    .expect("a stream checkpoint verifies")
                    .checkpoint
                    .size;
                assert_eq!(size, *next, "a checkpoint covers what came before it");
                covered = size;
                seen.push(c.checkpoint);
            }
            pb::event::Kind::Frontier(_) => {}
        }
        if *next >= size && covered == *next {
            return seen;
        }
    }
}

/// The README's "Several servers" walk-through as a test: two servers, a write through
/// either lands in one journal (the non-writer forwards it), the other server serves
/// reads and the change stream, and when the writer is killed the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_a_ledger_and_take_over_from_each_other() {
    let Some(mut c) = Cluster::start(
        "two_servers_share_a_ledger_and_take_over_from_each_other",
        2,
        1000,
    ) else {
        return;
    };
    let key = create_ledger(&c).await;
    let (a, b) = (c.url(0), c.url(1));
    assert_eq!(
        describe(&b).await.writer,
        a,
        "the server that wrote holds the lease"
    );

    let mut stream = subscribe(&b).await;
    let mut docs_b = pb::documents_client::DocumentsClient::new(channel(&b).await);
    let mut last = None;
    for i in 0..5u64 {
        let r = docs_b
            .transact(tx(LEDGER, vec![insert(TABLE, &format!("d{i}"), "{}")], ""))
            .await
            .expect("a write through the other server is forwarded")
            .into_inner();
        assert_eq!(r.first_index, i);
        assert_eq!(r.tree_size, i + 1);
        last = Some(r.checkpoint);
    }
    assert_eq!(describe(&b).await.writer, a, "forwarded, not taken over");
    let got = get(&a, "d4")
        .await
        .expect("the writer reads what was written through the other");
    assert_eq!(got.revision.expect("revision").index, 4);
    // Both servers prove the state: the writer from what it wrote, the other by
    // replaying the journal since the map's last flush.
    for url in [&a, &b] {
        assert_eq!(proven_state(url, "d4").await, Lookup::Current(4), "{url}");
        assert_eq!(proven_state(url, "nope").await, Lookup::Absent, "{url}");
    }
    let mut next = 0;
    follow_to(&mut stream, &mut next, 5, &key).await;

    // The writer dies; the next write through the other server waits for its lease to
    // lapse, takes it, and commits.
    c.kill(0);
    let killed = Instant::now();
    let r = docs_b
        .transact(tx(LEDGER, vec![insert(TABLE, "after", "{}")], "after-kill"))
        .await
        .expect("writes resume on the other server")
        .into_inner();
    eprintln!(
        "writes resumed {:?} after the writer was killed",
        killed.elapsed()
    );
    assert_eq!(
        r.first_index, 5,
        "it extends the journal the dead writer left"
    );
    assert_eq!(
        describe(&b).await.writer,
        b,
        "the other server took the lease"
    );
    follow_to(&mut stream, &mut next, 6, &key).await;
    assert_eq!(check_extends(&b, &key, &last.expect("a receipt")).await, 6);

    // The first server comes back: it reads everything, and forwards its writes.
    c.start_server(0);
    let a = c.url(0);
    let r = pb::documents_client::DocumentsClient::new(channel(&a).await)
        .transact(tx(LEDGER, vec![insert(TABLE, "back", "{}")], ""))
        .await
        .expect("a write through the restarted server")
        .into_inner();
    assert_eq!(r.first_index, 6);
    assert_eq!(describe(&a).await.writer, b, "the lease stays where it is");
    assert_eq!(proven_state(&a, "back").await, Lookup::Current(6));
    assert_eq!(proven_state(&b, "after").await, Lookup::Current(5));

    // Statements through the server that does not write: the write is forwarded, the
    // index is built by the writer, and the reads are served where they arrive.
    let mut docs_a = pb::documents_client::DocumentsClient::new(channel(&a).await);
    let statement = |text: &str| crate::query::request(LEDGER, text, &[]);
    let r = docs_a
        .execute_statement(statement(&format!("INSERT INTO {TABLE} VALUE {{'n': 1}}")))
        .await
        .expect("a statement's write through the other server is forwarded")
        .into_inner();
    assert_eq!(r.receipt.expect("a receipt").first_index, 7);
    docs_a
        .execute_statement(statement(&format!("CREATE INDEX ON {TABLE} (n)")))
        .await
        .expect("create index through the other server");
    let explain = format!("EXPLAIN SELECT * FROM {TABLE} AS x WHERE x.n = 1");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let plan = docs_a
            .execute_statement(statement(&explain))
            .await
            .expect("explain");
        if crate::query::rows(&plan.into_inner())[0]["access"] == "index equality" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the index came online within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let found = docs_a
        .execute_statement(statement(&format!(
            "SELECT VALUE x.n FROM {TABLE} AS x WHERE x.n = 1"
        )))
        .await
        .expect("select through the other server")
        .into_inner();
    assert_eq!(crate::query::rows(&found), vec![serde_json::json!(1)]);

    // Deleted through the writer, the ledger is gone from the other server too, though
    // that one still holds its key: its change stream ends, and reads, writes and the
    // list say so, without the write bringing the ledger back.
    let mut stream = subscribe(&a).await;
    let mut next = 0;
    follow_to(&mut stream, &mut next, 8, &key).await;
    pb::admin_client::AdminClient::new(channel(&b).await)
        .delete_ledger(pb::DeleteLedgerRequest {
            name: LEDGER.into(),
        })
        .await
        .expect("delete through the writer");
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream ends within 10 s")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without saying why"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), tonic::Code::NotFound, "{end:?}");
    let read = get(&a, "d4")
        .await
        .expect_err("a read of the deleted ledger");
    assert_eq!(read.code(), tonic::Code::NotFound, "{read:?}");
    assert!(read.message().contains("deleted"), "{read:?}");
    let write = pb::documents_client::DocumentsClient::new(channel(&a).await)
        .transact(tx(LEDGER, vec![insert(TABLE, "zombie", "{}")], ""))
        .await
        .expect_err("a write to the deleted ledger");
    assert_eq!(write.code(), tonic::Code::NotFound, "{write:?}");
    // Restarted with the deleted ledger's key folder still in its data folder, a server
    // starts, and leaves that ledger out.
    c.kill(0);
    c.start_server(0);
    let a = c.url(0);
    for url in [&a, &b] {
        let list = pb::admin_client::AdminClient::new(channel(url).await)
            .list_ledgers(pb::ListLedgersRequest {})
            .await
            .expect("list")
            .into_inner();
        assert!(list.ledgers.is_empty(), "{url}: {:?}", list.ledgers);
    }
}

/// What the harness's writers saw.
#[derive(Default)]
struct Seen {
    /// Acknowledged transactions: key → (first index, tx id).
    acked: HashMap<String, (u64, u64)>,
    /// Every checkpoint any receipt carried, by size.
    checkpoints: BTreeMap<u64, String>,
    /// Checkpoints of one size that differ: must stay empty.
    forks: Vec<(String, String)>,
    /// Answers no retry can explain (any code but UNAVAILABLE): must stay empty.
    refused: Vec<String>,
}

impl Seen {
    fn checkpoint(&mut self, note: &str) {
        let size = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .expect("a checkpoint's second line is its size");
        match self.checkpoints.get(&size) {
            Some(earlier) if earlier != note => {
                self.forks.push((earlier.clone(), note.to_owned()));
            }
            Some(_) => {}
            None => {
                self.checkpoints.insert(size, note.to_owned());
            }
        }
    }
}

/// One writer: transactions of two inserts, each with its own idempotency key, retried
/// with that key on UNAVAILABLE (through the next server) until acknowledged.
async fn writer(
    w: usize,
    urls: Arc<RwLock<Vec<Option<String>>>>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) {
    let mut channels: HashMap<String, Channel> = HashMap::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("w{w}-{n}");
        n += 1;
        let request = tx(
            LEDGER,
            vec![
                insert(TABLE, &format!("{key}-a"), r#"{"half":"a"}"#),
                insert(TABLE, &format!("{key}-b"), r#"{"half":"b"}"#),
            ],
            &key,
        );
        let started = Instant::now();
        let mut attempt = 0usize;
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "transaction {key} not acknowledged within 60 s"
            );
            let urls_now = urls.read().expect("urls").clone();
            let live: Vec<String> = urls_now.into_iter().flatten().collect();
            let Some(url) = live.get((w + attempt) % live.len().max(1)).cloned() else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            attempt += 1;
            let channel = match channels.get(&url) {
                Some(c) => c.clone(),
                None => match graven::client::connect_channel(&url).await {
                    Ok(c) => {
                        channels.insert(url.clone(), c.clone());
                        c
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let answer = pb::documents_client::DocumentsClient::new(channel)
                .transact(request.clone())
                .await;
            match answer {
                Ok(r) => {
                    let r = r.into_inner();
                    let mut s = seen.lock().expect("seen");
                    s.checkpoint(&r.checkpoint);
                    s.acked.insert(key.clone(), (r.first_index, r.tx_id));
                    acked.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                // UNAVAILABLE, or the connection to a killed server broken mid-call (a
                // transport error on this side): the fate is unknown, the key tells.
                Err(e)
                    if e.code() == tonic::Code::Unavailable
                        || (e.code() == tonic::Code::Unknown
                            && std::error::Error::source(&e).is_some()) =>
                {
                    channels.remove(&url);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    seen.lock().expect("seen").refused.push(format!(
                        "{key}: {:?} {}",
                        e.code(),
                        e.message()
                    ));
                    break;
                }
            }
        }
    }
}

/// The failover harness (see the module documentation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_loses_nothing_and_never_forks() {
    let rounds: usize = std::env::var("GRAVEN_FAILOVER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let Some(mut c) = Cluster::start("failover_loses_nothing_and_never_forks", 3, 1000) else {
        return;
    };
    let key = create_ledger(&c).await;
    let urls = Arc::new(RwLock::new(c.urls()));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            tokio::spawn(writer(
                w,
                urls.clone(),
                seen.clone(),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    let mut rng = Rng::new(0x5eed ^ rounds as u64);
    // How long after each disruption 16 more transactions were acknowledged, by kind.
    let mut resumed_after: [Vec<Duration>; 3] = Default::default();
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
        // Kill whichever server writes now (any, if none holds the lease).
        let live = c.urls();
        let any = live.iter().flatten().next().expect("a live server").clone();
        let writer_url = describe(&any).await.writer;
        let victim = live
            .iter()
            .position(|u| u.as_deref() == Some(writer_url.as_str()))
            .unwrap_or_else(|| rng.below(live.len() as u64) as usize);
        let before: Vec<String> = seen
            .lock()
            .expect("seen")
            .checkpoints
            .values()
            .cloned()
            .collect();
        let kind = round % 3;
        match kind {
            0 => {
                c.kill(victim);
                *urls.write().expect("urls") = c.urls();
            }
            1 => c.servers[victim].as_ref().expect("running").signal("STOP"),
            _ => {
                c.pg.crash();
                tokio::time::sleep(Duration::from_millis(100 + rng.below(400))).await;
                c.pg.start_again();
            }
        }
        let killed = Instant::now();
        let count = acked.load(Ordering::Relaxed);
        while acked.load(Ordering::Relaxed) < count + 16 {
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "round {round}: writes did not resume within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        resumed_after[kind].push(killed.elapsed());
        match kind {
            0 => {
                c.start_server(victim);
                *urls.write().expect("urls") = c.urls();
            }
            1 => c.servers[victim].as_ref().expect("paused").signal("CONT"),
            _ => {}
        }
        // Every checkpoint seen before the kill is extended by the journal after it.
        let url = c.url(victim);
        for note in before.iter().rev().take(3) {
            check_extends(&url, &key, note).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let fenced: usize = (0..c.servers.len())
        .map(|i| {
            std::fs::read_to_string(c.root.path().join(format!("server{i}.log")))
                .unwrap_or_default()
                .matches("commit fenced off")
                .count()
        })
        .sum();
    eprintln!("failover: {fenced} commits fenced off (a paused writer's, refused)");
    eprintln!(
        "failover: {rounds} rounds, {} transactions acknowledged",
        acked.load(Ordering::Relaxed)
    );
    for (kind, mut times) in ["writer killed", "writer paused", "database crashed"]
        .into_iter()
        .zip(resumed_after)
    {
        times.sort();
        if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
            eprintln!(
                "failover: {kind}: 16 more acknowledged within median {median:?}, max {max:?} \
                 ({} rounds)",
                times.len()
            );
        }
    }

    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    assert!(seen.refused.is_empty(), "refused: {:?}", seen.refused);
    assert!(
        seen.forks.is_empty(),
        "two checkpoints of one size: {:?}",
        seen.forks
    );
    let url = c.url(0);
    for note in seen.checkpoints.values() {
        check_extends(&url, &key, note).await;
    }

    // The journal: every acknowledged transaction where its receipt says; every
    // transaction both halves or neither, each inserted once.
    let mut docs = pb::documents_client::DocumentsClient::new(channel(&url).await);
    let mut halves: HashMap<String, Vec<(String, u64, u64)>> = HashMap::new();
    let mut token = String::new();
    loop {
        let page = docs
            .scan(pb::ScanRequest {
                ledger: LEDGER.into(),
                table: TABLE.into(),
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("scan")
            .into_inner();
        for r in page.revisions {
            assert_eq!(r.version, 0, "{}: inserted once", r.id);
            let (key, half) = r.id.rsplit_once('-').expect("key-half");
            halves
                .entry(key.to_owned())
                .or_default()
                .push((half.to_owned(), r.index, r.tx_id));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    for (key, parts) in &halves {
        assert_eq!(parts.len(), 2, "{key}: all or nothing: {parts:?}");
        assert_eq!(parts[0].2, parts[1].2, "{key}: one transaction");
    }
    for (key, (first_index, tx_id)) in &seen.acked {
        let parts = halves
            .get(key)
            .unwrap_or_else(|| panic!("acknowledged {key} is lost"));
        let a = parts.iter().find(|p| p.0 == "a").expect("half a");
        assert_eq!(
            (a.1, a.2),
            (*first_index, *tx_id),
            "{key}: where its receipt says"
        );
    }
}
