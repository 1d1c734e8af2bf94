//! Model-based test: random sequences of operations (inserts, updates and deletes with and
//! without expected versions, condition checks, multi-operation transactions that commit
//! or must fail, idempotency keys and their retries, table create and drop, closing and
//! reopening the engine on the same data folder) run against the engine in-process over
//! the gRPC API and against a plain in-memory model of documents, versions and history.
//!
//! After every step the engine must agree with the model: which transactions commit, and
//! with what receipt; which fail, with what code, naming which operation; the journal
//! size and signed checkpoint (its root recomputed from the model's own leaf hashes);
//! every entry written; and the current revision, every version and the history of each
//! document the step touched (of every document, and every table scan, every few steps
//! and after each reopen).
//!
//! Reproducible: each run prints its seed, and a failure names the seed and step.
//!
//! ```sh
//! nice -n 19 cargo test --test tests model                      # CI: 2 seeds x 150 steps
//! GRAVEN_MODEL_SEED=1234 cargo test --test tests model           # replay one seed
//! GRAVEN_MODEL_SEEDS=50 GRAVEN_MODEL_STEPS=2000 cargo test --test tests model  # longer
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use graven::engine::Config;
use graven::pb;
use graven::pb::operation::Kind;
use graven_verify::map::{Lookup, MapProof, StateMap, check_map_proof, map_key};
use graven_verify::{
    CompactRange, EMPTY_ROOT, Entry, Hash, Operation, State, Verifier, check_consistency,
    check_inclusion, leaf_hash, open_checkpoint,
};
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::util::{TestServer, start_with};

const LEDGER: &str = "model";
/// Tables the steps use; the last one does not exist until a step creates it.
const TABLES: [&str; 3] = ["a", "b", "c"];
/// Document ids the steps pick from (few, so that operations collide often).
const IDS: [&str; 7] = ["d0", "d1", "d2", "d3", "ü-4", "with space", "d6"];
const KEYS: usize = 6;

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number")))
}

/// splitmix64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times in 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------
// The model

/// A condition of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cond {
    Version(u64),
    Exists,
    NotExists,
}

/// One operation as the model sees it. `body` is the canonical JSON the engine must store,
/// `sent` the (possibly non-canonical) bytes sent for it.
#[derive(Debug, Clone)]
enum MOp {
    Insert {
        table: String,
        /// Empty: the server generates one.
        id: String,
        body: String,
        sent: String,
    },
    Update {
        table: String,
        id: String,
        body: String,
        sent: String,
        expected: Option<u64>,
    },
    Delete {
        table: String,
        id: String,
        expected: Option<u64>,
    },
    Check {
        table: String,
        id: String,
        cond: Cond,
    },
}

impl MOp {
    fn target(&self) -> (&str, &str) {
        match self {
            MOp::Insert { table, id, .. }
            | MOp::Update { table, id, .. }
            | MOp::Delete { table, id, .. }
            | MOp::Check { table, id, .. } => (table, id),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            MOp::Insert { .. } => "insert",
            MOp::Update { .. } => "update",
            MOp::Delete { .. } => "delete",
            MOp::Check { .. } => "check",
        }
    }

    fn writes(&self) -> Option<Operation> {
        match self {
            MOp::Insert { .. } => Some(Operation::Insert),
            MOp::Update { .. } => Some(Operation::Update),
            MOp::Delete { .. } => Some(Operation::Delete),
            MOp::Check { .. } => None,
        }
    }

    fn body(&self) -> Option<&[u8]> {
        match self {
            MOp::Insert { body, .. } | MOp::Update { body, .. } => Some(body.as_bytes()),
            _ => None,
        }
    }

    /// What an idempotency key's request hash covers: the operation as sent, with its
    /// canonical body.
    fn fingerprint(&self) -> (&'static str, &str, &str, Option<&[u8]>, Option<Cond>) {
        let (table, id) = self.target();
        let cond = match self {
            MOp::Update { expected, .. } | MOp::Delete { expected, .. } => {
                expected.map(Cond::Version)
            }
            MOp::Check { cond, .. } => Some(*cond),
            MOp::Insert { .. } => None,
        };
        (self.name(), table, id, self.body(), cond)
    }

    fn to_pb(&self) -> pb::Operation {
        let kind = match self.clone() {
            MOp::Insert {
                table, id, sent, ..
            } => Kind::Insert(pb::Insert {
                table,
                id,
                json: sent.into_bytes(),
            }),
            MOp::Update {
                table,
                id,
                sent,
                expected,
                ..
            } => Kind::Update(pb::Update {
                table,
                id,
                json: sent.into_bytes(),
                expected_version: expected,
            }),
            MOp::Delete {
                table,
                id,
                expected,
            } => Kind::Delete(pb::Delete {
                table,
                id,
                expected_version: expected,
            }),
            MOp::Check { table, id, cond } => Kind::Check(pb::Check {
                table,
                id,
                condition: Some(match cond {
                    Cond::Version(v) => pb::check::Condition::Version(v),
                    Cond::Exists => pb::check::Condition::Exists(true),
                    Cond::NotExists => pb::check::Condition::NotExists(true),
                }),
            }),
        };
        pb::Operation { kind: Some(kind) }
    }
}

