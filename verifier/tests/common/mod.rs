//! Shared fixtures of the `audit`, `stream`, `state` and `current` tests: running the
//! binary, scratch directories, and a synthetic ledger (entries, bodies, state roots, signed
//! checkpoints) built with the library, from which exports, change streams and
//! current-state proofs are made.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use graven_verify::checkpoint::Checkpoint;
use graven_verify::current::{CurrentProof, ProvenEntry};
use graven_verify::entry::{Entry, Operation, State};
use graven_verify::export::ExportWriter;
use graven_verify::hash::{Hash, leaf_hash};
use graven_verify::map::{Terminal, map_key};
use graven_verify::map_nodes::{Map, MemoryNodes};
use graven_verify::note::Signer;
use graven_verify::tree::{CompactRange, prove_inclusion};
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_graven-verify");

/// A scratch directory under the system temp dir, unique to the test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("graven-verify-test-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).expect("write temp file");
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_with_stdin(args: &[&dyn AsRef<std::ffi::OsStr>], stdin: &[u8]) -> Run {
    let mut child = Command::new(BIN)
        .args(args.iter().map(|a| a.as_ref()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn graven-verify");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    // Write from another thread: the binary may exit (or fill its stdout) before reading
    // everything.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    Run {
        code: out.status.code().expect("exited normally, not by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

pub fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    run_with_stdin(args, b"")
}

/// Asserts success: exit 0, exactly one line on stdout, nothing on stderr. Returns the line.
pub fn ok(r: &Run) -> String {
    assert_eq!(r.code, 0, "expected success: {r:?}");
    assert!(r.stderr.is_empty(), "stderr on success: {r:?}");
    one_line(&r.stdout, r).to_owned()
}

/// Asserts failure with `code`: nothing on stdout, exactly one line on stderr, and no panic.
pub fn fails(r: &Run, code: i32) -> String {
    assert_eq!(r.code, code, "expected exit {code}: {r:?}");
    assert!(r.stdout.is_empty(), "stdout on failure: {r:?}");
    one_error(r)
}

/// Asserts exactly one `graven-verify: ` line on stderr and no panic; returns it.
pub fn one_error(r: &Run) -> String {
    assert!(!r.stderr.contains("panicked"), "panic: {r:?}");
    let line = one_line(&r.stderr, r);
    assert!(line.starts_with("graven-verify: "), "{r:?}");
    line.to_owned()
}

pub fn one_line<'a>(s: &'a str, r: &Run) -> &'a str {
    let line = s
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no final newline: {r:?}"));
    assert!(!line.contains('\n'), "more than one line: {r:?}");
    line
}

/// A revision to write: table, id, operation, version, body.
pub type Op<'a> = (&'a str, &'a str, Operation, u64, Option<Vec<u8>>);

/// One revision of the synthetic ledger.
#[derive(Clone, Debug)]
pub struct Rev {
    pub entry: Entry,
    pub bytes: Vec<u8>,
    pub body: Option<Vec<u8>>,
}

/// A synthetic ledger signed by a fresh key. Transactions are written in entry format 2,
/// the last revision of each carrying the root of the state map after it, unless `format1`
/// is set (a ledger from before state commitments).
pub struct Ledger {
    pub signer: Signer,
    pub revs: Vec<Rev>,
    /// Write format 1 entries (no state) from now on.
    pub format1: bool,
    /// The state map after the first `applied` revisions, as a replay of them computes it
    /// (brought up to date when a root is needed).
    map: Map<MemoryNodes>,
    applied: usize,
    next_tx: u64,
    clock: u64,
}

pub const T0: u64 = 1_795_320_859_058_645;

pub fn body_hash(body: &[u8]) -> Hash {
    Hash(Sha256::digest(body).into())
}

impl Ledger {
    pub fn new(origin: &str) -> Ledger {
        Ledger {
            signer: Signer::generate(origin).expect("keygen"),
            revs: Vec::new(),
            format1: false,
            map: Map::new(MemoryNodes::default()),
            applied: 0,
            next_tx: 0,
            clock: T0,
        }
    }

    /// A ledger of `txs` transactions of 1 to 3 revisions each over two tables: inserts,
    /// updates and some deletes, with dense versions.
    pub fn generate(origin: &str, txs: u64) -> Ledger {
        Ledger::generate_upgraded(origin, 0, txs)
    }

    /// Like [`Ledger::generate`], the first `format1` transactions in entry format 1 (a
    /// ledger from before state commitments), the rest in format 2.
    pub fn generate_upgraded(origin: &str, format1: u64, txs: u64) -> Ledger {
        let mut ledger = Ledger::new(origin);
        let mut live: Vec<(String, String, u64)> = Vec::new();
        let mut created = 0u64;
        let mut g = 0u64;
        for t in 0..txs {
            ledger.format1 = t < format1;
            let mut ops: Vec<(String, String, Operation, u64)> = Vec::new();
            for _ in 0..=(t % 3) {
                g += 1;
                let pick = (!live.is_empty() && !g.is_multiple_of(3))
                    .then(|| (g * 7) as usize % live.len())
                    .filter(|&i| !ops.iter().any(|o| o.1 == live[i].1));
                match pick {
                    Some(i) if g.is_multiple_of(11) => {
                        let (table, id, v) = live.swap_remove(i);
                        ops.push((table, id, Operation::Delete, v + 1));
                    }
                    Some(i) => {
                        live[i].2 += 1;
                        let (table, id, v) = live[i].clone();
                        ops.push((table, id, Operation::Update, v));
                    }
                    None => {
                        created += 1;
                        let table = if created.is_multiple_of(4) {
                            "users"
                        } else {
                            "orders"
                        };
                        let id = format!("d-{created}");
                        live.push((table.to_owned(), id.clone(), 0));
                        ops.push((table.to_owned(), id, Operation::Insert, 0));
                    }
                }
            }
            let ops: Vec<Op<'_>> = ops
                .iter()
                .map(|(table, id, op, v)| {
                    let body = (*op != Operation::Delete).then(|| {
                        format!(r#"{{"id":"{id}","n":{g},"note":"version {v} of {id}"}}"#)
                            .into_bytes()
                    });
                    (table.as_str(), id.as_str(), *op, *v, body)
                })
                .collect();
            ledger.push_tx(&ops);
        }
        ledger
    }

    /// Appends one transaction of the given revisions (table, id, operation, version, body):
    /// format 2 entries with the state root on the last, or format 1 if `format1` is set.
    pub fn push_tx(&mut self, ops: &[Op<'_>]) {
        let tx = self.next_tx;
        self.next_tx += 1;
        self.clock += 1000;
        for (position, (table, id, op, version, body)) in ops.iter().enumerate() {
            let entry = Entry {
                operation: *op,
                tx_id: tx,
                tx_position: position as u32,
                tx_revisions: ops.len() as u32,
                commit_time_micros: self.clock,
                version: *version,
                table: (*table).to_owned(),
                id: (*id).to_owned(),
                principal: "alice".to_owned(),
                body_hash: body.as_deref().map(body_hash),
                state: if self.format1 {
                    State::Untracked
                } else if position + 1 == ops.len() {
                    State::Root(Hash::default())
                } else {
                    State::Pending
                },
            };
            self.push_entry(entry, body.clone());
        }
    }

    /// Appends a revision as given, however inconsistent, except that a state root it
    /// carries is replaced by the true one: the root of the state after it.
    pub fn push_entry(&mut self, entry: Entry, body: Option<Vec<u8>>) {
        let carries_root = matches!(entry.state, State::Root(_));
        self.push_raw(entry, body);
        if carries_root {
            let root = self.state_root();
            let last = self.revs.last_mut().expect("a revision");
            last.entry.state = State::Root(root);
            last.bytes = last.entry.encode().expect("encode");
        }
    }

    /// Appends a revision exactly as given, its state root too.
    pub fn push_raw(&mut self, entry: Entry, body: Option<Vec<u8>>) {
        let bytes = entry.encode().expect("encode");
        self.next_tx = self.next_tx.max(entry.tx_id + 1);
        self.clock = self.clock.max(entry.commit_time_micros);
        self.revs.push(Rev { entry, bytes, body });
    }

    /// The root of the state map after every revision so far.
    pub fn state_root(&mut self) -> Hash {
        for (i, r) in self.revs.iter().enumerate().skip(self.applied) {
            let live = (r.entry.operation != Operation::Delete).then_some(i as u64);
            self.map
                .set(&map_key(&r.entry.table, &r.entry.id), live)
                .expect("set");
        }
        self.applied = self.revs.len();
        self.map.root().expect("root")
    }

    pub fn size(&self) -> u64 {
        self.revs.len() as u64
    }

    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    pub fn frontier(&self, size: u64) -> CompactRange {
        let mut range = CompactRange::new();
        for r in &self.revs[..size as usize] {
            range.append(leaf_hash(&r.bytes));
        }
        range
    }

    pub fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint {
            origin: self.origin().to_owned(),
            size,
            root: self.frontier(size).root(),
        }
    }

    pub fn signed(&self, size: u64) -> String {
        self.checkpoint(size).sign(&self.signer).expect("sign")
    }

    pub fn vkey(&self) -> String {
        format!("{}\n", self.signer.verifier().to_vkey())
    }

    /// Every stored hash of the journal, for proving inclusion.
    pub fn stored(&self) -> Vec<Hash> {
        let mut range = CompactRange::new();
        let mut stored = Vec::new();
        for r in &self.revs {
            range.append_stored(leaf_hash(&r.bytes), |_, h| stored.push(h));
        }
        stored
    }

    /// Each live document after the first `size` revisions, with the index of its live
    /// revision: the state's definition, replayed without the map.
    pub fn live_at(&self, size: u64) -> BTreeMap<(String, String), u64> {
        let mut live = BTreeMap::new();
        for (i, r) in self.revs[..size as usize].iter().enumerate() {
            let doc = (r.entry.table.clone(), r.entry.id.clone());
            if r.entry.operation == Operation::Delete {
                live.remove(&doc);
            } else {
                live.insert(doc, i as u64);
            }
        }
        live
    }

    /// What proves current-state answers at the checkpoint of `size`.
    pub fn prover(&self, size: u64) -> Prover<'_> {
        let mut map = Map::new(MemoryNodes::default());
        for (i, r) in self.revs[..size as usize].iter().enumerate() {
            let live = (r.entry.operation != Operation::Delete).then_some(i as u64);
            map.set(&map_key(&r.entry.table, &r.entry.id), live)
                .expect("set");
        }
        Prover {
            ledger: self,
            size,
            stored: self.stored(),
            map,
            note: self.signed(size),
        }
    }

    /// The export file of `[from, to)`.
    pub fn export(&self, from: u64, to: u64) -> Vec<u8> {
        let mut w = ExportWriter::new(Vec::new(), self.origin(), from, to, &self.frontier(from))
            .expect("header");
        for r in &self.revs[from as usize..to as usize] {
            w.record(&r.bytes, r.body.as_deref()).expect("record");
        }
        w.finish(&self.signed(to)).expect("finish")
    }

    /// The `graven tail` line of revision `index`.
    pub fn revision_line(&self, index: u64) -> String {
        let r = &self.revs[index as usize];
        let e = &r.entry;
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let op = match e.operation {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
        };
        let document = match &r.body {
            Some(b) => String::from_utf8(b.clone()).expect("UTF-8 body"),
            None => "null".to_owned(),
        };
        format!(
            r#"{{"type":"revision","index":{index},"entry":"{}","table":{},"id":{},"version":{},"operation":"{op}","tx":{},"commit_micros":{},"principal":{},"document":{document}}}"#,
            BASE64.encode(&r.bytes),
            text(&e.table),
            text(&e.id),
            e.version,
            e.tx_id,
            e.commit_time_micros,
            text(&e.principal),
        )
    }

    pub fn skipped_line(&self, index: u64) -> String {
        format!(
            r#"{{"type":"skipped","index":{index},"leaf_hash":"{}"}}"#,
            leaf_hash(&self.revs[index as usize].bytes).to_base64()
        )
    }

    pub fn checkpoint_line(&self, size: u64) -> String {
        serde_json::json!({"type": "checkpoint", "checkpoint": self.signed(size)}).to_string()
    }

    pub fn frontier_line(&self, size: u64) -> String {
        let subtrees: Vec<String> = self
            .frontier(size)
            .subtrees()
            .iter()
            .map(|h| h.to_base64())
            .collect();
        serde_json::json!({"type": "frontier", "size": size, "subtrees": subtrees}).to_string()
    }

    /// A `graven tail` stream of `[from, to)`: a frontier if `from > 0`, revisions (or
    /// skipped entries for `skip_table`), and a checkpoint after every `every` entries and
    /// at the end.
    pub fn tail(&self, from: u64, to: u64, every: u64, skip_table: Option<&str>) -> Vec<String> {
        let mut lines = Vec::new();
        if from > 0 {
            lines.push(self.frontier_line(from));
        }
        for i in from..to {
            if Some(self.revs[i as usize].entry.table.as_str()) == skip_table {
                lines.push(self.skipped_line(i));
            } else {
                lines.push(self.revision_line(i));
            }
            if (i + 1 - from).is_multiple_of(every) || i + 1 == to {
                lines.push(self.checkpoint_line(i + 1));
            }
        }
        lines
    }
}

/// Makes current-state proofs at one checkpoint, as a server would: the checkpoint's last
/// entry and its inclusion proof, the map proof of the document's key at that size, and the
/// revision the map names when it is not the last entry.
pub struct Prover<'a> {
    ledger: &'a Ledger,
    size: u64,
    stored: Vec<Hash>,
    map: Map<MemoryNodes>,
    note: String,
}

