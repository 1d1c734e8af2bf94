//! `graven-bench`: a load tool in the manner of pgbench. It drives a running server with
//! concurrent clients and reports throughput, latency percentiles and errors. The same
//! workloads run against two peers, so one tool measures all sides of a comparison:
//! `--raw-redb FILE` (the same inserts straight into redb, `Durability::Immediate`: the
//! storage engine's floor) and `--postgres URL` (PostgreSQL with the audit-table design
//! AWS recommends to QLDB users, plus a SHA-256 hash chain; see [`postgres`]).
//!
//! Workloads:
//! * `w1`: one client, sequential one-document insert transactions (commit latency).
//! * `w2`: many clients (default 64), one-document insert transactions (group commit).
//! * `w3`: bulk ingest: 8 clients, 100 documents of 1 KiB per transaction; revisions/s.
//! * `w4`: read-then-update with an expected version on a hot set of 100 documents, 32
//!   clients: committed and aborted counts; throughput = commits/s. Its latencies are of
//!   whole committed read-then-update cycles.
//! * `w5`: reads: 32 clients, reads of random documents of a pre-loaded table
//!   (`--preload`, default 1,000,000), with an inclusion proof on graven; throughput =
//!   reads/s.
//! * `w6`: indexed equality lookups on w5's table: 32 clients, `SELECT * FROM docs AS d
//!   WHERE d.n = ?` (graven, through an index on `n`, built first if missing and timed)
//!   against PostgreSQL's btree expression index on `(body->>'n')::bigint`; reads/s.
//! * `w7`: indexed range queries of 100 rows on the same: `d.n >= ? AND d.n < ? + 100`.
//!
//! `--indexes N` (w1 to w3, graven) gives the table N secondary indexes first (on
//! `client`, `n`, `pad`), which every insert then maintains.
//!
//! `--ops` changes the documents per insert transaction (w1 to w3) and `--reads PERCENT`
//! turns that share of w1 to w3's steps into reads of documents the client wrote. A run
//! ends after `--duration` seconds or `--count` steps, whichever comes first.
//!
//! Errors are counted and the run goes on; the first one is printed on stderr.

mod postgres;
mod raw_redb;
mod server;

use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Parser, ValueEnum};
use serde_json::json;

/// The table every workload uses.
const TABLE: &str = "docs";
/// Documents per W3 transaction.
const W3_BATCH: usize = 100;
/// Documents in the W4 hot set.
const HOT_SET: usize = 100;
/// Ids of preloaded documents: this prefix and 0, 1, 2, ...
const PRELOAD_PREFIX: &str = "w5-";
/// Rows of one w7 query.
const W7_ROWS: u64 = 100;
/// Default `--preload` for w5.
const DEFAULT_PRELOAD: u64 = 1_000_000;
/// Default `--duration` when `--count` is not given.
const DEFAULT_DURATION: f64 = 10.0;
/// Ids a client remembers for `--reads` (the most recent ones replace random older ones).
const REMEMBERED_IDS: usize = 4096;

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// One client, sequential one-document inserts: commit latency.
    W1,
    /// Concurrent clients (default 64), one-document inserts: group-commit throughput.
    W2,
    /// Bulk ingest (default 8 clients): 100 documents of 1 KiB per transaction.
    W3,
    /// Read, then update with expected version, on 100 hot documents (default 32 clients).
    W4,
    /// Reads (with an inclusion proof on graven) of random preloaded documents (default
    /// 32 clients).
    W5,
    /// Indexed equality lookups of random preloaded documents by a field (default 32
    /// clients).
    W6,
    /// Indexed range queries returning 100 preloaded documents (default 32 clients).
    W7,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
            Workload::W5 => "w5",
            Workload::W6 => "w6",
            Workload::W7 => "w7",
        }
    }

    fn default_clients(self) -> usize {
        match self {
            Workload::W1 => 1,
            Workload::W2 => 64,
            Workload::W3 => 8,
            Workload::W4 | Workload::W5 | Workload::W6 | Workload::W7 => 32,
        }
    }

    fn default_doc_bytes(self) -> usize {
        match self {
            Workload::W3 => 1024,
            _ => 128,
        }
    }

    fn default_ops(self) -> usize {
        match self {
            Workload::W3 => W3_BATCH,
            _ => 1,
        }
    }

    /// Whether the workload's steps are insert transactions (w1 to w3).
    fn inserts(self) -> bool {
        matches!(self, Workload::W1 | Workload::W2 | Workload::W3)
    }

    /// Whether the workload reads the preloaded table (w5 to w7).
    fn preloaded(self) -> bool {
        matches!(self, Workload::W5 | Workload::W6 | Workload::W7)
    }
}