fn same_request(a: &[MOp], b: &[MOp]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.fingerprint() == y.fingerprint())
}

/// One revision of a document.
#[derive(Debug, Clone)]
struct Rev {
    version: u64,
    op: Operation,
    index: u64,
    tx_id: u64,
    commit_micros: u64,
    body: Vec<u8>,
}

/// What the model expects of a transaction.
#[derive(Debug)]
enum Expect {
    Commit,
    Replay(pb::Receipt),
    Fail(Code, String),
}

#[derive(Default)]
struct Model {
    /// Table name -> active. Dropped tables keep their documents.
    tables: BTreeMap<String, bool>,
    /// (table, id) -> revisions, version order.
    docs: BTreeMap<(String, String), Vec<Rev>>,
    next_tx: u64,
    /// Leaf hashes of the journal, by index, and the root at every size.
    leaves: Vec<Hash>,
    roots: Vec<Hash>,
    range: CompactRange,
    /// The state map by its definition: each live document's current journal index.
    state: StateMap,
    /// Idempotency key -> the request it committed and its receipt.
    keys: HashMap<String, (Vec<MOp>, pb::Receipt)>,
    /// The latest signed checkpoint the engine handed out.
    checkpoint: String,
    last_commit: u64,
}

impl Model {
    fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    fn active(&self, table: &str) -> bool {
        self.tables.get(table).copied().unwrap_or(false)
    }