impl Prover<'_> {
    pub fn proven(&self, index: u64) -> ProvenEntry {
        ProvenEntry {
            index,
            entry: self.ledger.revs[index as usize].bytes.clone(),
            hashes: prove_inclusion(index, self.size, &self.stored).expect("prove"),
        }
    }

    pub fn current(&mut self, table: &str, id: &str) -> CurrentProof {
        let key = map_key(table, id);
        let map = self.map.prove(&key).expect("prove");
        let last = self.size - 1;
        let revision = match map.terminal {
            Terminal::Leaf { key: k, index } if k == key && index != last => {
                Some(self.proven(index))
            }
            _ => None,
        };
        CurrentProof {
            table: table.to_owned(),
            id: id.to_owned(),
            state: self.proven(last),
            revision,
            map,
            checkpoint: self.note.clone(),
        }
    }
}

/// Joins lines into a stream, each ending in a newline.
pub fn stream_text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The byte offset where the record of `index` starts in an export made by
/// [`Ledger::export`] from `from`.
pub fn record_offset(export: &[u8], index_in_export: usize) -> usize {
    let origin_len = u16::from_be_bytes([export[12], export[13]]) as usize;
    let k_at = 14 + origin_len + 16;
    let mut at = k_at + 1 + export[k_at] as usize * 32;
    for _ in 0..index_in_export {
        at = skip_record(export, at);
    }
    at
}

/// The offset just after the record starting at `at`.
pub fn skip_record(export: &[u8], at: usize) -> usize {
    let u32_at = |p: usize| u32::from_be_bytes(export[p..p + 4].try_into().expect("4 bytes"));
    let mut p = at + 4 + u32_at(at) as usize;
    if export[p] == 1 {
        p += 1;
        p += 4 + u32_at(p) as usize;
    } else {
        p += 1;
    }
    p
}

/// Writes `contents` into `dir` as `name` and returns its path.
pub fn file(dir: &TempDir, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    dir.write(name, contents)
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