/// graven-bench: load-test a graven server (or raw redb, or PostgreSQL) and report
/// throughput and latency.
#[derive(Debug, Parser)]
#[command(name = "graven-bench", version, about, long_about = None)]
struct Cli {
    /// The graven server to load.
    #[arg(long, env = "GRAVEN_SERVER", default_value = "http://127.0.0.1:7420")]
    server: String,
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("graven-bench: error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime
        .block_on(run(&cli.server, &cli.args))
        .and_then(|report| {
            let mut out = std::io::stdout().lock();
            if cli.args.json {
                writeln!(out, "{}", report.to_json())?;
            } else {
                write!(out, "{}", report.to_text())?;
            }
            Ok(())
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("graven-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `graven-bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(long, value_enum, default_value = "w2")]
    pub workload: Workload,
    /// Concurrent clients (default: 1 for w1, 64 for w2, 8 for w3, 32 for w4 and w5).
    #[arg(long)]
    pub clients: Option<usize>,
    /// How long to run, in seconds, after any preload (default 10 unless --count is
    /// given).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after this many steps (transactions, attempted updates or reads) in all.
    #[arg(long)]
    pub count: Option<u64>,
    /// Documents per insert transaction, w1 to w3 (default 100 for w3, 1 otherwise).
    #[arg(long)]
    pub ops: Option<usize>,
    /// w1 to w3: this percentage of steps (0 to 100) reads a document the client wrote
    /// (with an inclusion proof on graven) instead of inserting.
    #[arg(long, default_value_t = 0)]
    pub reads: u8,
    /// Size of each document's JSON, in bytes (approximately; default 1024 for w3, 128
    /// otherwise).
    #[arg(long)]
    pub doc_bytes: Option<usize>,
    /// HTTP/2 connections the clients share (default: one per 32 clients).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Run against this existing ledger instead of creating one (table `docs` is created
    /// if missing).
    #[arg(long)]
    pub ledger: Option<String>,
    /// w5 to w7: documents to insert before timing (default 1,000,000). With `--ledger`
    /// (or a PostgreSQL table of exactly this many documents), skipped if documents are
    /// already there.
    #[arg(long)]
    pub preload: Option<u64>,
    /// w1 to w3 on graven: secondary indexes the table gets before the run (0 to 3, on
    /// `client`, `n` and `pad`), which every insert maintains.
    #[arg(long, default_value_t = 0)]
    pub indexes: usize,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Instead of a server, write the same documents straight into a redb file at this
    /// path (w1 to w3: one write transaction of `--ops` rows per step,
    /// `Durability::Immediate`): the storage floor.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["postgres", "ledger"])]
    pub raw_redb: Option<PathBuf>,
    /// Instead of a server, run the workload against PostgreSQL at this URL (e.g.
    /// `postgresql://user@127.0.0.1:5432/db`): a current-state table and an audit table
    /// filled by a trigger that extends a SHA-256 hash chain (pgcrypto). It replaces the
    /// schema `graven_bench` (`graven_bench_w5` for w5) in that database.
    #[arg(long, value_name = "URL", conflicts_with = "ledger")]
    pub postgres: Option<String>,
    /// With --postgres: the audit trigger without the hash chain (a reference point: what
    /// the chain costs).
    #[arg(long, requires = "postgres")]
    pub no_chain: bool,
}

/// The options every target shares, checked.
#[derive(Debug, Clone)]
struct Plan {
    workload: Workload,
    clients: usize,
    doc_bytes: usize,
    ops: usize,
    reads: u8,
    deadline: Duration,
    count: Option<u64>,
    quiet: bool,
}

impl Plan {
    fn new(args: &BenchArgs) -> anyhow::Result<Plan> {
        let workload = args.workload;
        let clients = args.clients.unwrap_or(workload.default_clients());
        if clients == 0 {
            bail!("--clients must be at least 1");
        }
        let seconds = match (args.duration, args.count) {
            (Some(d), _) => d,
            (None, Some(_)) => f64::from(u32::MAX),
            (None, None) => DEFAULT_DURATION,
        };
        if !(seconds.is_finite() && seconds > 0.0) {
            bail!("--duration must be a positive number of seconds");
        }
        if args.count == Some(0) {
            bail!("--count must be at least 1");
        }
        if args.preload.is_some() && !workload.preloaded() {
            bail!("--preload is for w5, w6 and w7 only");
        }
        if args.indexes > 3 || (args.indexes > 0 && !workload.inserts()) {
            bail!("--indexes is 0 to 3, for the insert workloads w1, w2 and w3");
        }
        let ops = args.ops.unwrap_or(workload.default_ops());
        if args.ops.is_some() && !workload.inserts() {
            bail!("--ops is for the insert workloads w1, w2 and w3");
        }
        if ops == 0 {
            bail!("--ops must be at least 1");
        }
        if args.reads > 100 {
            bail!("--reads is a percentage: 0 to 100");
        }
        if args.reads > 0 && !workload.inserts() {
            bail!("--reads is for the insert workloads w1, w2 and w3 (w5 is all reads)");
        }
        Ok(Plan {
            workload,
            clients,
            doc_bytes: args.doc_bytes.unwrap_or(workload.default_doc_bytes()),
            ops,
            reads: args.reads,
            deadline: Duration::from_secs_f64(seconds),
            count: args.count,
            quiet: args.json,
        })
    }

    /// Whether a client's step is a read: `reads` percent of steps (a client with nothing
    /// written yet to read writes instead: [`Remembered::pick`] is `None`).
    fn read_now(&self, rng: &mut Rng) -> bool {
        self.reads > 0 && rng.below(100) < u64::from(self.reads)
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target: `graven`, `redb`, `postgres` or `postgres-no-chain`.
    pub target: &'static str,
    /// Workload name.
    pub workload: String,
    /// Clients.
    pub clients: usize,
    /// The ledger used (graven only).
    pub ledger: Option<String>,
    /// Steps counted as done, by kind, and revisions written.
    pub totals: Totals,
    /// w4: whether to report committed and aborted.
    pub conflicts: bool,
    /// w5 to w7: documents inserted before timing (0 if existing ones were reused).
    pub preloaded: Option<u64>,
    /// w6, w7: the index on `n` built before timing: documents and seconds.
    pub index_build: Option<(u64, f64)>,
    /// w1 to w3: the secondary indexes the table had.
    pub indexes: usize,
}

/// The counts of a run.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Committed write transactions.
    pub transactions: u64,
    /// Reads.
    pub reads: u64,
    /// Revisions (rows) written.
    pub revisions: u64,
    /// w4: updates refused because the expected version was stale.
    pub aborted: u64,
    /// Failed steps.
    pub errors: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Latencies in microseconds of the counted steps, sorted.
    pub latencies: Vec<u32>,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.transactions += other.transactions;
        self.reads += other.reads;
        self.revisions += other.revisions;
        self.aborted += other.aborted;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
    }

    fn record(&mut self, outcome: Outcome, started: Instant, shown: &AtomicBool) {
        match outcome {
            Outcome::Wrote(revisions) => {
                self.transactions += 1;
                self.revisions += revisions;
            }
            Outcome::Read => self.reads += 1,
            Outcome::Aborted => {
                self.aborted += 1;
                return;
            }
            Outcome::Failed(message) => {
                self.errors += 1;
                first_error(shown, &message);
                return;
            }
        }
        self.latencies
            .push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
}

impl Report {
    fn percentile_ms(&self, p: f64) -> f64 {
        let l = &self.totals.latencies;
        if l.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (l.len() - 1) as f64).round() as usize;
        f64::from(l[rank]) / 1000.0
    }

    fn per_second(&self, n: u64) -> f64 {
        if self.totals.seconds > 0.0 {
            n as f64 / self.totals.seconds
        } else {
            0.0
        }
    }

    /// Committed transactions plus reads, per second.
    pub fn throughput(&self) -> f64 {
        self.per_second(self.totals.transactions + self.totals.reads)
    }

    /// Revisions written per second.
    pub fn revisions_per_sec(&self) -> f64 {
        self.per_second(self.totals.revisions)
    }

    /// The machine-readable form.
    pub fn to_json(&self) -> serde_json::Value {
        let t = &self.totals;
        let mut v = json!({
            "target": self.target,
            "workload": self.workload,
            "clients": self.clients,
            "transactions": t.transactions,
            "reads": t.reads,
            "revisions": t.revisions,
            "seconds": t.seconds,
            "throughput": self.throughput(),
            "revisions_per_sec": self.revisions_per_sec(),
            "p50_ms": self.percentile_ms(50.0),
            "p90_ms": self.percentile_ms(90.0),
            "p99_ms": self.percentile_ms(99.0),
            "max_ms": self.percentile_ms(100.0),
            "errors": t.errors,
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(ledger) = &self.ledger {
                obj.insert("ledger".into(), json!(ledger));
            }
            if self.conflicts {
                obj.insert("committed".into(), json!(t.transactions));
                obj.insert("aborted".into(), json!(t.aborted));
            }
            if let Some(preloaded) = self.preloaded {
                obj.insert("preloaded".into(), json!(preloaded));
            }
            if let Some((docs, secs)) = self.index_build {
                obj.insert("index_build_docs".into(), json!(docs));
                obj.insert("index_build_s".into(), json!(secs));
                obj.insert("index_build_docs_per_s".into(), json!(docs as f64 / secs));
            }
            if self.indexes > 0 {
                obj.insert("indexes".into(), json!(self.indexes));
            }
        }
        v
    }

    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "{} {} clients={} in {:.1}s\n  throughput  {:.0}/s",
            self.target,
            self.workload,
            self.clients,
            t.seconds,
            self.throughput(),
        );
        let mut kinds = Vec::new();
        if t.transactions > 0 {
            kinds.push(format!("{} transactions", t.transactions));
        }
        if t.reads > 0 {
            kinds.push(format!("{} reads", t.reads));
        }
        if !kinds.is_empty() {
            s += &format!(" ({})", kinds.join(", "));
        }
        s += "\n";
        if t.revisions > t.transactions {
            s += &format!("  revisions   {:.0}/s\n", self.revisions_per_sec());
        }
        if self.conflicts {
            let attempts = t.transactions + t.aborted;
            s += &format!(
                "  committed   {}  aborted {} ({:.1}% of attempts)\n",
                t.transactions,
                t.aborted,
                if attempts == 0 {
                    0.0
                } else {
                    100.0 * t.aborted as f64 / attempts as f64
                }
            );
        }
        if let Some((docs, secs)) = self.index_build {
            s += &format!(
                "  index build {docs} documents in {secs:.1}s ({:.0}/s)\n",
                docs as f64 / secs
            );
        }
        if let Some(preloaded) = self.preloaded {
            if preloaded == 0 {
                s += "  preloaded   none (the existing documents were reused)\n";
            } else {
                s += &format!("  preloaded   {preloaded} documents\n");
            }
        }
        s += &format!(
            "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}\n  errors      {}\n",
            self.percentile_ms(50.0),
            self.percentile_ms(90.0),
            self.percentile_ms(99.0),
            self.percentile_ms(100.0),
            t.errors
        );
        s
    }
}

/// A JSON document of about `bytes` bytes.
fn document(bytes: usize, client: usize, n: u64) -> Vec<u8> {
    let head = format!(r#"{{"client":{client},"n":{n},"pad":""#);
    let pad = bytes.saturating_sub(head.len() + 2);
    let mut doc = head.into_bytes();
    doc.extend(std::iter::repeat_n(b'x', pad));
    doc.extend_from_slice(b"\"}");
    doc
}

/// A small, fast pseudo-random generator (splitmix64): picking documents needs no more.
struct Rng(u64);

impl Rng {
    fn new(client: usize) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng(nanos ^ (client as u64).wrapping_mul(0xA076_1D64_78BD_642F))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The documents a client wrote, for `--reads`: at most [`REMEMBERED_IDS`], the newest
/// replacing random older ones.
struct Remembered<K>(Vec<K>);

impl<K: Clone> Remembered<K> {
    fn new() -> Self {
        Remembered(Vec::new())
    }

    fn add(&mut self, key: K, rng: &mut Rng) {
        if self.0.len() < REMEMBERED_IDS {
            self.0.push(key);
        } else {
            let slot = rng.below(REMEMBERED_IDS as u64) as usize;
            self.0[slot] = key;
        }
    }

    fn pick(&self, rng: &mut Rng) -> Option<K> {
        (!self.0.is_empty()).then(|| self.0[rng.below(self.0.len() as u64) as usize].clone())
    }
}

/// The documents w4 and w5 pick from.
enum Ids {
    /// `prefix` followed by 0 to `count - 1`.
    Numbered { prefix: String, count: u64 },
    /// Explicit ids (an existing ledger's documents).
    Listed(Vec<String>),
}

impl Ids {
    fn len(&self) -> u64 {
        match self {
            Ids::Numbered { count, .. } => *count,
            Ids::Listed(ids) => ids.len() as u64,
        }
    }

    fn pick(&self, rng: &mut Rng) -> String {
        match self {
            Ids::Numbered { prefix, count } => format!("{prefix}{}", rng.below(*count)),
            Ids::Listed(ids) => ids[rng.below(ids.len() as u64) as usize].clone(),
        }
    }
}

/// How one step of a client ended.
enum Outcome {
    /// A write transaction committed, with this many revisions.
    Wrote(u64),
    /// A read succeeded.
    Read,
    /// w4: the expected version was stale.
    Aborted,
    /// Any other failure.
    Failed(String),
}

/// One client of an async target: each step is one transaction or read.
trait Client: Send + 'static {
    fn step(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// When a run stops: at the deadline, or after `count` steps in all.
struct Limit {
    deadline: Instant,
    count: Option<u64>,
    issued: AtomicU64,
    /// Steps finished, for the progress line.
    done: Arc<AtomicU64>,
}

impl Limit {
    fn new(plan: &Plan) -> Arc<Limit> {
        Arc::new(Limit {
            deadline: Instant::now() + plan.deadline,
            count: plan.count,
            issued: AtomicU64::new(0),
            done: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Claims the next step, or says the run is over.
    fn next(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        match self.count {
            Some(count) => self.issued.fetch_add(1, Ordering::Relaxed) < count,
            None => true,
        }
    }
}

/// Runs every client until the limit, with a progress line on a terminal, and adds up
/// what they measured.
async fn drive<C: Client>(plan: &Plan, clients: Vec<C>) -> anyhow::Result<Totals> {
    let limit = Limit::new(plan);
    let shown = Arc::new(AtomicBool::new(false));
    let bar = Progress::start(plan.quiet, "steps", None, limit.done.clone());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients.len());
    for mut client in clients {
        let (limit, shown) = (limit.clone(), shown.clone());
        tasks.push(tokio::spawn(async move {
            let mut totals = Totals::default();
            while limit.next() {
                let t = Instant::now();
                let outcome = client.step().await;
                totals.record(outcome, t, &shown);
                limit.done.fetch_add(1, Ordering::Relaxed);
            }
            totals
        }));
    }
    let mut totals = Totals::default();
    for t in tasks {
        totals.add(t.await?);
    }
    totals.seconds = start.elapsed().as_secs_f64();
    bar.stop();
    totals.latencies.sort_unstable();
    Ok(totals)
}

/// Prints the first error of a run on stderr (later ones are only counted).
fn first_error(shown: &AtomicBool, message: &str) {
    if !shown.swap(true, Ordering::Relaxed) {
        let clear = if std::io::stderr().is_terminal() {
            format!("\r{:70}\r", "")
        } else {
            String::new()
        };
        eprintln!("{clear}graven-bench: error (counted; later errors are not shown): {message}");
    }
}

/// A live progress line on stderr, shown only on a terminal.
struct Progress {
    done: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Prints `label` with `count` (of `total`, if known) five times a second until
    /// stopped.
    fn start(
        quiet: bool,
        label: &'static str,
        total: Option<u64>,
        count: Arc<AtomicU64>,
    ) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        if quiet || !std::io::stderr().is_terminal() {
            return Progress { done, handle: None };
        }
        let stop = done.clone();
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let mut line = graven::progress::ProgressLine::new();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let n = count.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                let rate = n as f64 / secs;
                line.show(|| match total {
                    Some(total) => format!("{label} {n}/{total}  {secs:5.1}s  {rate:.0}/s"),
                    None => format!("{secs:5.1}s  {n} {label}  {rate:.0}/s"),
                });
            }
        });
        Progress {
            done,
            handle: Some(handle),
        }
    }

    /// Stops and clears the line before anything else is printed.
    fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle {
            let _ = h.join();
        }
    }
}

/// Runs the benchmark described by `args` against `server` (or a peer).
async fn run(server: &str, args: &BenchArgs) -> anyhow::Result<Report> {
    let plan = Plan::new(args)?;
    if let Some(path) = &args.raw_redb {
        if !plan.workload.inserts() {
            bail!(
                "--raw-redb supports w1, w2 and w3 only: {} measures graven's own reads and \
                 versioned updates, which have no raw redb equivalent; run it against a server",
                plan.workload.name()
            );
        }
        let path = path.clone();
        return tokio::task::spawn_blocking(move || raw_redb::run(&path, &plan)).await?;
    }
    if let Some(url) = &args.postgres {
        return postgres::run(url, args, &plan).await;
    }
    server::run(server, args, &plan).await
}