    fn revs(&self, table: &str, id: &str) -> &[Rev] {
        self.docs
            .get(&(table.to_owned(), id.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// (current version, live) of a document ever written.
    fn state(&self, table: &str, id: &str) -> Option<(u64, bool)> {
        self.revs(table, id)
            .last()
            .map(|r| (r.version, r.op != Operation::Delete))
    }

    fn live_version(&self, table: &str, id: &str) -> Option<u64> {
        self.state(table, id).filter(|s| s.1).map(|s| s.0)
    }

    /// The engine's rules, in the engine's order: idempotency key, transaction shape,
    /// then each operation against the state before the transaction.
    fn predict(&self, ops: &[MOp], key: Option<&str>) -> Expect {
        if let Some(key) = key
            && let Some((request, receipt)) = self.keys.get(key)
        {
            if same_request(request, ops) {
                return Expect::Replay(receipt.clone());
            }
            return Expect::Fail(Code::FailedPrecondition, format!("idempotency key {key:?}"));
        }
        let mut written: HashMap<(&str, &str), usize> = HashMap::new();
        let mut writes = 0;
        for (i, op) in ops.iter().enumerate() {
            if op.writes().is_none() {
                continue;
            }
            writes += 1;
            let (table, id) = op.target();
            if id.is_empty() {
                continue; // a generated id is new
            }
            if let Some(j) = written.insert((table, id), i) {
                return Expect::Fail(
                    Code::InvalidArgument,
                    format!(
                        "operations[{i}]: document {id:?} in table {table:?} is already \
                         written by operations[{j}]"
                    ),
                );
            }
        }
        if writes == 0 {
            return Expect::Fail(
                Code::InvalidArgument,
                "a transaction needs at least one insert, update or delete".into(),
            );
        }
        for (i, op) in ops.iter().enumerate() {
            let (table, id) = op.target();
            let what = format!(
                "operation {i} ({}): document {id:?} in table {table:?}",
                op.name()
            );
            if !self.active(table) {
                return Expect::Fail(
                    Code::NotFound,
                    format!(
                        "operation {i} ({}): table {table:?} does not exist",
                        op.name()
                    ),
                );
            }
            let state = if id.is_empty() {
                None
            } else {
                self.state(table, id)
            };
            let live = state.filter(|s| s.1).map(|s| s.0);
            let failure = match op {
                MOp::Insert { .. } => match state {
                    None => None,
                    Some((_, true)) => {
                        Some((Code::AlreadyExists, format!("{what} already exists")))
                    }
                    Some((v, false)) => Some((
                        Code::AlreadyExists,
                        format!("{what} was deleted at version {v}; ids are not reused"),
                    )),
                },
                MOp::Update { expected, .. } | MOp::Delete { expected, .. } => match live {
                    None => Some((Code::NotFound, format!("{what} does not exist"))),
                    Some(current) => match expected {
                        Some(v) if *v != current => Some((
                            Code::FailedPrecondition,
                            format!("{what}: expected version {v}, current version is {current}"),
                        )),
                        _ => None,
                    },
                },
                MOp::Check { cond, .. } => {
                    let holds = match cond {
                        Cond::Version(v) => live == Some(*v),
                        Cond::Exists => live.is_some(),
                        Cond::NotExists => live.is_none(),
                    };
                    (!holds).then(|| (Code::FailedPrecondition, what.clone()))
                }
            };
            if let Some((code, needle)) = failure {
                return Expect::Fail(code, needle);
            }
        }
        Expect::Commit
    }
}

// ---------------------------------------------------------------------------------------
// Generating steps

fn gen_body(rng: &mut Rng) -> (String, String) {
    const STRINGS: [&str; 7] = ["", "x", "hello world", "ü", "line\nbreak", "quote\"", "😀"];
    let n = rng.below(2001) as i64 - 1000;
    let s = serde_json::to_string(rng.pick(&STRINGS)).expect("string");
    let flag = rng.chance(50);
    // RFC 8785: members sorted, no spaces, integers as integers.
    let canonical = format!(r#"{{"f":[{flag},null],"n":{n},"s":{s}}}"#);
    let number = match rng.below(3) {
        0 => n.to_string(),
        1 => format!("{n}.0"),
        _ => format!("{n}e0"),
    };
    let sent = match rng.below(3) {
        0 => canonical.clone(),
        1 => format!("{{ \"s\" : {s},\n \"n\" : {number}, \"f\" : [ {flag} , null ] }}"),
        _ => format!(r#"{{"n":{number},"s":{s},"f":[{flag},null]}}"#),
    };
    (canonical, sent)
}

/// A random operation: mostly on the few shared ids, so that many collide and fail.
fn gen_op(rng: &mut Rng, m: &Model, generated: &[(String, String)]) -> MOp {
    let (table, id) = if !generated.is_empty() && rng.chance(15) {
        rng.pick(generated).clone()
    } else {
        let table = if rng.chance(90) {
            TABLES[rng.below(2) as usize]
        } else {
            TABLES[2]
        };
        (table.to_owned(), (*rng.pick(&IDS)).to_owned())
    };
    let current = m.state(&table, &id).map(|s| s.0);
    let version = |rng: &mut Rng| -> u64 {
        match (rng.below(5), current) {
            (0..=2, Some(v)) => v,
            (3, Some(v)) => v + 1,
            (4, Some(v)) if v > 0 => v - 1,
            _ => rng.below(3),
        }
    };
    let expected = |rng: &mut Rng| -> Option<u64> {
        if rng.chance(40) {
            None
        } else {
            Some(version(rng))
        }
    };
    match rng.below(100) {
        0..=29 => {
            let (body, sent) = gen_body(rng);
            MOp::Insert {
                table,
                id: if rng.chance(10) { String::new() } else { id },
                body,
                sent,
            }
        }
        30..=59 => {
            let (body, sent) = gen_body(rng);
            MOp::Update {
                table,
                id,
                body,
                sent,
                expected: expected(rng),
            }
        }
        60..=71 => MOp::Delete {
            table,
            id,
            expected: expected(rng),
        },
        _ => MOp::Check {
            table,
            id,
            cond: match rng.below(4) {
                0 => Cond::Exists,
                1 => Cond::NotExists,
                _ => Cond::Version(version(rng)),
            },
        },
    }
}

/// An operation likely to hold against the state before the transaction, on a document
/// none of `earlier` writes.
fn gen_likely_op(rng: &mut Rng, m: &Model, earlier: &[MOp]) -> MOp {
    let active: Vec<&str> = TABLES.into_iter().filter(|t| m.active(t)).collect();
    let table = (*rng.pick(if active.is_empty() {
        &TABLES[..]
    } else {
        &active
    }))
    .to_owned();
    let written = |t: &str, i: &str| {
        earlier
            .iter()
            .any(|op| op.writes().is_some() && op.target() == (t, i))
    };
    let live: Vec<(&String, &String, u64)> = m
        .docs
        .iter()
        .filter(|((t, i), _)| m.active(t) && !written(t, i))
        .filter_map(|((t, i), revs)| {
            let last = revs.last()?;
            (last.op != Operation::Delete).then_some((t, i, last.version))
        })
        .collect();
    let roll = rng.below(100);
    if live.is_empty() || roll < 35 {
        let (body, sent) = gen_body(rng);
        return MOp::Insert {
            table,
            id: format!("n{}", rng.below(1 << 20)),
            body,
            sent,
        };
    }
    let &(table, id, version) = rng.pick(&live);
    let (table, id) = (table.clone(), id.clone());
    let expected = rng.chance(70).then_some(version);
    match roll {
        35..=69 => {
            let (body, sent) = gen_body(rng);
            MOp::Update {
                table,
                id,
                body,
                sent,
                expected,
            }
        }
        70..=79 => MOp::Delete {
            table,
            id,
            expected,
        },
        _ => MOp::Check {
            table,
            id,
            cond: if rng.chance(50) {
                Cond::Exists
            } else {
                Cond::Version(version)
            },
        },
    }
}

enum Step {
    Transact(Vec<MOp>, Option<String>),
    CreateTable(String),
    DropTable(String),
    Reopen,
}

fn gen_step(rng: &mut Rng, m: &Model, generated: &[(String, String)]) -> Step {
    match rng.below(100) {
        // Mostly tables that are dropped (or never created): few steps find no table.
        0..=4 => {
            let dropped: Vec<&str> = TABLES.into_iter().filter(|t| !m.active(t)).collect();
            let table = if dropped.is_empty() || rng.chance(20) {
                rng.pick(&TABLES)
            } else {
                rng.pick(&dropped)
            };
            Step::CreateTable((*table).to_owned())
        }
        5..=6 => Step::DropTable((*rng.pick(&TABLES)).to_owned()),
        7..=8 => Step::Reopen,
        _ => {
            let key = rng
                .chance(15)
                .then(|| format!("key-{}", rng.below(KEYS as u64)));
            // A used key: usually the same request again (a retry), else a different one.
            if let Some(k) = &key
                && let Some((request, _)) = m.keys.get(k)
                && rng.chance(60)
            {
                return Step::Transact(request.clone(), key);
            }
            let count = if rng.chance(50) {
                1
            } else {
                2 + rng.below(4) as usize
            };
            let mut ops: Vec<MOp> = Vec::with_capacity(count);
            if rng.chance(60) {
                // Meant to commit (the model decides whether it does): new ids, live
                // documents at their versions, conditions that hold; now and then one
                // operation replaced by a random one.
                for _ in 0..count {
                    let op = gen_likely_op(rng, m, &ops);
                    ops.push(op);
                }
                if rng.chance(25) {
                    let at = rng.below(count as u64) as usize;
                    ops[at] = gen_op(rng, m, generated);
                }
            } else {
                ops.extend((0..count).map(|_| gen_op(rng, m, generated)));
            }
            Step::Transact(ops, key)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running against the engine

struct Run {
    s: TestServer,
    m: Model,
    key: Verifier,
    data: tempfile::TempDir,
    /// Ids the server generated: (table, id).
    generated: Vec<(String, String)>,
    /// Step context for failure messages.
    context: String,
    /// How each transaction ended, for the summary: "commit", "replay", or a code.
    outcomes: BTreeMap<String, u64>,
}

#[track_caller]
fn expect_code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    needle: &str,
    context: &str,
) {
    match result {
        Ok(v) => panic!("{context}: expected {code:?} ({needle}), got {v:?}"),
        Err(s) => {
            assert_eq!(
                s.code(),
                code,
                "{context}: wrong code, message {:?}",
                s.message()
            );
            assert!(
                s.message().contains(needle),
                "{context}: message {:?} should contain {needle:?}",
                s.message()
            );
        }
    }
}

impl Run {
    async fn open(data: &std::path::Path) -> TestServer {
        let mut config = Config::new(data);
        // The state map's records are written every 5 revisions: the model's reads meet
        // the overlay, flushes and (on reopening) replays of the tail.
        config.state_flush = 5;
        start_with(config, tempfile::tempdir().expect("temp dir")).await
    }

    async fn new() -> Run {
        let data = tempfile::tempdir().expect("temp dir");
        let mut s = Run::open(data.path()).await;
        let info = s.ledger(LEDGER, &TABLES[..2]).await;
        let key = Verifier::parse(&info.vkey).expect("vkey");
        let mut m = Model {
            roots: vec![EMPTY_ROOT],
            checkpoint: info.checkpoint,
            ..Model::default()
        };
        for t in &TABLES[..2] {
            m.tables.insert((*t).to_owned(), true);
        }
        Run {
            s,
            m,
            key,
            data,
            generated: Vec::new(),
            context: String::new(),
            outcomes: BTreeMap::new(),
        }
    }

    async fn step(&mut self, step: Step) -> Vec<(String, String)> {
        match step {
            Step::Transact(ops, key) => self.transact(ops, key).await,
            Step::CreateTable(table) => {
                self.context.push_str(&format!(": create table {table:?}"));
                let got = self
                    .s
                    .admin
                    .create_table(pb::CreateTableRequest {
                        ledger: LEDGER.into(),
                        table: table.clone(),
                    })
                    .await;
                if self.m.active(&table) {
                    expect_code(got, Code::AlreadyExists, "already exists", &self.context);
                } else {
                    let info = got
                        .unwrap_or_else(|e| panic!("{}: {e:?}", self.context))
                        .into_inner();
                    assert_eq!(info.name, table, "{}", self.context);
                    self.m.tables.insert(table.clone(), true);
                }
                self.docs_of(&table)
            }
            Step::DropTable(table) => {
                self.context.push_str(&format!(": drop table {table:?}"));
                let got = self
                    .s
                    .admin
                    .drop_table(pb::DropTableRequest {
                        ledger: LEDGER.into(),
                        table: table.clone(),
                    })
                    .await;
                if self.m.active(&table) {
                    got.unwrap_or_else(|e| panic!("{}: {e:?}", self.context));
                    self.m.tables.insert(table.clone(), false);
                } else {
                    expect_code(got, Code::NotFound, "does not exist", &self.context);
                }
                self.docs_of(&table)
            }
            Step::Reopen => {
                self.context.push_str(": close and reopen");
                self.s.engine.close();
                expect_code(
                    self.s
                        .docs
                        .get_document(pb::GetDocumentRequest {
                            ledger: LEDGER.into(),
                            table: "a".into(),
                            id: "d0".into(),
                            ..Default::default()
                        })
                        .await,
                    Code::Unavailable,
                    "shutting down",
                    &self.context,
                );
                self.s = Run::open(self.data.path()).await;
                self.check_all().await;
                Vec::new()
            }
        }
    }

    fn docs_of(&self, table: &str) -> Vec<(String, String)> {
        self.m
            .docs
            .keys()
            .filter(|(t, _)| t == table)
            .take(3)
            .cloned()
            .collect()
    }

    async fn transact(&mut self, ops: Vec<MOp>, key: Option<String>) -> Vec<(String, String)> {
        self.context
            .push_str(&format!(": transact (key {key:?}) {ops:?}"));
        let expect = self.m.predict(&ops, key.as_deref());
        let outcome = match &expect {
            Expect::Commit => "commit".to_owned(),
            Expect::Replay(_) => "replay".to_owned(),
            Expect::Fail(code, _) => format!("{code:?}"),
        };
        *self.outcomes.entry(outcome).or_default() += 1;
        let got = self
            .s
            .docs
            .transact(pb::TransactRequest {
                ledger: LEDGER.into(),
                operations: ops.iter().map(MOp::to_pb).collect(),
                idempotency_key: key.clone().unwrap_or_default(),
            })
            .await
            .map(|r| r.into_inner());
        let mut touched: Vec<(String, String)> = ops
            .iter()
            .map(|op| op.target())
            .filter(|(_, id)| !id.is_empty())
            .map(|(t, i)| (t.to_owned(), i.to_owned()))
            .collect();
        match expect {
            Expect::Fail(code, needle) => expect_code(got, code, &needle, &self.context),
            Expect::Replay(first) => {
                let again = got.unwrap_or_else(|e| panic!("{}: replay: {e:?}", self.context));
                assert!(again.replayed, "{}: not marked replayed", self.context);
                assert_eq!(
                    pb::Receipt {
                        replayed: false,
                        ..again
                    },
                    first,
                    "{}: a retry gets the first receipt, byte for byte",
                    self.context
                );
            }
            Expect::Commit => {
                let r = got.unwrap_or_else(|e| {
                    panic!("{}: the model expected a commit: {e:?}", self.context)
                });
                touched.extend(self.commit(&ops, &r).await);
                if let Some(k) = key {
                    self.m.keys.insert(k, (ops.clone(), r));
                }
            }
        }
        touched
    }

    /// Applies a committed transaction to the model, checking the receipt, each entry
    /// written, and the receipt's checkpoint against the model's own tree.
    async fn commit(&mut self, ops: &[MOp], r: &pb::Receipt) -> Vec<(String, String)> {
        let ctx = self.context.clone();
        let first_index = self.m.size();
        let writes = ops.iter().filter(|op| op.writes().is_some()).count() as u32;
        assert!(!r.replayed, "{ctx}: a first commit marked replayed");
        assert_eq!(
            (r.tx_id, r.first_index, r.revisions),
            (self.m.next_tx, first_index, writes),
            "{ctx}: receipt {r:?}"
        );
        assert_eq!(
            r.results.len(),
            ops.len(),
            "{ctx}: one result per operation"
        );
        assert!(
            r.commit_micros >= self.m.last_commit,
            "{ctx}: commit time went backwards"
        );
        let mut generated = Vec::new();
        // Results are computed against the state before the transaction.
        let mut planned = Vec::new();
        let mut index = first_index;
        for (op, res) in ops.iter().zip(&r.results) {
            let (table, id) = op.target();
            let id = if id.is_empty() {
                assert_eq!(res.id.len(), 32, "{ctx}: generated ids are 32 hex digits");
                assert!(
                    self.m.state(table, &res.id).is_none(),
                    "{ctx}: generated id {:?} is not new",
                    res.id
                );
                generated.push((table.to_owned(), res.id.clone()));
                res.id.clone()
            } else {
                id.to_owned()
            };
            let (version, at) = match op.writes() {
                None => (self.m.live_version(table, &id).unwrap_or(0), None),
                Some(Operation::Insert) => (0, Some(index)),
                Some(_) => (
                    self.m.state(table, &id).expect("written before").0 + 1,
                    Some(index),
                ),
            };
            assert_eq!(
                (res.table.as_str(), res.id.as_str(), res.version, res.index),
                (table, id.as_str(), version, at),
                "{ctx}: result of {op:?}"
            );
            if let Some(write) = op.writes() {
                planned.push((table.to_owned(), id, version, write, op.body()));
                index += 1;
            }
        }
        for (position, (table, id, version, op, body)) in planned.into_iter().enumerate() {
            let index = first_index + position as u64;
            let got = self
                .s
                .proofs
                .get_entry(pb::GetEntryRequest {
                    ledger: LEDGER.into(),
                    index,
                })
                .await
                .unwrap_or_else(|e| panic!("{ctx}: entry {index}: {e:?}"))
                .into_inner();
            let e = Entry::decode(&got.entry).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let body = body.map(<[u8]>::to_vec);
            assert_eq!(
                (
                    e.operation,
                    e.tx_id,
                    e.tx_position,
                    e.tx_revisions,
                    e.commit_time_micros,
                    e.version,
                    e.table.as_str(),
                    e.id.as_str(),
                    e.principal.as_str(),
                    e.body_hash,
                ),
                (
                    op,
                    r.tx_id,
                    position as u32,
                    writes,
                    r.commit_micros,
                    version,
                    table.as_str(),
                    id.as_str(),
                    "anonymous",
                    body.as_ref().map(|b| Hash(Sha256::digest(b).into())),
                ),
                "{ctx}: entry {index}"
            );
            assert_eq!(
                got.json,
                body.clone().unwrap_or_default(),
                "{ctx}: body {index}"
            );
            // The state map after the transaction, on its last entry, by the definition.
            let key = map_key(&table, &id);
            if op == Operation::Delete {
                self.m.state.remove(&key);
            } else {
                self.m.state.insert(key, index);
            }
            let state = if position as u32 + 1 == writes {
                State::Root(self.m.state.root())
            } else {
                State::Pending
            };
            assert_eq!(e.state, state, "{ctx}: entry {index}: state");
            let leaf = leaf_hash(&got.entry);
            self.m.leaves.push(leaf);
            self.m.range.append(leaf);
            self.m.roots.push(self.m.range.root());
            self.m
                .docs
                .entry((table.clone(), id.clone()))
                .or_default()
                .push(Rev {
                    version,
                    op,
                    index,
                    tx_id: r.tx_id,
                    commit_micros: r.commit_micros,
                    body: body.unwrap_or_default(),
                });
        }
        self.m.next_tx += 1;
        self.m.last_commit = r.commit_micros;
        let c = open_checkpoint(r.checkpoint.as_bytes(), std::slice::from_ref(&self.key))
            .unwrap_or_else(|e| panic!("{ctx}: receipt checkpoint: {e}"))
            .checkpoint;
        assert_eq!(
            (c.size, c.root),
            (self.m.size(), self.m.range.root()),
            "{ctx}: the receipt's checkpoint is the model's tree"
        );
        self.m.checkpoint.clone_from(&r.checkpoint);
        self.generated.extend(generated.iter().cloned());
        generated
    }

    /// The journal size and latest checkpoint are the model's.
    async fn check_head(&mut self) {
        let head = self
            .s
            .proofs
            .get_checkpoint(pb::GetCheckpointRequest {
                ledger: LEDGER.into(),
                size: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{}: checkpoint: {e:?}", self.context))
            .into_inner();
        assert_eq!(
            (head.size, head.checkpoint.as_str()),
            (self.m.size(), self.m.checkpoint.as_str()),
            "{}: journal head",
            self.context
        );
    }

    #[track_caller]
    /// Checks a state proof at the model's size against the model, and returns what it
    /// proves of the document.
    fn check_state(&self, p: &pb::StateProof, table: &str, id: &str, ctx: &str) -> Lookup {
        let size = self.m.size();
        assert_eq!(p.tree_size, size, "{ctx}: state proof size");
        let last = size.checked_sub(1).expect("a ledger with entries");
        assert_eq!(
            leaf_hash(&p.state_entry),
            self.m.leaves[last as usize],
            "{ctx}: the state entry is the last one"
        );
        let hashes: Vec<Hash> = p
            .state_hashes
            .iter()
            .map(|h| Hash(h.as_slice().try_into().expect("32 bytes")))
            .collect();
        check_inclusion(
            &hashes,
            last,
            size,
            &self.m.leaves[last as usize],
            &self.m.roots[size as usize],
        )
        .unwrap_or_else(|e| panic!("{ctx}: state entry inclusion: {e}"));
        let entry = Entry::decode(&p.state_entry).expect("state entry");
        assert_eq!(
            entry.state,
            State::Root(self.m.state.root()),
            "{ctx}: state root"
        );
        let State::Root(root) = entry.state else {
            unreachable!("checked above")
        };
        let proof = MapProof::decode(&p.map_proof).expect("map proof");
        check_map_proof(&root, &map_key(table, id), &proof)
            .unwrap_or_else(|e| panic!("{ctx}: map proof: {e}"))
    }

    fn check_revision(&self, got: &pb::Revision, want: &Rev, table: &str, id: &str, what: &str) {
        let ctx = &self.context;
        assert_eq!(
            (
                got.table.as_str(),
                got.id.as_str(),
                got.version,
                got.operation.as_str(),
                got.index,
                got.tx_id,
                got.commit_micros,
                got.principal.as_str(),
                got.json.as_slice(),
            ),
            (
                table,
                id,
                want.version,
                want.op.as_str(),
                want.index,
                want.tx_id,
                want.commit_micros,
                "anonymous",
                want.body.as_slice(),
            ),
            "{ctx}: {what} of {table}/{id}"
        );
        assert_eq!(
            leaf_hash(&got.entry),
            self.m.leaves[want.index as usize],
            "{ctx}: {what} of {table}/{id}: entry bytes"
        );
    }

    /// One document: its current revision (with a proof), every version and one past
    /// the last, and its history in pages.
    async fn check_doc(&mut self, table: &str, id: &str, rng: &mut Rng) {
        let ctx = format!("{}: reading {table}/{id}", self.context);
        let revs = self.m.revs(table, id).to_vec();
        let get = |version: Option<u64>, proof: bool| pb::GetDocumentRequest {
            ledger: LEDGER.into(),
            table: table.into(),
            id: id.into(),
            version,
            proof: proof.then_some(pb::ProofRequest { tree_size: 0 }),
        };
        let current = self.s.docs.get_document(get(None, true)).await;
        if !self.m.active(table) {
            expect_code(current, Code::NotFound, &format!("table {table:?}"), &ctx);
            expect_code(
                self.s
                    .docs
                    .history(pb::HistoryRequest {
                        ledger: LEDGER.into(),
                        table: table.into(),
                        id: id.into(),
                        ..Default::default()
                    })
                    .await,
                Code::NotFound,
                &format!("table {table:?}"),
                &ctx,
            );
            return;
        }
        match revs.last() {
            // An empty journal has no checkpoint that commits to a state.
            None if self.m.size() == 0 => {
                expect_code(current, Code::NotFound, "does not exist", &ctx)
            }
            // With a proof, no live document is an answer: the proof of its absence.
            None
            | Some(Rev {
                op: Operation::Delete,
                ..
            }) => {
                let got = current
                    .unwrap_or_else(|e| panic!("{ctx}: absent: {e:?}"))
                    .into_inner();
                assert!(got.revision.is_none(), "{ctx}: a revision of no document");
                let absent = got.absent.expect("a proof of absence");
                assert_eq!(self.check_state(&absent, table, id, &ctx), Lookup::Absent);
            }
            Some(last) => {
                let rev = current
                    .unwrap_or_else(|e| panic!("{ctx}: current: {e:?}"))
                    .into_inner()
                    .revision
                    .expect("a revision");
                self.check_revision(&rev, last, table, id, "current revision");
                let p = rev.proof.as_ref().expect("a proof was asked for");
                let hashes: Vec<Hash> = p
                    .hashes
                    .iter()
                    .map(|h| Hash(h.as_slice().try_into().expect("32 bytes")))
                    .collect();
                assert_eq!(p.tree_size, self.m.size(), "{ctx}: proof size");
                check_inclusion(
                    &hashes,
                    last.index,
                    p.tree_size,
                    &self.m.leaves[last.index as usize],
                    &self.m.roots[p.tree_size as usize],
                )
                .unwrap_or_else(|e| panic!("{ctx}: inclusion proof: {e}"));
                let state = rev.state.as_ref().expect("a state proof");
                assert_eq!(
                    self.check_state(state, table, id, &ctx),
                    Lookup::Current(last.index)
                );
            }
        }
        for v in 0..=revs.len() as u64 {
            let got = self.s.docs.get_document(get(Some(v), false)).await;
            match revs.get(v as usize) {
                Some(want) => {
                    let rev = got
                        .unwrap_or_else(|e| panic!("{ctx}: version {v}: {e:?}"))
                        .into_inner()
                        .revision
                        .expect("a revision");
                    self.check_revision(&rev, want, table, id, &format!("version {v}"));
                }
                None if revs.is_empty() => {
                    expect_code(got, Code::NotFound, "does not exist", &ctx);
                }
                None => expect_code(got, Code::NotFound, &format!("no version {v}"), &ctx),
            }
        }
        let page_size = rng.below(4) as u32;
        let mut token = String::new();
        let mut history = Vec::new();
        loop {
            let page = self
                .s
                .docs
                .history(pb::HistoryRequest {
                    ledger: LEDGER.into(),
                    table: table.into(),
                    id: id.into(),
                    page_size,
                    page_token: token,
                    proof: None,
                })
                .await;
            if revs.is_empty() {
                expect_code(page, Code::NotFound, "does not exist", &ctx);
                return;
            }
            let page = page
                .unwrap_or_else(|e| panic!("{ctx}: history: {e:?}"))
                .into_inner();
            assert!(
                page_size == 0 || page.revisions.len() <= page_size as usize,
                "{ctx}: history page over its size"
            );
            history.extend(page.revisions);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(history.len(), revs.len(), "{ctx}: history length");
        for (got, want) in history.iter().zip(&revs) {
            self.check_revision(got, want, table, id, "history");
        }
    }

    /// Everything: the head, the tables, every table's scan, every document, and a
    /// consistency proof from an earlier size.
    async fn check_all(&mut self) {
        self.check_head().await;
        let ctx = format!("{}: full check", self.context);
        let tables: Vec<String> = self
            .s
            .admin
            .list_tables(pb::ListTablesRequest {
                ledger: LEDGER.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{ctx}: list tables: {e:?}"))
            .into_inner()
            .tables
            .into_iter()
            .map(|t| t.name)
            .collect();
        let active: Vec<String> = self
            .m
            .tables
            .iter()
            .filter(|(_, on)| **on)
            .map(|(t, _)| t.clone())
            .collect();
        assert_eq!(tables, active, "{ctx}: active tables");
        let mut rng = Rng(self.m.size());
        for table in TABLES {
            let mut token = String::new();
            let mut ids = Vec::new();
            loop {
                let page = self
                    .s
                    .docs
                    .scan(pb::ScanRequest {
                        ledger: LEDGER.into(),
                        table: table.into(),
                        page_size: 1 + rng.below(3) as u32,
                        page_token: token,
                        proof: None,
                    })
                    .await;
                if !self.m.active(table) {
                    expect_code(page, Code::NotFound, &format!("table {table:?}"), &ctx);
                    break;
                }
                let page = page
                    .unwrap_or_else(|e| panic!("{ctx}: scan {table}: {e:?}"))
                    .into_inner();
                for rev in &page.revisions {
                    let want = self.m.revs(table, &rev.id).last().cloned();
                    let want = want.unwrap_or_else(|| panic!("{ctx}: scan found {:?}", rev.id));
                    self.check_revision(rev, &want, table, &rev.id, "scan");
                    ids.push(rev.id.clone());
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            if self.m.active(table) {
                let live: Vec<String> = self
                    .m
                    .docs
                    .iter()
                    .filter(|((t, _), revs)| {
                        t == table && revs.last().is_some_and(|r| r.op != Operation::Delete)
                    })
                    .map(|((_, id), _)| id.clone())
                    .collect();
                assert_eq!(
                    ids, live,
                    "{ctx}: scan of {table}: the live documents by id"
                );
            }
        }
        let docs: Vec<(String, String)> = self.m.docs.keys().cloned().collect();
        for (table, id) in docs {
            self.check_doc(&table, &id, &mut rng).await;
        }
        let size = self.m.size();
        let old = rng.below(size + 1);
        let p = self
            .s
            .proofs
            .prove_consistency(pb::ProveConsistencyRequest {
                ledger: LEDGER.into(),
                old_size: old,
                new_size: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("{ctx}: consistency: {e:?}"))
            .into_inner();
        assert_eq!(
            p.checkpoint, self.m.checkpoint,
            "{ctx}: consistency checkpoint"
        );
        let hashes: Vec<Hash> = p
            .hashes
            .iter()
            .map(|h| Hash(h.as_slice().try_into().expect("32 bytes")))
            .collect();
        check_consistency(
            &hashes,
            old,
            size,
            &self.m.roots[old as usize],
            &self.m.roots[size as usize],
        )
        .unwrap_or_else(|e| panic!("{ctx}: consistency {old} -> {size}: {e}"));
    }
}

thread_local! {
    /// Where a run is, for the message printed if it panics.
    static WHERE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Prints the seed and step if the run panics.
struct OnFailure;

impl Drop for OnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            WHERE.with(|w| {
                eprintln!(
                    "model test FAILED at {}; replay with GRAVEN_MODEL_SEED (and the same \
                     GRAVEN_MODEL_STEPS)",
                    w.borrow()
                );
            });
        }
    }
}

async fn run_seed(seed: u64, steps: u64) -> (u64, u64, u64, BTreeMap<String, u64>) {
    let mut rng = Rng(seed);
    let mut run = Run::new().await;
    let (mut commits, mut failures) = (0u64, 0u64);
    for step in 0..steps {
        run.context = format!("seed {seed} step {step}");
        WHERE.with(|w| w.borrow_mut().clone_from(&run.context));
        let generated = run.generated.clone();
        let s = gen_step(&mut rng, &run.m, &generated);
        let before = run.m.size();
        let touched = run.step(s).await;
        if run.m.size() > before {
            commits += 1;
        } else {
            failures += 1;
        }
        run.check_head().await;
        let mut targets: BTreeSet<(String, String)> = touched.into_iter().collect();
        // And one document the step did not touch.
        let table = (*rng.pick(&TABLES)).to_owned();
        targets.insert((table, (*rng.pick(&IDS)).to_owned()));
        for (table, id) in targets {
            run.check_doc(&table, &id, &mut rng).await;
        }
        if step % 25 == 24 {
            run.check_all().await;
        }
    }
    run.context = format!("seed {seed} after step {steps}");
    run.check_all().await;
    (commits, failures, run.m.size(), run.outcomes)
}

#[tokio::test]
async fn random_sequences_agree_with_the_model() {
    let _guard = OnFailure;
    let steps = env_u64("GRAVEN_MODEL_STEPS").unwrap_or(150);
    let seeds: Vec<u64> = match env_u64("GRAVEN_MODEL_SEED") {
        Some(seed) => vec![seed],
        None => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ u64::from(std::process::id()) << 32;
            let n = env_u64("GRAVEN_MODEL_SEEDS").unwrap_or(2);
            let mut r = Rng(base);
            (0..n).map(|_| r.next()).collect()
        }
    };
    for seed in seeds {
        eprintln!("model: seed {seed}, {steps} steps (GRAVEN_MODEL_SEED={seed} replays it)");
        let (commits, refused, size, outcomes) = run_seed(seed, steps).await;
        eprintln!(
            "model: seed {seed}: {commits} steps committed, {refused} wrote nothing, journal \
             size {size}; transactions: {outcomes:?}"
        );
        // The generator's mix, so that a change to it cannot quietly stop testing either
        // side (short runs are too short to say).
        assert!(
            steps < 100 || (commits > steps / 10 && refused > steps / 10),
            "seed {seed}: the mix should both commit and refuse often ({commits} committed, \
             {refused} refused)"
        );
    }
}
